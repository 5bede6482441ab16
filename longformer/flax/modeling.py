"""Longformer (Beltagy et al., 2020, arXiv:2004.05150) in flax.nnx.

The same modules as `longformer/pt/modeling.py`, in the same order and under the same attribute names, so that a
parameter's path is its Hugging Face checkpoint key (`checkpoint.py` maps `kernel` / `scale` / `embedding` to
`weight`). The attention maths lives in `attention.py`; this file owns the parameters and the data flow.
Read top to bottom: embeddings, attention, layer, encoder, base model, heads.

Each call has a host part and a compiled part, as in every backend (`LongformerPreTrainedMixin._run`): the host part
checks the inputs, pads them to the window and picks the static number of global slots (`longformer.inputs`); the
compiled part (`_forward`, under `nnx.jit`, once per input shape and `Static`) runs the encoder, the head and the
loss; the host part then drops the columns of unused global slots. Called inside a user's `jax.jit` the host part
sees tracers: value checks are skipped and, unless `num_global_slots` is given, every position gets a slot
(correct, slower).
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import inputs, semantics
from ..config import LongformerConfig
from ..outputs import OUTPUT_CLASSES, encoder_fields
from ..pretrained import LongformerPreTrainedMixin
from .attention import band_attention, global_rows, global_slots, scatter_global_rows
from .checkpoint import cast_floating, load_pretrained, save_pretrained

# Output types are pytrees here, so they pass through jax.jit / jax.grad.
for _cls in OUTPUT_CLASSES.values():
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


def _gelu(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=False)


def recomputed(fn, *args):
    """`fn(*args)` (a pure function of pytrees), checkpointed: the forward keeps only `args`, the backward runs
    `fn` again and differentiates that.

    The recomputation waits for the gradient of the output (its inputs are shifted by 0 * one element of it):
    without that data dependence XLA's CPU scheduler runs it early, right after the forward, or merges it with the
    forward (CSE), so that `jax.checkpoint` (`nnx.remat`) saves nothing on the CPU."""

    @jax.custom_vjp
    def run(*args):
        return fn(*args)

    def run_fwd(*args):
        saved = jax.tree.map(lambda a: a, args)  # before the call: it advances the RNG counts of nnx variables in place
        return fn(*args), saved

    def run_bwd(args, d_out):
        d_first = next(d for d in jax.tree.leaves(d_out) if jnp.issubdtype(d.dtype, jnp.floating))
        zero = 0 * d_first.reshape(-1)[0]
        return jax.vjp(fn, *jax.tree.map(lambda a: _plus(a, zero), args))[1](d_out)

    run.defvjp(run_fwd, run_bwd)
    return run(*args)


def recompute_module(fn, module: nnx.Module, *args):
    """`fn(module, *args)` through `recomputed`: the module's state (parameters, and the RNG keys and counts of its
    dropout, so the recomputation draws the same masks) is an input; the counts the call advanced are written back."""
    graphdef, state = nnx.split(module)

    def pure(state, *args):
        m = nnx.merge(graphdef, state)
        return fn(m, *args), nnx.state(m, nnx.RngCount)

    out, counts = recomputed(pure, state, *args)
    nnx.update(module, counts)
    return out


def _plus(a: jax.Array, zero: jax.Array) -> jax.Array:
    """`a` + a zero computed from data: the same values, but not before `zero` exists (floats and PRNG keys)."""
    if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(jax.random.key_data(a) + zero.astype(jnp.uint32),
                                        impl=jax.random.key_impl(a))
    return a + zero.astype(a.dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a


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
        else:  # as if looked up in the table: its dtype
            inputs_embeds = inputs_embeds.astype(self.word_embeddings.embedding[...].dtype)
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
        self.strategy = None  # how the band loops over its blocks (set_band_strategy); None: the device's default
        self.query_block = None  # rows per band block; None: the strategy's (semantics.query_block)
        self.dropout = nnx.Dropout(config.attention_probs_dropout_prob, rngs=rngs)
        self.query = _linear(H, H, config, rngs, COLUMN)
        self.key = _linear(H, H, config, rngs, COLUMN)
        self.value = _linear(H, H, config, rngs, COLUMN)
        self.query_global = _linear(H, H, config, rngs, COLUMN)
        self.key_global = _linear(H, H, config, rngs, COLUMN)
        self.value_global = _linear(H, H, config, rngs, COLUMN)

    def __call__(self, h, masks: inputs.AttentionMasks, output_attentions: bool = False):
        B, N, H = h.shape
        nh, hd, w = self.num_heads, self.head_dim, self.window // 2
        scale = 1.0 / math.sqrt(hd)
        q = (self.query(h) * scale).reshape(B, N, nh, hd)
        k = self.key(h).reshape(B, N, nh, hd)
        v = self.value(h).reshape(B, N, nh, hd)
        G = masks.slot_position.shape[1] if masks.has_global else 0
        global_k = global_v = None
        if G:  # the local keys and values of the global tokens, (B, nh, G, hd)
            index = masks.slot_position[:, :, None, None]
            global_k = jnp.take_along_axis(k, index, axis=1).transpose(0, 2, 1, 3)
            global_v = jnp.take_along_axis(v, index, axis=1).transpose(0, 2, 1, 3)
        # Dropout keys drawn from the layer's nnx.Rngs stream only in training (the functions below are pure).
        rate = self.dropout.rate
        train = not self.dropout.deterministic and rate > 0
        band_key, global_key = (self.dropout.rngs(), self.dropout.rngs()) if train else (None, None)
        strategy = self.strategy or semantics.band_strategy("flax", jax.default_backend())
        context, probs = band_attention(
            q, k, v, masks.window_key, w, self.query_block or semantics.query_block(w, strategy, "flax"),
            global_k=global_k, global_v=global_v, slot_valid=masks.slot_valid, dropout=rate, dropout_key=band_key,
            return_probs=output_attentions, strategy=strategy)
        out = context.reshape(B, N, H)
        out = jnp.where(masks.padding[:, :, None], 0.0, out).astype(context.dtype)  # padding attends to nothing
        global_probs = None
        if G:
            global_context, global_probs = global_rows(
                h, masks.slot_position, masks.slot_valid, ~masks.padding, self.query_global,
                self.key_global, self.value_global, nh, scale, dropout=rate, dropout_key=global_key)
            out = scatter_global_rows(out, global_context.reshape(B, G, H), masks.slot_position,
                                      masks.slot_valid)
        if probs is not None:
            # Rows of global tokens (their result comes from global_rows) and of padding carry no local attention.
            probs = jnp.where((masks.is_global | masks.padding)[:, None, :, None], 0.0, probs).astype(probs.dtype)
        return out, probs, global_probs


class LongformerSelfOutput(nnx.Module):
    """dense -> dropout -> + residual -> LayerNorm (after attention, and after the FFN as `LongformerOutput`)."""

    def __init__(self, config: LongformerConfig, rngs: nnx.Rngs, in_features: int | None = None):
        shard = ROW  # row-parallel: its input features are split like the heads / the FFN's inner features
        self.dense = _linear(in_features or config.hidden_size, config.hidden_size, config, rngs, shard)
        self.LayerNorm = _layer_norm(config, rngs)
        self.dropout = nnx.Dropout(config.hidden_dropout_prob, rngs=rngs)

    def __call__(self, x, residual):
        return self.add_and_norm(self.dense(x), residual)

    def add_and_norm(self, y, residual):
        # Dropout, residual and LayerNorm run again in the backward, from the dense output and the residual: the
        # forward keeps none of their (N, hidden) intermediates (about five per call otherwise).
        return recompute_module(_add_and_norm, self, y, residual)


def _add_and_norm(m: LongformerSelfOutput, y, residual):
    return m.LayerNorm(m.dropout(y) + residual)


class LongformerAttention(nnx.Module):
    def __init__(self, config: LongformerConfig, layer_id: int, rngs: nnx.Rngs):
        self.self = LongformerSelfAttention(config, layer_id, rngs)
        self.output = LongformerSelfOutput(config, rngs)

    def __call__(self, h, masks, output_attentions=False):
        out, probs, global_probs = self.self(h, masks, output_attentions)
        return self.output(out, h), probs, global_probs


# ---------------------------------------------------------------------------------------------- layer, encoder
class LongformerIntermediate(nnx.Module):
    def __init__(self, config: LongformerConfig, rngs: nnx.Rngs):
        self.dense = _linear(config.hidden_size, config.intermediate_size, config, rngs, COLUMN)

    def __call__(self, x):
        return _gelu(self.dense(x))  # exact (erf) GELU


class LongformerOutput(LongformerSelfOutput):
    def __init__(self, config: LongformerConfig, rngs: nnx.Rngs):
        super().__init__(config, rngs, in_features=config.intermediate_size)


class LongformerLayer(nnx.Module):
    """Post-LayerNorm block: attention, then the feed-forward network, each with a residual."""

    def __init__(self, config: LongformerConfig, layer_id: int, rngs: nnx.Rngs):
        self.attention = LongformerAttention(config, layer_id, rngs)
        self.intermediate = LongformerIntermediate(config, rngs)
        self.output = LongformerOutput(config, rngs)

    def __call__(self, h, masks, output_attentions=False):
        a, probs, global_probs = self.attention(h, masks, output_attentions)
        # One matmul over all rows: XLA fuses the FFN and reuses its buffers (no row chunks needed, unlike eager).
        # The feed-forward network runs again in the backward, from its input (which the layer keeps anyway): the
        # forward keeps none of its (N, intermediate) activations, and the recomputation's second product has no
        # use there (XLA drops it), so it costs one more product of the first layer. Its output is kept, for the
        # add-and-norm's backward: recomputing that too would need the second product again.
        return self.output.add_and_norm(recompute_module(_feed_forward, self, a), a), probs, global_probs


def _feed_forward(m: LongformerLayer, a):
    """intermediate (dense, GELU) -> the output's dense."""
    return m.output.dense(m.intermediate(a))


class LongformerEncoder(nnx.Module):
    def __init__(self, config: LongformerConfig, rngs: nnx.Rngs):
        self.layer = nnx.List([LongformerLayer(config, i, rngs) for i in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False

    def __call__(self, h, masks, output_attentions=False, output_hidden_states=False):
        all_hidden, all_attn, all_global = [], [], []
        for layer in self.layer:
            if output_hidden_states:
                all_hidden.append(h)
            if self.gradient_checkpointing:
                h, probs, global_probs = recompute_module(
                    lambda m, h, masks: m(h, masks, output_attentions), layer, h, masks)
            else:
                h, probs, global_probs = layer(h, masks, output_attentions)
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

    `use_jit` (default True) runs the network under `nnx.jit`; False runs it op by op (same results).
    `compute_dtype` (default None: the parameters' dtype) is mixed precision: `jnp.bfloat16` keeps the parameters,
    their gradients and the optimizer in float32 and computes in bfloat16 (softmax, log-sum-exp, LayerNorm
    statistics and losses stay in float32)."""

    def __init__(self, config: LongformerConfig, *, use_jit: bool = True):
        self.config = self.checked_config(config)
        self.use_jit = use_jit
        self.compute_dtype = None

    @property
    def dtype(self):
        return jax.tree.leaves(nnx.state(self, nnx.Param))[0].dtype

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, config: LongformerConfig | None = None,
                        dtype=None, compute_dtype=None, device=None, output_loading_info: bool = False,
                        rngs: nnx.Rngs | None = None, **kwargs: Any):
        """Load a Hugging Face Longformer checkpoint (folder, file or Hub id); returns the model in eval mode.

        Reads `model.safetensors` (no torch needed), sharded safetensors, `pytorch_model.bin` (needs torch) or its
        sharded index. `dtype=jnp.bfloat16` (or "bfloat16"; "auto": the checkpoint's) casts the parameters (and so
        the compute); `compute_dtype=jnp.bfloat16` keeps them in float32 and computes in bfloat16 (mixed precision
        training). `device` ("cpu", "gpu", "gpu:1", a jax.Device) commits the parameters there, so every call runs
        there (default: JAX's default device). Keyword arguments that are config fields (`num_labels=3`) update
        the config; `revision`, `cache_dir`, `local_files_only`, `token` go to the Hub. `ignore_mismatched_sizes=True`
        initialises anew a head's tensors whose shapes differ from the checkpoint's (a classifier of another
        `num_labels`), with a warning naming them.
        """
        return load_pretrained(cls, name_or_path, config=config, dtype=dtype, compute_dtype=compute_dtype,
                               device=device, output_loading_info=output_loading_info, rngs=rngs, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write `config.json` and `model.safetensors` (Hugging Face names and layouts; tied tensors once)."""
        save_pretrained(self, save_directory)

    __call__ = LongformerPreTrainedMixin._call_head  # LongformerModel and question answering: their own

    def _forward(self, x: inputs.ModelInputs, labels: dict[str, Any], static: inputs.Static) -> dict[str, Any]:
        """The encoder, then this model's head: under `nnx.jit` (once per input shape and `Static`) or op by op."""
        return (_jit_forward if self.use_jit else _encode_and_head)(self, x, labels, static)


def _encode_and_head(model, x, labels, static):
    if model.compute_dtype is not None:
        model = _computing_in(model, model.compute_dtype)
    return model._head(model._base().encode(x, static), labels, static)


def _computing_in(model, dtype):
    """The model with its floating parameters cast to `dtype` (gradients flow back to the originals in their own
    dtype); its dropout streams stay the model's own, so they advance as in a plain call."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return nnx.merge(graphdef, cast_floating(params, dtype), rest)


_jit_forward = nnx.jit(_encode_and_head, static_argnums=(3,))


# ---------------------------------------------------------------------------------------------- inputs
class JaxOps(inputs.Ops):
    """JAX's array ops for the input pipeline (`longformer.inputs`)."""

    int_dtype = jnp.int32

    def tensor(self, x):
        """jax arrays as they are; anything else as a NumPy array of its own dtype (an int64 id stays int64 until
        the checks have seen it: jax would wrap it to int32)."""
        return x if x is None or isinstance(x, jax.Array) else np.asarray(x)

    def is_traced(self, t) -> bool:
        return isinstance(t, jax.core.Tracer)

    def cast(self, t, dtype):
        return jnp.asarray(t, dtype)

    def full(self, like, shape, value, dtype):
        return jnp.full(shape, value, dtype)

    def pad_right(self, t, pad, value=0):
        return jnp.pad(t, [(0, 0), (0, pad)] + [(0, 0)] * (t.ndim - 2), constant_values=value)

    def minimum(self, a, b):
        return jnp.minimum(a, b)

    def cumsum(self, t, axis):
        return jnp.cumsum(t, axis=axis)

    def arange(self, like, start, stop):
        return jnp.arange(start, stop)

    def broadcast_to(self, t, shape):
        return jnp.broadcast_to(t, shape)

    def sum(self, t, axis):
        return jnp.sum(t, axis=axis)

    def argmax(self, t, axis):
        return jnp.argmax(t, axis=axis)

    def concat(self, tensors, axis):
        return jnp.concatenate(tensors, axis=axis)

    def transpose_last(self, t):
        return jnp.swapaxes(t, -1, -2)


LongformerPreTrainedModel.backend = "flax"
LongformerPreTrainedModel._ops = JaxOps()


# ---------------------------------------------------------------------------------------------- base model
class LongformerModel(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig, add_pooling_layer: bool = True, *, rngs: nnx.Rngs | None = None,
                 use_jit: bool = True):
        super().__init__(config, use_jit=use_jit)
        rngs = nnx.Rngs(0) if rngs is None else rngs
        self.embeddings = LongformerEmbeddings(config, rngs)
        self.encoder = LongformerEncoder(config, rngs)
        self.pooler = LongformerPooler(config, rngs) if add_pooling_layer else None

    __call__ = LongformerPreTrainedMixin._call_base

    def encode(self, x: inputs.ModelInputs, static: inputs.Static) -> dict[str, Any]:
        """The base model on padded inputs: its output fields, cut to the input length."""
        h = self.embeddings(x.input_ids, x.token_type_ids, x.position_ids, x.inputs_embeds)
        masks = inputs.attention_masks(x.merged_mask, static.num_slots, global_slots)
        h, all_hidden, all_attn, all_global = self.encoder(h, masks, static.output_attentions,
                                                           static.output_hidden_states)
        return inputs.encoder_outputs(self._ops, static, h, self.pooler, all_hidden, all_attn, all_global)


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

    def _head(self, outputs, labels, static):
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


class LongformerForSequenceClassification(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig, *, rngs: nnx.Rngs | None = None, use_jit: bool = True):
        super().__init__(config, use_jit=use_jit)
        rngs = nnx.Rngs(0) if rngs is None else rngs
        self.num_labels = config.num_labels
        self.longformer = LongformerModel(config, add_pooling_layer=False, rngs=rngs, use_jit=use_jit)
        self.classifier = LongformerClassificationHead(config, rngs)

    def _head(self, outputs, labels, static):
        logits = self.classifier(outputs["last_hidden_state"])
        loss = None if labels["labels"] is None else self._loss(logits, labels["labels"])
        return {"loss": loss, "logits": logits, **encoder_fields(outputs)}

    def _loss(self, logits, labels):
        problem = inputs.problem_type(self.config, self.num_labels, jnp.issubdtype(labels.dtype, jnp.integer))
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

    def _head(self, outputs, labels, static):
        logits = self.classifier(self.dropout(outputs["pooler_output"])).reshape(-1, static.num_choices)
        loss = None if labels["labels"] is None else _loss_from_logits(logits, labels["labels"], static.num_choices)
        return {"loss": loss, "logits": logits, **encoder_fields(outputs)}


class LongformerForTokenClassification(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig, *, rngs: nnx.Rngs | None = None, use_jit: bool = True):
        super().__init__(config, use_jit=use_jit)
        rngs = nnx.Rngs(0) if rngs is None else rngs
        self.num_labels = config.num_labels
        self.longformer = LongformerModel(config, add_pooling_layer=False, rngs=rngs, use_jit=use_jit)
        self.dropout = nnx.Dropout(config.hidden_dropout_prob, rngs=rngs)
        self.classifier = _linear(config.hidden_size, config.num_labels, config, rngs)

    def _head(self, outputs, labels, static):
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

    __call__ = LongformerPreTrainedMixin._call_question_answering

    def _head(self, outputs, labels, static):
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
