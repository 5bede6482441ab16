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
                   return_probs: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each query attends to the keys within `w` positions that are valid, plus the global slots.

    Args:
        q, k, v: `(B, N, nh, hd)` (the projections' own layout: no transpose); `q` already scaled.
        key_valid: `(B, N)` bool, keys a local row may see in its window (not padding, not global).
        w: one-sided window; block: query rows per step.
        global_k, global_v: `(B, nh, G, hd)` local keys/values of the global tokens (optional).
        slot_valid: `(B, G)` bool, which slots hold a real global token.
    Returns:
        context `(B, N, nh, hd)` and, if `return_probs`, probabilities `(B, nh, N, G + 2w + 1)`: global slot columns,
        then relative offsets -w..w. A row with no key to see (only padding and global tokens: the model
        overwrites those rows) comes out uniform over its band.
    """
    B, N, nh, hd = q.shape
    H = nh * hd
    G = 0 if global_k is None else global_k.shape[2]
    n_blocks = -(-N // block)
    tail = n_blocks * block - N
    width = block + 2 * w  # keys a block of queries can see
    acc = softmax_dtype(q.dtype)
    # Keys/values padded by w on both sides (plus the query tail): query i sees padded keys i .. i + 2w.
    q_pad = _pad_rows(q, 0, tail)                                                    # B Nq nh hd
    k_pad = _pad_rows(k, w, w + tail)                                                # B Nq+2w nh hd
    v_pad = _pad_rows(v, w, w + tail)
    padded_len = k_pad.shape[1]
    key_valid = F.pad(key_valid, (w, w + tail), value=False)
    offset = torch.arange(width, device=q.device)[None, :] - torch.arange(block, device=q.device)[:, None]
    # Two small additive masks instead of one per block and row: the band's corners, the same for every block,
    # and the keys a block's window may not see (padding, global, beyond the ends), one row per block. A key
    # outside both gets minimum + minimum = -inf, which softmax takes as well: every row has in-band columns.
    band_bias = _additive_bias((offset >= 0) & (offset <= 2 * w), acc)                # b b+2w
    key_bias = _additive_bias(key_valid.unfold(1, width, block), acc)[:, :, None, :]  # B nblk 1 b+2w
    # Blocks per step: keep each step's scores near 8 MB, small enough for the allocator to reuse.
    steps = -(-n_blocks * block * width * 4 // (8 << 20))
    per_step = -(-n_blocks // steps)

    if G:  # the global slots: local keys and values of the global tokens, and which slots are real
        global_k, global_v = global_k.to(q.dtype), global_v.to(q.dtype)
        slot_bias = _additive_bias(slot_valid, acc)[:, None, :]                       # B 1 G

    compiling = torch.compiler.is_compiling()
    # Each step writes its rows straight into the (B, N, nh, hd) result: no concatenation, no transpose.
    out = q.new_empty(B, n_blocks * block, nh, hd)
    probs = []
    for row in range(B * nh):
        b_, head = divmod(row, nh)
        for first in range(0, n_blocks, per_step):
            count = min(per_step, n_blocks - first)
            rows = slice(first * block, (first + count) * block)
            # The keys of block j are padded rows [j*b, j*b + b + 2w) of this head: overlapping windows viewed
            # in place (row stride H), never copied. Eagerly one as_strided (~12% faster per layer than the
            # equivalent unfold); torch.compile cannot trace storage offsets, so there the same view is unfolded.
            if compiling:
                span = slice(first * block, (first + count - 1) * block + width)
                k_win = k_pad[b_, span, head].unfold(0, width, block).transpose(1, 2)  # count b+2w hd
                v_win = v_pad[b_, span, head].unfold(0, width, block).transpose(1, 2)
            else:
                window, strides = (count, width, hd), (block * H, H, 1)
                start = (b_ * padded_len + first * block) * H + head * hd
                k_win = k_pad.as_strided(window, strides, k_pad.storage_offset() + start)
                v_win = v_pad.as_strided(window, strides, v_pad.storage_offset() + start)
            q_blk = q_pad[b_, rows, head].view(count, block, hd)
            scores = torch.matmul(q_blk, k_win.transpose(1, 2))
            scores = scores.to(acc).add_(key_bias[b_, first:first + count]).add_(band_bias)  # blocks b b+2w
            p = torch.softmax(scores, dim=-1)                                         # in at least float32
            if G:
                # The global slots join these rows' softmax through log-sum-exps, so the band's scores are never
                # concatenated or copied: the band's log-normaliser is max(score) - log(max(p)) (exact, since
                # max(p) >= 1 / width) and its probabilities are rescaled by their share of the total.
                global_scores = torch.matmul(q_blk, global_k[b_, head].transpose(0, 1)).to(acc).add_(slot_bias[b_])
                band_lse = scores.amax(-1, keepdim=True) - torch.log(p.amax(-1, keepdim=True))
                total = torch.logaddexp(band_lse, torch.logsumexp(global_scores, dim=-1, keepdim=True))
                share = torch.exp(band_lse - total).to(q.dtype)                       # blocks b 1
                global_p = F.dropout(torch.exp(global_scores - total).to(q.dtype), dropout, training)  # blocks b G
            p = F.dropout(p.to(q.dtype), dropout, training)
            context = torch.matmul(p, v_win)                                          # blocks b hd
            if G:
                context = torch.baddbmm(context * share, global_p, global_v[b_, head].expand(count, G, hd))
            out[b_, rows, head] = context.reshape(count * block, hd)
            if return_probs:
                band = _relative_columns(p, w)
                probs.append(torch.cat([global_p, band * share], dim=-1) if G else band)
    context = out[:, :N]                                                              # B N nh hd
    band_probs = torch.cat(probs).reshape(B, nh, n_blocks * block, -1)[:, :, :N] if return_probs else None
    return context, band_probs


def _pad_rows(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Zero rows before and after along the sequence (dim 1) of a `(B, N, nh, hd)` tensor, in one copy."""
    B, _, nh, hd = x.shape
    if before == after == 0:
        return x
    return torch.cat([x.new_zeros(B, before, nh, hd), x, x.new_zeros(B, after, nh, hd)], dim=1)


def _additive_bias(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where allowed, the dtype minimum elsewhere (a score plus the minimum stays the minimum: probability 0)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, mask_value(dtype))


def _relative_columns(p: torch.Tensor, w: int) -> torch.Tensor:
    """(…, b, b + 2w) block probabilities -> (…, b, 2w + 1) by offset -w..w: row r's band starts at column r."""
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
