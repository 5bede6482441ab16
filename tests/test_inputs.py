"""The input rules every backend applies, from one place (longformer.semantics): the same inputs give the same
error, with the same message, in every installed backend. Runs in each backend's tox env (and all three in cross)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import longformer_inputs, tiny_kwargs

from longformer import LongformerConfig
from longformer.backends import available_backends, load_backend

BACKENDS = available_backends()
pytestmark = pytest.mark.skipif(not BACKENDS, reason="no backend installed (core env)")


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    return request.param


_MODELS: dict = {}


def model_of(backend: str, head: str = "LongformerModel"):
    """One tiny model per backend and head (random weights; these tests look at errors and equalities only)."""
    if (backend, head) not in _MODELS:
        config = LongformerConfig(**tiny_kwargs(num_labels=2 if head == "LongformerForQuestionAnswering" else 3))
        model = getattr(load_backend(backend), head)(config)
        if hasattr(model, "eval"):
            model.eval()
        _MODELS[backend, head] = model
    return _MODELS[backend, head]


def run(backend: str, head: str = "LongformerModel", **inputs):
    return load_backend(backend).forward_numpy(model_of(backend, head), inputs, output_attentions=True)


def error_of(backend: str, head: str = "LongformerModel", **inputs) -> str:
    with pytest.raises(ValueError) as info:
        run(backend, head, **inputs)
    return str(info.value)


BAD_INPUTS = {
    "attention-mask-5": (dict(attention_mask=5), "attention_mask may only hold 0, 1, 2, found [5]"),
    "attention-mask-minus-1": (dict(attention_mask=-1), "attention_mask may only hold 0, 1, 2, found [-1]"),
    "attention-mask-half": (dict(attention_mask=0.5), "attention_mask may only hold 0, 1, 2, found [0.5]"),
    "global-mask-2": (dict(global_attention_mask=2), "global_attention_mask may only hold 0, 1, found [2]"),
    "ids-beyond-int32": (dict(input_ids=2**31 + 5), "input_ids holds values in [0, 2147483653] but must lie in"),
    "ids-negative": (dict(input_ids=-7), "input_ids holds values in [-7, "),
    "float-ids": (dict(input_ids="float"), "input_ids must hold integers, got a floating-point tensor"),
    "float-token-types": (dict(token_type_ids="float"), "token_type_ids must hold integers"),
    "empty-batch": (dict(batch=0), "The batch is empty (0 rows)"),
}


def bad_batch(case: str) -> dict[str, np.ndarray]:
    change, _ = BAD_INPUTS[case]
    batch = longformer_inputs(length=13)
    batch["token_type_ids"] = np.zeros_like(batch["input_ids"])
    for name, value in change.items():
        if name == "batch":
            batch = {k: v[:0] for k, v in batch.items()}
        elif value == "float":
            batch[name] = batch[name].astype(np.float32)
        else:
            batch[name] = batch[name].astype(np.float64 if isinstance(value, float) else np.int64)
            batch[name][0, 5] = value
    return batch


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_are_refused_with_one_message(backend, case):
    message = error_of(backend, **bad_batch(case))
    assert BAD_INPUTS[case][1] in message, message
    assert "Exception encountered" not in message and "\x1b" not in message  # not wrapped by Keras


SHAPE_AND_RANGE_ERRORS = {  # inputs -> message: each a different rule of semantics.check_input_*
    "id-beyond-vocabulary": (dict(input_ids=[[5, 6, 99, 7, 8]]),
                             r"input_ids holds values in \[5, 99\] but must lie in \[0, 98\]"),
    "token-type-beyond-table": (dict(input_ids=[[5, 6, 7, 8, 9]], token_type_ids=[[3] * 5]),
                                r"token_type_ids holds values in \[3, 3\] but must lie in \[0, 2\]"),
    "global-on-padding": (dict(input_ids=[[5, 6, 7, 8, 9]], attention_mask=[[1, 1, 1, 0, 0]],
                               global_attention_mask=[[1, 0, 0, 1, 0]]), "Padding tokens cannot be global"),
    "mask-shape": (dict(input_ids=[[5, 6, 7, 8, 9]], attention_mask=[[1, 1, 1, 1]]),
                   r"attention_mask has shape \(1, 4\) but the input has shape \(1, 5\)"),
    "global-mask-batch": (dict(input_ids=[[5, 6, 7], [5, 6, 7]], global_attention_mask=[[1, 0, 0]]),
                          r"global_attention_mask has shape \(1, 3\)"),
    "ids-and-embeds": (dict(input_ids=[[5, 6]], inputs_embeds=np.zeros((1, 2, 32), np.float32)),
                       "exactly one of input_ids and inputs_embeds"),
    "neither": (dict(), "exactly one of input_ids and inputs_embeds"),
    "embeds-width": (dict(inputs_embeds=np.zeros((1, 5, 31), np.float32)),
                     r"inputs_embeds must have shape \(batch, sequence, 32\)"),
    "ids-1d": (dict(input_ids=[5, 6, 7]), r"input_ids must have shape \(batch, sequence\)"),
    "embeds-integer": (dict(inputs_embeds=np.ones((1, 5, 32), np.int64)),
                       "inputs_embeds must hold floating-point vectors, got integer values"),
}


@pytest.mark.parametrize("case", list(SHAPE_AND_RANGE_ERRORS))
def test_shape_and_range_errors(backend, case):
    inputs, message = SHAPE_AND_RANGE_ERRORS[case]
    with pytest.raises(ValueError, match=message):
        run(backend, **{k: np.asarray(v) for k, v in inputs.items()})


@pytest.mark.parametrize("case", list(BAD_INPUTS))
@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs two backends (cross env)")
def test_every_backend_says_the_same(case):
    messages = {b: error_of(b, **bad_batch(case)) for b in BACKENDS}
    assert len(set(messages.values())) == 1, messages


SEQ, TOKEN, MLM, QA, MC = ("LongformerForSequenceClassification", "LongformerForTokenClassification",
                            "LongformerForMaskedLM", "LongformerForQuestionAnswering", "LongformerForMultipleChoice")
BAD_LABELS = {  # head, labels (for a batch of 2 rows of 13 tokens; multiple choice: 1 example of 2 choices), message
    "class-beyond-num-labels": (SEQ, dict(labels=[0, 3]), "labels holds [3] but " + SEQ + " has 3 classes (num_labels)"
                                ": a label must lie in [0, 2], or be -100 to be left out of the loss."),
    "class-negative": (SEQ, dict(labels=[-1, 0]), "labels holds [-1] but " + SEQ + " has 3 classes"),
    "token-class-beyond": (TOKEN, dict(labels=np.full((2, 13), 5)), "labels holds [5] but " + TOKEN + " has 3"),
    "mlm-id-beyond-vocabulary": (MLM, dict(labels=np.full((2, 13), 99)), "has 99 classes (vocab_size)"),
    "choice-beyond-choices": (MC, dict(labels=[2]), "labels holds [2] but " + MC + " has 2 choices"),
    "float-choice": (MC, dict(labels=np.array([1.0])), "labels of " + MC + " must hold integer class ids, got "
                     "floating-point values."),
    "float-position": (QA, dict(start_positions=np.array([1.0, 2.0]), end_positions=[3, 4]),
                       "start_positions of " + QA + " must hold integer positions"),
    "labels-batch": (SEQ, dict(labels=[0, 1, 2]), "labels has shape (3,) but " + SEQ + " needs one per example: (2,)."),
    "token-labels-length": (TOKEN, dict(labels=np.zeros((2, 12), np.int64)),
                            "labels has shape (2, 12) but " + TOKEN + " needs one per input token: (2, 13)."),
    "multi-label-shape": (SEQ, dict(labels=np.array([0.0, 1.0], np.float32)),
                          "labels has shape (2,) but " + SEQ + " needs one per class: (2, 3)."),
}


def labelled_batch(head: str, labels: dict) -> dict:
    batch = longformer_inputs(length=13)
    if head == MC:
        batch = {k: v[None] for k, v in batch.items()}
    return {**batch, **{k: np.asarray(v) for k, v in labels.items()}}


@pytest.mark.parametrize("case", list(BAD_LABELS))
def test_bad_labels_are_refused_with_one_message(backend, case):
    """Labels are checked in one place (semantics.check_labels): a class id beyond its head's classes gave a
    silent NaN (flax) or a wrapped error (tf), a float choice a loss (tf)."""
    head, labels, message = BAD_LABELS[case]
    got = error_of(backend, head, **labelled_batch(head, labels))
    assert message in got, got


@pytest.mark.parametrize("case", list(BAD_LABELS))
@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs two backends (cross env)")
def test_every_backend_says_the_same_of_labels(case):
    head, labels, _ = BAD_LABELS[case]
    messages = {b: error_of(b, head, **labelled_batch(head, labels)) for b in BACKENDS}
    assert len(set(messages.values())) == 1, messages


@pytest.mark.parametrize(("head", "labels"), [
    (SEQ, dict(labels=[-100, 2])), (SEQ, dict(labels=[[0], [2]])), (TOKEN, dict(labels=np.tile([-100, 0, 1, 2], (2, 4))[:, :13])),
    (MC, dict(labels=[1])), (QA, dict(start_positions=[-3, 40], end_positions=[[2], [5]]))])
def test_labels_of_any_integer_dtype_give_one_loss(backend, head, labels):
    """int32, int64 and uint8 class ids (torch's loss wants int64: the model casts), -100 ignored, one label per
    example as (batch,) or (batch, 1), question answering's positions clamped as Hugging Face's."""
    losses = set()
    for dtype in (np.int32, np.int64) + ((np.uint8,) if all(np.min(v) >= 0 for v in labels.values()) else ()):
        out = run(backend, head, **labelled_batch(head, {k: np.asarray(v, dtype) for k, v in labels.items()}))
        assert out["loss"].shape == () and np.isfinite(out["loss"]), out["loss"]
        losses.add(float(out["loss"]))
    assert len(losses) == 1 or np.ptp(sorted(losses)) < 1e-6, losses


@pytest.mark.parametrize("head", ["LongformerForSequenceClassification", "LongformerForQuestionAnswering",
                                  "LongformerForMultipleChoice"])
def test_heads_check_before_their_automatic_global_tokens(backend, head):
    """The heads that build global masks themselves (first token, question, choices) must not cast or read ids
    before the shared checks have seen them."""
    batch = longformer_inputs(length=13)
    batch["input_ids"][:, [4, 5, 9]] = 2  # three separators per row, as QA and multiple choice need
    batch["input_ids"] = batch["input_ids"].astype(np.float64)
    del batch["global_attention_mask"]
    if head == "LongformerForMultipleChoice":
        batch = {k: v[None] for k, v in batch.items()}
    assert "input_ids must hold integers" in error_of(backend, head, **batch)


def test_attention_mask_2_is_global(backend):
    """Hugging Face reads attention_mask 2 as global attention: the same as global_attention_mask 1 there, and
    both together stay global (not a value of 4)."""
    batch = longformer_inputs(length=13)
    two = dict(batch, attention_mask=np.where(batch["global_attention_mask"] == 1, 2, batch["attention_mask"]))
    del two["global_attention_mask"]
    both = dict(batch, attention_mask=two["attention_mask"])
    want = run(backend, **batch)
    for inputs in (two, both):
        got = run(backend, **inputs)
        np.testing.assert_allclose(got["last_hidden_state"], want["last_hidden_state"], atol=1e-6)
        for g, w in zip(got["global_attentions"], want["global_attentions"], strict=True):
            np.testing.assert_allclose(g, w, atol=1e-6)


def test_boolean_and_float_masks_are_read_as_their_values(backend):
    batch = longformer_inputs(length=13)
    want = run(backend, **batch)
    as_types = dict(batch, attention_mask=batch["attention_mask"].astype(bool),
                    global_attention_mask=batch["global_attention_mask"].astype(np.float32))
    np.testing.assert_allclose(run(backend, **as_types)["last_hidden_state"], want["last_hidden_state"], atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_inputs_embeds_are_read_in_the_models_dtype(backend, dtype):
    """inputs_embeds of any floating dtype are cast to the word embeddings' dtype, as if looked up there: rows of the
    table given in float64 (which met float32 weights with an error in torch) give the model's dtype and what the
    same rows in float32 give, and in a float32 model what their ids give."""
    from backends import adapter
    from safetensors.numpy import load_file

    from longformer import bundled_checkpoint

    impl = adapter(backend)
    model = impl.load(bundled_checkpoint(), "LongformerModel", dtype=dtype)
    table = load_file(os.path.join(bundled_checkpoint(), "model.safetensors"))
    ids = np.random.default_rng(0).integers(5, 400, (2, 9))
    rows = table["longformer.embeddings.word_embeddings.weight"][ids]
    got = {name: impl.call(model, inputs)["last_hidden_state"] for name, inputs in
           (("float64", dict(inputs_embeds=rows.astype(np.float64))), ("float32", dict(inputs_embeds=rows)),
            ("ids", dict(input_ids=ids)))}
    assert all(dtype in str(out.dtype) for out in got.values()), {k: str(v.dtype) for k, v in got.items()}
    want = impl.numpy(got["float32"])
    np.testing.assert_array_equal(impl.numpy(got["float64"]), want)
    if dtype == "float32":
        np.testing.assert_allclose(impl.numpy(got["ids"]), want, atol=1e-6)


def test_load_warnings_point_at_the_callers_line(backend):
    """"Newly initialised" / "does not use" name this file and line, not the library's."""
    from longformer.cli import bundled_checkpoint

    cls = load_backend(backend).LongformerForSequenceClassification
    with pytest.warns(UserWarning) as record:
        cls.from_pretrained(bundled_checkpoint())
    assert {w.filename for w in record} == {__file__}, [(w.filename, str(w.message)[:60]) for w in record]
    assert any("newly initialised" in str(w.message) for w in record)


def test_too_few_global_slots_is_an_error(backend):
    batch = longformer_inputs(length=13)  # row 0 has two global tokens
    with pytest.raises(ValueError, match="num_global_slots=1 but a row has 2 global tokens"):
        load_backend(backend).forward_numpy(model_of(backend), batch, num_global_slots=1)
