"""Training: one explicit loop (``loop.Trainer``), one step module (``step``: plain and
GradCache steps, backward, cross-device gather), shared config blocks (``settings``),
schedules, checkpoints, multi-process helpers (``distributed``), and the recipes
(``train/recipes/<name>.py``: a config schema + ``run(cfg)``, listed in
``embforge.train.recipes.RECIPES``)."""
