"""Lazy, checked imports of the deep-learning frameworks: `import longformer` imports none of them."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

# backend / framework module -> the pip extra that installs it
EXTRAS = {"torch": "torch", "tensorflow": "tf", "keras": "tf", "jax": "flax", "flax": "flax", "onnx": "onnx",
          "onnxruntime": "onnx"}


def require(module: str) -> ModuleType:
    """Import a framework or raise an ImportError that names the extra to install."""
    try:
        if module.split(".")[0] in ("tensorflow", "keras") and "tensorflow" not in sys.modules:
            _import_tensorflow_quietly()
        return importlib.import_module(module)
    except ImportError as e:
        extra = EXTRAS.get(module.split(".")[0], module)
        raise ImportError(f"{module} is not installed; install it with `pip install 'longformer[{extra}]'`.") from e


def is_available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow without its C++ start-up lines ("oneDNN custom operations are on", CPU features, no CUDA
    driver), which it writes before its logging reads TF_CPP_MIN_LOG_LEVEL. Unless the user asked for TF's logs (the variable set to
    0), the level becomes 2 (if unset) and what the import writes to stderr is held back, and shown only if the
    import fails."""
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if level.strip() == "0":
        importlib.import_module("tensorflow")
        return
    with _stderr_held() as held:
        try:
            tf = importlib.import_module("tensorflow")
            # Its devices too: a CUDA build reports a missing driver ("failed call to cuInit") when it first looks.
            tf.config.list_physical_devices()
        except BaseException:
            held.replay = True
            raise


@contextlib.contextmanager
def _stderr_held() -> Iterator:
    """Send file descriptor 2 (C and C++ code's stderr) to a temporary file; write it back if `replay` is set."""
    class Held:
        replay = False

    held = Held()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as buffer:
        os.dup2(buffer.fileno(), 2)
        try:
            yield held
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if held.replay:
                buffer.seek(0)
                sys.stderr.write(buffer.read().decode(errors="replace"))
