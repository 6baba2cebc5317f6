"""Every shipped config loads; each of ours runs 2 steps on a tiny model; bad input fails before a step."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from embforge.errors import ConfigError, DataError  # noqa: E402
from embforge.train.recipes import load_config  # noqa: E402
from helpers.train_fixtures import build_tiny_encoder, tiny_overrides, write_data

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
OURS = ["m3-finetune", "arctic-finetune", "arctic-pretrain", "simcse-unsup", "simcse-sup"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return build_tiny_encoder(root / "model"), write_data(root / "data")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_loads(path):
    assert path.read_text().lstrip().startswith("#"), f"{path.name} needs a how-to-run header"
    recipe, cfg = load_config(path)
    assert recipe is not None and cfg.recipe == recipe.name


@pytest.mark.parametrize("name", OURS)
def test_recipe_runs_two_steps(name, tiny, tmp_path):
    model, data = tiny
    ov = tiny_overrides(name, model, data, tmp_path / "run")
    if name.startswith("arctic"):
        ov.append("loss.matryoshka_dims=[16]")
    if name == "arctic-pretrain":
        ov.append("loop.precision=bf16")  # the autocast path (slow but correct on CPUs without AMX)
    recipe, cfg = load_config(ROOT / "configs" / f"{name}.yaml", ov)
    result = recipe.run(cfg)
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    parts = {
        "m3": {"infonce/dense", "infonce/sparse", "infonce/multivector", "infonce/inter", "kd/dense"},
        "infonce": {"infonce/dense", "infonce/dense@16"} if name.startswith("arctic") else {"infonce/dense"},
        "simcse_unsup": {"simcse_unsup/dense"},
        "simcse_sup": {"simcse_sup/dense"},
    }[cfg.loss.name]
    assert parts <= set(log[0]), log[0]
    assert all(r["loss"] > 0 for r in log)
    assert (tmp_path / "run" / "final" / "config.json").is_file()
    assert result.steps == 2


def test_config_typos_all_listed_before_anything_runs(tmp_path):
    p = ROOT / "configs" / "m3-finetune.yaml"
    with pytest.raises(ConfigError) as e:
        load_config(p, ["loop.batch_sise=8", "loss.temprature=0.1", "loss.name=m4"])
    msg = str(e.value)
    assert "3 config errors" in msg
    assert "did you mean 'batch_size'" in msg and "did you mean 'temperature'" in msg
    assert "'m4' is not allowed; did you mean 'm3'" in msg


def test_negative_count_mismatch_fails_before_a_step(tiny, tmp_path):
    model, data = tiny
    ov = tiny_overrides("m3-finetune", model, data, tmp_path / "run") + ["data.num_negatives=5"]
    recipe, cfg = load_config(ROOT / "configs" / "m3-finetune.yaml", ov)
    with pytest.raises(
        DataError,
        match=r"24 example\(s\) have fewer than data.num_negatives=5 hard negatives "
        r"\(.*examples.jsonl:1 has 3",
    ):
        recipe.run(cfg)
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_empty_source_fails_before_a_step(tiny, tmp_path):
    model, data = tiny
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    ov = tiny_overrides("simcse-sup", model, data, tmp_path / "run")
    ov[1] = f"data.train_files=[{data['triples']},{empty}]"
    recipe, cfg = load_config(ROOT / "configs" / "simcse-sup.yaml", ov)
    with pytest.raises(DataError, match="empty.jsonl' holds no records"):
        recipe.run(cfg)
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="the m3 loss trains all three heads"):
        load_config(ROOT / "configs" / "m3-finetune.yaml", ["model.heads=[dense]"])
    with pytest.raises(ConfigError, match="simcse_sup needs 1 negative"):
        load_config(ROOT / "configs" / "simcse-sup.yaml", ["data.num_negatives=0"])


def test_gradient_checkpointing_is_enabled_on_the_backbone():
    from embforge.model.builders import tiny_bert
    from embforge.train.runtime import enable_checkpointing

    backbone, _ = tiny_bert()
    name = (
        "is_activation_checkpointing"
        if hasattr(backbone, "is_activation_checkpointing")
        else ("is_gradient_checkpointing")
    )
    assert not getattr(backbone, name)
    enable_checkpointing(backbone)
    assert getattr(backbone, name)


@pytest.mark.parametrize(
    "extra,parts",
    [
        (["loss.name=distill", "loss.infonce_weight=0.5"], {"kd/dense", "infonce/dense"}),
        (["loss.in_batch_negatives=false"], {"infonce/dense", "infonce/dense@16"}),
    ],
    ids=["distill-teacher-scores", "in-batch-off"],
)
def test_loss_variants_run(extra, parts, tiny, tmp_path):
    model, data = tiny
    ov = tiny_overrides("arctic-finetune", model, data, tmp_path / "run") + [
        "loss.matryoshka_dims=[16]",
        *extra,
    ]
    recipe, cfg = load_config(ROOT / "configs" / "arctic-finetune.yaml", ov)
    recipe.run(cfg)
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert parts <= set(log[-1]) and len(log) == 2


def test_m3_self_distillation_joins_after_start_step(tiny, tmp_path, capsys):
    model, data = tiny
    ov = tiny_overrides("m3-finetune", model, data, tmp_path / "run") + ["loss.self_distill_start_step=1"]
    recipe, cfg = load_config(ROOT / "configs" / "m3-finetune.yaml", ov)
    recipe.run(cfg)
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert "kd/dense" not in log[0] and "infonce/inter" in log[0]
    assert "kd/dense" in log[1]
    assert [r["self_distill"] for r in log] == [0.0, 1.0]
    err = capsys.readouterr().err
    assert "step 1: m3 warm-up: InfoNCE only (L) until step 1" in err
    assert "step 2: m3 self-distillation (L + L')" in err
    for r in log:  # the teacher's per-head shares of Var(s_inter) and its own InfoNCE, every step
        shares = [r[f"teacher/share_{h}"] for h in ("dense", "sparse", "multivector")]
        assert sum(shares) == pytest.approx(1.0, abs=1e-4) and r["infonce/inter"] > 0


@pytest.mark.parametrize("init", ["balanced", "ones", "idf"])
def test_sparse_init_applies_to_a_model_without_sparse_weights(init, tmp_path, capsys):
    from embforge.model.encoder import Encoder

    model = build_tiny_encoder(tmp_path / "model", heads=("dense", "multivector"))
    data = write_data(tmp_path / "data")
    ov = tiny_overrides("m3-finetune", model, data, tmp_path / "run")
    ov += [f"model.sparse_init={init}", "loop.max_steps=1", "optim.lr=1e-12"]
    recipe, cfg = load_config(ROOT / "configs" / "m3-finetune.yaml", ov)
    recipe.run(cfg)
    err = capsys.readouterr().err
    assert f"model.sparse_init={init}:" in err
    lin = Encoder.from_pretrained(str(tmp_path / "run" / "final")).sparse_head.linear.requires_grad_(False)
    if init == "idf":
        assert re.search(r"idf fit on \d+ texts \(\d+ tokens, correlation", err)
        assert float(lin.weight.abs().sum()) > 0
    else:
        assert float(lin.weight.abs().sum()) < 1e-6  # lr 1e-12: the step leaves the init as it was
        assert float(lin.bias) == pytest.approx({"balanced": 0.4, "ones": 1.0}[init], abs=1e-6)


def test_sparse_init_keeps_trained_weights(tiny, tmp_path, capsys):
    model, data = tiny
    ov = tiny_overrides("m3-finetune", model, data, tmp_path / "run") + [
        "model.sparse_init=ones",
        "loop.max_steps=1",
    ]
    recipe, cfg = load_config(ROOT / "configs" / "m3-finetune.yaml", ov)
    recipe.run(cfg)
    assert "model.sparse_init" not in capsys.readouterr().err


def test_token_limit_above_the_model_limit_is_clipped_with_one_warning(tiny, tmp_path, caplog):
    model, data = tiny
    ov = tiny_overrides("m3-finetune", model, data, tmp_path / "run") + [
        "data.doc_max_length=100000",
        "data.query_max_length=99999",
        "loop.max_steps=1",
    ]
    recipe, cfg = load_config(ROOT / "configs" / "m3-finetune.yaml", ov)
    with caplog.at_level("WARNING", logger="embforge"):
        recipe.run(cfg)
    said = [r.getMessage() for r in caplog.records if "above the model's limit" in r.getMessage()]
    assert len(said) == 1, said
    assert re.search(
        r"data.query_max_length = 99999, data.doc_max_length = 100000 above the model's limit "
        r"of (\d+) tokens: clipped to \1",
        said[0],
    )
    assert cfg.data.doc_max_length == cfg.data.query_max_length < 99999
    assert (tmp_path / "run" / "log.jsonl").exists()


def test_length_buckets_vary_the_batch_size_by_length(tiny, tmp_path, capsys):
    """BGE M3 batching: a bucket of longer texts gets a smaller batch (about equal tokens per step)."""
    model, data = tiny
    ov = tiny_overrides("m3-finetune", model, data, tmp_path / "run") + [
        "data.length_buckets=[10,40]",
        "loop.batch_size=4",
        "data.one_source_per_batch=false",
        "loop.max_steps=6",
    ]
    recipe, cfg = load_config(ROOT / "configs" / "m3-finetune.yaml", ov)
    recipe.run(cfg)
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 6 and {r["batch_size"] for r in log} <= {4.0, 1.0}
    err = capsys.readouterr().err
    assert "data.length_buckets [10, 40]: all@10: " in err and "x batch 4" in err


def test_length_buckets_must_increase():
    with pytest.raises(ConfigError, match="length_buckets: must be increasing"):
        load_config(ROOT / "configs" / "m3-finetune.yaml", ["data.length_buckets=[512,128]"])
