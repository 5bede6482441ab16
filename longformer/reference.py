"""A plain NumPy Longformer: the semantics written as directly as possible (dense masks, O(N^2) memory).

It is the framework-free oracle that every backend is checked against (tests, and `longformer parity`), not a way
to run long documents. It reads canonical (Hugging Face PyTorch) tensors and computes in float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from . import semantics
from .config import LongformerConfig


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _gelu(x: np.ndarray) -> np.ndarray:
    from math import erf

    return 0.5 * x * (1.0 + np.vectorize(erf)(x / math.sqrt(2.0)))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def attention(q, k, v, qg, kg, vg, mask, w):
    """Longformer self-attention by the rules, for one layer.

    Args:
        q, k, v, qg, kg, vg: `(B, N, nh, hd)` projections (queries already scaled).
        mask: `(B, N)` int, 0 padding / 1 local / 2 global.
        w: one-sided window.
    Returns:
        out `(B, N, nh, hd)`, local probabilities `(B, nh, N, x + 2w + 1)`, global probabilities `(B, nh, x, N)`
        (x = the largest number of global tokens in a row; filler rows uniform, as in Hugging Face).
    """
    B, N, nh, hd = q.shape
    x = int((mask == 2).sum(1).max())
    out = np.zeros_like(q)
    local = np.zeros((B, nh, N, x + 2 * w + 1))
    glob = np.zeros((B, nh, x, N))
    idx = np.arange(N)
    for b in range(B):
        g_pos = np.flatnonzero(mask[b] == 2)
        n_g = len(g_pos)
        for i in range(N):
            if mask[b, i] == 0:
                continue
            if mask[b, i] == 2:  # global row: every non-padding key, global projections
                keys = np.flatnonzero(mask[b] != 0)
                s = np.einsum("hd,jhd->hj", qg[b, i], kg[b, keys])
                p = _softmax(s)
                out[b, i] = np.einsum("hj,jhd->hd", p, vg[b, keys])
                slot = int(np.searchsorted(g_pos, i))
                glob[b, :, slot, keys] = p.T
                continue
            window = idx[(np.abs(idx - i) <= w) & (mask[b] == 1)]
            keys = np.concatenate([g_pos, window])
            s = np.einsum("hd,jhd->hj", q[b, i], k[b, keys])
            p = _softmax(s)
            out[b, i] = np.einsum("hj,jhd->hd", p, v[b, keys])
            local[b, :, i, :n_g] = p[:, :n_g]
            local[b, :, i, x + window - i + w] = p[:, n_g:].T
        for slot in range(n_g, x):  # filler global rows: uniform over every (padded) position
            glob[b, :, slot, :] = 1.0 / N
    return out, local, glob


class ReferenceModel:
    """`LongformerModel` (+ optional MLM head) forward in NumPy from canonical weights; dropout off."""

    def __init__(self, config: LongformerConfig, state: Mapping[str, np.ndarray]):
        self.config = config
        prefix = "longformer." if any(k.startswith("longformer.") for k in state) else ""
        self.w = {k[len(prefix):] if k.startswith(prefix) else k: np.asarray(v, dtype=np.float64)
                  for k, v in state.items()}

    def _linear(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def _ln(self, x, name):
        return _layer_norm(x, self.w[name + ".weight"], self.w[name + ".bias"], self.config.layer_norm_eps)

    def __call__(self, input_ids, attention_mask=None, global_attention_mask=None):
        """Returns dict: last_hidden_state, hidden_states, attentions, global_attentions (+ pooler_output,
        logits when the weights have them)."""
        cfg = self.config
        ids = np.asarray(input_ids, dtype=np.int64)
        B, n_in = ids.shape
        mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask, dtype=np.int64)
        if global_attention_mask is not None:
            mask = mask * (np.asarray(global_attention_mask, dtype=np.int64) + 1)
        pad = semantics.padding_length(n_in, cfg.max_attention_window)
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=cfg.pad_token_id)
        mask = np.pad(mask, ((0, 0), (0, pad)))
        real = (ids != cfg.pad_token_id).astype(np.int64)
        pos = np.cumsum(real, axis=1) * real + cfg.pad_token_id
        h = (self.w["embeddings.word_embeddings.weight"][ids] + self.w["embeddings.position_embeddings.weight"][pos]
             + self.w["embeddings.token_type_embeddings.weight"][np.zeros_like(ids)])
        h = self._ln(h, "embeddings.LayerNorm")
        N, nh = h.shape[1], cfg.num_attention_heads
        hd = cfg.hidden_size // nh
        hidden, attns, globs = [h], [], []
        for i, window in enumerate(cfg.attention_windows):
            p = f"encoder.layer.{i}."
            proj = {n: self._linear(h, p + "attention.self." + n).reshape(B, N, nh, hd)
                    for n in ("query", "key", "value", "query_global", "key_global", "value_global")}
            scale = 1.0 / math.sqrt(hd)
            a, local, glob = attention(proj["query"] * scale, proj["key"], proj["value"],
                                       proj["query_global"] * scale, proj["key_global"], proj["value_global"],
                                       mask, window // 2)
            a = self._ln(self._linear(a.reshape(B, N, -1), p + "attention.output.dense") + h,
                         p + "attention.output.LayerNorm")
            f = _gelu(self._linear(a, p + "intermediate.dense"))
            h = self._ln(self._linear(f, p + "output.dense") + a, p + "output.LayerNorm")
            hidden.append(h)
            attns.append(local[:, :, :n_in])
            globs.append(np.swapaxes(glob, -1, -2))
        out = {"last_hidden_state": h[:, :n_in], "hidden_states": tuple(t[:, :n_in] for t in hidden),
               "attentions": tuple(attns), "global_attentions": tuple(globs) if globs[0].shape[-1] else None}
        if "pooler.dense.weight" in self.w:
            out["pooler_output"] = np.tanh(self._linear(h[:, 0], "pooler.dense"))
        if "lm_head.dense.weight" in self.w:
            z = self._ln(_gelu(self._linear(h[:, :n_in], "lm_head.dense")), "lm_head.layer_norm")
            out["logits"] = z @ self.w["embeddings.word_embeddings.weight"].T + self.w["lm_head.bias"]
        return out
