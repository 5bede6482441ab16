"""longformer: one Longformer (Beltagy et al., 2020) for PyTorch, TensorFlow and JAX/Flax.

`import longformer` imports no deep-learning framework. The backends live in `longformer.pt`, `longformer.tf`
and `longformer.flax`, each importing only its own framework.
"""

from .auto import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    available_backends,
)
from .config import LongformerConfig
from .outputs import (
    LongformerBaseModelOutput,
    LongformerBaseModelOutputWithPooling,
    LongformerMaskedLMOutput,
    LongformerMultipleChoiceModelOutput,
    LongformerQuestionAnsweringModelOutput,
    LongformerSequenceClassifierOutput,
    LongformerTokenClassifierOutput,
    ModelOutput,
)
from .tokenizer import LongformerTokenizer

__version__ = "0.1.0"


def bundled_checkpoint() -> str:
    """The folder of the tiny random Longformer shipped in the package (a masked LM: 2 layers, hidden 32, windows 8
    and 16, a 427-token byte-level BPE tokenizer): every example in the docs runs on it, offline."""
    import os

    return os.path.join(os.path.dirname(__file__), "data", "tiny")


__all__ = [
    "bundled_checkpoint",
    "AutoConfig",
    "AutoModel",
    "AutoModelForMaskedLM",
    "AutoModelForMultipleChoice",
    "AutoModelForQuestionAnswering",
    "AutoModelForSequenceClassification",
    "AutoModelForTokenClassification",
    "AutoTokenizer",
    "available_backends",
    "LongformerBaseModelOutput",
    "LongformerBaseModelOutputWithPooling",
    "LongformerConfig",
    "LongformerMaskedLMOutput",
    "LongformerMultipleChoiceModelOutput",
    "LongformerQuestionAnsweringModelOutput",
    "LongformerSequenceClassifierOutput",
    "LongformerTokenClassifierOutput",
    "LongformerTokenizer",
    "ModelOutput",
]
