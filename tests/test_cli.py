"""The `longformer` command, end to end in a subprocess, exit codes included."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

pytest.importorskip("torch")


def longformer(*args):
    return subprocess.run([sys.executable, "-m", "longformer.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_parity_on_the_bundled_checkpoint():
    result = longformer("parity", "--backends", "pt", "--seq-len", "37")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "numpy-reference vs pt" in result.stdout and "PASS" in result.stdout


def test_parity_fails_above_tolerance():
    result = longformer("parity", "--backends", "pt", "--tolerance", "1e-12")
    assert result.returncode == 1 and "FAIL" in result.stdout


def test_parity_with_unknown_backend():
    result = longformer("parity", "--backends", "mxnet")
    assert result.returncode == 2 and "Unknown backend 'mxnet'" in result.stderr


def test_inspect_reports_format_and_problems(tmp_path):
    from longformer.cli import bundled_checkpoint

    result = longformer("inspect", bundled_checkpoint())
    assert result.returncode == 0, result.stderr
    assert "format: safetensors" in result.stdout and "LongformerForMaskedLM" in result.stdout
    assert "parameters: 46,987" in result.stdout and "problems: none" in result.stdout

    broken = tmp_path / "broken"
    shutil.copytree(bundled_checkpoint(), broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[:100])
    result = longformer("inspect", str(broken))
    assert result.returncode == 2 and "not a readable safetensors file" in result.stderr


def test_inspect_missing_path(tmp_path):
    result = longformer("inspect", str(tmp_path / "nothing-here"))
    assert result.returncode == 2 and "error:" in result.stderr


@pytest.mark.parametrize("head", ["LongformerModel", "LongformerForMaskedLM", "LongformerForSequenceClassification",
                                  "LongformerForMultipleChoice", "LongformerForTokenClassification",
                                  "LongformerForQuestionAnswering"])
def test_canonical_table_matches_the_models(head):
    """converters.names.canonical_shapes is the one table of names: it must equal what the models hold."""
    from conftest import hf_model, tiny_kwargs

    import longformer.pt as lpt
    from converters.names import canonical_shapes, guess_head
    from longformer import LongformerConfig

    config = LongformerConfig(**tiny_kwargs(num_labels=2 if "Question" in head else 3))
    ours = getattr(lpt, head)(config)
    table = canonical_shapes(config, head)
    assert table == {k: tuple(v.shape) for k, v in ours.state_dict().items() if k not in ours.tied_keys()}
    ref = hf_model(head)
    saved = {k: tuple(v.shape) for k, v in ref.state_dict().items() if not k.startswith("lm_head.decoder")}
    assert table == saved
    assert guess_head(table) == head
