"""The `longformer` command on bad input, through the real command in a subprocess: one line naming the file and
what is wrong, exit 2 (exit 1 only for outputs that differ or are not finite), a traceback only with --debug.
Framework-free: verification falls back to the NumPy reference when no backend is installed."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from conftest import random_checkpoint

from converters.convert import convert

HAS_TORCH = importlib.util.find_spec("torch") is not None


def longformer(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "longformer.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def assert_clean_error(result, *needles):
    """Exit 2, no traceback, and the last stderr line is one `error: ...` line holding every needle."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), result.stderr
    for needle in needles:
        assert needle in line, (needle, line)


def rewrite_safetensors_header(path, edit):
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    edit(header[sorted(k for k in header if k != "__metadata__")[0]])
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


def _no_shape(folder):
    rewrite_safetensors_header(folder / "model.safetensors", lambda e: e.pop("shape"))
    return "model.safetensors", "has no valid shape"


def _short_offsets(folder):
    rewrite_safetensors_header(folder / "model.safetensors", lambda e: e.update(data_offsets=[0]))
    return "model.safetensors", "invalid data_offsets"


def _config_list(folder):
    (folder / "config.json").write_text("[1, 2]")
    return "config.json", "must be a JSON object"


def _pad_null(folder):
    config = json.loads((folder / "config.json").read_text())
    config["pad_token_id"] = None
    (folder / "config.json").write_text(json.dumps(config))
    return "config.json", "pad_token_id must be a non-negative integer"


def _deep_msgpack(folder):
    (folder / "model.safetensors").unlink()
    (folder / "flax_model.msgpack").write_bytes(b"\x81\xa1a" * 100_000 + b"\xc0")
    return "flax_model.msgpack", "deeper than 64 levels"


def _h5_dataset(dtype):
    def make(folder):
        h5py = pytest.importorskip("h5py")
        convert(folder, folder.parent / "h5", "tf")
        shutil.rmtree(folder)
        shutil.move(folder.parent / "h5", folder)
        with h5py.File(folder / "tf_model.h5", "r+") as f:
            names = []
            f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            name = sorted(n for n in names if n.endswith("dense/bias:0"))[0]
            shape = f[name].shape
            del f[name]
            if dtype == "string":
                f[name] = np.array([b"abcd"] * shape[0])
            else:
                f.create_dataset(name, shape=shape, dtype=dtype)
        return "tf_model.h5", "which is not a weight type"
    return make


def _index_value(value):
    def make(folder):
        convert(folder, folder.parent / "sh", "safetensors", max_shard_size=30_000)
        shutil.rmtree(folder)
        shutil.move(folder.parent / "sh", folder)
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        index["weight_map"][sorted(index["weight_map"])[0]] = value
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
        return "model.safetensors.index.json", "a shard must be a plain file name"
    return make


BROKEN = {"safetensors-without-shape": _no_shape, "data-offsets-of-length-1": _short_offsets,
          "config-is-a-list": _config_list, "pad-token-id-null": _pad_null, "msgpack-100k-deep": _deep_msgpack,
          "h5-string-dataset": _h5_dataset("string"), "h5-uint32-dataset": _h5_dataset("uint32"),
          "weight-map-not-a-string": _index_value(5), "weight-map-outside": _index_value("../model.safetensors")}


@pytest.mark.parametrize("case", list(BROKEN))
@pytest.mark.parametrize("command", ["inspect", "convert"])
def test_broken_checkpoints_give_one_line_naming_the_file(tmp_path, case, command):
    folder, _, _ = random_checkpoint(tmp_path / "ckpt", "LongformerModel")
    name, message = BROKEN[case](folder)
    args = [str(folder)] if command == "inspect" else [str(folder), str(tmp_path / "out"), "--to", "flax"]
    result = longformer(command, *args)
    if command == "inspect" and name == "config.json":  # inspect still describes the weights, then says why
        assert result.returncode == 1 and message in result.stdout and name in result.stdout
        return
    assert_clean_error(result, name, message)
    assert not (tmp_path / "out").exists() and not [n for n in os.listdir(tmp_path) if n.startswith(".out")]


def test_debug_shows_the_traceback(tmp_path):
    folder, _, _ = random_checkpoint(tmp_path / "ckpt", "LongformerModel")
    _no_shape(folder)
    for args, env in [(["--debug", "inspect", str(folder)], None), (["inspect", str(folder), "--debug"], None),
                      (["inspect", str(folder)], {**os.environ, "LONGFORMER_DEBUG": "1"})]:
        result = longformer(*args, env=env)
        assert result.returncode == 1 and "Traceback" in result.stderr and "CheckpointError" in result.stderr


NO_SPACE = """
import errno, os, sys
from converters import formats
def full(path, *args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
formats._WRITERS["safetensors"] = full
from longformer.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    folder, _, _ = random_checkpoint(tmp_path / "ckpt", "LongformerModel")
    result = subprocess.run([sys.executable, "-c", NO_SPACE, "convert", str(folder), str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300)
    assert_clean_error(result, "No space left on device", "model.safetensors", "free some space")
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


@pytest.mark.parametrize("length, expected", [("0", "--seq-len 0 does not fit this model: it takes 1 to 256"),
                                               ("1000", "--seq-len 1000 does not fit this model"),
                                               ("-3", "--seq-len -3 does not fit")])
def test_parity_lengths_the_model_cannot_take(length, expected):
    assert_clean_error(longformer("parity", "--seq-len", length), expected)


def test_parity_on_weights_that_do_not_fit_their_config(tmp_path):
    folder, config, _ = random_checkpoint(tmp_path / "ckpt", "LongformerModel")
    config.intermediate_size = 40
    config.save_pretrained(folder)
    assert_clean_error(longformer("parity", str(folder)), "model.safetensors", "do not fit the config",
                       "intermediate.dense.weight")


def test_from_roberta_with_no_positions_is_refused(tmp_path):
    roberta = tmp_path / "roberta"
    folder, config, _ = random_checkpoint(tmp_path / "ckpt", "LongformerModel")
    roberta.mkdir()
    data = json.loads((folder / "config.json").read_text())
    data.update(model_type="roberta", max_position_embeddings=66)
    data.pop("attention_window")
    (roberta / "config.json").write_text(json.dumps(data))
    shutil.copy(folder / "model.safetensors", roberta / "model.safetensors")
    assert_clean_error(longformer("from-roberta", str(roberta), str(tmp_path / "out"), "--max-positions", "0"),
                       "max_position_embeddings (2) leaves no room for a token")
    assert not (tmp_path / "out").exists()


def test_verification_fits_a_short_position_table(tmp_path):
    """The tiny test model takes at most 62 tokens; the check used to run 64 after writing DST."""
    folder, _, _ = random_checkpoint(tmp_path / "ckpt", "LongformerForMaskedLM")
    result = longformer("convert", str(folder), str(tmp_path / "out"), "--to", "flax")
    assert result.returncode == 0, result.stderr
    assert "batch 2 x 62 tokens" in result.stdout and "PASS" in result.stdout
    too_long = longformer("convert", str(folder), str(tmp_path / "out2"), "--seq-len", "63")
    assert_clean_error(too_long, "--seq-len 63 does not fit this model: it takes 1 to 62 tokens")
    assert not (tmp_path / "out2").exists()


def test_force_into_the_current_folder_keeps_its_files(tmp_path):
    folder, _, _ = random_checkpoint(tmp_path / "ckpt", "LongformerModel")
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True)
    (work / "src" / "train.py").write_text("print('mine')")
    (work / "README").write_text("mine")
    result = longformer("convert", str(folder), ".", "--force", "--no-verify", cwd=work)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(work)) == ["README", "config.json", "model.safetensors", "src"]
    assert (work / "src" / "train.py").read_text() == "print('mine')"
    onto_source = longformer("convert", str(folder), str(folder), "--force")
    assert_clean_error(onto_source, "is the source folder")
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]


def nan_checkpoint(tmp_path):
    from converters.formats import write_checkpoint

    folder, _, state = random_checkpoint(tmp_path / "ckpt", "LongformerForMaskedLM")
    state["longformer.encoder.layer.1.output.dense.bias"][0] = np.nan
    write_checkpoint(str(folder), "safetensors", {k: (v.shape, v.dtype) for k, v in state.items()},
                     state.__getitem__, head="LongformerForMaskedLM")
    return folder


def test_nan_outputs_fail_the_conversion_check(tmp_path):
    result = longformer("convert", str(nan_checkpoint(tmp_path), ), str(tmp_path / "out"), "--to", "flax")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL: outputs are not finite (NaN or inf) in source" in result.stdout
    assert "logits" in result.stdout.splitlines()[-1] and "PASS" not in result.stdout


@pytest.mark.skipif(not HAS_TORCH, reason="parity needs a backend besides the reference (pt env)")
def test_nan_outputs_fail_parity(tmp_path):
    result = longformer("parity", str(nan_checkpoint(tmp_path)), "--backends", "pt")
    assert result.returncode == 1, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("FAIL: outputs are not finite") and "numpy-reference: " in last and "pt: " in last
    assert "logits" in last
