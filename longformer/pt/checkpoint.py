"""`from_pretrained` / `save_pretrained` for the PyTorch backend (canonical names = our parameter names)."""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch

from converters.checkpoint import SAFE_WEIGHTS, read_checkpoint, write_safetensors
from converters.names import match_names

from ..config import LongformerConfig
from ..hub import _HUB_KEYS, resolve_checkpoint


def split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate Hub options from config overrides (`num_labels=3`, ...); anything else is an error."""
    hub = {k: kwargs.pop(k) for k in list(kwargs) if k in _HUB_KEYS}
    return hub, kwargs


def load_pretrained(cls, name_or_path, *, config: LongformerConfig | None, dtype: torch.dtype | None,
                    output_loading_info: bool, **kwargs: Any):
    hub, overrides = split_kwargs(dict(kwargs))
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
    state = read_checkpoint(weights, framework="pt", shard_paths=shard_paths)

    model = cls(config)
    report = load_canonical_state(model, state, source=weights)
    if dtype is not None:
        model.to(dtype)
    model.eval()
    return (model, report.as_dict()) if output_loading_info else model


def load_canonical_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint"):
    """Copy canonical tensors into `model`; raise on shape mismatches, warn about missing or unused tensors."""
    params = model.state_dict()
    tied = set(model.tied_keys())
    expected = {k: tuple(v.shape) for k, v in params.items() if k not in tied}
    report = match_names(expected, {k: tuple(v.shape) for k, v in state.items()},
                         model_has_prefix=model.base_model_prefix in dict(model.named_children()),
                         tied=tied, source=source)
    if not any(".pooler." in k or k.startswith("pooler.") for k in expected):
        # Heads without a pooler ignore a checkpoint's pooler silently, as Hugging Face does.
        report.unexpected_keys = [k for k in report.unexpected_keys if "pooler." not in k]
    with torch.no_grad():
        for model_key, ckpt_key in report.mapping.items():
            params[model_key].copy_(state[ckpt_key])
    model.tie_weights()
    if report.missing_keys:
        warnings.warn(f"{type(model).__name__}: not in {source}, newly initialised (train before use): "
                      f"{report.missing_keys}", stacklevel=3)
    if report.unexpected_keys:
        warnings.warn(f"{type(model).__name__}: tensors of {source} this model does not use: "
                      f"{report.unexpected_keys}", stacklevel=3)
    return report


def save_pretrained(model: torch.nn.Module, save_directory: str | os.PathLike) -> None:
    save_directory = os.fspath(save_directory)
    if os.path.isfile(save_directory):
        raise ValueError(f"{save_directory} is a file; save_pretrained needs a folder.")
    tied = set(model.tied_keys())
    state = {k: v for k, v in model.state_dict().items() if k not in tied}
    write_safetensors(state, os.path.join(save_directory, SAFE_WEIGHTS), framework="pt")
    config = model.config.copy()
    config.extra["architectures"] = [type(model).__name__]
    config.save_pretrained(save_directory)
