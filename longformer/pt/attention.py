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

from typing import NamedTuple

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


class AttentionDropout(NamedTuple):
    """Attention dropout of one call: `rate`, and where its masks come from. `seed` None: torch's generator
    (F.dropout); an int: each step's mask is drawn from (seed, step), so the band's backward draws it again
    instead of keeping it."""

    rate: float = 0.0
    seed: int | None = None

    def apply(self, p: torch.Tensor, step: int) -> torch.Tensor:
        if self.rate == 0.0:
            return p
        if self.seed is None:
            return F.dropout(p, self.rate, True)
        return p * self.keep(p, step)

    def keep(self, p: torch.Tensor, step: int) -> torch.Tensor:
        """The step's mask, 0 or 1 / (1 - rate'), in p's shape and dtype. Each element is a uniform 16-bit draw,
        three from each 64-bit draw of the generator (whose top bit is always 0, so its fourth 16 bits go unused):
        a third of the generator's work of float draws (a longformer-base training step at n = 4096 on 2 CPU
        cores: 27.0-27.5 s against 29.8-30.4 s, alternating). rate' = round(rate * 2^16) / 2^16 is the rate to
        8e-6, and the scale 1 / (1 - rate') keeps the expected value exact."""
        generator = torch.Generator(device=p.device)
        generator.manual_seed(hash((self.seed, step)) & (2**63 - 1))
        count = p.numel()
        words = torch.empty(-(-count // 3), dtype=torch.int64, device=p.device).random_(generator=generator)
        draw = words.view(torch.int16).view(-1, 4)[:, :3].reshape(-1)[:count].view(p.shape)
        dropped = round(self.rate * 2**16)
        return (draw >= dropped - 2**15).to(p.dtype).mul_(2**16 / (2**16 - dropped))


def band_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_valid: torch.Tensor, w: int, block: int,
                   *, global_k: torch.Tensor | None = None, global_v: torch.Tensor | None = None,
                   slot_valid: torch.Tensor | None = None, is_global: torch.Tensor | None = None,
                   dropout: float = 0.0, training: bool = False, return_probs: bool = False,
                   strategy: str = "rows") -> tuple[torch.Tensor, torch.Tensor | None]:
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

    When a gradient is wanted (and no probabilities), the band runs as `BandAttention`, with its own backward:
    it keeps q, k, v, the output and each row's log-sum-exp instead of every block's probabilities.
    """
    rate = dropout if training else 0.0
    tensors = (q, k, v) if global_k is None else (q, k, v, global_k, global_v)
    wants_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    if strategy == "flex":
        if flex_runs(q, return_probs, rate, wants_grad) and (global_k is None or is_global is not None):
            return flex_band_attention(q, k, v, key_valid, is_global, w), None
        strategy = "batched"
    B, N, nh, hd = q.shape
    n_blocks, tail, span = semantics.band_geometry(N, w, block)
    acc = softmax_dtype(q.dtype)
    # Keys/values padded by w before and the rest of the span after (plus the query tail): query i sees padded
    # keys i .. i + 2w.
    q_pad = _pad_rows(q, 0, tail)                                                    # B Nq nh hd
    k_pad = _pad_rows(k, w, span - w + tail)                                         # B Nq+span nh hd
    v_pad = _pad_rows(v, w, span - w + tail)
    band_bias, key_bias = _band_bias(key_valid, w, block, span, tail, acc)            # b width, B nblk 1 width
    slot_bias = None if global_k is None else _additive_bias(slot_valid, acc)          # B G
    if not return_probs and wants_grad and not torch.compiler.is_compiling():
        seed = int(torch.randint(2**62, ())) if rate else None  # from torch's generator: manual_seed repeats it
        context = BandAttention.apply(q_pad, k_pad, v_pad, global_k, global_v, band_bias, key_bias, slot_bias, w,
                                      block, strategy, AttentionDropout(rate, seed))
        return context[:, :N], None
    with_lse = global_k is not None  # the band's log-normaliser, to merge the global slots
    context, band_lse, band_probs = _BAND[strategy](q_pad, k_pad, v_pad, band_bias, key_bias, w, block,
                                                    AttentionDropout(rate), with_lse, return_probs)
    context = context[:, :N]                                                          # B N nh hd
    band_lse = None if band_lse is None else band_lse[:, :, :N]                       # B nh N 1
    band_probs = None if band_probs is None else band_probs[:, :, :N]                 # B nh N 2w+1
    if global_k is None:
        return context, band_probs
    context, band_probs, _ = _merge_global(q, context, band_lse, band_probs, global_k, global_v, slot_bias,
                                           AttentionDropout(rate))
    return context, band_probs


FLEX_BLOCK = semantics.QUERY_BLOCK["flex"]["pt"]  # FlexAttention's query and key block


def flex_runs(q: torch.Tensor, return_probs: bool, rate: float, wants_grad: bool) -> bool:
    """Whether the "flex" strategy can take this call; where it cannot, "batched" does. FlexAttention gives no
    probabilities and has no attention dropout; it has no backward on a CPU; its GPU kernels want a head size that
    is a power of two, at least 16 (longformer-base and -large: 64)."""
    hd = q.shape[-1]
    on_cpu = q.device.type == "cpu"
    return not (return_probs or rate or (wants_grad and on_cpu) or (not on_cpu and (hd < 16 or hd & (hd - 1))))


def flex_band_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_valid: torch.Tensor,
                        is_global: torch.Tensor | None, w: int) -> torch.Tensor:
    """The "flex" strategy: the band and the global columns as one FlexAttention call (a fused kernel, compiled;
    for GPUs). A local row sees the valid keys within `w` and every global token (with its local key, in place):
    one mask over the N keys, so no slots and no log-sum-exp merge. The block mask comes from the geometry, not
    from evaluating the mask on N x N: a query block visits the key blocks its band touches plus the blocks that
    hold one of its row's global tokens. Rows with no key (padding; global tokens beside only padding) come out 0;
    the model overwrites both. Same arguments and context as `band_attention`."""
    from torch.nn.attention.flex_attention import flex_attention

    N = q.shape[1]
    pad = -N % FLEX_BLOCK
    q, k, v = (_pad_rows(t, 0, pad).transpose(1, 2) for t in (q, k, v))               # B nh P hd
    block_mask = flex_block_mask(key_valid, is_global, w, N + pad)
    run = flex_attention if torch.compiler.is_compiling() else _compiled_flex()
    context = run(q, k, v, block_mask=block_mask, scale=1.0)                           # q is already scaled
    return context.transpose(1, 2)[:, :N]


def flex_block_mask(key_valid: torch.Tensor, is_global: torch.Tensor | None, w: int, length: int):
    """The "flex" strategy's mask over `length` (a multiple of FLEX_BLOCK) rows: the element rule `allowed` (band
    and valid, or global) and the key blocks each query block visits, from the band's geometry and the blocks
    holding a global token of its row (static shapes, nothing N x N)."""
    from torch.nn.attention.flex_attention import BlockMask

    B, N = key_valid.shape
    is_global = torch.zeros_like(key_valid) if is_global is None else is_global
    key_valid = F.pad(key_valid, (0, length - N), value=False)
    is_global = F.pad(is_global, (0, length - N), value=False)

    def allowed(b, h, i, j):
        return (((i - j).abs() <= w) & key_valid[b, j]) | is_global[b, j]

    n_blocks = length // FLEX_BLOCK
    first = torch.arange(n_blocks, device=key_valid.device) * FLEX_BLOCK                # each block's first row
    in_band = ((first[None, :] <= first[:, None] + FLEX_BLOCK - 1 + w)
               & (first[None, :] + FLEX_BLOCK - 1 >= first[:, None] - w))              # query block x key block
    visits = in_band[None] | is_global.view(B, n_blocks, FLEX_BLOCK).any(-1)[:, None, :]  # B qblk kblk
    count = visits.sum(-1, dtype=torch.int32)[:, None]                                 # B 1 qblk
    order = torch.argsort((~visits).to(torch.int8), dim=-1, stable=True).to(torch.int32)[:, None]
    return BlockMask.from_kv_blocks(count, order, BLOCK_SIZE=FLEX_BLOCK, mask_mod=allowed)


_COMPILED_FLEX = []


def _compiled_flex():
    """flex_attention compiled once per process (uncompiled, it builds the N x N scores), for static shapes: each
    (batch, padded length) compiles once. (Dynamic shapes failed to compile on the CPU in torch 2.13: the C++
    kernel for a 3-block length did not build.)"""
    if not _COMPILED_FLEX:
        from torch.nn.attention.flex_attention import flex_attention

        _COMPILED_FLEX.append(torch.compile(flex_attention, dynamic=False))
    return _COMPILED_FLEX[0]


def _band_forward(q_pad, k_pad, v_pad, global_k, global_v, band_bias, key_bias, slot_bias, w, block, strategy, drop):
    """The band and the global slots' columns on padded rows: (context, each row's log-sum-exp over all its keys)."""
    context, lse, _ = _BAND[strategy](q_pad, k_pad, v_pad, band_bias, key_bias, w, block, drop, True, False)
    if global_k is not None:
        context, _, lse = _merge_global(q_pad, context, lse, None, global_k, global_v, slot_bias, drop)
    return context, lse


class BandAttention(torch.autograd.Function):
    """The band (and the global slots' columns) with a flash-attention-style backward: the forward keeps only the
    padded q, k, v, the global slots' keys and values, the output and each row's log-sum-exp over all its keys;
    the backward recomputes each step's probabilities from them, with the same dropout masks (drawn again from
    the call's seed). Memory for the backward: O(N), not O(N * window)."""

    @staticmethod
    def forward(ctx, q_pad, k_pad, v_pad, global_k, global_v, band_bias, key_bias, slot_bias, w, block, strategy,
                drop):
        context, lse = _band_forward(q_pad, k_pad, v_pad, global_k, global_v, band_bias, key_bias, slot_bias, w,
                                     block, strategy, drop)
        ctx.save_for_backward(q_pad, k_pad, v_pad, global_k, global_v, band_bias, key_bias, slot_bias, context, lse)
        ctx.settings = block, strategy, drop
        return context

    @staticmethod
    def backward(ctx, d_context):
        q_pad, k_pad, v_pad, global_k, global_v, band_bias, key_bias, slot_bias, context, lse = ctx.saved_tensors
        block, strategy, drop = ctx.settings
        acc = lse.dtype
        d_context = d_context.contiguous()
        # delta_i = sum_j P_ij dP_ij over all of row i's keys (band and global) = dO_i . O_i.
        delta = (d_context.to(acc) * context.to(acc)).sum(-1).transpose(1, 2)[..., None]        # B nh Nq 1
        dq, dk, dv = _BAND_BACKWARD[strategy](q_pad, k_pad, v_pad, band_bias, key_bias, lse, delta, d_context,
                                              block, drop)
        d_global_k = d_global_v = None
        if global_k is not None:
            dq_global, d_global_k, d_global_v = _merge_global_backward(q_pad, global_k, global_v, slot_bias, lse,
                                                                       delta, d_context, drop)
            dq = dq + dq_global
        return dq.to(q_pad.dtype), dk.to(k_pad.dtype), dv.to(v_pad.dtype), d_global_k, d_global_v, *[None] * 7


def _row_steps(B, nh, n_blocks, block, width):
    """The "rows" strategy's steps: (step, batch, head, blocks, rows), a few blocks of one (batch, head) row at a
    time, their scores near 8 MB (small enough for the allocator to reuse, and to stay in cache)."""
    steps = -(-n_blocks * block * width * 4 // (8 << 20))
    per_step = -(-n_blocks // steps)
    step = 0
    for row in range(B * nh):
        b_, head = divmod(row, nh)
        for first in range(0, n_blocks, per_step):
            blocks = slice(first, min(first + per_step, n_blocks))
            yield step, b_, head, blocks, slice(first * block, blocks.stop * block)
            step += 1


def _band_rows(q_pad, k_pad, v_pad, band_bias, key_bias, w, block, drop, with_lse, return_probs):
    """The "rows" strategy: a Python loop over (batch, head) rows, each taking a few blocks per step; every step
    writes its rows straight into the `(B, N, nh, hd)` result (no concatenation, no transpose)."""
    B, Nq, nh, hd = q_pad.shape
    n_blocks, width = Nq // block, band_bias.shape[1]  # keys a block sees: its own and the band's span
    k_win, v_win = _key_windows(k_pad, block, width), _key_windows(v_pad, block, width)  # views
    out = q_pad.new_empty(B, Nq, nh, hd)
    lse = q_pad.new_empty(B, nh, Nq, 1, dtype=band_bias.dtype) if with_lse else None
    probs = []
    for step, b_, head, blocks, rows in _row_steps(B, nh, n_blocks, block, width):
        q_blk = q_pad[b_, rows, head].view(-1, block, hd)                              # count b hd
        o, l_, p = _band_blocks(q_blk, k_win[b_, head, blocks], v_win[b_, head, blocks], band_bias,
                                key_bias[b_, blocks], w, drop, step, with_lse, return_probs)
        out[b_, rows, head] = o.reshape(-1, hd)
        if with_lse:
            lse[b_, head, rows] = l_.reshape(-1, 1)
        if return_probs:
            probs.append(p)
    band_probs = torch.cat(probs).reshape(B, nh, Nq, -1) if return_probs else None
    return out, lse, band_probs


def _band_batched(q_pad, k_pad, v_pad, band_bias, key_bias, w, block, drop, with_lse, return_probs):
    """The "batched" strategy: every block of every (batch, head) row in one contraction."""
    B, Nq, nh, hd = q_pad.shape
    width = band_bias.shape[1]  # keys a block sees: its own and the band's span
    out, lse, p = _band_blocks(_blocks_of(q_pad, block), _key_windows(k_pad, block, width),
                               _key_windows(v_pad, block, width), band_bias, key_bias[:, None], w, drop, 0, with_lse,
                               return_probs)
    out = out.permute(0, 2, 3, 1, 4).reshape(B, Nq, nh, hd)
    lse = None if lse is None else lse.reshape(B, nh, Nq, 1)
    return out, lse, None if p is None else p.reshape(B, nh, Nq, -1)


def _band_blocks(q_blk, k_win, v_win, band_bias, key_bias, w, drop, step, with_lse, return_probs):
    """One step of either strategy: blocks of queries `(..., b, hd)` against their key windows `(..., width,
    hd)`. Returns the blocks' context `(..., b, hd)`, log-sum-exps `(..., b, 1)` (if `with_lse`) and
    probabilities by offset `(..., b, 2w + 1)` (if `return_probs`)."""
    scores = _block_scores(q_blk, k_win, band_bias, key_bias)
    p = torch.softmax(scores, dim=-1)                                                 # in at least float32
    # The log-normaliser is max(score) - log(max(p)): exact, since max(p) >= 1 / width.
    lse = scores.amax(-1, keepdim=True) - torch.log(p.amax(-1, keepdim=True)) if with_lse else None
    p = drop.apply(p.to(q_blk.dtype), step)
    return torch.matmul(p, v_win), lse, _relative_columns(p, w) if return_probs else None


def _block_scores(q_blk, k_win, band_bias, key_bias):
    """A step's scores in the softmax dtype. Two small additive masks instead of one per block and row: the band's
    corners (the same for every block) and the keys a block's window may not see (padding, global, beyond the
    ends). A key outside both gets minimum + minimum = -inf, which softmax takes as well: every row has in-band
    columns."""
    scores = torch.matmul(q_blk, k_win.transpose(-1, -2))
    return scores.to(band_bias.dtype).add_(key_bias).add_(band_bias)


def _merge_global(q, context, band_lse, band_probs, global_k, global_v, slot_bias, drop):
    """The global slots join every local row's softmax through log-sum-exps: the band's scores are never
    concatenated or copied, its context and probabilities are rescaled by their share of the total. Returns the
    context, the probabilities (if given) and each row's log-sum-exp over all its keys."""
    acc = band_lse.dtype
    global_scores = _global_scores(q, global_k, slot_bias, acc)                        # B nh N G
    total = torch.logaddexp(band_lse, torch.logsumexp(global_scores, dim=-1, keepdim=True))
    share = torch.exp(band_lse - total).to(q.dtype)                                   # B nh N 1
    global_p = drop.apply(torch.exp(global_scores - total).to(q.dtype), -1)
    context = torch.einsum("bhng,bhgd->bnhd", global_p, global_v.to(q.dtype)).add_(context * share.transpose(1, 2))
    if band_probs is not None:
        band_probs = torch.cat([global_p, band_probs * share], dim=-1)
    return context, band_probs, total


def _global_scores(q, global_k, slot_bias, acc):
    scores = torch.einsum("bnhd,bhgd->bhng", q, global_k.to(q.dtype)).to(acc)
    return scores + slot_bias[:, None, None, :]


# ------------------------------------------------------------------------------- the band's own backward
def _band_rows_backward(q_pad, k_pad, v_pad, band_bias, key_bias, lse, delta, d_out, block, drop):
    """Gradients of q, k, v (in the softmax dtype) for the "rows" strategy, step by step as the forward."""
    B, Nq, nh, hd = q_pad.shape
    n_blocks, width = Nq // block, band_bias.shape[1]
    k_win, v_win = _key_windows(k_pad, block, width), _key_windows(v_pad, block, width)
    acc = lse.dtype
    dq = torch.empty(q_pad.shape, dtype=acc, device=q_pad.device)
    dk = torch.zeros(k_pad.shape, dtype=acc, device=k_pad.device)
    dv = torch.zeros(v_pad.shape, dtype=acc, device=v_pad.device)
    for step, b_, head, blocks, rows in _row_steps(B, nh, n_blocks, block, width):
        dq_blk, dk_win, dv_win = _band_blocks_backward(
            q_pad[b_, rows, head].view(-1, block, hd), k_win[b_, head, blocks], v_win[b_, head, blocks], band_bias,
            key_bias[b_, blocks], lse[b_, head, rows].view(-1, block, 1), delta[b_, head, rows].view(-1, block, 1),
            d_out[b_, rows, head].view(-1, block, hd), drop, step)
        dq[b_, rows, head] = dq_blk.reshape(-1, hd)
        _add_windows(dk[b_, :, head], dk_win, blocks.start, block)
        _add_windows(dv[b_, :, head], dv_win, blocks.start, block)
    return dq, dk, dv


def _band_batched_backward(q_pad, k_pad, v_pad, band_bias, key_bias, lse, delta, d_out, block, drop):
    """Gradients of q, k, v (in the softmax dtype) for the "batched" strategy: one contraction, as the forward."""
    B, Nq, nh, hd = q_pad.shape
    n_blocks, width = Nq // block, band_bias.shape[1]
    dq, dk_win, dv_win = _band_blocks_backward(
        _blocks_of(q_pad, block), _key_windows(k_pad, block, width), _key_windows(v_pad, block, width), band_bias,
        key_bias[:, None], lse.view(B, nh, n_blocks, block, 1), delta.view(B, nh, n_blocks, block, 1),
        _blocks_of(d_out, block), drop, 0)
    dk = torch.zeros(k_pad.shape, dtype=lse.dtype, device=k_pad.device)
    dv = torch.zeros(v_pad.shape, dtype=lse.dtype, device=v_pad.device)
    _add_windows(dk.transpose(1, 2), dk_win, 0, block)
    _add_windows(dv.transpose(1, 2), dv_win, 0, block)
    return dq.permute(0, 2, 3, 1, 4).reshape(B, Nq, nh, hd), dk, dv


def _band_blocks_backward(q_blk, k_win, v_win, band_bias, key_bias, lse, delta, d_out, drop, step):
    """One step's gradients: the probabilities recomputed from the scores and the row's log-sum-exp (over all
    its keys, so they are the merged ones), dS = P * (dP - delta). Returns dq `(..., b, hd)` and the gradients of
    the step's key and value windows `(..., width, hd)`, in the softmax dtype."""
    p = torch.exp(_block_scores(q_blk, k_win, band_bias, key_bias).sub_(lse))
    dp = torch.matmul(d_out, v_win.transpose(-1, -2)).to(p.dtype)
    if drop.rate:
        keep = drop.keep(p.to(q_blk.dtype), step).to(p.dtype)
        dp.mul_(keep)
        dv = torch.matmul((p * keep).to(d_out.dtype).transpose(-1, -2), d_out)
    else:
        dv = torch.matmul(p.to(d_out.dtype).transpose(-1, -2), d_out)
    ds = p.mul_(dp.sub_(delta)).to(q_blk.dtype)
    return torch.matmul(ds, k_win).to(p.dtype), torch.matmul(ds.transpose(-1, -2), q_blk).to(p.dtype), dv.to(p.dtype)


def _merge_global_backward(q_pad, global_k, global_v, slot_bias, lse, delta, d_out, drop):
    """Gradients through the global slots' columns: dq's share, and those of the slots' keys and values."""
    acc = lse.dtype
    p = torch.exp(_global_scores(q_pad, global_k, slot_bias, acc) - lse)                # B nh Nq G
    dp = torch.einsum("bnhd,bhgd->bhng", d_out, global_v.to(d_out.dtype)).to(acc)
    p_used = p
    if drop.rate:
        keep = drop.keep(p.to(q_pad.dtype), -1).to(acc)
        dp, p_used = dp * keep, p * keep
    ds = (p * (dp - delta)).to(q_pad.dtype)
    dq = torch.einsum("bhng,bhgd->bnhd", ds, global_k.to(ds.dtype)).to(acc)
    d_global_k = torch.einsum("bhng,bnhd->bhgd", ds, q_pad).to(global_k.dtype)
    d_global_v = torch.einsum("bhng,bnhd->bhgd", p_used.to(d_out.dtype), d_out).to(global_v.dtype)
    return dq, d_global_k, d_global_v


def _add_windows(target: torch.Tensor, windows: torch.Tensor, first_block: int, block: int) -> None:
    """Add each block's window gradient `(..., count, width, hd)` into the padded rows `(..., P, hd)` it was cut
    from (window j starts at row (first_block + j) * block): one add per block-sized segment of the width."""
    count, width = windows.shape[-3], windows.shape[-2]
    segments = windows.unflatten(-2, (width // block, block))                          # ... count seg b hd
    for s in range(width // block):
        start = (first_block + s) * block
        target[..., start:start + count * block, :] += segments[..., s, :, :].flatten(-3, -2)


def _blocks_of(x: torch.Tensor, block: int) -> torch.Tensor:
    """`(B, Nq, nh, hd)` -> `(B, nh, nblk, block, hd)`: the query blocks of every row (a view)."""
    B, Nq, nh, hd = x.shape
    return x.view(B, Nq // block, block, nh, hd).permute(0, 3, 1, 2, 4)


_BAND = {"rows": _band_rows, "batched": _band_batched}
_BAND_BACKWARD = {"rows": _band_rows_backward, "batched": _band_batched_backward}


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
    h_glob = take_rows(h, slot_position)                                             # B G H
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
    values = torch.where(slot_valid[:, :, None], global_context.to(local.dtype), take_rows(local, slot_position))
    return local.scatter(1, index, values)


def take_rows(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """`(B, N, ...)` at `(B, G)` positions -> `(B, G, ...)`. By indexing, whose backward keeps only the positions
    (torch.gather's keeps all of x: one (B, N, H) tensor per call and layer in training)."""
    return x[torch.arange(x.shape[0], device=x.device)[:, None], positions]
