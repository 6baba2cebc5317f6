"""Config schemas: YAML + dotted overrides, all errors at once, did-you-mean."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from embforge.config import (
    apply_overrides,
    build_config,
    config_to_dict,
    load_config,
    parse_overrides,
    read_yaml,
)
from embforge.errors import ConfigError
from embforge.losses import LOSSES, InfoNCELoss
from embforge.train import recipes
from embforge.train.recipes.contrastive import ContrastiveConfig, LossConfig
from embforge.train.recipes.mlm import MLMRecipeConfig
from embforge.train.settings import LoopConfig, ModelConfig, OptimConfig, ScheduleConfig


@dataclass
class Toy:
    recipe: str = "toy"
    name: str = "x"
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    dims: list[int] = field(default_factory=list)
    mode: Literal["a", "b"] = "a"


def test_defaults_and_overrides_typed():
    cfg = build_config(
        Toy,
        apply_overrides(
            {},
            [
                "optim.lr=3e-4",
                "loop.batch_size=64",
                "dims=[256, 128]",
                "model.heads=[dense,sparse]",
                "loop.sub_batch_size=null",
            ],
        ),
    )
    assert cfg.optim.lr == 3e-4 and cfg.loop.batch_size == 64 and cfg.dims == [256, 128]
    assert cfg.model.heads == ["dense", "sparse"] and cfg.loop.sub_batch_size is None
    assert isinstance(cfg.optim.betas, tuple)
    assert config_to_dict(cfg)["optim"]["betas"] == [0.9, 0.999]


def test_all_errors_reported_at_once_with_file_and_suggestion(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(
        "recipe: toy\nloop:\n  batch_sze: 3\n  seed: abc\noptim:\n  lr: -1\nmode: c\nmodel:\n  heads: [dense, colbert]\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(p, ["loop.max_stepz=3"], schema=Toy)
    msg = str(e.value)
    assert msg.startswith("6 config errors:")
    assert f"{p}: loop.batch_sze: unknown key; did you mean 'batch_size'?" in msg
    assert "command line: loop.max_stepz: unknown key; did you mean 'max_steps'?" in msg
    assert f"{p}: loop.seed: expected an integer, got 'abc'" in msg
    assert f"{p}: optim.lr: must be > 0, got -1" in msg
    assert f"{p}: mode: 'c' is not allowed;" in msg and "(allowed: a, b)" in msg
    assert "model.heads: unknown head 'colbert'; choose from: dense, multivector, sparse" in msg


def test_missing_required_key():
    @dataclass
    class Need:
        path: str

    with pytest.raises(ConfigError, match=r"<config>: path: missing required key \(str\)"):
        build_config(Need, {})


def test_bad_override_syntax_and_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        parse_overrides(["loop.batch_size"])
    p = tmp_path / "x.yaml"
    p.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(ConfigError, match=r"x.yaml:\d+: invalid YAML"):
        read_yaml(p)
    with pytest.raises(ConfigError, match="does not exist"):
        read_yaml(tmp_path / "nope.yaml")


def test_unknown_recipe_lists_choices(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("recipe: nosuch\n")
    with pytest.raises(ConfigError, match="recipe: unknown recipe 'nosuch'; choose from:"):
        recipes.load_config(p)
    p.write_text("loop: {}\n")
    with pytest.raises(ConfigError, match="missing the 'recipe:' key"):
        recipes.load_config(p)


def test_schedule_validation():
    with pytest.raises(ConfigError, match="linear_decay has no warmup"):
        build_config(ScheduleConfig, {"name": "linear_decay", "warmup_ratio": 0.1})
    with pytest.raises(ConfigError, match="'wds' is not allowed; did you mean 'wsd'"):
        build_config(ScheduleConfig, {"name": "wds"})


def test_choices_come_from_the_registries():
    """loss, pooling, schedule, position init and save format are checked against their registries."""
    data = {
        "data": {"train_files": ["x.jsonl"]},
        "loss": {"name": "infonse"},
        "model": {"pooling": "maen"},
        "schedule": {"name": "wds"},
    }
    with pytest.raises(ConfigError) as e:
        build_config(ContrastiveConfig, data, source="c.yaml")
    msg = str(e.value)
    assert msg.startswith("3 config errors:")
    assert (
        "c.yaml: loss.name: 'infonse' is not allowed; did you mean 'infonce'? (allowed: distill, infonce, m3"
        in msg
    )
    assert "c.yaml: model.pooling: 'maen' is not allowed; did you mean 'mean'? (allowed: " in msg
    assert "c.yaml: schedule.name: 'wds' is not allowed; did you mean 'wsd'?" in msg
    pre = {"data": {"train_files": ["x.txt"]}, "model": {"position_init": "rand", "save_format": "bge_m3"}}
    with pytest.raises(ConfigError) as e:
        build_config(MLMRecipeConfig, pre)
    msg = str(e.value)
    assert "model.position_init: 'rand' is not allowed; did you mean 'random'? (allowed: copy, random)" in msg
    assert "model.save_format: 'bge_m3' is not allowed; did you mean 'bge-m3'?" in msg
    assert "model.pooling: 'cls'" not in msg  # null pooling (the checkpoint's own) stays valid


def test_a_registered_loss_is_a_valid_choice_without_schema_edits():
    name = "test_only_infonce_copy"
    LOSSES.add(name, lambda **kw: InfoNCELoss(heads=kw["heads"]))
    try:
        cfg = build_config(ContrastiveConfig, {"data": {"train_files": ["x"]}, "loss": {"name": name}})
        assert isinstance(cfg.loss.build(["dense"]), InfoNCELoss)
    finally:
        LOSSES._items.pop(name)


def test_loss_config_builds_every_registered_loss():
    for name in ("infonce", "m3", "simcse_unsup", "simcse_sup", "distill"):
        loss = LossConfig(name=name, temperature=0.1).build(["dense", "sparse", "multivector"])
        assert loss.temperature == 0.1
    assert LossConfig(name="simcse_sup").build(["dense"]).temperature == 0.05  # the paper default kept
