"""Conventions every backend shares, in one place: the mask encoding, padding rules, global slots and input checks.

Mask encoding (Hugging Face's): `min(attention_mask * (global_attention_mask + 1), 2)` gives 0 = padding (never
attended), 1 = local (sliding window), 2 = global (attends to and is attended by every non-padding token); an
`attention_mask` of 2 is global whatever `global_attention_mask` says, as Hugging Face reads it. Masks holding any
other value, ids that are not integers or lie outside their tables, and empty batches are refused
(`check_input_dtypes`, `check_input_values`, `check_input_shapes`), and so are labels that are not what their head's
loss reads (`check_labels`).

Inputs are right-padded to a multiple of the largest attention window (padding tokens: `pad_token_id`, mask 0),
as Hugging Face does; outputs are cut back to the input length, except `global_attentions`, which keep the padded
length. Position ids follow RoBERTa: `padding_idx + 1 + (number of non-padding tokens before)`, `padding_idx`
on padding tokens; from `inputs_embeds` (no ids), `padding_idx + 1 ...` for every position.

Global tokens are gathered into a static number of *slots* (`num_global_slots`): the largest count in the batch
rounded up to a power of two, so compiled code sees few distinct shapes. Unused slots are filler: masked with the
dtype's minimum (probability exactly 0) where they are keys, uniform over all keys where they are queries (as in
Hugging Face's returned `global_attentions`), and never written back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def padding_length(seq_len: int, window: int) -> int:
    """Tokens to append so that `seq_len` becomes a multiple of `window`."""
    return (window - seq_len % window) % window


def num_global_slots(max_global: int, seq_len: int, requested: int | None = None) -> int:
    """Static number of global slots for a batch whose busiest row has `max_global` global tokens: `requested`
    (the caller's `num_global_slots`) when given, which must hold them all."""
    if requested is not None:
        if requested < max_global:
            raise ValueError(f"num_global_slots={requested} but a row has {max_global} global tokens.")
        return requested
    if max_global <= 0:
        return 0
    return min(seq_len, 1 << (max_global - 1).bit_length())


def traced_global_slots(num_global_slots: int | None, seq_len: int, has_global_mask: bool) -> int:
    """The slot count where the data is unknown (jax.jit, tf.function / XLA, torch.compile): `num_global_slots`
    if given (fast: pass it), else one slot per position when a global_attention_mask is given (correct for any
    mask, but the global part costs N x N), else none (an attention_mask value of 2 then needs num_global_slots)."""
    if num_global_slots is not None:
        return num_global_slots
    return seq_len if has_global_mask else 0


MODEL_DTYPES = ("float32", "bfloat16", "float16")  # what a model's weights and compute can be in, in every backend
DTYPE_SHORT_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}  # the command line's names


def model_dtype(dtype: Any, config: Any = None) -> str:
    """The name of the dtype `from_pretrained(dtype=...)` asks for, the same in every backend: a name ("bfloat16",
    "bf16", ...), any framework's dtype (torch.bfloat16, jnp.bfloat16, tf.bfloat16, np.float16), or "auto" (as in
    Hugging Face: the dtype the checkpoint's config records, `dtype` or `torch_dtype`, else float32)."""
    if isinstance(dtype, str) and dtype == "auto":
        recorded = getattr(config, "extra", {}) if config is not None else {}
        name = recorded.get("dtype") or recorded.get("torch_dtype") or "float32"
        return name if name in MODEL_DTYPES else "float32"
    if isinstance(dtype, str):
        name = DTYPE_SHORT_NAMES.get(dtype, dtype)
    elif str(dtype).startswith("torch."):  # torch.bfloat16 has no .name
        name = str(dtype).removeprefix("torch.")
    else:  # tf.DType and np.dtype have a string .name; jnp.bfloat16 and np.float16 are types NumPy reads
        name = getattr(dtype, "name", None)
        if not isinstance(name, str):
            try:
                name = np.dtype(dtype).name
            except TypeError:
                name = None
    if name not in MODEL_DTYPES:
        raise ValueError(f"dtype={dtype!r} is not a dtype a Longformer runs in: give one of {list(MODEL_DTYPES)} "
                         "(a name, or the framework's dtype), or \"auto\" for the checkpoint's.")
    return name


# How band attention loops over its blocks (every backend's `band_attention(..., strategy=...)`; docs/attention.md):
# "rows": one (batch, head) row at a time (PyTorch: a Python loop, a few blocks per step; Flax: lax.map; TF:
# tf.map_fn), so each row's scores stay in cache on a CPU; "batched": every block of every row in one contraction,
# what accelerators want; "flex" (PyTorch only): the band and the global columns as one compiled FlexAttention
# kernel over a block-sparse mask, for GPUs (no attention probabilities, no attention dropout: a call that asks for
# either runs "batched"). The default of each backend depends on the device the model runs on (BAND_STRATEGY, by
# `device_kind`): the faster one measured on 2 CPU cores, and the few-kernel one on an accelerator. TensorFlow has
# two entries: its own kernels ("tf": eager calls, tf.function, SavedModel) run the row loop faster, XLA ("tf-xla":
# inside a jit_compile'd function, as Keras' fit compiles by default) one contraction (longformer-base training
# step at n = 4096 on 2 cores: rows 0.86x of batched's time in TF's kernels, batched 0.85x of rows' under XLA).
BAND_STRATEGIES = ("rows", "batched", "flex")
STRATEGY_BACKENDS = {"rows": ("pt", "flax", "tf"), "batched": ("pt", "flax", "tf", "onnx"), "flex": ("pt",)}
BAND_STRATEGY = {"cpu": {"pt": "rows", "flax": "rows", "tf": "rows", "tf-xla": "batched"},
                 "gpu": {"pt": "flex", "flax": "batched", "tf": "batched", "tf-xla": "batched"}}


def device_kind(platform: str) -> str:
    """"cpu" or "gpu" (every accelerator) from a framework's device type or platform name ("cuda", "gpu", "rocm",
    "tpu", "cpu", "/GPU:0", ...)."""
    return "cpu" if "cpu" in platform.lower() else "gpu"


def device_spec(device: str) -> tuple[str, int]:
    """(platform, index) of a device name as users write it in any backend: "cpu", "gpu" / "cuda" (both "gpu"),
    "gpu:1", "tpu"; each backend turns it into its own device."""
    platform, _, index = str(device).strip().lower().partition(":")
    if not platform or (index and not index.isdigit()):
        raise ValueError(f"Not a device name: {device!r}; use cpu, gpu or gpu:INDEX.")
    return ("gpu" if platform == "cuda" else platform), int(index or 0)


def band_strategy(backend: str, platform: str) -> str:
    """The default band strategy of `backend` ("pt", "flax", "tf", or "tf-xla" for TensorFlow compiled by XLA) on a
    device of type `platform` (BAND_STRATEGY)."""
    return BAND_STRATEGY[device_kind(platform)][backend]


def check_band_strategy(strategy: str, backend: str) -> str:
    """`strategy`, if `backend` has it; a ValueError naming the choices otherwise."""
    if backend not in STRATEGY_BACKENDS.get(strategy, ()):
        have = tuple(s for s in BAND_STRATEGIES if backend in STRATEGY_BACKENDS[s])
        raise ValueError(f"Unknown band strategy {strategy!r} for {backend}; choose one of {have}.")
    return strategy


QUERY_BLOCK = {"rows": {"pt": 64, "flax": 128, "tf": 128},
               "batched": {"pt": 128, "flax": 128, "tf": 128, "onnx": 128},
               "flex": {"pt": 128}}  # flex: FlexAttention's own block (and "batched"'s, where flex falls back)


def query_block(w: int, strategy: str, backend: str) -> int:
    """Query rows per band block of `backend` with `strategy` (QUERY_BLOCK), or 2w for a smaller window (a block
    never sees more than its band needs)."""
    return min(QUERY_BLOCK[check_band_strategy(strategy, backend)][backend], 2 * w)


def band_geometry(seq_len: int, w: int, block: int) -> tuple[int, int, int]:
    """(blocks, query tail, span) of a band over `seq_len` rows: the queries are padded by `tail` rows to whole
    blocks, and each block sees its own `block` keys plus `span`, the band's 2w rounded up to whole blocks (the
    extra columns are masked). So any window runs at the speed of its neighbours: the largest divisor of 2w, used
    as the block before, gave W = 514 two-row blocks and a band ten times slower than W = 512's."""
    n_blocks = -(-seq_len // block)
    return n_blocks, n_blocks * block - seq_len, -(-2 * w // block) * block


FEED_FORWARD_ROWS = 1024  # positions per feed-forward step (row-wise, so chunking changes no result)


def rows_per_step(seq_len: int, preferred: int) -> int:
    """Sequence positions a step handles: `preferred`, or the whole sequence when it is shorter."""
    return max(1, min(preferred, seq_len))


# ---------------------------------------------------------------------------------------------- input checks
def check_input_shapes(*, input_ids: Sequence[int] | None, inputs_embeds: Sequence[int] | None,
                       attention_mask: Sequence[int] | None, global_attention_mask: Sequence[int] | None,
                       token_type_ids: Sequence[int] | None, position_ids: Sequence[int] | None,
                       hidden_size: int) -> tuple[int, int]:
    """Validate the shapes of a model's inputs; return (batch, length). Shapes are plain tuples."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("Pass exactly one of input_ids and inputs_embeds.")
    if input_ids is not None:
        if len(input_ids) != 2:
            raise ValueError(f"input_ids must have shape (batch, sequence), got {tuple(input_ids)}.")
        shape = tuple(input_ids)
    else:
        if len(inputs_embeds) != 3 or inputs_embeds[-1] != hidden_size:
            raise ValueError(f"inputs_embeds must have shape (batch, sequence, {hidden_size}), "
                             f"got {tuple(inputs_embeds)}.")
        shape = tuple(inputs_embeds[:2])
    if shape[0] == 0:
        raise ValueError("The batch is empty (0 rows): pass at least one sequence.")
    if shape[1] == 0:
        raise ValueError("The input sequence is empty (length 0).")
    for name, other in (("attention_mask", attention_mask), ("global_attention_mask", global_attention_mask),
                        ("token_type_ids", token_type_ids), ("position_ids", position_ids)):
        if other is not None and tuple(other) != shape:
            raise ValueError(f"{name} has shape {tuple(other)} but the input has shape {shape} "
                             "(batch, sequence); they must match.")
    return shape[0], shape[1]


INTEGER_INPUTS = ("input_ids", "token_type_ids", "position_ids")
# The values each mask may hold. attention_mask: 0 padding, 1 local, 2 global (Hugging Face reads 2 as global too).
MASK_VALUES = {"attention_mask": (0, 1, 2), "global_attention_mask": (0, 1)}
_KIND_NAMES = {"b": "boolean", "i": "integer", "u": "unsigned integer", "f": "floating-point", "c": "complex"}


def check_input_dtypes(kinds: Mapping[str, str]) -> None:
    """Input name -> NumPy dtype kind ('b', 'i', 'u', 'f', 'c'; anything else counts as 'f') of each input given.

    Ids must be integers (a float id would be truncated); masks may be boolean, integer or floating (their values
    are checked by `check_input_values`); inputs_embeds must be floating (the model casts them to the dtype of its
    word embeddings, as if they had been looked up there)."""
    for name, kind in kinds.items():
        if name == "inputs_embeds" and kind in "biuc":
            raise ValueError(f"inputs_embeds must hold floating-point vectors, got {_KIND_NAMES[kind]} values; "
                             "token ids go in input_ids.")
        if name in INTEGER_INPUTS and kind not in "iu":
            raise ValueError(f"{name} must hold integers, got a {_KIND_NAMES.get(kind, 'floating-point')} tensor; "
                             "token ids are never fractional (cast with .long() / astype('int64')).")
        if name in MASK_VALUES and kind == "c":
            raise ValueError(f"{name} must hold {' or '.join(map(str, MASK_VALUES[name]))}, got a complex tensor.")


def check_input_values(config: Any, *, input_ids: np.ndarray | None = None, attention_mask: np.ndarray | None = None,
                       global_attention_mask: np.ndarray | None = None, token_type_ids: np.ndarray | None = None,
                       position_ids: np.ndarray | None = None) -> None:
    """The data rules every backend applies, on host NumPy values (None: not given, or unknown while tracing):
    ids inside their tables (checked before any cast, so nothing wraps), masks holding only their values, and no
    global token on padding."""
    for name, ids, size in (("input_ids", input_ids, config.vocab_size),
                            ("token_type_ids", token_type_ids, config.type_vocab_size)):
        if ids is not None and ids.size:
            low, high = int(ids.min()), int(ids.max())
            if low < 0 or high >= size:
                raise ValueError(ids_out_of_range_message(name, low, high, size))
    if position_ids is not None and position_ids.size and int(position_ids.min()) < 0:
        raise ValueError(f"position_ids must be non-negative, got {int(position_ids.min())}.")
    for name, mask in (("attention_mask", attention_mask), ("global_attention_mask", global_attention_mask)):
        if mask is not None and mask.size:
            allowed = MASK_VALUES[name]
            bad = [v for v in np.unique(mask).tolist() if v not in allowed]
            if bad:
                raise ValueError(f"{name} may only hold {', '.join(map(str, allowed))}, found {bad[:5]}"
                                 f"{' (0 padding, 1 local, 2 global)' if name == 'attention_mask' else ' (1 global)'}"
                                 ".")
    if global_attention_mask is not None and attention_mask is not None:
        if bool(((global_attention_mask != 0) & (attention_mask == 0)).any()):
            raise ValueError(GLOBAL_ON_PADDING_MESSAGE)


IGNORE_INDEX = -100  # a class label that the loss leaves out (Hugging Face's)
# What each head's labels are: how many per example ("token": one per input token, "example": one per example,
# "classes": one per class of each example), and the count of classes they index (None: positions, clamped).
_LABELS = {"LongformerForMaskedLM": ("token", "vocab_size"), "LongformerForTokenClassification": ("token", "num_labels"),
           "LongformerForMultipleChoice": ("example", "num_choices"), "LongformerForQuestionAnswering": ("example", None)}


def check_labels(config: Any, head: str, problem: str | None, labels: Mapping[str, tuple[str, tuple, Any]],
                 batch: int | None, length: int, num_choices: int | None) -> None:
    """The label rules of every head, on each label's dtype kind, shape (None where unknown) and host values (None
    while tracing): class ids are integers in [0, classes) or IGNORE_INDEX, one per token or per example;
    question answering's positions are integers, one per example (positions outside the input are ignored);
    sequence classification follows its `problem` (inputs.problem_type): single-label class ids, regression
    targets `(batch, num_labels)` (or `(batch,)` for one label), multi-label targets `(batch, num_labels)`."""
    for name, (kind, shape, values) in labels.items():
        if head == "LongformerForSequenceClassification":
            per, classes = ("example", "num_labels") if problem == "single_label_classification" else ("classes", None)
        else:
            per, classes = _LABELS[head]
        integers = classes is not None or head == "LongformerForQuestionAnswering"
        if integers and kind not in "iu":
            what = "positions" if classes is None else "class ids"
            hint = (" (float targets are multi-label or regression: config.problem_type)"
                    if head == "LongformerForSequenceClassification" else "")
            raise ValueError(f"{name} of {head} must hold integer {what}, got {_KIND_NAMES.get(kind, 'floating-point')}"
                             f" values{hint}.")
        if kind == "c":
            raise ValueError(f"{name} of {head} must hold real values, got complex values.")
        exact = per == "classes" and config.num_labels > 1  # targets that line up with the logits
        want = (batch, length) if per == "token" else (batch, config.num_labels) if exact else (batch,)
        if None not in shape and None not in want and (
                tuple(shape) != want if exact else int(np.prod(shape)) != int(np.prod(want))):  # (B, 1) is (B,)
            unit = "one per input token" if per == "token" else "one per class" if exact else "one per example"
            raise ValueError(f"{name} has shape {tuple(shape)} but {head} needs {unit}: {want}.")
        if classes is not None and values is not None and np.size(values):
            count = num_choices if classes == "num_choices" else getattr(config, classes)
            found = np.unique(values)
            bad = found[((found < 0) | (found >= count)) & (found != IGNORE_INDEX)]
            if bad.size:
                noun = "choices" if classes == "num_choices" else f"classes ({classes})"
                raise ValueError(f"{name} holds {bad[:5].tolist()} but {head} has {count} {noun}: a label must "
                                 f"lie in [0, {count - 1}], or be {IGNORE_INDEX} to be left out of the loss.")


def ids_out_of_range_message(name: str, low: int, high: int, size: int) -> str:
    return (f"{name} holds values in [{low}, {high}] but must lie in [0, {size - 1}] "
            f"({name.split('_')[0]} table of size {size}).")


def max_tokens(config: Any) -> int:
    """The longest input the position table holds (positions start at pad_token_id + 1)."""
    return config.max_position_embeddings - config.pad_token_id - 1


def positions_too_long_message(max_position: int, table: int, pad: int) -> str:
    return (f"The sequence needs position {max_position} but the model's position table has "
            f"{table} rows (max_position_embeddings; positions start at padding_idx + 1 = {pad + 1}), so at most "
            f"{table - pad - 1} tokens fit. Truncate the input (tokenizer truncation=True, max_length=...) or "
            "convert the checkpoint to a longer position table.")


GLOBAL_ON_PADDING_MESSAGE = ("global_attention_mask marks a token as global where attention_mask is 0 (padding). "
                             "Padding tokens cannot be global: clear global_attention_mask there.")


def sep_count_message(counts: Sequence[int], sep_token_id: int) -> str:
    return (f"Automatic global attention needs exactly 3 separator tokens (id {sep_token_id}) per row, "
            f"'<s> question </s></s> context </s>'; found {list(counts)}. Pass global_attention_mask yourself.")
