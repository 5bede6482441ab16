"""`LongformerConfig`: the Hugging Face `config.json` of a Longformer, read and written without any framework.

Field names and defaults are Hugging Face's (`model_type: "longformer"`), so any Hub config loads and anything we
write loads in Hugging Face. Keys we do not know (legacy AllenAI keys, `architectures`, `transformers_version`, ...)
are kept and written back unchanged.
"""

from __future__ import annotations

import copy
import json
import operator
import os
from typing import Any

CONFIG_NAME = "config.json"

# Hugging Face's defaults (identical in transformers 4.57 and 5.x). Note that they are BERT's, not the checkpoints'.
_DEFAULTS: dict[str, Any] = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "attention_window": 512,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "sep_token_id": 2,
    "tie_word_embeddings": True,
    "problem_type": None,
    "output_attentions": False,
    "output_hidden_states": False,
    "return_dict": True,
}

_PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def _label_count(n: Any) -> int:
    try:
        return operator.index(n)  # an int, or NumPy's; not "3" or 2.5
    except TypeError:
        raise ValueError(f"num_labels must be an integer, got {n!r}.") from None


class LongformerConfig:
    """Configuration of a Longformer model, compatible with Hugging Face's `LongformerConfig`.

    Args:
        attention_window: int or list of ints. The full (two-sided) local attention window, per layer when a list.
            Every value must be even and positive; a list must have `num_hidden_layers` entries.
        num_labels: number of labels of the classification heads (default 2), or pass `id2label`.
        **kwargs: any other Hugging Face field (see `_DEFAULTS`); unknown keys are kept and saved again.

    The per-layer windows are available, normalised, as `config.attention_windows` (a tuple of ints); the
    `attention_window` attribute keeps the form the user gave (a copied list, never the caller's object).
    """

    model_type = "longformer"

    def __init__(self, *, num_labels: int | None = None, id2label: dict | None = None,
                 label2id: dict | None = None, **kwargs: Any) -> None:
        for key, default in _DEFAULTS.items():
            value = kwargs.pop(key, default)
            setattr(self, key, copy.deepcopy(value))
        kwargs.pop("model_type", None)
        num_labels = None if num_labels is None else _label_count(num_labels)
        try:
            if id2label is not None:
                self.id2label = {int(k): v for k, v in id2label.items()}
            else:
                self.id2label = {i: f"LABEL_{i}" for i in range(2 if num_labels is None else num_labels)}
            self.label2id = ({k: int(v) for k, v in label2id.items()} if label2id is not None
                             else {v: k for k, v in self.id2label.items()})
        except (AttributeError, TypeError, ValueError, OverflowError) as e:  # int("x"), int(inf), a list, ...
            raise ValueError(f"id2label / label2id must map integer label ids to names ({e}).") from e
        if num_labels is not None and num_labels != len(self.id2label):
            raise ValueError(f"num_labels={num_labels} disagrees with id2label, which has {len(self.id2label)} "
                             "entries; pass only one of them.")
        # Whatever else the file carried (AllenAI legacy keys, architectures, transformers_version, ...).
        self.extra: dict[str, Any] = copy.deepcopy(kwargs)
        self.validate()

    # ------------------------------------------------------------------ derived values
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        self.id2label = {i: f"LABEL_{i}" for i in range(_label_count(n))}
        self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def attention_windows(self) -> tuple[int, ...]:
        """The full attention window of each layer, validated (a new tuple; the config is not changed)."""
        window = self.attention_window
        windows = tuple(window) if isinstance(window, (list, tuple)) else (window,) * self.num_hidden_layers
        if len(windows) != self.num_hidden_layers:
            raise ValueError(
                f"attention_window has {len(windows)} entries but the model has num_hidden_layers="
                f"{self.num_hidden_layers}; give one window per layer or a single int.")
        for i, w in enumerate(windows):
            if not _is_int(w) or w <= 0 or w % 2:
                raise ValueError(f"attention_window of layer {i} is {w!r}; it must be an even, positive integer "
                                 "(the window covers w/2 tokens on each side).")
        return windows

    @property
    def max_attention_window(self) -> int:
        """Inputs are padded to a multiple of this (the largest per-layer window)."""
        return max(self.attention_windows)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise `ValueError` for a configuration no Longformer can be built from: every field's type and range."""
        for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                    "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, key)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"{key} must be a positive integer, got {value!r}.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) is not a multiple of num_attention_heads "
                             f"({self.num_attention_heads}); every head needs the same size.")
        if self.hidden_act not in ("gelu",):
            raise ValueError(f"hidden_act={self.hidden_act!r} is not supported; Longformer checkpoints use 'gelu'.")
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            value = getattr(self, key, self.extra.get(key))
            if key == "classifier_dropout" and value is None:
                continue  # Hugging Face: null means "use hidden_dropout_prob"
            if not _is_number(value) or not 0 <= value <= 1:
                raise ValueError(f"{key} is a probability and must lie in [0, 1], got {value!r}.")
        if not _is_number(self.layer_norm_eps) or not 0 < self.layer_norm_eps < 1:
            raise ValueError(f"layer_norm_eps must be a small positive number (e.g. 1e-5), got "
                             f"{self.layer_norm_eps!r}: LayerNorm divides by sqrt(variance + eps).")
        if not _is_number(self.initializer_range) or self.initializer_range < 0:
            raise ValueError(f"initializer_range must be a non-negative number, got {self.initializer_range!r}.")
        if not _is_int(self.pad_token_id) or self.pad_token_id < 0:
            raise ValueError(f"pad_token_id must be a non-negative integer, got {self.pad_token_id!r}: Longformer "
                             "uses it as the padding index of the position table (RoBERTa's is 1).")
        for key in ("bos_token_id", "eos_token_id", "sep_token_id"):
            value = getattr(self, key)
            if value is not None and (not _is_int(value) or value < 0):
                raise ValueError(f"{key} must be a non-negative integer or null, got {value!r}.")
        if self.max_position_embeddings < self.pad_token_id + 2:
            raise ValueError(f"max_position_embeddings ({self.max_position_embeddings}) leaves no room for a "
                             f"token: positions start at pad_token_id + 1 = {self.pad_token_id + 1}, so the table "
                             f"needs at least {self.pad_token_id + 2} rows.")
        if self.problem_type not in _PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {_PROBLEM_TYPES}, got {self.problem_type!r}.")
        for key in ("tie_word_embeddings", "output_attentions", "output_hidden_states", "return_dict"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"{key} must be true or false, got {getattr(self, key)!r}.")
        if not self.id2label:
            raise ValueError("A Longformer needs at least one label (num_labels >= 1).")
        self.attention_windows  # noqa: B018 - validates the windows

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LongformerConfig:
        if not isinstance(data, dict):
            raise ValueError(f"A config must be a JSON object of fields, not a {type(data).__name__}.")
        data = dict(data)
        model_type = data.get("model_type", "longformer")
        if model_type != "longformer":
            raise ValueError(f"This is a {model_type!r} config, not a Longformer one (model_type 'longformer'). "
                             "Convert RoBERTa checkpoints with `longformer from-roberta`.")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = copy.deepcopy(self.extra)
        for key in _DEFAULTS:
            out[key] = copy.deepcopy(getattr(self, key))
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["label2id"] = dict(self.label2id)
        out["model_type"] = self.model_type
        return dict(sorted(out.items()))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, CONFIG_NAME)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self.to_json_string())
        os.replace(tmp, path)
        return path

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> LongformerConfig:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not valid JSON ({e}).") from e
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: {e}") from e

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **hub_kwargs: Any) -> LongformerConfig:
        """Load `config.json` from a folder, a file, or a Hub id (`revision=`, `cache_dir=`, `token=`, ...)."""
        from .hub import resolve_file

        path = os.fspath(name_or_path)
        if os.path.isfile(path):
            return cls.from_json_file(path)
        return cls.from_json_file(resolve_file(path, CONFIG_NAME, **hub_kwargs))

    def copy(self) -> LongformerConfig:
        return copy.deepcopy(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LongformerConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"LongformerConfig {self.to_json_string()}"
