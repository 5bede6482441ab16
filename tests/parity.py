"""Comparing two models' outputs field by field, whatever framework produced them (tests only)."""

from __future__ import annotations

import numpy as np

ATOL = 1e-5


def as_numpy(x) -> np.ndarray:
    """torch / jax / tf tensor or NumPy array -> float64 NumPy array."""
    if hasattr(x, "detach"):  # torch
        return x.detach().double().numpy()
    return np.asarray(x, dtype=np.float64)


def assert_outputs_close(ours, ref, atol=ATOL, where=""):
    """Every field `ref` returns must be returned by `ours`, with the same shape, within `atol`."""
    ref_fields = {k: v for k, v in ref.items() if v is not None}
    assert set(ours.keys()) == set(ref_fields), f"{where}: fields {sorted(ours.keys())} vs {sorted(ref_fields)}"
    for key, r in ref_fields.items():
        o = ours[key]
        pairs = list(zip(o, r, strict=True)) if isinstance(r, tuple) else [(o, r)]
        for i, (a, b) in enumerate(pairs):
            a, b = as_numpy(a), as_numpy(b)
            assert a.shape == b.shape, f"{where} {key}[{i}]: shape {a.shape} vs {b.shape}"
            diff = np.abs(a - b).max() if a.size else 0.0
            assert diff <= atol, f"{where} {key}[{i}]: max |diff| {diff:.3g} > {atol}"
