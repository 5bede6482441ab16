"""longformer.flax against Hugging Face transformers PyTorch and longformer.pt on the same checkpoints.

Needs torch, transformers and jax/flax together (the tox `cross` environment)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
jax = pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")

from cases import make_inputs  # noqa: E402
from conftest import HEADS  # noqa: E402
from parity import as_numpy, assert_gradients_match_pt, assert_outputs_close  # noqa: E402

import longformer.flax as lfx  # noqa: E402
import longformer.pt as lpt  # noqa: E402
from longformer.flax.checkpoint import canonical_key  # noqa: E402

ATOL = 1e-5


@pytest.mark.parametrize("head", HEADS)
def test_tuple_outputs_match_pt(hf_checkpoint, head):
    folder, _ = hf_checkpoint(head)
    model, pt_model = getattr(lfx, head).from_pretrained(folder), getattr(lpt, head).from_pretrained(folder)
    inputs = make_inputs("padded_globals", head)
    ours = model(**inputs, output_attentions=True, return_dict=False)
    with torch.no_grad():
        ref = pt_model(**{k: torch.as_tensor(v) for k, v in inputs.items()}, output_attentions=True,
                       return_dict=False)
    assert isinstance(ours, tuple) and len(ours) == len(ref)
    for a, b in zip(ours, ref, strict=True):
        if b is None:
            assert a is None
        elif isinstance(b, tuple):
            assert all(np.abs(as_numpy(x) - as_numpy(y)).max() <= ATOL for x, y in zip(a, b, strict=True))
        else:
            assert np.abs(as_numpy(a) - as_numpy(b)).max() <= ATOL


def _flax_grads(model, inputs, head):
    def loss_fn(m):
        out = m(**inputs)
        if head == "LongformerModel":
            return (out.last_hidden_state ** 2).sum() + out.pooler_output.sum()
        return out.loss

    grads = nnx.grad(loss_fn)(model)
    flat = {}
    for path, var in nnx.to_flat_state(grads):
        key, transposed = canonical_key(path)
        value = np.asarray(var.get_value(), dtype=np.float64)
        flat[key] = value.T if transposed else value
    return flat


@pytest.mark.parametrize("head", HEADS)
def test_gradients_match_pt(hf_checkpoint, head):
    """Gradients of every parameter (dropout off, global and local paths) within 1e-4 relative."""
    folder, _ = hf_checkpoint(head, attention_window=[4, 8], hidden_dropout_prob=0.0,
                              attention_probs_dropout_prob=0.0)
    inputs = make_inputs("padded_globals", head)
    model = getattr(lfx, head).from_pretrained(folder)
    model.train()
    grads = _flax_grads(model, inputs, head)
    assert_gradients_match_pt(grads, folder, head, inputs)


@pytest.mark.parametrize("head", ["LongformerForMaskedLM", "LongformerForQuestionAnswering"])
def test_flax_save_loads_in_hugging_face_and_pt(hf_checkpoint, tmp_path, head):
    folder, _ = hf_checkpoint(head)
    model = getattr(lfx, head).from_pretrained(folder)
    model.save_pretrained(tmp_path / "flax-saved")
    inputs = make_inputs("padded_globals", head)
    kwargs = dict(output_attentions=True, output_hidden_states=True)
    ours = model(**inputs, **kwargs)
    torch_inputs = {k: torch.as_tensor(v) for k, v in inputs.items()}
    with torch.no_grad():
        hf = getattr(transformers, head).from_pretrained(tmp_path / "flax-saved").eval()(**torch_inputs, **kwargs)
        pt = getattr(lpt, head).from_pretrained(tmp_path / "flax-saved")(**torch_inputs, **kwargs)
    assert_outputs_close(ours, hf, where=f"{head} saved by flax, HF")
    assert_outputs_close(ours, pt, where=f"{head} saved by flax, pt")


def test_pytorch_bin_and_sharded_checkpoints(hf_checkpoint, tmp_path):
    folder, hf = hf_checkpoint("LongformerForMaskedLM")
    ref = lfx.LongformerForMaskedLM.from_pretrained(folder)
    inputs = make_inputs("padded_globals", "LongformerForMaskedLM")
    expected = np.asarray(ref(**inputs).logits)
    (tmp_path / "bin").mkdir()
    torch.save(hf.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    (tmp_path / "bin" / "config.json").write_text((folder / "config.json").read_text())
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    for sub in ("bin", "sharded"):
        got = np.asarray(lfx.LongformerForMaskedLM.from_pretrained(tmp_path / sub)(**inputs).logits)
        np.testing.assert_array_equal(got, expected)


def test_losses_match_pt_for_every_problem_type(hf_checkpoint):
    for num_labels, labels in ((1, np.array([0.5, -1.0], dtype=np.float32)),
                               (3, np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32)),
                               (3, np.array([2, 0]))):
        folder, _ = hf_checkpoint("LongformerForSequenceClassification", num_labels=num_labels)
        ids = np.random.default_rng(1).integers(5, 99, (2, 9))
        a = lfx.LongformerForSequenceClassification.from_pretrained(folder)(ids, labels=labels).loss
        with torch.no_grad():
            b = lpt.LongformerForSequenceClassification.from_pretrained(folder)(
                torch.as_tensor(ids), labels=torch.as_tensor(labels)).loss
        assert abs(float(a) - b.item()) <= ATOL, num_labels
