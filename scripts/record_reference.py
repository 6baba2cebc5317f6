"""Record FlagEmbedding's BGE-M3 outputs on the committed tiny checkpoint, for the parity tests.

FlagEmbedding 1.4.2 imports ``transformers.modeling_attn_mask_utils``, which transformers 5
removed, so it cannot run beside embforge's own environment. This script runs in a pinned
reference environment (``make reference`` builds ``.venv-ref`` with transformers 4.57 and
FlagEmbedding 1.4.2) and writes what ``BGEM3FlagModel`` computes for a fixed set of texts on
``tests/parity/reference/tiny-m3`` (a tiny random XLM-R in the BGE-M3 layout, committed) to
``tests/parity/reference/flagembedding-bge-m3.json``. ``tests/parity/test_m3_reference.py``
compares embforge against that file on every ``make test``; it never skips.

Usage (from the repository root):
    make reference                      # build .venv-ref if needed, then run this script
    .venv-ref/bin/python scripts/record_reference.py   # the same, by hand
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "parity" / "reference"
CHECKPOINT = REF / "tiny-m3"
OUT = REF / "flagembedding-bge-m3.json"

QUERIES = ["재판부는 검찰의 공소사실을", "Where does the dog run run run?", "北京 天气"]
DOCS = [
    "재판부는 검찰의 공소사실을 모두 유죄로 인정했다. 검찰은 항소했다.",
    "Der Hund läuft schnell über die Wiese; the dog runs in the park every day.",
    "Погода в Пекине сегодня хорошая, 北京 天气 很好.",
    "A short one.",
]
WEIGHTS = [1.0, 0.3, 1.0]


def _encode(model, texts: list[str]) -> dict:
    out = model.encode(texts, return_dense=True, return_sparse=True, return_colbert_vecs=True, batch_size=2)
    return {
        "dense": [[float(x) for x in row] for row in out["dense_vecs"]],
        "lexical_weights": [{str(k): float(v) for k, v in lw.items()} for lw in out["lexical_weights"]],
        "colbert_vecs": [[[float(x) for x in tok] for tok in vecs] for vecs in out["colbert_vecs"]],
    }


def main() -> int:
    import FlagEmbedding
    import transformers

    if not (CHECKPOINT / "config.json").is_file():
        print(f"{CHECKPOINT} is missing: it is committed with the repository; restore it with git", file=sys.stderr)
        return 2
    model = FlagEmbedding.BGEM3FlagModel(str(CHECKPOINT), devices="cpu", use_fp16=False)
    raw_q, raw_d = (
        model.encode(t, return_dense=True, return_sparse=True, return_colbert_vecs=True, batch_size=2)
        for t in (QUERIES, DOCS)
    )
    lexical = model.compute_lexical_matching_score(raw_q["lexical_weights"], raw_d["lexical_weights"])
    colbert = [[float(model.colbert_score(a, b)) for b in raw_d["colbert_vecs"]] for a in raw_q["colbert_vecs"]]
    pairs = []
    for qt in QUERIES:  # FlagEmbedding's compute_score, one pair at a time (its batched colbert pads)
        for dt in DOCS:
            r = model.compute_score([(qt, dt)], batch_size=1, weights_for_different_modes=WEIGHTS)
            pairs.append({k: float(v[0]) for k, v in r.items()})
    record = {
        "about": "Outputs of FlagEmbedding's BGEM3FlagModel on tests/parity/reference/tiny-m3; "
        "written by scripts/record_reference.py, read by tests/parity/test_m3_reference.py",
        "versions": {
            "FlagEmbedding": getattr(FlagEmbedding, "__version__", "1.4.2"),
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
        "queries": QUERIES,
        "docs": DOCS,
        "weights_for_different_modes": WEIGHTS,
        "all_texts": _encode(model, DOCS + QUERIES),
        "lexical_scores": [[float(x) for x in row] for row in lexical],
        "colbert_scores": colbert,
        "compute_score": pairs,
    }
    fd, tmp = tempfile.mkstemp(dir=REF, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(record, f, ensure_ascii=False, indent=1)
    os.replace(tmp, OUT)
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
