"""Recipes retromae / mlm through `embforge train`'s loader; resumable text batches; config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from embforge.errors import ConfigError
from embforge.pretrain.batches import TextBatches
from embforge.train.recipes import load_config

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def ko_setup(tmp_path_factory, ko_texts, ko_tokenizer):
    root = tmp_path_factory.mktemp("pretrain")
    ko_tokenizer.save_pretrained(root / "tok")
    (root / "ko.txt").write_text("\n".join(ko_texts[:200]) + "\n", encoding="utf-8")
    return root


def _tiny_overrides(root: Path, out: Path) -> list[str]:
    return [
        "model.path=null",
        "model.size=xlmr-tiny",
        f"model.tokenizer={root / 'tok'}",
        "model.max_positions=null",
        "model.gradient_checkpointing=false",
        f"data.train_files=[{root / 'ko.txt'}]",
        "data.max_length=32",
        "loop.max_steps=2",
        "loop.batch_size=4",
        "loop.precision=fp32",
        "loop.progress=false",
        f"loop.output_dir={out}",
    ]


@pytest.mark.parametrize("name", ["retromae", "mlm"])
def test_recipe_runs_two_steps_and_saves_encoder(name, ko_setup, tmp_path):
    from embforge.model.encoder import Encoder

    recipe, cfg = load_config(ROOT / "configs" / f"{name}.yaml", _tiny_overrides(ko_setup, tmp_path / "run"))
    assert recipe.name == name
    result = recipe.run(cfg)
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and result.steps == 2
    want = {"retromae/encoder_mlm", "retromae/decoder"} if name == "retromae" else {"mlm"}
    assert want <= set(log[0])
    enc = Encoder.from_pretrained(str(tmp_path / "run" / "final"))
    assert enc.config.pooling == "cls" and enc.hidden_size == 64
    assert enc.encode(["테스트 문장입니다"]).dense.shape == (1, 64)
    from transformers import AutoModelForMaskedLM

    lm = AutoModelForMaskedLM.from_pretrained(tmp_path / "run" / "final-mlm")
    assert lm.config.max_position_embeddings == 34  # 32 tokens + XLM-R's offset of 2


def test_cli_build_then_extend_positions_inside_the_recipe(ko_setup, tmp_path):
    """`embforge pretrain build` (32 tokens) -> retromae with model.max_positions=130 on 128-token texts."""
    from typer.testing import CliRunner

    from embforge.cli.app import app

    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "pretrain",
            "build",
            str(ko_setup / "tok"),
            "-o",
            str(tmp_path / "mlm"),
            "--size",
            "xlmr-tiny",
            "--max-length",
            "32",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "xlmr-tiny" in res.output and "32 tokens" in res.output
    ov = _tiny_overrides(ko_setup, tmp_path / "run")
    ov = [o for o in ov if not o.startswith(("model.", "data.max_length", "loop.max_steps"))]
    ov += [
        f"model.path={tmp_path / 'mlm'}",
        "model.max_positions=130",
        "data.max_length=128",
        "loop.max_steps=1",
    ]
    recipe, cfg = load_config(ROOT / "configs" / "retromae.yaml", ov)
    recipe.run(cfg)
    from embforge.model.encoder import Encoder

    enc = Encoder.from_pretrained(str(tmp_path / "run" / "final"))
    assert enc.model_limit == 128
    # too long for the model without extension: a clear error before any step
    ov[-3] = "model.max_positions=null"
    recipe, cfg = load_config(ROOT / "configs" / "retromae.yaml", ov)
    with pytest.raises(
        ConfigError,
        match=r"data.max_length=128 exceeds the model's 32 positions.*model.max_positions to at least 130",
    ):
        recipe.run(cfg)


def test_cli_extend_positions_and_tokenizer(ko_setup, tmp_path):
    from transformers import AutoModel, AutoTokenizer
    from typer.testing import CliRunner

    from embforge.cli.app import app

    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "pretrain",
            "tokenizer",
            str(ko_setup / "ko.txt"),
            "-o",
            str(tmp_path / "tok"),
            "--vocab-size",
            "1500",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "trained on 200 texts: 1500 tokens" in res.output
    res = runner.invoke(
        app,
        [
            "pretrain",
            "build",
            str(tmp_path / "tok"),
            "-o",
            str(tmp_path / "m"),
            "--size",
            "xlmr-tiny",
            "--max-length",
            "16",
        ],
    )
    assert res.exit_code == 0, res.output
    (tmp_path / "m" / "sparse_linear.pt").write_bytes(b"x")  # head files travel along
    res = runner.invoke(
        app,
        [
            "pretrain",
            "extend-positions",
            "-m",
            str(tmp_path / "m"),
            "-o",
            str(tmp_path / "long"),
            "--max-positions",
            "66",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "positions 18 -> 66 (copy); max tokens 64" in res.output
    assert (tmp_path / "long" / "sparse_linear.pt").read_bytes() == b"x"
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    b = tok(["짧은 문장"], return_tensors="pt")
    short = AutoModel.from_pretrained(tmp_path / "m").eval()
    long = AutoModel.from_pretrained(tmp_path / "long").eval()
    with torch.no_grad():
        assert torch.equal(short(**b).last_hidden_state, long(**b).last_hidden_state)
    assert AutoTokenizer.from_pretrained(tmp_path / "long").model_max_length == 64


def test_config_errors_listed_together(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(
            ROOT / "configs" / "retromae.yaml",
            ["model.size=xlmr-huge", "masking.decoder_mask_rate=1.5", "data.max_length=2"],
        )
    msg = str(e.value)
    assert "3 config errors" in msg or "4 config errors" in msg
    assert "unknown model size 'xlmr-huge'; choose from: xlmr-tiny" in msg
    assert "decoder_mask_rate: must be within [0.0, 0.95], got 1.5" in msg
    assert "max_length: must be >= 3 tokens, got 2" in msg
    with pytest.raises(ConfigError, match="give a masked-LM path/hub id, or size \\+ tokenizer"):
        load_config(ROOT / "configs" / "mlm.yaml", ["model.path=null"])


def test_text_batches_resume_exactly():
    texts = [f"text {i}" for i in range(10)]

    def collate(batch, gen):
        return (tuple(batch), int(torch.randint(1000, (1,), generator=gen)))

    a = TextBatches(texts, 3, collate, seed=5)
    it = iter(a)
    first = [next(it) for _ in range(7)]  # crosses two epoch boundaries (3 batches per epoch)
    b = TextBatches(texts, 3, collate, seed=5)
    b.load_state_dict({"position": 4})
    assert [next(iter(b)) for _ in range(1)] == first[4:5]
    it_b = iter(b)
    assert [next(it_b) for _ in range(2)] == first[5:7]
    assert len({x[0] for x in first[:3]}) == 3  # an epoch never repeats a batch
    flat = [t for x in first[:3] for t in x[0]]
    assert len(set(flat)) == 9  # 3 full batches of 10 texts; the remainder waits for the next epoch
    with pytest.raises(ConfigError, match="loop.batch_size=20 needs at least that many texts, got 10"):
        TextBatches(texts, 20, collate)
