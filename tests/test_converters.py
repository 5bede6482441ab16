"""converters/: every format to every format and back, bit-exact; dtypes; aliases; bad files; interrupted writes.

Framework-free except `pytorch_model.bin` (needs torch: those cases run in the pt env and say so when skipped)."""

from __future__ import annotations

import importlib.util
import json
import os
import struct

import ml_dtypes
import numpy as np
import pytest
from conftest import random_checkpoint

from converters.checkpoint import CheckpointError, read_checkpoint
from converters.convert import cast, convert, parse_size
from converters.formats import FORMATS, WEIGHTS, open_checkpoint

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="pytorch_model.bin needs torch (runs in the pt env)")


def fmt_param(fmt):
    return pytest.param(fmt, marks=needs_torch) if fmt == "pt" else fmt


def weights_in(folder):
    """The canonical tensors of the checkpoint in `folder`, read with their stored dtypes."""
    names = [n for n in os.listdir(folder) if n.endswith(".index.json")] or \
        [n for n in os.listdir(folder) if n in WEIGHTS.values()]
    with open_checkpoint(os.path.join(folder, names[0])) as source:
        return source.read_all()


def assert_bit_exact(got: dict, want: dict):
    assert set(got) == set(want), set(got) ^ set(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        assert got[key].tobytes() == value.tobytes(), key


def leftovers(parent, name):
    return [n for n in os.listdir(parent) if n.startswith("." + name)]


# ---------------------------------------------------------------------------------------------- the matrix
@pytest.mark.parametrize("source", [fmt_param(f) for f in FORMATS])
@pytest.mark.parametrize("target", [fmt_param(f) for f in FORMATS])
@pytest.mark.parametrize("sharded", [False, True], ids=["one-file", "sharded"])
def test_every_format_to_every_format_and_back_is_bit_exact(tmp_path, source, target, sharded):
    src, _, state = random_checkpoint(tmp_path / "canonical", "LongformerForMaskedLM")
    shard = 40_000 if sharded else None
    convert(src, tmp_path / "a", source, max_shard_size=shard)
    out = convert(tmp_path / "a", tmp_path / "b", target, max_shard_size=shard)
    assert (len(out.files) > 2) == sharded and out.head == "LongformerForMaskedLM"
    assert_bit_exact(weights_in(tmp_path / "b"), state)
    convert(tmp_path / "b", tmp_path / "c", "safetensors")
    assert_bit_exact(read_checkpoint(str(tmp_path / "c" / "model.safetensors")), state)
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["architectures"] == ["LongformerForMaskedLM"] and config["vocab_size"] == 99


@pytest.mark.parametrize("head", ["LongformerModel", "LongformerForSequenceClassification",
                                  "LongformerForMultipleChoice", "LongformerForTokenClassification",
                                  "LongformerForQuestionAnswering"])
@pytest.mark.parametrize("target", ["tf", "flax"])
def test_every_head_round_trips(tmp_path, head, target):
    """Base checkpoints keep their prefix-free names (TF stores them under `longformer/`), heads keep theirs."""
    src, _, state = random_checkpoint(tmp_path / "canonical", head)
    assert convert(src, tmp_path / "x", target).head == head
    convert(tmp_path / "x", tmp_path / "back", "safetensors")
    assert_bit_exact(read_checkpoint(str(tmp_path / "back" / "model.safetensors")), state)


def test_flax_msgpack_uses_hugging_face_flax_names(tmp_path):
    import msgpack

    src, _, state = random_checkpoint(tmp_path / "canonical", "LongformerForMaskedLM")
    convert(src, tmp_path / "flax", "flax")
    tree = msgpack.unpackb((tmp_path / "flax" / "flax_model.msgpack").read_bytes(), raw=False,
                           ext_hook=lambda code, data: (code, msgpack.unpackb(data, raw=True)))
    layer = tree["longformer"]["encoder"]["layer"]["0"]
    code, (shape, dtype, _) = layer["attention"]["self"]["query"]["kernel"]
    assert code == 1 and dtype == b"float32" and shape == [32, 32]
    assert set(tree["longformer"]["embeddings"]["LayerNorm"]) == {"scale", "bias"}
    assert set(tree["longformer"]["embeddings"]["word_embeddings"]) == {"embedding"}
    assert set(tree["lm_head"]) == {"dense", "layer_norm", "bias"}
    kernel = weights_in(tmp_path / "flax")["longformer.encoder.layer.0.attention.self.query.weight"]
    assert np.array_equal(kernel, state["longformer.encoder.layer.0.attention.self.query.weight"])


def test_tf_h5_uses_hugging_face_4_layout(tmp_path):
    import h5py

    src, _, _ = random_checkpoint(tmp_path / "canonical", "LongformerForMaskedLM")
    convert(src, tmp_path / "tf", "tf")
    with h5py.File(tmp_path / "tf" / "tf_model.h5") as f:
        assert [n.decode() for n in f.attrs["layer_names"]] == ["longformer", "lm_head"]
        names = [n.decode() for n in f["longformer"].attrs["weight_names"]]
        assert "tf_longformer_for_masked_lm/longformer/encoder/layer_._1/attention/self/query_global/kernel:0" in names
        assert "tf_longformer_for_masked_lm/longformer/embeddings/word_embeddings/weight:0" in names
        assert "tf_longformer_for_masked_lm/longformer/embeddings/LayerNorm/gamma:0" in names
        lm = [n.decode() for n in f["lm_head"].attrs["weight_names"]]
        assert "tf_longformer_for_masked_lm/lm_head/bias:0" in lm  # and the embeddings the head holds
        assert "tf_longformer_for_masked_lm/longformer/embeddings/word_embeddings/weight:0" in lm


def test_reads_the_h5_files_transformers_4_wrote():
    """The committed tests/data/hf4_tf files (saved by transformers 4.57 TF) read into canonical names."""
    data = os.path.join(os.path.dirname(__file__), "data", "hf4_tf")
    one = weights_in(os.path.join(data, "LongformerForMaskedLM"))
    sharded = weights_in(os.path.join(data, "LongformerForMaskedLM-sharded"))
    assert_bit_exact(sharded, one)
    assert one["longformer.encoder.layer.0.attention.self.query.weight"].shape == (32, 32)
    assert "lm_head.bias" in one and "longformer.embeddings.LayerNorm.weight" in one


# ---------------------------------------------------------------------------------------------- dtypes
def _bf16_nearest_even(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 bits with integer arithmetic (an implementation independent of ml_dtypes)."""
    bits = x.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


@pytest.mark.parametrize("target", [fmt_param(f) for f in ("safetensors", "pt", "flax")])
def test_bf16_and_fp16_round_to_nearest_even(tmp_path, target):
    src, _, state = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    for dtype, np_dtype in (("bf16", ml_dtypes.bfloat16), ("fp16", np.float16)):
        convert(src, tmp_path / dtype, target, dtype=dtype)
        got = weights_in(tmp_path / dtype)
        for key, value in state.items():
            assert got[key].dtype == np.dtype(np_dtype), key
            if dtype == "bf16":
                assert np.array_equal(got[key].view(np.uint16), _bf16_nearest_even(value)), key
            else:
                assert np.array_equal(got[key], value.astype(np.float16)), key
        # ... and back to fp32 exactly (every bf16 / fp16 value is a float32)
        convert(tmp_path / dtype, tmp_path / f"{dtype}-32", "safetensors", dtype="fp32")
        back = read_checkpoint(str(tmp_path / f"{dtype}-32" / "model.safetensors"))
        for key in state:
            assert back[key].dtype == np.float32 and np.array_equal(back[key], got[key].astype(np.float32)), key
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_cast_rounding_ties_and_fp16_overflow():
    x = np.array([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 0.1], np.float32)  # two ties: to even, both ways
    assert list(cast(x, "bf16").astype(np.float32)[:3]) == [1.0, 1 + 2**-6, -1.0]
    assert cast(np.arange(3), "bf16").dtype == np.int64  # integer tensors are never cast
    with pytest.raises(CheckpointError, match="embeddings.*beyond fp16"):
        cast(np.array([1e5], np.float32), "fp16", "embeddings")


def test_h5_refuses_bfloat16_with_a_fix(tmp_path):
    src, _, _ = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    with pytest.raises(CheckpointError, match="bfloat16.*--dtype fp32 or fp16"):
        convert(src, tmp_path / "tf", "tf", dtype="bf16")
    assert not os.path.exists(tmp_path / "tf") and not leftovers(tmp_path, "tf")


# ---------------------------------------------------------------------------------------------- aliases and legacy
@needs_torch
def test_legacy_bin_with_tied_aliases_and_position_ids(tmp_path):
    """Old pytorch_model.bin files carry the tied decoder, its bias alias and a position_ids buffer."""
    import torch

    src, config, state = random_checkpoint(tmp_path / "canonical", "LongformerForMaskedLM")
    legacy = {k: torch.from_numpy(v) for k, v in state.items()}
    legacy["lm_head.decoder.weight"] = legacy["longformer.embeddings.word_embeddings.weight"]
    legacy["lm_head.decoder.bias"] = legacy["lm_head.bias"]
    legacy["longformer.embeddings.position_ids"] = torch.arange(64)[None]
    for key in [k for k in legacy if k.endswith("LayerNorm.weight")][:2]:  # TF-ported names
        legacy[key[: -len("weight")] + "gamma"] = legacy.pop(key)
    os.makedirs(tmp_path / "legacy")
    torch.save(legacy, tmp_path / "legacy" / "pytorch_model.bin")
    config.save_pretrained(tmp_path / "legacy")
    convert(tmp_path / "legacy", tmp_path / "out", "safetensors")
    assert_bit_exact(read_checkpoint(str(tmp_path / "out" / "model.safetensors")), state)


def test_untied_decoder_is_kept(tmp_path):
    src, _, state = random_checkpoint(tmp_path / "canonical", "LongformerForMaskedLM", tie_word_embeddings=False)
    assert "lm_head.decoder.weight" in state
    convert(src, tmp_path / "flax", "flax")
    assert_bit_exact(weights_in(tmp_path / "flax"), state)


def test_unknown_extra_tensors_are_carried_with_a_warning(tmp_path):
    src, _, state = random_checkpoint(tmp_path / "canonical", "LongformerForQuestionAnswering")
    extra = dict(state, **{"longformer.pooler.dense.weight": np.ones((32, 32), np.float32)})
    from converters.formats import write_checkpoint

    write_checkpoint(str(src), "safetensors", {k: (v.shape, v.dtype) for k, v in extra.items()}, extra.__getitem__,
                     head="LongformerForQuestionAnswering")
    with pytest.warns(UserWarning, match="pooler.dense.weight"):
        out = convert(src, tmp_path / "out", "flax")
    assert out.carried == ["longformer.pooler.dense.weight"]
    assert_bit_exact(weights_in(tmp_path / "out"), extra)


# ---------------------------------------------------------------------------------------------- bad files
def _expect_failure(tmp_path, src, match, target="safetensors", error=CheckpointError):
    with pytest.raises(error, match=match):
        convert(src, tmp_path / "out", target)
    assert not os.path.exists(tmp_path / "out") and not leftovers(tmp_path, "out")


@pytest.mark.parametrize("fmt", [fmt_param(f) for f in FORMATS])
def test_truncated_files_name_the_file(tmp_path, fmt):
    src, _, _ = random_checkpoint(tmp_path / "canonical", "LongformerForMaskedLM")
    convert(src, tmp_path / "f", fmt)
    path = tmp_path / "f" / WEIGHTS[fmt]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    _expect_failure(tmp_path, tmp_path / "f", rf"{WEIGHTS[fmt]}.*(truncated or corrupt|not a readable)")


def test_corrupt_safetensors_header(tmp_path):
    src, _, _ = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    path = src / "model.safetensors"
    data = bytearray(path.read_bytes())
    n = struct.unpack("<Q", data[:8])[0]
    data[8:8 + n] = b"{" + b" " * (n - 1)
    path.write_bytes(bytes(data))
    _expect_failure(tmp_path, src, "model.safetensors.*header is not valid")
    path.write_bytes(b"\x00" * 4)
    _expect_failure(tmp_path, src, "model.safetensors.*header length is invalid")


def test_missing_shard_and_lying_index(tmp_path):
    src, _, _ = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    convert(src, tmp_path / "sh", "safetensors", max_shard_size=30_000)
    index = json.loads((tmp_path / "sh" / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2
    index["weight_map"]["encoder.layer.9.output.dense.weight"] = shards[0]
    (tmp_path / "sh" / "model.safetensors.index.json").write_text(json.dumps(index))
    _expect_failure(tmp_path, tmp_path / "sh", "lists tensors that no shard holds.*layer.9")
    os.remove(tmp_path / "sh" / shards[1])
    _expect_failure(tmp_path, tmp_path / "sh", f"names shard {shards[1]}, which is missing", error=FileNotFoundError)


def test_foreign_checkpoint_and_wrong_config(tmp_path):
    from converters.formats import write_checkpoint

    src, config, state = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    bert = {k.replace("encoder.", "bert.encoder."): v for k, v in state.items()}
    write_checkpoint(str(src), "safetensors", {k: (v.shape, v.dtype) for k, v in bert.items()}, bert.__getitem__,
                     head="LongformerModel")
    _expect_failure(tmp_path, src, "model.safetensors lacks .* tensors of the Longformer encoder")
    src, config, state = random_checkpoint(tmp_path / "canonical2", "LongformerModel")
    config.intermediate_size = 40
    config.save_pretrained(src)
    _expect_failure(tmp_path, src, r"intermediate.dense.weight: checkpoint \(37, 32\), model \(40, 32\)")


def test_not_a_checkpoint_at_all(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "flax_model.msgpack").write_bytes(b"\x93\x01\x02\x03")  # a msgpack list, not a tree
    random_checkpoint(tmp_path / "cfg", "LongformerModel")[1].save_pretrained(tmp_path / "junk")
    _expect_failure(tmp_path, tmp_path / "junk", "flax_model.msgpack holds a list")
    (tmp_path / "junk" / "flax_model.msgpack").unlink()
    (tmp_path / "junk" / "tf_model.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    _expect_failure(tmp_path, tmp_path / "junk", "tf_model.h5 .* not a readable HDF5")


# ---------------------------------------------------------------------------------------------- safe writes
class Interrupt(KeyboardInterrupt):
    pass


@pytest.mark.parametrize("target", [fmt_param(f) for f in FORMATS])
def test_interrupted_conversion_leaves_nothing(tmp_path, target, monkeypatch):
    from converters import formats

    src, _, _ = random_checkpoint(tmp_path / "canonical", "LongformerForMaskedLM")
    calls = {"n": 0}
    read = formats.Source.read

    def flaky(self, key):
        calls["n"] += 1
        if calls["n"] == 20:
            raise Interrupt()
        return read(self, key)

    monkeypatch.setattr(formats.Source, "read", flaky)
    with pytest.raises(Interrupt):
        convert(src, tmp_path / "out", target, max_shard_size=30_000)
    assert not os.path.exists(tmp_path / "out") and not leftovers(tmp_path, "out")


def test_existing_destination_needs_force_and_survives_a_failure(tmp_path, monkeypatch):
    from converters import formats

    src, _, state = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    convert(src, tmp_path / "out", "flax")
    with pytest.raises(FileExistsError, match="--force"):
        convert(src, tmp_path / "out", "safetensors")
    monkeypatch.setattr(formats.Source, "read", lambda self, key: (_ for _ in ()).throw(Interrupt()))
    with pytest.raises(Interrupt):
        convert(src, tmp_path / "out", "safetensors", force=True)
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", "flax_model.msgpack"]  # untouched
    monkeypatch.undo()
    convert(src, tmp_path / "out", "safetensors", force=True)
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", "model.safetensors"]
    assert not leftovers(tmp_path, "out")
    assert_bit_exact(read_checkpoint(str(tmp_path / "out" / "model.safetensors")), state)


def test_tokenizer_files_travel(tmp_path, tokenizer_dir):
    src, _, _ = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    for name in ("vocab.json", "merges.txt"):
        (src / name).write_bytes((tokenizer_dir / name).read_bytes())
    convert(src, tmp_path / "out", "flax")
    assert (tmp_path / "out" / "vocab.json").read_bytes() == (tokenizer_dir / "vocab.json").read_bytes()
    assert (tmp_path / "out" / "merges.txt").exists()


def test_parse_size():
    assert parse_size("500MB") == 500 * 10**6 and parse_size("2GiB") == 2 * 2**30 and parse_size(123) == 123
    assert parse_size(None) is None and parse_size("1.5 gb") == 1_500_000_000
    with pytest.raises(ValueError, match="500MB"):
        parse_size("lots")


def test_unknown_format_and_dtype(tmp_path):
    src, _, _ = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    with pytest.raises(ValueError, match="Unknown target format 'tflite'"):
        convert(src, tmp_path / "o", "tflite")
    with pytest.raises(ValueError, match="Unknown dtype 'fp8'"):
        convert(src, tmp_path / "o", "flax", dtype="fp8")


def test_flax_chunked_arrays(tmp_path, monkeypatch):
    """Arrays over msgpack's limit are stored as Flax chunks them (`__msgpack_chunked_array__`), and read back."""
    from converters import formats

    src, _, state = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    monkeypatch.setattr(formats, "MSGPACK_CHUNK_BYTES", 1000)
    convert(src, tmp_path / "flax", "flax")
    assert b"__msgpack_chunked_array__" in (tmp_path / "flax" / "flax_model.msgpack").read_bytes()
    assert_bit_exact(weights_in(tmp_path / "flax"), state)


def test_convert_from_a_hub_cache_offline(tmp_path):
    """A Hub id (with revision, cache_dir, local_files_only) as the source: weights, config and tokenizer files."""
    from conftest import make_cache

    src, _, state = random_checkpoint(tmp_path / "canonical", "LongformerForMaskedLM")
    convert(src, tmp_path / "repo", "flax", max_shard_size=40_000)
    (tmp_path / "repo" / "merges.txt").write_text("#version: 0.2\n")
    cache = make_cache(tmp_path, tmp_path / "repo", revision="v1")
    out = convert("someorg/tiny-longformer", tmp_path / "out", "safetensors", revision="v1", cache_dir=str(cache),
                  local_files_only=True)
    assert out.head == "LongformerForMaskedLM" and (tmp_path / "out" / "merges.txt").exists()
    assert_bit_exact(read_checkpoint(str(tmp_path / "out" / "model.safetensors")), state)
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        convert("someorg/missing", tmp_path / "none", "flax", cache_dir=str(cache), local_files_only=True)
    assert not (tmp_path / "none").exists()


def test_written_safetensors_read_by_the_safetensors_library(tmp_path):
    """Our streaming safetensors writer's files are what the reference reader (the `safetensors` package) reads."""
    from safetensors.numpy import load_file

    src, _, state = random_checkpoint(tmp_path / "canonical", "LongformerForMaskedLM")
    convert(src, tmp_path / "flax", "flax")
    out = convert(tmp_path / "flax", tmp_path / "st", "safetensors", max_shard_size=40_000)
    loaded = {}
    for name in out.files:
        if name.endswith(".safetensors"):
            loaded.update(load_file(str(tmp_path / "st" / name)))
    assert_bit_exact(loaded, state)
