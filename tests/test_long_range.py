"""examples/long_range.py, smaller: a tiny Longformer trained from random weights finds a marker anywhere in 256
tokens when <s> is global, and stays near chance without global attention (two layers of window 16 show <s> 32 of
the 256 tokens). The full run (2,048 tokens, window 64) and its loss curves are in docs/training.md."""

from __future__ import annotations

import pathlib
import sys

import pytest

from longformer.backends import available_backends

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "examples"))
import long_range  # noqa: E402

BACKENDS = available_backends()
pytestmark = pytest.mark.skipif(not BACKENDS, reason="no backend installed (core env)")
# 16, 32, ... 256 real tokens (60 steps at 256), padded to 256: each backend compiles one training step
TASK = long_range.Task(length=256, window=16, steps=220, warmup=40, pad=True)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    return request.param


def test_learns_a_long_range_task_only_through_global_attention(backend):
    with_global = long_range.run(TASK, backend, use_global=True)
    assert with_global["accuracy"] >= 0.95, with_global["accuracy"]
    without = long_range.run(TASK, backend, use_global=False)
    assert without["accuracy"] <= 0.75, without["accuracy"]  # 32 of 256 tokens in view: ~56% is the best it can do
