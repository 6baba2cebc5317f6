"""Build the demo data shipped in ``src/embforge/resources/demo/`` from XQuAD.

Source: github.com/google-deepmind/xquad (commit 7d30520c), CC BY-SA 4.0, as copied
to ``/work/shared/data/xquad``. For each language a BEIR directory:

* ``corpus.jsonl``   the 240 paragraphs (``_id`` = ``<article>-<paragraph>``, title = article title);
* ``queries.jsonl``  all 1190 questions (``_id`` = XQuAD question id, aligned across languages);
* ``qrels/train.tsv`` questions of 36 articles (for fine-tuning / mining);
* ``qrels/test.tsv``  questions of the other 12 articles (every 4th article): held apart,
  neither their questions nor their paragraphs are used as training positives.

Run: ``python scripts/build_demo_data.py [/path/to/xquad]``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

LANGS = ("en", "de", "es")
HELD_APART_EVERY = 4  # article index % 4 == 3 -> test

ATTRIBUTION = """XQuAD demo subset (languages: {langs})

Derived from XQuAD by Artetxe, Ruder and Yogatama (Google DeepMind),
https://github.com/google-deepmind/xquad (commit 7d30520c717524000f0d9d2f9c10a069acd9d285),
itself a professional translation of a SQuAD v1.1 subset (Rajpurkar et al., 2016,
Wikipedia text). License: Creative Commons Attribution-ShareAlike 4.0 International
(CC BY-SA 4.0), full text in LICENSE next to this file.

Changes: converted from SQuAD JSON to the BEIR layout (question -> its paragraph as
a passage-retrieval task); questions split by article into train (36 articles) and
held-apart test (12 articles: every 4th article); answers dropped. This derived data
is shared under the same license, CC BY-SA 4.0.
"""


def build(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    shutil.copy(src / "CC-BY-SA4.0.txt", dst / "LICENSE")
    (dst / "ATTRIBUTION.txt").write_text(ATTRIBUTION.format(langs=", ".join(LANGS)))
    for lang in LANGS:
        data = json.loads((src / f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"]
        out = dst / f"xquad-{lang}"
        (out / "qrels").mkdir(parents=True)
        corpus, queries, qrels = [], [], {"train": [], "test": []}
        for ai, art in enumerate(data):
            split = "test" if ai % HELD_APART_EVERY == HELD_APART_EVERY - 1 else "train"
            for pi, para in enumerate(art["paragraphs"]):
                pid = f"a{ai:02d}-p{pi:02d}"
                corpus.append({"_id": pid, "title": art["title"], "text": para["context"], "lang": lang})
                for qa in para["qas"]:
                    queries.append({"_id": qa["id"], "text": qa["question"], "lang": lang})
                    qrels[split].append((qa["id"], pid))
        with open(out / "corpus.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in corpus)
        with open(out / "queries.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in queries)
        for split, rows in qrels.items():
            with open(out / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as f:
                f.write("query-id\tcorpus-id\tscore\n")
                f.writelines(f"{q}\t{d}\t1\n" for q, d in rows)
        print(lang, len(corpus), "docs", len(qrels["train"]), "train q", len(qrels["test"]), "test q")


if __name__ == "__main__":
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/xquad")
    build(src, Path(__file__).resolve().parents[1] / "src/embforge/resources/demo")
