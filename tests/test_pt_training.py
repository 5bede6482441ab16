"""Training features: dropout, gradient checkpointing, half precision, torch.compile."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from cases import make_inputs  # noqa: E402
from conftest import tiny_kwargs  # noqa: E402

import longformer.pt as lpt  # noqa: E402
from longformer import LongformerConfig  # noqa: E402


def _inputs(head, case="padded_globals"):
    return {k: torch.as_tensor(v) for k, v in make_inputs(case, head).items()}


def test_dropout_only_in_train_mode():
    torch.manual_seed(0)
    model = lpt.LongformerForMaskedLM(LongformerConfig(**tiny_kwargs()))
    inputs = _inputs("LongformerForMaskedLM")
    model.train()
    a, b = model(**inputs).logits, model(**inputs).logits
    assert not torch.allclose(a, b)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, model(**inputs).logits)
    out = model.train()(**inputs, output_attentions=True)
    rows = out.attentions[0].sum(-1)  # post-dropout probabilities: rows no longer sum to 1
    assert not torch.allclose(rows[rows > 0], torch.ones_like(rows[rows > 0]))


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    config = LongformerConfig(**tiny_kwargs(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    model = lpt.LongformerForSequenceClassification(config).train()
    inputs = _inputs("LongformerForSequenceClassification")
    model(**inputs).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.gradient_checkpointing_enable()
    model(**inputs).loss.backward()
    for n, p in model.named_parameters():
        if n in plain:
            torch.testing.assert_close(p.grad, plain[n], rtol=1e-5, atol=1e-7)
    assert len(plain) > 40


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_forward_and_backward(dtype):
    torch.manual_seed(0)
    model = lpt.LongformerForTokenClassification(LongformerConfig(**tiny_kwargs()))
    inputs = _inputs("LongformerForTokenClassification")
    with torch.no_grad():
        ref = model.eval()(**inputs).logits
    half = model.to(dtype)
    with torch.no_grad():
        out = half(**inputs, output_attentions=True)
    assert out.logits.dtype == dtype and torch.isfinite(out.logits).all()
    assert (out.logits.float() - ref).abs().max() < 0.05
    half.train()(**inputs).loss.backward()
    grads = [p.grad for p in half.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.slow
def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    model = lpt.LongformerForSequenceClassification(LongformerConfig(**tiny_kwargs(attention_window=[4, 8]))).eval()
    compiled = torch.compile(model)
    for case in ("no_global", "padded_globals"):
        inputs = _inputs("LongformerForSequenceClassification", case)
        inputs.pop("labels")
        with torch.no_grad():
            eager = model(**inputs, output_hidden_states=True)
            comp = compiled(**inputs, output_hidden_states=True)
        torch.testing.assert_close(comp.logits, eager.logits, rtol=0, atol=1e-5)
        for a, b in zip(comp.hidden_states, eager.hidden_states, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
