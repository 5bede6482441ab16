"""`from_pretrained` / `save_pretrained` for the PyTorch backend (canonical names = our parameter names)."""

from __future__ import annotations

import os
from typing import Any

import torch

from converters.checkpoint import SAFE_WEIGHTS, read_checkpoint, write_safetensors
from converters.names import match_names

from .. import semantics
from ..config import LongformerConfig
from ..hub import checkpoint_config, resolve_checkpoint


def load_pretrained(cls, name_or_path, *, config: LongformerConfig | None, dtype: torch.dtype | None,
                    output_loading_info: bool, device=None, ignore_mismatched_sizes: bool = False, **kwargs: Any):
    config, hub = checkpoint_config(name_or_path, config, **kwargs)
    dtype = None if dtype is None else getattr(torch, semantics.model_dtype(dtype, config))
    weights, shard_paths = resolve_checkpoint(name_or_path, **hub)
    state = read_checkpoint(weights, framework="pt", shard_paths=shard_paths)

    with torch.device(torch_device(device)):  # the parameters are made there; the checkpoint's are copied in
        model = cls(config)
    report = load_canonical_state(model, state, source=weights, ignore_mismatched_sizes=ignore_mismatched_sizes)
    if dtype is not None:
        model.to(dtype)
    model.eval()
    return (model, report.as_dict()) if output_loading_info else model


def place(model: torch.nn.Module, device) -> torch.nn.Module:
    """`model` on `device` (`torch_device`), in place."""
    return model.to(torch_device(device))


def torch_device(device) -> torch.device:
    """A torch device from `device`: a torch.device, a name (`semantics.device_spec`: "cpu", "gpu", "cuda:1") or
    None (the CPU)."""
    if device is None or isinstance(device, torch.device):
        return torch.device("cpu" if device is None else device)
    platform, index = semantics.device_spec(device)
    if platform == "cpu":
        return torch.device("cpu")
    if platform == "gpu" and index >= torch.cuda.device_count():
        raise ValueError(f"No CUDA device {device!r} here ({torch.cuda.device_count()} visible to torch "
                         f"{torch.__version__}).")
    return torch.device("cuda" if platform == "gpu" else platform, index)


def load_canonical_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint",
                         ignore_mismatched_sizes: bool = False):
    """Copy canonical tensors into `model`; raise on shape mismatches, warn about missing or unused tensors."""
    params = model.state_dict()
    tied = set(model.tied_keys())
    expected = {k: tuple(v.shape) for k, v in params.items() if k not in tied}
    report = match_names(expected, {k: tuple(v.shape) for k, v in state.items()},
                         model_has_prefix=model.base_model_prefix in dict(model.named_children()),
                         tied=tied, source=source, ignore_mismatched_sizes=ignore_mismatched_sizes)
    report.ignore_unused_pooler(expected)
    with torch.no_grad():
        for model_key, ckpt_key in report.mapping.items():
            params[model_key].copy_(state[ckpt_key])
    model.tie_weights()
    report.warn(type(model).__name__, source)
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
