"""`from_pretrained` / `save_pretrained` for the Flax backend, through one name/layout table.

A parameter's nnx path is its canonical (Hugging Face PyTorch) key with the leaf renamed: `LAYOUT` below is the
whole map. `nnx.Linear` stores `kernel` as (in, out), the transpose of torch's `weight` (out, in).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from converters.checkpoint import SAFE_WEIGHTS, read_checkpoint, write_safetensors
from converters.formats import weights_format
from converters.names import from_format_leaf, match_names

from .. import semantics
from ..config import LongformerConfig
from ..hub import checkpoint_config, resolve_checkpoint

# nnx leaf name -> (canonical leaf name, transposed?): the "flax" column of converters.names.LEAVES, the same
# names Flax msgpack checkpoints use.
LAYOUT = from_format_leaf("flax")


def canonical_key(path: tuple) -> tuple[str, bool]:
    """nnx parameter path -> (canonical checkpoint key, whether the array is stored transposed)."""
    *parents, leaf = (str(p) for p in path)
    name, transposed = LAYOUT[leaf]
    return ".".join([*parents, name]), transposed


def canonical_state(model: nnx.Module) -> dict[str, jax.Array]:
    """The model's parameters under canonical keys and layouts (tied aliases are not parameters here)."""
    state = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        key, transposed = canonical_key(path)
        value = var.get_value()
        state[key] = value.T if transposed else value
    return state


def load_pretrained(cls, name_or_path, *, config: LongformerConfig | None, dtype, output_loading_info: bool,
                    rngs: nnx.Rngs | None = None, compute_dtype=None, device=None,
                    ignore_mismatched_sizes: bool = False, **kwargs: Any):
    use_jit = kwargs.pop("use_jit", True)
    config, hub = checkpoint_config(name_or_path, config, **kwargs)
    dtype, compute_dtype = (None if d is None else jnp.dtype(semantics.model_dtype(d, config))
                            for d in (dtype, compute_dtype))
    weights, shard_paths = resolve_checkpoint(name_or_path, **hub)
    # Straight into jax arrays; pytorch_model.bin needs torch to unpickle.
    framework = "flax" if weights_format(weights)[0] != "pt" else "numpy"
    state = read_checkpoint(weights, framework=framework, shard_paths=shard_paths)

    model = cls(config, rngs=rngs, use_jit=use_jit)
    report = load_canonical_state(model, state, source=weights, ignore_mismatched_sizes=ignore_mismatched_sizes)
    if dtype is not None:
        cast_params(model, dtype)
    if device is not None:
        place(model, device)
    model.compute_dtype = compute_dtype
    model.eval()
    return (model, report.as_dict()) if output_loading_info else model


def place(model: nnx.Module, device) -> nnx.Module:
    """`model`'s state committed to `device` (`jax_device`), in place: every call runs there (inputs follow)."""
    nnx.update(model, jax.device_put(nnx.state(model), jax_device(device)))
    return model


def jax_device(device) -> jax.Device:
    """A jax.Device from `device`: a jax.Device or a name (`semantics.device_spec`: "cpu", "gpu", "gpu:1", "tpu")."""
    if isinstance(device, jax.Device):
        return device
    platform, index = semantics.device_spec(device)
    try:
        return jax.devices(platform)[index]
    except (RuntimeError, IndexError) as error:
        raise ValueError(f"No JAX device {device!r} here ({', '.join(map(str, jax.devices()))}).") from error


def load_canonical_state(model: nnx.Module, state: dict[str, Any], source: str = "checkpoint",
                         ignore_mismatched_sizes: bool = False):
    """Copy canonical tensors into `model`; raise on shape mismatches, warn about missing or unused tensors."""
    params = nnx.state(model, nnx.Param)
    flat = dict(nnx.to_flat_state(params))
    where = {}
    for path, var in flat.items():
        key, transposed = canonical_key(path)
        shape = tuple(var.get_value().shape)
        where[key] = (path, transposed, shape[::-1] if transposed else shape)
    tied = set(model.tied_keys())
    report = match_names({k: v[2] for k, v in where.items()}, {k: tuple(v.shape) for k, v in state.items()},
                         model_has_prefix=hasattr(model, model.base_model_prefix), tied=tied, source=source,
                         ignore_mismatched_sizes=ignore_mismatched_sizes)
    report.ignore_unused_pooler(where)
    for model_key, ckpt_key in report.mapping.items():
        path, transposed, _ = where[model_key]
        var = flat[path]
        value = jnp.asarray(state[ckpt_key], dtype=var.get_value().dtype)
        var.set_value(value.T if transposed else value)
    nnx.update(model, params)
    report.warn(type(model).__name__, source)
    return report


def cast_params(model: nnx.Module, dtype) -> None:
    """Cast every floating-point parameter (and so the compute) to `dtype`, e.g. `jnp.bfloat16`."""
    nnx.update(model, cast_floating(nnx.state(model, nnx.Param), dtype))


def cast_floating(params, dtype):
    """The floating-point leaves of `params` cast to `dtype`; the others as they are."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, params)


def save_pretrained(model: nnx.Module, save_directory: str | os.PathLike) -> None:
    save_directory = os.fspath(save_directory)
    if os.path.isfile(save_directory):
        raise ValueError(f"{save_directory} is a file; save_pretrained needs a folder.")
    write_safetensors(canonical_state(model), os.path.join(save_directory, SAFE_WEIGHTS), framework="flax")
    config = model.config.copy()
    config.extra["architectures"] = [type(model).__name__]
    config.save_pretrained(save_directory)
