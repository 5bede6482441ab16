"""LongformerConfig: Hugging Face config.json in and out, validation, per-layer windows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longformer import LongformerConfig

ALLENAI_BASE = {  # allenai/longformer-base-4096's config.json, legacy keys included
    "attention_mode": "longformer", "attention_probs_dropout_prob": 0.1, "attention_window": [512] * 12,
    "bos_token_id": 0, "eos_token_id": 2, "gradient_checkpointing": False, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "hidden_size": 768, "ignore_attention_mask": False, "initializer_range": 0.02,
    "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 4098,
    "model_type": "longformer", "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1,
    "sep_token_id": 2, "type_vocab_size": 1, "vocab_size": 50265,
}


def test_defaults_are_hugging_face_defaults():
    c = LongformerConfig()
    assert (c.vocab_size, c.max_position_embeddings, c.type_vocab_size, c.layer_norm_eps) == (30522, 512, 2, 1e-12)
    assert c.attention_window == 512 and c.attention_windows == (512,) * 12
    assert c.num_labels == 2 and c.return_dict is True


def test_round_trip_keeps_unknown_keys(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(ALLENAI_BASE))
    c = LongformerConfig.from_pretrained(tmp_path)
    assert c.extra["attention_mode"] == "longformer" and c.extra["gradient_checkpointing"] is False
    c.save_pretrained(tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    for key, value in ALLENAI_BASE.items():
        assert saved[key] == value, key
    assert LongformerConfig.from_pretrained(tmp_path / "out") == c


def test_hugging_face_reads_our_config(tmp_path):
    transformers = pytest.importorskip("transformers")
    LongformerConfig(**ALLENAI_BASE, num_labels=5).save_pretrained(tmp_path)
    hf = transformers.LongformerConfig.from_pretrained(tmp_path)
    assert hf.num_labels == 5 and hf.attention_window == [512] * 12 and hf.max_position_embeddings == 4098
    hf.save_pretrained(tmp_path / "hf")
    ours = LongformerConfig.from_pretrained(tmp_path / "hf")
    assert ours.num_labels == 5 and ours.attention_windows == (512,) * 12


def test_window_list_is_copied_not_mutated():
    windows = [4, 8]
    c = LongformerConfig(num_hidden_layers=2, attention_window=windows)
    assert c.attention_windows == (4, 8) and c.max_attention_window == 8
    c.attention_window[0] = 6
    assert windows == [4, 8]
    c2 = LongformerConfig(num_hidden_layers=3, attention_window=6)
    assert c2.attention_window == 6 and c2.attention_windows == (6, 6, 6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(attention_window=5), "even"),
    (dict(attention_window=0), "even, positive"),
    (dict(attention_window=-4), "even, positive"),
    (dict(num_hidden_layers=2, attention_window=[4, 4, 4]), "3 entries"),
    (dict(num_hidden_layers=2, attention_window=[4, 3]), "layer 1"),
    (dict(hidden_size=30, num_attention_heads=4), "not a multiple"),
    (dict(hidden_act="relu"), "hidden_act"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(attention_window=512.0), "even, positive integer"),
    (dict(num_hidden_layers=2, attention_window=[4, 4.5]), "layer 1"),
    (dict(attention_window=True), "even, positive integer"),
    (dict(layer_norm_eps=0), "layer_norm_eps"),
    (dict(layer_norm_eps=-1e-5), "layer_norm_eps"),
    (dict(layer_norm_eps=float("nan")), "layer_norm_eps"),
    (dict(hidden_dropout_prob=1.5), "hidden_dropout_prob.*\\[0, 1\\]"),
    (dict(attention_probs_dropout_prob=-0.1), "attention_probs_dropout_prob"),
    (dict(classifier_dropout=2), "classifier_dropout"),
    (dict(hidden_dropout_prob="0.1"), "hidden_dropout_prob"),
    (dict(pad_token_id=None), "pad_token_id must be a non-negative integer"),
    (dict(pad_token_id=-1), "pad_token_id"),
    (dict(bos_token_id=-3), "bos_token_id"),
    (dict(eos_token_id=2.0), "eos_token_id"),
    (dict(max_position_embeddings=2), "leaves no room for a token"),
    (dict(hidden_size=32.0, num_attention_heads=4), "hidden_size"),
    (dict(num_hidden_layers=True), "num_hidden_layers"),
    (dict(initializer_range=-1), "initializer_range"),
    (dict(tie_word_embeddings="yes"), "tie_word_embeddings"),
    (dict(num_labels=0), "at least one label"),
    (dict(id2label=["a", "b"]), "id2label"),
    (dict(id2label={"first": "a"}), "id2label"),  # a key that is not an integer
    (dict(label2id={"a": float("-inf")}), "label2id"),  # found by fuzzing config.json: was an OverflowError
    (dict(num_labels="3"), "num_labels must be an integer"),
])
def test_invalid_configs_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LongformerConfig(**kwargs)


def test_null_ids_allowed_where_hugging_face_allows_them():
    c = LongformerConfig(bos_token_id=None, eos_token_id=None, sep_token_id=None, classifier_dropout=None)
    assert c.bos_token_id is None and c.extra["classifier_dropout"] is None
    assert LongformerConfig(max_position_embeddings=3).max_position_embeddings == 3  # room for one token


@pytest.mark.parametrize("content, message", [
    ("[1, 2, 3]", "must be a JSON object"),
    ('{"pad_token_id": null}', "pad_token_id must be a non-negative integer"),
    ('{"layer_norm_eps": 0}', "layer_norm_eps"),
    ("{not json", "not valid JSON"),
])
def test_bad_config_files_name_the_file(tmp_path, content, message):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        LongformerConfig.from_pretrained(tmp_path)
    assert str(tmp_path / "config.json") in str(info.value)


def test_foreign_config_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="not a Longformer"):
        LongformerConfig.from_pretrained(tmp_path)


def test_num_labels_and_id2label():
    c = LongformerConfig(num_labels=4)
    assert c.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2", 3: "LABEL_3"}
    c2 = LongformerConfig.from_dict(c.to_dict())
    assert c2.num_labels == 4 and c2.label2id["LABEL_3"] == 3
    with pytest.raises(ValueError, match="disagrees"):
        LongformerConfig(num_labels=3, id2label={0: "a"})
    assert LongformerConfig(num_labels=np.int64(3)).num_labels == 3  # NumPy's integers are integers
    c.num_labels = np.int64(5)
    assert c.num_labels == 5 and type(next(iter(c.id2label))) is int
    with pytest.raises(ValueError, match="num_labels must be an integer"):
        c.num_labels = 2.5  # was truncated to 2


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**20, 2**20) | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6)  # integers as a file holds them (a layer count in the quadrillions is a MemoryError, not a typo)


FIELDS = st.sampled_from(sorted(LongformerConfig().to_dict()) + ["num_labels", "not_a_field"])
EDITS = st.lists(st.tuples(FIELDS, st.none() | JSON_VALUES | st.dictionaries(st.text(max_size=3), JSON_VALUES,
                                                                              min_size=1, max_size=3)),
                 min_size=1, max_size=3)  # (field, new value), or (field, None) to remove it


@settings(max_examples=1000, deadline=None)
@given(edits=EDITS)
def test_any_value_in_any_field_is_a_clear_error_or_a_config_that_round_trips(edits):
    """What a hand-edited or damaged config.json can hold: a ValueError, or a valid config whose JSON reads back the
    same. A longer run of this found label2id {"a": -Infinity} escaping as an OverflowError (now a case above)."""
    data = LongformerConfig(num_hidden_layers=2, attention_window=[4, 8]).to_dict()
    for key, value in edits:
        data[key] = value
    try:
        config = LongformerConfig.from_dict(data)
    except ValueError:
        return
    config.validate()
    text = config.to_json_string()
    assert LongformerConfig.from_dict(json.loads(text)).to_json_string() == text
