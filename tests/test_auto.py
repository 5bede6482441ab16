"""longformer.auto: which backend a name, $LONGFORMER_BACKEND or the installed frameworks choose; clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

import longformer
from longformer import auto
from longformer.cli import bundled_checkpoint


def test_backend_argument_then_environment_then_installed(monkeypatch):
    monkeypatch.setattr(auto, "available_backends", lambda: ["flax", "tf"])
    monkeypatch.delenv(auto.ENV_VAR, raising=False)
    assert auto.resolve_backend() == "flax"  # the first installed, in the order pt, flax, tf
    monkeypatch.setenv(auto.ENV_VAR, "tensorflow")
    assert auto.resolve_backend() == "tf"
    assert auto.resolve_backend("PyTorch") == "pt"  # the argument wins; aliases and case are forgiven
    monkeypatch.setenv(auto.ENV_VAR, "mxnet")
    with pytest.raises(ValueError, match=r"Unknown backend 'mxnet' \(from \$LONGFORMER_BACKEND\)"):
        auto.resolve_backend()
    with pytest.raises(ValueError, match=r"Unknown backend 'caffe' \(from backend=\)"):
        longformer.AutoModel.from_pretrained(bundled_checkpoint(), backend="caffe")
    monkeypatch.delenv(auto.ENV_VAR)
    monkeypatch.setattr(auto, "available_backends", lambda: [])
    with pytest.raises(ImportError, match=r"pip install 'longformer\[torch\]'"):
        auto.resolve_backend()


@pytest.mark.parametrize(("backend", "module", "extra"), [("pt", "torch", "torch"), ("flax", "jax", "flax"),
                                                          ("tf", "tensorflow", "tf")])
def test_a_backend_that_is_not_installed_names_its_extra(backend, module, extra):
    code = (f"import sys\nsys.modules[{module!r}] = None\nimport longformer\n"
            f"longformer.AutoModelForMaskedLM.from_pretrained({bundled_checkpoint()!r}, backend={backend!r})")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and f"pip install 'longformer[{extra}]'" in result.stderr, result.stderr


def test_tokenizer_and_config_need_no_framework():
    tok = longformer.AutoTokenizer.from_pretrained(bundled_checkpoint(), backend="tf")
    assert isinstance(tok, longformer.LongformerTokenizer) and tok("hello")["input_ids"][0] == 0
    config = longformer.AutoConfig.from_pretrained(bundled_checkpoint())
    assert config.num_hidden_layers == 2
    with pytest.raises(ValueError, match="Unknown backend"):
        longformer.AutoConfig.from_pretrained(bundled_checkpoint(), backend="onnx")


def test_auto_classes_are_not_instantiated():
    with pytest.raises(TypeError, match="from_pretrained"):
        longformer.AutoModel()


@pytest.mark.skipif(not longformer.available_backends(), reason="no backend installed (the core env)")
def test_default_backend_loads_the_same_named_class(monkeypatch):
    monkeypatch.delenv(auto.ENV_VAR, raising=False)
    name = longformer.available_backends()[0]
    model = longformer.AutoModelForQuestionAnswering.from_pretrained(bundled_checkpoint())
    assert type(model).__module__.startswith(f"longformer.{name}.")
    assert type(model).__name__ == "LongformerForQuestionAnswering"
    config = longformer.AutoConfig.from_pretrained(bundled_checkpoint())
    assert type(longformer.AutoModel.from_config(config)).__name__ == "LongformerModel"
