"""The nv-embed recipe: config checks, stage-2 logits without in-batch negatives, a 2-stage CPU run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from embforge.config import build_config
from embforge.errors import ConfigError
from embforge.losses import InfoNCELoss
from embforge.train.nv_embed_data import SourceConfig, TrainBatch, add_negatives, load_source
from embforge.train.recipes import RECIPES, load_config
from embforge.train.recipes.nv_embed import NVEmbedConfig, NVModelConfig, build_model, stage_loss
from helpers.paths import SHARED_DATA
from helpers.requires import strict

ROOT = Path(__file__).resolve().parents[3]
DATA = SHARED_DATA
XQUAD = DATA / "xquad" / "xquad.en.json"
needs_data = pytest.mark.skipif(not XQUAD.is_file() and not strict(), reason="shared data not available")


def test_shipped_config_loads():
    recipe, cfg = load_config(ROOT / "configs" / "nv-embed.yaml")
    assert recipe.name == "nv-embed" and isinstance(cfg, NVEmbedConfig)
    s1, s2 = cfg.stages
    assert s1.in_batch_negatives and not s2.in_batch_negatives and s2.negatives >= 1
    assert {s.format for s in s2.sources} == {"xquad", "sts", "nli"}
    assert (
        cfg.model.pooling == "latent_attention" and cfg.model.num_latents == 512 and cfg.model.num_heads == 8
    )
    assert cfg.model.lora.enabled and cfg.model.bidirectional


def test_config_errors_listed_together():
    data = {
        "recipe": "nv-embed",
        "model": {"poolin": "mean"},
        "stages": [{"name": "b", "in_batch_negatives": False, "negatives": 0, "sources": []}],
    }
    with pytest.raises(ConfigError) as e:
        build_config(NVEmbedConfig, data, source="x.yaml")
    msg = str(e.value)
    assert "model.poolin: unknown key; did you mean 'pooling'" in msg
    assert "each query needs >= 1 hard negative" in msg and "sources: list at least one data source" in msg


def _tiny_encoder(pooling="latent_attention"):
    m = NVModelConfig(
        tiny_hidden_size=32, tiny_layers=1, tiny_heads=2, num_latents=8, num_heads=4, max_length=32
    )
    m.pooling = pooling
    m.lora.r, m.lora.dropout = 4, 0.0
    return build_model(m, seed=0)


@pytest.mark.parametrize("in_batch", [True, False])
def test_stage2_logits_have_no_in_batch_negatives(monkeypatch, in_batch):
    import embforge.losses.infonce as infonce

    seen = []
    real_ce = infonce.F.cross_entropy
    monkeypatch.setattr(
        infonce.F, "cross_entropy", lambda x, y, **k: seen.append((x, y)) or real_ce(x, y, **k)
    )
    enc = _tiny_encoder()
    batch = TrainBatch("t", ["q one", "q two", "q three"], ["p1", "n1", "p2", "n2", "p3", "n3"], 2, "find it")
    loss_fn = InfoNCELoss(("dense",), temperature=0.05, in_batch_negatives=in_batch)
    out = stage_loss(enc, batch, loss_fn, 32)
    (logits, labels) = seen[-1]
    # the scores the loss saw, recomputed by hand
    from embforge.model.instructions import instruction_prefix
    from embforge.train.recipes.nv_embed import tokenize_with_prefix

    with torch.no_grad():
        q = enc(
            tokenize_with_prefix(enc, batch.queries, instruction_prefix("find it"), 32), heads=("dense",)
        ).dense
        d = enc(tokenize_with_prefix(enc, batch.documents, "", 32), heads=("dense",)).dense
    full = q @ d.T / 0.05  # (Q, Q*G)
    if in_batch:
        assert logits.shape == (3, 6) and labels.tolist() == [0, 2, 4]
        torch.testing.assert_close(logits.detach(), full, atol=1e-5, rtol=1e-5)
    else:
        assert logits.shape == (3, 2) and labels.tolist() == [0, 0, 0]  # own positive + own negative only
        own = torch.stack([full[i, 2 * i : 2 * i + 2] for i in range(3)])
        torch.testing.assert_close(logits.detach(), own, atol=1e-5, rtol=1e-5)
    expected = torch.nn.functional.cross_entropy(logits.detach(), labels)
    torch.testing.assert_close(out.total.detach(), expected)


@needs_data
def test_sources_and_negatives():
    ex = load_source(SourceConfig(format="xquad", path=str(XQUAD), limit=30))
    assert len(ex) == 30 and all(e.negatives for e in ex)  # other paragraphs of the article
    sts = load_source(SourceConfig(format="sts", path=str(DATA / "sts/stsb_en/sts-train.csv"), limit=50))
    assert len(sts) == 50 and not sts[0].negatives
    filled = add_negatives(sts, 3, seed=0)
    assert all(len(e.negatives) == 3 and e.positive not in e.negatives for e in filled)
    assert add_negatives(sts, 3, seed=0)[5].negatives == filled[5].negatives  # seeded
    nli = load_source(SourceConfig(format="nli", path=str(DATA / "nli/snli_esnli"), split="dev", limit=10))
    assert len(nli) == 10 and len(nli[0].negatives) == 1


def _two_stage_data(out: Path) -> dict:
    x = {
        "format": "xquad",
        "path": str(XQUAD),
        "limit": 40,
        "instruction": "Given a question, retrieve the passage",
    }
    sts = {
        "format": "sts",
        "path": str(DATA / "sts/stsb_en/sts-train.csv"),
        "limit": 24,
        "symmetric": True,
        "instruction": "Retrieve semantically similar text",
        "name": "sts",
    }
    nli = {
        "format": "nli",
        "path": str(DATA / "nli/snli_esnli"),
        "limit": 24,
        "name": "nli",
        "instruction": "Retrieve a sentence entailed by the premise",
    }
    stage = {"steps": 3, "batch_size": 4, "negatives": 1, "optim": {"lr": 1e-3}}
    return {
        "recipe": "nv-embed",
        "loop": {"output_dir": str(out), "seed": 3, "log_every": 1, "checkpoint_every": 0, "progress": False},
        "model": {
            "tiny_hidden_size": 32,
            "tiny_layers": 1,
            "tiny_heads": 2,
            "num_latents": 8,
            "num_heads": 4,
            "max_length": 40,
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        },
        "stages": [
            {"name": "retrieval", "in_batch_negatives": True, "sources": [x], **stage},
            {"name": "blend", "in_batch_negatives": False, "sources": [x, sts, nli], **stage},
        ],
    }


@needs_data
def test_two_stage_run_on_cpu(tmp_path):
    from embforge.model.encoder import Encoder
    from embforge.nv_embed.decoder import is_bidirectional

    cfg = build_config(NVEmbedConfig, _two_stage_data(tmp_path / "run"))
    result = RECIPES.get("nv-embed").run(cfg)
    assert result.steps == 6
    stages = [r["stage"] for r in result.log]
    assert stages == ["retrieval"] * 3 + ["blend"] * 3
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [s["in_batch_negatives"] for s in summary["stages"]] == [True, False]
    assert set(summary["stages"][1]["examples"]) == {"xquad.en.json", "sts", "nli"}
    assert 0 < summary["trainable_params"] < summary["params"]  # LoRA + pooling head only
    assert all(np.isfinite(r["loss"]) for r in result.log)

    enc = Encoder.from_pretrained(str(tmp_path / "run" / "final"))
    assert is_bidirectional(enc.backbone) and enc.config.pooling == "latent_attention"
    assert enc.config.query_prefix.startswith("Instruct: ")
    q = enc.encode(["who wrote the book?"], role="query").dense
    assert q.shape == (1, 32)

    # a second run resumes both finished stages from their checkpoints: same model, no new steps
    RECIPES.get("nv-embed").run(cfg)
    again = Encoder.from_pretrained(str(tmp_path / "run" / "final"))
    np.testing.assert_allclose(again.encode(["who wrote the book?"], role="query").dense, q, atol=1e-6)


def test_cached_step_equals_plain_step_with_instructions():
    """GradCache sub-batches keep the instruction pool mask: same loss and gradients as one big step."""
    from embforge.model.instructions import instruction_prefix
    from embforge.train.recipes.nv_embed import tokenize_with_prefix
    from embforge.train.step import cached_step, plain_step

    enc = _tiny_encoder()
    enc.train()
    for m in enc.modules():  # dropout off: both paths must see the same function
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    qs = ["a short question", "what is the longest river in the world today", "why"]
    ds = ["p one", "n one is long enough", "p two", "n two", "p three words", "n3"]
    qb = tokenize_with_prefix(enc, qs, instruction_prefix("find it"), 32)
    db = tokenize_with_prefix(enc, ds, "", 32)
    loss = InfoNCELoss(("dense",), temperature=0.05, in_batch_negatives=False)

    def run(step):
        enc.zero_grad(set_to_none=True)
        out = step(lambda b: enc(b, heads=("dense",)), qb, db, lambda q, d: loss(q, d, group_size=2))
        grads = {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}
        return out.total, grads

    plain, g1 = run(plain_step)
    cached, g2 = run(lambda *a: cached_step(*a, 2))
    torch.testing.assert_close(cached, plain, atol=1e-5, rtol=1e-5)
    assert g1.keys() == g2.keys() and any("latents" in n for n in g1)
    for n in g1:
        torch.testing.assert_close(g2[n], g1[n], atol=1e-5, rtol=1e-4)


def test_check_builds_no_model(tmp_path):
    """``embforge train --check`` only validates: no backbone is built, no output folder written.

    (The recipe module now imports torch at its top: its choices, e.g. the pooling, are read
    from the model's registries; what must stay light is the check, which builds nothing.)
    """
    from typer.testing import CliRunner

    from embforge.cli.app import app

    out = tmp_path / "never"
    res = CliRunner().invoke(
        app, ["train", str(ROOT / "configs" / "nv-embed.yaml"), f"loop.output_dir={out}", "--check"]
    )
    assert res.exit_code == 0, res.output
    assert "is a valid 'nv-embed' config" in res.output
    assert not out.exists()
