"""`import longformer` imports no framework; a missing framework names the extra to install."""

from __future__ import annotations

import subprocess
import sys


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_core_imports_no_framework():
    result = run("import sys, longformer, longformer.reference, converters, longformer.hub, longformer.auto, "
                 "converters.formats, converters.convert, longformer.cli, longformer.onnx\n"
                 "longformer.LongformerConfig(); "
                 "bad = [m for m in ('torch', 'tensorflow', 'jax', 'flax', 'keras', 'transformers', 'onnx', "
                 "'onnxruntime') "
                 "if m in sys.modules]\n"
                 "assert not bad, bad")
    assert result.returncode == 0, result.stderr


def test_missing_torch_names_the_extra():
    result = run("import sys\nsys.modules['torch'] = None\nimport longformer.pt")
    assert result.returncode != 0
    assert "pip install 'longformer[torch]'" in result.stderr


def test_missing_jax_and_tensorflow_name_their_extras():
    result = run("import sys\nsys.modules['jax'] = None\nimport longformer.flax")
    assert result.returncode != 0 and "pip install 'longformer[flax]'" in result.stderr
    result = run("import sys, os\nos.environ.pop('KERAS_BACKEND', None)\nsys.modules['tensorflow'] = None\n"
                 "import longformer.tf")
    assert result.returncode != 0 and "pip install 'longformer[tf]'" in result.stderr


def test_missing_onnxruntime_names_the_extra(tmp_path):
    result = run("import sys\nsys.modules['onnxruntime'] = None\nsys.modules['onnx'] = None\n"
                 "from longformer.onnx import LongformerOnnxModel\n"
                 f"LongformerOnnxModel.from_pretrained({str(tmp_path)!r})")
    assert result.returncode != 0 and "pip install 'longformer[onnx]'" in result.stderr
    result = run("import sys\nsys.modules['onnx'] = None\nfrom converters.formats import open_checkpoint\n"
                 f"open(r'{tmp_path / 'model.onnx'}', 'wb').close()\nopen_checkpoint(r'{tmp_path / 'model.onnx'}')")
    assert result.returncode != 0 and "pip install 'longformer[onnx]'" in result.stderr
