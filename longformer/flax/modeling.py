"""Longformer (Beltagy et al., 2020, arXiv:2004.05150) in flax.nnx.

The same modules as `longformer/pt/modeling.py`, in the same order and under the same attribute names, so that a
parameter's path is its Hugging Face checkpoint key (`checkpoint.py` maps `kernel` / `scale` / `embedding` to
`weight`). The attention maths lives in `attention.py`; this file owns the parameters and the data flow.
Read top to bottom: embeddings, attention, layer, encoder, base model, heads.

Each call has a host part and a compiled part. The host part checks the inputs, pads them to the window and picks
the static number of global slots (`_prepare_inputs`); the compiled part (`_forward`, under `nnx.jit`, once per
input shape and slot count) runs the network and the loss; the host part then cuts the outputs back to the input
length and the batch's number of global tokens. Called inside a user's `jax.jit` the host part sees tracers: value
checks are skipped and, unless `num_global_slots` is given, every position gets a slot (correct, slower).
"""

from __future__ import annotations

import math
import os
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import semantics
from .._warn import warn
from ..config import LongformerConfig
from ..outputs import (
    LongformerBaseModelOutputWithPooling,
    LongformerMaskedLMOutput,
    LongformerMultipleChoiceModelOutput,
    LongformerQuestionAnsweringModelOutput,
    LongformerSequenceClassifierOutput,
    LongformerTokenClassifierOutput,
    encoder_fields,
)
from ..pretrained import LongformerPreTrainedMixin
from .attention import band_attention, global_rows, global_slots, scatter_global_rows
from .checkpoint import load_pretrained, save_pretrained

# Output types are pytrees here, so they pass through jax.jit / jax.grad.
for _cls in (LongformerBaseModelOutputWithPooling, LongformerMaskedLMOutput, LongformerMultipleChoiceModelOutput,
             LongformerQuestionAnsweringModelOutput, LongformerSequenceClassifierOutput,
             LongformerTokenClassifierOutput):
    jax.tree_util.register_dataclass(_cls, data_fields=[f for f in _cls.__dataclass_fields__], meta_fields=[])

# Tensor-parallel layout: mesh axis "model" splits attention heads and the FFN's inner features (column-parallel
# in, row-parallel out); "data" splits the batch (see sharding.py). Everything else is replicated.
COLUMN, ROW = (None, "model"), ("model", None)


def _linear(in_features: int, out_features: int, config: LongformerConfig, rngs: nnx.Rngs, shard=None):
    kernel_meta = {"out_sharding": shard, "eager_sharding": False} if shard else {}
    bias_meta = {"out_sharding": (shard[1],), "eager_sharding": False} if shard else {}
    return nnx.Linear(in_features, out_features, kernel_init=nnx.initializers.normal(config.initializer_range),
                      bias_init=nnx.initializers.zeros, kernel_metadata=kernel_meta, bias_metadata=bias_meta,
                      rngs=rngs)


def _layer_norm(config: LongformerConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # use_fast_variance=False: E[(x - mean)^2], as torch computes it (E[x^2] - mean^2 loses digits).
    return nnx.LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps, use_fast_variance=False, rngs=rngs)


def _embedding(num: int, config: LongformerConfig, rngs: nnx.Rngs, padding_idx: int | None = None) -> nnx.Embed:
    embed = nnx.Embed(num, config.hidden_size, embedding_init=nnx.initializers.normal(config.initializer_range),
                      rngs=rngs)
    if padding_idx is not None:
        embed.embedding[...] = embed.embedding[...].at[padding_idx].set(0.0)
    return embed


def _lookup(embed: nnx.Embed, ids: jax.Array, padding_idx: int | None = None) -> jax.Array:
    """Rows of an embedding table; the padding row gets no gradient (torch's `padding_idx`)."""
    x = jnp.take(embed.embedding[...], ids, axis=0)
    if padding_idx is None:
        return x
    return jnp.where((ids == padding_idx)[..., None], jax.lax.stop_gradient(x), x)


# ---------------------------------------------------------------------------------------------- embeddings
class LongformerEmbeddings(nnx.Module):
    def __init__(self, config: LongformerConfig, rngs: nnx.Rngs):
        self.pad = config.pad_token_id
        self.word_embeddings = _embedding(config.vocab_size, config, rngs, padding_idx=self.pad)
        self.position_embeddings = _embedding(config.max_position_embeddings, config, rngs, padding_idx=self.pad)
        self.token_type_embeddings = _embedding(config.type_vocab_size, config, rngs)
        self.LayerNorm = _layer_norm(config, rngs)
        self.dropout = nnx.Dropout(config.hidden_dropout_prob, rngs=rngs)

    def __call__(self, input_ids, token_type_ids, position_ids, inputs_embeds):
        if inputs_embeds is None:
            inputs_embeds = _lookup(self.word_embeddings, input_ids, self.pad)
        x = (inputs_embeds + _lookup(self.position_embeddings, position_ids, self.pad)
             + _lookup(self.token_type_embeddings, token_type_ids))
        return self.dropout(self.LayerNorm(x))


# ---------------------------------------------------------------------------------------------- attention
class LongformerSelfAttention(nnx.Module):
    """Projections of one layer; the sliding-window + global attention itself is in `attention.py`."""

    def __init__(self, config: LongformerConfig, layer_id: int, rngs: nnx.Rngs):
        H = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.window = config.attention_windows[layer_id]
        self.query_block = semantics.BATCHED_QUERY_BLOCK  # rows per band block (2w for smaller windows: band_block)
        self.dropout = nnx.Dropout(config.attention_probs_dropout_prob, rngs=rngs)
        self.query = _linear(H, H, config, rngs, COLUMN)
        self.key = _linear(H, H, config, rngs, COLUMN)
        self.value = _linear(H, H, config, rngs, COLUMN)
        self.query_global = _linear(H, H, config, rngs, COLUMN)
        self.key_global = _linear(H, H, config, rngs, COLUMN)
        self.value_global = _linear(H, H, config, rngs, COLUMN)

    def __call__(self, h, mask: dict[str, Any], output_attentions: bool = False):
        B, N, H = h.shape
        nh, hd, w = self.num_heads, self.head_dim, self.window // 2
        scale = 1.0 / math.sqrt(hd)
        q = (self.query(h) * scale).reshape(B, N, nh, hd)
        k = self.key(h).reshape(B, N, nh, hd)
        v = self.value(h).reshape(B, N, nh, hd)
        G = _num_slots(mask)
        global_k = global_v = None
        if G:  # the local keys and values of the global tokens, (B, nh, G, hd)
            index = mask["slot_position"][:, :, None, None]
            global_k = jnp.take_along_axis(k, index, axis=1).transpose(0, 2, 1, 3)
            global_v = jnp.take_along_axis(v, index, axis=1).transpose(0, 2, 1, 3)
        # Dropout keys drawn from the layer's nnx.Rngs stream only in training (the functions below are pure).
        rate = self.dropout.rate
        train = not self.dropout.deterministic and rate > 0
        band_key, global_key = (self.dropout.rngs(), self.dropout.rngs()) if train else (None, None)
        context, probs = band_attention(
            q, k, v, mask["window_key"], w, semantics.band_block(w, self.query_block), global_k=global_k,
            global_v=global_v, slot_valid=mask["slot_valid"], dropout=rate, dropout_key=band_key,
            return_probs=output_attentions)
        out = context.reshape(B, N, H)
        out = jnp.where(mask["padding"][:, :, None], 0.0, out).astype(context.dtype)  # padding attends to nothing
        global_probs = None
        if G:
            global_context, global_probs = global_rows(
                h, mask["slot_position"], mask["slot_valid"], ~mask["padding"], self.query_global,
                self.key_global, self.value_global, nh, scale, dropout=rate, dropout_key=global_key)
            out = scatter_global_rows(out, global_context.reshape(B, G, H), mask["slot_position"],
                                      mask["slot_valid"])
        if probs is not None:
            # Rows of global tokens (their result comes from global_rows) and of padding carry no local attention.
            probs = jnp.where((mask["is_global"] | mask["padding"])[:, None, :, None], 0.0, probs).astype(probs.dtype)
        return out, probs, global_probs


class LongformerSelfOutput(nnx.Module):
    """dense -> dropout -> + residual -> LayerNorm (after attention, and after the FFN as `LongformerOutput`)."""

    def __init__(self, config: LongformerConfig, rngs: nnx.Rngs, in_features: int | None = None):
        shard = ROW  # row-parallel: its input features are split like the heads / the FFN's inner features
        self.dense = _linear(in_features or config.hidden_size, config.hidden_size, config, rngs, shard)
        self.LayerNorm = _layer_norm(config, rngs)
        self.dropout = nnx.Dropout(config.hidden_dropout_prob, rngs=rngs)

    def __call__(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class LongformerAttention(nnx.Module):
    def __init__(self, config: LongformerConfig, layer_id: int, rngs: nnx.Rngs):
        self.self = LongformerSelfAttention(config, layer_id, rngs)
        self.output = LongformerSelfOutput(config, rngs)

    def __call__(self, h, mask, output_attentions=False):
        out, probs, global_probs = self.self(h, mask, output_attentions)
        return self.output(out, h), probs, global_probs


# ---------------------------------------------------------------------------------------------- layer, encoder
class LongformerIntermediate(nnx.Module):
    def __init__(self, config: LongformerConfig, rngs: nnx.Rngs):
        self.dense = _linear(config.hidden_size, config.intermediate_size, config, rngs, COLUMN)

    def __call__(self, x):
        return jax.nn.gelu(self.dense(x), approximate=False)  # exact (erf) GELU


class LongformerOutput(LongformerSelfOutput):
    def __init__(self, config: LongformerConfig, rngs: nnx.Rngs):
        super().__init__(config, rngs, in_features=config.intermediate_size)


class LongformerLayer(nnx.Module):
    """Post-LayerNorm block: attention, then the feed-forward network, each with a residual."""

    def __init__(self, config: LongformerConfig, layer_id: int, rngs: nnx.Rngs):
        self.attention = LongformerAttention(config, layer_id, rngs)
        self.intermediate = LongformerIntermediate(config, rngs)
        self.output = LongformerOutput(config, rngs)

    def __call__(self, h, mask, output_attentions=False):
        a, probs, global_probs = self.attention(h, mask, output_attentions)
        # One matmul over all rows: XLA fuses the FFN and reuses its buffers (no row chunks needed, unlike eager).
        out = self.output(self.intermediate(a), a)
        return out, probs, global_probs


def _layer_call(layer: LongformerLayer, h, mask, output_attentions):
    return layer(h, mask, output_attentions)


class LongformerEncoder(nnx.Module):
    def __init__(self, config: LongformerConfig, rngs: nnx.Rngs):
        self.layer = nnx.List([LongformerLayer(config, i, rngs) for i in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False

    def __call__(self, h, mask, output_attentions=False, output_hidden_states=False):
        all_hidden, all_attn, all_global = [], [], []
        run = nnx.remat(_layer_call, static_argnums=(3,)) if self.gradient_checkpointing else _layer_call
        for layer in self.layer:
            if output_hidden_states:
                all_hidden.append(h)
            h, probs, global_probs = run(layer, h, mask, output_attentions)
            if output_attentions:
                all_attn.append(probs)
                all_global.append(global_probs)
        if output_hidden_states:
            all_hidden.append(h)
        return h, all_hidden, all_attn, all_global


class LongformerPooler(nnx.Module):
    def __init__(self, config: LongformerConfig, rngs: nnx.Rngs):
        self.dense = _linear(config.hidden_size, config.hidden_size, config, rngs)

    def __call__(self, h):
        return jnp.tanh(self.dense(h[:, 0]))


# ---------------------------------------------------------------------------------------------- base classes
class LongformerPreTrainedModel(LongformerPreTrainedMixin, nnx.Module):
    """Host-side input handling, the compiled forward, checkpoint loading and saving shared by every class below.

    `use_jit` (default True) runs the network under `nnx.jit`; False runs it op by op (same results)."""

    def __init__(self, config: LongformerConfig, *, use_jit: bool = True):
        self.config = self.checked_config(config)
        self.use_jit = use_jit

    @property
    def dtype(self):
        return jax.tree.leaves(nnx.state(self, nnx.Param))[0].dtype

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, config: LongformerConfig | None = None,
                        dtype=None, output_loading_info: bool = False, rngs: nnx.Rngs | None = None,
                        **kwargs: Any):
        """Load a Hugging Face Longformer checkpoint (folder, file or Hub id); returns the model in eval mode.

        Reads `model.safetensors` (no torch needed), sharded safetensors, `pytorch_model.bin` (needs torch) or its
        sharded index. `dtype=jnp.bfloat16` casts the parameters (and so the compute). Keyword arguments that are
        config fields (`num_labels=3`) update the config; `revision`, `cache_dir`, `local_files_only`, `token` go
        to the Hub.
        """
        return load_pretrained(cls, name_or_path, config=config, dtype=dtype,
                               output_loading_info=output_loading_info, rngs=rngs, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write `config.json` and `model.safetensors` (Hugging Face names and layouts; tied tensors once)."""
        save_pretrained(self, save_directory)

    def _run(self, inputs: dict[str, Any], labels: dict[str, Any], *, output_attentions, output_hidden_states,
             return_dict, num_global_slots, output_class, num_choices: int | None = None):
        """Host part, compiled part, host part (see the module docstring)."""
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.return_dict if return_dict is None else return_dict
        padded, n_in, x, G = _prepare_inputs(config, inputs, num_global_slots)
        labels = {k: None if v is None else jnp.asarray(v) for k, v in labels.items()}
        static = dict(n_in=n_in, num_slots=G, output_attentions=bool(output_attentions),
                      output_hidden_states=bool(output_hidden_states), num_choices=num_choices)
        forward = _jit_forward if self.use_jit else type(self)._forward
        out = forward(self, padded, labels, **static)
        if output_attentions:
            # Global columns: the batch's x global tokens, not the G slots (x is known on the host).
            out["attentions"] = tuple(jnp.concatenate([p[..., :x], p[..., G:]], axis=-1) for p in out["attentions"])
            out["global_attentions"] = (tuple(g[..., :x] for g in out["global_attentions"]) if x else None)
        result = output_class(**out)
        return result if return_dict else result.to_tuple()


@partial(nnx.jit, static_argnames=("n_in", "num_slots", "output_attentions", "output_hidden_states",
                                   "num_choices"))
def _jit_forward(model, inputs, labels, n_in, num_slots, output_attentions, output_hidden_states, num_choices):
    return model._forward(inputs, labels, n_in=n_in, num_slots=num_slots, output_attentions=output_attentions,
                          output_hidden_states=output_hidden_states, num_choices=num_choices)


# ---------------------------------------------------------------------------------------------- inputs
def _is_traced(*arrays) -> bool:
    return any(isinstance(a, jax.core.Tracer) for a in arrays)


def _as_array(x, dtype=None):
    """jax arrays as they are; anything else as a NumPy array of its own dtype (an int64 id stays int64 until the
    checks have seen it: jax would wrap it to int32)."""
    if x is None:
        return None
    if isinstance(x, jax.Array):
        return x if dtype is None else x.astype(dtype)
    return np.asarray(x) if dtype is None else jnp.asarray(np.asarray(x), dtype=dtype)


def _check_inputs(config: LongformerConfig, inputs: dict[str, Any]) -> None:
    """The shared input rules on this batch: dtypes always, values where they are known (not while tracing)."""
    given = {k: v for k, v in inputs.items() if v is not None}
    semantics.check_input_dtypes({k: np.dtype(v.dtype).kind for k, v in given.items()})
    semantics.check_input_values(config, **{k: np.asarray(v) for k, v in given.items() if not _is_traced(v)})


def _position_ids(config: LongformerConfig, input_ids, position_ids, B: int, N: int) -> jax.Array:
    pad = config.pad_token_id
    if position_ids is None:
        if input_ids is not None:
            real = (input_ids != pad).astype(jnp.int32)
            position_ids = jnp.cumsum(real, axis=1) * real + pad
        else:
            position_ids = jnp.broadcast_to(jnp.arange(pad + 1, N + pad + 1)[None, :], (B, N))
    if not _is_traced(position_ids):
        high = int(position_ids.max())
        if high >= config.max_position_embeddings:
            raise ValueError(semantics.positions_too_long_message(high, config.max_position_embeddings, pad))
    return position_ids


def _prepare_inputs(config: LongformerConfig, inputs: dict[str, Any], num_global_slots: int | None):
    """Check, merge the masks, right-pad to a multiple of the largest window; pick the static slot count.

    Returns (padded inputs for `_forward`, input length, x = largest global count, G = slots)."""
    ints = {k: _as_array(inputs.get(k)) for k in ("input_ids", "attention_mask", "global_attention_mask",
                                                  "token_type_ids", "position_ids")}
    _check_inputs(config, ints)  # before any cast: a float id or an int64 beyond int32 is refused, not wrapped
    input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids = (
        None if t is None else jnp.asarray(t, jnp.int32) for t in ints.values())
    inputs_embeds = _as_array(inputs.get("inputs_embeds"))
    B, n_in = semantics.check_input_shapes(
        input_ids=None if input_ids is None else input_ids.shape,
        inputs_embeds=None if inputs_embeds is None else inputs_embeds.shape,
        attention_mask=None if attention_mask is None else attention_mask.shape,
        global_attention_mask=None if global_attention_mask is None else global_attention_mask.shape,
        token_type_ids=None if token_type_ids is None else token_type_ids.shape,
        position_ids=None if position_ids is None else position_ids.shape,
        hidden_size=config.hidden_size)

    # 0 = padding, 1 = local, 2 = global; then right-pad everything to a multiple of the largest window.
    merged = jnp.ones((B, n_in), jnp.int32) if attention_mask is None else attention_mask
    if global_attention_mask is not None:
        merged = jnp.minimum(merged * (global_attention_mask + 1), 2)
    pad = semantics.padding_length(n_in, config.max_attention_window)
    N = n_in + pad

    def right_pad(t, value=0):
        return None if t is None else jnp.pad(t, [(0, 0), (0, pad)] + [(0, 0)] * (t.ndim - 2), constant_values=value)

    input_ids = right_pad(input_ids, config.pad_token_id)
    position_ids = right_pad(position_ids, config.pad_token_id)
    # Padding rows are masked everywhere, so their content never reaches an output.
    inputs_embeds = right_pad(inputs_embeds)
    token_type_ids = jnp.zeros((B, N), jnp.int32) if token_type_ids is None else right_pad(token_type_ids)
    merged = right_pad(merged)
    position_ids = _position_ids(config, input_ids, position_ids, B, N)

    # The number of global slots is a shape: read it here, on the host.
    if _is_traced(merged):
        x = G = semantics.traced_global_slots(num_global_slots, N, global_attention_mask is not None)
    else:
        x = int((merged == 2).sum(axis=1).max())
        G = semantics.num_global_slots(x, N, num_global_slots)
    padded = {"input_ids": input_ids, "inputs_embeds": inputs_embeds, "token_type_ids": token_type_ids,
              "position_ids": position_ids, "merged_mask": merged}
    return padded, n_in, x, G


def _num_slots(mask: dict[str, Any]) -> int:
    return 0 if mask["slot_position"] is None else mask["slot_position"].shape[1]


# ---------------------------------------------------------------------------------------------- base model
class LongformerModel(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig, add_pooling_layer: bool = True, *, rngs: nnx.Rngs | None = None,
                 use_jit: bool = True):
        super().__init__(config, use_jit=use_jit)
        rngs = nnx.Rngs(0) if rngs is None else rngs
        self.embeddings = LongformerEmbeddings(config, rngs)
        self.encoder = LongformerEncoder(config, rngs)
        self.pooler = LongformerPooler(config, rngs) if add_pooling_layer else None

    def __call__(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
                 position_ids=None, inputs_embeds=None, output_attentions=None, output_hidden_states=None,
                 return_dict=None, num_global_slots=None):
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask,
                      token_type_ids=token_type_ids, position_ids=position_ids, inputs_embeds=inputs_embeds)
        return self._run(inputs, {}, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                         return_dict=return_dict, num_global_slots=num_global_slots,
                         output_class=LongformerBaseModelOutputWithPooling)

    def _forward(self, inputs, labels, **static):
        return self.encode(inputs, **static)

    def encode(self, inputs, *, n_in, num_slots, output_attentions, output_hidden_states, **_):
        """The traced forward of the base model on padded inputs: its output fields, cut to the input length."""
        h = self.embeddings(inputs["input_ids"], inputs["token_type_ids"], inputs["position_ids"],
                            inputs["inputs_embeds"])
        mask = self._attention_masks(inputs["merged_mask"], num_slots)
        h, all_hidden, all_attn, all_global = self.encoder(h, mask, output_attentions, output_hidden_states)
        # Cut back to the input length (global attentions keep the padded length, as Hugging Face's do).
        h = h[:, :n_in]
        out = {"last_hidden_state": h, "pooler_output": self.pooler(h) if self.pooler is not None else None,
               "hidden_states": tuple(t[:, :n_in] for t in all_hidden) if output_hidden_states else None,
               "attentions": None, "global_attentions": None}
        if output_attentions:
            out["attentions"] = tuple(p[:, :, :n_in] for p in all_attn)
            if num_slots:
                out["global_attentions"] = tuple(jnp.swapaxes(g, -1, -2) for g in all_global)
        return out

    @staticmethod
    def _attention_masks(merged: jax.Array, num_slots: int) -> dict[str, Any]:
        """Everything the layers need about which token is padding, local or global (computed once)."""
        is_global = merged == 2
        slot_position = slot_valid = None
        if num_slots:
            slot_position, slot_valid = global_slots(is_global, num_slots)
        return {"padding": merged == 0, "is_global": is_global, "window_key": merged == 1,
                "slot_position": slot_position, "slot_valid": slot_valid}


# ---------------------------------------------------------------------------------------------- heads
def _loss_from_logits(logits, labels, num_classes: int, ignore_index: int = -100):
    """Mean cross-entropy over the labels that are not `ignore_index` (in float32)."""
    logits = logits.reshape(-1, num_classes).astype(jnp.float32)
    labels = labels.reshape(-1)
    keep = labels != ignore_index
    logp = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(logp, jnp.where(keep, labels, 0)[:, None], axis=-1)[:, 0]
    return -jnp.sum(jnp.where(keep, picked, 0.0)) / jnp.sum(keep)


class LongformerLMHead(nnx.Module):
    def __init__(self, config: LongformerConfig, rngs: nnx.Rngs):
        self.dense = _linear(config.hidden_size, config.hidden_size, config, rngs)
        self.layer_norm = _layer_norm(config, rngs)
        # Tied (the default): the decoder is the word embedding matrix; only its bias is a parameter here.
        self.decoder = (None if config.tie_word_embeddings else
                        nnx.Linear(config.hidden_size, config.vocab_size, use_bias=False,
                                   kernel_init=nnx.initializers.normal(config.initializer_range), rngs=rngs))
        self.bias = nnx.Param(jnp.zeros((config.vocab_size,)))

    def __call__(self, h, word_embeddings: nnx.Embed):
        z = self.layer_norm(jax.nn.gelu(self.dense(h), approximate=False))
        logits = z @ word_embeddings.embedding[...].T.astype(z.dtype) if self.decoder is None else self.decoder(z)
        return logits + self.bias[...].astype(logits.dtype)


class LongformerForMaskedLM(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig, *, rngs: nnx.Rngs | None = None, use_jit: bool = True):
        super().__init__(config, use_jit=use_jit)
        rngs = nnx.Rngs(0) if rngs is None else rngs
        self.longformer = LongformerModel(config, add_pooling_layer=False, rngs=rngs, use_jit=use_jit)
        self.lm_head = LongformerLMHead(config, rngs)

    def tied_keys(self) -> tuple[str, ...]:
        keys = ("lm_head.decoder.bias",)
        return ("lm_head.decoder.weight", *keys) if self.config.tie_word_embeddings else keys

    def __call__(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
                 position_ids=None, inputs_embeds=None, labels=None, output_attentions=None,
                 output_hidden_states=None, return_dict=None, num_global_slots=None):
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask,
                      token_type_ids=token_type_ids, position_ids=position_ids, inputs_embeds=inputs_embeds)
        return self._run(inputs, {"labels": labels}, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states, return_dict=return_dict,
                         num_global_slots=num_global_slots, output_class=LongformerMaskedLMOutput)

    def _forward(self, inputs, labels, **static):
        outputs = self.longformer.encode(inputs, **static)
        logits = self.lm_head(outputs["last_hidden_state"], self.longformer.embeddings.word_embeddings)
        loss = (None if labels["labels"] is None
                else _loss_from_logits(logits, labels["labels"], self.config.vocab_size))
        return {"loss": loss, "logits": logits, **encoder_fields(outputs)}


class LongformerClassificationHead(nnx.Module):
    """Head on the `<s>` token: dropout, dense, tanh, dropout, projection."""

    def __init__(self, config: LongformerConfig, rngs: nnx.Rngs):
        self.dense = _linear(config.hidden_size, config.hidden_size, config, rngs)
        self.dropout = nnx.Dropout(config.hidden_dropout_prob, rngs=rngs)
        self.out_proj = _linear(config.hidden_size, config.num_labels, config, rngs)

    def __call__(self, h):
        x = self.dropout(h[:, 0])
        x = self.dropout(jnp.tanh(self.dense(x)))
        return self.out_proj(x)


def _first_token_global(input_ids, inputs_embeds, attention_mask) -> jax.Array:
    """Sequence classification: global attention on the first token (`<s>`), unless it is padding."""
    ref = input_ids if input_ids is not None else inputs_embeds[..., 0]
    mask = jnp.zeros(ref.shape[:2], jnp.int32).at[:, 0].set(1)
    return mask if attention_mask is None else mask * (attention_mask != 0)


def _sep_based_global(input_ids, attention_mask, sep_token_id: int, before_sep: bool) -> jax.Array:
    """Question answering (before_sep): global on every token before the first separator.
    Multiple choice (not before_sep): global on every token after the first `</s></s>` pair.
    Both need exactly three separators per row (`<s> A </s></s> B </s>`)."""
    is_sep = input_ids == sep_token_id
    counts = is_sep.sum(axis=1)
    if not _is_traced(counts) and bool((counts != 3).any()):
        raise ValueError(semantics.sep_count_message(np.asarray(counts).tolist(), sep_token_id))
    first_sep = jnp.argmax(is_sep.astype(jnp.int32), axis=1)[:, None]
    positions = jnp.arange(input_ids.shape[1])[None, :]
    mask = (positions < first_sep) if before_sep else (positions > first_sep + 1)
    mask = mask.astype(jnp.int32)
    return mask if attention_mask is None else mask * (attention_mask != 0)


class LongformerForSequenceClassification(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig, *, rngs: nnx.Rngs | None = None, use_jit: bool = True):
        super().__init__(config, use_jit=use_jit)
        rngs = nnx.Rngs(0) if rngs is None else rngs
        self.num_labels = config.num_labels
        self.longformer = LongformerModel(config, add_pooling_layer=False, rngs=rngs, use_jit=use_jit)
        self.classifier = LongformerClassificationHead(config, rngs)

    def __call__(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
                 position_ids=None, inputs_embeds=None, labels=None, output_attentions=None,
                 output_hidden_states=None, return_dict=None, num_global_slots=None):
        input_ids, inputs_embeds = _as_array(input_ids), _as_array(inputs_embeds)
        attention_mask = _as_array(attention_mask)
        if global_attention_mask is None and (input_ids is not None or inputs_embeds is not None):
            global_attention_mask = _first_token_global(input_ids, inputs_embeds, attention_mask)
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask,
                      token_type_ids=token_type_ids, position_ids=position_ids, inputs_embeds=inputs_embeds)
        return self._run(inputs, {"labels": labels}, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states, return_dict=return_dict,
                         num_global_slots=num_global_slots, output_class=LongformerSequenceClassifierOutput)

    def _forward(self, inputs, labels, **static):
        outputs = self.longformer.encode(inputs, **static)
        logits = self.classifier(outputs["last_hidden_state"])
        loss = None if labels["labels"] is None else self._loss(logits, labels["labels"])
        return {"loss": loss, "logits": logits, **encoder_fields(outputs)}

    def _loss(self, logits, labels):
        problem = self.config.problem_type
        if problem is None:
            if self.num_labels == 1:
                problem = "regression"
            elif jnp.issubdtype(labels.dtype, jnp.integer):
                problem = "single_label_classification"
            else:
                problem = "multi_label_classification"
        logits = logits.astype(jnp.float32)
        if problem == "regression":
            if self.num_labels == 1:
                return jnp.mean((jnp.squeeze(logits) - jnp.squeeze(labels).astype(jnp.float32)) ** 2)
            return jnp.mean((logits - labels.astype(jnp.float32)) ** 2)
        if problem == "single_label_classification":
            return _loss_from_logits(logits, labels, self.num_labels)
        labels = labels.astype(jnp.float32)  # binary cross-entropy with logits, stable form
        return jnp.mean(jnp.maximum(logits, 0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits))))


class LongformerForMultipleChoice(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig, *, rngs: nnx.Rngs | None = None, use_jit: bool = True):
        super().__init__(config, use_jit=use_jit)
        rngs = nnx.Rngs(0) if rngs is None else rngs
        self.longformer = LongformerModel(config, rngs=rngs, use_jit=use_jit)
        self.dropout = nnx.Dropout(config.hidden_dropout_prob, rngs=rngs)
        self.classifier = _linear(config.hidden_size, 1, config, rngs)

    def __call__(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
                 position_ids=None, inputs_embeds=None, labels=None, output_attentions=None,
                 output_hidden_states=None, return_dict=None, num_global_slots=None):
        input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids = (
            _as_array(t) for t in (input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids))
        inputs_embeds = _as_array(inputs_embeds)
        ref = input_ids if input_ids is not None else inputs_embeds
        if ref is None or ref.ndim != (3 if input_ids is not None else 4):
            raise ValueError("Multiple choice inputs must have shape (batch, num_choices, sequence) "
                             f"(inputs_embeds: (..., hidden)), got {None if ref is None else tuple(ref.shape)}.")
        num_choices = ref.shape[1]

        def flat(t, dims=2):
            return None if t is None else t.reshape(-1, *t.shape[dims:])

        flat_ids, flat_mask = flat(input_ids), flat(attention_mask)
        flat_global = flat(global_attention_mask)
        if flat_global is None and flat_ids is not None:
            # Global attention on every token after the first </s></s> pair of each choice.
            flat_global = _sep_based_global(flat_ids, flat_mask, self.config.sep_token_id, before_sep=False)
        inputs = dict(input_ids=flat_ids, attention_mask=flat_mask, global_attention_mask=flat_global,
                      token_type_ids=flat(token_type_ids), position_ids=flat(position_ids),
                      inputs_embeds=flat(inputs_embeds))
        return self._run(inputs, {"labels": labels}, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states, return_dict=return_dict,
                         num_global_slots=num_global_slots, output_class=LongformerMultipleChoiceModelOutput,
                         num_choices=num_choices)

    def _forward(self, inputs, labels, *, num_choices, **static):
        outputs = self.longformer.encode(inputs, **static)
        logits = self.classifier(self.dropout(outputs["pooler_output"])).reshape(-1, num_choices)
        loss = None if labels["labels"] is None else _loss_from_logits(logits, labels["labels"], num_choices)
        return {"loss": loss, "logits": logits, **encoder_fields(outputs)}


class LongformerForTokenClassification(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig, *, rngs: nnx.Rngs | None = None, use_jit: bool = True):
        super().__init__(config, use_jit=use_jit)
        rngs = nnx.Rngs(0) if rngs is None else rngs
        self.num_labels = config.num_labels
        self.longformer = LongformerModel(config, add_pooling_layer=False, rngs=rngs, use_jit=use_jit)
        self.dropout = nnx.Dropout(config.hidden_dropout_prob, rngs=rngs)
        self.classifier = _linear(config.hidden_size, config.num_labels, config, rngs)

    def __call__(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
                 position_ids=None, inputs_embeds=None, labels=None, output_attentions=None,
                 output_hidden_states=None, return_dict=None, num_global_slots=None):
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask,
                      token_type_ids=token_type_ids, position_ids=position_ids, inputs_embeds=inputs_embeds)
        return self._run(inputs, {"labels": labels}, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states, return_dict=return_dict,
                         num_global_slots=num_global_slots, output_class=LongformerTokenClassifierOutput)

    def _forward(self, inputs, labels, **static):
        outputs = self.longformer.encode(inputs, **static)
        logits = self.classifier(self.dropout(outputs["last_hidden_state"]))
        loss = (None if labels["labels"] is None
                else _loss_from_logits(logits, labels["labels"], self.num_labels))
        return {"loss": loss, "logits": logits, **encoder_fields(outputs)}


class LongformerForQuestionAnswering(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig, *, rngs: nnx.Rngs | None = None, use_jit: bool = True):
        if config.num_labels != 2:
            raise ValueError(f"Question answering predicts start and end logits: num_labels must be 2, "
                             f"got {config.num_labels}.")
        super().__init__(config, use_jit=use_jit)
        rngs = nnx.Rngs(0) if rngs is None else rngs
        self.longformer = LongformerModel(config, add_pooling_layer=False, rngs=rngs, use_jit=use_jit)
        self.qa_outputs = _linear(config.hidden_size, config.num_labels, config, rngs)

    def __call__(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
                 position_ids=None, inputs_embeds=None, start_positions=None, end_positions=None,
                 output_attentions=None, output_hidden_states=None, return_dict=None, num_global_slots=None):
        input_ids, attention_mask = _as_array(input_ids), _as_array(attention_mask)
        if global_attention_mask is None:
            if input_ids is None:
                warn("No global_attention_mask and no input_ids to find the question: running without "
                     "global attention.")
            else:
                # Global attention on <s> and the question (everything before the first </s>).
                global_attention_mask = _sep_based_global(input_ids, attention_mask, self.config.sep_token_id,
                                                          before_sep=True)
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask,
                      token_type_ids=token_type_ids, position_ids=position_ids, inputs_embeds=inputs_embeds)
        labels = {"start_positions": start_positions, "end_positions": end_positions}
        return self._run(inputs, labels, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states, return_dict=return_dict,
                         num_global_slots=num_global_slots, output_class=LongformerQuestionAnsweringModelOutput)

    def _forward(self, inputs, labels, **static):
        outputs = self.longformer.encode(inputs, **static)
        logits = self.qa_outputs(outputs["last_hidden_state"])
        start_logits, end_logits = logits[..., 0], logits[..., 1]
        loss = None
        if labels["start_positions"] is not None and labels["end_positions"] is not None:
            n = start_logits.shape[1]  # positions outside the input are ignored
            start = jnp.clip(labels["start_positions"].reshape(-1), 0, n)
            end = jnp.clip(labels["end_positions"].reshape(-1), 0, n)
            loss = (_loss_from_logits(start_logits, start, n, ignore_index=n)
                    + _loss_from_logits(end_logits, end, n, ignore_index=n)) / 2
        return {"loss": loss, "start_logits": start_logits, "end_logits": end_logits, **encoder_fields(outputs)}
