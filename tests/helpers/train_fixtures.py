"""Tiny model + tiny data files for recipe tests (fixed seeds, offline)."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = (
    "alpha beta gamma delta river mountain city music paper stone light green quick slow "
    "north south water fire garden window market bridge"
).split()


def build_tiny_encoder(
    out: Path, hidden: int = 32, heads: tuple[str, ...] = ("dense", "sparse", "multivector")
) -> Path:
    from embforge.model.builders import tiny_bert
    from embforge.model.config import EncoderConfig
    from embforge.model.encoder import Encoder

    backbone, tok = tiny_bert(hidden=hidden, layers=2, heads=2, seed=0)
    import torch

    torch.manual_seed(1)
    enc = Encoder(backbone, tok, EncoderConfig(heads=list(heads), pooling="cls"))
    enc.save_pretrained(str(out))
    return out


def _sent(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def write_data(root: Path, n: int = 24, seed: int = 0) -> dict[str, Path]:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    examples = root / "examples.jsonl"
    with open(examples, "w") as f:
        for i in range(n):
            negs = [_sent(rng, 3, 12) for _ in range(3)]
            rec = {
                "query": _sent(rng, 2, 5),
                "pos": [_sent(rng, 3, 12)],
                "neg": negs,
                "pos_scores": [0.9],
                "neg_scores": [0.5, 0.4, 0.3],
                "lang": "en" if i % 2 else "de",
            }
            f.write(json.dumps(rec) + "\n")
    triples = root / "triples.jsonl"
    with open(triples, "w") as f:
        for _ in range(n):
            f.write(
                json.dumps(
                    {"query": _sent(rng, 3, 8), "positive": _sent(rng, 3, 8), "negative": _sent(rng, 3, 8)}
                )
                + "\n"
            )
    sentences = root / "sentences.txt"
    sentences.write_text("\n".join(_sent(rng, 3, 10) for _ in range(n)) + "\n")
    return {"examples": examples, "triples": triples, "sentences": sentences}


def tiny_overrides(config_name: str, model: Path, data: dict[str, Path], out: Path) -> list[str]:
    """Overrides that shrink a shipped recipe to 2 steps on the tiny model and data."""
    kind = {"simcse-unsup": "sentences", "simcse-sup": "triples"}.get(config_name, "examples")
    ov = [
        f"model.path={model}",
        f"data.train_files=[{data[kind]}]",
        "loop.max_steps=2",
        "loop.batch_size=4",
        f"loop.output_dir={out}",
        "loop.precision=fp32",
        "loop.progress=false",
        "loop.threads=1",
        "data.query_max_length=16",
        "data.doc_max_length=24",
    ]
    if kind == "examples":
        ov += ["data.num_negatives=2"]
    return ov
