"""Run embforge models under the ``mteb`` package (v2 encoder protocol).

``EmbforgeMTEBModel`` implements mteb's ``EncoderProtocol``: ``encode(DataLoader, *,
task_metadata, hf_split, hf_subset, prompt_type)`` returning (N, D) dense vectors,
``similarity`` / ``similarity_pairwise`` (cosine) and ``mteb_model_meta``. Queries are
encoded with the encoder's query role, everything else with the document role.

``local_retrieval_task`` / ``local_sts_task`` build mteb tasks from local files (BEIR
directory, STS file) so no hub access is needed.

Example:
    >>> import mteb  # doctest: +SKIP
    >>> model = EmbforgeMTEBModel(Encoder.from_pretrained())  # doctest: +SKIP
    >>> task = local_retrieval_task("src/embforge/resources/demo/xquad-en")  # doctest: +SKIP
    >>> mteb.evaluate(model, task, cache=None).task_results[0].get_score()  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from embforge.errors import MissingDependencyError
from embforge.eval.datasets import load_beir, load_sts
from embforge.model.encoder import Encoder

__all__ = ["EmbforgeMTEBModel", "local_retrieval_task", "local_sts_task"]


def _mteb():
    """mteb and its ``datasets`` are optional (dev) dependencies: imported only here and in the task builders."""
    try:
        import mteb
    except ImportError as e:  # pragma: no cover - mteb is a dev dependency
        raise MissingDependencyError("mteb", "embforge.eval.mteb_adapter") from e
    return mteb


def _meta(name: str, dim: int | None):
    from mteb.models.model_meta import ModelMeta

    return ModelMeta.create_empty(
        {
            "name": name if "/" in name else f"embforge/{name}",
            "revision": "local",
            "embed_dim": dim,
            "similarity_fn_name": "cosine",
            "framework": ["PyTorch"],
            "languages": None,
        }
    )


class EmbforgeMTEBModel:
    """An embforge ``Encoder`` behind mteb's encoder protocol (dense head).

    Args:
        encoder: an ``embforge.model.encoder.Encoder`` (or anything with its ``encode``), or a
            path / hub id to load one from.
        revision: unused (mteb passes it); kept for the protocol's constructor.
        dim: Matryoshka truncation of the dense vectors (None = full).
        name: model name recorded in mteb results.
        max_length: tokens per text (None = the model's limit).
    """

    def __init__(
        self,
        encoder: Any = None,
        revision: str | None = None,
        *,
        device: str | None = None,
        dim: int | None = None,
        name: str | None = None,
        max_length: int | None = None,
        **kwargs: Any,
    ) -> None:
        if encoder is None or isinstance(encoder, (str, Path)):
            label = str(encoder) if encoder is not None else "all-MiniLM-L6-v2"
            encoder = Encoder.from_pretrained(
                None if encoder is None else str(encoder), heads=("dense",), device=device
            )
        else:
            label = type(encoder).__name__
        self.encoder = encoder
        self.dim = dim
        self.max_length = max_length
        self.mteb_model_meta = _meta(name or Path(label).name, dim)

    def encode(
        self,
        inputs,
        *,
        task_metadata=None,
        hf_split: str = "",
        hf_subset: str = "",
        prompt_type=None,
        **kwargs: Any,
    ) -> np.ndarray:
        """(N, D) float32 dense vectors of every text in the mteb DataLoader."""
        role = (
            "query"
            if prompt_type is not None and str(getattr(prompt_type, "value", prompt_type)) == "query"
            else "document"
        )
        batch_size = int(kwargs.get("batch_size", 32))
        texts: list[str] = []
        for batch in inputs:
            texts.extend(batch["text"])
        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        opts: dict[str, Any] = {"heads": ("dense",), "batch_size": batch_size, "max_length": self.max_length}
        if self.dim is not None:
            opts["dim"] = self.dim
        return np.asarray(self.encoder.encode(texts, role=role, **opts).dense, dtype=np.float32)

    @staticmethod
    def _norm(x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def similarity(self, embeddings1, embeddings2):
        """(N1, N2) cosine similarities (torch tensor, as mteb expects)."""
        return torch.from_numpy(self._norm(embeddings1) @ self._norm(embeddings2).T)

    def similarity_pairwise(self, embeddings1, embeddings2):
        """(N,) cosine similarity of each pair."""
        return torch.from_numpy((self._norm(embeddings1) * self._norm(embeddings2)).sum(1))


_GENERAL: dict[str, Any] = {
    "reference": "https://github.com/embforge",
    "category": "t2t",
    "date": ("2020-01-01", "2020-01-01"),
    "dialect": ["Written"],
    "domains": [],
    "task_subtypes": [],
    "license": "cc-by-sa-4.0",
    "annotations_creators": "derived",
    "modalities": ["text"],
    "sample_creation": "found",
    "bibtex_citation": "",
}


def _lang(code: str) -> str:
    three = {"en": "eng-Latn", "de": "deu-Latn", "es": "spa-Latn", "fr": "fra-Latn", "ko": "kor-Hang"}
    return three.get(code, "eng-Latn")


def local_retrieval_task(
    path: str | Path, split: str = "test", name: str | None = None, max_queries: int | None = None
):
    """An mteb retrieval task over a local BEIR directory (no hub access)."""
    _mteb()
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata

    data = load_beir(path, split=split, max_queries=max_queries)
    task_name = name or f"Embforge{data.name.replace('-', '').title()}Retrieval"

    class _Task(AbsTaskRetrieval):
        metadata = TaskMetadata(
            type="Retrieval",
            name=task_name,
            description=f"Local BEIR directory {path} (split {split}).",
            dataset={"path": str(path), "revision": "local"},
            main_score="ndcg_at_10",
            eval_splits=[split],
            eval_langs=[_lang(data.language)],
            **_GENERAL,
        )

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            split_data = RetrievalSplitData(
                queries=Dataset.from_list(
                    [{"id": q, "text": t} for q, t in zip(data.query_ids, data.query_texts)]
                ),
                corpus=Dataset.from_list(
                    [{"id": d, "text": t, "title": ""} for d, t in zip(data.doc_ids, data.doc_texts)]
                ),
                relevant_docs=data.qrels,
                top_ranked=None,
            )
            self.dataset = {"default": {split: split_data}}
            self.data_loaded = True

    return _Task()


def local_sts_task(path: str | Path, name: str | None = None, min_score: float = 0.0, max_score: float = 5.0):
    """An mteb STS task over a local STS file (any format ``embforge.eval.datasets.load_sts`` reads)."""
    _mteb()
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.sts import AbsTaskSTS
    from mteb.abstasks.task_metadata import TaskMetadata

    data = load_sts(path)
    task_name = name or f"Embforge{data.name.replace('-', '').title()}STS"

    class _Task(AbsTaskSTS):
        metadata = TaskMetadata(
            type="STS",
            name=task_name,
            description=f"Local STS file {path}.",
            dataset={"path": str(path), "revision": "local"},
            main_score="cosine_spearman",
            eval_splits=["test"],
            eval_langs=[_lang(data.language)],
            **_GENERAL,
        )

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            self.dataset = DatasetDict(
                {
                    "test": Dataset.from_dict(
                        {"sentence1": data.sentences1, "sentence2": data.sentences2, "score": data.scores}
                    )
                }
            )
            self.data_loaded = True

    # mteb annotates these int, but only divides by them: a fractional gold scale (0.0-1.0) works
    _Task.min_score = min_score  # type: ignore[assignment]  # see above: mteb's int is too narrow
    _Task.max_score = max_score  # type: ignore[assignment]  # see above
    return _Task()
