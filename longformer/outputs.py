"""Output types shared by the three backends (names and fields as Hugging Face's).

Shape legend (used in every backend): B batch, N input length, H hidden size, nh heads, V vocab size,
C labels, nc choices, x the largest number of global tokens in the batch, W the layer's attention window.

- `hidden_states`: tuple of L+1 tensors `(B, N, H)`, the embeddings first.
- `attentions`: tuple of L tensors `(B, nh, N, x + W + 1)`. Columns `0..x-1` hold the attention to the k-th global
  token of the row's example, columns `x..x+W` the relative offsets `-W/2..+W/2` (self at `x + W/2`); rows of
  global and padding tokens are zero.
- `global_attentions`: tuple of L tensors `(B, nh, N_padded, x)` (length padded to the window), the attention of
  each global token over all keys; None when no token of the batch is global.

With `return_dict=False` a model returns `output.to_tuple()`: the fields in order, the ones that are None left out
(except `pooler_output` of the base model, which stays in place as Hugging Face does).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class ModelOutput:
    """A dataclass that also reads like a tuple (`out[0]`) and like a dict (`out["logits"]`)."""

    # Fields that stay in `to_tuple()` even when None.
    _keep_none = ()

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self)
                     if getattr(self, f.name) is not None or f.name in self._keep_none)

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            value = getattr(self, key)
            if value is None:
                raise KeyError(key)
            return value
        return self.to_tuple()[key]

    def __iter__(self):
        return iter(self.to_tuple())

    def __len__(self) -> int:
        return len(self.to_tuple())

    # tf.nest's custom-structure protocol, so outputs pass through tf.function (no TensorFlow import here).
    def __tf_flatten__(self):
        names = tuple(f.name for f in dataclasses.fields(self))
        return names, tuple(getattr(self, name) for name in names)

    @classmethod
    def __tf_unflatten__(cls, names, components):
        return cls(**dict(zip(names, components, strict=True)))


@dataclass
class LongformerBaseModelOutput(ModelOutput):
    last_hidden_state: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    global_attentions: tuple | None = None


@dataclass
class LongformerBaseModelOutputWithPooling(ModelOutput):
    _keep_none = ("pooler_output",)

    last_hidden_state: Any = None
    pooler_output: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    global_attentions: tuple | None = None


@dataclass
class _LossAndLogits(ModelOutput):
    loss: Any = None
    logits: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    global_attentions: tuple | None = None


@dataclass
class LongformerMaskedLMOutput(_LossAndLogits):
    """`logits (B, N, V)`, `loss` the masked-LM cross-entropy."""


@dataclass
class LongformerSequenceClassifierOutput(_LossAndLogits):
    """`logits (B, C)`."""


@dataclass
class LongformerMultipleChoiceModelOutput(_LossAndLogits):
    """`logits (B, nc)`; encoder fields have batch B * nc."""


@dataclass
class LongformerTokenClassifierOutput(_LossAndLogits):
    """`logits (B, N, C)`."""


@dataclass
class LongformerQuestionAnsweringModelOutput(ModelOutput):
    loss: Any = None
    start_logits: Any = None
    end_logits: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    global_attentions: tuple | None = None


# Each model class's output type, by class name (the backends and longformer.onnx).
OUTPUT_CLASSES = {
    "LongformerModel": LongformerBaseModelOutputWithPooling,
    "LongformerForMaskedLM": LongformerMaskedLMOutput,
    "LongformerForSequenceClassification": LongformerSequenceClassifierOutput,
    "LongformerForMultipleChoice": LongformerMultipleChoiceModelOutput,
    "LongformerForTokenClassification": LongformerTokenClassifierOutput,
    "LongformerForQuestionAnswering": LongformerQuestionAnsweringModelOutput,
}
# The label arguments of each head (the base model has none).
LABEL_NAMES = {"LongformerModel": (), "LongformerForQuestionAnswering": ("start_positions", "end_positions")}

# The fields every head's output carries besides the base model's encoder fields (for parity tests and tools).
ENCODER_FIELDS = ("hidden_states", "attentions", "global_attentions")


def encoder_fields(base: dict[str, Any]) -> dict[str, Any]:
    """The encoder fields a head passes through from its base model's output dict."""
    return {k: base[k] for k in ENCODER_FIELDS}


def outputs_to_numpy(output: ModelOutput) -> dict[str, Any]:
    """An output's present fields as NumPy arrays (float32, float64 kept; tuples kept), for jax and tf tensors."""
    import numpy as np

    def convert(value):
        if isinstance(value, tuple):
            return tuple(convert(v) for v in value)
        array = np.asarray(value)
        return array if array.dtype == np.float64 else array.astype(np.float32)

    return {key: convert(value) for key, value in output.items()}
