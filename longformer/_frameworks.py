"""Lazy, checked imports of the deep-learning frameworks: `import longformer` imports none of them."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

# backend / framework module -> the pip extra that installs it
EXTRAS = {"torch": "torch", "tensorflow": "tf", "keras": "tf", "jax": "flax", "flax": "flax"}


def require(module: str) -> ModuleType:
    """Import a framework or raise an ImportError that names the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra = EXTRAS.get(module.split(".")[0], module)
        raise ImportError(f"{module} is not installed; install it with `pip install 'longformer[{extra}]'`.") from e


def is_available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
