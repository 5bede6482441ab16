"""Longformer attention (sliding window + global tokens) as pure functions on torch tensors.

Written from the semantics (docs/attention.md), not from Hugging Face's chunking code:

- Local rows use a *blocked band*: queries are taken `block` rows at a time and each block is multiplied with the
  contiguous key slice it can see (`block + W` keys, a view of the padded keys, never an overlapping copy). The
  band is cut out of each block's scores by a static mask; nothing of size N x N exists.
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
        q, k, v: `(B, nh, N, hd)`; `q` already scaled.
        key_valid: `(B, N)` bool, keys a local row may see in its window (not padding, not global).
        w: one-sided window; block: query rows per step.
        global_k, global_v: `(B, nh, G, hd)` local keys/values of the global tokens (optional).
        slot_valid: `(B, G)` bool, which slots hold a real global token.
    Returns:
        context `(B, nh, N, hd)` and, if `return_probs`, probabilities `(B, nh, N, G + 2w + 1)`: global slot columns,
        then relative offsets -w..w.
    """
    B, nh, N, hd = q.shape
    G = 0 if global_k is None else global_k.shape[2]
    n_blocks = -(-N // block)
    tail = n_blocks * block - N
    # Keys/values padded by w on both sides (plus the query tail): query i sees padded keys i .. i + 2w.
    q = F.pad(q, (0, 0, 0, tail))
    k = F.pad(k, (0, 0, w, w + tail))
    v = F.pad(v, (0, 0, w, w + tail))
    key_valid = F.pad(key_valid, (w, w + tail), value=False)
    rows = torch.arange(block, device=q.device)
    offset = torch.arange(block + 2 * w, device=q.device)[None, :] - rows[:, None]
    in_band = (offset >= 0) & (offset <= 2 * w)  # (block, block + 2w)
    acc = softmax_dtype(q.dtype)
    if G:
        global_k, global_v = global_k.to(q.dtype), global_v.to(q.dtype)
        slot_bias = _additive_bias(slot_valid, acc)[:, None, None, :].expand(B, 1, block, G)

    contexts, probs = [], []
    for start in range(0, n_blocks * block, block):
        q_blk = q[:, :, start:start + block]                                         # B nh b hd
        k_blk = k[:, :, start:start + block + 2 * w]                                 # B nh b+2w hd (a view)
        v_blk = v[:, :, start:start + block + 2 * w]
        allowed = in_band & key_valid[:, None, None, start:start + block + 2 * w]    # B 1 b b+2w
        # An additive bias (0 or the dtype minimum) broadcast over heads: much cheaper than masked_fill.
        bias = _additive_bias(allowed, acc)
        if G:  # the global slots are extra key columns in front of the band
            k_blk = torch.cat([global_k, k_blk], dim=2)
            v_blk = torch.cat([global_v, v_blk], dim=2)
            bias = torch.cat([slot_bias, bias], dim=-1)
        scores = torch.matmul(q_blk, k_blk.transpose(-1, -2)).to(acc).add_(bias)    # B nh b G+b+2w
        p = torch.softmax(scores, dim=-1).to(q.dtype)  # in at least float32, as the reference does
        p = F.dropout(p, dropout, training)
        contexts.append(torch.matmul(p, v_blk))                                     # B nh b hd
        if return_probs:
            probs.append(_relative_columns(p, G, w))
    context = torch.cat(contexts, dim=2)[:, :, :N]
    if not return_probs:
        return context, None
    return context, torch.cat(probs, dim=2)[:, :, :N]


def _additive_bias(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where allowed, the dtype minimum elsewhere (a score plus the minimum stays the minimum: probability 0)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, mask_value(dtype))


def _relative_columns(p: torch.Tensor, G: int, w: int) -> torch.Tensor:
    """(…, b, G + b + 2w) block probabilities -> (…, b, G + 2w + 1): row r's band starts at column G + r."""
    b = p.shape[-2]
    index = G + torch.arange(b, device=p.device)[:, None] + torch.arange(2 * w + 1, device=p.device)[None, :]
    band = torch.gather(p, -1, index.expand(*p.shape[:-2], b, 2 * w + 1))
    return torch.cat([p[..., :G], band], dim=-1)


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


def scatter_global_rows(local: torch.Tensor, global_context: torch.Tensor, is_global: torch.Tensor) -> torch.Tensor:
    """Overwrite the rows of global tokens in `local` `(B, N, H)` with `global_context` `(B, G, H)`."""
    B, N, H = local.shape
    slot = (torch.cumsum(is_global.to(torch.int64), dim=1) - 1).clamp(min=0)        # slot of each global position
    from_slots = torch.gather(global_context, 1, slot[:, :, None].expand(B, N, H))
    return torch.where(is_global[:, :, None], from_slots, local)
