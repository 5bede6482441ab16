"""Longformer attention (sliding window + global tokens) as pure functions on jax arrays.

The same algorithm as `longformer/pt/attention.py` and `longformer/tf/attention.py`, function for function
(docs/attention.md):

- Local rows use a *blocked band*: queries are taken `block` rows at a time and each block is multiplied with the
  `block + 2w` keys it can see (rounded up to whole blocks), cut out by an additive bias (0 or the dtype minimum);
  nothing of size N x N exists. XLA has no overlapping views: a block's keys are `width // block` parts, each a
  sequence of `block`-row chunks (`_key_windows`), and the softmax runs over the parts.
- The loop over blocks is a parameter (`strategy`): "rows" maps over (batch, head) rows with `lax.map`, "batched"
  runs every block of every row in one contraction.
- Global tokens sit in `G` static slots (`global_slots`). Local rows see them as `G` extra key columns (with the
  *local* keys and values of those tokens), merged into the band's softmax by log-sum-exps; global rows are a small
  dense attention with the `*_global` projections (`global_rows`) that overwrites the local result at those rows.
- Global rows never project keys and values of all N tokens when `G * nh <= H`: `q . (Wk x + bk)` is computed as
  `(Wk^T q) . x + q . bk`, and the context as `(P x) Wv^T + (sum P) bv`.

Shapes: B batch, N length, nh heads, hd head size, H hidden, w = W/2 one-sided window, G global slots.
Every shape is static given (B, N, W, G) and nothing branches on values: the functions trace once under `jax.jit`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .. import semantics


def mask_value(dtype) -> float:
    """Score of a key that must get probability exactly 0 (the dtype minimum; -inf would turn empty rows to NaN)."""
    return float(jnp.finfo(dtype).min)


def softmax_dtype(dtype):
    """Softmax runs in at least float32 (fp16/bf16 scores are widened, float64 stays float64)."""
    return jnp.promote_types(dtype, jnp.float32)


def global_slots(is_global: jax.Array, num_slots: int) -> tuple[jax.Array, jax.Array]:
    """Positions of each row's global tokens, in order, in `num_slots` slots.

    Args:
        is_global: `(B, N)` bool.
        num_slots: G, at least the largest number of global tokens in a row.
    Returns:
        slot_position `(B, G)` int32 (filler slots point at some non-global position) and slot_valid `(B, G)` bool.
    """
    # A stable sort of "not global" puts each row's global positions first, in increasing order.
    order = jnp.argsort((~is_global).astype(jnp.int8), axis=1, stable=True)
    slot_position = order[:, :num_slots]
    count = is_global.sum(axis=1, keepdims=True)
    slot_valid = jnp.arange(num_slots)[None, :] < count
    return slot_position, slot_valid


def band_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_valid: jax.Array, w: int, block: int, *,
                   global_k: jax.Array | None = None, global_v: jax.Array | None = None,
                   slot_valid: jax.Array | None = None, dropout: float = 0.0, dropout_key: jax.Array | None = None,
                   return_probs: bool = False, strategy: str = "rows") -> tuple[jax.Array, jax.Array | None]:
    """Each query attends to the keys within `w` positions that are valid, plus the global slots.

    Args:
        q, k, v: `(B, N, nh, hd)` (the projections' own layout); `q` already scaled.
        key_valid: `(B, N)` bool, keys a local row may see in its window (not padding, not global).
        w: one-sided window; block: query rows per block (`semantics.query_block`).
        global_k, global_v: `(B, nh, G, hd)` local keys/values of the global tokens (optional).
        slot_valid: `(B, G)` bool, which slots hold a real global token.
        dropout, dropout_key: dropout rate on the probabilities and its PRNG key (None: no dropout).
        strategy: how the blocks are looped over (`semantics.BAND_STRATEGIES`): "rows", one (batch, head) row
            at a time with `lax.map` (a row's scores, a few MB, stay in cache, where one contraction over every
            head streams ~100 MB through memory: 0.12 s vs 0.31 s per layer at n = 4096, W = 512 on CPU);
            "batched", every block of every row in one contraction (accelerators).
    Returns:
        context `(B, N, nh, hd)` and, if `return_probs`, probabilities `(B, nh, N, G + 2w + 1)`: global slot columns,
        then relative offsets -w..w.

    Without probabilities the band runs as `band_core`, whose gradient is its own (`jax.custom_vjp`): it keeps
    q, k, v, the output and each row's log-sum-exp instead of every block's probabilities.
    """
    B, N, nh, hd = q.shape
    n_blocks, tail, span = semantics.band_geometry(N, w, block)
    acc = softmax_dtype(q.dtype)
    with_lse = global_k is not None  # the band's log-normaliser, to merge the global slots
    band_key, global_key = (None, None) if dropout_key is None else jax.random.split(dropout_key)
    # Keys/values padded by w before and the rest of the span after (plus the query tail): query i sees padded
    # keys i .. i + 2w.
    q_pad = _pad_rows(q, 0, tail)                                                    # B Nq nh hd
    k_pad = _pad_rows(k, w, span - w + tail)                                         # B Nq+span nh hd
    v_pad = _pad_rows(v, w, span - w + tail)
    band_bias, key_bias = _band_bias(key_valid, w, block, span, tail, acc)            # b width, B nblk 1 width
    if not return_probs:
        slot_bias = None if global_k is None else _additive_bias(slot_valid, acc)
        keys = None if dropout_key is None or dropout == 0.0 else (band_key, global_key)
        context = band_core(q_pad, k_pad, v_pad, global_k, global_v, band_bias, key_bias, slot_bias, keys, w, block,
                            strategy, float(dropout))
        return context[:, :N], None
    run = _BAND[strategy]
    context, band_lse, band_probs = run(q_pad, k_pad, v_pad, band_bias, key_bias, w, block, dropout, band_key,
                                        with_lse, return_probs)
    context = context[:, :N]                                                          # B N nh hd
    band_lse = None if band_lse is None else band_lse[:, :, :N]                       # B nh N 1
    band_probs = None if band_probs is None else band_probs[:, :, :N]                 # B nh N 2w+1
    if global_k is None:
        return context, band_probs
    context, band_probs, _ = _merge_global(q, context, band_lse, band_probs, global_k, global_v,
                                           _additive_bias(slot_valid, acc), dropout, global_key)
    return context, band_probs


def _band_forward(q_pad, k_pad, v_pad, global_k, global_v, band_bias, key_bias, slot_bias, keys, w, block, strategy,
                  dropout):
    """The band and the global slots' columns on padded rows: (context, each row's log-sum-exp over all its keys)."""
    band_key, global_key = (None, None) if keys is None else keys
    context, lse, _ = _BAND[strategy](q_pad, k_pad, v_pad, band_bias, key_bias, w, block, dropout, band_key, True,
                                      False)
    if global_k is not None:
        context, _, lse = _merge_global(q_pad, context, lse, None, global_k, global_v, slot_bias, dropout,
                                        global_key)
    return context, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(9, 10, 11, 12))
def band_core(q_pad, k_pad, v_pad, global_k, global_v, band_bias, key_bias, slot_bias, keys, w, block, strategy,
              dropout):
    """`_band_forward`'s context, with a flash-attention-style gradient: the forward keeps the padded q, k, v,
    the global slots' keys and values, the output and each row's log-sum-exp; the backward recomputes each block's
    probabilities from them, with the same dropout masks (drawn again from the same keys)."""
    return _band_forward(q_pad, k_pad, v_pad, global_k, global_v, band_bias, key_bias, slot_bias, keys, w, block,
                         strategy, dropout)[0]


def _band_core_fwd(q_pad, k_pad, v_pad, global_k, global_v, band_bias, key_bias, slot_bias, keys, w, block, strategy,
                   dropout):
    context, lse = _band_forward(q_pad, k_pad, v_pad, global_k, global_v, band_bias, key_bias, slot_bias, keys, w,
                                 block, strategy, dropout)
    return context, (q_pad, k_pad, v_pad, global_k, global_v, band_bias, key_bias, slot_bias, keys, context, lse)


def _band_core_bwd(w, block, strategy, dropout, saved, d_context):
    q_pad, k_pad, v_pad, global_k, global_v, band_bias, key_bias, slot_bias, keys, context, lse = saved
    band_key, global_key = (None, None) if keys is None else keys
    acc = lse.dtype
    # delta_i = sum_j P_ij dP_ij over all of row i's keys (band and global) = dO_i . O_i.
    delta = jnp.swapaxes((d_context.astype(acc) * context.astype(acc)).sum(-1), 1, 2)[..., None]   # B nh Nq 1
    dq, dk, dv = _BAND_BACKWARD[strategy](q_pad, k_pad, v_pad, band_bias, key_bias, lse, delta, d_context, block,
                                          dropout, band_key)
    d_global_k = d_global_v = None
    if global_k is not None:
        dq_global, d_global_k, d_global_v = _merge_global_backward(q_pad, global_k, global_v, slot_bias, lse, delta,
                                                                   d_context, dropout, global_key)
        dq = dq + dq_global
    return (dq.astype(q_pad.dtype), dk.astype(k_pad.dtype), dv.astype(v_pad.dtype), d_global_k, d_global_v,
            None, None, None, None)


band_core.defvjp(_band_core_fwd, _band_core_bwd)


def _band_rows(q_pad, k_pad, v_pad, band_bias, key_bias, w, block, dropout, dropout_key, with_lse, return_probs):
    """The "rows" strategy: `lax.map` over (batch, head) rows, all blocks of a row at once."""
    B, Nq, nh, hd = q_pad.shape
    width = band_bias.shape[1]  # keys a block sees: its own and the band's span

    def rows(x):  # (B, P, nh, hd) -> (B * nh, P, 1, hd): one row per (batch, head)
        return x.transpose(0, 2, 1, 3).reshape(B * nh, -1, 1, hd)

    keys = None if dropout_key is None else jax.random.split(dropout_key, B * nh)

    def one_row(args):
        row, q_r, k_r, v_r, key = args
        o, l_, p = _band_blocks(q_r.reshape(-1, block, hd), [x[0, 0] for x in _key_windows(k_r[None], block, width)],
                                [x[0, 0] for x in _key_windows(v_r[None], block, width)], band_bias,
                                key_bias[row // nh], w, dropout, key, with_lse, return_probs)
        return o.reshape(Nq, hd), None if l_ is None else l_.reshape(Nq, 1), None if p is None else p.reshape(Nq, -1)

    out, lse, probs = jax.lax.map(one_row, (jnp.arange(B * nh), rows(q_pad), rows(k_pad), rows(v_pad), keys))
    out = out.reshape(B, nh, Nq, hd).transpose(0, 2, 1, 3)
    lse = None if lse is None else lse.reshape(B, nh, Nq, 1)
    return out, lse, None if probs is None else probs.reshape(B, nh, Nq, -1)


def _band_batched(q_pad, k_pad, v_pad, band_bias, key_bias, w, block, dropout, dropout_key, with_lse, return_probs):
    """The "batched" strategy: every block of every (batch, head) row in one contraction."""
    B, Nq, nh, hd = q_pad.shape
    width = band_bias.shape[1]  # keys a block sees: its own and the band's span
    q_blk = q_pad.reshape(B, Nq // block, block, nh, hd).transpose(0, 3, 1, 2, 4)    # B nh nblk b hd
    out, lse, p = _band_blocks(q_blk, _key_windows(k_pad, block, width), _key_windows(v_pad, block, width),
                               band_bias, key_bias[:, None], w, dropout, dropout_key, with_lse, return_probs)
    out = out.transpose(0, 2, 3, 1, 4).reshape(B, Nq, nh, hd)
    lse = None if lse is None else lse.reshape(B, nh, Nq, 1)
    return out, lse, None if p is None else p.reshape(B, nh, Nq, -1)


def _band_blocks(q_blk, k_parts, v_parts, band_bias, key_bias, w, dropout, dropout_key, with_lse, return_probs):
    """One step of either strategy: blocks of queries `(..., b, hd)` against their key windows, given as parts
    (`_key_windows`: consecutive `(..., b, hd)` chunks, never stacked into a copy). Returns the blocks' context
    `(..., b, hd)`, log-sum-exps `(..., b, 1)` (if `with_lse`) and probabilities by offset `(..., b, 2w + 1)` (if
    `return_probs`)."""
    acc = band_bias.dtype
    # Two small additive masks instead of one per block and row: the band's corners (the same for every block)
    # and the keys a block's window may not see (padding, global, beyond the ends). A key outside both gets
    # minimum + minimum = -inf, which softmax takes as well: every row has in-band columns.
    scores, first = [], 0
    for k in k_parts:
        cols = slice(first, first + k.shape[-2])
        scores.append(jnp.einsum("...qd,...kd->...qk", q_blk, k, preferred_element_type=acc)
                      + key_bias[..., cols] + band_bias[:, cols])
        first = cols.stop
    # The softmax over all parts (in at least float32), normalised after the product with the values: the
    # context is b x hd where the probabilities are b x width.
    top = jax.lax.stop_gradient(jnp.max(jnp.stack([x.max(-1) for x in scores]), axis=0))[..., None]
    e = [jnp.exp(x - top) for x in scores]
    total = sum(x.sum(-1, keepdims=True) for x in e)
    keys = [None] * len(e) if dropout_key is None else list(jax.random.split(dropout_key, len(e)))
    e = [_dropout(x.astype(q_blk.dtype), dropout, key) for x, key in zip(e, keys, strict=True)]
    out = sum(jnp.einsum("...qk,...kd->...qd", x, v, preferred_element_type=acc) for x, v in zip(e, v_parts,
                                                                                                 strict=True))
    out = (out / total).astype(q_blk.dtype)
    probs = _relative_columns(jnp.concatenate(e, axis=-1) / total.astype(q_blk.dtype), w) if return_probs else None
    return out, top + jnp.log(total) if with_lse else None, probs


def _merge_global(q, context, band_lse, band_probs, global_k, global_v, slot_bias, dropout, dropout_key):
    """The global slots join every local row's softmax through log-sum-exps: the band's scores are never
    concatenated or copied, its context and probabilities are rescaled by their share of the total. Returns the
    context, the probabilities (if given) and each row's log-sum-exp over all its keys."""
    acc = band_lse.dtype
    global_scores = _global_scores(q, global_k, slot_bias, acc)                        # B nh N G
    total = jnp.logaddexp(band_lse, jax.nn.logsumexp(global_scores, axis=-1, keepdims=True))
    share = jnp.exp(band_lse - total).astype(q.dtype)                                 # B nh N 1
    global_p = _dropout(jnp.exp(global_scores - total).astype(q.dtype), dropout, dropout_key)
    context = jnp.einsum("bhng,bhgd->bnhd", global_p, global_v.astype(q.dtype)) + context * jnp.swapaxes(share, 1, 2)
    if band_probs is not None:
        band_probs = jnp.concatenate([global_p, band_probs * share], axis=-1)
    return context, band_probs, total


def _global_scores(q, global_k, slot_bias, acc):
    scores = jnp.einsum("bnhd,bhgd->bhng", q, global_k.astype(q.dtype), preferred_element_type=acc)
    return scores + slot_bias[:, None, None, :]


# ------------------------------------------------------------------------------- the band's own backward
def _band_rows_backward(q_pad, k_pad, v_pad, band_bias, key_bias, lse, delta, d_out, block, dropout, dropout_key):
    """Gradients of q, k, v (in the softmax dtype) for the "rows" strategy: a loop over rows, as the forward."""
    B, Nq, nh, hd = q_pad.shape
    width = band_bias.shape[1]
    acc = lse.dtype

    def rows(x):  # (B, P, nh, hd) -> (B * nh, P, 1, hd); a jax array (an unpadded input may come in as NumPy's)
        return jnp.transpose(x, (0, 2, 1, 3)).reshape(B * nh, -1, 1, hd)

    keys = None if dropout_key is None else jax.random.split(dropout_key, B * nh)

    q_rows, k_rows, v_rows, do_rows = rows(q_pad), rows(k_pad), rows(v_pad), rows(d_out)
    lse_rows, delta_rows = lse.reshape(B * nh, Nq), delta.reshape(B * nh, Nq)

    def one_row(row, grads):
        dq, dk_parts, dv_parts = _band_blocks_backward(
            q_rows[row].reshape(-1, block, hd), [x[0, 0] for x in _key_windows(k_rows[row][None], block, width)],
            [x[0, 0] for x in _key_windows(v_rows[row][None], block, width)], band_bias, key_bias[row // nh],
            lse_rows[row].reshape(-1, block, 1), delta_rows[row].reshape(-1, block, 1),
            do_rows[row].reshape(-1, block, hd), dropout, None if keys is None else keys[row])
        row_grads = dq.reshape(Nq, hd), _add_parts(dk_parts, 0).reshape(-1, hd), _add_parts(dv_parts, 0).reshape(-1, hd)
        return tuple(g.at[row].set(r.astype(g.dtype)) for g, r in zip(grads, row_grads, strict=True))

    # The result buffers are filled with a zero computed from the incoming gradient (0 * one element): constant
    # buffers would be allocated by XLA's CPU scheduler at the start of the step, one per layer, kept to here.
    zero = 0 * d_out.reshape(-1)[0].astype(acc)
    dq, dk, dv = jax.lax.fori_loop(0, B * nh, one_row, (jnp.full((B * nh, Nq, hd), zero),
                                                        jnp.full((B * nh, k_pad.shape[1], hd), zero),
                                                        jnp.full((B * nh, v_pad.shape[1], hd), zero)))

    def back(x):  # (B * nh, P, hd) -> (B, P, nh, hd)
        return x.reshape(B, nh, -1, hd).transpose(0, 2, 1, 3).astype(acc)

    return back(dq), back(dk), back(dv)


def _band_batched_backward(q_pad, k_pad, v_pad, band_bias, key_bias, lse, delta, d_out, block, dropout, dropout_key):
    """Gradients of q, k, v (in the softmax dtype) for the "batched" strategy: one contraction, as the forward."""
    B, Nq, nh, hd = q_pad.shape
    width = band_bias.shape[1]
    n_blocks = Nq // block

    def blocks(x):  # (B, Nq, nh, hd) -> (B, nh, nblk, b, hd)
        return x.reshape(B, n_blocks, block, nh, hd).transpose(0, 3, 1, 2, 4)

    dq, dk_parts, dv_parts = _band_blocks_backward(
        blocks(q_pad), _key_windows(k_pad, block, width), _key_windows(v_pad, block, width), band_bias,
        key_bias[:, None], lse.reshape(B, nh, n_blocks, block, 1), delta.reshape(B, nh, n_blocks, block, 1),
        blocks(d_out), dropout, dropout_key)

    def back(x):  # (B, nh, nchunks, b, hd) -> (B, P, nh, hd)
        return x.transpose(0, 2, 3, 1, 4).reshape(B, -1, nh, hd)

    return back(dq), back(_add_parts(dk_parts, 2)), back(_add_parts(dv_parts, 2))


def _band_blocks_backward(q_blk, k_parts, v_parts, band_bias, key_bias, lse, delta, d_out, dropout, dropout_key):
    """One step's gradients: the probabilities recomputed from the scores and the row's log-sum-exp (over all
    its keys, so they are the merged ones), dS = P * (dP - delta). Returns dq `(..., b, hd)` and the gradients of
    the key and value parts, in the softmax dtype; the dropout masks are those of `_band_blocks` (same keys)."""
    acc = band_bias.dtype
    keys = [None] * len(k_parts) if dropout_key is None else list(jax.random.split(dropout_key, len(k_parts)))
    dq, dk_parts, dv_parts, first = 0.0, [], [], 0
    for k, v, key in zip(k_parts, v_parts, keys, strict=True):
        cols = slice(first, first + k.shape[-2])
        first = cols.stop
        scores = (jnp.einsum("...qd,...kd->...qk", q_blk, k, preferred_element_type=acc) + key_bias[..., cols]
                  + band_bias[:, cols])
        p = jnp.exp(scores - lse)
        dp = jnp.einsum("...qd,...kd->...qk", d_out, v, preferred_element_type=acc)
        p_used = p
        if key is not None:
            keep = _dropout(jnp.ones_like(p), dropout, key)  # the forward's mask, scaled
            dp, p_used = dp * keep, p * keep
        ds = (p * (dp - delta)).astype(q_blk.dtype)
        dq = dq + jnp.einsum("...qk,...kd->...qd", ds, k, preferred_element_type=acc)
        dk_parts.append(jnp.einsum("...qk,...qd->...kd", ds, q_blk, preferred_element_type=acc))
        dv_parts.append(jnp.einsum("...qk,...qd->...kd", p_used.astype(d_out.dtype), d_out,
                                   preferred_element_type=acc))
    return dq, dk_parts, dv_parts


def _merge_global_backward(q_pad, global_k, global_v, slot_bias, lse, delta, d_out, dropout, dropout_key):
    """Gradients through the global slots' columns: dq's share, and those of the slots' keys and values."""
    acc = lse.dtype
    p = jnp.exp(_global_scores(q_pad, global_k, slot_bias, acc) - lse)               # B nh Nq G
    dp = jnp.einsum("bnhd,bhgd->bhng", d_out, global_v.astype(d_out.dtype), preferred_element_type=acc)
    p_used = p
    if dropout_key is not None:
        keep = _dropout(jnp.ones_like(p), dropout, dropout_key)
        dp, p_used = dp * keep, p * keep
    ds = (p * (dp - delta)).astype(q_pad.dtype)
    dq = jnp.einsum("bhng,bhgd->bnhd", ds, global_k.astype(ds.dtype), preferred_element_type=acc)
    d_global_k = jnp.einsum("bhng,bnhd->bhgd", ds, q_pad).astype(global_k.dtype)
    d_global_v = jnp.einsum("bhng,bnhd->bhgd", p_used.astype(d_out.dtype), d_out).astype(global_v.dtype)
    return dq, d_global_k, d_global_v


def _add_parts(parts: list[jax.Array], axis: int) -> jax.Array:
    """Gradients of a block's key parts (`_key_windows`: part s of block j is chunk j + s) summed into the chunks
    of the padded rows, along the block `axis`."""
    shifts = len(parts)
    pad = [(0, 0)] * parts[0].ndim

    def shifted(part, s):
        pad_s = list(pad)
        pad_s[axis] = (s, shifts - 1 - s)
        return jnp.pad(part, pad_s)

    return sum(shifted(part, s) for s, part in enumerate(parts))


def _pad_rows(x: jax.Array, before: int, after: int) -> jax.Array:
    """Zero rows before and after along the sequence (axis 1)."""
    if before == after == 0:
        return x
    return jnp.pad(x, [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2))


def _key_windows(x_pad: jax.Array, block: int, width: int) -> list[jax.Array]:
    """`(B, P, nh, hd)` padded rows -> block j's window, rows [j*block, j*block + width), as `width // block`
    parts `(B, nh, nblk, block, hd)`: XLA has no overlapping views, and stacking the parts would copy every key
    `width // block` times (one layer's band: 0.15 s stacked, 0.10 s as parts at n = 4096, W = 512)."""
    B, P, nh, hd = x_pad.shape
    chunks = x_pad.reshape(B, P // block, block, nh, hd).transpose(0, 3, 1, 2, 4)    # B nh nchunks b hd
    shifts = width // block
    n_blocks = P // block - shifts + 1
    return [chunks[:, :, s:s + n_blocks] for s in range(shifts)]


def _band_bias(key_valid: jax.Array, w: int, block: int, span: int, tail: int, dtype):
    """The band's additive masks: `(b, width)` for the band's corners (the same in every block) and `(B, nblk, 1,
    width)` for the keys each block's window may not see (padding, global tokens, beyond the ends)."""
    width = block + span
    offset = jnp.arange(width)[None, :] - jnp.arange(block)[:, None]
    band_bias = _additive_bias((offset >= 0) & (offset <= 2 * w), dtype)
    key_valid = jnp.pad(key_valid, ((0, 0), (w, span - w + tail)))
    windows = jnp.concatenate(_key_windows(key_valid[:, :, None, None], block, width), axis=3)  # B 1 nblk width 1
    key_bias = _additive_bias(windows[:, 0, :, :, 0], dtype)
    return band_bias, key_bias[:, :, None, :]


def _dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout (kept values scaled by 1 / (1 - rate)); the identity without a key."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype)).astype(x.dtype)


def _additive_bias(allowed: jax.Array, dtype) -> jax.Array:
    """0 where allowed, the dtype minimum elsewhere (a score plus the minimum stays the minimum: probability 0)."""
    return jnp.where(allowed, jnp.zeros((), dtype), jnp.asarray(mask_value(dtype), dtype))


def _relative_columns(p: jax.Array, w: int) -> jax.Array:
    """(…, b, width) block probabilities -> (…, b, 2w + 1) by offset -w..w: row r's band starts at column r."""
    b = p.shape[-2]
    index = jnp.arange(b)[:, None] + jnp.arange(2 * w + 1)[None, :]
    return jnp.take_along_axis(p, jnp.broadcast_to(index, (*p.shape[:-2], b, 2 * w + 1)), axis=-1)


def global_rows(h: jax.Array, slot_position: jax.Array, slot_valid: jax.Array, key_valid: jax.Array,
                query, key, value, num_heads: int, scale: float, *, dropout: float = 0.0,
                dropout_key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Attention of the global tokens (with the `*_global` projections) over every non-padding key.

    Args:
        h: `(B, N, H)` hidden states; slot_position, slot_valid: `(B, G)` from `global_slots`.
        key_valid: `(B, N)` bool, keys that are not padding.
        query, key, value: the layer's `query_global`, `key_global`, `value_global` (`nnx.Linear`).
    Returns:
        context `(B, G, nh, hd)` and probabilities `(B, nh, G, N)` (filler slots: uniform rows).
    """
    B, N, H = h.shape
    G = slot_position.shape[1]
    nh, hd = num_heads, H // num_heads
    h_glob = jnp.take_along_axis(h, slot_position[:, :, None], axis=1)               # B G H
    q = (query(h_glob) * scale).reshape(B, G, nh, hd)
    reassociate = G * nh <= H
    if reassociate:
        # q . (Wk x + bk) = (Wk^T q) . x + q . bk: no key projection over all N tokens.
        wk = key.kernel[...].astype(h.dtype).reshape(H, nh, hd)
        u = jnp.einsum("bgnd,ind->bgni", q, wk).reshape(B, G * nh, H)
        scores = jnp.einsum("bji,bki->bjk", h, u).reshape(B, N, G, nh).transpose(0, 3, 2, 1)   # B nh G N
        scores = scores + jnp.einsum("bgnd,nd->bng", q, key.bias[...].astype(h.dtype).reshape(nh, hd))[..., None]
    else:
        k = key(h).reshape(B, N, nh, hd)
        scores = jnp.einsum("bgnd,bjnd->bngj", q, k)
    allowed = slot_valid[:, None, :, None] & key_valid[:, None, None, :]             # B 1 G N
    # Filler slots have no allowed key: every score is the minimum and the row comes out uniform.
    acc = softmax_dtype(h.dtype)
    scores = jnp.where(allowed, scores.astype(acc), mask_value(acc))
    p = jax.nn.softmax(scores, axis=-1).astype(h.dtype)
    p = _dropout(p, dropout, dropout_key)
    if reassociate:
        # sum_j p_j (Wv x_j + bv) = (P x) Wv^T + (sum_j p_j) bv.
        px = jnp.einsum("bkj,bji->bki", p.reshape(B, nh * G, N), h).reshape(B, nh, G, H)
        context = jnp.einsum("bngi,ind->bgnd", px, value.kernel[...].astype(h.dtype).reshape(H, nh, hd))
        context = context + p.sum(-1).transpose(0, 2, 1)[..., None] * value.bias[...].astype(h.dtype).reshape(nh, hd)
    else:
        v = value(h).reshape(B, N, nh, hd)
        context = jnp.einsum("bngj,bjnd->bgnd", p, v)
    return context, p


def scatter_global_rows(local: jax.Array, global_context: jax.Array, slot_position: jax.Array,
                        slot_valid: jax.Array) -> jax.Array:
    """Overwrite the rows of global tokens in `local` `(B, N, H)` with `global_context` `(B, G, H)`."""
    B = local.shape[0]
    rows = jnp.arange(B)[:, None]
    # Slot positions are distinct; filler slots point at local rows, which are written back unchanged.
    values = jnp.where(slot_valid[:, :, None], global_context.astype(local.dtype), local[rows, slot_position])
    return local.at[rows, slot_position].set(values)


_BAND = {"rows": _band_rows, "batched": _band_batched}
_BAND_BACKWARD = {"rows": _band_rows_backward, "batched": _band_batched_backward}
