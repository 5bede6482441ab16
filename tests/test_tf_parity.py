"""longformer.tf against Hugging Face transformers PyTorch and longformer.pt on the same checkpoints, eagerly and
under XLA. Needs torch, transformers and TensorFlow together (the tox `cross-tf` environment)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tf = pytest.importorskip("tensorflow")

from cases import make_inputs  # noqa: E402
from conftest import HEADS  # noqa: E402
from parity import assert_gradients_match_pt, assert_outputs_close  # noqa: E402

import longformer.pt as lpt  # noqa: E402
import longformer.tf as ltf  # noqa: E402
from longformer.tf.checkpoint import canonical_variables  # noqa: E402

ATOL = 1e-5


@pytest.mark.parametrize("head", HEADS)
def test_gradients_match_pt(hf_checkpoint, head):
    """Gradients of every weight (dropout off, global and local paths) within 1e-4 relative."""
    folder, _ = hf_checkpoint(head, attention_window=[4, 8], hidden_dropout_prob=0.0,
                              attention_probs_dropout_prob=0.0)
    inputs = make_inputs("padded_globals", head)
    model = getattr(ltf, head).from_pretrained(folder)
    variables = canonical_variables(model)
    with tf.GradientTape() as tape:
        out = model(**inputs, training=True)
        loss = (tf.reduce_sum(out.last_hidden_state ** 2) + tf.reduce_sum(out.pooler_output)
                if head == "LongformerModel" else out.loss)
    keys = list(variables)
    tf_grads = tape.gradient(loss, [variables[k][0] for k in keys])
    grads = {}
    for key, g in zip(keys, tf_grads, strict=True):
        value = np.zeros(variables[key][0].shape) if g is None else np.asarray(tf.convert_to_tensor(g), np.float64)
        grads[key] = value.T if variables[key][1] else value
    assert_gradients_match_pt(grads, folder, head, inputs)


@pytest.mark.parametrize("head", ["LongformerForMaskedLM", "LongformerForSequenceClassification"])
def test_tf_save_loads_in_hugging_face(hf_checkpoint, tmp_path, head):
    folder, _ = hf_checkpoint(head)
    model = getattr(ltf, head).from_pretrained(folder)
    model.save_pretrained(tmp_path / "tf-saved")
    inputs = make_inputs("padded_globals", head)
    kwargs = dict(output_attentions=True, output_hidden_states=True)
    ours = model(**inputs, **kwargs)
    with torch.no_grad():
        hf = getattr(transformers, head).from_pretrained(tmp_path / "tf-saved").eval()(
            **{k: torch.as_tensor(v) for k, v in inputs.items()}, **kwargs)
    assert_outputs_close(ours, hf, where=f"{head} saved by tf")


def test_hf4_tf_h5_loads_in_every_backend():
    """The committed transformers-4.x tf_model.h5 loads through converters/ into longformer.pt as well."""
    import pathlib

    folder = pathlib.Path(__file__).parent / "data" / "hf4_tf" / "LongformerForMaskedLM"
    expected = np.load(folder / "outputs.npz")
    inputs = {k[len("input."):]: torch.as_tensor(expected[k]) for k in expected.files if k.startswith("input.")}
    with torch.no_grad():
        logits = lpt.LongformerForMaskedLM.from_pretrained(folder)(**inputs).logits
    assert np.abs(logits.numpy() - expected["logits"]).max() <= ATOL
