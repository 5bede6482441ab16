"""The JAX/Flax backend: `flax.nnx` Longformer models with Hugging Face's names, arguments and outputs."""

from .._frameworks import require

require("jax")
require("flax")

from ..outputs import outputs_to_numpy  # noqa: E402
from .checkpoint import cast_params  # noqa: E402
from .modeling import (  # noqa: E402
    LongformerForMaskedLM,
    LongformerForMultipleChoice,
    LongformerForQuestionAnswering,
    LongformerForSequenceClassification,
    LongformerForTokenClassification,
    LongformerModel,
    LongformerPreTrainedModel,
)
from .sharding import batch_sharding, make_mesh, param_shardings, shard_model  # noqa: E402


def forward_numpy(model, inputs: dict, **kwargs):
    """Run `model` on NumPy inputs; return its output fields as NumPy arrays (tuples kept)."""
    return outputs_to_numpy(model(**inputs, **kwargs, return_dict=True))


__all__ = [
    "batch_sharding",
    "cast_params",
    "forward_numpy",
    "make_mesh",
    "param_shardings",
    "shard_model",
    "LongformerForMaskedLM",
    "LongformerForMultipleChoice",
    "LongformerForQuestionAnswering",
    "LongformerForSequenceClassification",
    "LongformerForTokenClassification",
    "LongformerModel",
    "LongformerPreTrainedModel",
]
