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
# (which TF reports as "excessive retracing"). Inside an outer tf.function / XLA each is inlined.
_BAND_GRAPHS: dict[tuple, Any] = {}


def band_attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, key_valid: tf.Tensor, w: int, block: int, *,
                   global_k: tf.Tensor | None = None, global_v: tf.Tensor | None = None,
                   slot_valid: tf.Tensor | None = None, dropout: float = 0.0, training: bool = False,
                   return_probs: bool = False) -> tuple[tf.Tensor, tf.Tensor | None]:
    """`_band_attention` as a graph, one per static setting (see above)."""
    static = dict(w=w, block=block, dropout=dropout, training=bool(training), return_probs=return_probs)
    key = (*static.values(), global_k is None, q.shape[2], q.shape[3])  # heads and head size stay static too
    if key not in _BAND_GRAPHS:
        _BAND_GRAPHS[key] = tf.function(functools.partial(_band_attention, **static), autograph=False,
                                        reduce_retracing=True)
    return _BAND_GRAPHS[key](q, k, v, key_valid, global_k=global_k, global_v=global_v, slot_valid=slot_valid)


def _band_attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, key_valid: tf.Tensor, w: int, block: int, *,
                    global_k: tf.Tensor | None = None, global_v: tf.Tensor | None = None,
                    slot_valid: tf.Tensor | None = None, dropout: float = 0.0, training: bool = False,
                    return_probs: bool = False) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Each query attends to the keys within `w` positions that are valid, plus the global slots.

    Args:
        q, k, v: `(B, N, nh, hd)` (the projections' own layout); `q` already scaled.
        key_valid: `(B, N)` bool, keys a local row may see in its window (not padding, not global).
        w: one-sided window; block: query rows per block (see `semantics.band_block`).
        global_k, global_v: `(B, nh, G, hd)` local keys/values of the global tokens (optional).
        slot_valid: `(B, G)` bool, which slots hold a real global token.
    Returns:
        context `(B, N, nh, hd)` and, if `return_probs`, probabilities `(B, nh, N, G + 2w + 1)`: global slot columns,
        then relative offsets -w..w.
    """
    B, N, nh, hd = _dim(q, 0), _dim(q, 1), q.shape[2], q.shape[3]
    has_global = global_k is not None
    n_blocks = -(-N // block)
    tail = n_blocks * block - N
    span = -(-2 * w // block) * block  # the band's 2w keys beyond a block's own, rounded up to whole blocks
    width = block + span  # keys a block of queries can see (the columns past 2w are masked)
    acc = softmax_dtype(q.dtype)
    offset = tf.range(width)[None, :] - tf.range(block)[:, None]
    in_band = (offset >= 0) & (offset <= 2 * w)                                       # b width
    valid_win = _key_windows(tf.pad(key_valid, [[0, 0], [w, span - w + tail]])[:, :, None], block, width)[..., 0]
    bias = _additive_bias(in_band[None, None] & valid_win[:, :, None, :], acc)          # B nblk b width

    # (batch, head) rows: (B * nh, rows, hd); keys/values padded by w before and the rest of the span after (plus
    # the query tail), so query i sees padded keys i .. i + 2w.
    def rows(x, before, after):
        return _pad_rows(tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [-1, N, hd]), before, after)

    q_blk = tf.reshape(rows(q, 0, tail), [-1, n_blocks, block, hd])
    k_win = _key_windows(rows(k, w, span - w + tail), block, width)                   # B*nh nblk width hd
    v_win = _key_windows(rows(v, w, span - w + tail), block, width)
    scores = tf.cast(tf.matmul(q_blk, k_win, transpose_b=True), acc)                  # B*nh nblk b width
    scores = tf.reshape(scores, [B, nh, n_blocks, block, width]) + bias[:, None]
    p, band_lse = _softmax_and_lse(scores)                                            # in at least float32
    p = tf.cast(p, q.dtype)
    if training and dropout > 0:
        p = tf.nn.dropout(p, rate=dropout)
    out = tf.matmul(tf.reshape(p, [-1, n_blocks, block, width]), v_win)               # B*nh nblk b hd
    context = tf.transpose(tf.reshape(out, [B, nh, n_blocks * block, hd])[:, :, :N], [0, 2, 1, 3])  # B N nh hd
    band_probs = None
    if return_probs:
        band_probs = tf.reshape(_relative_columns(p, w), [B, nh, n_blocks * block, 2 * w + 1])[:, :, :N]
    if not has_global:
        return context, band_probs

    # The global slots join every row's softmax through log-sum-exps: the band's scores are never concatenated,
    # its context is rescaled by its share of the total.
    global_scores = tf.cast(tf.einsum("bnhd,bhgd->bhng", q, tf.cast(global_k, q.dtype)), acc)
    global_scores = global_scores + _additive_bias(slot_valid, acc)[:, None, None, :]       # B nh N G
    band_lse = tf.reshape(band_lse, [B, nh, n_blocks * block, 1])[:, :, :N]           # B nh N 1
    global_lse = tf.reduce_logsumexp(global_scores, axis=-1, keepdims=True)
    total = tf.maximum(band_lse, global_lse) + tf.math.log1p(tf.exp(-tf.abs(band_lse - global_lse)))
    band_share = tf.cast(tf.exp(band_lse - total), q.dtype)
    global_p = tf.cast(tf.exp(global_scores - total), q.dtype)
    if training and dropout > 0:
        global_p = tf.nn.dropout(global_p, rate=dropout)
    global_context = tf.einsum("bhng,bhgd->bnhd", global_p, tf.cast(global_v, q.dtype))  # B N nh hd
    context = global_context + context * tf.transpose(band_share, [0, 2, 1, 3])
    if return_probs:
        band_probs = tf.concat([global_p, band_probs * band_share], axis=-1)
    return context, band_probs


def _pad_rows(x: tf.Tensor, before, after) -> tf.Tensor:
    """Zero rows before and after along the sequence (axis 1)."""
    return tf.pad(x, [[0, 0], [before, after]] + [[0, 0]] * (len(x.shape) - 2))


def _key_windows(x_pad: tf.Tensor, block: int, width: int) -> tf.Tensor:
    """`(R, P, d)` padded rows -> `(R, nblk, width, d)`: block j sees rows [j*block, j*block + width).

    `width - block` is a multiple of `block`, so each window is `width // block` consecutive chunks."""
    d = x_pad.shape[2]
    chunks = tf.reshape(x_pad, [_dim(x_pad, 0), -1, block, d])
    shifts = width // block
    n_blocks = _dim(chunks, 1) - shifts + 1
    return tf.concat([chunks[:, s:s + n_blocks] for s in range(shifts)], axis=2)


def _additive_bias(allowed: tf.Tensor, dtype) -> tf.Tensor:
    """0 where allowed, the dtype minimum elsewhere (a score plus the minimum stays the minimum: probability 0)."""
    return tf.where(allowed, tf.zeros((), dtype), tf.constant(mask_value(dtype), dtype))


def _softmax_and_lse(scores: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Softmax over the last axis and its log-normaliser (log-sum-exp), in one pass."""
    top = tf.stop_gradient(tf.reduce_max(scores, axis=-1, keepdims=True))
    e = tf.exp(scores - top)
    total = tf.reduce_sum(e, axis=-1, keepdims=True)
    return e / total, top + tf.math.log(total)


def _relative_columns(p: tf.Tensor, w: int) -> tf.Tensor:
    """(…, b, b + 2w) block probabilities -> (…, b, 2w + 1) by offset -w..w: row r's band starts at column r."""
    b = p.shape[-2]
    index = tf.range(b)[:, None] + tf.range(2 * w + 1)[None, :]                      # b 2w+1
    rows_first = tf.experimental.numpy.moveaxis(p, -2, 0)                             # b … b+2w
    picked = tf.gather(rows_first, index, axis=-1, batch_dims=1)                      # b … 2w+1
    return tf.experimental.numpy.moveaxis(picked, 0, -2)


def global_rows(h: tf.Tensor, slot_position: tf.Tensor, slot_valid: tf.Tensor, key_valid: tf.Tensor,
                query, key, value, num_heads: int, scale: float, *, dropout: float = 0.0,
                training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
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
    if training and dropout > 0:
        p = tf.nn.dropout(p, rate=dropout)
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
