"""Typed configs: dataclass schemas, YAML files, dotted command-line overrides.

Typed dataclasses are the schema; YAML is only the file format. Loading checks
every key and value against the schema and reports *all* problems at once
(file, dotted key, what is wrong, "did you mean ...").

A *recipe* is a named training entry point: a schema dataclass plus a ``run``
function. ``embforge train CONFIG`` reads the ``recipe:`` key of the YAML file,
finds the recipe in :data:`RECIPES` and calls ``run(cfg)``. Recipes live in
modules under ``embforge.train.recipes`` (discovered automatically) and register
themselves with :func:`register_recipe`; adding a recipe never edits this file.

Example:
    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Opt:
    ...     lr: float = 1e-5
    >>> @dataclass
    ... class Cfg:
    ...     recipe: str = "demo"
    ...     optim: Opt = field(default_factory=Opt)
    >>> cfg = build_config(Cfg, apply_overrides({}, ["optim.lr=3e-4"]))
    >>> cfg.optim.lr
    0.0003
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import pkgutil
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from embforge.errors import ConfigError
from embforge.registry import Registry

__all__ = [
    "Recipe",
    "RECIPES",
    "register_recipe",
    "load_recipes",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "LoopConfig",
    "read_yaml",
    "parse_overrides",
    "apply_overrides",
    "build_config",
    "load_config",
    "config_to_dict",
    "save_config",
]

T = TypeVar("T")
COMMAND_LINE = "command line"


# ----------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class Recipe:
    """A named training entry point: ``run(cfg)`` with ``cfg`` an instance of ``schema``."""

    name: str
    schema: type
    run: Callable[[Any], Any]
    description: str = ""


RECIPES: Registry[Recipe] = Registry("recipe")


def register_recipe(name: str, schema: type, description: str = "") -> Callable:
    """Decorator registering ``run(cfg)`` as recipe ``name`` with config class ``schema``.

    Keep heavy imports (torch, transformers) inside ``run`` so that loading and
    validating a config stays fast.

    Example:
        >>> @dataclass
        ... class HelloConfig:
        ...     recipe: str = "hello-doc"
        ...     name: str = "world"
        >>> @register_recipe("hello-doc", HelloConfig, "print a greeting")
        ... def run_hello(cfg):
        ...     return f"hello {cfg.name}"
        >>> RECIPES.get("hello-doc").run(HelloConfig())
        'hello world'
    """

    def deco(run: Callable[[Any], Any]) -> Callable[[Any], Any]:
        RECIPES.add(name, Recipe(name, schema, run, description))
        return run

    return deco


_LOADED = False


def load_recipes() -> None:
    """Import every module of ``embforge.train.recipes`` so its recipes register (idempotent)."""
    global _LOADED
    if _LOADED:
        return
    import embforge.train.recipes as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{info.name}")
    _LOADED = True


# ----------------------------------------------------------------------------- shared blocks


@dataclass
class ModelConfig:
    """Which encoder to train.

    Attributes:
        path: local directory or hub id; None = the bundled all-MiniLM-L6-v2.
        heads: heads to train, from dense, sparse, multivector.
        pooling: dense pooling override ("cls" or "mean"); None = the checkpoint's own.
        gradient_checkpointing: recompute activations in backward (less memory, ~30% slower).
        device: "cpu", "cuda", "cuda:1", ...; None = the local GPU when there is one (under
            torchrun: cuda:LOCAL_RANK), else cpu.
    """

    path: str | None = None
    heads: list[str] = field(default_factory=lambda: ["dense"])
    pooling: str | None = None
    gradient_checkpointing: bool = False
    device: str | None = None

    def validate(self) -> list[str]:
        errs = [
            f"heads: unknown head {h!r}; choose from: dense, multivector, sparse"
            for h in self.heads
            if h not in ("dense", "sparse", "multivector")
        ]
        if not self.heads:
            errs.append("heads: must name at least one head (dense, sparse, multivector)")
        if len(set(self.heads)) != len(self.heads):
            errs.append(f"heads: {self.heads} names a head twice; list each head once")
        return errs


@dataclass
class OptimConfig:
    """AdamW settings (decoupled weight decay, Loshchilov & Hutter 2019).

    Attributes:
        lr: peak learning rate.
        weight_decay: applied to all weights except biases and LayerNorm weights.
        betas: Adam betas.
        eps: Adam epsilon.
        max_grad_norm: clip the global gradient norm to this; 0 disables clipping.
    """

    lr: float = 2e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    max_grad_norm: float = 1.0

    def validate(self) -> list[str]:
        errs = []
        if self.lr <= 0:
            errs.append(f"lr: must be > 0, got {self.lr}")
        if self.max_grad_norm < 0:
            errs.append(f"max_grad_norm: must be >= 0 (0 disables clipping), got {self.max_grad_norm}")
        return errs


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, as a multiplier of ``optim.lr`` per step.

    Names:
        constant: optional warmup, then flat.
        warmup_linear: linear warmup over ``warmup_ratio`` (or ``warmup_steps``) of the
            steps, then linear decay to ``min_lr_ratio`` at the last step (M3 stage 2).
        wsd: warmup-stable-decay (Arctic-Embed pretraining): warmup, flat, then a linear
            decay over the last ``decay_ratio`` of the steps.
        linear_decay: no warmup; linear decay from the peak to ``min_lr_ratio`` over the
            first ``decay_steps`` steps, then flat (Arctic-Embed fine-tuning: 6,000 of 9,342).

    Attributes:
        name: one of the names above.
        warmup_ratio: warmup length as a fraction of the total steps.
        warmup_steps: warmup length in steps (overrides ``warmup_ratio`` when set).
        decay_ratio: wsd only: fraction of steps spent decaying.
        decay_steps: linear_decay only: number of decay steps (None = all steps).
        min_lr_ratio: final multiplier.
    """

    name: Literal["constant", "warmup_linear", "wsd", "linear_decay"] = "warmup_linear"
    warmup_ratio: float = 0.0
    warmup_steps: int | None = None
    decay_ratio: float = 0.1
    decay_steps: int | None = None
    min_lr_ratio: float = 0.0

    def validate(self) -> list[str]:
        errs = []
        for k in ("warmup_ratio", "decay_ratio", "min_lr_ratio"):
            v = getattr(self, k)
            if not 0.0 <= v <= 1.0:
                errs.append(f"{k}: must be within [0, 1], got {v}")
        if self.name == "linear_decay" and (self.warmup_ratio or self.warmup_steps):
            errs.append("warmup_ratio/warmup_steps: linear_decay has no warmup; use warmup_linear or wsd")
        return errs


@dataclass
class LoopConfig:
    """The training loop (shared by every recipe that uses ``embforge.train.loop``).

    Attributes:
        output_dir: where checkpoints, the JSONL log and the final model go.
        max_steps: optimizer steps to run (None = ``epochs`` passes over the data).
        epochs: passes over the data when ``max_steps`` is None.
        batch_size: global batch (queries per step, over all processes).
        sub_batch_size: GradCache sub-batch (texts per forward with graph); None = no caching.
        precision: fp32 or bf16 (autocast; fast on GPUs and AMX CPUs only).
        seed: seeds data order, negative sampling, dropout and initialisation.
        log_every: write a JSONL log line every this many steps.
        checkpoint_every: save a resumable checkpoint every this many steps (0 = only at the end).
        keep_checkpoints: how many step checkpoints to keep.
        resume: continue from the newest checkpoint in ``output_dir`` if there is one.
        progress: show a tqdm progress bar.
        threads: torch intra-op threads (None = torch's default).
    """

    output_dir: str = "runs/embforge"
    max_steps: int | None = None
    epochs: float = 1.0
    batch_size: int = 32
    sub_batch_size: int | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    seed: int = 42
    log_every: int = 1
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    resume: bool = True
    progress: bool = True
    threads: int | None = None

    def validate(self) -> list[str]:
        errs = []
        if self.batch_size < 1:
            errs.append(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.sub_batch_size is not None and self.sub_batch_size < 1:
            errs.append(f"sub_batch_size: must be >= 1 or null (no caching), got {self.sub_batch_size}")
        if self.max_steps is not None and self.max_steps < 1:
            errs.append(f"max_steps: must be >= 1 or null (use epochs), got {self.max_steps}")
        if self.max_steps is None and self.epochs <= 0:
            errs.append(f"epochs: must be > 0 when max_steps is null, got {self.epochs}")
        if self.checkpoint_every < 0:
            errs.append(f"checkpoint_every: must be >= 0, got {self.checkpoint_every}")
        if self.keep_checkpoints < 1:
            errs.append(f"keep_checkpoints: must be >= 1, got {self.keep_checkpoints}")
        return errs


# ----------------------------------------------------------------------------- files and overrides


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; errors name the file (and line for syntax errors)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"config file {str(p)!r} does not exist; pass the path of a YAML recipe "
            f"(shipped ones are in configs/)"
        )
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        raise ConfigError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def parse_overrides(overrides: Iterable[str]) -> list[tuple[list[str], Any]]:
    """Parse ``a.b=value`` strings; values are read as YAML (``3`` -> int, ``[1,2]`` -> list)."""
    out = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r}: expected dotted.key=value, e.g. loop.batch_size=64")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out.append((key.split("."), value))
    return out


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted overrides applied (intermediate mappings created)."""
    import copy

    data = copy.deepcopy(data)
    for keys, value in parse_overrides(overrides):
        node = data
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    return data


# ----------------------------------------------------------------------------- schema checking


def _suggest(key: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}(allowed: {', '.join(allowed)})"


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


class _Checker:
    def __init__(self, source: str, cli_keys: set[str]) -> None:
        self.source = source
        self.cli_keys = cli_keys
        self.errors: list[str] = []

    def err(self, path: str, msg: str) -> None:
        src = (
            COMMAND_LINE if any(path == k or path.startswith(k + ".") for k in self.cli_keys) else self.source
        )
        self.errors.append(f"{src}: {path or '<top>'}: {msg}")

    def dataclass_(self, cls: type, data: Any, path: str) -> Any:
        if not isinstance(data, dict):
            self.err(path, f"expected a mapping for {cls.__name__}, got {data!r}")
            return None
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        for key in data:
            if key not in fields:
                self.err(_join(path, str(key)), f"unknown key; {_suggest(str(key), list(fields))}")
        kwargs = {}
        n_errors = len(self.errors)
        for name, f in fields.items():
            if name in data:
                kwargs[name] = self.value(hints[name], data[name], _join(path, name))
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                self.err(_join(path, name), f"missing required key ({_type_name(hints[name])})")
        try:
            obj = cls(**kwargs)
        except (TypeError, ValueError) as e:  # missing fields already reported
            if not self.errors:
                self.err(path, str(e))
            return None
        validate = getattr(obj, "validate", None)
        if validate is not None and len(self.errors) == n_errors:  # only well-typed values
            for msg in validate():
                sub, _, rest = msg.partition(": ")
                if rest and " " not in sub:
                    self.err(_join(path, sub), rest)
                else:
                    self.err(path, msg)
        return obj

    def value(self, tp: Any, v: Any, path: str) -> Any:  # noqa: C901 - one branch per type kind
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is Any:
            return v
        if origin in (typing.Union, types.UnionType):
            if v is None and type(None) in args:
                return None
            options = [a for a in args if a is not type(None)]
            for a in options:
                sub = _Checker(self.source, self.cli_keys)
                out = sub.value(a, v, path)
                if not sub.errors:
                    return out
            if len(options) == 1:
                return self.value(options[0], v, path)
            self.err(path, f"expected {_type_name(tp)}, got {v!r}")
            return v
        if origin is Literal:
            if v not in args:
                self.err(path, f"{v!r} is not allowed; {_suggest(str(v), [str(a) for a in args])}")
            return v
        if dataclasses.is_dataclass(tp):
            return self.dataclass_(tp, v, path)
        if origin in (list, tuple, Sequence):
            if not isinstance(v, (list, tuple)):
                self.err(path, f"expected a list, got {v!r}")
                return v
            if origin is tuple and args and args[-1] is not Ellipsis:
                if len(v) != len(args):
                    self.err(path, f"expected {len(args)} values, got {len(v)}: {v!r}")
                    return tuple(v)
                return tuple(self.value(a, x, f"{path}[{i}]") for i, (a, x) in enumerate(zip(args, v)))
            item = args[0] if args else Any
            out = [self.value(item, x, f"{path}[{i}]") for i, x in enumerate(v)]
            return tuple(out) if origin is tuple else out
        if origin is dict:
            if not isinstance(v, dict):
                self.err(path, f"expected a mapping, got {v!r}")
                return v
            vt = args[1] if args else Any
            return {str(k): self.value(vt, x, _join(path, str(k))) for k, x in v.items()}
        if tp is bool:
            if not isinstance(v, bool):
                self.err(path, f"expected true or false, got {v!r}")
            return v
        if tp is int:
            if isinstance(v, bool) or not isinstance(v, int):
                self.err(path, f"expected an integer, got {v!r}")
            return v
        if tp is float:
            if isinstance(v, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
                try:
                    return float(v)
                except ValueError:
                    pass
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                self.err(path, f"expected a number, got {v!r}")
                return v
            return float(v)
        if tp is str:
            if not isinstance(v, str):
                self.err(path, f"expected a string, got {v!r}")
            return v
        return v


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def build_config(
    schema: type[T], data: dict[str, Any], *, source: str = "<config>", cli_keys: Iterable[str] = ()
) -> T:
    """Check ``data`` against the dataclass ``schema`` and build it; all errors in one ConfigError."""
    checker = _Checker(source, set(cli_keys))
    obj = checker.dataclass_(schema, data, "")
    if checker.errors:
        n = len(checker.errors)
        raise ConfigError(f"{n} config error{'s' if n > 1 else ''}:\n  " + "\n  ".join(checker.errors))
    return obj  # type: ignore[return-value]


def load_config(
    path: str | Path, overrides: Sequence[str] = (), schema: type | None = None
) -> tuple[Recipe | None, Any]:
    """Load a YAML recipe, apply ``key=value`` overrides and check it.

    Args:
        path: the YAML file.
        overrides: dotted ``key=value`` strings (command-line overrides win).
        schema: check against this dataclass; None = look up the file's ``recipe:`` key
            in :data:`RECIPES`.

    Returns:
        (recipe or None when ``schema`` was given, the config instance).
    """
    data = apply_overrides(read_yaml(path), overrides)
    cli_keys = {".".join(k) for k, _ in parse_overrides(overrides)}
    recipe = None
    if schema is None:
        name = data.get("recipe")
        if not isinstance(name, str):
            load_recipes()
            raise ConfigError(
                f"{path}: missing the 'recipe:' key naming what to run; "
                f"choose from: {', '.join(RECIPES.names())}"
            )
        load_recipes()
        try:
            recipe = RECIPES.get(name)
        except ConfigError as e:
            raise ConfigError(f"{path}: recipe: {e}") from None
        schema = recipe.schema
    return recipe, build_config(schema, data, source=str(path), cli_keys=cli_keys)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict (tuples as lists) of a config dataclass, ready for YAML or JSON."""

    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return plain(dataclasses.asdict(cfg))


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (stored next to every run for reproducibility)."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")
