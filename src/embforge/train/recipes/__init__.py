"""Training recipes: one module per recipe, each with its config schema, its
``run(cfg, callbacks=())`` and a ``RECIPE`` entry; they all train with the same
``Trainer`` (``embforge.train.loop``) and step module (``embforge.train.step``).

Add a recipe: write ``train/recipes/<name>.py`` and list it in ``_MODULES`` below.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from embforge.config import Recipe
from embforge.config import load_config as _load_config
from embforge.registry import Registry
from embforge.train.recipes import contrastive, mlm, nv_embed, retromae

__all__ = ["RECIPES", "load_config"]

_MODULES = (contrastive, nv_embed, retromae, mlm)

RECIPES: Registry[Recipe] = Registry("recipe")
for _module in _MODULES:
    RECIPES.add(_module.RECIPE.name, _module.RECIPE)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> tuple[Recipe, Any]:
    """Load a YAML recipe file (its ``recipe:`` key picks the recipe), apply overrides, check it.

    Returns:
        (the recipe, its config instance); run it with ``recipe.run(cfg)``.
    """
    recipe, cfg = _load_config(path, overrides, recipes=RECIPES)
    return cast(Recipe, recipe), cfg  # never None: the file's recipe was found in RECIPES
