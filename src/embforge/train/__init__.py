"""Training: one explicit loop (``loop``), GradCache (``embforge.losses.cached``),
multi-process gather (``distributed``), schedules, checkpoints, and recipes
(``train/recipes/<name>.py``: a config dataclass + ``run(cfg)``, registered in
``embforge.config.RECIPES``)."""
