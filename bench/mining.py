"""Hard-negative mining: sentence-transformers' mine_hard_negatives vs embforge mine, same model and data.

Data: XQuAD English (1190 questions -> their paragraph; corpus = the 240 paragraphs), from
/work/shared/data. Model: all-MiniLM-L6-v2 (bundled), max 256 tokens, fp32, 2 threads.
Settings: 7 negatives, top 50 candidates, relative margin 0.05 (ST) == TopK-PercPos p = 0.95
(embforge), "top" sampling, exact search (ST without faiss; embforge faiss IndexFlatIP).

Reports wall time of each (embedding included), the speed ratio, how many candidates each
dropped as false negatives, and the agreement of the negative lists on the queries both kept.
Writes bench/results/mining.md; last line ``RESULT ...``.

Run: flock /tmp/embforge-bench.lock python bench/mining.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from embforge.data.convert.squad import read_squad, squad_pairs  # noqa: E402
from embforge.data.io import write_jsonl  # noqa: E402
from embforge.data.mining import MiningConfig, mine_file  # noqa: E402
from embforge.data.teachers import EncoderTeacher  # noqa: E402

DATA = Path(os.environ.get("EMBFORGE_DATA", "/work/shared/data"))
N_NEG, TOP_K, P = 7, 50, 0.95


def run_st(queries, positives, corpus):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from embforge.model.checkpoint import default_model_path

    model = SentenceTransformer(str(default_model_path()), device="cpu")
    model.max_seq_length = 256
    t0, c0 = time.perf_counter(), time.process_time()
    ds = mine_hard_negatives(
        Dataset.from_dict({"anchor": queries, "positive": positives}),
        model,
        corpus=corpus,
        num_negatives=N_NEG,
        range_max=TOP_K,
        relative_margin=1 - P,
        sampling_strategy="top",
        output_format="n-tuple",
        batch_size=64,
        verbose=False,
    )
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {}
    for row in ds:
        out.setdefault((row["anchor"], row["positive"]), [row[f"negative_{i}"] for i in range(1, N_NEG + 1)])
    return dt, cpu, out


def run_embforge(pairs_path: Path, out_path: Path):
    from embforge.model.encoder import Encoder

    enc = Encoder.from_pretrained(None, heads=("dense",))
    teacher = EncoderTeacher(enc, ("dense",), batch_size=64, max_length=256)
    t0, c0 = time.perf_counter(), time.process_time()
    stats = mine_file(pairs_path, out_path, teacher, MiningConfig(top_k=TOP_K, n_negatives=N_NEG, perc_pos=P))
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {}
    for line in out_path.read_text().splitlines():
        ex = json.loads(line)
        out.setdefault((ex["query"], ex["pos"][0]), ex["neg"])
    return dt, cpu, out, stats


def main() -> None:
    torch.set_num_threads(2)
    paras = read_squad(DATA / "xquad/xquad.en.json")
    pairs = list(squad_pairs(paras, "en", "xquad-en"))
    queries, positives = [p.query for p in pairs], [p.positive for p in pairs]
    corpus = [p.context for p in paras]
    tmp = Path(tempfile.mkdtemp())
    write_jsonl(tmp / "pairs.jsonl", pairs)
    # the corpus for embforge: the positives of the input == the 240 paragraphs
    st_time, st_cpu, st_out = run_st(queries, positives, corpus)
    ef_time, ef_cpu, ef_out, stats = run_embforge(tmp / "pairs.jsonl", tmp / "mined.jsonl")
    full_ef = {k: v for k, v in ef_out.items() if len(v) == N_NEG}
    both = sorted(set(st_out) & set(full_ef))
    same_list = sum(st_out[k] == full_ef[k] for k in both)
    overlap = sum(len(set(st_out[k]) & set(full_ef[k])) for k in both) / max(len(both) * N_NEG, 1)
    ratio, cpu_ratio = st_time / ef_time, st_cpu / ef_cpu
    rows = [
        "| tool | wall s (embed + mine) | CPU s | distinct pairs with 7 negatives | false negatives dropped |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| sentence-transformers mine_hard_negatives (relative_margin 0.05) | {st_time:.1f} | {st_cpu:.1f} | {len(st_out)} | (not reported per run) |",
        f"| embforge mine (TopK-PercPos p=0.95) | {ef_time:.1f} | {ef_cpu:.1f} | {len(full_ef)} | {stats.dropped_false_negative} of {stats.candidates} candidates |",
        "",
        f"Speed ratio (ST time / embforge time): wall {ratio:.2f}x, CPU {cpu_ratio:.2f}x. Both encode the same "
        "240 paragraphs and 1190 questions once; encoding dominates the time.",
    ]
    text = "\n".join(
        [
            "# Hard-negative mining: embforge vs sentence-transformers",
            "",
            f"XQuAD en: {len(pairs)} (question, paragraph) pairs, corpus {len(corpus)} paragraphs; "
            "all-MiniLM-L6-v2, max 256 tokens, fp32, torch 2 threads, top 50, 7 negatives, "
            "relative margin 0.05 == TopK-PercPos 0.95, top sampling. The machine was shared with "
            "other jobs (2 cores for 8 engineers), so wall times are noisy; the ratio is from one back-to-back run.",
            "",
            *rows,
            "",
            f"Agreement on the {len(both)} distinct (query, positive) pairs both kept with 7 negatives: "
            f"identical negative lists {same_list}/{len(both)} ({100 * same_list / max(len(both), 1):.1f}%), "
            f"negative-set overlap {100 * overlap:.1f}%.",
            "",
            "Command: `flock /tmp/embforge-bench.lock /work/main/.venv/bin/python bench/mining.py`",
            "",
            f"RESULT mine_vs_st={ratio:.2f} mine_vs_st_cpu={cpu_ratio:.2f} identical_lists_pct={100 * same_list / max(len(both), 1):.1f} "
            f"negative_overlap_pct={100 * overlap:.1f} fn_dropped={stats.dropped_false_negative}",
        ]
    )
    out = ROOT / "bench" / "results" / "mining.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
