"""Read and write checkpoints in the canonical form: Hugging Face PyTorch names and layouts.

Formats read here: `model.safetensors`, sharded safetensors (`model.safetensors.index.json`), `pytorch_model.bin`
(loaded with `weights_only=True`) and its sharded index, Hugging Face 4.x `tf_model.h5` (read by name with h5py,
kernels transposed into torch's layout) and its sharded index. Tensors come back as NumPy arrays (`framework="numpy"`),
torch tensors (`framework="pt"`) or jax arrays (`framework="flax"`); the last two keep bf16. Writing always goes
through a temporary file renamed into place, so a failure never leaves a half-written checkpoint behind.
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


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: corrupt, truncated, foreign, or not matching the config."""


def checkpoint_format(path: str) -> str:
    """'safetensors', 'safetensors-sharded', 'pt' or 'pt-sharded', from the file name."""
    name = os.path.basename(path)
    if name.endswith(".safetensors"):
        return "safetensors"
    if name.endswith(".safetensors.index.json"):
        return "safetensors-sharded"
    if name.endswith((".bin", ".pt", ".pth")):
        return "pt"
    if name.endswith(".bin.index.json"):
        return "pt-sharded"
    if name.endswith(".h5"):
        return "tf-h5"
    if name.endswith(".h5.index.json"):
        return "tf-h5-sharded"
    raise CheckpointError(f"{path}: unknown checkpoint format (expected .safetensors, .bin, .h5 or a shard index).")


def read_index(path: str) -> dict[str, str]:
    """The `weight_map` (tensor name -> shard file name) of a sharded checkpoint's index."""
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
        weight_map = index["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path} is not a valid shard index (a JSON object with a 'weight_map'): {e}") from e
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{path}: 'weight_map' must map tensor names to shard files.")
    return weight_map


def read_safetensors(path: str, framework: str = "numpy") -> dict[str, Any]:
    """All tensors of one safetensors file; a corrupt or truncated file raises `CheckpointError`."""
    from safetensors import SafetensorError, safe_open

    if framework in ("pt", "flax"):
        from longformer._frameworks import require

        require({"pt": "torch", "flax": "jax"}[framework])
    try:
        with safe_open(path, framework=framework) as f:
            return {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        size = os.path.getsize(path) if os.path.exists(path) else 0
        raise CheckpointError(f"{path} ({size} bytes) is not a readable safetensors file: {e}. It may be truncated "
                              "or corrupt (an interrupted download or copy); fetch or convert it again.") from e


def read_torch_bin(path: str, framework: str = "pt") -> dict[str, Any]:
    """A `pytorch_model.bin` state dict, loaded with `weights_only=True` (no arbitrary code runs)."""
    from longformer._frameworks import require

    torch = require("torch")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError ... for bad files
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {e}. It may be truncated or corrupt, "
                              "or pickle objects other than tensors.") from e
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict of tensors.")
    if isinstance(state.get("state_dict"), Mapping):  # Lightning-style wrappers
        state = state["state_dict"]
    state = dict(state)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {bad[:5]}")
    if framework != "pt":
        return {k: _torch_to_numpy(v) for k, v in state.items()}
    return state


def tf_name_to_canonical(name: str) -> tuple[str, bool] | None:
    """A Hugging Face 4.x TF weight name -> (canonical key, stored transposed?); None for names to skip.

    `tf_longformer_for_masked_lm/longformer/encoder/layer_._0/attention/self/query/kernel:0` ->
    `longformer.encoder.layer.0.attention.self.query.weight` (kernels are the transpose of torch's weights)."""
    parts = name.split(":")[0].replace("_._", "/").split("/")
    # Drop the h5 layer group and the model name: everything up to the first `tf_longformer...` component (a
    # shard of a sharded file stores the names without them).
    starts = [i for i, p in enumerate(parts) if p.startswith("tf_longformer")]
    parts = parts[starts[0] + 1:] if starts else parts
    if not parts:
        return None
    *parents, leaf = parts
    renames = {"kernel": ("weight", True), "embeddings": ("weight", False), "gamma": ("weight", False),
               "beta": ("bias", False), "weight": ("weight", False), "bias": ("bias", False)}
    if leaf not in renames:
        return None
    new_leaf, transposed = renames[leaf]
    return ".".join([*parents, new_leaf]), transposed


def read_tf_h5(path: str) -> dict[str, Any]:
    """All weights of a Hugging Face 4.x `tf_model.h5` (Keras-2 `save_weights` layout, or one shard of it), read by
    name with h5py, as canonical NumPy arrays. Repeated variables (the MLM head's copy of the embeddings) once."""
    try:
        import h5py
    except ImportError as e:
        raise ImportError("Reading tf_model.h5 needs h5py: pip install 'longformer[tf]' (or pip install h5py).") from e
    import numpy as np

    state: dict[str, Any] = {}
    try:
        with h5py.File(path, "r") as f:
            datasets: list[tuple[str, Any]] = []
            f.visititems(lambda name, obj: datasets.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
            for name, obj in datasets:
                mapped = tf_name_to_canonical(name)
                if mapped is None or mapped[0] in state:
                    continue
                key, transposed = mapped
                value = np.asarray(obj[()])
                state[key] = np.ascontiguousarray(value.T) if transposed and value.ndim == 2 else value
    except OSError as e:
        size = os.path.getsize(path) if os.path.exists(path) else 0
        raise CheckpointError(f"{path} ({size} bytes) is not a readable HDF5 file: {e}. It may be truncated or "
                              "corrupt; fetch or convert it again.") from e
    if not state:
        raise CheckpointError(f"{path} holds no Hugging Face TF Longformer weights.")
    return state


def _torch_to_numpy(t: Any) -> Any:
    import torch

    if t.dtype == torch.bfloat16:  # NumPy has no bfloat16: widen exactly.
        t = t.float()
    return t.detach().cpu().contiguous().numpy()


def read_checkpoint(path: str, framework: str = "numpy", shard_paths: list[str] | None = None) -> dict[str, Any]:
    """Read any supported checkpoint file (or shard index) into a flat dict of canonical tensors."""
    fmt = checkpoint_format(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    if fmt == "safetensors":
        return read_safetensors(path, framework)
    if fmt == "pt":
        return read_torch_bin(path, framework)
    if fmt == "tf-h5":
        state = read_tf_h5(path)
        if framework == "pt":
            import torch

            return {k: torch.from_numpy(v) for k, v in state.items()}
        return state
    weight_map = read_index(path)
    files = sorted(set(weight_map.values()))
    if shard_paths is None:
        shard_paths = [os.path.join(os.path.dirname(path), name) for name in files]
    state: dict[str, Any] = {}
    for shard in shard_paths:
        if not os.path.isfile(shard):
            raise CheckpointError(f"{path} names shard {os.path.basename(shard)}, which does not exist.")
        part = read_checkpoint(shard, framework)
        state.update(part)
    names = weight_map
    if fmt == "tf-h5-sharded":  # the index names TF variables; the shards were read into canonical keys
        names = {m[0] for m in map(tf_name_to_canonical, weight_map) if m is not None}
    missing = sorted(set(names) - set(state))
    if missing:
        raise CheckpointError(f"{path} lists tensors that no shard holds: {missing[:10]}")
    return state


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
