"""Warnings that point at the user's line: the first frame outside this package (and `converters/`), whatever the
depth of the call inside it (Python 3.12's `skip_file_prefixes`, for every supported version)."""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_OURS = (_PACKAGE + os.sep, os.path.join(os.path.dirname(_PACKAGE), "converters") + os.sep)


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """`warnings.warn` attributed to the nearest caller outside longformer and converters (framework frames, such as
    Keras' or torch's module call wrappers, are skipped too, so the line shown is the user's own)."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and (frame.f_code.co_filename.startswith(_OURS) or _framework(frame.f_code.co_filename)):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1 if frame is not None else 2)


def _framework(filename: str) -> bool:
    return any(f"{os.sep}{name}{os.sep}" in filename for name in ("torch", "keras", "tensorflow", "flax", "jax"))
