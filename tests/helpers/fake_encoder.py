"""A deterministic, model-free encoder with the Encoder.encode contract (for eval tests)."""

import functools
import zlib

import numpy as np

from embforge.types import Embeddings, SparseVectors

V = 997
D = 48


def _tok(text):
    return [w.strip(".,?!\"'()").lower() for w in text.split() if w.strip(".,?!\"'()")]


@functools.cache
def _vec(word):
    rng = np.random.default_rng(zlib.crc32(word.encode()))
    v = rng.normal(size=D).astype(np.float32)
    return v / np.linalg.norm(v)


class FakeTokenizer:
    def tokenize(self, text):
        return _tok(text)


class FakeEncoder:
    tokenizer = FakeTokenizer()

    def encode(self, texts, role="document", heads=("dense",), batch_size=32, max_length=None, dim=None):
        toks = [_tok(t) or ["empty"] for t in texts]
        out = {}
        if "dense" in heads:
            d = np.stack([np.mean([_vec(w) for w in t], 0) for t in toks])
            out["dense"] = d / np.linalg.norm(d, axis=1, keepdims=True)
        if "sparse" in heads:
            rows = []
            for t in toks:
                r = {}
                for w in t:
                    tid = zlib.crc32(w.encode()) % V
                    r[tid] = max(r.get(tid, 0.0), 1.0 / (1 + len(w) % 3))
                rows.append(r)
            out["sparse"] = SparseVectors.from_dicts(rows, V)
        if "multivector" in heads:
            out["multivector"] = [np.stack([_vec(w) for w in t]) for t in toks]
        return Embeddings(**out, num_tokens=np.array([len(t) for t in toks]))
