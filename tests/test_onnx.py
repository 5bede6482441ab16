"""The ONNX export: one `model.onnx` per head, run in onnxruntime, equals longformer.pt at every length and global
pattern (fp32, 1e-4 absolute; measured ~1e-6), plus the command line, quantization, external data, reading an
export back as a checkpoint, and the plain-onnxruntime script of docs/onnx.md. Runs in the tox `pt` env (torch,
onnx, onnxruntime)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from conftest import HEADS, random_checkpoint  # noqa: E402

import longformer.pt as lpt  # noqa: E402
from converters.checkpoint import CheckpointError, read_checkpoint  # noqa: E402
from converters.convert import convert  # noqa: E402
from longformer.cli import main  # noqa: E402
from longformer.onnx import LongformerOnnxModel, export  # noqa: E402

ATOL = 1e-4
WINDOWS = [8, 16]  # per layer; W = 16 is the largest, lengths are around it
W = max(WINDOWS)
LENGTHS = [1, 7, W - 1, W, W + 1, 3 * W + 5]
_EXPORTS: dict[str, tuple] = {}


def exported(head: str, tmp_path_factory):
    """(onnx model, pt model) of one random checkpoint of `head`, exported once and shared by every case."""
    if head not in _EXPORTS:
        root = tmp_path_factory.mktemp(head)
        src, config, _ = random_checkpoint(root / "src", head, attention_window=WINDOWS, seed=3)
        convert(src, root / "onnx", "onnx")
        _EXPORTS[head] = (LongformerOnnxModel.from_pretrained(root / "onnx"),
                          getattr(lpt, head).from_pretrained(src), config)
    return _EXPORTS[head]


def pattern_inputs(head: str, length: int, batch: int, globals_: str, seed: int = 0):
    """`batch` rows of `length` tokens, the last row padded (when longer than 1); global tokens: none, one per
    row, or many (12: more than the re-associated global rows take with 4 heads of hidden 32), never on padding."""
    r = np.random.default_rng(seed)
    ids = r.integers(5, 99, size=(batch, length))
    ids[:, 0] = 0
    mask = np.ones_like(ids)
    if batch > 1 and length > 1:
        mask[-1, (length + 1) // 2:] = 0
        ids[-1, (length + 1) // 2:] = 1
    glob = np.zeros_like(ids)
    if globals_ == "one":
        glob[:, 0] = 1
    elif globals_ == "many":
        glob[0, r.permutation(length)[:12]] = 1
        glob[:, 0] = 1
    glob *= mask
    types = r.integers(0, 3, size=ids.shape)
    inputs = {"input_ids": ids, "attention_mask": mask, "global_attention_mask": glob, "token_type_ids": types}
    if head == "LongformerForMultipleChoice":  # (batch, 2 choices, length)
        inputs = {k: np.stack([v, v[::-1]], axis=1) for k, v in inputs.items()}
    return inputs


def assert_matches_pt(model, pt_model, inputs, where: str, atol: float = ATOL):
    out = model(**inputs)
    with torch.no_grad():
        ref = pt_model(**{k: torch.as_tensor(v) for k, v in inputs.items() if v is not None})
    assert out.keys(), where
    for key in out.keys():
        expected = ref[key].numpy()
        assert out[key].shape == expected.shape, f"{where}: {key} {out[key].shape} vs {expected.shape}"
        diff = float(np.abs(out[key] - expected).max())
        assert diff <= atol, f"{where}: {key} differs by {diff:.2e} (> {atol:g})"


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("globals_", ["none", "one", "many"])
@pytest.mark.parametrize("length", LENGTHS, ids=lambda n: f"n{n}")
@pytest.mark.parametrize("head", HEADS)
def test_one_export_matches_pt_at_every_length_and_global_pattern(head, length, globals_, batch, tmp_path_factory):
    model, pt_model, _ = exported(head, tmp_path_factory)
    inputs = pattern_inputs(head, length, batch, globals_, seed=length)
    assert_matches_pt(model, pt_model, inputs, f"{head} n={length} {globals_} B={batch}")


@pytest.mark.parametrize("head", ["LongformerForQuestionAnswering", "LongformerForMultipleChoice",
                                  "LongformerForSequenceClassification"])
def test_automatic_global_tokens_as_in_pt(head, tmp_path_factory):
    """No global_attention_mask: the question (QA), the choice's second part (MC), <s> (classification)."""
    model, pt_model, _ = exported(head, tmp_path_factory)
    ids = np.random.default_rng(1).integers(5, 99, size=(2, 30))
    ids[:, 0] = 0
    ids[:, [6, 7, 29]] = 2  # <s> question </s></s> context </s>
    mask = np.ones_like(ids)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if head == "LongformerForMultipleChoice":
        inputs = {k: np.stack([v, v], axis=1) for k, v in inputs.items()}
    assert_matches_pt(model, pt_model, inputs, f"{head} automatic global tokens")


@pytest.mark.slow
def test_base_shape_at_4096_tokens(tmp_path):
    """longformer-base geometry (hidden 768, 12 heads, window 512; 2 layers to keep CI short) at n = 4096, with
    one global token and a padded row."""
    torch.manual_seed(0)
    from longformer import LongformerConfig

    config = LongformerConfig(vocab_size=1000, hidden_size=768, num_hidden_layers=2, num_attention_heads=12,
                              intermediate_size=3072, max_position_embeddings=4098, attention_window=512,
                              type_vocab_size=1)
    pt_model = lpt.LongformerModel(config).eval()
    config.save_pretrained(tmp_path)
    export(config, "LongformerModel", {k: v.numpy() for k, v in pt_model.state_dict().items()}, tmp_path)
    model = LongformerOnnxModel.from_pretrained(tmp_path)
    ids = np.random.default_rng(0).integers(5, 1000, size=(2, 4096))
    mask = np.ones_like(ids)
    mask[1, 3000:] = 0
    glob = np.zeros_like(ids)
    glob[:, 0] = 1
    assert_matches_pt(model, pt_model, {"input_ids": ids, "attention_mask": mask, "global_attention_mask": glob},
                      "base shape n=4096")


# ---------------------------------------------------------------------------------------------- the command line
def test_convert_to_onnx_verifies_lengths_and_parity_runs_the_export(tmp_path, capsys):
    src, _, _ = random_checkpoint(tmp_path / "src", "LongformerForMaskedLM", attention_window=WINDOWS)
    assert main(["convert", str(src), str(tmp_path / "onnx"), "--to", "onnx", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "result in onnx" in out and re.search(r"lengths \d+, 1, 9\n", out), out
    assert re.search(r"PASS: largest difference \S+ \(--max-error 5e-05\)", out), out
    assert sorted(os.listdir(tmp_path / "onnx")) == ["config.json", "model.onnx"]
    assert main(["parity", str(tmp_path / "onnx"), "--backends", "pt,onnx", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"pt vs onnx\s+\d\.\d\de-\d\d", out), out
    # parity exports on the fly from any checkpoint
    assert main(["parity", str(src), "--backends", "pt,onnx", "--quiet"]) == 0


def test_export_of_another_head_needs_its_weights(tmp_path, capsys):
    src, _, _ = random_checkpoint(tmp_path / "src", "LongformerForMaskedLM")
    assert main(["convert", str(src), str(tmp_path / "qa"), "--to", "onnx", "--quiet",
                 "--head", "LongformerForQuestionAnswering"]) == 2
    assert "lacks ['longformer." not in capsys.readouterr().err  # names the head's tensors
    assert not (tmp_path / "qa").exists()
    assert main(["convert", str(src), str(tmp_path / "base"), "--to", "onnx", "--quiet",
                 "--head", "LongformerModel"]) == 0


def test_onnx_options_only_with_to_onnx(tmp_path, capsys):
    src, _, _ = random_checkpoint(tmp_path / "src")
    assert main(["convert", str(src), str(tmp_path / "x"), "--quantize", "int8", "--quiet"]) == 2
    assert "--quantize only apply to --to onnx" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "x"), "--to", "onnx", "--dtype", "bf16", "--quiet"]) == 2
    assert "fp32 or fp16" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "x"), "--to", "onnx", "--opset", "13", "--quiet"]) == 2
    assert "LayerNormalization" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_fp16_export_within_its_stated_bound(tmp_path, capsys):
    src, _, _ = random_checkpoint(tmp_path / "src", attention_window=WINDOWS)
    assert main(["convert", str(src), str(tmp_path / "h"), "--to", "onnx", "--dtype", "fp16", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "(--max-error 0.05)" in out, out
    graph = onnx.load(str(tmp_path / "h" / "model.onnx"))
    assert {t.data_type for t in graph.graph.initializer} == {onnx.TensorProto.FLOAT16}


def test_int8_quantization_is_judged_by_argmax_agreement(tmp_path, capsys):
    src, _, _ = random_checkpoint(tmp_path / "src", "LongformerForTokenClassification", attention_window=WINDOWS)
    assert main(["convert", str(src), str(tmp_path / "q"), "--to", "onnx", "--quantize", "int8", "--quiet",
                 "--min-agreement", "0.9"]) == 0
    out = capsys.readouterr().out
    share = float(re.search(r"PASS: argmax agreement ([\d.]+)%", out).group(1))
    assert share >= 90.0, out
    graph = onnx.load(str(tmp_path / "q" / "model.onnx"))
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in graph.graph.node)
    # an impossible bar fails the verification (exit 1), and says why
    assert main(["convert", str(src), str(tmp_path / "q2"), "--to", "onnx", "--quantize", "int8", "--quiet",
                 "--min-agreement", "1.01"]) == 1
    assert "FAIL: argmax agreement" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- as a checkpoint
def test_an_export_reads_back_as_the_same_weights(tmp_path):
    src, _, state = random_checkpoint(tmp_path / "src", "LongformerForSequenceClassification")
    convert(src, tmp_path / "onnx", "onnx")
    back = read_checkpoint(str(tmp_path / "onnx" / "model.onnx"))
    assert set(back) == set(state)
    for key, value in state.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)
    convert(tmp_path / "onnx", tmp_path / "again", "safetensors")  # and converts to any format
    again = read_checkpoint(str(tmp_path / "again" / "model.safetensors"))
    assert all(np.array_equal(again[k], v) for k, v in state.items())


def test_weights_beyond_the_threshold_go_to_external_data(tmp_path):
    src, config, state = random_checkpoint(tmp_path / "src", "LongformerForQuestionAnswering")
    config.save_pretrained(tmp_path / "ext")
    files = export(config, "LongformerForQuestionAnswering", state, tmp_path / "ext", external_data_above=0)
    assert files == ["model.onnx", "model.onnx.data"]
    assert os.path.getsize(tmp_path / "ext" / "model.onnx") < 100_000
    model = LongformerOnnxModel.from_pretrained(tmp_path / "ext")
    pt_model = lpt.LongformerForQuestionAnswering.from_pretrained(src)
    assert_matches_pt(model, pt_model, pattern_inputs("LongformerForQuestionAnswering", 20, 2, "one"), "external")
    back = read_checkpoint(str(tmp_path / "ext" / "model.onnx"))
    assert all(np.array_equal(back[k], v) for k, v in state.items())


def test_external_data_outside_the_folder_is_refused(tmp_path):
    src, config, state = random_checkpoint(tmp_path / "src")
    folder = tmp_path / "ext"
    folder.mkdir()
    export(config, "LongformerForMaskedLM", state, folder, external_data_above=0)
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../secret.data"
    onnx.save(model, str(folder / "model.onnx"))
    with pytest.raises(CheckpointError, match=r"not a file beside the model"):
        read_checkpoint(str(folder / "model.onnx"))


def test_a_corrupt_or_foreign_onnx_file_is_named(tmp_path):
    src, _, _ = random_checkpoint(tmp_path / "src")
    convert(src, tmp_path / "onnx", "onnx")
    path = tmp_path / "onnx" / "model.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model\.onnx"):
        read_checkpoint(str(path))
    with pytest.raises(ValueError, match=r"model\.onnx"):
        LongformerOnnxModel.from_pretrained(tmp_path / "onnx")
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    foreign = onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                                            [x], [y]))
    onnx.save(foreign, str(path))
    with pytest.raises(CheckpointError, match="not an ONNX file written by longformer"):
        read_checkpoint(str(path))
    with pytest.raises(ValueError, match="not a longformer export"):
        LongformerOnnxModel.from_pretrained(tmp_path / "onnx")


def test_bad_inputs_are_refused_with_the_shared_rules(tmp_path_factory):
    model, _, config = exported("LongformerForMaskedLM", tmp_path_factory)
    ids = np.zeros((1, 5), np.int64)
    with pytest.raises(ValueError, match="attention_mask may only hold"):
        model(ids, attention_mask=np.full((1, 5), 3))
    with pytest.raises(ValueError, match="input_ids holds values in"):
        model(ids + 500)
    with pytest.raises(ValueError, match="position table"):
        model(np.zeros((1, 70), np.int64))
    with pytest.raises(ValueError, match="must hold integers"):
        model(ids.astype(np.float32))
    with pytest.raises(ValueError, match="has shape"):
        model(ids, attention_mask=np.ones((1, 4), np.int64))


# ---------------------------------------------------------------------------------------------- docs/onnx.md
def test_the_plain_onnxruntime_script_of_the_docs_runs_without_longformer(tmp_path):
    """docs/onnx.md's script, run where `import longformer` fails: only numpy, tokenizers and onnxruntime."""
    page = (os.path.dirname(__file__) + "/../docs/onnx.md")
    with open(page, encoding="utf-8") as f:
        script = re.search(r"```python\n# plain onnxruntime\n(.*?)```", f.read(), re.S).group(1)
    from longformer import bundled_checkpoint

    convert(bundled_checkpoint(), tmp_path / "longformer-onnx", "onnx")  # a masked LM, with its tokenizer
    guard = "import sys; sys.modules['longformer'] = None; sys.modules['converters'] = None\n"
    result = subprocess.run([sys.executable, "-c", guard + script], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert re.search(r"logits \(1, \d+, 427\)", result.stdout), result.stdout
