"""Read and write checkpoints in the canonical form: Hugging Face PyTorch names and layouts.

`read_checkpoint` reads every format `converters.formats` knows (safetensors, pytorch_model.bin, Hugging Face 4.x
tf_model.h5, Flax msgpack; each also sharded) as NumPy arrays (`framework="numpy"`), torch tensors (`framework="pt"`)
or jax arrays (`framework="flax"`); the last two keep bf16. Writing always goes through a temporary file renamed
into place, so a failure never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
PT_WEIGHTS = "pytorch_model.bin"
PT_INDEX = "pytorch_model.bin.index.json"
TF_WEIGHTS = "tf_model.h5"
TF_INDEX = "tf_model.h5.index.json"
FLAX_WEIGHTS = "flax_model.msgpack"
FLAX_INDEX = "flax_model.msgpack.index.json"
ONNX_WEIGHTS = "model.onnx"  # written by longformer.onnx (`convert --to onnx`); its initializers are the weights
ONNX_HEAD_METADATA = "longformer.head"  # the metadata key naming the exported model class: a file of ours


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: corrupt, truncated, foreign, or not matching the config."""


def read_index(path: str) -> dict[str, str]:
    """The `weight_map` (tensor name -> shard file name) of a sharded checkpoint's index.

    Shards must be plain file names in the index's own folder: a name with a path separator, `..`, or an
    absolute path is refused, so an index can never make us read a file outside its checkpoint."""
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
        weight_map = index["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path} is not a valid shard index (a JSON object with a 'weight_map'): {e}") from e
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{path}: 'weight_map' must map tensor names to shard files.")
    for key, name in weight_map.items():
        if not isinstance(name, str) or not is_plain_file_name(name):
            raise CheckpointError(f"{path}: tensor {key} is mapped to {name!r}; a shard must be a plain file name "
                                  "in the index's folder (no path separators, no '..', not absolute).")
    return weight_map


def is_plain_file_name(name: str) -> bool:
    """A file name that stays in its folder: no separators, not `.` or `..`, nothing absolute, no NUL."""
    return (bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")
            and not os.path.isabs(name) and os.path.basename(name) == name)


# How torch.save's files begin: a zip archive (torch >= 1.6), or the legacy format's pickled magic number (protocol
# 2, a 10-byte long). Anything else is refused before torch's unpickler sees it: read as a legacy pickle, a few
# wrong bytes can ask it for a string of gigabytes.
_ZIP_START = b"PK\x03\x04"
_LEGACY_TORCH_START = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def read_torch_bin(path: str, framework: str = "pt", mmap: bool = False) -> dict[str, Any]:
    """A `pytorch_model.bin` state dict, loaded with `weights_only=True` (no arbitrary code runs); `mmap=True` maps
    the file instead of reading it (zip-format files, torch >= 2.1), so tensors are paged in as they are used."""
    from longformer._frameworks import require

    torch = require("torch")
    try:
        with open(path, "rb") as f:  # in the try: a file that cannot be opened is reported as before
            start = f.read(len(_LEGACY_TORCH_START))
        if not start.startswith(_ZIP_START) and start != _LEGACY_TORCH_START:
            raise CheckpointError(f"{path} is not a PyTorch checkpoint (neither torch.save's zip format nor its "
                                  "legacy format begins this way): it is corrupt, or another kind of file named .bin.")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as e:  # the legacy (pre-1.6, non-zip) format cannot be memory-mapped
            if not mmap or "zip" not in str(e):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError ... for bad files
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {_torch_reason(e)}. It is truncated "
                              "or corrupt, or it pickles objects other than tensors, which are refused because "
                              "unpickling them could run code: get the checkpoint as safetensors instead.") from e
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict of tensors.")
    if isinstance(state.get("state_dict"), Mapping):  # Lightning-style wrappers
        state = state["state_dict"]
    state = dict(state)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {bad[:5]}")
    if framework != "pt":
        from .formats import torch_to_numpy

        return {k: torch_to_numpy(v) for k, v in state.items()}
    return state


def _torch_reason(error: Exception) -> str:
    """torch's reason for refusing a file, without its advice to load with `weights_only=False` (which would run
    whatever code the pickle holds)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    kept = [line for line in lines if "weights_only" not in line and "torch.serialization" not in line
            and not line.startswith(("(1)", "(2)", "Check the documentation", "WeightsUnpickler error:"))]
    reason = (kept[0] if kept else type(error).__name__).rstrip(".")
    return reason[:300]


def read_checkpoint(path: str, framework: str = "numpy", shard_paths: list[str] | None = None) -> dict[str, Any]:
    """Read any supported checkpoint file (or shard index) into a flat dict of canonical tensors.

    `framework="numpy"` gives NumPy arrays (bfloat16 widened to float32, exactly), "pt" torch tensors and "flax"
    jax arrays (both keeping bfloat16)."""
    from .formats import numpy_to_torch, open_checkpoint

    if framework not in ("numpy", "pt", "flax"):
        raise ValueError(f"framework must be 'numpy', 'pt' or 'flax', not {framework!r}.")
    from longformer._frameworks import require

    if framework == "pt":
        require("torch")
        convert = numpy_to_torch
    elif framework == "flax":
        convert = require("jax.numpy").asarray
    else:
        def convert(a):
            return a.astype("float32") if a.dtype.name == "bfloat16" else a
    with open_checkpoint(path, shard_paths) as source:
        return {key: convert(source.read(key)) for key in source.entries}


@contextmanager
def atomic_path(final_path: str) -> Iterator[str]:
    """Yield a temporary path beside `final_path`; rename it into place only if the block succeeds."""
    folder = os.path.dirname(os.path.abspath(final_path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(final_path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, final_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_safetensors(state: Mapping[str, Any], path: str, framework: str = "numpy") -> str:
    """Write a flat dict of tensors as one safetensors file (metadata `format: pt`, as Hugging Face writes)."""
    with atomic_path(path) as tmp:
        if framework == "pt":
            from safetensors.torch import save_file

            save_file({k: v.detach().contiguous() for k, v in state.items()}, tmp, metadata={"format": "pt"})
        elif framework == "flax":  # jax arrays, bfloat16 included
            from safetensors.flax import save_file

            save_file(dict(state), tmp, metadata={"format": "pt"})
        else:
            import numpy as np
            from safetensors.numpy import save_file

            save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, tmp, metadata={"format": "pt"})
    return path
