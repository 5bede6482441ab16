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


def forward_numpy(model, inputs: dict, **kwargs):
    """Run `model` on NumPy inputs without gradients; return its output fields as NumPy arrays (tuples kept)."""
    import torch

    def to_numpy(value):
        if isinstance(value, tuple):
            return tuple(to_numpy(v) for v in value)
        return value.detach().float().cpu().numpy() if value.dtype != torch.float64 else value.detach().numpy()

    with torch.no_grad():
        out = model(**{k: torch.as_tensor(v) for k, v in inputs.items()}, **kwargs, return_dict=True)
    return {key: to_numpy(out[key]) for key in out.keys()}


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
