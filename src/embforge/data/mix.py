"""The multilingual fine-tuning mix of issue 13: every training source of the shared data, mined.

Sources (each read with the package's own converters, so their validation applies):

* **XQuAD** (Artetxe et al., 2020, "On the Cross-lingual Transferability of Monolingual
  Representations"), every ``xquad.<lang>.json`` found: question -> its paragraph
  (``"<title> <context>"``, the text :func:`embforge.eval.datasets.load_beir` builds).
* **NLI triples**: SNLI line files and KorNLI/XNLI TSVs -> (premise, entailment, contradiction),
  the supervised SimCSE construction (Gao et al., 2021); the contradiction stays the first
  negative, mined ones follow.
* **STS pairs with score >= ``min_sts_score``** (default 4 of 5) as positives: STS-B,
  KorSTS and stsb_multi_mt *train* files (their dev files are evaluation sets).
* **Tatoeba** bitext (Artetxe & Schwenk, 2019) for cross-lingual alignment: non-English
  sentence -> its English translation.

Every query gets hard negatives mined by the teacher with TopK-PercPos (Moreira et al., 2024,
"NV-Retriever": drop candidates scoring above ``perc_pos`` x the positive) from the corpus of
its own group (source, language): the training paragraphs of that XQuAD language, the
hypotheses of that NLI file, the sentences of that STS file, the English side of that Tatoeba
pair. Queries left with fewer than ``n_negatives`` negatives are counted per group and kept
out of the training file (``short.jsonl`` holds them), so a recipe that needs exactly
``n_negatives`` can use the file as is.

**Held-apart split (deterministic, by article):** XQuAD article ``i`` (0-based, file order)
is held apart for evaluation when ``i % 4 == 3`` (12 of 48 articles), the rule of the bundled
demo sets. XQuAD's files are translations of the same articles, so no language's training
data contains any translation of a held-apart paragraph. Tatoeba lines follow the same rule
(line ``i`` held apart when ``i % 4 == 3``), and training pairs sharing a sentence with a
held-apart pair are dropped. The held-apart sets are written next to the training file:
``eval/xquad-<lang>/`` (BEIR: the language's full 240-paragraph corpus, the held-apart
questions in ``qrels/test.tsv``) and ``eval/tatoeba/tatoeba.<xxx>-eng.{<xxx>,eng}``.
Sampling (``*_per_group`` caps) is seeded per group, so a file is the same on every run.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from embforge.data.convert.bitext import find_tatoeba_pairs, read_bitext
from embforge.data.convert.nli import nli_triples, read_nli_lines, read_nli_tsv
from embforge.data.convert.squad import SquadParagraph, find_xquad_files, read_squad, squad_to_beir
from embforge.data.convert.sts import read_sts
from embforge.data.formats import Example
from embforge.data.io import atomic_write, write_beir, write_jsonl
from embforge.data.mining import CorpusIndex, MiningConfig, MiningQuery, MiningStats, mine
from embforge.data.teachers import Teacher
from embforge.errors import DataError

__all__ = [
    "HELD_APART_MOD",
    "MixConfig",
    "MixGroup",
    "held_apart",
    "xquad_groups",
    "nli_groups",
    "sts_groups",
    "tatoeba_groups",
    "collect_groups",
    "build_mix",
]

HELD_APART_MOD = 4
# Tatoeba languages that match the other sources' languages (XQuAD's 11 non-English, Korean).
TATOEBA_LANGS = ("ara", "cmn", "deu", "ell", "hin", "kor", "ron", "rus", "spa", "tha", "tur", "vie")


def held_apart(index: int) -> bool:
    """True for the evaluation share: article (or line) ``index % 4 == 3``.

    >>> [i for i in range(8) if held_apart(i)]
    [3, 7]
    """
    return index % HELD_APART_MOD == HELD_APART_MOD - 1


@dataclass(frozen=True)
class MixConfig:
    """What goes into the mix.

    Attributes:
        xquad_langs: XQuAD languages; None = every ``xquad.<lang>.json`` in ``<data>/xquad``.
        tatoeba_langs: 3-letter Tatoeba codes paired with English.
        sts_files: STS *train* files relative to the data root, with their language.
        nli_sources: (kind, path relative to the data root, language); kind "snli" is a folder
            of line files read with ``nli_split``, kind "tsv" a KorNLI/XNLI TSV.
        min_sts_score: STS pairs scoring at least this are positives.
        per_group: at most this many queries per group (source, language); None = all.
        max_corpus: at most this many mining candidates per group (the sampled queries'
            positives always stay in); None = the whole group. Bounds the teacher's cost.
        seed: seeds the per-group sampling and the final shuffle.
        mining: the TopK-PercPos settings (``n_negatives``, ``top_k``, ``perc_pos``).
    """

    xquad_langs: tuple[str, ...] | None = None
    tatoeba_langs: tuple[str, ...] = TATOEBA_LANGS
    sts_files: tuple[tuple[str, str], ...] = (
        ("sts/stsb_en/sts-train.csv", "en"),
        ("sts/korsts/sts-train.tsv", "ko"),
        ("sts/stsb_multi_mt/stsb-de-train.csv", "de"),
        ("sts/stsb_multi_mt/stsb-es-train.csv", "es"),
        ("sts/stsb_multi_mt/stsb-ru-train.csv", "ru"),
        ("sts/stsb_multi_mt/stsb-zh-train.csv", "zh"),
    )
    nli_sources: tuple[tuple[str, str, str], ...] = (
        ("snli", "nli/snli_esnli", "en"),
        ("tsv", "nli/kornli_xnli_ko/xnli.dev.ko.tsv", "ko"),
    )
    nli_split: str = "dev"
    min_sts_score: float = 4.0
    per_group: int | None = None
    max_corpus: int | None = None
    seed: int = 0
    mining: MiningConfig = field(default_factory=lambda: MiningConfig(top_k=30, n_negatives=1))


@dataclass
class MixGroup:
    """One (source, language) group: its queries, its mining corpus and given negatives."""

    source: str
    lang: str
    queries: list[MiningQuery]
    corpus: list[str]
    given_neg: dict[str, list[str]] = field(default_factory=dict)  # query text -> negatives


def _sample(items: list, cfg: MixConfig, key: str) -> list:
    if cfg.per_group is None or len(items) <= cfg.per_group:
        return items
    return random.Random(f"{cfg.seed}-{key}").sample(items, cfg.per_group)


def _para_text(p: SquadParagraph) -> str:
    return f"{p.title} {p.context}".strip() if p.title else p.context


def _article(p: SquadParagraph) -> int:
    return int(p.doc_id.split("-")[0])


def xquad_groups(data_root: Path, cfg: MixConfig, eval_dir: Path | None) -> Iterator[MixGroup]:
    """One group per XQuAD language (training articles); writes ``eval/xquad-<lang>/`` when asked."""
    files = find_xquad_files(data_root / "xquad")
    langs = cfg.xquad_langs or tuple(sorted(files))
    missing = sorted(set(langs) - set(files))
    if missing:
        raise DataError(
            f"{data_root / 'xquad'}: no xquad.{missing[0]}.json; languages found: {sorted(files)}"
        )
    for lang in langs:
        paras = read_squad(files[lang])
        train = [p for p in paras if not held_apart(_article(p))]
        if eval_dir is not None:
            docs = squad_to_beir(paras)[0]  # the full corpus of the language
            _, queries, qrels = squad_to_beir([p for p in paras if held_apart(_article(p))])
            write_beir(eval_dir / f"xquad-{lang}", docs, queries, qrels, split="test")
        qs = [
            MiningQuery(text, (_para_text(p),), qid, f"xquad-{lang}", lang)
            for p in train
            for qid, text in p.questions
        ]
        yield MixGroup(
            f"xquad-{lang}", lang, _sample(qs, cfg, f"xquad-{lang}"), [_para_text(p) for p in train]
        )


def nli_groups(data_root: Path, cfg: MixConfig) -> Iterator[MixGroup]:
    """One group per NLI source: premise -> entailment, the contradiction as a given negative."""
    for kind, rel, lang in cfg.nli_sources:
        path = data_root / rel
        if kind == "snli":
            s = cfg.nli_split
            rows = read_nli_lines(path / f"s1.{s}", path / f"s2.{s}", path / f"labels.{s}")
        else:
            rows = read_nli_tsv(path)
        name = f"nli-{Path(rel).name}-{lang}"
        triples = list(nli_triples(rows, "first", name, lang))
        picked = _sample(triples, cfg, name)
        queries = [
            MiningQuery(t.query, (t.positive,), f"{name}-{i}", name, lang) for i, t in enumerate(picked)
        ]
        corpus = [x for t in triples for x in (t.positive, t.negative)]
        yield MixGroup(name, lang, queries, corpus, {t.query: [t.negative] for t in picked})


def sts_groups(data_root: Path, cfg: MixConfig) -> Iterator[MixGroup]:
    """One group per STS train file: pairs scoring >= ``min_sts_score`` (sentence1 -> sentence2)."""
    for rel, lang in cfg.sts_files:
        name = f"sts-{Path(rel).stem}-{lang}"
        pairs = list(read_sts(data_root / rel, "auto", lang, name))
        good = [p for p in pairs if p.score >= cfg.min_sts_score and p.sentence1 != p.sentence2]
        picked = _sample(good, cfg, name)
        queries = [
            MiningQuery(p.sentence1, (p.sentence2,), p.id or f"{name}-{i}", name, lang)
            for i, p in enumerate(picked)
        ]
        corpus = [s for p in pairs for s in (p.sentence1, p.sentence2)]
        yield MixGroup(name, lang, queries, corpus)


def tatoeba_groups(data_root: Path, cfg: MixConfig, eval_dir: Path | None) -> Iterator[MixGroup]:
    """One group per Tatoeba language: training lines (not held apart, no shared sentence)."""
    for code, src, eng in find_tatoeba_pairs(data_root / "tatoeba", list(cfg.tatoeba_langs)):
        pairs = list(read_bitext(src, eng, f"{code}-eng", "tatoeba"))
        evals = [p for i, p in enumerate(pairs) if held_apart(i)]
        seen = {s for p in evals for s in (p.query, p.positive)}
        train = [
            p
            for i, p in enumerate(pairs)
            if not held_apart(i) and p.query not in seen and p.positive not in seen
        ]
        if eval_dir is not None:
            for suffix, texts in ((code, [p.query for p in evals]), ("eng", [p.positive for p in evals])):
                with atomic_write(eval_dir / "tatoeba" / f"tatoeba.{code}-eng.{suffix}") as fh:
                    fh.write("".join(t + "\n" for t in texts))
        name = f"tatoeba-{code}"
        queries = [MiningQuery(p.query, (p.positive,), f"{name}-{p.id}", name, code) for p in train]
        yield MixGroup(name, code, _sample(queries, cfg, name), [p.positive for p in train])


def collect_groups(
    data_root: str | os.PathLike, cfg: MixConfig, eval_dir: Path | None = None
) -> list[MixGroup]:
    """Every group of the mix, in a fixed order (XQuAD, NLI, STS, Tatoeba)."""
    root = Path(data_root)
    if not root.is_dir():
        raise DataError(
            f"{root}: not a directory; give the shared data folder (with xquad/, nli/, sts/, tatoeba/)"
        )
    return [
        *xquad_groups(root, cfg, eval_dir),
        *nli_groups(root, cfg),
        *sts_groups(root, cfg),
        *tatoeba_groups(root, cfg, eval_dir),
    ]


def _corpus(g: MixGroup, cfg: MixConfig) -> list[str]:
    """The group's unique candidates, capped at ``max_corpus`` (positives first, then a seeded sample)."""
    pos = list(dict.fromkeys(p for q in g.queries for p in q.positives))
    have = set(pos)
    rest = [t for t in dict.fromkeys(g.corpus) if t not in have]
    if cfg.max_corpus is not None and len(pos) + len(rest) > cfg.max_corpus:
        k = max(0, cfg.max_corpus - len(pos))
        rest = random.Random(f"{cfg.seed}-{g.source}-corpus").sample(rest, k)
    return pos + rest


def _mine_group(g: MixGroup, teacher: Teacher, cfg: MixConfig, stats: MiningStats) -> list[Example]:
    mcfg = cfg.mining
    index = CorpusIndex(_corpus(g, cfg), teacher, mcfg.corpus_batch)
    out = []
    for ex in mine(g.queries, index, teacher, mcfg, stats):
        given = g.given_neg.get(ex.query, [])
        if given:
            mined = [n for n in ex.neg if n not in given]
            neg = (given + mined)[: mcfg.n_negatives]
            ex = Example(ex.query, ex.pos, neg, ex.pos_scores, None, ex.source, ex.lang, ex.id)
        out.append(ex)
    return out


def build_mix(
    data_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    teacher: Teacher,
    cfg: MixConfig = MixConfig(),
    log=None,
) -> dict[str, Any]:
    """Build ``train.jsonl`` (mined, shuffled), ``short.jsonl``, ``eval/`` and ``manifest.json``.

    Returns the manifest: per group the queries kept and short of negatives, the mining
    totals, the split rule and the settings. Every file is written atomically.
    """
    out = Path(out_dir)
    groups = collect_groups(data_root, cfg, out / "eval")
    stats, kept, short, counts = MiningStats(), [], [], {}
    for g in groups:
        exs = _mine_group(g, teacher, cfg, stats)
        ok = [e for e in exs if len(e.neg) >= cfg.mining.n_negatives]
        kept += ok
        short += [e for e in exs if len(e.neg) < cfg.mining.n_negatives]
        counts[g.source] = {
            "lang": g.lang,
            "queries": len(exs),
            "kept": len(ok),
            "corpus": len(_corpus(g, cfg)),
        }
        if log is not None:
            log(f"{g.source}: {len(ok)} of {len(exs)} queries with {cfg.mining.n_negatives} negatives")
    random.Random(cfg.seed).shuffle(kept)
    write_jsonl(out / "train.jsonl", kept)
    write_jsonl(out / "short.jsonl", short)
    manifest = {
        "train": len(kept),
        "short_of_negatives": len(short),
        "groups": counts,
        "mining": stats.as_dict(),
        "split": f"held apart: XQuAD article index % {HELD_APART_MOD} == {HELD_APART_MOD - 1}; "
        f"Tatoeba line index % {HELD_APART_MOD} == {HELD_APART_MOD - 1}",
        "config": json.loads(json.dumps(asdict(cfg), default=str)),
    }
    with atomic_write(out / "manifest.json") as fh:
        fh.write(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return manifest
