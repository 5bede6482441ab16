"""The PyTorch backend: `torch.nn` Longformer models with Hugging Face's names, arguments and outputs."""

from .._frameworks import require

require("torch")

from .modeling import (  # noqa: E402
    LongformerForMaskedLM,
    LongformerForMultipleChoice,
    LongformerForQuestionAnswering,
    LongformerForSequenceClassification,
    LongformerForTokenClassification,
    LongformerModel,
    LongformerPreTrainedModel,
)

__all__ = [
    "LongformerForMaskedLM",
    "LongformerForMultipleChoice",
    "LongformerForQuestionAnswering",
    "LongformerForSequenceClassification",
    "LongformerForTokenClassification",
    "LongformerModel",
    "LongformerPreTrainedModel",
]
