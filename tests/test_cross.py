"""Every pair of installed implementations on the same checkpoints: the backends and, where torch and transformers
are installed, Hugging Face's PyTorch Longformer (the oracle). Every output field of all six heads, each input
pattern, per-layer windows, at 1e-5 (fp32). In the cross env: pt, flax, tf and hf, six pairs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from backends import BACKENDS, adapter, hf_available
from cases import CASES, make_inputs
from conftest import HEADS, hf_model

IMPLEMENTATIONS = BACKENDS + (["hf"] if hf_available() else [])
PAIRS = list(itertools.combinations(IMPLEMENTATIONS, 2))
pytestmark = pytest.mark.skipif(not PAIRS, reason=f"needs two implementations, found {IMPLEMENTATIONS}")
ATOL = 1e-5
WINDOWS = {"w4-8": [4, 8]}  # per-layer windows; uniform ones: the tuple-output tests of test_*_parity.py

_FOLDERS: dict = {}
_OUTPUTS: dict = {}


def folder_of(tmp_path_factory, head: str, windows: str):
    """A randomised Hugging Face checkpoint of `head` (saved by transformers, or written with NumPy without it)."""
    if (head, windows) not in _FOLDERS:
        folder = tmp_path_factory.mktemp(f"{head}-{windows}")
        if hf_available():
            hf_model(head, attention_window=WINDOWS[windows]).save_pretrained(folder)
        else:
            from conftest import random_checkpoint

            random_checkpoint(folder, head, attention_window=WINDOWS[windows])
        _FOLDERS[head, windows] = folder
    return _FOLDERS[head, windows]


def outputs_of(tmp_path_factory, impl: str, head: str, case: str, windows: str) -> dict:
    """One implementation's output fields (NumPy, float64) for one head, case and window setting (computed once)."""
    key = (impl, head, case, windows)
    if key not in _OUTPUTS:
        backend = adapter(impl)
        model = backend.load(folder_of(tmp_path_factory, head, windows), head)
        out = backend.call(model, make_inputs(case, head), output_attentions=True, output_hidden_states=True)
        _OUTPUTS[key] = {k: tuple(backend.numpy(x) for x in v) if isinstance(v, tuple) else backend.numpy(v)
                         for k, v in out.items() if v is not None}
    return _OUTPUTS[key]


@pytest.mark.parametrize("windows", list(WINDOWS))
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: "-".join(p))
def test_every_pair_gives_every_field_alike(tmp_path_factory, pair, head, case, windows):
    a, b = (outputs_of(tmp_path_factory, impl, head, case, windows) for impl in pair)
    where = f"{pair[0]} vs {pair[1]}, {head}/{case}/{windows}"
    assert a.keys() == b.keys(), f"{where}: fields {sorted(a)} vs {sorted(b)}"
    for key in a:
        pairs = zip(a[key], b[key], strict=True) if isinstance(a[key], tuple) else [(a[key], b[key])]
        for i, (x, y) in enumerate(pairs):
            assert x.shape == y.shape, f"{where} {key}[{i}]: shape {x.shape} vs {y.shape}"
            diff = np.abs(x - y).max() if x.size else 0.0
            assert diff <= ATOL, f"{where} {key}[{i}]: max |diff| {diff:.3g}"
