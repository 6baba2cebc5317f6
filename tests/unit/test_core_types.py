import numpy as np
import pytest

from embforge.errors import ConfigError
from embforge.registry import Registry
from embforge.types import Hits, SparseVectors


def test_registry_lists_choices_on_unknown_name():
    reg: Registry[int] = Registry("pooling")
    reg.add("cls", 1)
    reg.add("mean", 2)
    assert reg.get("mean") == 2
    with pytest.raises(ConfigError, match=r"unknown pooling 'max'; choose from: cls, mean"):
        reg.get("max")


def test_sparse_vectors_roundtrip_dicts_and_scipy():
    rows = [{5: 0.5, 2: 1.0}, {}, {7: 0.25}]
    sv = SparseVectors.from_dicts(rows, vocab_size=10)
    assert len(sv) == 3
    assert sv.to_dicts() == rows
    dense = sv.to_scipy().toarray()
    assert dense.shape == (3, 10)
    assert dense[0, 2] == 1.0 and dense[2, 7] == 0.25 and dense[1].sum() == 0
    np.testing.assert_array_equal(sv.indptr, [0, 2, 2, 3])


def test_hits_to_run():
    hits = Hits(ids=[["d1", "d2"]], scores=[[2.0, 1.0]])
    assert hits.to_run(["q1"]) == {"q1": {"d1": 2.0, "d2": 1.0}}


def test_per_head_mapping_keeps_the_named_fields():
    import numpy as np
    import torch

    from embforge.types import EmbeddingOutput, Embeddings

    d = torch.ones(2, 3)
    out = EmbeddingOutput.from_parts({"dense": d, "toy": torch.zeros(2, 4)}, input_ids=torch.ones(2, 5))
    assert out.dense is d and out.output("dense") is d and out.output("toy").shape == (2, 4)
    assert set(out.outputs) == {"dense", "toy"} and out.output("sparse") is None
    plain = EmbeddingOutput(dense=d)
    assert plain.extra is None and plain.outputs == {"dense": d}  # no plugin head: no extra mapping
    emb = Embeddings.from_parts({"dense": np.ones((3, 2)), "toy": np.zeros((3, 4))}, num_tokens=np.ones(3))
    assert len(emb) == 3 and emb.extra["toy"].shape == (3, 4) and emb.output("multivector") is None
    assert Embeddings(dense=np.ones((2, 2))).extra is None
