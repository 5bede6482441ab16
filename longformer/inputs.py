"""The input pipeline, written once for every backend: from the keyword arguments a head is called with to the
padded, merged, checked tensors its encoder runs on, and from the encoder's fields back to what the user sees.

Each step is a function of an *ops table* (`Ops`): the dozen array operations it needs, supplied by each backend
(`TorchOps`, `JaxOps`, `TfOps` beside its modeling code) and by NumPy here (`NUMPY`: the tokenizer's helpers and
longformer.onnx). The rules themselves (conventions in `semantics`) are therefore written once and run on the
framework's own tensors, so they keep working where values are unknown: under `torch.compile`, `jax.jit` and
`tf.function` / XLA the value checks are skipped (`Ops.is_traced`) and the slot count follows
`semantics.traced_global_slots`; everything else is the same ops on tracers.

The order (docs/architecture.md): tensors of the caller's own dtypes -> multiple-choice flattening -> dtype, value
and shape checks (before any cast: nothing wraps) -> the head's automatic global tokens -> cast, mask merge, right
padding to the window, token types, positions -> slot count. After the encoder and head: the attention columns of
the unused global slots are dropped (`finish_outputs`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from . import semantics
from ._warn import warn

INPUT_NAMES = ("input_ids", "attention_mask", "global_attention_mask", "token_type_ids", "position_ids",
               "inputs_embeds")
INTEGER_INPUT_NAMES = INPUT_NAMES[:5]

# The global tokens a head chooses when the caller gives no global_attention_mask (Hugging Face's rules):
# the first token (<s>) for sequence classification, the question (every token before the first </s>) for question
# answering, every token after the first </s></s> of each choice for multiple choice.
AUTOMATIC_GLOBAL = {"LongformerForSequenceClassification": "first_token",
                    "LongformerForQuestionAnswering": "question",
                    "LongformerForMultipleChoice": "choices"}


class Ops:
    """The array operations the pipeline needs; a backend subclasses this with its framework's ops.

    Python operators (`==`, `*`, `+`, `<`, `!=`, slicing) are used directly on the backend's tensors."""

    int_dtype: Any = np.int64  # the dtype ids and masks are cast to after the checks

    def tensor(self, x):
        """A tensor of the input's own dtype (None stays None): the checks see what was given."""
        return None if x is None else np.asarray(x)

    def kind(self, t) -> str:
        """The NumPy dtype kind of a tensor ('b', 'i', 'u', 'f', 'c')."""
        return np.dtype(t.dtype).kind

    def is_traced(self, t) -> bool:
        """True while compiling / tracing: the values are unknown, only shapes are."""
        return False

    def numpy(self, t) -> np.ndarray:
        return np.asarray(t)

    def shape(self, t) -> tuple:
        """Every size of `t`: ints where known (a backend may return dynamic sizes where they are not)."""
        return tuple(t.shape)

    def cast(self, t, dtype):
        return t.astype(dtype)

    def full(self, like, shape, value, dtype):
        """A new tensor beside `like` (same device)."""
        return np.full(shape, value, dtype)

    def pad_right(self, t, pad: int, value=0):
        """Append `pad` entries of `value` along axis 1."""
        return np.pad(t, [(0, 0), (0, pad)] + [(0, 0)] * (t.ndim - 2), constant_values=value)

    def reshape(self, t, shape):
        return np.reshape(t, shape)

    def minimum(self, a, b):
        return np.minimum(a, b)

    def cumsum(self, t, axis: int):
        return np.cumsum(t, axis=axis)

    def arange(self, like, start: int, stop):
        """start .. stop - 1 beside `like` (same device)."""
        return np.arange(start, stop)

    def broadcast_to(self, t, shape):
        return np.broadcast_to(t, shape)

    def sum(self, t, axis: int):
        return t.sum(axis=axis)

    def argmax(self, t, axis: int):
        return np.argmax(t, axis=axis)

    def concat(self, tensors, axis: int):
        return np.concatenate(tensors, axis=axis)

    def transpose_last(self, t):
        return np.swapaxes(t, -1, -2)


NUMPY = Ops()


class ModelInputs(NamedTuple):
    """What the encoder runs on: every input right-padded to a multiple of the largest window."""

    input_ids: Any
    inputs_embeds: Any
    token_type_ids: Any
    position_ids: Any
    merged_mask: Any  # 0 padding, 1 local, 2 global (semantics)


class Static(NamedTuple):
    """The sizes and switches of one call that are shapes, not data (static arguments when compiled)."""

    n_in: int  # the input length before padding
    num_slots: int  # G, global slots (semantics.num_global_slots)
    output_attentions: bool
    output_hidden_states: bool
    num_choices: int | None = None  # multiple choice: choices per example
    training: bool = False  # tf: Keras' training flag (pt and flax keep it in the modules)


class Prepared(NamedTuple):
    inputs: ModelInputs
    static: Static
    num_global: int  # x, the batch's largest number of global tokens (<= num_slots)


class AttentionMasks(NamedTuple):
    """Which token is padding, local or global, and where the global tokens sit; computed once per call and read
    by every layer (`attention_masks`)."""

    padding: Any  # (B, N) bool
    is_global: Any  # (B, N) bool
    window_key: Any  # (B, N) bool: keys a local row may see in its window (not padding, not global)
    slot_position: Any  # (B, G) int or None: each row's global positions, in order
    slot_valid: Any  # (B, G) bool or None: which slots hold a real global token

    @property
    def has_global(self) -> bool:
        return self.slot_position is not None


def attention_masks(merged, num_slots, global_slots: Callable) -> AttentionMasks:
    """The masks of a merged mask; `global_slots` is the backend's `attention.global_slots`."""
    is_global = merged == 2
    slot_position = slot_valid = None
    if not isinstance(num_slots, int) or num_slots:
        slot_position, slot_valid = global_slots(is_global, num_slots)
    return AttentionMasks(merged == 0, is_global, merged == 1, slot_position, slot_valid)


# ---------------------------------------------------------------------------------------------- the pipeline
def prepare(config: Any, ops: Ops, head: str, inputs: dict[str, Any], num_global_slots: int | None,
            *, output_attentions: bool, output_hidden_states: bool, training: bool = False) -> Prepared:
    """Check the inputs of `head` (a class name), add its automatic global tokens, merge the masks, right-pad to
    a multiple of the largest window and pick the static slot count."""
    given = {name: ops.tensor(inputs.get(name)) for name in INPUT_NAMES}
    num_choices = None
    if head == "LongformerForMultipleChoice":
        given, num_choices = flatten_choices(ops, given)
    ints = {name: given[name] for name in INTEGER_INPUT_NAMES}
    ids, embeds = given["input_ids"], given["inputs_embeds"]
    check_inputs(config, ops, ints, embeds)  # before any cast: a float id or an int64 beyond int32 is refused
    semantics.check_input_shapes(**{name: None if t is None else tuple(-1 if d is None else d for d in t.shape)
                                    for name, t in given.items()}, hidden_size=config.hidden_size)
    rule = AUTOMATIC_GLOBAL.get(head)
    if ints["global_attention_mask"] is None and rule is not None:
        ints["global_attention_mask"] = automatic_global_mask(ops, rule, ids, embeds, ints["attention_mask"],
                                                              config.sep_token_id)
    input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids = (
        None if t is None else ops.cast(t, ops.int_dtype) for t in ints.values())

    ref = ids if ids is not None else embeds
    B, n_in = ops.shape(ref)[:2]
    # 0 = padding, 1 = local, 2 = global; then right-pad everything to a multiple of the largest window.
    merged = ops.full(ref, (B, n_in), 1, ops.int_dtype) if attention_mask is None else attention_mask
    if global_attention_mask is not None:
        merged = ops.minimum(merged * (global_attention_mask + 1), 2)
    pad = semantics.padding_length(n_in, config.max_attention_window)
    N = n_in + pad
    input_ids = None if input_ids is None else ops.pad_right(input_ids, pad, config.pad_token_id)
    position_ids = None if position_ids is None else ops.pad_right(position_ids, pad, config.pad_token_id)
    # Padding rows are masked everywhere, so their content never reaches an output.
    embeds = None if embeds is None else ops.pad_right(embeds, pad)
    token_type_ids = (ops.full(ref, (B, N), 0, ops.int_dtype) if token_type_ids is None
                      else ops.pad_right(token_type_ids, pad))
    merged = ops.pad_right(merged, pad)
    if position_ids is None:
        position_ids = default_position_ids(config, ops, input_ids, ref, B, N)
    if not ops.is_traced(position_ids):
        high = int(ops.numpy(position_ids).max())
        if high >= config.max_position_embeddings:
            raise ValueError(semantics.positions_too_long_message(high, config.max_position_embeddings,
                                                                  config.pad_token_id))

    # The number of global slots is a shape: read from the data where it is known, else the traced rule.
    if ops.is_traced(merged):
        x = G = semantics.traced_global_slots(num_global_slots, N, global_attention_mask is not None)
    else:
        x = int(ops.numpy(ops.sum(ops.cast(merged == 2, ops.int_dtype), 1)).max())
        G = semantics.num_global_slots(x, int(N), num_global_slots)
    if training and num_global_slots is None and G == 0:
        # In training there is always a slot (a filler, when no token is global: its result is discarded, its
        # gradient is zero), so the global projections take part in every step: DistributedDataParallel needs
        # no find_unused_parameters, and every process's gradients cover the same parameters.
        G = 1
    static = Static(n_in, G, bool(output_attentions), bool(output_hidden_states), num_choices, bool(training))
    return Prepared(ModelInputs(input_ids, embeds, token_type_ids, position_ids, merged), static, x)


def check_inputs(config: Any, ops: Ops, ints: dict[str, Any], inputs_embeds: Any = None) -> None:
    """The shared input rules on this batch: dtypes always, values where they are known (not while tracing)."""
    given = {name: t for name, t in ints.items() if t is not None}
    semantics.check_input_dtypes({name: ops.kind(t) for name, t in
                                  {**given, "inputs_embeds": inputs_embeds}.items() if t is not None})
    semantics.check_input_values(config, **{name: ops.numpy(t) for name, t in given.items()
                                            if not ops.is_traced(t)})


def check_labels(config: Any, ops: Ops, head: str, labels: dict[str, Any], prepared: Prepared) -> None:
    """The shared label rules (semantics.check_labels) on this call's labels: dtypes and known sizes always, values
    where they are known (not while tracing)."""
    given = {name: t for name, t in labels.items() if t is not None}
    if not given:
        return
    static = prepared.static
    rows = prepared.inputs.merged_mask.shape[0]
    batch = None if rows is None else int(rows) // (static.num_choices or 1)
    problem = None
    if head == "LongformerForSequenceClassification":
        problem = problem_type(config, config.num_labels, ops.kind(given["labels"]) in "iu")
    semantics.check_labels(config, head, problem, {
        name: (ops.kind(t), tuple(None if d is None else int(d) for d in t.shape),
               None if ops.is_traced(t) else ops.numpy(t)) for name, t in given.items()},
        batch, static.n_in, static.num_choices)


def flatten_choices(ops: Ops, given: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Multiple choice: `(batch, num_choices, sequence[, hidden])` inputs -> `(batch * num_choices, ...)`."""
    ref = given["input_ids"] if given["input_ids"] is not None else given["inputs_embeds"]
    if ref is None or len(ref.shape) != (3 if given["input_ids"] is not None else 4):
        raise ValueError("Multiple choice inputs must have shape (batch, num_choices, sequence) "
                         f"(inputs_embeds: (..., hidden)), got {None if ref is None else tuple(ref.shape)}.")
    flat = {name: None if t is None else ops.reshape(t, (-1, *ops.shape(t)[2:])) for name, t in given.items()}
    return flat, ops.shape(ref)[1]


def automatic_global_mask(ops: Ops, rule: str, input_ids, inputs_embeds, attention_mask, sep_token_id: int):
    """The global_attention_mask of an `AUTOMATIC_GLOBAL` rule, `(B, N)` of 0/1; never on padding. None where
    the rule needs ids that were not given (question answering from inputs_embeds: a warning, no global tokens)."""
    ref = input_ids if input_ids is not None else inputs_embeds
    if rule != "first_token" and input_ids is None:
        warn(f"No global_attention_mask and no input_ids to find the {'question' if rule == 'question' else 'choices'}"
             ": running without global attention.")
        return None
    B, N = ops.shape(ref)[:2]
    positions = ops.arange(ref, 0, N)[None, :]
    if rule == "first_token":
        mask = ops.broadcast_to(positions == 0, (B, N))
    else:  # "question" / "choices": exactly three separators per row, '<s> A </s></s> B </s>'
        is_sep = ops.cast(input_ids == sep_token_id, ops.int_dtype)
        counts = ops.sum(is_sep, 1)
        if not ops.is_traced(counts) and bool((ops.numpy(counts) != 3).any()):
            raise ValueError(semantics.sep_count_message(ops.numpy(counts).tolist(), sep_token_id))
        first_sep = ops.cast(ops.argmax(is_sep, 1), ops.int_dtype)[:, None]
        mask = positions < first_sep if rule == "question" else positions > first_sep + 1
    mask = ops.cast(mask, ops.int_dtype)
    return mask if attention_mask is None else mask * ops.cast(attention_mask != 0, ops.int_dtype)


def default_position_ids(config: Any, ops: Ops, input_ids, like, B, N):
    """RoBERTa's positions: padding_idx + 1 + the number of non-padding tokens before, padding_idx on padding;
    from inputs_embeds, padding_idx + 1 + the position."""
    pad = config.pad_token_id
    if input_ids is not None:
        real = ops.cast(input_ids != pad, ops.int_dtype)
        return ops.cumsum(real, 1) * real + pad
    return ops.broadcast_to(ops.cast(ops.arange(like, pad + 1, N + pad + 1), ops.int_dtype)[None, :], (B, N))


def encoder_outputs(ops: Ops, static: Static, h, pooler, all_hidden, all_attn, all_global) -> dict[str, Any]:
    """The base model's fields from the encoder's padded results, cut back to the input length (global attentions
    keep the padded length, as Hugging Face's do); `pooler` is the pooling layer or None."""
    n_in = static.n_in
    h = h[:, :n_in]
    out = {"last_hidden_state": h, "pooler_output": None if pooler is None else pooler(h),
           "hidden_states": tuple(t[:, :n_in] for t in all_hidden) if static.output_hidden_states else None,
           "attentions": None, "global_attentions": None}
    if static.output_attentions:
        out["attentions"] = tuple(p[:, :, :n_in] for p in all_attn)
        if not isinstance(static.num_slots, int) or static.num_slots:
            out["global_attentions"] = tuple(ops.transpose_last(g) for g in all_global)
    return out


def finish_outputs(ops: Ops, out: dict[str, Any], num_global, num_slots) -> dict[str, Any]:
    """Attention columns of the batch's `num_global` (x) global tokens, not of the G slots (x is known on the
    host; where it is not, x = G)."""
    if out.get("attentions") is not None:
        out["attentions"] = tuple(ops.concat([p[..., :num_global], p[..., num_slots:]], -1)
                                  for p in out["attentions"])
        if out.get("global_attentions") is not None:
            out["global_attentions"] = (tuple(g[..., :num_global] for g in out["global_attentions"])
                                        if not isinstance(num_global, int) or num_global else None)
    return out


def problem_type(config: Any, num_labels: int, labels_are_integers: bool) -> str:
    """Sequence classification's loss, as Hugging Face picks it: config.problem_type, else regression for one
    label, single-label classification for integer labels, multi-label otherwise."""
    if config.problem_type is not None:
        return config.problem_type
    if num_labels == 1:
        return "regression"
    return "single_label_classification" if labels_are_integers else "multi_label_classification"


def automatic_global_attention(head: str, input_ids, attention_mask, sep_token_id: int) -> np.ndarray | None:
    """The global_attention_mask `head` uses when none is given, on host NumPy ids `(..., sequence)` (the
    tokenizer's helpers and longformer.onnx); None for heads without a rule."""
    rule = AUTOMATIC_GLOBAL.get(head)
    if rule is None:
        return None
    ids = np.asarray(input_ids)
    flat = ids.reshape(-1, ids.shape[-1])
    mask = None if attention_mask is None else np.asarray(attention_mask).reshape(flat.shape)
    return automatic_global_mask(NUMPY, rule, flat, None, mask, sep_token_id).reshape(ids.shape)
