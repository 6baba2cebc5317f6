"""The README's command-line quickstart (mine -> train -> eval -> index -> search) runs verbatim.

The block is read from README.md and run unchanged with ``bash -e``, as
tests/integration/test_docs_snippets.py runs it (there it is ``slow``: the real bundled
all-MiniLM-L6-v2). Here ``EMBFORGE_DEFAULT_MODEL`` points the commands' default model (no
``--model``, ``-m bundled``, ``model.path=null``) at a tiny model shaped like the bundled one
(sentence-transformers layout, dense head only, mean pooling, MiniLM's tokenizer), so the same
text runs in the default suite. Its 64-token limit is below the README's training lengths,
which the recipe clips with one warning.

The tiny model has no transformer layers: its dense vector is the mean of random word vectors
(a bag of words), so the teacher ranks a question's paragraph above most others and
TopK-PercPos mining keeps real negatives, as with the bundled model (a random transformer
scores every pair alike and mining drops every candidate as a likely false negative).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from embforge.model.checkpoint import DEFAULT_MODEL_ENV

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
pytestmark = pytest.mark.integration


def quickstart_block() -> str:
    """The README's bash block that mines, trains, evaluates, indexes and searches."""
    blocks = [
        m.group(1)
        for m in FENCE.finditer((ROOT / "README.md").read_text(encoding="utf-8"))
        if all(f"embforge {c} " in m.group(1) for c in ("mine", "train", "eval", "index", "search"))
    ]
    assert len(blocks) == 1, f"expected one quickstart chain in README.md, found {len(blocks)}"
    return blocks[0]


def test_the_chain_asks_for_what_runs_in_minutes():
    code = quickstart_block()
    assert "loop.max_steps=" in code  # a bounded run, not a full epoch
    n = re.search(r"--negatives (\d+)", code)
    assert n and f"data.num_negatives={n.group(1)}" in code  # mined and trained counts agree


@pytest.fixture(scope="module")
def tiny_default_model(tmp_path_factory) -> Path:
    import torch

    from embforge.model.builders import tiny_bert
    from embforge.model.config import EncoderConfig
    from embforge.model.encoder import Encoder

    backbone, tok = tiny_bert(hidden=64, layers=0, heads=2, seed=0, max_positions=64)
    with torch.no_grad():  # word vectors only: a bag of words
        backbone.embeddings.position_embeddings.weight.zero_()
        backbone.embeddings.token_type_embeddings.weight.zero_()
    out = tmp_path_factory.mktemp("tiny-default") / "model"
    Encoder(backbone, tok, EncoderConfig(heads=["dense"], pooling="mean")).save_pretrained(
        str(out), format="sentence-transformers"
    )
    return out


def test_readme_chain_runs_verbatim_on_a_tiny_model(tiny_default_model, tmp_path):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")  # a checkout's recipes, as train reads them
    env = {
        **os.environ,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT / "src"),
        "MPLBACKEND": "Agg",
        DEFAULT_MODEL_ENV: str(tiny_default_model),
    }
    res = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", quickstart_block()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    n = int(re.search(r"--negatives (\d+)", quickstart_block()).group(1))  # type: ignore[union-attr]
    mined = [json.loads(x) for x in (tmp_path / "mined.jsonl").read_text().splitlines()]
    short = (tmp_path / "mined.jsonl.short.jsonl").read_text().splitlines()
    assert len(mined) > 2 * len(short)  # most queries get their negatives; the rest are counted
    assert all(len(r["neg"]) == n for r in mined)  # every trained query has its negatives
    assert f"{len(short)} examples with fewer negatives written to" in res.stdout
    assert len(re.findall(r"above the model's limit of 64 tokens: clipped to 64", res.stderr)) == 1
    report = json.loads((tmp_path / "runs/eval/report.json").read_text())
    assert set(report["runs"]) == {"base", "m3"}
    assert (tmp_path / "runs/m3/final").is_dir() and (tmp_path / "runs/idx").is_dir()
    assert (tmp_path / "runs/run.trec").read_text().strip()
