from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch

from embforge.errors import CheckpointError, ConfigError, DataError, EmbforgeError
from embforge.model.encoder import Encoder

TEXTS = ["재판부는 검찰의 공소사실을", "the dog runs in the park", "北京 天气 很好", "a"]


def test_forward_shapes_and_masks(tiny_m3):
    b = tiny_m3.tokenize(TEXTS, role="query")
    out = tiny_m3(b)
    B, T = b.input_ids.shape
    assert out.dense.shape == (B, 32)
    assert torch.allclose(out.dense.norm(dim=-1), torch.ones(B), atol=1e-5)
    assert out.sparse.shape == (B, T)
    special = torch.isin(b.input_ids, torch.tensor(tiny_m3.tokenizer.all_special_ids))
    assert (out.sparse[special] == 0).all() and (out.sparse >= 0).all()
    assert out.multivector.shape == (B, T - 1, 32)
    assert torch.equal(out.multivector_mask, b.attention_mask[:, 1:])
    norms = out.multivector.norm(dim=-1)
    assert torch.allclose(norms[out.multivector_mask.bool()], torch.ones(1), atol=1e-5)
    assert (norms[~out.multivector_mask.bool()] == 0).all()


def test_forward_computes_only_asked_heads_and_keeps_grad(tiny_m3):
    out = tiny_m3(tiny_m3.tokenize(TEXTS), heads=("sparse",))
    assert out.dense is None and out.multivector is None
    out.sparse.sum().backward()
    assert tiny_m3.sparse_head.linear.weight.grad is not None
    tiny_m3.zero_grad(set_to_none=True)


def test_matryoshka_truncates_and_renormalises(tiny_m3):
    full = tiny_m3.encode(TEXTS).dense
    small = tiny_m3.encode(TEXTS, dim=8).dense
    assert small.shape == (4, 8)
    want = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(small, want, atol=1e-5)
    with pytest.raises(ConfigError, match=r"dim must be an int in 1\.\.32"):
        tiny_m3.encode(TEXTS, dim=64)


def test_encode_keeps_input_order_regardless_of_batching(tiny_m3):
    texts = TEXTS * 3 + ["x " * n for n in range(1, 30, 3)]
    a = tiny_m3.encode(texts, heads=("dense", "sparse", "multivector"), batch_size=2, max_tokens=40)
    for i in (0, 5, len(texts) - 1):
        one = tiny_m3.encode([texts[i]], heads=("dense", "sparse", "multivector"))
        np.testing.assert_allclose(a.dense[i], one.dense[0], atol=1e-5)
        assert a.sparse.row(i).keys() == one.sparse.row(0).keys()
        np.testing.assert_allclose(a.multivector[i], one.multivector[0], atol=1e-5)
    assert a.num_tokens[3] == len(tiny_m3.tokenizer("a")["input_ids"])


def test_bf16_is_close_to_fp32(tiny_m3, caplog, monkeypatch):
    import embforge.model.encode as enc_mod

    monkeypatch.setattr(enc_mod, "cpu_has_bf16", lambda: False)
    a = tiny_m3.encode(TEXTS).dense
    with caplog.at_level(logging.WARNING, logger="embforge"):
        b = tiny_m3.encode(TEXTS, dtype="bf16").dense
    assert "without AVX512-BF16/AMX: bf16 matmul is emulated" in caplog.text
    assert b.dtype == np.float32
    assert (np.sum(a * b, axis=1) > 0.99).all()
    with pytest.raises(ConfigError, match="unknown dtype 'int8'; choose from: fp32, bf16, fp16"):
        tiny_m3.encode(TEXTS, dtype="int8")


def test_truncation_warns_and_mcls_keeps_more(tiny_m3, caplog):
    long = " ".join(["검찰의 공소사실을 모두 유죄로 인정했다"] * 60)
    with caplog.at_level(logging.WARNING, logger="embforge"):
        e = tiny_m3.encode([long, "short"], max_length=64)
    assert "1 of 2 texts are longer than max_length=64" in caplog.text and "long_inputs='mcls'" in caplog.text
    assert e.num_tokens[0] == 64
    m = tiny_m3.encode([long, "short"], long_inputs="mcls", max_length=500)
    assert m.num_tokens[0] > 256
    # MCLS on a short text (one [CLS]) equals plain CLS pooling
    np.testing.assert_allclose(m.dense[1], e.dense[1], atol=1e-5)
    # the MCLS vector is the normalised mean of the [CLS] states at 0, 256, ...
    from embforge.text import collate, tokenize_texts

    tok = tokenize_texts(tiny_m3.tokenizer, [long], 500, mcls_stride=256)
    assert tok.cls_positions[0] == [0, 256]
    with torch.no_grad():
        h = tiny_m3.hidden_states(collate(tok.ids, tiny_m3.pad_id))
    v = h[0, [0, 256]].mean(0)
    np.testing.assert_allclose(m.dense[0], (v / v.norm()).numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "bad, match",
    [
        (["ok", ""], r"texts\[1\] is empty or whitespace only"),
        (["ok", "  "], r"texts\[1\] is empty"),
        (["ok", None], r"texts\[1\] is None; every text must be a non-empty string"),
        (["ok", 3], r"texts\[1\] has type int \(3\); every text must be a str"),
        (None, "texts is None"),
        (42, "must be a string or a list of strings, got int 42"),
    ],
)
def test_bad_texts_are_named(tiny_m3, bad, match):
    with pytest.raises(DataError, match=match):
        tiny_m3.encode(bad)


def test_bad_options_are_named(tiny_m3):
    with pytest.raises(ConfigError, match="unknown head 'colbert'; choose from: dense, multivector, sparse"):
        tiny_m3.encode(TEXTS, heads=("colbert",))
    with pytest.raises(ConfigError, match="unknown role 'passage'; choose from: document, query"):
        tiny_m3.encode(TEXTS, role="passage")
    with pytest.raises(ConfigError, match="unknown long_inputs"):
        tiny_m3.encode(TEXTS, long_inputs="split")


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist; check the path"):
        Encoder.from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(CheckpointError, match="has no config.json or modules.json"):
        Encoder.from_pretrained(str(tmp_path))
    with pytest.raises(CheckpointError, match="could not be fetched from the Hugging Face hub"):
        Encoder.from_pretrained("no-such-org/no-such-model")


def test_wrong_head_shapes_are_a_clear_error(tiny_m3_path, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_m3_path, bad)
    torch.save({"weight": torch.zeros(1, 64), "bias": torch.zeros(1)}, bad / "sparse_linear.pt")
    with pytest.raises(
        CheckpointError, match=r"sparse_linear.pt: sparse head has shapes .*\(1, 64\).*needs.*\(1, 32\)"
    ):
        Encoder.from_pretrained(str(bad))
    assert issubclass(CheckpointError, EmbforgeError)


def test_missing_heads_warn_and_are_deterministic(tiny_m3_path, tmp_path, caplog):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_m3_path, bare)
    (bare / "sparse_linear.pt").unlink()
    (bare / "colbert_linear.pt").unlink()
    with caplog.at_level(logging.WARNING, logger="embforge"):
        enc = Encoder.from_pretrained(str(bare))
        enc.encode(["the dog runs"])  # dense only: the untrained heads stay quiet (issue 18)
    assert "not found" not in caplog.text
    assert torch.equal(enc.multivector_head.linear.weight, torch.eye(32))
    with caplog.at_level(logging.WARNING, logger="embforge"):
        w = enc.encode(["the dog runs"], heads=("sparse",)).sparse
        enc.encode(["again"], heads=("dense", "sparse"))  # said once, when first used
    assert caplog.text.count("sparse_linear.pt not found: no sparse head weights") == 1
    assert "colbert_linear.pt" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="embforge"):
        enc.encode(["x"], heads=("multivector",))
    assert "colbert_linear.pt not found: no multivector head weights" in caplog.text
    assert np.allclose(w.values, 0.4)  # balanced init: W_lex=0, b=0.4 (every term weighs 0.4)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="embforge"):
        dense_only = Encoder.from_pretrained(str(bare), heads=("dense",))
    assert caplog.text == "" and dense_only.sparse_head is None
    with pytest.raises(ConfigError, match="head 'sparse' is not in this encoder"):
        dense_only.encode(["x"], heads=("sparse",))


@pytest.mark.parametrize("fmt", ["embforge", "bge-m3", "sentence-transformers"])
def test_save_load_round_trip(tiny_m3, tmp_path, fmt):
    out = tmp_path / fmt
    tiny_m3.save_pretrained(str(out), format=fmt)
    again = Encoder.from_pretrained(str(out))
    a = tiny_m3.encode(TEXTS, heads=("dense", "sparse", "multivector"))
    b = again.encode(TEXTS, heads=("dense", "sparse", "multivector"))
    np.testing.assert_array_equal(a.dense, b.dense)
    np.testing.assert_array_equal(a.sparse.values, b.sparse.values)
    np.testing.assert_array_equal(a.multivector[0], b.multivector[0])
    assert again.config == tiny_m3.config
    if fmt == "embforge":
        import json

        meta = json.loads((out / "config.json").read_text())
        assert meta["format"] == "embforge" and meta["format_version"] == 1
        assert not list(out.glob("*.pt")) and not list(out.glob("*.bin"))  # no pickle


def test_unknown_format_and_future_version(tiny_m3, tmp_path):
    with pytest.raises(ConfigError, match="unknown checkpoint format 'onnx'; choose from: embforge, bge-m3"):
        tiny_m3.save_pretrained(str(tmp_path / "x"), format="onnx")
    import json

    out = tmp_path / "e"
    tiny_m3.save_pretrained(str(out))
    meta = json.loads((out / "config.json").read_text())
    meta["format_version"] = 99
    (out / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format_version 99 is not supported"):
        Encoder.from_pretrained(str(out))


def test_embforge_weights_with_wrong_shapes_are_a_clear_error(tiny_m3, tmp_path):
    from safetensors.torch import load_file, save_file

    out = tmp_path / "e"
    tiny_m3.save_pretrained(str(out))
    sd = load_file(str(out / "model.safetensors"))
    sd["sparse_head.linear.weight"] = torch.zeros(1, 7)
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="model.safetensors: tensor shapes do not match config.json"):
        Encoder.from_pretrained(str(out))


def test_unsupported_sentence_transformers_pooling_is_named(minilm, tmp_path):
    import json

    out = tmp_path / "st"
    minilm.save_pretrained(str(out), format="sentence-transformers")
    pc = json.loads((out / "1_Pooling" / "config.json").read_text())
    pc.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps(pc))
    (out / "embforge_encoder.json").unlink()
    with pytest.raises(CheckpointError, match=r"pooling modes \['max_tokens'\] are not supported"):
        Encoder.from_pretrained(str(out), heads=("dense",))


@pytest.mark.parametrize("mode,pooling", [("mean", "mean"), ("cls", "cls"), ("lasttoken", "last_token")])
def test_sentence_transformers_6_pooling_mode_string_loads(minilm, tmp_path, mode, pooling):
    """sentence-transformers 6 writes 1_Pooling/config.json as {"pooling_mode": "mean", ...}."""
    import json

    import numpy as np

    out = tmp_path / "st6"
    minilm.save_pretrained(str(out), format="sentence-transformers")
    dim = json.loads((out / "1_Pooling" / "config.json").read_text())["word_embedding_dimension"]
    (out / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": dim, "pooling_mode": mode})
    )
    (out / "embforge_encoder.json").unlink()  # read the sentence-transformers layout itself
    enc = Encoder.from_pretrained(str(out), heads=("dense",))
    assert enc.config.pooling == pooling
    if mode == "mean":  # the bundled model is mean-pooled: same vectors as before
        texts = ["a cat sits on the mat", "stocks fell on monday"]
        a, b = minilm.encode(texts, heads=("dense",)).dense, enc.encode(texts, heads=("dense",)).dense
        assert np.allclose(a, b, atol=1e-5)
    (out / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "weightedmean"}))
    with pytest.raises(CheckpointError, match=r"pooling modes \['weightedmean'\] are not supported"):
        Encoder.from_pretrained(str(out), heads=("dense",))
