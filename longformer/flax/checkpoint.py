"""`from_pretrained` / `save_pretrained` for the Flax backend, through one name/layout table.

A parameter's nnx path is its canonical (Hugging Face PyTorch) key with the leaf renamed: `LAYOUT` below is the
whole map. `nnx.Linear` stores `kernel` as (in, out), the transpose of torch's `weight` (out, in).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from converters.checkpoint import SAFE_WEIGHTS, checkpoint_format, read_checkpoint, write_safetensors
from converters.names import match_names

from ..config import LongformerConfig
from ..hub import _HUB_KEYS, resolve_checkpoint

# nnx leaf name -> (canonical leaf name, transposed?)
LAYOUT = {"kernel": ("weight", True), "scale": ("weight", False), "embedding": ("weight", False),
          "bias": ("bias", False)}


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


def split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate Hub options from config overrides (`num_labels=3`, ...)."""
    hub = {k: kwargs.pop(k) for k in list(kwargs) if k in _HUB_KEYS}
    return hub, kwargs


def load_pretrained(cls, name_or_path, *, config: LongformerConfig | None, dtype, output_loading_info: bool,
                    rngs: nnx.Rngs | None = None, **kwargs: Any):
    hub, overrides = split_kwargs(dict(kwargs))
    use_jit = overrides.pop("use_jit", True)
    if config is None:
        config = LongformerConfig.from_pretrained(
            os.path.dirname(os.fspath(name_or_path)) if os.path.isfile(os.fspath(name_or_path)) else name_or_path,
            **hub)
    else:
        config = config.copy()
    for key, value in overrides.items():
        if key == "num_labels":
            config.num_labels = value
        elif hasattr(config, key):
            setattr(config, key, value)
        else:
            raise TypeError(f"from_pretrained got an unexpected keyword argument {key!r} (not a config field nor a "
                            f"Hub option {list(_HUB_KEYS)}).")
    config.validate()

    weights, shard_paths = resolve_checkpoint(name_or_path, **hub)
    # safetensors straight into jax arrays (no torch); pytorch_model.bin needs torch to unpickle.
    framework = "flax" if checkpoint_format(weights).startswith("safetensors") else "numpy"
    state = read_checkpoint(weights, framework=framework, shard_paths=shard_paths)

    model = cls(config, rngs=rngs, use_jit=use_jit)
    report = load_canonical_state(model, state, source=weights)
    if dtype is not None:
        cast_params(model, dtype)
    model.eval()
    return (model, report.as_dict()) if output_loading_info else model


def load_canonical_state(model: nnx.Module, state: dict[str, Any], source: str = "checkpoint"):
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
                         model_has_prefix=hasattr(model, model.base_model_prefix), tied=tied, source=source)
    if not any(".pooler." in k or k.startswith("pooler.") for k in where):
        # Heads without a pooler ignore a checkpoint's pooler silently, as Hugging Face does.
        report.unexpected_keys = [k for k in report.unexpected_keys if "pooler." not in k]
    for model_key, ckpt_key in report.mapping.items():
        path, transposed, _ = where[model_key]
        var = flat[path]
        value = jnp.asarray(state[ckpt_key], dtype=var.get_value().dtype)
        var.set_value(value.T if transposed else value)
    nnx.update(model, params)
    if report.missing_keys:
        warnings.warn(f"{type(model).__name__}: not in {source}, newly initialised (train before use): "
                      f"{report.missing_keys}", stacklevel=3)
    if report.unexpected_keys:
        warnings.warn(f"{type(model).__name__}: tensors of {source} this model does not use: "
                      f"{report.unexpected_keys}", stacklevel=3)
    return report


def cast_params(model: nnx.Module, dtype) -> None:
    """Cast every floating-point parameter (and so the compute) to `dtype`, e.g. `jnp.bfloat16`."""
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a,
                                   params))


def save_pretrained(model: nnx.Module, save_directory: str | os.PathLike) -> None:
    save_directory = os.fspath(save_directory)
    if os.path.isfile(save_directory):
        raise ValueError(f"{save_directory} is a file; save_pretrained needs a folder.")
    write_safetensors(canonical_state(model), os.path.join(save_directory, SAFE_WEIGHTS), framework="flax")
    config = model.config.copy()
    config.extra["architectures"] = [type(model).__name__]
    config.save_pretrained(save_directory)
