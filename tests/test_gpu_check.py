"""benchmarks/gpu_check.sh end to end on the CPU (`--device cpu --quick`), so that a GPU run fails only for GPU
reasons: the matrix step, every forward and training run of Hugging Face, longformer.pt and longformer.flax, and
the JSON and Markdown it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

for module in ("torch", "jax", "flax", "transformers"):
    pytest.importorskip(module)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_gpu_check_runs_on_the_cpu(tmp_path):
    result = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu_check.sh"), "--device", "cpu", "--quick",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=900,
                            env=dict(os.environ, PYTHON=sys.executable))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["matrix"]["ok"] and " passed" in report["matrix"]["summary"]
    assert (tmp_path / report["matrix"]["log"]).exists()
    size = report["size"]
    shapes = {(n, b) for n in size["lengths"] for b in size["batches"]}
    for task, impls, dtypes, want in (("forward", {"hf", "pt", "pt-batched", "flax"}, set(size["dtypes"]), shapes),
                                      ("train", {"hf", "pt", "flax"}, {"float32"}, {(size["train_n"], 1)})):
        rows = report[task]
        assert not [r for r in rows if "error" in r], rows
        assert {(r["impl"], r["dtype"], r["n"], r["batch"]) for r in rows} == {
            (i, d, n, b) for i in impls for d in dtypes for n, b in want}
        assert all(r["time_s"] > 0 and r["peak_mb"] > 0 for r in rows)
    table = (tmp_path / "gpu-check.md").read_text()
    assert "Matrix" in table and "**PASS**" in table
    assert table.count("| bfloat16 | ") == 4 * len(shapes) and table.count("| float32 | ") == 3
