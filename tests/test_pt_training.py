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


HEADS = ("LongformerModel", "LongformerForMaskedLM", "LongformerForSequenceClassification",
         "LongformerForMultipleChoice", "LongformerForTokenClassification", "LongformerForQuestionAnswering")


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("case", ["padded_globals", "auto_global", "no_global"])
def test_every_head_compiles_as_one_graph(head, case):
    """torch.compile(fullgraph=True) raises at any graph break (a .item(), a storage offset, a data-dependent
    branch); Dynamo's eager backend checks exactly that without inductor's minutes of code generation. The slot
    count is a static argument, as in Flax and TF."""
    torch.manual_seed(0)
    config = LongformerConfig(**tiny_kwargs(attention_window=[4, 8], num_labels=2 if "Question" in head else 3))
    model = getattr(lpt, head)(config).eval()
    inputs = _inputs(head, case)
    for label in ("labels", "start_positions", "end_positions"):
        inputs.pop(label, None)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        eager = model(**inputs, output_hidden_states=True)
        slots = next(v for k, v in inputs.items() if k in ("input_ids", "inputs_embeds")).shape[-1]  # any count fits
        comp = compiled(**inputs, output_hidden_states=True, num_global_slots=slots)
    for field in eager.keys():
        if field not in ("attentions", "global_attentions"):
            want, got = eager[field], comp[field]
            for a, b in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,),
                            strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_num_global_slots_too_small_is_an_error():
    model = lpt.LongformerModel(LongformerConfig(**tiny_kwargs())).eval()
    with pytest.raises(ValueError, match="num_global_slots=1 but a row has 3 global tokens"):
        model(**_inputs("LongformerModel"), num_global_slots=1)


@pytest.mark.slow
def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    model = lpt.LongformerForSequenceClassification(LongformerConfig(**tiny_kwargs(attention_window=[4, 8]))).eval()
    compiled = torch.compile(model, fullgraph=True)
    for case in ("no_global", "padded_globals"):
        inputs = _inputs("LongformerForSequenceClassification", case)
        inputs.pop("labels")
        with torch.no_grad():
            eager = model(**inputs, output_hidden_states=True)
            comp = compiled(**inputs, output_hidden_states=True, num_global_slots=4)
        torch.testing.assert_close(comp.logits, eager.logits, rtol=0, atol=1e-5)
        for a, b in zip(comp.hidden_states, eager.hidden_states, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
