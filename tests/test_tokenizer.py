"""LongformerTokenizer against Hugging Face's LongformerTokenizerFast on the same files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from longformer import LongformerTokenizer

transformers = pytest.importorskip("transformers")

TEXTS = ["Hello world!", "The quick brown fox jumps over the lazy dog.", "  leading spaces and\ttabs\nnewlines",
         "A, <mask> sentence.", "Longformer reads long documents, doesn't it?", "café naïve 東京 #$%&*", "x" * 50,
         "", "<mask>"]
PAIRS = [("Who jumps?", "The quick brown fox jumps over the lazy dog."), ("Numbers?", "12345 and 678")]


def hf_tokenizer(folder, **kwargs):
    """Hugging Face's tokenizer as Longformer checkpoints configure it: `<mask>` strips the space before it
    (LongformerTokenizer's own default in 4.x, and the Hub checkpoints' tokenizer files)."""
    from tokenizers import AddedToken

    return transformers.LongformerTokenizerFast.from_pretrained(
        str(folder), mask_token=AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True),
        **kwargs)


@pytest.fixture(scope="module")
def both(tokenizer_dir):
    return LongformerTokenizer.from_pretrained(tokenizer_dir), hf_tokenizer(tokenizer_dir)


def test_special_token_ids(both):
    ours, hf = both
    assert (ours.bos_token_id, ours.pad_token_id, ours.eos_token_id, ours.unk_token_id) == (0, 1, 2, 3)
    assert ours.mask_token_id == hf.mask_token_id == 4
    assert ours.cls_token_id == hf.cls_token_id and ours.sep_token_id == hf.sep_token_id


@pytest.mark.parametrize("text", TEXTS)
def test_single_texts_match(both, text):
    ours, hf = both
    a, b = ours(text, return_offsets_mapping=True), hf(text, return_offsets_mapping=True)
    assert a["input_ids"] == b["input_ids"]
    assert a["attention_mask"] == b["attention_mask"]
    assert [tuple(o) for o in a["offset_mapping"]] == [tuple(o) for o in b["offset_mapping"]]
    assert ours.decode(a["input_ids"]) == hf.decode(b["input_ids"])
    assert ours.decode(a["input_ids"], skip_special_tokens=True) == hf.decode(b["input_ids"],
                                                                                skip_special_tokens=True)


def test_mask_swallows_the_space_before_it(both):
    ours, _ = both
    ids = ours("A, <mask> sentence.")["input_ids"]
    assert ours.mask_token_id in ids
    assert ids == ours("A,<mask> sentence.")["input_ids"]


@pytest.mark.parametrize("pair", PAIRS)
def test_pairs_match(both, pair):
    ours, hf = both
    a, b = ours(*pair), hf(*pair)
    assert a["input_ids"] == b["input_ids"]
    ids = a["input_ids"]
    assert ids[0] == 0 and ids.count(2) == 3 and ids[ids.index(2) + 1] == 2 and ids[-1] == 2


@pytest.mark.parametrize("kwargs", [
    dict(padding=True), dict(padding="max_length", max_length=40), dict(truncation=True, max_length=8),
    dict(padding=True, truncation=True, max_length=10), dict(padding=True, pad_to_multiple_of=8),
    dict(truncation="only_second", max_length=12, padding=True),
])
def test_batches_with_padding_and_truncation_match(both, kwargs):
    ours, hf = both
    questions = [q for q, _ in PAIRS]
    contexts = [c for _, c in PAIRS]
    if kwargs.get("truncation") == "only_second":
        a, b = ours(questions, contexts, **kwargs), hf(questions, contexts, **kwargs)
    else:
        a, b = ours(TEXTS[:5], **kwargs), hf(TEXTS[:5], **kwargs)
    assert a["input_ids"] == b["input_ids"]
    assert a["attention_mask"] == b["attention_mask"]


@pytest.mark.parametrize("return_tensors", ["np", "pt"])
def test_return_tensors(both, return_tensors):
    ours, hf = both
    if return_tensors == "pt":
        pytest.importorskip("torch")
    a = ours(TEXTS[:3], padding=True, return_tensors=return_tensors)
    b = hf(TEXTS[:3], padding=True, return_tensors="np")
    np.testing.assert_array_equal(np.asarray(a["input_ids"]), b["input_ids"])
    assert a.input_ids.shape == b["input_ids"].shape
    if return_tensors == "pt":
        import torch

        assert isinstance(a["input_ids"], torch.Tensor)


def test_unpadded_batch_refuses_tensors(both):
    ours, _ = both
    with pytest.raises(ValueError, match="padding=True"):
        ours(["a", "a longer text"], return_tensors="np")


def test_batch_decode_and_vocab_files(both, tmp_path):
    ours, hf = both
    ids = ours(TEXTS[:4], padding=True)["input_ids"]
    assert ours.batch_decode(ids, skip_special_tokens=True) == hf.batch_decode(ids, skip_special_tokens=True)
    ours.save_pretrained(tmp_path)
    again = LongformerTokenizer.from_pretrained(tmp_path)  # from tokenizer.json
    assert again(TEXTS[1])["input_ids"] == ours(TEXTS[1])["input_ids"]
    hf_again = transformers.LongformerTokenizerFast.from_pretrained(str(tmp_path))  # our files carry the lstrip
    assert hf_again(TEXTS[3])["input_ids"] == ours(TEXTS[3])["input_ids"]


def test_decode_of_one_row_or_a_batch_matches(both):
    """A batch (list of rows, 2-D array, a batch of one) decodes to a list of texts, as in Hugging Face 5.x; before,
    its rows were run together into one text."""
    ours, hf = both
    ids = ours(TEXTS[:3], padding=True)["input_ids"]
    ragged = ours(TEXTS[:3])["input_ids"]
    for given in (ids, ragged, np.array(ids), np.array(ids[:1]), tuple(map(tuple, ids)), [np.array(r) for r in ids],
                  ids[0], np.array(ids[0]), ids[0][1], np.int64(ids[0][1]), []):
        assert ours.decode(given) == hf.decode(given), given
        assert ours.decode(given, skip_special_tokens=True) == hf.decode(given, skip_special_tokens=True), given
    assert isinstance(ours.decode(np.array(ids[:1])), list) and isinstance(ours.decode(ids[0]), str)


@pytest.fixture(scope="module")
def both_with_prefix_space(tokenizer_dir):
    return (LongformerTokenizer.from_pretrained(tokenizer_dir, add_prefix_space=True),
            hf_tokenizer(tokenizer_dir, add_prefix_space=True))


WORDS = [["Longformer", "reads", "long", "documents", "."], ["The", "quick", "brown", "fox"], ["café", "東京", "x"]]


@pytest.mark.parametrize("kwargs", [dict(), dict(padding=True), dict(truncation=True, max_length=6, padding=True)])
def test_words_and_their_tokens_match(both_with_prefix_space, kwargs):
    """Token classification's input: words one by one (is_split_into_words), and word_ids to align word labels
    with tokens; also pairs of word lists, sequence_ids and tokens."""
    ours, hf = both_with_prefix_space
    for args in ((WORDS,), (WORDS, WORDS[::-1])):
        a, b = ours(*args, is_split_into_words=True, **kwargs), hf(*args, is_split_into_words=True, **kwargs)
        assert a["input_ids"] == b["input_ids"] and a["attention_mask"] == b["attention_mask"]
        for i in range(len(WORDS)):
            assert (a.word_ids(i), a.sequence_ids(i), a.tokens(i)) == (b.word_ids(i), b.sequence_ids(i), b.tokens(i))
    a, b = ours(WORDS[0], is_split_into_words=True), hf(WORDS[0], is_split_into_words=True)  # one, not a batch
    assert a["input_ids"] == b["input_ids"] and a.word_ids() == b.word_ids()


def test_the_prefix_space_setting_matches_and_is_saved(both_with_prefix_space, both, tmp_path):
    ours, hf = both_with_prefix_space
    assert ours.add_prefix_space and not both[0].add_prefix_space
    for text in TEXTS:
        assert ours(text)["input_ids"] == hf(text)["input_ids"]
    assert ours(TEXTS[1])["input_ids"] != both[0](TEXTS[1])["input_ids"]
    ours.save_pretrained(tmp_path)
    again = LongformerTokenizer.from_pretrained(tmp_path)
    assert again.add_prefix_space and again(TEXTS[1])["input_ids"] == ours(TEXTS[1])["input_ids"]
    both[0].save_pretrained(tmp_path / "without")  # a tokenizer.json without it, turned on at loading
    turned_on = LongformerTokenizer.from_pretrained(tmp_path / "without", add_prefix_space=True)
    assert turned_on.add_prefix_space and turned_on(TEXTS[1])["input_ids"] == ours(TEXTS[1])["input_ids"]


def plain(x):
    """Nested lists of ints, from lists, tuples or arrays."""
    return x.tolist() if hasattr(x, "tolist") else [plain(v) for v in x] if isinstance(x, (list, tuple)) else x


LONG = ["The quick brown fox jumps over the lazy dog. " * 3, "12345 and 678", "Hello world! " * 4]


@pytest.mark.parametrize("kwargs", [
    dict(truncation=True, max_length=10, stride=3),
    dict(truncation=True, max_length=10, stride=0, padding=True, return_tensors="np"),
    dict(truncation="only_second", max_length=16, stride=4, padding="max_length", pair=True),
    dict(truncation=True, max_length=16, stride=2, pair=True),
    dict(truncation="only_first", max_length=16, stride=2, pair="reversed"),
    dict(truncation=False, max_length=10),  # no truncation: one row per text, still with its mapping
])
def test_long_documents_in_overflowing_rows_match(both, kwargs):
    """Question answering over a document longer than the model: the cut-off tokens come back as further rows
    that repeat `stride` tokens, with overflow_to_sample_mapping, offsets and sequence ids as Hugging Face's."""
    ours, hf = both
    kwargs = dict(kwargs, return_overflowing_tokens=True, return_offsets_mapping=True)
    pair = kwargs.pop("pair", None)
    args = ((LONG,) if pair is None else ([q for q, _ in PAIRS] + ["Hi?"], LONG) if pair is True
            else (LONG, [q for q, _ in PAIRS] + ["Hi?"]))
    a, b = ours(*args, **kwargs), hf(*args, **kwargs)
    assert set(a) == set(b)
    for key in b:
        assert plain(a[key]) == plain(b[key]), key
    assert (len(a["input_ids"]) > len(LONG)) == bool(kwargs["truncation"])
    for i in range(len(b["input_ids"])):
        assert (a.sequence_ids(i), a.tokens(i)) == (b.sequence_ids(i), b.tokens(i))
    one = [LONG[0]] + ([] if pair is None else ["Hi?"])  # one text (or pair): still a batch, of its rows
    one, one_hf = ours(*one[::-1 if pair is True else 1], **kwargs), hf(*one[::-1 if pair is True else 1], **kwargs)
    assert plain(one["input_ids"]) == plain(one_hf["input_ids"])
    assert plain(one["overflow_to_sample_mapping"]) == [0] * len(one["input_ids"])


def test_max_length_alone_truncates_as_in_hugging_face(both):
    ours, hf = both
    with pytest.warns(UserWarning, match="truncation=True"):
        a = ours(LONG, max_length=10)
    assert a["input_ids"] == hf(LONG, max_length=10)["input_ids"] and max(map(len, a["input_ids"])) == 10
    assert len(ours(LONG[0], max_length=20, padding="max_length")["input_ids"]) > 20  # padding: no truncation


def test_an_empty_pair_is_no_pair_as_in_hugging_face(both):
    ours, hf = both
    assert ours("Who?", "")["input_ids"] == hf("Who?", "")["input_ids"] == ours("Who?")["input_ids"]
    assert ours(["Who?"], [""])["input_ids"] == hf(["Who?"], [""])["input_ids"]  # in a batch it stays a pair
    assert ours(["Who?"], [""])["input_ids"][0].count(ours.eos_token_id) == 3


def test_max_length_and_pad_to_multiple_of_must_agree(both):
    ours, _ = both
    with pytest.raises(ValueError, match="Make max_length a multiple of pad_to_multiple_of"):
        ours(LONG, truncation=True, max_length=10, padding=True, pad_to_multiple_of=4)
    assert len(ours(LONG[0], truncation=True, max_length=12, padding=True, pad_to_multiple_of=4)["input_ids"]) == 12


def test_a_stride_with_no_room_left_is_refused(both):
    ours, _ = both
    with pytest.raises(ValueError, match="stride=12 is not smaller than what max_length=16 keeps .*max_len=8"):
        ours("Who?", LONG[0], truncation="only_second", max_length=16, stride=12, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="stride set to 9, which is greater than or equal to its effective max length"):
        ours(LONG[0], truncation=True, max_length=10, stride=9, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="stride must be an int >= 0"):
        ours(LONG[0], truncation=True, max_length=10, stride=-1, return_overflowing_tokens=True)
    assert ours(LONG[0], truncation=True, max_length=10)["input_ids"][-1] == ours.eos_token_id  # still usable


# Where we refuse what Hugging Face lets through: padding="max_length" with no length (it pads nothing, with a
# warning) and tensors of rows of different lengths (it returns a list of arrays).
OUR_REFUSALS = ("padding='max_length' needs max_length", "The texts have different lengths")


def test_random_calls_match_hugging_face(both):
    """1000 random calls (texts, pairs, batches; padding, truncation, max_length, stride, overflowing rows,
    pad_to_multiple_of, every return_* flag, add_special_tokens; padding and truncation sides): every field equal
    to Hugging Face's, or both refuse (ours with a ValueError), or ours refuses for one of OUR_REFUSALS."""
    import random

    ours, hf = both
    words = "the quick brown fox <mask> jumps 12345 café 東京 Hello world ! ? , doesn't  \t\n x".split(" ")
    rng = random.Random(0)

    def text():
        return " ".join(rng.choice(words) for _ in range(rng.randint(0, 30)))

    sides = [("right", "right")] * 4 + [("left", "right"), ("right", "left"), ("left", "left")]
    try:
        _random_calls(ours, hf, rng, text, sides)
    finally:
        ours.padding_side = ours.truncation_side = hf.padding_side = hf.truncation_side = "right"


def _random_calls(ours, hf, rng, text, sides):
    for _ in range(1000):
        ours.padding_side, ours.truncation_side = hf.padding_side, hf.truncation_side = rng.choice(sides)
        n = rng.randint(1, 4) if rng.random() < 0.6 else None
        first = text() if n is None else [text() for _ in range(n)]
        second = None if rng.random() < 0.5 else text() if n is None else [text() for _ in range(n)]
        kwargs = {k: v for k, v in dict(
            padding=rng.choice([True, False, "longest", "max_length", "do_not_pad"]),
            truncation=rng.choice([True, False, "longest_first", "only_first", "only_second", "do_not_truncate"]),
            max_length=rng.randint(1, 40), stride=rng.randint(0, 6), return_overflowing_tokens=True,
            pad_to_multiple_of=rng.choice([2, 4, 8]), return_offsets_mapping=True, return_special_tokens_mask=True,
            return_token_type_ids=True, add_special_tokens=False, return_tensors="np", return_attention_mask=False,
        ).items() if rng.random() < 0.5}
        results = []
        for tokenizer in (ours, hf):
            try:
                with warnings.catch_warnings():  # max_length without truncation (both warn)
                    warnings.simplefilter("ignore")
                    results.append({k: plain(v) for k, v in tokenizer(first, second, **kwargs).items()})
            except BaseException as e:  # tokenizers' errors reach Hugging Face's caller as they are: an Exception,
                if not isinstance(e, Exception) and type(e).__name__ != "PanicException":  # or a Rust panic
                    raise
                results.append(e)
        a, b = results
        assert isinstance(a, (dict, ValueError)), (first, second, kwargs, a)
        if isinstance(a, ValueError) and isinstance(b, dict):
            assert any(m in str(a) for m in OUR_REFUSALS), (first, second, kwargs, a)
        else:
            assert not isinstance(b, dict) if isinstance(a, ValueError) else a == b, (first, second, kwargs, a, b)


def test_word_ids_of_running_text_match(both):
    ours, hf = both
    a, b = ours(TEXTS[:5], padding=True), hf(TEXTS[:5], padding=True)
    assert all(a.word_ids(i) == b.word_ids(i) for i in range(5))


def test_words_need_a_prefix_space(both):
    with pytest.raises(ValueError, match=r"from_pretrained\(\.\.\., add_prefix_space=True\)"):
        both[0](WORDS, is_split_into_words=True)


def test_global_attention_helpers(both):
    ours, _ = both
    enc = ours(["Who jumps?", "Why?"], ["The fox jumps.", "Because."], padding=True, return_tensors="np")
    qa = ours.global_attention_mask_for_question_answering(enc["input_ids"])
    first_sep = (enc["input_ids"] == ours.sep_token_id).argmax(1)
    for row, sep in zip(qa, first_sep, strict=True):
        assert row[:sep].all() and not row[sep:].any()
    cls = ours.global_attention_mask_for_classification(enc["input_ids"])
    assert cls[:, 0].all() and cls.sum() == len(cls)
    with pytest.raises(ValueError, match=r"exactly 3 separator tokens .* found \[0\]"):
        ours.global_attention_mask_for_question_answering(np.array([[0, 5, 6]]))
    # the rule the models apply by themselves (inputs.automatic_global_attention): exactly three </s>
    with pytest.raises(ValueError, match=r"found \[1\]"):
        ours.global_attention_mask_for_question_answering(np.array([[0, 5, ours.sep_token_id]]))
    ours.padding_side = "left"  # no global attention on padding, wherever it is (the models refuse it)
    try:
        left = ours(["Who jumps?", "Why?"], ["The fox jumps.", "Because."], padding=True, return_tensors="np")
    finally:
        ours.padding_side = "right"
    qa_left = ours.global_attention_mask_for_question_answering(left["input_ids"])
    assert not qa_left[left["attention_mask"] == 0].any()
    assert [row[row_mask == 1].tolist() for row, row_mask in zip(qa_left, left["attention_mask"], strict=True)] == [
        row[row_mask == 1].tolist() for row, row_mask in zip(qa, enc["attention_mask"], strict=True)]
    everything = np.ones_like(left["input_ids"])
    given = ours.global_attention_mask_for_question_answering(left["input_ids"], attention_mask=everything)
    assert given[:, :1].all()  # an attention_mask given is the one used


def test_missing_files_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        LongformerTokenizer.from_pretrained(tmp_path)


def test_tensors_of_a_missing_framework_name_the_extra(tokenizer_dir):
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "from longformer import LongformerTokenizer\n"
            f"tok = LongformerTokenizer.from_pretrained({str(tokenizer_dir)!r})\n"
            "tok('hi', return_tensors='pt')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "pip install 'longformer[torch]'" in result.stderr


# ---------------------------------------------------------------------------------------------- pad and collators
FEATURES = ["Longformer reads long documents.", "A short one.", "x"]


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_matches_hugging_face(both, side, tmp_path):
    """`pad`, what Hugging Face's data collators call: lists of examples or dicts of lists, one example, every
    padding option, on either side (`padding_side`, which the tokenizer's own padding follows too and
    save_pretrained keeps)."""
    ours, hf = both
    ours.padding_side = hf.padding_side = side
    try:
        features = [dict(ours(t, return_special_tokens_mask=True, return_token_type_ids=True)) for t in FEATURES]
        for kwargs in (dict(), dict(padding="max_length", max_length=20), dict(pad_to_multiple_of=8),
                       dict(padding=False), dict(return_tensors="np")):
            a, b = ours.pad(features, **kwargs), hf.pad(features, **kwargs)
            assert {k: plain(v) for k, v in a.items()} == {k: plain(v) for k, v in b.items()}, kwargs
        ids_only = {"input_ids": [f["input_ids"] for f in features]}
        assert plain(dict(ours.pad(ids_only))) == plain(dict(hf.pad(ids_only)))   # attention_mask added
        one = {"input_ids": features[0]["input_ids"]}
        assert (plain(dict(ours.pad(one, padding="max_length", max_length=12)))
                == plain(dict(hf.pad(one, padding="max_length", max_length=12))))
        a, b = ours(FEATURES, padding=True), hf(FEATURES, padding=True)
        assert (a["input_ids"], a["attention_mask"]) == (b["input_ids"], b["attention_mask"])
        ours.save_pretrained(tmp_path)
        assert LongformerTokenizer.from_pretrained(tmp_path).padding_side == side
    finally:
        ours.padding_side = hf.padding_side = "right"


def test_pad_pads_the_global_attention_mask_and_keeps_labels(both):
    ours, _ = both
    features = [dict(ours(t), global_attention_mask=[1] + [0] * (len(ours(t)["input_ids"]) - 1), labels=i)
                for i, t in enumerate(FEATURES)]
    batch = ours.pad(features, return_tensors="np")
    assert batch["global_attention_mask"].shape == batch["input_ids"].shape
    assert batch["global_attention_mask"].sum() == 3 and batch["labels"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="pad needs input_ids"):
        ours.pad([{"attention_mask": [1]}])
    with pytest.raises(ValueError, match="padding_side must be 'right' or 'left'"):
        ours.padding_side = "middle"


def test_special_token_helpers_match(both):
    ours, hf = both
    assert ours.special_tokens_map == hf.special_tokens_map
    assert (ours.all_special_tokens, ours.all_special_ids) == (hf.all_special_tokens, hf.all_special_ids)
    assert [ours.num_special_tokens_to_add(p) for p in (False, True)] == [hf.num_special_tokens_to_add(p)
                                                                          for p in (False, True)]
    ids = ours("A <mask> text", "and a pair")["input_ids"]
    assert (ours.get_special_tokens_mask(ids, already_has_special_tokens=True)
            == hf.get_special_tokens_mask(ids, already_has_special_tokens=True))
    first, second = ours("A text", add_special_tokens=False)["input_ids"], ours("a pair")["input_ids"][1:-1]
    built = ours("A text", "a pair")["input_ids"]   # the mask of the sequence the tokenizer builds from them
    assert ours.get_special_tokens_mask(first, second) == [int(i in ours.all_special_ids) for i in built]
    tokens = ours.tokenize(TEXTS[4])
    assert ours.convert_tokens_to_string(tokens) == hf.convert_tokens_to_string(tokens) == TEXTS[4]


def test_hugging_faces_data_collators_take_our_tokenizer(both):
    """Padding, masked-LM masking (special tokens never masked) and token-classification label padding: the same
    batches as with Hugging Face's own tokenizer, from the same random state."""
    torch = pytest.importorskip("torch")
    ours, hf = both
    for collator, kwargs in ((transformers.DataCollatorWithPadding, {}),
                             (transformers.DataCollatorForLanguageModeling, dict(mlm_probability=0.5)),
                             (transformers.DataCollatorForTokenClassification, {})):
        features = [dict(ours(t)) for t in FEATURES]
        if collator is transformers.DataCollatorForTokenClassification:
            features = [dict(f, labels=list(range(len(f["input_ids"])))) for f in features]
        torch.manual_seed(0)
        a = collator(ours, **kwargs)(features)
        torch.manual_seed(0)
        b = collator(hf, **kwargs)(features)
        assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in b), collator.__name__
