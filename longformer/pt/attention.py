"""Longformer attention (sliding window + global tokens) as pure functions on torch tensors.

Written from the semantics (docs/attention.md), not from Hugging Face's chunking code:

- Local rows use a *blocked band*: queries are taken `block` rows at a time and each block is multiplied with the
  `block + W` keys it can see. Those key windows overlap; they are views of the padded keys (`as_strided`), never
  copies, so a head's blocks run as a few batched matmuls. The band is cut out by an additive bias (0 or the dtype
  minimum); nothing of size N x N exists.
- Global tokens sit in `G` static slots (`global_slots`). Local rows see them as `G` extra key columns (with the
  *local* keys and values of those tokens); global rows are a small dense attention with the `*_global`
  projections (`global_rows`) that overwrites the local result at those rows.
- Global rows never project keys and values of all N tokens when `G * nh <= H`: `q . (Wk x + bk)` is computed as
  `(Wk^T q) . x + q . bk`, and the context as `(P x) Wv^T + (sum P) bv`.

Shapes: B batch, N length, nh heads, hd head size, H hidden, w = W/2 one-sided window, G global slots.
Every shape here is static given (B, N, W, G): the functions run eagerly and under `torch.compile`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import semantics


def mask_value(dtype: torch.dtype) -> float:
    """Score of a key that must get probability exactly 0 (the dtype minimum; -inf would turn empty rows to NaN)."""
    return torch.finfo(dtype).min


def softmax_dtype(dtype: torch.dtype) -> torch.dtype:
    """Softmax runs in at least float32 (fp16/bf16 scores are widened, float64 stays float64)."""
    return torch.promote_types(dtype, torch.float32)


def global_slots(is_global: torch.Tensor, num_slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of each row's global tokens, in order, in `num_slots` slots.

    Args:
        is_global: `(B, N)` bool.
        num_slots: G, at least the largest number of global tokens in a row.
    Returns:
        slot_position `(B, G)` int64 (filler slots point at some non-global position) and slot_valid `(B, G)` bool.
    """
    # A stable sort of "not global" puts each row's global positions first, in increasing order.
    order = torch.argsort((~is_global).to(torch.int8), dim=1, stable=True)
    slot_position = order[:, :num_slots]
    count = is_global.sum(dim=1, keepdim=True)
    slot_valid = torch.arange(num_slots, device=is_global.device)[None, :] < count
    return slot_position, slot_valid


def band_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_valid: torch.Tensor, w: int, block: int,
                   *, global_k: torch.Tensor | None = None, global_v: torch.Tensor | None = None,
                   slot_valid: torch.Tensor | None = None, dropout: float = 0.0, training: bool = False,
                   return_probs: bool = False, strategy: str = "rows") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each query attends to the keys within `w` positions that are valid, plus the global slots.

    Args:
        q, k, v: `(B, N, nh, hd)` (the projections' own layout: no transpose); `q` already scaled.
        key_valid: `(B, N)` bool, keys a local row may see in its window (not padding, not global).
        w: one-sided window; block: query rows per block (`semantics.query_block`).
        global_k, global_v: `(B, nh, G, hd)` local keys/values of the global tokens (optional).
        slot_valid: `(B, G)` bool, which slots hold a real global token.
        strategy: how the blocks are looped over (`semantics.BAND_STRATEGIES`): "rows", one (batch, head) row
            at a time, a few blocks per step (eager CPU: each step's scores stay in cache); "batched", every block
            of every row in one contraction (accelerators).
    Returns:
        context `(B, N, nh, hd)` and, if `return_probs`, probabilities `(B, nh, N, G + 2w + 1)`: global slot columns,
        then relative offsets -w..w. A row with no key to see (only padding and global tokens: the model
        overwrites those rows) comes out uniform over its band.
    """
    B, N, nh, hd = q.shape
    n_blocks, tail, span = semantics.band_geometry(N, w, block)
    acc = softmax_dtype(q.dtype)
    with_lse = global_k is not None  # the band's log-normaliser, to merge the global slots
    # Keys/values padded by w before and the rest of the span after (plus the query tail): query i sees padded
    # keys i .. i + 2w.
    q_pad = _pad_rows(q, 0, tail)                                                    # B Nq nh hd
    k_pad = _pad_rows(k, w, span - w + tail)                                         # B Nq+span nh hd
    v_pad = _pad_rows(v, w, span - w + tail)
    band_bias, key_bias = _band_bias(key_valid, w, block, span, tail, acc)            # b width, B nblk 1 width
    run = {"rows": _band_rows, "batched": _band_batched}[strategy]
    context, band_lse, band_probs = run(q_pad, k_pad, v_pad, band_bias, key_bias, w, block, dropout, training,
                                        with_lse, return_probs)
    context = context[:, :N]                                                          # B N nh hd
    band_lse = None if band_lse is None else band_lse[:, :, :N]                       # B nh N 1
    band_probs = None if band_probs is None else band_probs[:, :, :N]                 # B nh N 2w+1
    if global_k is None:
        return context, band_probs
    return _merge_global(q, context, band_lse, band_probs, global_k, global_v, slot_valid, dropout, training)


def _band_rows(q_pad, k_pad, v_pad, band_bias, key_bias, w, block, dropout, training, with_lse, return_probs):
    """The "rows" strategy: a Python loop over (batch, head) rows, each taking a few blocks per step; every step
    writes its rows straight into the `(B, N, nh, hd)` result (no concatenation, no transpose)."""
    B, Nq, nh, hd = q_pad.shape
    n_blocks, width = Nq // block, band_bias.shape[1]  # keys a block sees: its own and the band's span
    k_win, v_win = _key_windows(k_pad, block, width), _key_windows(v_pad, block, width)  # views
    # Blocks per step: keep each step's scores near 8 MB, small enough for the allocator to reuse.
    steps = -(-n_blocks * block * width * 4 // (8 << 20))
    per_step = -(-n_blocks // steps)
    out = q_pad.new_empty(B, Nq, nh, hd)
    lse = q_pad.new_empty(B, nh, Nq, 1, dtype=band_bias.dtype) if with_lse else None
    probs = []
    for row in range(B * nh):
        b_, head = divmod(row, nh)
        for first in range(0, n_blocks, per_step):
            blocks = slice(first, min(first + per_step, n_blocks))
            rows = slice(first * block, blocks.stop * block)
            q_blk = q_pad[b_, rows, head].view(-1, block, hd)                          # count b hd
            o, l_, p = _band_blocks(q_blk, k_win[b_, head, blocks], v_win[b_, head, blocks], band_bias,
                                    key_bias[b_, blocks], w, dropout, training, with_lse, return_probs)
            out[b_, rows, head] = o.reshape(-1, hd)
            if with_lse:
                lse[b_, head, rows] = l_.reshape(-1, 1)
            if return_probs:
                probs.append(p)
    band_probs = torch.cat(probs).reshape(B, nh, Nq, -1) if return_probs else None
    return out, lse, band_probs


def _band_batched(q_pad, k_pad, v_pad, band_bias, key_bias, w, block, dropout, training, with_lse, return_probs):
    """The "batched" strategy: every block of every (batch, head) row in one contraction."""
    B, Nq, nh, hd = q_pad.shape
    width = band_bias.shape[1]  # keys a block sees: its own and the band's span
    q_blk = q_pad.view(B, Nq // block, block, nh, hd).permute(0, 3, 1, 2, 4)         # B nh nblk b hd
    out, lse, p = _band_blocks(q_blk, _key_windows(k_pad, block, width), _key_windows(v_pad, block, width),
                               band_bias, key_bias[:, None], w, dropout, training, with_lse, return_probs)
    out = out.permute(0, 2, 3, 1, 4).reshape(B, Nq, nh, hd)
    lse = None if lse is None else lse.reshape(B, nh, Nq, 1)
    return out, lse, None if p is None else p.reshape(B, nh, Nq, -1)


def _band_blocks(q_blk, k_win, v_win, band_bias, key_bias, w, dropout, training, with_lse, return_probs):
    """One step of either strategy: blocks of queries `(..., b, hd)` against their key windows `(..., width,
    hd)`. Returns the blocks' context `(..., b, hd)`, log-sum-exps `(..., b, 1)` (if `with_lse`) and
    probabilities by offset `(..., b, 2w + 1)` (if `return_probs`)."""
    scores = torch.matmul(q_blk, k_win.transpose(-1, -2))
    # Two small additive masks instead of one per block and row: the band's corners (the same for every block)
    # and the keys a block's window may not see (padding, global, beyond the ends). A key outside both gets
    # minimum + minimum = -inf, which softmax takes as well: every row has in-band columns.
    scores = scores.to(band_bias.dtype).add_(key_bias).add_(band_bias)
    p = torch.softmax(scores, dim=-1)                                                 # in at least float32
    # The log-normaliser is max(score) - log(max(p)): exact, since max(p) >= 1 / width.
    lse = scores.amax(-1, keepdim=True) - torch.log(p.amax(-1, keepdim=True)) if with_lse else None
    p = F.dropout(p.to(q_blk.dtype), dropout, training)
    return torch.matmul(p, v_win), lse, _relative_columns(p, w) if return_probs else None


def _merge_global(q, context, band_lse, band_probs, global_k, global_v, slot_valid, dropout, training):
    """The global slots join every local row's softmax through log-sum-exps: the band's scores are never
    concatenated or copied, its context and probabilities are rescaled by their share of the total."""
    acc = band_lse.dtype
    global_scores = torch.einsum("bnhd,bhgd->bhng", q, global_k.to(q.dtype)).to(acc)
    global_scores = global_scores + _additive_bias(slot_valid, acc)[:, None, None, :]  # B nh N G
    total = torch.logaddexp(band_lse, torch.logsumexp(global_scores, dim=-1, keepdim=True))
    share = torch.exp(band_lse - total).to(q.dtype)                                   # B nh N 1
    global_p = F.dropout(torch.exp(global_scores - total).to(q.dtype), dropout, training)
    context = torch.einsum("bhng,bhgd->bnhd", global_p, global_v.to(q.dtype)).add_(context * share.transpose(1, 2))
    if band_probs is not None:
        band_probs = torch.cat([global_p, band_probs * share], dim=-1)
    return context, band_probs


def _pad_rows(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Zero rows before and after along the sequence (dim 1) of a `(B, N, nh, hd)` tensor, in one copy."""
    B, _, nh, hd = x.shape
    if before == after == 0:
        return x
    return torch.cat([x.new_zeros(B, before, nh, hd), x, x.new_zeros(B, after, nh, hd)], dim=1)


def _key_windows(x_pad: torch.Tensor, block: int, width: int) -> torch.Tensor:
    """`(B, P, nh, hd)` padded rows -> `(B, nh, nblk, width, hd)`: block j sees rows [j*block, j*block + width).

    Overlapping windows viewed in place (row stride H), never copied. Eagerly one as_strided (~12% faster per
    layer than the equivalent unfold); torch.compile cannot trace storage offsets, so there the view is unfolded."""
    B, P, nh, hd = x_pad.shape
    n_blocks = (P - width) // block + 1
    if torch.compiler.is_compiling():
        return x_pad.unfold(1, width, block).permute(0, 2, 1, 4, 3)
    H = nh * hd
    return x_pad.as_strided((B, nh, n_blocks, width, hd), (P * H, hd, block * H, H, 1), x_pad.storage_offset())


def _band_bias(key_valid: torch.Tensor, w: int, block: int, span: int, tail: int, dtype: torch.dtype):
    """The band's additive masks: `(b, width)` for the band's corners (the same in every block) and `(B, nblk, 1,
    width)` for the keys each block's window may not see (padding, global tokens, beyond the ends)."""
    width = block + span
    device = key_valid.device
    offset = torch.arange(width, device=device)[None, :] - torch.arange(block, device=device)[:, None]
    band_bias = _additive_bias((offset >= 0) & (offset <= 2 * w), dtype)
    key_valid = F.pad(key_valid, (w, span - w + tail), value=False)
    key_bias = _additive_bias(key_valid.unfold(1, width, block), dtype)[:, :, None, :]
    return band_bias, key_bias


def _additive_bias(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where allowed, the dtype minimum elsewhere (a score plus the minimum stays the minimum: probability 0)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, mask_value(dtype))


def _relative_columns(p: torch.Tensor, w: int) -> torch.Tensor:
    """(…, b, width) block probabilities -> (…, b, 2w + 1) by offset -w..w: row r's band starts at column r."""
    b = p.shape[-2]
    index = torch.arange(b, device=p.device)[:, None] + torch.arange(2 * w + 1, device=p.device)[None, :]
    return torch.gather(p, -1, index.expand(*p.shape[:-2], b, 2 * w + 1))


def global_rows(h: torch.Tensor, slot_position: torch.Tensor, slot_valid: torch.Tensor, key_valid: torch.Tensor,
                query: torch.nn.Linear, key: torch.nn.Linear, value: torch.nn.Linear, num_heads: int,
                scale: float, *, dropout: float = 0.0, training: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of the global tokens (with the `*_global` projections) over every non-padding key.

    Args:
        h: `(B, N, H)` hidden states; slot_position, slot_valid: `(B, G)` from `global_slots`.
        key_valid: `(B, N)` bool, keys that are not padding.
        query, key, value: the layer's `query_global`, `key_global`, `value_global`.
    Returns:
        context `(B, G, nh, hd)` and probabilities `(B, nh, G, N)` (filler slots: uniform rows).
    """
    B, N, H = h.shape
    G = slot_position.shape[1]
    nh, hd = num_heads, H // num_heads
    h_glob = torch.gather(h, 1, slot_position[:, :, None].expand(B, G, H))          # B G H
    q = (query(h_glob) * scale).view(B, G, nh, hd)
    reassociate = G * nh <= H
    if reassociate:
        # q . (Wk x + bk) = (Wk^T q) . x + q . bk: no key projection over all N tokens.
        wk = key.weight.view(nh, hd, H)
        u = torch.einsum("bgnd,ndi->bgni", q, wk).reshape(B, G * nh, H)
        scores = torch.matmul(h, u.transpose(1, 2)).view(B, N, G, nh).permute(0, 3, 2, 1)   # B nh G N
        scores = scores + torch.einsum("bgnd,nd->bng", q, key.bias.view(nh, hd))[..., None]
    else:
        k = key(h).view(B, N, nh, hd)
        scores = torch.einsum("bgnd,bjnd->bngj", q, k)
    allowed = slot_valid[:, None, :, None] & key_valid[:, None, None, :]             # B 1 G N
    # Filler slots have no allowed key: every score is the minimum and the row comes out uniform.
    acc = softmax_dtype(h.dtype)
    scores = scores.to(acc).masked_fill(~allowed, mask_value(acc))
    p = torch.softmax(scores, dim=-1).to(h.dtype)
    p = F.dropout(p, dropout, training)
    if reassociate:
        # sum_j p_j (Wv x_j + bv) = (P x) Wv^T + (sum_j p_j) bv.
        px = torch.matmul(p.reshape(B, nh * G, N), h).view(B, nh, G, H)
        context = torch.einsum("bngi,ndi->bgnd", px, value.weight.view(nh, hd, H))
        context = context + p.sum(-1).permute(0, 2, 1)[..., None] * value.bias.view(nh, hd)
    else:
        v = value(h).view(B, N, nh, hd)
        context = torch.einsum("bngj,bjnd->bgnd", p, v)
    return context, p


def scatter_global_rows(local: torch.Tensor, global_context: torch.Tensor, slot_position: torch.Tensor,
                        slot_valid: torch.Tensor) -> torch.Tensor:
    """Overwrite the rows of global tokens in `local` `(B, N, H)` with `global_context` `(B, G, H)`."""
    B, G, H = global_context.shape
    index = slot_position[:, :, None].expand(B, G, H)
    # Slot positions are distinct; filler slots point at local rows, which are written back unchanged.
    values = torch.where(slot_valid[:, :, None], global_context.to(local.dtype), torch.gather(local, 1, index))
    return local.scatter(1, index, values)
