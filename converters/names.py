"""Matching a checkpoint's canonical tensor names to the ones a model expects.

Canonical names are Hugging Face PyTorch state-dict keys. A head model keeps the base model under `longformer.`;
`LongformerModel` has no prefix. A checkpoint of either kind loads into a model of either kind: the prefix is added
or dropped as needed, head tensors a model has no use for are reported as unexpected, tied aliases are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .checkpoint import CheckpointError

BASE_PREFIX = "longformer."
BASE_PARTS = ("embeddings.", "encoder.", "pooler.")

# How each kind of tensor's leaf is named in each format, and whether the array is stored transposed there (a
# Dense kernel is (in, out), torch's Linear weight (out, in)). The one table behind every name map: the Flax
# backend's nnx paths and Flax msgpack files use the "flax" column, the TF backend's Keras variables and Hugging
# Face 4.x tf_model.h5 files the "tf" column, the initializers of our model.onnx the "onnx" column (MatMul takes
# (in, out)). (HF 4.x TF names the word-embedding table `weight`.)
LEAVES = {  # kind: (canonical, flax, tf, onnx, transposed)
    "dense": ("weight", "kernel", "kernel", "kernel", True),
    "norm": ("weight", "scale", "gamma", "weight", False),
    "norm_bias": ("bias", "bias", "beta", "bias", False),
    "embedding": ("weight", "embedding", "embeddings", "weight", False),
    "word_embedding": ("weight", "embedding", "weight", "weight", False),
    "bias": ("bias", "bias", "bias", "bias", False),
}
_COLUMN = {"flax": 1, "tf": 2, "onnx": 3}


def leaf_kind(key: str) -> str:
    """The kind of a canonical tensor, from its name (see `LEAVES`)."""
    *parents, leaf = key.split(".")
    parent = parents[-1] if parents else ""
    if parent in ("LayerNorm", "layer_norm"):
        return "norm" if leaf == "weight" else "norm_bias"
    if leaf == "bias":
        return "bias"
    if parent == "word_embeddings":
        return "word_embedding"
    if parent.endswith("_embeddings"):
        return "embedding"
    if leaf == "weight":
        return "dense"
    raise CheckpointError(f"{key}: not a Longformer tensor name (expected a .weight or .bias).")


def to_format_leaf(key: str, fmt: str) -> tuple[list[str], bool]:
    """Canonical key -> (path in `fmt` ("flax", "tf" or "onnx"), stored transposed?)."""
    row = LEAVES[leaf_kind(key)]
    return [*key.split(".")[:-1], row[_COLUMN[fmt]]], row[-1]


def from_format_leaf(fmt: str) -> dict[str, tuple[str, bool]]:
    """`fmt`'s leaf name -> (canonical leaf, transposed?): how a backend or a reader names tensors back."""
    return {row[_COLUMN[fmt]]: (row[0], row[-1]) for row in LEAVES.values()}


# Names from old releases that carry nothing (a position_ids buffer) or that were renamed (LayerNorm gamma/beta).
IGNORED = ("embeddings.position_ids",)


@dataclass
class LoadReport:
    """What `match_names` found: `mapping` model key -> checkpoint key, plus the leftovers, by name."""

    mapping: dict[str, str] = field(default_factory=dict)
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    mismatched_keys: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # model key, theirs, ours

    def as_dict(self) -> dict[str, list]:
        return {"missing_keys": self.missing_keys, "unexpected_keys": self.unexpected_keys,
                "mismatched_keys": self.mismatched_keys}

    def ignore_unused_pooler(self, expected: Iterable[str]) -> None:
        """Heads without a pooler ignore a checkpoint's pooler silently, as Hugging Face does."""
        if not any(".pooler." in k or k.startswith("pooler.") for k in expected):
            self.unexpected_keys = [k for k in self.unexpected_keys if "pooler." not in k]

    def warn(self, model_name: str, source: str) -> None:
        """Name the tensors that were newly initialised or left unused (a warning each, as Hugging Face logs)."""
        from longformer._warn import warn

        if self.mismatched_keys:
            lines = "; ".join(f"{k}: checkpoint {s}, model {e}" for k, s, e in self.mismatched_keys)
            warn(f"{model_name}: shapes differ from {source}'s, newly initialised (train before use): {lines}")
        if self.missing_keys:
            warn(f"{model_name}: not in {source}, newly initialised (train before use): {self.missing_keys}")
        if self.unexpected_keys:
            warn(f"{model_name}: tensors of {source} this model does not use: {self.unexpected_keys}")


def legacy_rename(key: str) -> str:
    """Old TF-ported checkpoints call LayerNorm parameters gamma/beta."""
    if key.endswith(".gamma"):
        return key[: -len("gamma")] + "weight"
    if key.endswith(".beta"):
        return key[: -len("beta")] + "bias"
    return key


def _to_model_key(key: str, model_has_prefix: bool, checkpoint_has_prefix: bool) -> str:
    if model_has_prefix and not checkpoint_has_prefix and key.startswith(BASE_PARTS):
        return BASE_PREFIX + key
    if not model_has_prefix and key.startswith(BASE_PREFIX):
        return key[len(BASE_PREFIX):]
    return key


def match_names(expected: Mapping[str, tuple], available: Mapping[str, tuple], *, model_has_prefix: bool,
                tied: Iterable[str] = (), source: str = "checkpoint", ignore_mismatched_sizes: bool = False
                ) -> LoadReport:
    """Pair the model's expected tensors with the checkpoint's, by canonical name.

    Args:
        expected: model key -> shape (tied aliases excluded).
        available: checkpoint key -> shape.
        model_has_prefix: the model is a head model (its base lives under `longformer.`).
        tied: model keys that alias another parameter; a checkpoint copy of them is ignored.
        ignore_mismatched_sizes: a head's tensor whose shape differs (a classifier of another `num_labels`) is left
            to be initialised anew, as Hugging Face's option of that name does; the encoder's must still fit.
    Raises:
        CheckpointError: a tensor of the right name has the wrong shape, or the checkpoint lacks part of the
            encoder or embeddings (it is not a Longformer of this config).
    """
    checkpoint_has_prefix = any(k.startswith(BASE_PREFIX) for k in available)
    tied = set(tied)
    report = LoadReport()
    for key, shape in available.items():
        model_key = _to_model_key(legacy_rename(key), model_has_prefix, checkpoint_has_prefix)
        if model_key in tied or model_key.endswith(IGNORED):
            continue
        if model_key not in expected:
            report.unexpected_keys.append(key)
            continue
        if tuple(expected[model_key]) != tuple(shape):
            report.mismatched_keys.append((model_key, tuple(shape), tuple(expected[model_key])))
            continue
        report.mapping[model_key] = key
    mismatched = {k for k, _, _ in report.mismatched_keys}
    report.missing_keys = [k for k in expected if k not in report.mapping and k not in mismatched]

    def of_encoder(model_key: str) -> bool:
        return (model_key[len(BASE_PREFIX):] if model_has_prefix else model_key).startswith(("embeddings.", "encoder."))

    encoder_mismatch = [m for m in report.mismatched_keys if of_encoder(m[0])]
    if report.mismatched_keys and (encoder_mismatch or not ignore_mismatched_sizes):
        lines = "; ".join(f"{k}: checkpoint {s}, model {e}"
                          for k, s, e in (encoder_mismatch or report.mismatched_keys)[:10])
        hint = ("Check that config.json belongs to these weights" + (" (ignore_mismatched_sizes initialises only a "
                "head's tensors anew)" if ignore_mismatched_sizes else "") if encoder_mismatch else
                "Loading a head with another number of labels? Pass ignore_mismatched_sizes=True to initialise "
                "these tensors anew")
        raise CheckpointError(f"{source} has tensors whose shapes do not fit the config: {lines}. {hint}.")
    essential = [k for k in report.missing_keys if of_encoder(k)]
    if essential:
        raise CheckpointError(f"{source} lacks {len(essential)} tensors of the Longformer encoder, e.g. "
                              f"{essential[:5]}. It is incomplete or not a Longformer checkpoint.")
    return report


# ---------------------------------------------------------------------------------------------- the canonical table
# One row per tensor of a layer-free model: canonical name -> shape in terms of the config.
def canonical_shapes(config, head: str = "LongformerModel") -> dict[str, tuple[int, ...]]:
    """Every tensor a Hugging Face checkpoint of `head` holds (tied aliases excluded), with its shape."""
    H, I, V = config.hidden_size, config.intermediate_size, config.vocab_size
    base = {"embeddings.word_embeddings.weight": (V, H),
            "embeddings.position_embeddings.weight": (config.max_position_embeddings, H),
            "embeddings.token_type_embeddings.weight": (config.type_vocab_size, H),
            "embeddings.LayerNorm.weight": (H,), "embeddings.LayerNorm.bias": (H,)}
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value", "query_global", "key_global", "value_global"):
            base[p + f"attention.self.{name}.weight"] = (H, H)
            base[p + f"attention.self.{name}.bias"] = (H,)
        base.update({p + "attention.output.dense.weight": (H, H), p + "attention.output.dense.bias": (H,),
                     p + "attention.output.LayerNorm.weight": (H,), p + "attention.output.LayerNorm.bias": (H,),
                     p + "intermediate.dense.weight": (I, H), p + "intermediate.dense.bias": (I,),
                     p + "output.dense.weight": (H, I), p + "output.dense.bias": (H,),
                     p + "output.LayerNorm.weight": (H,), p + "output.LayerNorm.bias": (H,)})
    pooler = {"pooler.dense.weight": (H, H), "pooler.dense.bias": (H,)}
    if head == "LongformerModel":
        return {**base, **pooler}
    out = {BASE_PREFIX + k: v for k, v in base.items()}
    C = config.num_labels
    heads = {
        "LongformerForMaskedLM": {"lm_head.dense.weight": (H, H), "lm_head.dense.bias": (H,),
                                  "lm_head.layer_norm.weight": (H,), "lm_head.layer_norm.bias": (H,),
                                  "lm_head.bias": (V,)},
        "LongformerForSequenceClassification": {"classifier.dense.weight": (H, H), "classifier.dense.bias": (H,),
                                                "classifier.out_proj.weight": (C, H), "classifier.out_proj.bias": (C,)},
        "LongformerForMultipleChoice": {**{BASE_PREFIX + k: v for k, v in pooler.items()},
                                        "classifier.weight": (1, H), "classifier.bias": (1,)},
        "LongformerForTokenClassification": {"classifier.weight": (C, H), "classifier.bias": (C,)},
        "LongformerForQuestionAnswering": {"qa_outputs.weight": (C, H), "qa_outputs.bias": (C,)},
    }
    if head not in heads:
        raise ValueError(f"Unknown model class {head!r}; expected LongformerModel or one of {sorted(heads)}.")
    if head == "LongformerForMaskedLM" and not config.tie_word_embeddings:
        out["lm_head.decoder.weight"] = (V, H)
    return {**out, **heads[head]}


def guess_head(names: Iterable[str]) -> str:
    """The model class a checkpoint was saved from, judged by its head tensors."""
    names = set(names)
    if any(n.startswith("lm_head.") for n in names):
        return "LongformerForMaskedLM"
    if "qa_outputs.weight" in names:
        return "LongformerForQuestionAnswering"
    if "classifier.out_proj.weight" in names:
        return "LongformerForSequenceClassification"
    if "classifier.weight" in names:
        return ("LongformerForMultipleChoice" if any(n.startswith(BASE_PREFIX + "pooler.") for n in names)
                else "LongformerForTokenClassification")
    return "LongformerModel"
