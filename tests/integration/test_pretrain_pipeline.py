"""Raw text -> tokenizer -> model from scratch -> RetroMAE -> contrastive pretraining -> M3 fine-tuning,
every stage through the real `embforge` CLI (in process), 2 steps each on a tiny model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers.paths import SHARED_DATA
from helpers.requires import strict

XQUAD = SHARED_DATA / "xquad"
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not XQUAD.exists() and not strict(), reason="shared data not on this machine"),
]


def _xquad(lang: str):
    data = json.loads((XQUAD / f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"][:4]
    paras = [p for art in data for p in art["paragraphs"]]
    return [p["context"] for p in paras], [
        (qa["question"], i) for i, p in enumerate(paras) for qa in p["qas"]
    ]


def test_tokenizer_retromae_contrastive_finetune_from_raw_text(tmp_path):
    from embforge.cli.app import app
    from embforge.model.encoder import Encoder

    run = CliRunner().invoke
    raw, pairs, examples = [], [], []
    rng = random.Random(0)
    for lang in ("en", "de", "vi"):
        ctx, qs = _xquad(lang)
        raw += ctx
        pairs += [{"query": q, "positive": ctx[i], "lang": lang} for q, i in qs]
        examples += [
            {"query": q, "pos": [ctx[i]], "neg": rng.sample([c for j, c in enumerate(ctx) if j != i], 2)}
            for q, i in qs[:24]
        ]
    (tmp_path / "raw.txt").write_text("\n".join(raw) + "\n", encoding="utf-8")
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(p) for p in pairs) + "\n", encoding="utf-8")
    (tmp_path / "ex.jsonl").write_text("\n".join(json.dumps(e) for e in examples) + "\n", encoding="utf-8")
    loop = [
        "loop.max_steps=2",
        "loop.batch_size=4",
        "loop.precision=fp32",
        "loop.progress=false",
        "loop.threads=1",
        "model.gradient_checkpointing=false",
    ]

    r = run(
        app,
        [
            "pretrain",
            "tokenizer",
            str(tmp_path / "raw.txt"),
            "-o",
            str(tmp_path / "tok"),
            "--vocab-size",
            "2000",
        ],
    )
    assert r.exit_code == 0, r.output
    r = run(
        app,
        [
            "pretrain",
            "build",
            str(tmp_path / "tok"),
            "-o",
            str(tmp_path / "scratch"),
            "--size",
            "xlmr-tiny",
            "--max-length",
            "64",
        ],
    )
    assert r.exit_code == 0, r.output
    r = run(
        app,
        [
            "train",
            str(ROOT / "configs/retromae.yaml"),
            f"model.path={tmp_path / 'scratch'}",
            "model.max_positions=130",
            f"data.train_files=[{tmp_path / 'raw.txt'}]",
            "data.max_length=128",
            f"loop.output_dir={tmp_path / 'retromae'}",
            *loop,
        ],
    )
    assert r.exit_code == 0, r.output
    r = run(
        app,
        [
            "train",
            str(ROOT / "configs/arctic-pretrain.yaml"),
            f"model.path={tmp_path / 'retromae/final'}",
            f"data.train_files=[{tmp_path / 'pairs.jsonl'}]",
            "loss.matryoshka_dims=[32]",
            "data.doc_max_length=128",  # the model's limit after the RetroMAE stage
            "loop.sub_batch_size=null",
            f"loop.output_dir={tmp_path / 'contrastive'}",
            *loop,
        ],
    )
    assert r.exit_code == 0, r.output
    r = run(
        app,
        [
            "train",
            str(ROOT / "configs/m3-finetune.yaml"),
            f"model.path={tmp_path / 'contrastive/final'}",
            f"data.train_files=[{tmp_path / 'ex.jsonl'}]",
            "data.num_negatives=2",
            "data.query_max_length=64",  # within the model's 128 positions (checked before step 1)
            "data.doc_max_length=128",
            "loop.sub_batch_size=null",
            f"loop.output_dir={tmp_path / 'finetune'}",
            *loop,
        ],
    )
    assert r.exit_code == 0, r.output
    enc = Encoder.from_pretrained(str(tmp_path / "finetune/final"))
    assert set(enc.heads) == {"dense", "sparse", "multivector"}
    assert enc.model_limit == 128  # the RetroMAE stage extended 64 -> 128 tokens
    emb = enc.encode(["Wer gewann den Super Bowl?"], heads=("dense", "sparse", "multivector"))
    assert emb.dense.shape == (1, 64) and len(emb.sparse) == 1
