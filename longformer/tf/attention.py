"""Longformer attention (sliding window + global tokens) as pure functions on TensorFlow tensors.

The same algorithm as `longformer/pt/attention.py` and `longformer/flax/attention.py`, function for function
(docs/attention.md):

- Local rows use a *blocked band*: queries are taken `block` rows at a time and each block is multiplied with the
  `block + 2w` keys it can see (rounded up to whole blocks), cut out by an additive bias (0 or the dtype minimum);
  nothing of size N x N exists.
  Each (batch, head) row is one batch entry of a single batched matmul (TensorFlow's batched matmul runs small
  matrices well, unlike XLA's CPU emitter, so no per-row loop is needed).
- Global tokens sit in `G` slots (`global_slots`). Local rows see them as `G` extra key columns (with the *local*
  keys and values of those tokens), merged into the band's softmax by log-sum-exps; global rows are a small dense
  attention with the `*_global` projections (`global_rows`) that overwrites the local result at those rows.
- Global rows never project keys and values of all N tokens when `G * nh <= H`: `q . (Wk x + bk)` is computed as
  `(Wk^T q) . x + q . bk`, and the context as `(P x) Wv^T + (sum P) bv`.

Shapes: B batch, N length, nh heads, hd head size, H hidden, w = W/2 one-sided window, G global slots.
Shapes may be dynamic (a SavedModel's serving signature has no fixed batch or length): `_dim` reads a static size
where there is one, and nothing branches on values, so the functions run eagerly, in `tf.function` and under XLA.
"""

from __future__ import annotations

import functools
from typing import Any

import tensorflow as tf

from .. import semantics


def _dim(x: tf.Tensor, axis: int):
    """A static size when known, else the dynamic one."""
    static = x.shape[axis]
    return static if static is not None else tf.shape(x)[axis]


def mask_value(dtype) -> float:
    """Score of a key that must get probability exactly 0 (the dtype minimum; -inf would turn empty rows to NaN)."""
    return tf.as_dtype(dtype).min


def softmax_dtype(dtype):
    """Softmax runs in at least float32 (fp16/bf16 scores are widened, float64 stays float64)."""
    return tf.float64 if tf.as_dtype(dtype) == tf.float64 else tf.float32


def global_slots(is_global: tf.Tensor, num_slots) -> tuple[tf.Tensor, tf.Tensor]:
    """Positions of each row's global tokens, in order, in `num_slots` slots.

    Args:
        is_global: `(B, N)` bool.
        num_slots: G, at least the largest number of global tokens in a row.
    Returns:
        slot_position `(B, G)` int32 (filler slots point at some non-global position) and slot_valid `(B, G)` bool.
    """
    # A stable sort of "not global" puts each row's global positions first, in increasing order.
    order = tf.argsort(tf.cast(tf.logical_not(is_global), tf.int32), axis=1, stable=True)
    slot_position = order[:, :num_slots]
    count = tf.reduce_sum(tf.cast(is_global, tf.int32), axis=1, keepdims=True)
    slot_valid = tf.range(num_slots)[None, :] < count
    return slot_position, slot_valid


# A graph even when the model runs eagerly: TF then plans the band's buffers and runs its independent ops in
# parallel (0.133 s -> 0.110 s per layer at n = 4096, W = 512); shapes are generalised, not retraced per length.
# One tf.function per static setting (window, block, global slots or not, dropout, probabilities), so a model
# whose layers differ, or calls with and without global tokens, trace each once instead of retracing one function
# (which TF reports as "excessive retracing"). Inside a caller's tf.function the ops are traced inline: a nested
# function's gradient, compiled by XLA, made q, k and v compile-time constants (its shapes generalised), so a
# jit-compiled training step compiled again on every call.
_BAND_GRAPHS: dict[tuple, Any] = {}


def band_attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, key_valid: tf.Tensor, w: int, block: int, *,
                   global_k: tf.Tensor | None = None, global_v: tf.Tensor | None = None,
                   slot_valid: tf.Tensor | None = None, dropout: float = 0.0, training: bool = False,
                   seed: tf.Tensor | None = None, return_probs: bool = False,
                   strategy: str = "batched") -> tuple[tf.Tensor, tf.Tensor | None]:
    """Each query attends to the keys within `w` positions that are valid, plus the global slots.

    Args:
        q, k, v: `(B, N, nh, hd)` (the projections' own layout); `q` already scaled.
        key_valid: `(B, N)` bool, keys a local row may see in its window (not padding, not global).
        w: one-sided window; block: query rows per block (`semantics.query_block`).
        global_k, global_v: `(B, nh, G, hd)` local keys/values of the global tokens (optional).
        slot_valid: `(B, G)` bool, which slots hold a real global token.
        dropout, training, seed: dropout on the probabilities when training, its masks drawn from `seed` (a `[2]`
            integer tensor) by stateless ops: stateful random ops run ~10x slower under XLA.
        strategy: how the blocks are looped over (`semantics.BAND_STRATEGIES`): "batched", every block of every
            (batch, head) row in one contraction (TensorFlow's batched matmul runs small matrices well, unlike
            XLA's CPU emitter); "rows", one row at a time with `tf.map_fn`.
    Returns:
        context `(B, N, nh, hd)` and, if `return_probs`, probabilities `(B, nh, N, G + 2w + 1)`: global slot columns,
        then relative offsets -w..w.
    """
    if training and dropout > 0 and seed is None:
        raise ValueError("band_attention with dropout in training needs a seed (a [2] integer tensor, e.g. a "
                         "keras.random.SeedGenerator's next()).")
    static = dict(w=w, block=block, dropout=dropout if training else 0.0, return_probs=return_probs,
                  strategy=strategy)
    if not tf.executing_eagerly():
        return _band_attention(q, k, v, key_valid, global_k=global_k, global_v=global_v, slot_valid=slot_valid,
                               seed=seed if static["dropout"] else None, **static)
    key = (*static.values(), global_k is None, q.shape[2], q.shape[3])  # heads and head size stay static too
    if key not in _BAND_GRAPHS:
        _BAND_GRAPHS[key] = tf.function(functools.partial(_band_attention, **static), autograph=False,
                                        reduce_retracing=True)
    return _BAND_GRAPHS[key](q, k, v, key_valid, global_k=global_k, global_v=global_v, slot_valid=slot_valid,
                             seed=seed if static["dropout"] else None)


def _band_attention(q, k, v, key_valid, w, block, *, global_k=None, global_v=None, slot_valid=None, dropout=0.0,
                    seed=None, return_probs=False, strategy="batched"):
    """`band_attention`, traced once per static setting."""
    N = _dim(q, 1)
    n_blocks, tail, span = semantics.band_geometry(N, w, block)
    acc = softmax_dtype(q.dtype)
    with_lse = global_k is not None  # the band's log-normaliser, to merge the global slots
    band_seed, global_seed = (None, None) if seed is None else tf.unstack(_split(seed))
    # Keys/values padded by w before and the rest of the span after (plus the query tail): query i sees padded
    # keys i .. i + 2w.
    q_pad = _pad_rows(q, 0, tail)                                                    # B Nq nh hd
    k_pad = _pad_rows(k, w, span - w + tail)                                         # B Nq+span nh hd
    v_pad = _pad_rows(v, w, span - w + tail)
    band_bias, key_bias = _band_bias(key_valid, w, block, span, tail, acc)            # b width, B nblk 1 width
    slot_bias = None if global_k is None else _additive_bias(slot_valid, acc)          # B G
    if not return_probs:
        context = band_core(q_pad, k_pad, v_pad, global_k, global_v, band_bias, key_bias, slot_bias, band_seed,
                            global_seed, w, block, strategy, dropout)
        return context[:, :N], None
    context, band_lse, band_probs = _BAND[strategy](q_pad, k_pad, v_pad, band_bias, key_bias, w, block, dropout,
                                                    band_seed, with_lse, return_probs)
    context = context[:, :N]                                                          # B N nh hd
    band_lse = None if band_lse is None else band_lse[:, :, :N]                       # B nh N 1
    band_probs = None if band_probs is None else band_probs[:, :, :N]                 # B nh N 2w+1
    if global_k is None:
        return context, band_probs
    context, band_probs, _ = _merge_global(q, context, band_lse, band_probs, global_k, global_v, slot_bias, dropout,
                                           global_seed)
    return context, band_probs


def _band_forward(q_pad, k_pad, v_pad, global_k, global_v, band_bias, key_bias, slot_bias, band_seed, global_seed,
                  w, block, strategy, dropout):
    """The band and the global slots' columns on padded rows: (context, each row's log-sum-exp over all its keys)."""
    context, lse, _ = _BAND[strategy](q_pad, k_pad, v_pad, band_bias, key_bias, w, block, dropout, band_seed, True,
                                      False)
    if global_k is not None:
        context, _, lse = _merge_global(q_pad, context, lse, None, global_k, global_v, slot_bias, dropout,
                                        global_seed)
    return context, lse


def band_core(q_pad, k_pad, v_pad, global_k, global_v, band_bias, key_bias, slot_bias, band_seed, global_seed, w,
              block, strategy, dropout):
    """`_band_forward`'s context, with a flash-attention-style gradient (`tf.custom_gradient`): the forward keeps
    the padded q, k, v, the global slots' keys and values, the output and each row's log-sum-exp; the backward
    recomputes each block's probabilities from them, with the same dropout masks (drawn again from the seeds)."""
    with_global = global_k is not None

    @tf.custom_gradient
    def core(q_pad_in, k_pad_in, v_pad_in, *slots):
        slots_in = slots if with_global else (None, None)
        context, lse = _band_forward(q_pad_in, k_pad_in, v_pad_in, *slots_in, band_bias, key_bias, slot_bias,
                                     band_seed, global_seed, w, block, strategy, dropout)

        def grad(d_context):
            # The recomputation waits for the output's gradient (its inputs plus 0 * one element of it): else XLA
            # merges it with the forward (CSE) and keeps every block's probabilities from the forward instead.
            zero = 0 * tf.reshape(d_context, [-1])[0]
            q_pad, k_pad, v_pad, global_k, global_v = (None if x is None else x + tf.cast(zero, x.dtype)
                                                       for x in (q_pad_in, k_pad_in, v_pad_in, *slots_in))
            acc = lse.dtype
            # delta_i = sum_j P_ij dP_ij over all of row i's keys (band and global) = dO_i . O_i.
            delta = tf.transpose(tf.reduce_sum(tf.cast(d_context, acc) * tf.cast(context, acc), -1),
                                 [0, 2, 1])[..., None]                                     # B nh Nq 1
            dq, dk, dv = _BAND_BACKWARD[strategy](q_pad, k_pad, v_pad, band_bias, key_bias, lse, delta, d_context,
                                                  block, dropout, band_seed)
            grads = []
            if with_global:
                dq_global, d_global_k, d_global_v = _merge_global_backward(
                    q_pad, global_k, global_v, slot_bias, lse, delta, d_context, dropout, global_seed)
                dq, grads = dq + dq_global, [d_global_k, d_global_v]
            return [tf.cast(dq, q_pad.dtype), tf.cast(dk, k_pad.dtype), tf.cast(dv, v_pad.dtype), *grads]

        return context, grad

    return core(q_pad, k_pad, v_pad, *((global_k, global_v) if with_global else ()))


# Rows of the "rows" loop that a graph runs at once (`tf.map_fn`'s parallel_iterations; its default in a graph is
# 10). Each row in flight holds its blocks' scores, probabilities and dropout mask (~10 MB each per row at n = 4096):
# with 10 in flight a checkpointed longformer-base training step at n = 4096 on 2 cores peaked above a plain one
# (4494 MB against 4333 above the weights); with 2, 2535 MB (3937 without checkpointing), the step's time within 5%
# (with 1, ~8% slower).
ROWS_IN_FLIGHT = 2


def _band_rows(q_pad, k_pad, v_pad, band_bias, key_bias, w, block, dropout, seed, with_lse, return_probs):
    """The "rows" strategy: `tf.map_fn` over (batch, head) rows, all blocks of a row at once."""
    B, Nq, nh, hd = _dim(q_pad, 0), _dim(q_pad, 1), q_pad.shape[2], q_pad.shape[3]
    width = band_bias.shape[1]  # keys a block sees: its own and the band's span
    empty = tf.zeros([0], band_bias.dtype)  # map_fn returns tensors only: a placeholder for what is not asked

    def rows(x):  # (B, P, nh, hd) -> (B * nh, P, 1, hd): one row per (batch, head)
        return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [B * nh, -1, 1, hd])

    def one_row(args):
        row, q_r, k_r, v_r = args
        o, l_, p = _band_blocks(tf.reshape(q_r, [-1, block, hd]), _key_windows(k_r[None], block, width)[0, 0],
                                _key_windows(v_r[None], block, width)[0, 0], band_bias, key_bias[row // nh], w,
                                dropout, None if seed is None else tf.random.experimental.stateless_fold_in(seed, row),
                                with_lse, return_probs)
        return o, empty if l_ is None else l_, empty if p is None else tf.cast(p, band_bias.dtype)

    spec = (tf.TensorSpec(None, q_pad.dtype), tf.TensorSpec(None, band_bias.dtype),
            tf.TensorSpec(None, band_bias.dtype))
    out, lse, probs = tf.map_fn(one_row, (tf.range(B * nh), rows(q_pad), rows(k_pad), rows(v_pad)),
                                fn_output_signature=spec, parallel_iterations=ROWS_IN_FLIGHT)
    out = tf.transpose(tf.reshape(out, [B, nh, Nq, hd]), [0, 2, 1, 3])
    lse = tf.reshape(lse, [B, nh, Nq, 1]) if with_lse else None
    return out, lse, tf.cast(tf.reshape(probs, [B, nh, Nq, 2 * w + 1]), q_pad.dtype) if return_probs else None


def _band_batched(q_pad, k_pad, v_pad, band_bias, key_bias, w, block, dropout, seed, with_lse, return_probs):
    """The "batched" strategy: every block of every (batch, head) row in one contraction."""
    B, Nq, nh, hd = _dim(q_pad, 0), _dim(q_pad, 1), q_pad.shape[2], q_pad.shape[3]
    width = band_bias.shape[1]  # keys a block sees: its own and the band's span
    q_blk = tf.transpose(tf.reshape(q_pad, [B, -1, block, nh, hd]), [0, 3, 1, 2, 4])  # B nh nblk b hd
    out, lse, p = _band_blocks(q_blk, _key_windows(k_pad, block, width), _key_windows(v_pad, block, width),
                               band_bias, key_bias[:, None], w, dropout, seed, with_lse, return_probs)
    out = tf.reshape(tf.transpose(out, [0, 2, 3, 1, 4]), [B, Nq, nh, hd])
    lse = None if lse is None else tf.reshape(lse, [B, nh, Nq, 1])
    return out, lse, None if p is None else tf.reshape(p, [B, nh, Nq, 2 * w + 1])


def _band_blocks(q_blk, k_win, v_win, band_bias, key_bias, w, dropout, seed, with_lse, return_probs):
    """One step of either strategy: blocks of queries `(..., b, hd)` against their key windows `(..., width,
    hd)`. Returns the blocks' context `(..., b, hd)`, log-sum-exps `(..., b, 1)` (if `with_lse`) and
    probabilities by offset `(..., b, 2w + 1)` (if `return_probs`)."""
    # Two small additive masks instead of one per block and row: the band's corners (the same for every block)
    # and the keys a block's window may not see (padding, global, beyond the ends), summed before they meet the
    # scores (TensorFlow runs each elementwise op as a pass over them). A key outside both gets minimum + minimum
    # = -inf, which softmax takes as well: every row has in-band columns.
    scores = tf.cast(tf.matmul(q_blk, k_win, transpose_b=True), band_bias.dtype) + (key_bias + band_bias)
    p = tf.nn.softmax(scores)                                                         # fused, in at least float32
    # The log-normaliser is max(score) - log(max(p)): exact, since max(p) >= 1 / width.
    lse = (tf.reduce_max(scores, -1, keepdims=True) - tf.math.log(tf.reduce_max(p, -1, keepdims=True))
           if with_lse else None)
    p = _dropout(tf.cast(p, q_blk.dtype), dropout, seed)
    return tf.matmul(p, v_win), lse, _relative_columns(p, w) if return_probs else None


def _merge_global(q, context, band_lse, band_probs, global_k, global_v, slot_bias, dropout, seed):
    """The global slots join every local row's softmax through log-sum-exps: the band's scores are never
    concatenated or copied, its context and probabilities are rescaled by their share of the total. Returns the
    context, the probabilities (if given) and each row's log-sum-exp over all its keys."""
    acc = band_lse.dtype
    global_scores = _global_scores(q, global_k, slot_bias, acc)                        # B nh N G
    global_lse = tf.reduce_logsumexp(global_scores, axis=-1, keepdims=True)
    total = tf.maximum(band_lse, global_lse) + tf.math.log1p(tf.exp(-tf.abs(band_lse - global_lse)))
    share = tf.cast(tf.exp(band_lse - total), q.dtype)                                # B nh N 1
    global_p = _dropout(tf.cast(tf.exp(global_scores - total), q.dtype), dropout, seed)
    context = (tf.einsum("bhng,bhgd->bnhd", global_p, tf.cast(global_v, q.dtype))
               + context * tf.transpose(share, [0, 2, 1, 3]))
    if band_probs is not None:
        band_probs = tf.concat([global_p, band_probs * share], axis=-1)
    return context, band_probs, total


def _global_scores(q, global_k, slot_bias, acc):
    scores = tf.cast(tf.einsum("bnhd,bhgd->bhng", q, tf.cast(global_k, q.dtype)), acc)
    return scores + slot_bias[:, None, None, :]


# ------------------------------------------------------------------------------- the band's own backward
def _band_rows_backward(q_pad, k_pad, v_pad, band_bias, key_bias, lse, delta, d_out, block, dropout, seed):
    """Gradients of q, k, v (in the softmax dtype) for the "rows" strategy: `tf.map_fn` over rows, as the
    forward."""
    B, Nq, nh, hd = _dim(q_pad, 0), _dim(q_pad, 1), q_pad.shape[2], q_pad.shape[3]
    width = band_bias.shape[1]
    acc = lse.dtype

    def rows(x):  # (B, P, nh, hd) -> (B * nh, P, 1, hd)
        return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [B * nh, -1, 1, hd])

    def one_row(args):
        row, q_r, k_r, v_r, do_r, lse_r, delta_r = args
        dq, dk_win, dv_win = _band_blocks_backward(
            tf.reshape(q_r, [-1, block, hd]), _key_windows(k_r[None], block, width)[0, 0],
            _key_windows(v_r[None], block, width)[0, 0], band_bias, key_bias[row // nh],
            tf.reshape(lse_r, [-1, block, 1]), tf.reshape(delta_r, [-1, block, 1]), tf.reshape(do_r, [-1, block, hd]),
            dropout, None if seed is None else tf.random.experimental.stateless_fold_in(seed, row))
        return (tf.reshape(dq, [-1, hd]), tf.reshape(_add_windows(dk_win, block, 0), [-1, hd]),
                tf.reshape(_add_windows(dv_win, block, 0), [-1, hd]))

    spec = (tf.TensorSpec(None, acc),) * 3
    dq, dk, dv = tf.map_fn(one_row, (tf.range(B * nh), rows(q_pad), rows(k_pad), rows(v_pad), rows(d_out),
                                     tf.reshape(lse, [B * nh, Nq]), tf.reshape(delta, [B * nh, Nq])),
                           fn_output_signature=spec, parallel_iterations=ROWS_IN_FLIGHT)

    def back(x):  # (B * nh, P, hd) -> (B, P, nh, hd)
        return tf.transpose(tf.reshape(x, [B, nh, -1, hd]), [0, 2, 1, 3])

    return back(dq), back(dk), back(dv)


def _band_batched_backward(q_pad, k_pad, v_pad, band_bias, key_bias, lse, delta, d_out, block, dropout, seed):
    """Gradients of q, k, v (in the softmax dtype) for the "batched" strategy: one contraction, as the forward."""
    B, nh, hd = _dim(q_pad, 0), q_pad.shape[2], q_pad.shape[3]
    width = band_bias.shape[1]

    def blocks(x):  # (B, Nq, nh, hd) -> (B, nh, nblk, b, hd)
        return tf.transpose(tf.reshape(x, [B, -1, block, nh, hd]), [0, 3, 1, 2, 4])

    dq, dk_win, dv_win = _band_blocks_backward(
        blocks(q_pad), _key_windows(k_pad, block, width), _key_windows(v_pad, block, width), band_bias,
        key_bias[:, None], tf.reshape(lse, [B, nh, -1, block, 1]), tf.reshape(delta, [B, nh, -1, block, 1]),
        blocks(d_out), dropout, seed)

    def back(x):  # (B, nh, nchunks, b, hd) -> (B, P, nh, hd)
        return tf.reshape(tf.transpose(x, [0, 2, 3, 1, 4]), [B, -1, nh, hd])

    return back(dq), back(_add_windows(dk_win, block, 2)), back(_add_windows(dv_win, block, 2))


def _band_blocks_backward(q_blk, k_win, v_win, band_bias, key_bias, lse, delta, d_out, dropout, seed):
    """One step's gradients: the probabilities recomputed from the scores and the row's log-sum-exp (over all
    its keys, so they are the merged ones), dS = P * (dP - delta). Returns dq `(..., b, hd)` and the gradients of
    the key and value windows `(..., width, hd)`, in the softmax dtype; the dropout masks are `_band_blocks'`."""
    acc = band_bias.dtype
    scores = tf.cast(tf.matmul(q_blk, k_win, transpose_b=True), acc) + (key_bias + band_bias)
    p = tf.exp(scores - lse)
    dp = tf.cast(tf.matmul(d_out, v_win, transpose_b=True), acc)
    p_used = p
    if dropout > 0:
        keep = tf.cast(_dropout(tf.ones_like(p, q_blk.dtype), dropout, _after(seed, p)), acc)  # the forward's, scaled
        dp, p_used = dp * keep, p * keep
    ds = tf.cast(p * (dp - delta), q_blk.dtype)
    dq = tf.cast(tf.matmul(ds, k_win), acc)
    dk = tf.cast(tf.matmul(ds, q_blk, transpose_a=True), acc)
    dv = tf.cast(tf.matmul(tf.cast(p_used, d_out.dtype), d_out, transpose_a=True), acc)
    return dq, dk, dv


def _merge_global_backward(q_pad, global_k, global_v, slot_bias, lse, delta, d_out, dropout, seed):
    """Gradients through the global slots' columns: dq's share, and those of the slots' keys and values."""
    acc = lse.dtype
    p = tf.exp(_global_scores(q_pad, global_k, slot_bias, acc) - lse)                 # B nh Nq G
    dp = tf.cast(tf.einsum("bnhd,bhgd->bhng", d_out, tf.cast(global_v, d_out.dtype)), acc)
    p_used = p
    if dropout > 0:
        keep = tf.cast(_dropout(tf.ones_like(p, q_pad.dtype), dropout, _after(seed, p)), acc)
        dp, p_used = dp * keep, p * keep
    ds = tf.cast(p * (dp - delta), q_pad.dtype)
    dq = tf.cast(tf.einsum("bhng,bhgd->bnhd", ds, tf.cast(global_k, ds.dtype)), acc)
    d_global_k = tf.cast(tf.einsum("bhng,bnhd->bhgd", ds, q_pad), global_k.dtype)
    d_global_v = tf.cast(tf.einsum("bhng,bnhd->bhgd", tf.cast(p_used, d_out.dtype), d_out), global_v.dtype)
    return dq, d_global_k, d_global_v


def _add_windows(windows: tf.Tensor, block: int, axis: int) -> tf.Tensor:
    """Gradients of the key windows `(..., nblk, width, hd)` (block j's window is chunks j .. j + width/block - 1
    of the padded rows) summed into the chunks `(..., nchunks, block, hd)`, along the block `axis`."""
    shifts = windows.shape[-2] // block
    rank = len(windows.shape)
    total = 0
    for s in range(shifts):
        part = windows[..., s * block:(s + 1) * block, :]
        pad = [[0, 0]] * rank
        pad[axis] = [s, shifts - 1 - s]
        total = total + tf.pad(part, pad)
    return total


def _pad_rows(x: tf.Tensor, before, after) -> tf.Tensor:
    """Zero rows before and after along the sequence (axis 1)."""
    return tf.pad(x, [[0, 0], [before, after]] + [[0, 0]] * (len(x.shape) - 2))


def _key_windows(x_pad: tf.Tensor, block: int, width: int) -> tf.Tensor:
    """`(B, P, nh, hd)` padded rows -> `(B, nh, nblk, width, hd)`: block j sees rows [j*block, j*block + width).

    TensorFlow has no overlapping views: `width - block` is a multiple of `block`, so each window is
    `width // block` consecutive `block`-row chunks, concatenated."""
    nh, hd = x_pad.shape[2], x_pad.shape[3]
    chunks = tf.reshape(tf.transpose(x_pad, [0, 2, 1, 3]), [_dim(x_pad, 0), nh, -1, block, hd])
    shifts = width // block
    n_blocks = _dim(chunks, 2) - shifts + 1
    return tf.concat([chunks[:, :, s:s + n_blocks] for s in range(shifts)], axis=3)


def _band_bias(key_valid: tf.Tensor, w: int, block: int, span, tail, dtype):
    """The band's additive masks: `(b, width)` for the band's corners (the same in every block) and `(B, nblk, 1,
    width)` for the keys each block's window may not see (padding, global tokens, beyond the ends)."""
    width = block + span
    offset = tf.range(width)[None, :] - tf.range(block)[:, None]
    band_bias = _additive_bias((offset >= 0) & (offset <= 2 * w), dtype)
    key_valid = tf.pad(key_valid, [[0, 0], [w, span - w + tail]])
    key_bias = _additive_bias(_key_windows(key_valid[:, :, None, None], block, width)[:, 0, :, :, 0], dtype)
    return band_bias, key_bias[:, :, None, :]


def _dropout(x: tf.Tensor, rate: float, seed: tf.Tensor | None) -> tf.Tensor:
    """Inverted dropout with a stateless Philox mask drawn from `seed` (the identity at rate 0). Philox by name:
    the default ("auto_select") compiles under XLA on CPU to a generator ~30x slower (one layer's band mask at
    n = 4096, 31M values: 7.2 s against 0.22 s; eagerly 0.10 s either way)."""
    if rate == 0.0:
        return x
    if seed is None:
        raise ValueError("dropout in training needs a seed (a [2] integer tensor).")
    return tf.nn.experimental.stateless_dropout(x, rate=rate, seed=_after(seed, x), rng_alg="philox")


def _after(seed: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """`seed` (as int64), available once `x` is: plus a zero computed from x (no value is both NaN and finite). A
    mask drawn from its seed alone has no input to wait for: graph executors and XLA draw every layer's when the
    step starts, and hold them all until used."""
    x0 = tf.reshape(x, [-1])[0]
    return tf.cast(seed, tf.int64) + tf.cast(tf.math.is_nan(x0) & tf.math.is_finite(x0), tf.int64)


def _split(seed: tf.Tensor) -> tf.Tensor:
    """Two independent `[2]` seeds from one."""
    return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)


def _additive_bias(allowed: tf.Tensor, dtype) -> tf.Tensor:
    """0 where allowed, the dtype minimum elsewhere (a score plus the minimum stays the minimum: probability 0)."""
    return tf.where(allowed, tf.zeros((), dtype), tf.constant(mask_value(dtype), dtype))


def _relative_columns(p: tf.Tensor, w: int) -> tf.Tensor:
    """(…, b, width) block probabilities -> (…, b, 2w + 1) by offset -w..w: row r's band starts at column r."""
    b = p.shape[-2]
    index = tf.range(b)[:, None] + tf.range(2 * w + 1)[None, :]                      # b 2w+1
    rows_first = tf.experimental.numpy.moveaxis(p, -2, 0)                             # b … width
    picked = tf.gather(rows_first, index, axis=-1, batch_dims=1)                      # b … 2w+1
    return tf.experimental.numpy.moveaxis(picked, 0, -2)


def global_rows(h: tf.Tensor, slot_position: tf.Tensor, slot_valid: tf.Tensor, key_valid: tf.Tensor,
                query, key, value, num_heads: int, scale: float, *, dropout: float = 0.0,
                training: bool = False, seed: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """Attention of the global tokens (with the `*_global` projections) over every non-padding key.

    Args:
        h: `(B, N, H)` hidden states; slot_position, slot_valid: `(B, G)` from `global_slots`.
        key_valid: `(B, N)` bool, keys that are not padding.
        query, key, value: the layer's `query_global`, `key_global`, `value_global` (`keras.layers.Dense`).
    Returns:
        context `(B, G, nh, hd)` and probabilities `(B, nh, G, N)` (filler slots: uniform rows).
    """
    B, N, H = _dim(h, 0), _dim(h, 1), h.shape[2]
    G = _dim(slot_position, 1)
    nh, hd = num_heads, H // num_heads
    h_glob = tf.gather(h, slot_position, axis=1, batch_dims=1)                        # B G H
    q = tf.reshape(query(h_glob) * scale, [B, G, nh, hd])
    reassociate = isinstance(G, int) and G * nh <= H
    if reassociate:
        # q . (Wk x + bk) = (Wk^T q) . x + q . bk: no key projection over all N tokens.
        wk = tf.reshape(tf.cast(key.kernel, h.dtype), [H, nh, hd])
        u = tf.reshape(tf.einsum("bgnd,ind->bgni", q, wk), [B, G * nh, H])
        scores = tf.transpose(tf.reshape(tf.matmul(h, u, transpose_b=True), [B, N, G, nh]), [0, 3, 2, 1])
        scores = scores + tf.einsum("bgnd,nd->bng", q, tf.reshape(tf.cast(key.bias, h.dtype), [nh, hd]))[..., None]
    else:
        k = tf.reshape(key(h), [B, N, nh, hd])
        scores = tf.einsum("bgnd,bjnd->bngj", q, k)
    allowed = slot_valid[:, None, :, None] & key_valid[:, None, None, :]             # B 1 G N
    # Filler slots have no allowed key: every score is the minimum and the row comes out uniform.
    acc = softmax_dtype(h.dtype)
    scores = tf.where(allowed, tf.cast(scores, acc), tf.constant(mask_value(acc), acc))
    p = tf.cast(tf.nn.softmax(scores, axis=-1), h.dtype)
    p = _dropout(p, dropout if training else 0.0, seed)
    if reassociate:
        # sum_j p_j (Wv x_j + bv) = (P x) Wv^T + (sum_j p_j) bv.
        px = tf.reshape(tf.matmul(tf.reshape(p, [B, nh * G, N]), h), [B, nh, G, H])
        context = tf.einsum("bngi,ind->bgnd", px, tf.reshape(tf.cast(value.kernel, h.dtype), [H, nh, hd]))
        context = context + (tf.transpose(tf.reduce_sum(p, -1), [0, 2, 1])[..., None]
                             * tf.reshape(tf.cast(value.bias, h.dtype), [nh, hd]))
    else:
        v = tf.reshape(value(h), [B, N, nh, hd])
        context = tf.einsum("bngj,bjnd->bgnd", p, v)
    return context, p


def scatter_global_rows(local: tf.Tensor, global_context: tf.Tensor, slot_position: tf.Tensor,
                        slot_valid: tf.Tensor) -> tf.Tensor:
    """Overwrite the rows of global tokens in `local` `(B, N, H)` with `global_context` `(B, G, H)`."""
    # Slot positions are distinct; filler slots point at local rows, which are written back unchanged.
    values = tf.where(slot_valid[:, :, None], tf.cast(global_context, local.dtype),
                      tf.gather(local, slot_position, axis=1, batch_dims=1))
    B, G = _dim(slot_position, 0), _dim(slot_position, 1)
    batch = tf.broadcast_to(tf.range(B)[:, None], [B, G])
    return tf.tensor_scatter_nd_update(local, tf.stack([batch, slot_position], axis=-1), values)


_BAND = {"rows": _band_rows, "batched": _band_batched}
_BAND_BACKWARD = {"rows": _band_rows_backward, "batched": _band_batched_backward}
