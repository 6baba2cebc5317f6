"""Corrupted or hostile index folders: a clear CheckpointError at load, never a segfault or
silently wrong results (shapes, dtypes, bounds, config keys, paths outside the folder)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

from embforge.errors import CheckpointError
from embforge.index import (
    BM25Index,
    ExactDenseIndex,
    HNSWIndex,
    HybridIndex,
    MultiVectorIndex,
    SparseIndex,
    load_index,
)
from embforge.types import Embeddings
from helpers.fuzz import BUDGETS, check_reader
from helpers.index_testdata import clustered, random_multivector, random_sparse

N = 20


def _saved(tmp_path: Path, idx, name: str) -> Path:
    return idx.save(tmp_path / name)


def _sparse(tmp_path: Path) -> Path:
    idx = SparseIndex(backend="numba")
    idx.add([f"d{i}" for i in range(N)], random_sparse(N, 50, seed=1))
    return _saved(tmp_path, idx, "sparse")


def _rewrite(d: Path, name: str, fn) -> None:
    arr = np.load(d / f"{name}.npy")
    np.save(d / f"{name}.npy", fn(arr.copy()), allow_pickle=False)


@pytest.mark.parametrize(
    ("name", "corrupt", "match"),
    [
        ("doc_rows", lambda a: np.where(np.arange(len(a)) == 0, 10**6, a).astype(a.dtype), r"doc_rows.*outside"),
        ("doc_rows", lambda a: np.where(np.arange(len(a)) == 0, -1, a).astype(a.dtype), r"doc_rows.*outside"),
        ("doc_rows", lambda a: a.astype(np.float32), r"doc_rows.*dtype"),
        ("indices", lambda a: np.where(np.arange(len(a)) == 0, 10**6, a).astype(a.dtype), r"indices.*outside"),
        ("col_ptr", lambda a: a[::-1].copy(), r"col_ptr"),
        ("col_ptr", lambda a: a[:-1], r"col_ptr"),
        ("weights", lambda a: a[:-1], r"weights.*rows"),
        ("weights", lambda a: np.full_like(a, np.nan), r"weights.*NaN"),
        ("indptr", lambda a: a.reshape(1, -1), r"indptr"),
    ],
)
def test_hostile_sparse_index_arrays_are_refused_at_load(tmp_path, name, corrupt, match) -> None:
    d = _sparse(tmp_path)
    _rewrite(d, name, corrupt)
    with pytest.raises(CheckpointError, match=match):
        load_index(d)


def test_hostile_npy_files_pickled_truncated_or_not_npy(tmp_path) -> None:
    d = _sparse(tmp_path)
    np.save(d / "weights.npy", np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(CheckpointError, match=r"weights.npy: not a readable .npy"):
        load_index(d)
    (d / "weights.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(CheckpointError, match=r"not a readable .npy"):
        load_index(d)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ExactDenseIndex(),
        lambda: ExactDenseIndex(quantization="int8"),
        lambda: MultiVectorIndex(dtype="int8"),
        lambda: HNSWIndex(),
    ],
    ids=["dense", "dense-int8", "multivector-int8", "hnsw"],
)
def test_hostile_dense_and_multivector_arrays_are_refused(tmp_path, make) -> None:
    idx = make()
    ids = [f"d{i}" for i in range(N)]
    idx.add(ids, random_multivector(N, 8, seed=3) if isinstance(idx, MultiVectorIndex) else clustered(N, 8, 1))
    d = _saved(tmp_path, idx, "x")
    load_index(d)  # the untouched folder loads
    target = "offsets" if isinstance(idx, MultiVectorIndex) else "vectors"
    fix = (lambda a: a[::-1].copy()) if target == "offsets" else (lambda a: a[:, :, None])
    _rewrite(d, target, fix)
    with pytest.raises(CheckpointError):
        load_index(d)


def test_hostile_bm25_postings_out_of_range(tmp_path) -> None:
    from embforge.index import counts_from_ids

    idx = BM25Index(backend="numpy")
    idx.add([f"d{i}" for i in range(3)], counts_from_ids([[1, 2], [2, 3], [4]], vocab_size=10))
    d = _saved(tmp_path, idx, "bm25")
    _rewrite(d, "indices", lambda a: np.where(np.arange(len(a)) == 0, 99, a).astype(a.dtype))
    with pytest.raises(CheckpointError, match=r"indices.*outside \[0, 10\)"):
        load_index(d)


def _edit_manifest(d: Path, fn) -> None:
    mf = d / "index.json"
    data = json.loads(mf.read_text())
    fn(data)
    mf.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["config"].update(not_a_key=1),
        lambda m: m["config"].update(backend=["x"]),
        lambda m: m.update(config=[1, 2]),
        lambda m: m.update(vocab_size="50"),
    ],
    ids=["unknown-key", "bad-value", "config-not-mapping", "vocab-not-int"],
)
def test_hostile_index_config_is_a_clear_error(tmp_path, edit) -> None:
    d = _sparse(tmp_path)
    _edit_manifest(d, edit)
    with pytest.raises(CheckpointError, match=r"index.json"):
        load_index(d)


def test_hostile_manifest_bytes(tmp_path) -> None:
    d = _sparse(tmp_path)
    for raw in (b"\xff\xfe", b"[" * 100000, b'{"format_version": ' + b"9" * 5000 + b"}", b"[]"):
        (d / "index.json").write_bytes(raw)
        with pytest.raises(CheckpointError):
            load_index(d)


def _hybrid(tmp_path: Path) -> Path:
    idx = HybridIndex(dense=ExactDenseIndex(), sparse=SparseIndex())
    idx.add([f"d{i}" for i in range(N)], Embeddings(dense=clustered(N, 8, 1), sparse=random_sparse(N, 50, 2)))
    return _saved(tmp_path, idx, "hybrid")


def test_hostile_hybrid_component_paths_stay_inside(tmp_path) -> None:
    d = _hybrid(tmp_path)
    _edit_manifest(d, lambda m: m.update(components={"../../etc": "dense-exact"}))
    with pytest.raises(CheckpointError, match=r"components"):
        load_index(d)
    d = _hybrid(tmp_path / "b")
    outside = _sparse(tmp_path / "elsewhere")
    shutil.rmtree(d / "sparse")
    os.symlink(outside, d / "sparse")
    with pytest.raises(CheckpointError, match=r"outside the index folder"):
        load_index(d)
    d = _hybrid(tmp_path / "c")
    _edit_manifest(d, lambda m: m["config"].update(surprise=True))
    with pytest.raises(CheckpointError, match=r"unknown config key"):
        load_index(d)


def test_hostile_leftover_tmp_folders_are_removed_by_the_next_save(tmp_path) -> None:
    d = _sparse(tmp_path)
    left = [tmp_path / ".sparse.tmp-killed1", tmp_path / ".sparse.old-deadbeef"]
    for p in left:
        p.mkdir()
        (p / "vectors.npy").write_bytes(b"half")
    other = tmp_path / ".other.tmp-keep"
    other.mkdir()
    load_index(d).save(d)
    assert not any(p.exists() for p in left)
    assert other.exists()  # another index's leftovers are not ours to remove
    assert len(load_index(d)) == N


@pytest.mark.parametrize("budget", BUDGETS)
def test_fuzz_index_folder_files(tmp_path, budget) -> None:
    """Any bytes in any one file of a saved hybrid index: loads or a CheckpointError."""
    base = _hybrid(tmp_path)
    files = sorted(p.relative_to(base) for p in base.rglob("*") if p.is_file())
    originals = {f: (base / f).read_bytes() for f in files}

    def read(arg: tuple[int, int, bytes]) -> None:
        i, cut, junk = arg
        f = files[i % len(files)]
        data = originals[f]
        try:
            (base / f).write_bytes(data[: cut % (len(data) + 1)] + junk)
            load_index(base)
        finally:
            (base / f).write_bytes(data)

    check_reader(read, st.tuples(st.integers(0, 100), st.integers(0, 10**6), st.binary(max_size=16)), budget)


# ---------------------------------------------------------------- PLAID and every index kind
@pytest.fixture(scope="module")
def plaid_saved(tmp_path_factory) -> Path:
    """One saved PlaidIndex (built once: faiss training is the slow part); tests copy it."""
    from embforge.index import PlaidIndex

    idx = PlaidIndex(nlist=8, exact=4)
    idx.add([f"d{i}" for i in range(60)], random_multivector(60, 16, seed=4))
    return _saved(tmp_path_factory.mktemp("plaid"), idx, "plaid")


@pytest.fixture
def plaid_dir(plaid_saved, tmp_path) -> Path:
    return Path(shutil.copytree(plaid_saved, tmp_path / "plaid"))


def _set0(value: int):
    return lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0, value, a).astype(a.dtype)


@pytest.mark.parametrize(
    ("name", "corrupt", "match"),
    [
        ("plaid_token_cid", _set0(60000), r"plaid_token_cid.npy.*outside \[0, 8\)"),
        ("plaid_token_cid", lambda a: a[:-1], r"plaid_token_cid.npy.*rows"),
        ("plaid_token_cid", lambda a: a.astype(np.float32), r"plaid_token_cid.npy.*dtype"),
        ("plaid_ivf_docs", _set0(10**6), r"plaid_ivf_docs.npy.*outside \[0, 60\)"),
        ("plaid_ivf_docs", _set0(-1), r"plaid_ivf_docs.npy.*outside"),
        ("plaid_ivf_ptr", lambda a: a[::-1].copy(), r"plaid_ivf_ptr.npy"),
        ("plaid_ivf_ptr", _set0(5), r"plaid_ivf_ptr.npy.*from 0"),
        ("plaid_ivf_ptr", lambda a: a[:-1], r"plaid_ivf_ptr.npy.*rows"),
        ("plaid_codes", lambda a: a[:, :-1], r"plaid_codes.npy.*bytes"),
        ("plaid_codes", lambda a: a.astype(np.int64), r"plaid_codes.npy"),
        ("plaid_codes", lambda a: a[:-1], r"plaid_codes.npy.*rows"),
        ("plaid_centroids", lambda a: a[:, :-1], r"plaid_centroids.npy.*shape"),
        ("plaid_centroids", lambda a: a[:-1], r"plaid_centroids.npy.*shape"),
        ("plaid_centroids", lambda a: np.full_like(a, np.nan), r"plaid_centroids.npy.*NaN"),
        ("plaid_pq", lambda a: a[:-1], r"plaid_pq.npy.*values"),
        ("plaid_pq", lambda a: np.concatenate([a, a]), r"plaid_pq.npy.*values"),
    ],
)
def test_hostile_plaid_arrays_are_refused_at_load(plaid_dir, name, corrupt, match) -> None:
    d = plaid_dir
    load_index(d).search(random_multivector(2, 16, seed=5), k=3)  # the untouched folder works
    _rewrite(d, name, corrupt)
    with pytest.raises(CheckpointError, match=match):
        load_index(d)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["config"].update(pq_m=5),  # does not divide the dim 16
        lambda m: m["config"].update(pq_bits=30),  # 2^30 codewords: an allocation bomb
        lambda m: m["config"].update(nlist=9),  # disagrees with plaid_centroids.npy
    ],
    ids=["pq_m", "pq_bits", "nlist"],
)
def test_hostile_plaid_config_is_a_clear_error(plaid_dir, edit) -> None:
    d = plaid_dir
    _edit_manifest(d, edit)
    with pytest.raises(CheckpointError, match=r"index.json|plaid_"):
        load_index(d)


def _every_kind(tmp_path: Path) -> dict[str, Path]:
    """One small saved index of every registered kind but hybrid (its components are these)."""
    from embforge.index import INDEXES, IVFFlatIndex, IVFPQIndex, PlaidIndex, counts_from_ids

    ids = [f"d{i}" for i in range(300)]
    rng = np.random.default_rng(7)
    made = {
        "bm25": (BM25Index(), counts_from_ids([list(rng.integers(0, 40, 6)) for _ in ids], vocab_size=40)),
        "dense-exact": (ExactDenseIndex(), clustered(300, 16, 1)),
        "dense-hnsw": (HNSWIndex(), clustered(300, 16, 1)),
        "dense-ivf": (IVFFlatIndex(nlist=4), clustered(300, 16, 1)),
        "dense-ivfpq": (IVFPQIndex(nlist=4, pq_m=4, nbits=4), clustered(300, 16, 1)),
        "multivector": (MultiVectorIndex(dtype="int8"), random_multivector(300, 16, seed=2)),
        "multivector-plaid": (PlaidIndex(nlist=8, exact=4), random_multivector(300, 16, seed=2)),
        "sparse": (SparseIndex(backend="numba"), random_sparse(300, 40, seed=3)),
    }
    # qdrant keeps no .npy arrays: its points live in Qdrant (tests/unit/index/test_index_qdrant.py)
    assert set(made) | {"hybrid", "qdrant"} == set(INDEXES.names()), "a new index kind: add it here"
    out = {}
    for kind, (idx, x) in made.items():
        idx.add(ids, x)
        out[kind] = _saved(tmp_path, idx, kind)
    return out


def _corruptions(a: np.ndarray):
    """Damage a loader must refuse or survive: out-of-range and negative entries, a wrong dtype,
    a row less, an extra axis, NaN."""
    if a.dtype.kind in "iu" and a.size:
        yield "huge", _set0(int(np.iinfo(a.dtype).max))(a)
        if a.dtype.kind == "i":
            yield "negative", _set0(-1)(a)
        yield "float", a.astype(np.float64)
    if a.dtype.kind == "f" and a.size:
        yield "nan", np.where(np.arange(a.size).reshape(a.shape) == 0, np.nan, a).astype(a.dtype)
    if a.ndim and len(a):
        yield "short", a[:-1]
    yield "axis", a[None]


def test_hostile_every_index_kind_refuses_or_survives_damaged_arrays(tmp_path) -> None:
    """Each .npy of each index kind, damaged each way: load raises CheckpointError naming the
    file, or the index loads and searches without error (never a crash or an IndexError)."""
    queries = {
        "bm25": [[1, 2, 3]],
        "multivector": random_multivector(2, 16, seed=9),
        "multivector-plaid": random_multivector(2, 16, seed=9),
        "sparse": random_sparse(2, 40, seed=9),
    }
    checked = 0
    for kind, d in _every_kind(tmp_path).items():
        q = queries.get(kind, clustered(2, 16, 9))
        for f in sorted(d.glob("*.npy")):
            original = np.load(f)
            for how, bad in _corruptions(original):
                np.save(f, bad, allow_pickle=False)
                try:
                    idx = load_index(d)
                except CheckpointError as e:
                    named = f.name in str(e) or "index.json" in str(e) or str(d) in str(e)
                    assert named, (kind, f.name, how, e)
                else:
                    idx.search(q, k=3)
                finally:
                    np.save(f, original, allow_pickle=False)
                checked += 1
    assert checked > 60
