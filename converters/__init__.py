"""Checkpoint readers and writers, all through one canonical form: Hugging Face PyTorch names and layouts."""

from .checkpoint import (
    FLAX_INDEX,
    FLAX_WEIGHTS,
    PT_INDEX,
    PT_WEIGHTS,
    SAFE_INDEX,
    SAFE_WEIGHTS,
    TF_INDEX,
    TF_WEIGHTS,
    CheckpointError,
    read_checkpoint,
    read_index,
    write_safetensors,
)
from .formats import FORMATS, Source, open_checkpoint, weights_format, write_checkpoint

__all__ = [
    "FLAX_INDEX",
    "FLAX_WEIGHTS",
    "PT_INDEX",
    "PT_WEIGHTS",
    "SAFE_INDEX",
    "SAFE_WEIGHTS",
    "TF_INDEX",
    "TF_WEIGHTS",
    "CheckpointError",
    "read_checkpoint",
    "read_index",
    "write_safetensors",
    "FORMATS",
    "Source",
    "open_checkpoint",
    "weights_format",
    "write_checkpoint",
]
