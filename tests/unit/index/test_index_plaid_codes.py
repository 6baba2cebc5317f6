"""PlaidIndex(store="codes"): the final re-score reads decoded codes (centroid + PQ residual), no
token store is saved: brute-force parity with pruning off, recall on a small synthetic set,
save/load without vectors.npy, adds/deletes after load, damaged indexes refused, atomic saves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embforge.errors import CheckpointError, ConfigError
from embforge.index import MultiVectorIndex, PlaidIndex, load_index
from helpers.index_testdata import check_plaid_save_crash, topical_docs

N = 400
IDS = [f"d{i}" for i in range(N)]


@pytest.fixture(scope="module")
def data():
    docs = topical_docs(N, 32, seed=0)
    queries = [d[: min(6, len(d))] + 0.1 for d in topical_docs(12, 32, seed=1)]
    exact = MultiVectorIndex(dtype="float32")
    exact.add(IDS, docs)
    return docs, queries, exact


@pytest.fixture(scope="module")
def built(data):
    """One codes index (faiss training is the slow part): 16 sub-quantizers of 2 dims at 32 dims."""
    docs, _, _ = data
    idx = PlaidIndex(nlist=16, pq_m=16, store="codes")
    idx.add(IDS, docs)
    idx._build()
    return idx


def _decoded_docs(idx: PlaidIndex) -> list[np.ndarray]:
    c, off = idx._build(), idx._offsets()
    return [idx._decoded(np.arange(off[r], off[r + 1]), c) for r in range(len(off) - 1)]


def test_brute_force_parity_with_pruning_off(data, built):
    """Every centroid probed, every document kept, no pruning: the codes index returns exactly
    the brute-force MaxSim ranking over the decoded tokens, with those scores."""
    _, queries, _ = data
    ref = MultiVectorIndex(dtype="float32")
    ref.add(IDS, _decoded_docs(built))
    for key, val in {"nprobe": 16, "ndocs": N, "exact": N, "t_cs": None}.items():
        setattr(built, key, val)
    try:
        got, want = built.search(queries, k=10), ref.search(queries, k=10)
    finally:
        for key, val in {"nprobe": 3, "ndocs": 768, "exact": 256, "t_cs": 0.2}.items():
            setattr(built, key, val)
    np.testing.assert_allclose(np.concatenate(got.scores), np.concatenate(want.scores), atol=1e-4)
    assert got.ids == want.ids


def test_recall_against_exact_maxsim_and_scores_from_codes(data, built):
    docs, queries, exact = data
    got, ref = built.search(queries, k=10), exact.search(queries, k=10)
    kth = np.array([s[-1] for s in ref.scores])
    truth = exact.score(queries, got.ids)  # exact MaxSim of what was returned
    rec = np.mean([(np.array(s) >= t - 1e-3).sum() / 10 for s, t in zip(truth, kth)])
    assert rec >= 0.9
    # the returned scores are the decoded-token MaxSim (score/rerank read codes too), close to exact
    again = built.score(queries, got.ids)
    np.testing.assert_allclose(np.concatenate(got.scores), np.concatenate(again), atol=1e-5)
    assert np.abs(np.concatenate(again) - np.concatenate(truth)).max() < 0.1
    assert built.nbytes()["exact_store"] == 0
    with pytest.raises(ConfigError, match="store"):
        PlaidIndex(store="float8")


def test_save_writes_no_token_store_and_loads_equal(tmp_path, data, built):
    docs, queries, _ = data
    built.save(tmp_path / "pl")
    files = {p.name for p in (tmp_path / "pl").iterdir()}
    assert "vectors.npy" not in files and {"plaid_codes.npy", "offsets.npy", "plaid_pq.npy"} <= files
    assert "plaid_doc_mean.npy" not in files  # recomputed from the codes at load
    loaded = load_index(tmp_path / "pl")
    assert isinstance(loaded, PlaidIndex) and loaded.config() == built.config()
    assert loaded._vectors_absent and isinstance(loaded._codes["codes"], np.memmap)
    before, after = built.search(queries, k=5), loaded.search(queries, k=5)
    assert after.ids == before.ids
    np.testing.assert_allclose(after.scores, before.scores, rtol=1e-6)
    assert loaded._vectors_absent  # searching never rebuilt a token store
    np.testing.assert_allclose(loaded.doc_vectors(3), _decoded_docs(built)[3], atol=1e-6)
    # a vectors index of the same build writes the float16 store as well, and more bytes
    vec = PlaidIndex(nlist=16, pq_m=16)
    vec.add(IDS, docs)
    vec.save(tmp_path / "pv")
    size = {n: sum(p.stat().st_size for p in (tmp_path / n).iterdir()) for n in ("pl", "pv")}
    assert (tmp_path / "pv" / "vectors.npy").exists() and size["pl"] < size["pv"]


def test_add_delete_compact_after_load(tmp_path, data, built):
    docs, queries, _ = data
    small = PlaidIndex(nlist=16, pq_m=16, store="codes")
    small.add(IDS[:300], docs[:300])
    small.save(tmp_path / "pl")
    loaded = load_index(tmp_path / "pl")
    loaded.add(IDS[300:], docs[300:])  # tokens rebuilt from codes, codes of all rebuilt
    top = loaded.search(queries[:1], k=3).ids[0][0]
    assert len(loaded) == N and not loaded._vectors_absent
    loaded.delete([top])
    assert top not in loaded.search(queries[:1], k=3).ids[0]
    loaded.compact()
    assert len(loaded) == N - 1 and top not in loaded.search(queries[:1], k=3).ids[0]
    loaded.save(tmp_path / "pl")
    assert len(load_index(tmp_path / "pl")) == N - 1


def test_crash_during_save_keeps_previous_index(tmp_path, monkeypatch, data):
    docs, queries, _ = data
    idx = PlaidIndex(nlist=16, pq_m=16, store="codes")
    check_plaid_save_crash(idx, IDS, docs, queries, 200, tmp_path / "pl", monkeypatch)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda d: (d / "plaid_pq.npy").unlink(), r"plaid_pq.npy is missing"),
        (lambda d: np.save(d / "plaid_codes.npy", np.load(d / "plaid_codes.npy")[:-1]), r"plaid_codes.npy.*rows"),
        (lambda d: np.save(d / "offsets.npy", np.load(d / "offsets.npy")[:-1]), r"offsets.npy.*rows"),
        (lambda d: np.save(d / "offsets.npy", np.load(d / "offsets.npy")[::-1].copy()), r"offsets.npy"),
        (lambda d: np.save(d / "plaid_token_cid.npy", np.load(d / "plaid_token_cid.npy")[:-1]), r"plaid_token_cid.npy.*rows"),
        (lambda d: _edit_config(d, store="float8"), r"index.json"),
        (lambda d: _edit_config(d, store="vectors"), r"vectors.npy"),  # the token store was never written
    ],
)
def test_damaged_codes_index_is_refused(tmp_path, built, damage, match):
    d = tmp_path / "pl"
    built.save(d)
    damage(d)
    with pytest.raises(CheckpointError, match=match):
        load_index(d)


def _edit_config(d, **kw) -> None:
    m = json.loads((d / "index.json").read_text())
    m["config"].update(kw)
    (d / "index.json").write_text(json.dumps(m))
