"""The TensorFlow backend: Keras 3 Longformer models (TF ops) with Hugging Face's names, arguments and outputs."""

import os

from .._frameworks import require


def _refuse(backend: str) -> None:
    raise ImportError(
        f"longformer.tf needs Keras' TensorFlow backend, but Keras is set to {backend!r}. Set "
        "KERAS_BACKEND=tensorflow before importing keras (or use longformer.flax / longformer.pt).")


# Checked before importing keras too: another backend may not even import here (its framework missing).
if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
    _refuse(os.environ["KERAS_BACKEND"])
require("tensorflow")
_keras = require("keras")
if _keras.backend.backend() != "tensorflow":
    _refuse(_keras.backend.backend())

from ..outputs import outputs_to_numpy  # noqa: E402
from .modeling import (  # noqa: E402
    LongformerForMaskedLM,
    LongformerForMultipleChoice,
    LongformerForQuestionAnswering,
    LongformerForSequenceClassification,
    LongformerForTokenClassification,
    LongformerModel,
    LongformerPreTrainedModel,
)


def forward_numpy(model, inputs: dict, **kwargs):
    """Run `model` on NumPy inputs; return its output fields as NumPy arrays (tuples kept)."""
    return outputs_to_numpy(model(**inputs, **kwargs, return_dict=True))


__all__ = [
    "forward_numpy",
    "LongformerForMaskedLM",
    "LongformerForMultipleChoice",
    "LongformerForQuestionAnswering",
    "LongformerForSequenceClassification",
    "LongformerForTokenClassification",
    "LongformerModel",
    "LongformerPreTrainedModel",
]
