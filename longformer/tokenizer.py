"""`LongformerTokenizer`: RoBERTa's byte-level BPE on the `tokenizers` library, with Hugging Face's call signature.

Loads `tokenizer.json`, or `vocab.json` + `merges.txt` (the files of every Longformer checkpoint). Single texts
become `<s> A </s>`, pairs `<s> A </s></s> B </s>`; `<mask>` swallows the space before it. Ids equal Hugging Face's
`LongformerTokenizerFast` on the same files.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

from ._warn import warn
from .inputs import automatic_global_attention

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"

SPECIAL_TOKENS = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
                  "mask_token": "<mask>"}
_HUGE = int(1e30)  # Hugging Face's "no limit" model_max_length
# What `pad` fills each input with (None: the <pad> id); global_attention_mask is Longformer's own.
_PAD_VALUES = {"input_ids": None, "attention_mask": 0, "token_type_ids": 0, "special_tokens_mask": 1,
               "global_attention_mask": 0}


class BatchEncoding(dict):
    """The tokenizer's result: a dict (`enc["input_ids"]`) that also reads as attributes (`enc.input_ids`), and
    for each row (`batch_index`, 0 for a single text) its tokens, the word each token came from (`word_ids`: to
    align word labels, e.g. named entities, with tokens) and the text each came from (`sequence_ids`: 0 the first
    text, 1 the pair; None for special tokens and padding), as Hugging Face's."""

    def __init__(self, data: dict[str, Any], encodings: list | None = None):
        super().__init__(data)
        self.encodings = encodings  # the `tokenizers.Encoding` of each row

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e

    def tokens(self, batch_index: int = 0) -> list[str]:
        return self._row(batch_index).tokens

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._row(batch_index).word_ids

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._row(batch_index).sequence_ids

    def _row(self, batch_index: int):
        if not self.encodings:
            raise ValueError("This BatchEncoding was not made by a tokenizer call: it has no tokens to describe.")
        return self.encodings[batch_index]


def _convert(array: np.ndarray, return_tensors: str | None):
    if return_tensors in (None, "np"):
        return array
    from ._frameworks import require

    if return_tensors == "pt":
        return require("torch").from_numpy(array)
    if return_tensors == "tf":
        return require("tensorflow").convert_to_tensor(array)
    if return_tensors == "jax":
        return require("jax.numpy").asarray(array)
    raise ValueError(f"return_tensors must be one of None, 'np', 'pt', 'tf', 'jax'; got {return_tensors!r}.")


class LongformerTokenizer:
    """Byte-level BPE tokenizer of RoBERTa / Longformer.

    Args:
        tokenizer: a `tokenizers.Tokenizer` holding the whole pipeline.
        model_max_length: the longest input the model accepts (4096 for the AllenAI checkpoints); the default
            for `truncation=True` without `max_length`.
    """

    model_input_names = ("input_ids", "attention_mask")

    def __init__(self, tokenizer: Tokenizer, model_max_length: int | None = None):
        self.backend = tokenizer
        self.model_max_length = int(model_max_length) if model_max_length else _HUGE
        for attr, token in SPECIAL_TOKENS.items():
            token_id = tokenizer.token_to_id(token)
            if token_id is None:
                raise ValueError(f"The vocabulary has no {token} token; a Longformer tokenizer needs "
                                 f"{list(SPECIAL_TOKENS.values())}.")
            setattr(self, attr, token)
            setattr(self, attr + "_id", token_id)
        self.cls_token, self.cls_token_id = self.bos_token, self.bos_token_id
        self.sep_token, self.sep_token_id = self.eos_token, self.eos_token_id
        self.padding_side = self.truncation_side = "right"

    @property
    def padding_side(self) -> str:
        """Where padding goes: "right" (the default) or "left", for `__call__` and `pad`."""
        return self._padding_side

    @padding_side.setter
    def padding_side(self, side: str) -> None:
        self._padding_side = _side("padding_side", side)

    @property
    def truncation_side(self) -> str:
        """Which end truncation cuts: "right" (the default) or "left" (keeps a text's last tokens)."""
        return self._truncation_side

    @truncation_side.setter
    def truncation_side(self, side: str) -> None:
        self._truncation_side = _side("truncation_side", side)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_vocab_and_merges(cls, vocab_file: str, merges_file: str, *, add_prefix_space: bool = False,
                              trim_offsets: bool = True, model_max_length: int | None = None
                              ) -> LongformerTokenizer:
        """Build RoBERTa's pipeline: byte-level pre-tokenizer and decoder, BPE, `<s> A </s></s> B </s>`."""
        with _reading(vocab_file, merges_file):
            tok = Tokenizer(models.BPE.from_file(vocab_file, merges_file))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
        tok.decoder = decoders.ByteLevel()
        specials = [AddedToken(t, special=True) for t in ("<s>", "<pad>", "</s>", "<unk>")]
        specials.append(AddedToken("<mask>", lstrip=True, normalized=False, special=True))
        tok.add_special_tokens(specials)
        sep, cls_ = tok.token_to_id("</s>"), tok.token_to_id("<s>")
        if sep is None or cls_ is None:
            raise ValueError(f"{vocab_file} lacks <s> or </s>.")
        tok.post_processor = processors.RobertaProcessing(("</s>", sep), ("<s>", cls_), trim_offsets=trim_offsets,
                                                          add_prefix_space=add_prefix_space)
        return cls(tok, model_max_length=model_max_length)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, add_prefix_space: bool | None = None,
                        **hub_kwargs: Any) -> LongformerTokenizer:
        """Load from a folder or Hub id: `tokenizer.json` if present, else `vocab.json` + `merges.txt`.

        `add_prefix_space=True` tokenizes the first word as if a space came before it, as every later word is
        (default: the files' setting, False for the AllenAI checkpoints); words given one by one
        (`is_split_into_words=True`) need it, as in Hugging Face."""
        from .hub import resolve_file

        path = os.fspath(name_or_path)
        settings: dict[str, Any] = {}
        try:
            settings_file = resolve_file(path, TOKENIZER_CONFIG_FILE, **hub_kwargs)
        except FileNotFoundError:
            settings_file = None
        if settings_file is not None:
            with _reading(settings_file), open(settings_file, encoding="utf-8") as f:
                settings = json.load(f)
                if not isinstance(settings, dict):
                    raise ValueError(f"a JSON object of settings was expected, not a {type(settings).__name__}")
                for side in ("padding_side", "truncation_side"):
                    _side(side, settings.get(side, "right"))
        max_len = settings.get("model_max_length")
        max_len = max_len if isinstance(max_len, int) and max_len < _HUGE else None
        if add_prefix_space is None and "add_prefix_space" in settings:
            add_prefix_space = bool(settings["add_prefix_space"])
        try:
            tokenizer_file = resolve_file(path, TOKENIZER_FILE, **hub_kwargs)
        except FileNotFoundError:
            try:
                vocab = resolve_file(path, VOCAB_FILE, **hub_kwargs)
                merges = resolve_file(path, MERGES_FILE, **hub_kwargs)
            except FileNotFoundError as e:
                raise FileNotFoundError(f"{path} has no tokenizer: expected {TOKENIZER_FILE}, or {VOCAB_FILE} and "
                                        f"{MERGES_FILE} ({e})") from e
            tokenizer = cls.from_vocab_and_merges(vocab, merges, add_prefix_space=bool(add_prefix_space),
                                                  trim_offsets=bool(settings.get("trim_offsets", True)),
                                                  model_max_length=max_len)
        else:
            with _reading(tokenizer_file):
                tok = Tokenizer.from_file(tokenizer_file)
                tokenizer = cls(tok if add_prefix_space is None else _with_prefix_space(tok, add_prefix_space),
                                model_max_length=max_len)
        tokenizer.padding_side = settings.get("padding_side", "right")
        tokenizer.truncation_side = settings.get("truncation_side", "right")
        return tokenizer

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write `tokenizer.json`, `vocab.json`, `merges.txt` and `tokenizer_config.json`, each whole or not at all
        (written beside the folder's files, then renamed over them)."""
        save_directory = os.fspath(save_directory)
        os.makedirs(save_directory, exist_ok=True)
        settings = {"tokenizer_class": "LongformerTokenizer", **SPECIAL_TOKENS,
                    "add_prefix_space": self.add_prefix_space, "padding_side": self.padding_side,
                    "truncation_side": self.truncation_side}
        if self.model_max_length < _HUGE:
            settings["model_max_length"] = self.model_max_length
        with tempfile.TemporaryDirectory(prefix=".tokenizer-", dir=save_directory) as tmp:
            self.backend.save(os.path.join(tmp, TOKENIZER_FILE))
            self.backend.model.save(tmp)  # vocab.json, merges.txt
            with open(os.path.join(tmp, TOKENIZER_CONFIG_FILE), "w", encoding="utf-8") as f:
                json.dump(settings, f, indent=2)
            for name in (TOKENIZER_FILE, VOCAB_FILE, MERGES_FILE, TOKENIZER_CONFIG_FILE):
                os.replace(os.path.join(tmp, name), os.path.join(save_directory, name))

    @property
    def add_prefix_space(self) -> bool:
        """Whether the first word is tokenized as if a space came before it (the byte-level pre-tokenizer's)."""
        return bool(getattr(self.backend.pre_tokenizer, "add_prefix_space", False))

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    @property
    def special_tokens_map(self) -> dict[str, str]:
        return {"bos_token": self.bos_token, "eos_token": self.eos_token, "unk_token": self.unk_token,
                "sep_token": self.sep_token, "pad_token": self.pad_token, "cls_token": self.cls_token,
                "mask_token": self.mask_token}

    @property
    def all_special_tokens(self) -> list[str]:
        return list(dict.fromkeys(self.special_tokens_map.values()))

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """2 for `<s> A </s>`, 4 for `<s> A </s></s> B </s>`."""
        return 4 if pair else 2

    def get_special_tokens_mask(self, token_ids: Sequence[int], token_ids_1: Sequence[int] | None = None,
                                already_has_special_tokens: bool = False) -> list[int]:
        """1 for each special token, 0 for the others: of `token_ids` as they are (`already_has_special_tokens`,
        as Hugging Face's masked-LM collator asks), or of the sequence the tokenizer would build from them."""
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError("token_ids_1 must be None when already_has_special_tokens=True.")
            special = set(self.all_special_ids)
            return [int(int(i) in special) for i in token_ids]
        if token_ids_1 is None:
            return [1] + [0] * len(token_ids) + [1]
        return [1] + [0] * len(token_ids) + [1, 1] + [0] * len(token_ids_1) + [1]

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        return self.backend.decoder.decode(list(tokens))

    def tokenize(self, text: str) -> list[str]:
        return self.backend.encode(text, add_special_tokens=False).tokens

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        if isinstance(tokens, str):
            token_id = self.backend.token_to_id(tokens)
            return self.unk_token_id if token_id is None else token_id
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        if isinstance(ids, (int, np.integer)):
            return self.backend.id_to_token(int(ids))
        return [self.backend.id_to_token(int(i)) for i in ids]

    # ------------------------------------------------------------------ encoding
    def __call__(self, text: str | Sequence[str], text_pair: str | Sequence[str] | None = None, *,
                 add_special_tokens: bool = True, padding: bool | str = False, truncation: bool | str | None = None,
                 max_length: int | None = None, pad_to_multiple_of: int | None = None,
                 return_tensors: str | None = None, return_attention_mask: bool = True,
                 return_token_type_ids: bool = False, return_special_tokens_mask: bool = False,
                 return_offsets_mapping: bool = False, is_split_into_words: bool = False, stride: int = 0,
                 return_overflowing_tokens: bool = False) -> BatchEncoding:
        """Tokenize one text (or pair) or a batch; arguments as Hugging Face's tokenizers.

        Args:
            is_split_into_words: each text is a list of words (a batch: a list of such lists), tokenized word by
                word; `enc.word_ids(i)` then maps row i's tokens to their words. Needs `add_prefix_space=True`.
            padding: False / 'do_not_pad', True / 'longest' (to the longest in the batch), 'max_length'.
            truncation: False / 'do_not_truncate', True / 'longest_first', 'only_first', 'only_second'.
            max_length: limit for truncation and 'max_length' padding (default: `model_max_length`).
            pad_to_multiple_of: round padded lengths up (use the attention window for compile-friendly shapes).
            return_tensors: None (lists), 'np', 'pt', 'tf' or 'jax'.
            return_overflowing_tokens: keep what truncation cuts off as further rows, each as long as the first
                (a document longer than the model, in windows); `overflow_to_sample_mapping` names each row's
                input, and the result is a batch even for one text.
            stride: tokens each overflowing row repeats from the end of the row before it (so that an answer cut
                at a row's edge is whole in one of them); smaller than the room left for the truncated text.
        """
        if is_split_into_words and not self.add_prefix_space:
            raise ValueError("is_split_into_words=True needs a tokenizer that adds a prefix space, so that each word "
                             "is tokenized as in running text: load it with "
                             "LongformerTokenizer.from_pretrained(..., add_prefix_space=True).")

        def is_one(t) -> bool:  # one text: a string, or with is_split_into_words a list of words
            if is_split_into_words:
                return isinstance(t, (list, tuple)) and all(isinstance(w, str) for w in t)
            return isinstance(t, str)

        batched = not is_one(text)
        if batched:
            texts = list(text)
            pairs = None if text_pair is None else list(text_pair)
            if pairs is not None and (is_one(text_pair) or len(pairs) != len(texts)):
                raise ValueError("With a batch of texts, text_pair must be a batch of the same length.")
        else:
            if text_pair is not None and not is_one(text_pair):
                raise ValueError("With a single text, text_pair must be a single text too.")
            texts, pairs = [text], [text_pair] if text_pair else None  # an empty pair: none, as in Hugging Face
        if not all(is_one(t) for t in texts + (pairs or [])):
            raise TypeError("text and text_pair must be strings or lists of strings" + (
                " (is_split_into_words: lists of words, or a batch of them)." if is_split_into_words else "."))

        if truncation is None and max_length is not None and padding is False:  # the defaults: as Hugging Face
            warn(f"max_length={max_length} without truncation: truncating ('longest_first'), as Hugging Face does. "
                 "Pass truncation=True to say so, or truncation=False to keep whole texts.")
            truncation = True
        padding, limit = self._padding(padding, max_length)
        truncation = {True: "longest_first", False: "do_not_truncate", None: "do_not_truncate"}.get(truncation,
                                                                                                      truncation)
        if truncation not in ("longest_first", "only_first", "only_second", "do_not_truncate"):
            raise ValueError(f"truncation must be True, False, 'longest_first', 'only_first' or 'only_second'; "
                             f"got {truncation!r}")
        if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 0:
            raise ValueError(f"stride must be an int >= 0; got {stride!r}")
        if (truncation != "do_not_truncate" and padding != "do_not_pad" and pad_to_multiple_of
                and limit < _HUGE and limit % pad_to_multiple_of):
            raise ValueError(f"Truncation to max_length={limit} and padding to a multiple of {pad_to_multiple_of} "
                             "disagree: rows would be padded past max_length. Make max_length a multiple of "
                             "pad_to_multiple_of.")

        backend = self.backend
        try:
            inputs = texts if pairs is None else list(zip(texts, pairs, strict=True))
            if truncation != "do_not_truncate" and limit < _HUGE:
                backend.enable_truncation(limit, stride=int(stride), strategy=truncation,
                                          direction=self.truncation_side)
            else:
                backend.no_truncation()
            if padding != "do_not_pad":
                backend.enable_padding(direction=self.padding_side, pad_id=self.pad_token_id, pad_token=self.pad_token,
                                       length=limit if padding == "max_length" else None,
                                       pad_to_multiple_of=pad_to_multiple_of)
            else:
                backend.no_padding()
            encodings = backend.encode_batch(inputs, add_special_tokens=add_special_tokens,
                                             is_pretokenized=is_split_into_words)
        except Exception as e:  # tokenizers raises a plain Exception for impossible truncations
            raise ValueError(f"Tokenization failed: {e}") from e
        except BaseException as e:  # and panics (a BaseException, with a line on stderr) for a stride as long as
            if type(e).__name__ != "PanicException":  # what truncation keeps of a pair's text: found only there,
                raise  # as checking it first would cost an extra pass over the texts
            raise ValueError(f"stride={stride} is not smaller than what max_length={limit} keeps of a text "
                             f"({str(e).splitlines()[0]}): use a smaller stride or a larger max_length.") from None
        finally:
            backend.no_truncation()
            backend.no_padding()

        mapping = None
        if return_overflowing_tokens:  # each input's rows: what was kept, then what truncation cut off
            rows = [(i, row) for i, e in enumerate(encodings) for row in [e, *e.overflowing]]
            mapping, encodings = [i for i, _ in rows], [row for _, row in rows]
            batched = True
        fields = {"input_ids": [e.ids for e in encodings]}
        if return_token_type_ids:
            fields["token_type_ids"] = [e.type_ids for e in encodings]  # zeros, but 1 for a pair's second text
            # when add_special_tokens=False (no RoBERTa post-processing), as in Hugging Face
        if return_attention_mask:
            fields["attention_mask"] = [e.attention_mask for e in encodings]
        if return_special_tokens_mask:
            fields["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if return_offsets_mapping:
            fields["offset_mapping"] = [[tuple(o) for o in e.offsets] for e in encodings]
        if mapping is not None:
            fields["overflow_to_sample_mapping"] = mapping

        if return_tensors is not None:
            lengths = {len(ids) for ids in fields["input_ids"]}
            if len(lengths) > 1:
                raise ValueError("The texts have different lengths; pass padding=True (and truncation=True) to "
                                 "return tensors.")
            out = {}
            for key, value in fields.items():
                array = np.asarray(value, dtype=np.int64)
                out[key] = _convert(array, return_tensors)
            return BatchEncoding(out, encodings)
        if not batched:
            fields = {k: v[0] for k, v in fields.items()}
        return BatchEncoding(fields, encodings)

    def pad(self, encoded_inputs: Mapping | Sequence[Mapping], padding: bool | str = True,
            max_length: int | None = None, pad_to_multiple_of: int | None = None,
            return_attention_mask: bool | None = None, return_tensors: str | None = None) -> BatchEncoding:
        """Pad tokenized examples to one length, as Hugging Face's `tokenizer.pad` (what its data collators call).

        `encoded_inputs`: a list of examples (dicts, e.g. a dataset's rows) or a dict of lists (or of one example's
        values). On `padding_side`, input_ids get `<pad>`, attention_mask and token_type_ids 0, special_tokens_mask 1
        and global_attention_mask (Longformer's own input) 0; attention_mask is added (ones) where missing unless
        return_attention_mask=False (one given is padded, where Hugging Face leaves it as it was); other keys
        (labels) are left as they are. Arrays and tensors come back as the same kind of tensor unless
        `return_tensors` says otherwise.
        """
        if isinstance(encoded_inputs, Sequence) and not isinstance(encoded_inputs, str):
            if not encoded_inputs or not all(isinstance(e, Mapping) for e in encoded_inputs):
                raise TypeError("pad takes a dict of lists or a non-empty list of dicts (one per example).")
            data = {k: [e[k] for e in encoded_inputs] for k in encoded_inputs[0]}
        elif isinstance(encoded_inputs, Mapping):
            data = dict(encoded_inputs)
        else:
            raise TypeError(f"pad takes a dict of lists or a list of dicts; got {type(encoded_inputs).__name__}.")
        if "input_ids" not in data:
            raise ValueError(f"pad needs input_ids among the inputs; got {sorted(data)}.")
        if return_tensors is None:  # as Hugging Face: tensors in, the same kind of tensors out
            first = data["input_ids"][0] if len(data["input_ids"]) else None
            module = type(first).__module__.split(".")[0] if first is not None else ""
            return_tensors = {"torch": "pt", "tensorflow": "tf", "numpy": "np", "jax": "jax",
                              "jaxlib": "jax"}.get(module)
        data = {k: _as_lists(v) for k, v in data.items()}
        single = not data["input_ids"] or not isinstance(data["input_ids"][0], list)
        if single:
            data = {k: [v] for k, v in data.items()}
        rows = data["input_ids"]
        if return_attention_mask is not False and "attention_mask" not in data:
            data["attention_mask"] = [[1] * len(r) for r in rows]

        padding, limit = self._padding(padding, max_length)
        target = {"longest": max(map(len, rows), default=0), "max_length": limit}.get(padding)
        if target is not None and pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
        if target is not None:
            for key, value in _PAD_VALUES.items():
                if key in data:
                    fill = self.pad_token_id if value is None else value
                    data[key] = [_pad_row(row, target, fill, self.padding_side) for row in data[key]]

        if return_tensors is not None:
            if len({len(r) for r in data["input_ids"]}) > 1:
                raise ValueError("The examples have different lengths; pass padding=True to return tensors.")
            return BatchEncoding({k: _convert(np.asarray(v[0] if single else v), return_tensors)
                                  for k, v in data.items()})
        return BatchEncoding({k: v[0] for k, v in data.items()} if single else data)

    def _padding(self, padding: bool | str | None, max_length: int | None) -> tuple[str, int]:
        """The padding strategy ('longest', 'max_length' or 'do_not_pad') and the length limit (`max_length`, else
        `model_max_length`), checked: one rule for `__call__` and `pad`."""
        padding = {True: "longest", False: "do_not_pad", None: "do_not_pad"}.get(padding, padding)
        if padding not in ("longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad'; got {padding!r}")
        limit = max_length if max_length is not None else self.model_max_length
        if padding == "max_length" and limit >= _HUGE:
            raise ValueError("padding='max_length' needs max_length (this tokenizer has no model_max_length).")
        return padding, limit

    def encode(self, text: str, text_pair: str | None = None, **kwargs: Any) -> list[int]:
        return self(text, text_pair, **kwargs)["input_ids"]

    def decode(self, ids: Sequence[int] | Sequence[Sequence[int]], skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool = False) -> str | list[str]:
        """The text of one row of ids; of a batch (a list of rows, or a 2-D array) the list of each row's text, as
        Hugging Face's 5.x (a batch of one included: `decode(enc["input_ids"])` of `return_tensors="pt"`)."""
        if (isinstance(ids, (list, tuple)) and len(ids) and np.ndim(ids[0]) > 0) or np.ndim(ids) > 1:
            return self.batch_decode(ids, skip_special_tokens, clean_up_tokenization_spaces)
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        text = self.backend.decode(ids, skip_special_tokens=skip_special_tokens)
        return _clean_up(text) if clean_up_tokenization_spaces else text

    def batch_decode(self, sequences: Sequence[Sequence[int]], skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool = False) -> list[str]:
        return [self.decode(s, skip_special_tokens, clean_up_tokenization_spaces) for s in sequences]

    # ------------------------------------------------------------------ global attention helpers
    def global_attention_mask_for_classification(self, input_ids, return_tensors: str | None = "np", *,
                                                 attention_mask=None):
        """Global attention on the first token (`<s>`), as sequence classification sets it by itself; none on
        padding (`attention_mask`, by default where input_ids is not `<pad>`: left padding included)."""
        return self._automatic_global("LongformerForSequenceClassification", input_ids, attention_mask,
                                      return_tensors)

    def global_attention_mask_for_question_answering(self, input_ids, return_tensors: str | None = "np", *,
                                                     attention_mask=None):
        """Global attention on `<s>` and the question: every token before the first `</s>`, as question answering
        sets it by itself (the same rule: each row `<s> question </s></s> context </s>`, as
        `tokenizer(question, context)` makes them, with exactly three `</s>`); none on padding, as above."""
        return self._automatic_global("LongformerForQuestionAnswering", input_ids, attention_mask, return_tensors)

    def _automatic_global(self, head: str, input_ids, attention_mask, return_tensors: str | None):
        ids = np.asarray(_as_lists(input_ids))
        mask = ids != self.pad_token_id if attention_mask is None else np.asarray(_as_lists(attention_mask))
        return _convert(automatic_global_attention(head, ids, mask, self.sep_token_id), return_tensors)


@contextlib.contextmanager
def _reading(*files: str):
    """Whatever goes wrong while reading a tokenizer's files becomes a ValueError that names them: `tokenizers`
    raises a bare Exception ("EOF while parsing ...") for a damaged file, json a JSONDecodeError."""
    try:
        yield
    except Exception as e:
        names = " / ".join(os.fspath(f) for f in files)
        raise ValueError(f"{names}: cannot read this tokenizer ({e}). If the file is damaged or cut short, download "
                         "it again, or write it again with save_pretrained.") from e


def _as_lists(value: Any) -> Any:
    """Lists (of lists) of Python numbers from lists, arrays or tensors of any framework, or lists of them."""
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()  # torch / tf / jax tensors
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_as_lists(v) for v in value]
    return value


def _side(name: str, side: str) -> str:
    if side not in ("right", "left"):
        raise ValueError(f"{name} must be 'right' or 'left'; got {side!r}")
    return side


def _pad_row(row: list, length: int, fill: int, side: str) -> list:
    pad = [fill] * (length - len(row))
    return row + pad if side == "right" else pad + row


def _with_prefix_space(tok: Tokenizer, add_prefix_space: bool) -> Tokenizer:
    """`tok` with its byte-level pre-tokenizer's and post-processor's `add_prefix_space` set (Hugging Face applies
    its tokenizer's `add_prefix_space` argument to tokenizer.json the same way). `tok` itself where both already
    have it: no round trip through JSON (~0.1 s for a 50k vocabulary) on every load of a saved tokenizer."""
    if all(getattr(part, "add_prefix_space", add_prefix_space) == add_prefix_space
           for part in (tok.pre_tokenizer, tok.post_processor)):
        return tok
    state = json.loads(tok.to_str())
    for part in ("pre_tokenizer", "post_processor"):
        if isinstance(state.get(part), dict) and "add_prefix_space" in state[part]:
            state[part]["add_prefix_space"] = add_prefix_space
    return Tokenizer.from_str(json.dumps(state))


def _clean_up(text: str) -> str:
    """Hugging Face's `clean_up_tokenization`: drop the space before punctuation and English contractions."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
                 (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text
