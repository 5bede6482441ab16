"""Safe by construction: conversion writes only what it owns, readers accept only their format, and every bad file
fails with a `CheckpointError` naming it (a bad tokenizer file: a ValueError naming it). Framework-free (h5py for
tf_model.h5); .bin cases need torch."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
from conftest import make_cache, random_checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converters.checkpoint import CheckpointError, read_checkpoint
from converters.convert import convert
from converters.formats import WEIGHTS, open_checkpoint
from longformer import LongformerTokenizer

HAS_TORCH = importlib.util.find_spec("torch") is not None


def leftovers(parent, name="out"):
    return sorted(n for n in os.listdir(parent) if n.startswith("." + name))


def same_tensors(folder, state):
    got = read_checkpoint(str(folder / "model.safetensors"))
    return set(got) == set(state) and all(np.array_equal(got[k], v) for k, v in state.items())


# ---------------------------------------------------------------------------------------------- what --force touches
def test_force_replaces_only_the_checkpoint_and_lists_what_it_removes(tmp_path):
    src, _, state = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    dst = tmp_path / "out"
    (dst / "data").mkdir(parents=True)
    (dst / "data" / "train.csv").write_text("keep me")
    (dst / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists; pass --force"):
        convert(src, dst, "flax")
    convert(src, dst, "flax", max_shard_size=30_000, force=True)
    shards = sorted(n for n in os.listdir(dst) if n.startswith("flax_model"))
    assert len(shards) > 2 and "flax_model.msgpack.index.json" in shards
    with pytest.warns(UserWarning, match="would shadow or contradict") as record:
        convert(src, dst, "safetensors", force=True)
    assert all(name in str(record[0].message) for name in shards)
    assert sorted(os.listdir(dst)) == ["config.json", "data", "model.safetensors", "notes.txt"]
    assert (dst / "data" / "train.csv").read_text() == "keep me" and (dst / "notes.txt").read_text() == "mine"
    assert same_tensors(dst, state) and not leftovers(tmp_path)


def test_destination_may_not_be_the_source_or_inside_it(tmp_path):
    src, _, state = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    os.symlink(src, tmp_path / "link")
    for source, dst, where in [(src, src, "is the source folder"), (src / "model.safetensors", src, "is the source"),
                               (tmp_path / "link", src, "is the source folder"),
                               (src, src / "sub", "inside the source folder")]:
        with pytest.raises(ValueError, match=where):
            convert(source, dst, "flax", force=True)
    assert sorted(os.listdir(src)) == ["config.json", "model.safetensors"] and same_tensors(src, state)
    cache = make_cache(tmp_path, src)
    snapshot = next((cache / "models--someorg--tiny-longformer" / "snapshots").iterdir())
    with pytest.raises(ValueError, match="is the source folder"):
        convert("someorg/tiny-longformer", snapshot, "flax", force=True, cache_dir=str(cache))


def test_new_destination_appears_whole_and_follows_the_umask(tmp_path):
    src, _, state = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    old = os.umask(0o027)
    try:
        convert(src, tmp_path / "out", "safetensors")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "out").st_mode & 0o777 == 0o750
    assert {os.stat(tmp_path / "out" / n).st_mode & 0o777 for n in os.listdir(tmp_path / "out")} == {0o640}
    assert same_tensors(tmp_path / "out", state)


def test_a_live_conversion_to_the_same_folder_is_refused(tmp_path):
    src, _, _ = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    (tmp_path / ".out.lock").write_text(str(os.getppid()))  # a running process holds it
    with pytest.raises(FileExistsError, match=r"Another conversion \(process \d+\) is writing"):
        convert(src, tmp_path / "out", "safetensors")
    assert not (tmp_path / "out").exists()


def test_a_folder_created_meanwhile_is_not_overwritten(tmp_path, monkeypatch):
    from converters import formats

    src, _, _ = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    read = formats.Source.read

    def racing(self, key):
        if not (tmp_path / "out").exists():
            (tmp_path / "out").mkdir()
            (tmp_path / "out" / "theirs.txt").write_text("theirs")
        return read(self, key)

    monkeypatch.setattr(formats.Source, "read", racing)
    with pytest.raises(FileExistsError, match="created by someone else"):
        convert(src, tmp_path / "out", "safetensors")
    assert os.listdir(tmp_path / "out") == ["theirs.txt"] and not leftovers(tmp_path)


RACER = """
import sys, time
from converters import formats
from converters.convert import convert
read = formats.Source.read
def slow(self, key):
    time.sleep(0.02)
    return read(self, key)
formats.Source.read = slow
convert(sys.argv[1], sys.argv[2], "safetensors")
"""


def test_two_racing_processes_exactly_one_wins(tmp_path):
    src, _, state = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(src), str(tmp_path / "out")],
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 1], results
    loser = next(err for rc, err in results if rc)
    assert "Another conversion" in loser or "already exists" in loser, loser
    assert same_tensors(tmp_path / "out", state) and not leftovers(tmp_path)


KILLED = """
import sys, time
from converters import formats
from converters.convert import convert
def stuck(self, key):
    open(sys.argv[3], "w").close()
    time.sleep(120)
formats.Source.read = stuck
convert(sys.argv[1], sys.argv[2], "safetensors")
"""


def test_leftovers_of_a_killed_conversion_are_cleaned_and_reported(tmp_path):
    src, _, state = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    flag = tmp_path / "writing"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(src), str(tmp_path / "out"), str(flag)])
    deadline = time.monotonic() + 60
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no cleanup runs
    proc.wait()
    assert leftovers(tmp_path) == [f".out.{proc.pid}.partial", ".out.lock"] and not (tmp_path / "out").exists()
    with pytest.warns(UserWarning, match=f"Removed the leftovers of an interrupted conversion .*process {proc.pid}"):
        convert(src, tmp_path / "out", "safetensors")
    assert same_tensors(tmp_path / "out", state) and not leftovers(tmp_path)


def test_a_failure_while_installing_never_leaves_the_folder_without_a_checkpoint(tmp_path, monkeypatch):
    from converters import convert as convert_module

    src, _, state = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    convert(src, tmp_path / "out", "flax")
    calls = []

    def replace_once(a, b):
        if os.path.dirname(b) == str(tmp_path / "out"):  # the install's renames (not config.json's own)
            calls.append(b)
            if len(calls) == 2:
                raise OSError(28, "No space left on device", b)
        os.rename(a, b)

    monkeypatch.setattr(convert_module.os, "replace", replace_once)
    with pytest.raises(OSError):
        convert(src, tmp_path / "out", "safetensors", force=True)
    monkeypatch.undo()
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == ["config.json", "flax_model.msgpack", "model.safetensors"]  # weights first, each whole
    for name in ("flax_model.msgpack", "model.safetensors"):
        with open_checkpoint(str(tmp_path / "out" / name)) as source:
            got = source.read_all()
        assert all(np.array_equal(got[k], v) for k, v in state.items())
    assert not leftovers(tmp_path)


# ---------------------------------------------------------------------------------------------- shard indexes
@pytest.mark.parametrize("name", ["../secret.safetensors", "/etc/passwd", "sub/model.safetensors", "..", "", 7,
                                  None, ["model-00001-of-00002.safetensors"]])
def test_index_may_name_only_plain_files_beside_it(tmp_path, name):
    convert(random_checkpoint(tmp_path / "canonical", "LongformerModel")[0], tmp_path / "sh", "safetensors",
            max_shard_size=30_000)
    index_path = tmp_path / "sh" / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    key = sorted(index["weight_map"])[0]
    index["weight_map"][key] = name
    index_path.write_text(json.dumps(index))
    for source in (tmp_path / "sh", "someorg/tiny-longformer"):
        hub = {} if source == tmp_path / "sh" else {"cache_dir": str(make_cache(tmp_path / str(len(str(name))),
                                                                                 tmp_path / "sh"))}
        with pytest.raises(CheckpointError, match=f"model.safetensors.index.json: tensor {key} is mapped to"):
            convert(source, tmp_path / "out", "safetensors", **hub)
        assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- safetensors
def rewrite_header(path, edit):
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


def first(header):
    return header[sorted(k for k in header if k != "__metadata__")[0]]


def by_offset(header, i):
    return sorted((v for k, v in header.items() if k != "__metadata__"), key=lambda v: v["data_offsets"][0])[i]


SAFETENSORS_CASES = {
    "no-shape": (lambda h: first(h).pop("shape"), "has no valid shape"),
    "offsets-of-length-1": (lambda h: first(h).update(data_offsets=[0]), "invalid data_offsets"),
    "negative-offsets": (lambda h: by_offset(h, 0).update(data_offsets=[-8, by_offset(h, 0)["data_offsets"][1] - 8]),
                         "invalid data_offsets"),
    "reversed-offsets": (lambda h: first(h).update(data_offsets=first(h)["data_offsets"][::-1]),
                         "invalid data_offsets|bytes for shape"),
    "overlapping": (lambda h: by_offset(h, 1).update(data_offsets=[x - 4 for x in by_offset(h, 1)["data_offsets"]]),
                    "overlaps the tensor before it"),
    "gap": (lambda h: by_offset(h, 0).update(data_offsets=[x + 4 for x in by_offset(h, 0)["data_offsets"]]),
            "overlaps|leaves a gap"),
    "string-shape": (lambda h: first(h).update(shape="32"), "has no valid shape"),
    "not-an-object": (lambda h: h.update({"x": [1, 2]}), "header entry of x is not an object"),
    "unknown-dtype": (lambda h: first(h).update(dtype="C64"), "unsupported dtype 'C64'"),
    "metadata-not-strings": (lambda h: h.update(__metadata__={"format": 1}), "__metadata__"),
}


@pytest.mark.parametrize("case", list(SAFETENSORS_CASES))
def test_safetensors_offsets_as_the_specification_requires(tmp_path, case):
    src, _, _ = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    edit, message = SAFETENSORS_CASES[case]
    rewrite_header(src / "model.safetensors", edit)
    with pytest.raises(CheckpointError, match=message) as info:
        open_checkpoint(str(src / "model.safetensors"))
    assert str(src / "model.safetensors") in str(info.value)


def test_safetensors_with_bytes_beyond_the_header_is_refused(tmp_path):
    src, _, _ = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    with open(src / "model.safetensors", "ab") as f:
        f.write(b"\0" * 16)
    with pytest.raises(CheckpointError, match="describes .* bytes, the file has"):
        open_checkpoint(str(src / "model.safetensors"))


# ---------------------------------------------------------------------------------------------- tf_model.h5
def h5_checkpoint(tmp_path, edit):
    h5py = pytest.importorskip("h5py")
    src, _, _ = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    convert(src, tmp_path / "h5", "tf")
    path = tmp_path / "h5" / "tf_model.h5"
    with h5py.File(path, "r+") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        name = sorted(n for n in names if n.endswith("dense/bias:0"))[0]
        edit(f, name, tmp_path)
    return path, name


def _external(f, name, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(32, dtype=np.float32).tobytes())
    shape = f[name].shape
    del f[name]
    f.create_dataset(name, shape=shape, dtype="f4", external=[(str(secret), 0, 128)])


def _virtual(f, name, tmp_path):
    import h5py

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g["x"] = np.ones(f[name].shape, np.float32)
    layout = h5py.VirtualLayout(shape=f[name].shape, dtype="f4")
    layout[:] = h5py.VirtualSource(str(other), "x", shape=f[name].shape)
    del f[name]
    f.create_virtual_dataset(name, layout)


def _external_link(f, name, tmp_path):
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as g:
        g["x"] = np.ones(f[name].shape, np.float32)
    f["some_link"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")


def _retyped(dtype):
    def edit(f, name, tmp_path):
        shape = f[name].shape
        del f[name]
        if dtype == "string":
            f[name] = np.array([b"x" * 4] * shape[0])
        else:
            f.create_dataset(name, shape=shape, dtype=dtype)
    return edit


def _bomb(f, name, tmp_path):
    del f[name]
    f.create_dataset(name, shape=(50_000_000,), dtype="f4", chunks=(1_000_000,), compression="gzip")


H5_CASES = {"external-storage": (_external, "stored in external files"), "virtual": (_virtual, "virtual dataset"),
            "external-link": (_external_link, "some_link is an HDF5 ExternalLink"),
            "string": (_retyped("string"), "which is not a weight type"),
            "uint32": (_retyped("uint32"), "dtype uint32, which is not a weight type"),
            "bomb": (_bomb, "declare .* bytes but the file has")}


@pytest.mark.parametrize("case", list(H5_CASES))
def test_h5_only_plain_datasets_held_in_the_file(tmp_path, case):
    edit, message = H5_CASES[case]
    path, name = h5_checkpoint(tmp_path, edit)
    with pytest.raises(CheckpointError, match=message) as info:
        convert(tmp_path / "h5", tmp_path / "out", "safetensors")
    assert str(path) in str(info.value) and not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- msgpack and .bin
def test_msgpack_nested_deeper_than_any_checkpoint(tmp_path):
    src, _, _ = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    convert(src, tmp_path / "mp", "flax")
    path = tmp_path / "mp" / "flax_model.msgpack"
    path.write_bytes(b"\x81\xa1a" * 100_000 + b"\xc0")  # {"a": {"a": ... 100k deep
    with pytest.raises(CheckpointError, match="deeper than 64 levels") as info:
        convert(tmp_path / "mp", tmp_path / "out", "safetensors")
    assert str(path) in str(info.value)


def test_msgpack_array_of_an_unknown_dtype(tmp_path):
    import msgpack

    src, _, _ = random_checkpoint(tmp_path / "canonical", "LongformerModel")
    payload = msgpack.packb(([2], "object", b"\0" * 16), use_bin_type=True)
    tree = {"encoder": {"layer": {"0": {"output": {"dense": {"bias": msgpack.ExtType(1, payload)}}}}}}
    (tmp_path / "mp").mkdir()
    (tmp_path / "mp" / "flax_model.msgpack").write_bytes(msgpack.packb(tree, use_bin_type=True))
    with pytest.raises(CheckpointError, match="dtype object, which is not a weight type"):
        open_checkpoint(str(tmp_path / "mp" / "flax_model.msgpack"))


@pytest.mark.skipif(not HAS_TORCH, reason="pytorch_model.bin needs torch (runs in the pt env)")
def test_bin_with_a_non_numeric_or_unknown_dtype(tmp_path):
    import torch

    torch.save({"encoder.layer.0.output.dense.bias": torch.zeros(4, dtype=torch.complex64)}, tmp_path / "c.bin")
    with pytest.raises(CheckpointError, match="complex64, which is not a weight type"):
        open_checkpoint(str(tmp_path / "c.bin"))


@pytest.mark.skipif(not HAS_TORCH, reason="pytorch_model.bin needs torch (runs in the pt env)")
def test_bin_that_is_neither_format_is_refused_before_unpickling(tmp_path):
    """Found by the fuzzing below: a zip-format file whose first bytes read `((X\\x04` went to torch's legacy
    unpickler, which asked for a 134 MB string for a 62 KB file. Files that begin as neither of torch.save's formats
    are refused before torch reads them; both formats still load."""
    import torch

    state = {"embeddings.word_embeddings.weight": torch.arange(6.0).reshape(3, 2)}
    torch.save(state, tmp_path / "zip.bin")
    torch.save(state, tmp_path / "legacy.bin", _use_new_zipfile_serialization=False)
    for name in ("zip.bin", "legacy.bin"):
        with open_checkpoint(str(tmp_path / name)) as source:
            assert np.array_equal(source.read("embeddings.word_embeddings.weight"), np.arange(6.0).reshape(3, 2))
    raw = bytearray((tmp_path / "zip.bin").read_bytes())
    raw[:4] = b"((X\x04"
    (tmp_path / "bad.bin").write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"bad.bin is not a PyTorch checkpoint"):
            open_checkpoint(str(tmp_path / "bad.bin"))
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 2**20, peak


@pytest.mark.skipif(not HAS_TORCH, reason="pytorch_model.bin needs torch (runs in the pt env)")
def test_bin_refusal_gives_no_advice_to_disable_weights_only(tmp_path):
    import torch

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"x": Payload()}, tmp_path / "evil.bin")
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(str(tmp_path / "evil.bin"))
    assert "weights_only" not in str(info.value) and "could run code" in str(info.value)


# ---------------------------------------------------------------------------------------------- fuzzing
FUZZ_FORMATS = ["safetensors", "flax", "tf", "safetensors-sharded"] + (["pt"] if HAS_TORCH else [])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """One small checkpoint in every format: {format: (weights file, its bytes)}."""
    root = tmp_path_factory.mktemp("pristine")
    src, _, _ = random_checkpoint(root / "canonical", "LongformerModel", num_hidden_layers=1, vocab_size=40,
                                  max_position_embeddings=20)
    out = {}
    for fmt in FUZZ_FORMATS:
        sharded = fmt.endswith("-sharded")
        base = fmt.removesuffix("-sharded")
        convert(src, root / fmt, base, max_shard_size=4_000 if sharded else None)
        name = WEIGHTS[base] + (".index.json" if sharded else "")
        out[fmt] = (root / fmt, name)
    return out


def mutate(raw: bytes, data, header_bytes: int) -> bytes:
    kind = data.draw(st.sampled_from(["flip", "truncate", "splice", "extend"]), label="mutation")
    if kind == "truncate":
        return raw[:data.draw(st.integers(0, len(raw) - 1), label="length")]
    if kind == "extend":
        return raw + data.draw(st.binary(min_size=1, max_size=64), label="tail")
    limit = min(len(raw), header_bytes) if data.draw(st.booleans(), label="in the header") else len(raw)
    at = data.draw(st.integers(0, limit - 1), label="offset")
    if kind == "flip":
        out = bytearray(raw)
        for i in range(data.draw(st.integers(1, 8), label="bytes")):
            j = min(at + i, len(out) - 1)
            out[j] = data.draw(st.integers(0, 255), label="value")
        return bytes(out)
    return raw[:at] + data.draw(st.binary(max_size=32), label="inserted") + raw[at + data.draw(st.integers(0, 32)):]


@pytest.mark.parametrize("fmt", FUZZ_FORMATS)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_checkpoints_fail_with_their_name_or_load(tmp_path_factory, pristine, fmt, data):
    """Whatever the bytes, reading either raises CheckpointError/ValueError naming the damaged file, or gives every
    tensor exactly the shape and dtype its header declares (a consistent edit is a valid, different file); never
    another exception, never a hang, never memory beyond the file's size."""
    folder, name = pristine[fmt]
    work = tmp_path_factory.mktemp("fuzz")
    for item in os.listdir(folder):
        shutil.copy(folder / item, work / item)
    files = sorted(n for n in os.listdir(work) if n != "config.json")
    target = data.draw(st.sampled_from(files), label="file")
    raw = (work / target).read_bytes()
    header = struct.unpack("<Q", raw[:8])[0] + 8 if target.endswith(".safetensors") else 4096
    (work / target).write_bytes(mutate(raw, data, header))
    size = sum(os.path.getsize(work / n) for n in files)
    tracemalloc.start()
    start = time.monotonic()
    try:
        with open_checkpoint(str(work / name)) as source:
            values = {k: source.read(k) for k in source.entries}
            entries = source.entries
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        assert str(work) in str(e), e
    else:
        for key, value in values.items():
            assert value.shape == entries[key].shape and value.dtype == entries[key].dtype, key
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.monotonic() - start < 10
    assert peak <= 2 * size + 2**20, (peak, size)


# ---------------------------------------------------------------------------------------------- tokenizer files
@pytest.fixture(scope="module")
def tokenizer_files(tokenizer_dir, tmp_path_factory):
    """A tokenizer saved as our save_pretrained writes it: tokenizer.json, vocab.json, merges.txt and settings."""
    folder = tmp_path_factory.mktemp("saved-tokenizer")
    LongformerTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return folder


def tokenizer_copy(source, folder, damaged: str):
    """A copy of `source` in which `damaged` is the file read: without tokenizer.json for the vocabulary files."""
    shutil.copytree(source, folder)
    if damaged in ("vocab.json", "merges.txt"):
        os.remove(folder / "tokenizer.json")
    return folder / damaged


@pytest.mark.parametrize("name, text", [
    ("tokenizer.json", '{"version": "1.0", "model": {"type": "BPE", "vocab": {"<s>": 0, '),  # cut short
    ("tokenizer.json", "{}"),
    ("tokenizer_config.json", '{"model_max_length": 4096, '),
    ("tokenizer_config.json", "[]"),
    ("tokenizer_config.json", '{"padding_side": "middle"}'),
    ("vocab.json", '{"<s>": 0, "<pad>": '),
    ("merges.txt", "#version: 0.2\nab\n"),
])
def test_a_damaged_tokenizer_file_is_named(tokenizer_files, tmp_path, name, text):
    """tokenizers raises a bare Exception ("EOF while parsing ...") that names no file; we say which one."""
    damaged = tokenizer_copy(tokenizer_files, tmp_path / "tok", name)
    damaged.write_text(text)
    with pytest.raises(ValueError, match="cannot read this tokenizer") as info:
        LongformerTokenizer.from_pretrained(tmp_path / "tok")
    assert str(damaged) in str(info.value)


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_tokenizer_files_fail_with_their_name_or_work(tokenizer_files, tmp_path_factory, name, data):
    """Whatever the bytes, loading raises a ValueError naming the folder's file, or gives a tokenizer that encodes
    and decodes (a consistent edit is a valid, different tokenizer); never another exception or a Rust panic."""
    folder = tmp_path_factory.mktemp("fuzz-tok") / "tok"
    damaged = tokenizer_copy(tokenizer_files, folder, name)
    damaged.write_bytes(mutate(damaged.read_bytes(), data, header_bytes=256))
    try:
        tokenizer = LongformerTokenizer.from_pretrained(folder)
    except ValueError as e:
        assert str(folder) in str(e), e
        return
    enc = tokenizer(["Longformer reads long documents.", "a <mask> b"], ["x y", ""], padding=True, truncation=True,
                    max_length=16)
    assert np.asarray(enc["input_ids"]).shape[0] == 2
    tokenizer.batch_decode(enc["input_ids"])


def test_a_failed_tokenizer_save_leaves_the_folder_as_it_was(tokenizer_files, tmp_path, monkeypatch):
    """Each file is written beside the others and renamed into place: a failure (here the last file's write) leaves
    the earlier save's files whole and nothing else."""
    folder = tmp_path / "tok"
    shutil.copytree(tokenizer_files, folder)
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    tokenizer = LongformerTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"  # a change the failed save would have written

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", full_disk)
    with pytest.raises(OSError, match="No space left"):
        tokenizer.save_pretrained(folder)
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == before
    monkeypatch.undo()
    tokenizer.save_pretrained(folder)
    assert sorted(os.listdir(folder)) == sorted(before)
    assert LongformerTokenizer.from_pretrained(folder).padding_side == "left"
