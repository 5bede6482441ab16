"""What only longformer.pt has in training and compilation: torch.compile of every head, the feed-forward's own
backward (the tests every backend shares, dropout, checkpointing, half and mixed precision, a training step, are
tests/test_models.py; the band kernels' gradients, with and without dropout, are tests/test_band_kernels.py)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from cases import make_inputs  # noqa: E402
from conftest import tiny_kwargs  # noqa: E402

import longformer.pt as lpt  # noqa: E402
from longformer import LongformerConfig  # noqa: E402


def _inputs(head, case="padded_globals"):
    return {k: torch.as_tensor(v) for k, v in make_inputs(case, head).items()}


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


@pytest.mark.slow
def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    model = lpt.LongformerForSequenceClassification(LongformerConfig(**tiny_kwargs(attention_window=[4, 8]))).eval()
    compiled = torch.compile(model, fullgraph=True, dynamic=False)
    # One inductor compile (minutes of C++ on 2 cores): padded rows with 3 / 1 / 0 global tokens in 4 slots take
    # every path (band, global columns, global rows, padding); a second shape would only compile again.
    inputs = _inputs("LongformerForSequenceClassification", "padded_globals")
    inputs.pop("labels")
    with torch.no_grad():
        eager = model(**inputs, output_hidden_states=True)
        comp = compiled(**inputs, output_hidden_states=True, num_global_slots=4)
    torch.testing.assert_close(comp.logits, eager.logits, rtol=0, atol=1e-5)
    for a, b in zip(comp.hidden_states, eager.hidden_states, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_feed_forward_gradients_equal_autograds():
    """The feed-forward keeps its input only and computes its (rows, 4H) activations again in the backward; its
    gradients equal autograd's through F.linear(F.gelu(F.linear(x))) (float64), also with some inputs frozen."""
    g = torch.Generator().manual_seed(0)
    shapes = [(2, 7, 12), (20, 12), (20,), (5, 20), (5,)]
    args = [torch.randn(s, dtype=torch.float64, generator=g, requires_grad=True) for s in shapes]
    d_out = torch.randn(2, 7, 5, dtype=torch.float64, generator=g)
    F = torch.nn.functional
    for frozen in (None, 0, 1):
        wanted = [a for i, a in enumerate(args) if i != frozen]
        x, w1, b1, w2, b2 = (a if i != frozen else a.detach() for i, a in enumerate(args))
        want = torch.autograd.grad((F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2) * d_out).sum(), wanted)
        out = lpt.modeling.FeedForward.apply(x, w1, b1, w2, b2)
        for a, b in zip(torch.autograd.grad((out * d_out).sum(), wanted), want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_attention_dropout_masks_are_fair_and_repeatable(rate):
    """The band's dropout masks (16-bit draws, drawn again in the backward): the same (seed, step) gives the same
    mask, another step another; the share dropped is the rate and the mean of the mask 1 (expectation kept)."""
    from longformer.pt.attention import AttentionDropout

    p = torch.ones(64, 128, 576)  # one "rows" step's probabilities, 4.7M entries
    drop = AttentionDropout(rate, seed=1234)
    mask = drop.keep(p, 3)
    assert torch.equal(mask, drop.keep(p, 3)) and not torch.equal(mask, drop.keep(p, 4))
    values = mask.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / (1 - rate), rel=1e-4)
    # Binomial: the share's standard deviation is sqrt(rate (1 - rate) / n) < 2.4e-4; 5 sigma.
    assert abs(float((mask == 0).float().mean()) - rate) < 1.2e-3
    assert abs(float(mask.mean()) - 1.0) < 2.4e-3
    assert mask.dtype == p.dtype and mask.shape == p.shape
