"""`from_pretrained` / `save_pretrained` for the TensorFlow backend, through one name/layout table.

A weight's canonical key is the chain of Keras layer *names* below the model (each layer is named after its
Hugging Face attribute: `encoder`, `layer.0`, `attention`, `self`, `query`) plus its variable name renamed by
`LAYOUT`. `keras.layers.Dense` stores `kernel` as (in, out), the transpose of torch's `weight` (out, in).
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from converters.checkpoint import SAFE_WEIGHTS, read_checkpoint, write_safetensors
from converters.names import from_format_leaf, match_names

from .. import semantics
from ..config import LongformerConfig
from ..hub import checkpoint_config, resolve_checkpoint

# Keras variable name -> (canonical leaf name, transposed?): the "tf" column of converters.names.LEAVES, the same
# names Hugging Face 4.x tf_model.h5 files use.
LAYOUT = from_format_leaf("tf")


def _sublayers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layer's direct sublayers (attributes, and lists of them), in definition order."""
    out = []
    for value in vars(layer).values():
        items = value if isinstance(value, (list, tuple)) else [value]
        out.extend(v for v in items if isinstance(v, keras.layers.Layer) and v not in out)
    return out


def canonical_variables(model: keras.layers.Layer) -> dict[str, tuple[Any, bool]]:
    """canonical key -> (Keras variable, stored transposed?) for every weight of `model`."""
    out: dict[str, tuple[Any, bool]] = {}

    def visit(layer, prefix):
        children = _sublayers(layer)
        inner = {id(v) for child in children for v in child.weights}
        for variable in layer.weights:
            if id(variable) not in inner:
                leaf, transposed = LAYOUT[variable.name]
                out[prefix + leaf] = (variable, transposed)
        for child in children:
            visit(child, prefix + child.name + ".")

    visit(model, "")
    return out


def canonical_state(model: keras.layers.Layer) -> dict[str, np.ndarray]:
    return {key: (np.asarray(var.numpy()).T if transposed else np.asarray(var.numpy()))
            for key, (var, transposed) in canonical_variables(model).items()}


def load_pretrained(cls, name_or_path, *, config: LongformerConfig | None, dtype, output_loading_info: bool,
                    device=None, ignore_mismatched_sizes: bool = False, **kwargs: Any):
    config, hub = checkpoint_config(name_or_path, config, **kwargs)
    if dtype is not None and not (isinstance(dtype, str) and dtype.startswith("mixed_")):
        dtype = semantics.model_dtype(dtype, config)  # a Keras mixed policy ("mixed_bfloat16") as it is
    weights, shard_paths = resolve_checkpoint(name_or_path, **hub)
    state = read_checkpoint(weights, framework="numpy", shard_paths=shard_paths)
    with tf.device(tf_device(device)):  # the variables live there
        model = _build(cls, config, dtype)
        report = load_canonical_state(model, state, source=weights, ignore_mismatched_sizes=ignore_mismatched_sizes)
    return (model, report.as_dict()) if output_loading_info else model


def tf_device(device) -> str | None:
    """A TF device name from `device`: a name (`semantics.device_spec`: "cpu" -> "/CPU:0", "gpu" -> "/GPU:0",
    "gpu:1" -> "/GPU:1"), a TF name ("/GPU:0") as it is, None: TF's own placement."""
    if device is None or str(device).startswith("/"):
        return device
    platform, index = semantics.device_spec(device)
    if index >= len(tf.config.list_logical_devices(platform.upper())):  # TF would quietly run elsewhere
        raise ValueError(f"No TensorFlow device {device!r} here "
                         f"({', '.join(d.name for d in tf.config.list_logical_devices())}).")
    return f"/{platform.upper()}:{index}"


def _build(cls, config: LongformerConfig, dtype: str | None):
    """The model, with its variables and compute in `dtype` (a name `semantics.model_dtype` gave: "bfloat16", ...)
    when given, or under a Keras mixed policy ("mixed_bfloat16": float32 variables, bfloat16 compute)."""
    if dtype is None:
        return cls(config)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)  # both are Keras policy names
    try:
        return cls(config)
    finally:
        keras.config.set_dtype_policy(previous)


def load_canonical_state(model: keras.layers.Layer, state: dict[str, Any], source: str = "checkpoint",
                         ignore_mismatched_sizes: bool = False):
    """Copy canonical tensors into `model`; raise on shape mismatches, warn about missing or unused tensors."""
    where = canonical_variables(model)
    expected = {k: tuple(v.shape)[::-1] if t else tuple(v.shape) for k, (v, t) in where.items()}
    report = match_names(expected, {k: tuple(np.shape(v)) for k, v in state.items()},
                         model_has_prefix=hasattr(model, model.base_model_prefix), tied=set(model.tied_keys()),
                         source=source, ignore_mismatched_sizes=ignore_mismatched_sizes)
    report.ignore_unused_pooler(expected)
    for model_key, ckpt_key in report.mapping.items():
        variable, transposed = where[model_key]
        value = np.asarray(state[ckpt_key])
        variable.assign(tf.cast(value.T if transposed else value, variable.dtype))
    report.warn(type(model).__name__, source)
    return report


def save_pretrained(model: keras.layers.Layer, save_directory: str | os.PathLike) -> None:
    save_directory = os.fspath(save_directory)
    if os.path.isfile(save_directory):
        raise ValueError(f"{save_directory} is a file; save_pretrained needs a folder.")
    state = {k: (v.astype(np.float32) if v.dtype.name == "bfloat16" else v) for k, v in canonical_state(model).items()}
    write_safetensors(state, os.path.join(save_directory, SAFE_WEIGHTS))
    config = model.config.copy()
    config.extra["architectures"] = [type(model).__name__]
    config.save_pretrained(save_directory)
