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


def test_parity_and_convert_on_a_named_device(tmp_path):
    """--device runs the backends there (the CPU here; benchmarks/gpu_check.sh runs them on a GPU); a device that is
    not here, or not a device name, is one line, before anything is written."""
    from longformer.cli import bundled_checkpoint

    result = longformer("parity", "--backends", "pt", "--seq-len", "37", "--device", "cpu")
    assert result.returncode == 0 and "device cpu" in result.stdout, result.stdout + result.stderr
    result = longformer("convert", bundled_checkpoint(), str(tmp_path / "out"), "--device", "cpu")
    assert result.returncode == 0 and "on cpu" in result.stdout and "PASS" in result.stdout, result.stderr
    result = longformer("parity", "--backends", "pt", "--device", "gpu:7")
    assert result.returncode == 2 and "No CUDA device 'gpu:7' here" in result.stderr
    result = longformer("convert", bundled_checkpoint(), str(tmp_path / "never"), "--device", "gpu:x")
    assert result.returncode == 2 and "Not a device name: 'gpu:x'" in result.stderr
    assert not (tmp_path / "never").exists()


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


# ---------------------------------------------------------------------------------------------- convert
def test_convert_verifies_and_refuses_to_overwrite(tmp_path):
    from longformer.cli import bundled_checkpoint

    dst = tmp_path / "out"
    result = longformer("convert", bundled_checkpoint(), str(dst), "--to", "tf", "--max-shard-size", "50KB")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LongformerForMaskedLM, 54 tensors" in result.stdout and "PASS" in result.stdout
    for field in ("logits", "hidden_states", "attentions", "global_attentions"):
        assert f"  {field} " in result.stdout
    assert (dst / "tf_model.h5.index.json").exists() and (dst / "vocab.json").exists()

    again = longformer("convert", bundled_checkpoint(), str(dst), "--to", "flax")
    assert again.returncode == 2 and "already exists; pass --force" in again.stderr
    assert (dst / "tf_model.h5.index.json").exists()
    onto_itself = longformer("convert", str(dst), str(dst), "--to", "flax", "--force")
    assert onto_itself.returncode == 2 and "is the source folder" in onto_itself.stderr
    assert (dst / "tf_model.h5.index.json").exists()  # the source is untouched
    shutil.copytree(dst, tmp_path / "copy")
    forced = longformer("convert", str(tmp_path / "copy"), str(dst), "--to", "flax", "--force", "--dtype", "bf16")
    assert forced.returncode == 0, forced.stderr
    assert "rounded to bf16" in forced.stdout and "PASS" in forced.stdout
    assert sorted(p.name for p in dst.iterdir() if p.name.endswith((".msgpack", ".h5", ".json"))) == [
        "config.json", "flax_model.msgpack", "tokenizer.json", "tokenizer_config.json",
        "vocab.json"]  # the h5 shards it would shadow are gone
    assert "tf_model-00001-of-" in forced.stderr  # ... and listed
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]

    inspect = longformer("inspect", str(dst))
    assert inspect.returncode == 0 and "format: flax" in inspect.stdout and "bfloat16 x54" in inspect.stdout

    bad = longformer("convert", bundled_checkpoint(), str(tmp_path / "x"), "--to", "tflite")
    assert bad.returncode == 2 and "invalid choice: 'tflite'" in bad.stderr


def test_convert_of_a_corrupt_checkpoint_writes_nothing(tmp_path):
    from longformer.cli import bundled_checkpoint

    broken = tmp_path / "broken"
    shutil.copytree(bundled_checkpoint(), broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    result = longformer("convert", str(broken), str(tmp_path / "out"), "--to", "pt")
    assert result.returncode == 2 and "model.safetensors" in result.stderr and "truncated" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]


def test_verification_catches_a_wrong_tensor(tmp_path, capsys):
    """A result whose weights differ from the source fails the check (exit status 1)."""
    from converters.convert import convert
    from converters.formats import open_checkpoint, write_checkpoint
    from longformer.cli import bundled_checkpoint, verify_conversion

    out = convert(bundled_checkpoint(), tmp_path / "out", "safetensors")
    path = str(tmp_path / "out" / "model.safetensors")
    with open_checkpoint(path) as source:
        state = source.read_all()
    state["longformer.encoder.layer.1.output.dense.bias"][3] += 1e-3  # (a shift of every entry would vanish in LayerNorm)
    write_checkpoint(str(tmp_path / "out"), "safetensors", {k: (v.shape, v.dtype) for k, v in state.items()},
                     state.__getitem__, head=out.head)
    status = verify_conversion(bundled_checkpoint(), out.folder, head=out.head, config=out.config,
                               source_format="safetensors", target_format="safetensors", dtype=None, seq_len=40,
                               max_error=5e-5)
    assert status == 1 and "FAIL" in capsys.readouterr().out


def test_from_roberta_command(tmp_path):
    import transformers
    from conftest import randomize_

    config = transformers.RobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=37, max_position_embeddings=34, type_vocab_size=1)
    randomize_(transformers.RobertaForMaskedLM(config)).save_pretrained(tmp_path / "roberta")
    result = longformer("from-roberta", str(tmp_path / "roberta"), str(tmp_path / "lf"), "--max-positions", "128",
                        "--attention-window", "16,32")
    assert result.returncode == 0, result.stderr
    assert "128 positions, windows [16, 32]" in result.stdout
    inspect = longformer("inspect", str(tmp_path / "lf"))
    assert inspect.returncode == 0 and "problems: none" in inspect.stdout, inspect.stdout
    odd = longformer("from-roberta", str(tmp_path / "roberta"), str(tmp_path / "odd"), "--attention-window", "15")
    assert odd.returncode == 2 and "even, positive" in odd.stderr and not (tmp_path / "odd").exists()


def test_parity_and_inspect_read_every_format(tmp_path):
    """`parity` and `inspect` take a checkpoint in any format (here Flax msgpack shards and HF 4.x tf_model.h5)."""
    from converters.convert import convert
    from longformer.cli import bundled_checkpoint

    convert(bundled_checkpoint(), tmp_path / "flax", "flax", max_shard_size=60_000)
    convert(bundled_checkpoint(), tmp_path / "tf", "tf")
    for folder, fmt in ((tmp_path / "flax", "flax-sharded"), (tmp_path / "tf", "tf")):
        result = longformer("parity", str(folder), "--backends", "pt", "--seq-len", "30")
        assert result.returncode == 0 and "numpy-reference vs pt" in result.stdout, result.stdout + result.stderr
        inspect = longformer("inspect", str(folder))
        assert inspect.returncode == 0 and f"format: {fmt} " in inspect.stdout and "problems: none" in inspect.stdout
