"""Checkpoint readers and writers, all through one canonical form: Hugging Face PyTorch names and layouts."""

from .checkpoint import (
    PT_INDEX,
    PT_WEIGHTS,
    SAFE_INDEX,
    SAFE_WEIGHTS,
    TF_INDEX,
    TF_WEIGHTS,
    CheckpointError,
    checkpoint_format,
    read_checkpoint,
    read_index,
    write_safetensors,
)

__all__ = [
    "PT_INDEX",
    "PT_WEIGHTS",
    "SAFE_INDEX",
    "SAFE_WEIGHTS",
    "TF_INDEX",
    "TF_WEIGHTS",
    "CheckpointError",
    "checkpoint_format",
    "read_checkpoint",
    "read_index",
    "write_safetensors",
]
