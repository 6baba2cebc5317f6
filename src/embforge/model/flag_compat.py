"""FlagEmbedding's ``BGEM3FlagModel`` call shapes on an embforge ``Encoder`` (issue 18).

Code written for FlagEmbedding (Chen et al., 2024, "BGE M3-Embedding"; FlagEmbedding 1.4.2) runs
unchanged on an ``Encoder``::

    out = model.encode(sentences, batch_size=12, max_length=8192,
                       return_dense=True, return_sparse=True, return_colbert_vecs=True)
    out["dense_vecs"]        # (N, D) numpy
    out["lexical_weights"]   # N dicts {token id as a string: weight}
    out["colbert_vecs"]      # N arrays (T_i, M)
    model.compute_lexical_matching_score(out["lexical_weights"][0], out["lexical_weights"][1])
    model.colbert_score(out["colbert_vecs"][0], out["colbert_vecs"][1])
    model.convert_id_to_token(out["lexical_weights"])

``return_dense`` (default True), ``return_sparse`` and ``return_colbert_vecs`` (default False)
choose the heads, as in FlagEmbedding; they cannot be combined with embforge's ``heads=``.
``convert_to_numpy=True`` is accepted (embforge always returns numpy). The scores come from
:mod:`embforge.scoring` (lexical matching and MaxSim divided by the query's token count, equal to
FlagEmbedding's within 1e-5: tests/parity/test_m3_reference.py). One difference: a single string
gives N = 1 results (``out["dense_vecs"][0]`` is its vector), where FlagEmbedding drops the batch axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from embforge.errors import ConfigError
from embforge.scoring import multivector_list_scores, sparse_vector_scores
from embforge.types import SparseVectors

__all__ = ["FLAG_RETURN", "flag_encode_kwargs", "lexical_matching_score", "colbert_score", "ids_to_tokens"]

#: FlagEmbedding's ``encode`` flag -> (embforge head, FlagEmbedding's default).
FLAG_RETURN: Mapping[str, tuple[str, bool]] = {
    "return_dense": ("dense", True),
    "return_sparse": ("sparse", False),
    "return_colbert_vecs": ("multivector", False),
}


def flag_encode_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``encode`` keyword arguments with FlagEmbedding's ``return_*`` / ``convert_to_numpy`` turned into embforge's."""
    kw = dict(kwargs)
    if kw.pop("convert_to_numpy", True) is not True:
        raise ConfigError(
            "convert_to_numpy=False: embforge's encode returns numpy arrays; wrap them with torch.from_numpy"
        )
    flags = {k: kw.pop(k) for k in list(kw) if k in FLAG_RETURN}
    if not flags:
        return kw
    if "heads" in kw:
        raise ConfigError(
            f"give either heads= or FlagEmbedding's {', '.join(sorted(flags))}, not both "
            "(return_dense -> 'dense', return_sparse -> 'sparse', return_colbert_vecs -> 'multivector')"
        )
    heads = tuple(h for flag, (h, default) in FLAG_RETURN.items() if flags.get(flag, default))
    if not heads:
        raise ConfigError(
            "return_dense, return_sparse and return_colbert_vecs are all False: nothing to return"
        )
    return {**kw, "heads": heads}


def _sparse(rows: Sequence[Mapping[Any, float]], vocab: int) -> SparseVectors:
    return SparseVectors.from_dicts([{int(t): float(w) for t, w in r.items()} for r in rows], vocab)


def lexical_matching_score(a: Any, b: Any, vocab: int) -> Any:
    """FlagEmbedding's ``compute_lexical_matching_score``: ``sum_t w_a[t] * w_b[t]`` over shared
    tokens of two ``{token id: weight}`` dicts (a float), or of two lists of them (a (A, B) array)."""
    single = isinstance(a, Mapping) and isinstance(b, Mapping)
    rows_a, rows_b = ([a], [b]) if single else (list(a), list(b))
    scores = sparse_vector_scores(_sparse(rows_a, vocab), _sparse(rows_b, vocab))
    return float(scores[0, 0]) if single else scores


def colbert_score(q: Any, p: Any) -> float:
    """FlagEmbedding's ``colbert_score``: MaxSim of two (T, M) token matrices divided by the query's T."""
    q32, p32 = np.asarray(q, dtype=np.float32), np.asarray(p, dtype=np.float32)
    return float(multivector_list_scores([q32], [p32])[0, 0])


def ids_to_tokens(lexical_weights: Any, tokenizer: Any) -> Any:
    """FlagEmbedding's ``convert_id_to_token``: ``{token id: weight}`` -> ``{token text: weight}``
    (a dict or a list of dicts, as given)."""
    if isinstance(lexical_weights, Mapping):
        return {tokenizer.decode([int(t)]): float(w) for t, w in lexical_weights.items()}
    return [ids_to_tokens(r, tokenizer) for r in lexical_weights]
