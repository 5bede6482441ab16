"""longformer.pt against Hugging Face transformers (the oracle) beyond the forward matrix of tests/test_cross.py:
tuple outputs, gradients, saved checkpoints in Hugging Face, losses, the oneDNN linear path."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from cases import make_inputs  # noqa: E402
from conftest import HEADS  # noqa: E402
from parity import assert_outputs_close  # noqa: E402

import longformer.pt as lpt  # noqa: E402

ATOL = 1e-5


def to_torch(inputs):
    return {k: torch.as_tensor(v) for k, v in inputs.items()}


@pytest.mark.parametrize("head", HEADS)
def test_tuple_outputs_match_hugging_face(hf_checkpoint, head):
    folder, ref_model = hf_checkpoint(head)
    model = getattr(lpt, head).from_pretrained(folder)
    inputs = to_torch(make_inputs("padded_globals", head))
    with torch.no_grad():
        ref = ref_model(**inputs, output_attentions=True, return_dict=False)
        ours = model(**inputs, output_attentions=True, return_dict=False)
    assert isinstance(ours, tuple) and len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref, strict=True)):
        if isinstance(b, tuple):
            assert all((x - y).abs().max() <= ATOL for x, y in zip(a, b, strict=True)), i
        elif b is None:
            assert a is None
        else:
            assert (a - b).abs().max() <= ATOL, i


def test_base_model_without_pooler_keeps_pooler_slot():
    from conftest import tiny_kwargs

    from longformer import LongformerConfig

    model = lpt.LongformerModel(LongformerConfig(**tiny_kwargs()), add_pooling_layer=False).eval()
    out = model(torch.randint(5, 99, (1, 5)), return_dict=False)
    assert out[1] is None and len(out) == 2


@pytest.mark.parametrize("head", HEADS)
def test_gradients_match_hugging_face(hf_checkpoint, head):
    """Gradients of every parameter, dropout off, through the global and local paths."""
    folder, ref_model = hf_checkpoint(head, attention_window=[4, 8], hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.0)
    model = getattr(lpt, head).from_pretrained(folder)
    inputs = to_torch(make_inputs("padded_globals", head))
    for m in (model, ref_model):
        m.train()
        m.zero_grad()
    out, ref = model(**inputs), ref_model(**inputs)
    if head == "LongformerModel":
        (out.last_hidden_state.square().sum() + out.pooler_output.sum()).backward()
        (ref.last_hidden_state.square().sum() + ref.pooler_output.sum()).backward()
    else:
        out.loss.backward()
        ref.loss.backward()
    ref_grads = dict(ref_model.named_parameters())
    # Relative to each parameter's gradient; gradients that are zero in exact arithmetic (key.bias: a constant
    # shift of a softmax row) are compared against a hundredth of the largest gradient instead.
    overall = max(p.grad.abs().max().item() for p in ref_model.parameters() if p.grad is not None)
    checked = 0
    for name, p in model.named_parameters():
        r = ref_grads[name].grad
        if r is None:
            assert p.grad is None or p.grad.abs().max() == 0, name
            continue
        scale = max(r.abs().max().item(), 1e-2 * overall)
        diff = (p.grad - r).abs().max().item()
        assert diff <= 1e-4 * scale, f"{name}: max |diff| {diff:.3g} (relative {diff / scale:.3g})"
        checked += 1
    assert checked >= 40


@pytest.mark.parametrize("head", ["LongformerForMaskedLM", "LongformerForSequenceClassification"])
def test_saved_checkpoint_loads_in_hugging_face(hf_checkpoint, tmp_path, head):
    folder, ref_model = hf_checkpoint(head)
    model = getattr(lpt, head).from_pretrained(folder)
    model.save_pretrained(tmp_path / "ours")
    reloaded = getattr(transformers, head).from_pretrained(tmp_path / "ours").eval()
    inputs = to_torch(make_inputs("padded_globals", head))
    with torch.no_grad():
        a = reloaded(**inputs, output_attentions=True, output_hidden_states=True)
        b = model(**inputs, output_attentions=True, output_hidden_states=True)
    assert_outputs_close(b, a, where=head)


def test_regression_and_multilabel_losses(hf_checkpoint):
    for num_labels, labels in ((1, np.array([0.5, -1.0], dtype=np.float32)),
                               (3, np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32))):
        folder, ref_model = hf_checkpoint("LongformerForSequenceClassification", num_labels=num_labels)
        model = lpt.LongformerForSequenceClassification.from_pretrained(folder)
        ids = torch.randint(5, 99, (2, 9))
        with torch.no_grad():
            a = model(ids, labels=torch.as_tensor(labels)).loss
            b = ref_model(ids, labels=torch.as_tensor(labels)).loss
        assert abs(a.item() - b.item()) <= ATOL


@pytest.mark.parametrize("gelu", [False, True], ids=["plain", "gelu"])
def test_inference_linear_matches_aten(gelu):
    """`linear` runs oneDNN (GELU fused) under no_grad on CPU float32 and aten when autograd needs it: same values."""
    from longformer.pt.modeling import _ONEDNN_LINEAR, linear

    torch.manual_seed(0)
    layer = torch.nn.Linear(48, 96)
    x = torch.randn(3, 40, 48)[:, 5:35]  # not contiguous, as the feed-forward slices are
    expected = layer(x)
    expected = torch.nn.functional.gelu(expected) if gelu else expected
    with torch.no_grad():
        fast = linear(layer, x, gelu=gelu)
    assert fast.grad_fn is None and fast.shape == (3, 30, 96)
    torch.testing.assert_close(fast, expected.detach(), atol=1e-5, rtol=1e-5)
    with_grad = linear(layer, x.requires_grad_(), gelu=gelu)  # autograd: aten, with a backward
    with_grad.sum().backward()
    torch.testing.assert_close(with_grad.detach(), expected.detach(), atol=1e-5, rtol=1e-5)
    assert x.grad is not None and layer.weight.grad is not None
    if _ONEDNN_LINEAR:  # the fast path is the one that ran under no_grad
        with torch.no_grad(), torch.autograd.profiler.profile() as prof:
            linear(layer, x, gelu=gelu)
        assert any(e.name == "mkldnn::_linear_pointwise" for e in prof.function_events)


def test_inference_linear_respects_mkldnn_switch():
    from longformer.pt.modeling import linear

    layer = torch.nn.Linear(8, 4)
    torch.backends.mkldnn.enabled = False
    try:
        with torch.no_grad(), torch.autograd.profiler.profile() as prof:
            linear(layer, torch.randn(2, 8))
    finally:
        torch.backends.mkldnn.enabled = True
    assert not any(e.name == "mkldnn::_linear_pointwise" for e in prof.function_events)
