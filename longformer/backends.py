"""The backend registry: name -> (subpackage, framework it needs). One table; nothing imported until asked for."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from ._frameworks import EXTRAS, is_available

# In the order `longformer.auto` prefers them when none is named.
BACKENDS = {"pt": ("longformer.pt", "torch"), "flax": ("longformer.flax", "flax"),
            "tf": ("longformer.tf", "tensorflow")}


def _shipped(name: str) -> bool:
    module = BACKENDS[name][0]
    return importlib.util.find_spec(module) is not None


def available_backends() -> list[str]:
    """Backends whose code ships with this version and whose framework is installed."""
    return [name for name, (_, framework) in BACKENDS.items() if _shipped(name) and is_available(framework)]


def load_backend(name: str) -> ModuleType:
    """Import a backend by name; clear errors for unknown names and missing frameworks."""
    if name not in BACKENDS:
        raise ValueError(f"Unknown backend {name!r}; choose from {sorted(BACKENDS)}.")
    module, framework = BACKENDS[name]
    if not _shipped(name):
        raise ImportError(f"The {name!r} backend is not part of this version of longformer yet.")
    if not is_available(framework):
        raise ImportError(f"The {name!r} backend needs {framework}: pip install 'longformer[{EXTRAS[framework]}]'.")
    return importlib.import_module(module)
