"""Request and response bodies of the HTTP API (pydantic).

``/v1/embeddings`` follows the OpenAI embeddings API field for field, so the
official ``openai`` client works unchanged; embforge's extensions are extra
body fields (the client sends them with ``extra_body={...}``) and extra fields
on each returned item (``item.model_extra`` in the client).
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from embforge.scoring.weights import parse_weights

__all__ = [
    "EmbeddingRequest",
    "EmbeddingItem",
    "EmbeddingResponse",
    "Usage",
    "SearchRequest",
    "SearchHit",
    "SearchResult",
    "SearchResponse",
    "ErrorBody",
    "ErrorResponse",
]

# OpenAI accepts: a string, a list of strings, a list of token ids, or a list of
# lists of token ids. Strict types: 1 is not a string and "1" is not a token id.
EmbeddingInput = Union[StrictStr, list[StrictStr], list[StrictInt], list[list[StrictInt]]]
Quantization = Literal["float32", "int8", "binary"]


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings`` body.

    OpenAI fields: ``input``, ``model``, ``dimensions``, ``encoding_format``, ``user``.
    embforge extensions (all optional):

    - ``role``: ``"query"`` or ``"document"``; the encoder applies the role's
      instruction/prefix (server default: ``--default-role``).
    - ``dense``: return the dense vector in ``embedding`` (default true; false
      returns an empty ``embedding``).
    - ``sparse``: also return ``sparse_embedding`` = {token id: weight}.
    - ``sparse_tokens``: with ``sparse``, also ``sparse_tokens`` = {token string: weight}.
    - ``multivector``: also return ``multivector_embedding`` (one vector per token).
    - ``quantization``: ``"float32"`` (default), ``"int8"`` (symmetric per vector:
      codes in [-127, 127] with ``x ~= codes * scale``, the scale returned in
      ``embedding_scale`` / ``multivector_scale``) or ``"binary"`` (sign bits packed 8
      per byte, big-endian bit order, as numpy.packbits; ceil(D / 8) uint8 values).
    - ``truncate``: cut inputs longer than the per-input token limit instead of
      rejecting them with 400.
    - ``<head>``: ``true`` also returns a plugin head's output as ``<head>_embedding``
      (any head registered in ``embforge.model.heads.HEADS`` that the model has); other
      unknown fields are refused.
    """

    # allow_inf_nan=False: NaN, Infinity and 1e309 (read as inf) are refused like any wrong type.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    input: EmbeddingInput
    model: StrictStr | None = None
    dimensions: StrictInt | None = Field(default=None, ge=1)
    encoding_format: Literal["float", "base64"] = "float"
    user: StrictStr | None = None
    # --- embforge extensions ---
    role: Literal["query", "document"] | None = None
    dense: bool = True
    sparse: bool = False
    sparse_tokens: bool = False
    multivector: bool = False
    quantization: Quantization = "float32"
    truncate: bool = False


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingItem(BaseModel):
    """One returned embedding. ``embedding`` is a list of numbers or, with
    ``encoding_format="base64"``, the base64 of its little-endian bytes (float32,
    int8 or packed uint8 by ``quantization``)."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | list[int] | str
    embedding_scale: float | None = None
    sparse_embedding: dict[str, float] | None = None
    sparse_tokens: dict[str, float] | None = None
    multivector_embedding: list[list[float]] | list[list[int]] | str | None = None
    multivector_shape: list[int] | None = None
    multivector_scale: list[float] | None = None


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage


class SearchRequest(BaseModel):
    """``POST /v1/search`` body: query text(s) -> ranked ids from the loaded index.

    ``weights`` overrides the hybrid weights per head (e.g. ``{"dense": 1,
    "sparse": 0.3, "multivector": 1}``; a head left out weighs 0, the rule of
    :func:`embforge.scoring.parse_weights`), ``fusion`` the fusion (``weighted`` sum, ``minmax`` /
    ``zscore`` normalised sums or ``rrf``; default: the model's ``fusion.json``, else the index's);
    ``return_scores`` adds each head's score.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    query: StrictStr | list[StrictStr]
    k: StrictInt = Field(default=10, ge=1, le=1000)
    model: StrictStr | None = None
    weights: dict[str, float] | None = None
    fusion: Literal["weighted", "minmax", "zscore", "rrf"] | None = None
    return_scores: bool = True
    truncate: bool = False

    @field_validator("weights")
    @classmethod
    def _one_weights_rule(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        """The same parsing, checks and error text as the Python API and the CLI (missing heads weigh 0)."""
        return parse_weights(v, "weights")


class SearchHit(BaseModel):
    id: str
    score: float
    rank: int
    scores: dict[str, float] | None = None


class SearchResult(BaseModel):
    object: Literal["search_result"] = "search_result"
    index: int
    hits: list[SearchHit]


class SearchResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[SearchResult]
    model: str
    usage: Usage


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI-style error: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorBody
