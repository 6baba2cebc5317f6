"""Sparse (lexical) head: ``w_t = ReLU(W_lex^T H[t])`` (B, T), one weight per token.

BGE-M3 (Chen et al., 2024, "BGE M3-Embedding"): special and padding tokens weigh 0;
a term repeated in a text keeps its max weight; the score is
``s_lex = sum_{t in q and p} w_qt * w_pt`` (``embforge.scoring.lexical_scores``,
``sparse_vector_scores`` on encoded CSR vectors). BGE-M3 layout: ``sparse_linear.pt``
(a Linear H->1 state dict).

Term aggregation (``EncoderConfig.sparse_aggregation``, ``SPARSE_AGGREGATIONS``):

* ``max`` (the default, BGE-M3's formula): a repeated term keeps its max weight, so a term
  counts the same whether a passage says it once or ten times.
* ``max_tf``: the max weight times BM25's term-frequency part (Robertson & Zaragoza, 2009)
  ``g(c, L) = c (k1 + 1) / (c + k1 (1 - b + b L / avg_length))``, ``k1 = 1.2``, ``b = 0.75``,
  ``c`` the term's count in the text, ``L`` the text's kept tokens and ``avg_length``
  (``EncoderConfig.sparse_avg_length``) a constant the model carries -- the training documents'
  mean length, set by the training recipe -- since a model cannot see the corpus it will score;
  without it ``b = 0`` (saturation only, ``g(1) = 1``). A query's terms (all seen once) share one
  factor, so its ranking is the ``max`` ranking with term frequency and length added on the
  document side. Applied per token in ``weights`` (``w_t * g(c(t), L)``: the max over a term's
  tokens is then ``g * max w``), so training scores, encoded sparse vectors, indexes and the ONNX
  graph all carry it. Measured on the quality sets (``bench/research/sparse_ceiling.py``, IDF
  term weights, documents cut at 512 tokens): one weight per distinct term, what ``max`` can
  express, tops at 0.586 nDCG@10 (BM25 on whole documents 0.640); with ``g`` and the training
  documents' mean length 0.659, non-English XQuAD 0.631 vs BM25 0.608.

Initialisation when a checkpoint has no sparse weights (``SPARSE_INITS``; the paper
starts from a random ``W_lex``):

* ``balanced`` (the default): ``W_lex = 0, b = 0.4`` -- every non-special token weighs
  0.4, so ``s_lex = 0.16 x (shared distinct terms)``. With ``b = 1`` the raw lexical score
  spreads 10-30x wider per query than dense cosine or MaxSim (all-MiniLM-L6-v2 on XQuAD:
  std 0.9-1.8 vs 0.05-0.10) and makes up 67-88% of the variance of the hybrid and of the
  M3 teacher ``1*s_dense + 0.3*s_lex + 1*s_mul``; ``b = 0.4`` (lexical x0.16) gives the teacher
  shares ~0.39 / 0.34 / 0.27 at step 0, the best teacher InfoNCE of the scales tried
  (1, 0.5, 0.16, 0.05) on XQuAD en/de/es/tr, and lifted the raw (1, 0.3, 1) hybrid by ~0.04
  nDCG@10 on two seeds (measurements: docs/quality.md).
  The ranking of the sparse head alone is the same for any ``b > 0`` (a count of shared terms).
* ``ones``: ``W_lex = 0, b = 1`` (every token weighs 1; the earlier default).
* ``idf``: a ridge fit of ``(W_lex, b)`` on the backbone's hidden states so that the token
  weight tracks the token's IDF over a corpus (``init_sparse_head(enc, "idf", texts)``):
  untrained sparse nDCG@10 0.722 -> 0.782 over five sets (docs/quality.md).
* ``idf_terms``: adds a per-vocabulary term weight ``e`` (``EncoderConfig.sparse_term_weights``):
  ``w_t = ReLU(W_lex^T H[t] + b + e[id_t])``, started at ``W_lex = 0, b = 0`` and ``e`` = the
  training documents' IDF (normalised to mean ``IDF_SCALE``), so the untrained head is BM25's term
  weight exactly and training learns the contextual part on top. Why: the hidden states of a
  backbone whose vocabulary splits a script into characters (all-MiniLM-L6-v2 on Greek, Russian)
  carry little of a token's rarity, so the ridge fit (correlation ~0.8) leaves those tokens'
  weights flat; IDF per id is what BM25 uses there. With ``e = 0`` the head is BGE-M3's formula.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from embforge.model.heads.base import Head, HeadOptions, _need
from embforge.scoring import lexical_scores, sparse_vector_scores
from embforge.types import Batch, EmbeddingOutput, Embeddings, SparseVectors

__all__ = [
    "SparseHead",
    "SPARSE_AGGREGATIONS",
    "TF_K1",
    "TF_B",
    "tf_saturation",
    "SPARSE_INITS",
    "BALANCED_BIAS",
    "IDF_SCALE",
    "init_sparse_head",
    "fit_idf_weights",
    "token_idf",
]

logger = logging.getLogger("embforge")

#: Term aggregations of a sparse head (module doc): ``max`` (BGE-M3) or ``max_tf``.
SPARSE_AGGREGATIONS = ("max", "max_tf")
#: ``max_tf``: BM25's term-frequency saturation and length-normalisation constants.
TF_K1 = 1.2
TF_B = 0.75
#: Names of the initialisations of a sparse head without trained weights (module doc).
SPARSE_INITS = ("balanced", "ones", "idf", "idf_terms")
#: ``balanced``: the bias of ``W_lex = 0`` (token weight); measured, see the module doc.
BALANCED_BIAS = 0.4
#: ``idf``: mean token weight of the fitted head (IDF normalised to mean 1, times this); 0.3 is
#: the scale measured with the IDF fit (FINDINGS: fine-tuned IDF head equals BM25 on dbpedia).
IDF_SCALE = 0.3


class SparseHead(Head):
    """Lexical weights: (B, T, H) -> (B, T); ``special_ids`` and padding get weight 0."""

    bge_m3_file = "sparse_linear.pt"
    special_ids: torch.Tensor  # (S,) sorted special token ids (a buffer)

    def __init__(
        self,
        hidden_size: int,
        special_ids: list[int],
        aggregation: str = "max",
        avg_length: float | None = None,
        term_weights: int | None = None,
    ) -> None:
        super().__init__()
        if aggregation not in SPARSE_AGGREGATIONS:
            raise ValueError(
                f"sparse_aggregation: unknown {aggregation!r}; choose from: {', '.join(SPARSE_AGGREGATIONS)}"
            )
        self.aggregation = aggregation
        self.avg_length = avg_length
        self.linear = nn.Linear(hidden_size, 1)
        #: (V,) per-vocabulary term weight ``e`` added before the ReLU (``idf_terms``); None = BGE-M3's head.
        self.term_weight: nn.Parameter | None = None
        if term_weights:
            self.enable_term_weights(term_weights)
        self.register_buffer(
            "special_ids", torch.tensor(sorted(set(special_ids)), dtype=torch.long), persistent=False
        )

    @classmethod
    def build(cls, hidden_size: int, tokenizer: Any, config: Any) -> SparseHead:
        special = [i for i in getattr(tokenizer, "all_special_ids", []) if i is not None]
        return cls(
            hidden_size,
            special,
            getattr(config, "sparse_aggregation", "max"),
            getattr(config, "sparse_avg_length", None),
            _vocab_size(tokenizer) if getattr(config, "sparse_term_weights", False) else None,
        )

    def enable_term_weights(self, vocab_size: int) -> None:
        """Add the (V,) term weights ``e`` (zeros: the head's scores are unchanged until they are set)."""
        if self.term_weight is None or len(self.term_weight) != vocab_size:
            self.term_weight = nn.Parameter(torch.zeros(vocab_size, device=self.linear.weight.device))

    def weights(
        self, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Per-token weights (B, T), 0 at special and padding tokens (times ``g(c)`` for ``max_tf``)."""
        logit = self.linear(hidden).squeeze(-1)  # (B, T)
        if self.term_weight is not None:
            logit = logit + self.term_weight[input_ids]  # (B, T): the term's own weight e[id]
        w = torch.relu(logit)
        # == against each special id (few) rather than torch.isin: same result, and it exports to ONNX
        special = (input_ids.unsqueeze(-1) == self.special_ids).any(-1)
        keep = (attention_mask.bool() & ~special).to(w.dtype)  # (B, T)
        if self.aggregation == "max_tf":
            keep = keep * tf_saturation(input_ids, keep, avg_length=self.avg_length)
        return w * keep

    def forward(self, hidden: torch.Tensor, batch: Batch, opts: HeadOptions) -> dict[str, torch.Tensor]:
        return {"sparse": self.weights(hidden, batch.input_ids, batch.attention_mask)}

    def file_module(self) -> nn.Module:
        return self.linear

    #: Init ``init_missing`` applies ("balanced" or "ones"; "idf" needs a corpus: ``init_sparse_head``).
    missing_init: str = "balanced"
    #: True when the weights came from ``init_missing`` (no trained weights in the checkpoint).
    untrained: bool = False

    def init_constant(self, bias: float) -> str:
        """``W_lex = 0, b = bias``: every non-special token weighs ``bias``."""
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.fill_(float(bias))
        return f"W_lex=0, b={bias:g} (every non-special token weighs {bias:g})"

    def init_missing(self) -> str:
        self.untrained = True
        return self.init_constant(1.0 if self.missing_init == "ones" else BALANCED_BIAS)

    # ------------------------------------------------------------ numpy
    def to_numpy(self, out: dict[str, torch.Tensor], batch: Batch, lengths: np.ndarray) -> list[Any]:
        """(B, T) weights + ids -> per text (unique term ids, max weight), weights > 0 only."""
        w = out["sparse"].float().cpu().numpy()
        ids = batch.input_ids.cpu().numpy()
        return [_unique_terms(w[j], ids[j]) for j in range(len(w))]

    @classmethod
    def stack(cls, rows: list[Any], vocab_size: int) -> SparseVectors:
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r[0]) for r in rows], out=indptr[1:])
        indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int32)
        values = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, np.float32)
        return SparseVectors(indptr, indices.astype(np.int32), values.astype(np.float32), vocab_size)

    @classmethod
    def row(cls, value: SparseVectors, i: int) -> dict[int, float]:
        return value.row(i)

    @classmethod
    def from_rows(cls, rows: list[Any], vocab_size: int) -> SparseVectors:
        return SparseVectors.from_dicts([r or {} for r in rows], vocab_size)

    # ------------------------------------------------------------ scores
    @classmethod
    def score(cls, q: EmbeddingOutput, d: EmbeddingOutput) -> torch.Tensor:
        qw, dw = _need(q, d, "sparse")
        qi, di = _need_ids(q, d)
        return lexical_scores(qw, qi.contiguous(), dw, di.contiguous())

    @classmethod
    def score_numpy(cls, q: Embeddings, d: Embeddings) -> np.ndarray:
        qs, ds = _need(q, d, "sparse")
        return sparse_vector_scores(qs, ds)


def tf_saturation(
    input_ids: torch.Tensor,
    keep: torch.Tensor,
    avg_length: float | None = None,
    k1: float = TF_K1,
    b: float = TF_B,
) -> torch.Tensor:
    """BM25's term-frequency part ``g(c, L)`` of each token (module doc): (B, T) ids, keep -> (B, T).

    ``c`` counts the kept (non-special, non-padding) tokens with the same id in the row, found by
    comparing every pair of positions ((B, T, T) booleans, exportable to ONNX; T = 8,192 costs 64 MiB
    per text); ``L`` is the row's kept-token count; ``avg_length`` None means ``b = 0``. Dropped
    tokens' values do not matter (their weight is 0).
    """
    same = (input_ids.unsqueeze(-1) == input_ids.unsqueeze(-2)) & (keep > 0).unsqueeze(-2)  # (B, T, T)
    count = same.sum(-1).to(keep.dtype)  # (B, T)
    if avg_length:
        length = keep.sum(-1, keepdim=True)  # (B, 1)
        k = k1 * (1 - b + b * length / float(avg_length))  # (B, 1)
    else:
        k = torch.full_like(count[:, :1], k1)
    return count * (k1 + 1) / (count + k)


def _need_ids(q: EmbeddingOutput, d: EmbeddingOutput) -> tuple[torch.Tensor, torch.Tensor]:
    if q.input_ids is None or d.input_ids is None:
        raise ValueError(
            "the loss needs the sparse (input_ids) head, but the model did not compute it; "
            "add 'sparse (input_ids)' to model.heads"
        )
    return q.input_ids, d.input_ids


def _unique_terms(w: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One text's (T,) weights and ids -> (sorted unique term ids int32, their max weight float32)."""
    keep = w > 0
    t, v = ids[keep], w[keep]
    if len(t) == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    return t[starts].astype(np.int32), np.maximum.reduceat(v, starts).astype(np.float32)


def _vocab_size(tokenizer: Any) -> int:
    """Ids the tokenizer can produce (added tokens included)."""
    return max(len(tokenizer), int(getattr(tokenizer, "vocab_size", 0) or 0))


# ------------------------------------------------------------------ initialisation
def init_sparse_head(enc: Any, how: str = "balanced", texts: Sequence[str] | None = None, **fit: Any) -> str:
    """(Re-)initialise ``enc``'s sparse head: ``balanced`` | ``ones`` | ``idf`` (module doc).

    ``idf`` needs ``texts`` (e.g. the training documents) and passes ``fit`` keywords to
    ``fit_idf_weights``. Returns a one-line description of what was done.

    Example:
        >>> from embforge import Encoder, init_sparse_head
        >>> enc = Encoder.from_pretrained(heads=("dense", "sparse"))  # doctest: +SKIP
        >>> init_sparse_head(enc, "idf", ["a first document", "and a second one"])  # doctest: +SKIP
        'idf fit on 2 texts (... tokens, correlation ...)'
    """
    head = enc.sparse_head if hasattr(enc, "sparse_head") else None
    if head is None:
        raise ValueError(
            "init_sparse_head: the encoder has no sparse head; load it with heads including 'sparse'"
        )
    if how not in SPARSE_INITS:
        raise ValueError(f"init_sparse_head: unknown init {how!r}; choose from: {', '.join(SPARSE_INITS)}")
    if how not in ("idf", "idf_terms"):
        return head.init_constant(1.0 if how == "ones" else BALANCED_BIAS)
    if not texts:
        raise ValueError(
            "init_sparse_head: 'idf' needs texts (a corpus to take IDF from); pass the training documents"
        )
    if how == "idf_terms":
        return _init_idf_terms(enc, head, texts, fit.get("max_length", 128))
    weight, bias, corr, n_tokens, n_texts = fit_idf_weights(enc, texts, **fit)
    with torch.no_grad():
        head.linear.weight.copy_(weight.view_as(head.linear.weight))
        head.linear.bias.fill_(bias)
    return f"idf fit on {n_texts} texts ({n_tokens} tokens, correlation {corr:.2f})"


def token_idf(tokenizer: Any, texts: Sequence[str], max_length: int = 128) -> tuple[np.ndarray, int]:
    """(V,) BM25 IDF ``log(1 + (N - df + 0.5) / (df + 0.5))`` of every token id over the distinct
    ``texts`` (ids never seen get the largest value, df = 0), and N."""
    docs = list(dict.fromkeys(t for t in texts if t))
    df = np.zeros(_vocab_size(tokenizer), dtype=np.float64)
    for ids in tokenizer(docs, truncation=True, max_length=max_length)["input_ids"]:
        df[np.unique(np.asarray(ids, dtype=np.int64))] += 1
    n = len(docs)
    return np.log1p((n - df + 0.5) / (df + 0.5)), n


def _init_idf_terms(enc: Any, head: SparseHead, texts: Sequence[str], max_length: int) -> str:
    """``idf_terms``: ``W_lex = 0, b = 0, e = IDF_SCALE * idf / mean idf`` (module doc); sets
    ``enc.config.sparse_term_weights`` so the table is saved and rebuilt on load."""
    idf, n = token_idf(enc.tokenizer, texts, max_length)
    seen = idf < idf.max()  # the mean over the tokens the corpus has, as the ridge fit normalises
    scale = IDF_SCALE / float(idf[seen].mean() if seen.any() else idf.mean())
    head.enable_term_weights(len(idf))
    assert head.term_weight is not None
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.zero_()
        head.term_weight.copy_(torch.from_numpy(idf * scale).to(head.term_weight))
    if hasattr(enc, "config"):
        enc.config.sparse_term_weights = True
    return f"idf_terms: W_lex=0, b=0, term weights = IDF of {n} texts over {len(idf)} ids (x{scale:.3f})"


def fit_idf_weights(
    enc: Any,
    texts: Sequence[str],
    fit_texts: int = 160,
    max_length: int = 128,
    scale: float = IDF_SCALE,
    ridge: float = 1.0,
    batch_size: int = 16,
) -> tuple[torch.Tensor, float, float, int, int]:
    """Ridge fit of ``(W_lex, b)`` so that ``W_lex^T h_t + b ~ scale * idf(t) / mean idf``.

    IDF is BM25's ``log(1 + (N - df + 0.5) / (df + 0.5))`` (Robertson & Zaragoza, 2009) over the
    distinct ``texts``; the hidden states of ``fit_texts`` of them, evenly spaced, are the inputs
    (special tokens left out; they weigh 0 anyway). Returns ``(weight (H,), bias, correlation of the
    fit, tokens fitted, texts used)``.
    """
    docs = list(dict.fromkeys(t for t in texts if t))
    tok = enc.tokenizer
    special = set(getattr(tok, "all_special_ids", []) or [])
    idf, n = token_idf(tok, docs, max_length)  # (V,) BM25 IDF per token id
    sample = docs[:: max(1, n // fit_texts)][:fit_texts]
    hs: list[torch.Tensor] = []
    ys: list[float] = []
    was_training = enc.training
    enc.eval()
    with torch.no_grad():
        for i in range(0, len(sample), batch_size):
            b = enc.tokenize(sample[i : i + batch_size], role="document", max_length=max_length).to(
                enc.device
            )
            h = enc.hidden_states(b)
            ids = b.input_ids[b.attention_mask.bool()].tolist()
            keep = torch.tensor([t not in special for t in ids], dtype=torch.bool)
            hs.append(h[b.attention_mask.bool()].float().cpu()[keep])
            ys.extend(float(idf[t]) for t in ids if t not in special)
    enc.train(was_training)
    x = torch.cat(hs).double()
    y = torch.tensor(ys, dtype=torch.float64)
    y = y / y.mean()
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    sol = torch.linalg.solve(x1.T @ x1 + ridge * torch.eye(x1.shape[1], dtype=x.dtype), x1.T @ y)
    corr = float(torch.corrcoef(torch.stack([x1 @ sol, y]))[0, 1])
    return (scale * sol[:-1]).float(), float(scale * sol[-1]), corr, len(y), len(sample)
