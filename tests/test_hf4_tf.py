"""tf_model.h5 written by converters/ loads in Hugging Face transformers 4.x TensorFlow with identical outputs.

Runs in the `hf4` tox env (transformers<5, tensorflow-cpu, tf-keras): transformers 5 has no TensorFlow models."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # transformers 4.x TF models are Keras 2 (tf-keras)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

transformers = pytest.importorskip("transformers")
if int(transformers.__version__.split(".")[0]) >= 5:
    pytest.skip("needs transformers<5 (the last with TensorFlow models): run `tox -e hf4`", allow_module_level=True)
pytest.importorskip("tf_keras")

from conftest import longformer_inputs, random_checkpoint  # noqa: E402

from converters.convert import convert  # noqa: E402
from longformer.reference import ReferenceModel  # noqa: E402

ATOL = 1e-5


@pytest.mark.parametrize("head", ["LongformerModel", "LongformerForMaskedLM", "LongformerForQuestionAnswering"])
@pytest.mark.parametrize("max_shard_size", [None, 30_000])
def test_written_h5_loads_in_transformers_4(tmp_path, head, max_shard_size):
    src, config, state = random_checkpoint(tmp_path / "src", head, attention_window=[4, 8])
    out = convert(src, tmp_path / "tf", "tf", max_shard_size=max_shard_size)
    assert (len(out.files) > 1) == (max_shard_size is not None)
    model, info = getattr(transformers, "TF" + head).from_pretrained(tmp_path / "tf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    inputs = longformer_inputs()
    got = model(**inputs, output_hidden_states=True, output_attentions=True)
    want = ReferenceModel(config, state)(**inputs)
    n = inputs["input_ids"].shape[1]
    for i, (g, w) in enumerate(zip(got.hidden_states, want["hidden_states"], strict=True)):
        np.testing.assert_allclose(g.numpy()[:, :n], w, atol=ATOL, err_msg=f"hidden_states.{i}")
    for i, (g, w) in enumerate(zip(got.attentions, want["attentions"], strict=True)):
        np.testing.assert_allclose(g.numpy()[:, :, :n], w, atol=ATOL, err_msg=f"attentions.{i}")
    for i, (g, w) in enumerate(zip(got.global_attentions, want["global_attentions"], strict=True)):
        np.testing.assert_allclose(g.numpy()[..., :n], w, atol=ATOL, err_msg=f"global_attentions.{i}")
    if head == "LongformerForMaskedLM":
        np.testing.assert_allclose(got.logits.numpy(), want["logits"], atol=ATOL)
    if head == "LongformerForQuestionAnswering":
        h = want["last_hidden_state"]
        logits = h @ state["qa_outputs.weight"].T + state["qa_outputs.bias"]
        np.testing.assert_allclose(got.start_logits.numpy(), logits[..., 0], atol=ATOL)
        np.testing.assert_allclose(got.end_logits.numpy(), logits[..., 1], atol=ATOL)
    if head == "LongformerModel":
        np.testing.assert_allclose(got.pooler_output.numpy(), want["pooler_output"], atol=ATOL)


def test_h5_saved_by_transformers_4_converts_back_bit_exact(tmp_path):
    """transformers 4.x TF save_pretrained -> our safetensors -> tf_model.h5 again: the same numbers."""
    src, config, state = random_checkpoint(tmp_path / "src", "LongformerForMaskedLM")
    convert(src, tmp_path / "tf", "tf")
    model = transformers.TFLongformerForMaskedLM.from_pretrained(tmp_path / "tf")
    model.save_pretrained(tmp_path / "hf-saved")
    convert(tmp_path / "hf-saved", tmp_path / "back", "safetensors")
    from converters.checkpoint import read_checkpoint

    back = read_checkpoint(str(tmp_path / "back" / "model.safetensors"))
    assert set(back) == set(state)
    for key, value in state.items():
        assert np.array_equal(back[key], value), key
