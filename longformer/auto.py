"""Load a Longformer in whichever backend you want (or have): `AutoModelForMaskedLM.from_pretrained(path)`.

The backend is, in order: the `backend=` argument ("pt", "tf" or "flax"), the `LONGFORMER_BACKEND` environment
variable, else the first installed of pt, flax, tf. Nothing is imported until a model is asked for.
"""

from __future__ import annotations

import os
from typing import Any

from .backends import BACKENDS, available_backends, load_backend
from .config import LongformerConfig
from .tokenizer import LongformerTokenizer

ENV_VAR = "LONGFORMER_BACKEND"
ALIASES = {"torch": "pt", "pytorch": "pt", "tensorflow": "tf", "keras": "tf", "jax": "flax"}


def resolve_backend(backend: str | None = None) -> str:
    """The backend name `backend=` / $LONGFORMER_BACKEND / the installed frameworks choose (checked, not imported)."""
    name = backend or os.environ.get(ENV_VAR) or None
    if name is None:
        installed = available_backends()
        if not installed:
            raise ImportError("No Longformer backend is installed: pip install 'longformer[torch]' (or [flax], [tf]).")
        return installed[0]
    name = ALIASES.get(name.strip().lower(), name.strip().lower())
    if name not in BACKENDS:
        where = "backend=" if backend else f"${ENV_VAR}"
        raise ValueError(f"Unknown backend {name!r} (from {where}); choose from {sorted(BACKENDS)}.")
    return name


class _AutoModel:
    """Dispatch `from_pretrained` / `from_config` to the same-named class of the chosen backend."""

    class_name = "LongformerModel"

    def __init__(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} is not instantiated: use {type(self).__name__}.from_pretrained(...) "
                        "or .from_config(config).")

    @classmethod
    def backend_class(cls, backend: str | None = None) -> type:
        return getattr(load_backend(resolve_backend(backend)), cls.class_name)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *args: Any, backend: str | None = None,
                        **kwargs: Any):
        """`Longformer...from_pretrained` of the backend: a folder, weights file or Hub id, any format."""
        return cls.backend_class(backend).from_pretrained(name_or_path, *args, **kwargs)

    @classmethod
    def from_config(cls, config: LongformerConfig, *, backend: str | None = None, **kwargs: Any):
        """A freshly initialised model of the backend."""
        return cls.backend_class(backend)(config, **kwargs)


class AutoModel(_AutoModel):
    class_name = "LongformerModel"


class AutoModelForMaskedLM(_AutoModel):
    class_name = "LongformerForMaskedLM"


class AutoModelForSequenceClassification(_AutoModel):
    class_name = "LongformerForSequenceClassification"


class AutoModelForMultipleChoice(_AutoModel):
    class_name = "LongformerForMultipleChoice"


class AutoModelForTokenClassification(_AutoModel):
    class_name = "LongformerForTokenClassification"


class AutoModelForQuestionAnswering(_AutoModel):
    class_name = "LongformerForQuestionAnswering"


class AutoTokenizer:
    """The tokenizer is framework-free; `backend=` is accepted (and checked) so every Auto class reads alike."""

    @staticmethod
    def from_pretrained(name_or_path: str | os.PathLike, *args: Any, backend: str | None = None,
                        **kwargs: Any) -> LongformerTokenizer:
        if backend is not None:
            resolve_backend(backend)
        return LongformerTokenizer.from_pretrained(name_or_path, *args, **kwargs)


class AutoConfig:
    @staticmethod
    def from_pretrained(name_or_path: str | os.PathLike, *, backend: str | None = None,
                        **kwargs: Any) -> LongformerConfig:
        if backend is not None:
            resolve_backend(backend)
        return LongformerConfig.from_pretrained(name_or_path, **kwargs)


__all__ = [
    "AutoConfig",
    "AutoModel",
    "AutoModelForMaskedLM",
    "AutoModelForMultipleChoice",
    "AutoModelForQuestionAnswering",
    "AutoModelForSequenceClassification",
    "AutoModelForTokenClassification",
    "AutoTokenizer",
    "available_backends",
    "resolve_backend",
]
