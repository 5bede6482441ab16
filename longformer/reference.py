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

    def __call__(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
                 position_ids=None, inputs_embeds=None):
        """Returns dict: last_hidden_state, hidden_states, attentions, global_attentions (+ pooler_output,
        logits when the weights have them)."""
        cfg = self.config
        embeds = None if inputs_embeds is None else np.asarray(inputs_embeds, dtype=np.float64)
        B, n_in = (np.shape(input_ids) if embeds is None else embeds.shape)[:2]
        ids = (np.full((B, n_in), cfg.pad_token_id + 1) if input_ids is None  # any non-padding id: positions
               else np.asarray(input_ids, dtype=np.int64))
        mask = np.ones((B, n_in), np.int64) if attention_mask is None else np.asarray(attention_mask, dtype=np.int64)
        if global_attention_mask is not None:
            mask = np.minimum(mask * (np.asarray(global_attention_mask, dtype=np.int64) + 1), 2)
        pad = semantics.padding_length(n_in, cfg.max_attention_window)
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=cfg.pad_token_id)
        mask = np.pad(mask, ((0, 0), (0, pad)))
        if position_ids is None:
            real = (ids != cfg.pad_token_id).astype(np.int64)
            pos = np.cumsum(real, axis=1) * real + cfg.pad_token_id
        else:
            pos = np.pad(np.asarray(position_ids, np.int64), ((0, 0), (0, pad)), constant_values=cfg.pad_token_id)
        types = np.zeros_like(ids) if token_type_ids is None else np.pad(np.asarray(token_type_ids, np.int64),
                                                                         ((0, 0), (0, pad)))
        words = (self.w["embeddings.word_embeddings.weight"][ids] if embeds is None
                 else np.pad(embeds, ((0, 0), (0, pad), (0, 0))))
        h = (words + self.w["embeddings.position_embeddings.weight"][pos]
             + self.w["embeddings.token_type_embeddings.weight"][types])
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

    def outputs(self, head: str, labels=None, start_positions=None, end_positions=None, **inputs) -> dict:
        """Every output field of `head` (a class name) as Hugging Face names them, the loss included when labels
        are given; the head's automatic global tokens when no global_attention_mask is (inputs.AUTOMATIC_GLOBAL).
        Multiple-choice inputs are `(batch, choices, ...)`."""
        from .inputs import AUTOMATIC_GLOBAL, NUMPY, automatic_global_mask

        choices = None
        if head == "LongformerForMultipleChoice":
            ref = inputs["input_ids"] if inputs.get("input_ids") is not None else inputs["inputs_embeds"]
            choices = ref.shape[1]
            inputs = {k: None if v is None else np.asarray(v).reshape(-1, *np.shape(v)[2:])
                      for k, v in inputs.items()}
        rule = AUTOMATIC_GLOBAL.get(head)
        if inputs.get("global_attention_mask") is None and rule is not None:
            inputs["global_attention_mask"] = automatic_global_mask(
                NUMPY, rule, inputs.get("input_ids"), inputs.get("inputs_embeds"), inputs.get("attention_mask"),
                self.config.sep_token_id)
        out = self(**inputs)
        h = out["last_hidden_state"]
        fields = {k: out[k] for k in ("hidden_states", "attentions", "global_attentions")}
        if head == "LongformerModel":
            return {"last_hidden_state": h, "pooler_output": out.get("pooler_output"), **fields}
        if head == "LongformerForMaskedLM":
            logits = out["logits"]
            return {"loss": None if labels is None else _cross_entropy(logits, labels), "logits": logits, **fields}
        if head == "LongformerForSequenceClassification":
            x = np.tanh(self._linear(h[:, 0], "classifier.dense"))
            logits = self._linear(x, "classifier.out_proj")
            return {"loss": None if labels is None else _cross_entropy(logits, labels), "logits": logits, **fields}
        if head == "LongformerForMultipleChoice":
            logits = self._linear(out["pooler_output"], "classifier").reshape(-1, choices)
            return {"loss": None if labels is None else _cross_entropy(logits, labels), "logits": logits, **fields}
        if head == "LongformerForTokenClassification":
            logits = self._linear(h, "classifier")
            return {"loss": None if labels is None else _cross_entropy(logits, labels), "logits": logits, **fields}
        logits = self._linear(h, "qa_outputs")
        start, end = logits[..., 0], logits[..., 1]
        loss = None
        if start_positions is not None and end_positions is not None:
            n = start.shape[1]  # positions outside the input are ignored
            loss = (_cross_entropy(start, np.clip(start_positions, 0, n), ignore=n)
                    + _cross_entropy(end, np.clip(end_positions, 0, n), ignore=n)) / 2
        return {"loss": loss, "start_logits": start, "end_logits": end, **fields}


def _cross_entropy(logits: np.ndarray, labels, ignore: int = -100) -> float:
    """Mean cross-entropy over the labels that are not `ignore`."""
    logits = logits.reshape(-1, logits.shape[-1])
    labels = np.asarray(labels).reshape(-1)
    keep = labels != ignore
    top = logits.max(-1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    return float(-logp[keep, labels[keep]].mean())
