"""Comparing two models' outputs field by field, whatever framework produced them (tests only)."""

from __future__ import annotations

import numpy as np

ATOL = 1e-5


def as_numpy(x) -> np.ndarray:
    """torch / jax / tf tensor or NumPy array -> float64 NumPy array."""
    if hasattr(x, "detach"):  # torch
        return x.detach().double().numpy()
    return np.asarray(x, dtype=np.float64)


def close(a, b, atol=ATOL) -> bool:
    """Same shape and max |a - b| <= atol (NumPy, jax or tf arrays)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return (np.abs(a - b).max() if a.size else 0.0) <= atol


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


def assert_gradients_match_pt(grads: dict, folder, head: str, inputs: dict, rtol: float = 1e-4) -> None:
    """`grads` (canonical key -> NumPy gradient of another backend) against longformer.pt's on the same checkpoint
    and loss: each within `rtol` of its parameter's largest gradient, with a floor of 1% of the overall largest
    (gradients that are zero in exact arithmetic, like key.bias, are compared at that floor)."""
    import torch

    import longformer.pt as lpt

    pt_model = getattr(lpt, head).from_pretrained(folder).train()
    out = pt_model(**{k: torch.as_tensor(v) for k, v in inputs.items()})
    loss = (out.last_hidden_state.square().sum() + out.pooler_output.sum()) if head == "LongformerModel" else out.loss
    loss.backward()
    pt_grads = {n: p.grad for n, p in pt_model.named_parameters()}
    overall = max(g.abs().max().item() for g in pt_grads.values() if g is not None)
    checked = 0
    for name, g in grads.items():
        r = pt_grads[name]
        if r is None:  # no gradient path in torch (e.g. global projections when no token is global)
            assert np.abs(g).max() == 0, name
            continue
        r = r.double().numpy()
        scale = max(np.abs(r).max(), 1e-2 * overall)
        diff = np.abs(g - r).max()
        assert diff <= rtol * scale, f"{name}: max |diff| {diff:.3g} (relative {diff / scale:.3g})"
        checked += 1
    assert checked >= 40 and set(grads) <= set(pt_grads)
