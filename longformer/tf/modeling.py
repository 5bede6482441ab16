"""Longformer (Beltagy et al., 2020, arXiv:2004.05150) as Keras 3 layers calling TensorFlow ops.

The same modules as `longformer/pt/modeling.py`, in the same order and under the same attribute names (each Keras
layer is also *named* after its attribute), so that a weight's attribute path is its Hugging Face checkpoint key
(`checkpoint.py` maps `kernel` / `gamma` / `beta` / `embeddings`). The attention maths lives in `attention.py`.
Read top to bottom: embeddings, attention, layer, encoder, base model, heads.

Everything in `call` is a TF op on tensors whose shapes may be dynamic, so a model runs eagerly, inside
`tf.function`, under XLA (`jit_compile=True`), in `model.fit` and in an exported SavedModel. The number of global
slots is read from the data when the inputs are eager tensors; inside a graph pass `num_global_slots=G`, or every
position gets a slot (correct, slower).
"""

from __future__ import annotations

import functools
import math
import os
import weakref
from typing import Any

import keras
import tensorflow as tf

from .. import inputs, semantics
from ..config import LongformerConfig
from ..outputs import encoder_fields
from ..pretrained import LongformerPreTrainedMixin
from .attention import (
    _dim,
    _dropout,
    band_attention,
    global_rows,
    global_slots,
    scatter_global_rows,
)
from .checkpoint import load_pretrained, save_pretrained


def _init(config: LongformerConfig):
    return keras.initializers.TruncatedNormal(stddev=config.initializer_range)


def _dense(units: int, config: LongformerConfig, name: str) -> keras.layers.Dense:
    return keras.layers.Dense(units, kernel_initializer=_init(config), name=name)


def _layer_norm(config: LongformerConfig, name: str) -> keras.layers.LayerNormalization:
    return keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name=name)


def _lookup(embed: keras.layers.Embedding, ids: tf.Tensor, padding_idx: int | None = None) -> tf.Tensor:
    """Rows of an embedding table; the padding row gets no gradient (torch's `padding_idx`)."""
    x = tf.gather(embed.embeddings, ids)
    if padding_idx is None:
        return x
    return tf.where((ids == padding_idx)[..., None], tf.stop_gradient(x), x)


class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` whose masks come from the attention's `_dropout` (stateless Philox, seeded by the
    layer's own seed generator): Keras' own op compiles under XLA on CPU to a generator ~30x slower."""

    def call(self, inputs, training=False, seed=None):
        if not training or self.rate == 0.0:
            return inputs
        return _dropout(inputs, self.rate, self.draw_seed(training, seed))

    def draw_seed(self, training, seed=None):
        """`seed`, or the next of the layer's seeds if a training call needs one (None if it needs none)."""
        if not training or self.rate == 0.0:
            return None
        return tf.cast(self.seed_generator.next() if seed is None else seed, tf.int64)


def _gelu(x: tf.Tensor) -> tf.Tensor:
    return tf.nn.gelu(x, approximate=False)


def recomputed(fn, *args):
    """`fn(*args)` (one tensor out), checkpointed: the forward keeps only the floating-point tensors of `args` (the
    inputs; the other arguments, such as a dropout seed, are held as they are), the backward runs `fn` again and
    differentiates that. Variables `fn` reads get their gradients as well (`tf.custom_gradient`'s `variables`).

    The recomputation waits for the gradient of the output (its inputs are shifted by 0 * one element of it):
    without that data dependence a graph optimizer may run it early, with the forward, or merge it with the
    forward (CSE), and keep the intermediates after all."""
    index = [i for i, a in enumerate(args) if isinstance(a, tf.Tensor) and a.dtype.is_floating]

    def call(inputs):
        full = list(args)
        for i, x in zip(index, inputs, strict=True):
            full[i] = x
        return fn(*full)

    @tf.custom_gradient
    def run(*inputs):
        def grad(d_out, variables=None):
            zero = 0 * tf.reshape(d_out, [-1])[0]
            shifted = [x + tf.cast(zero, x.dtype) for x in inputs]
            watched = shifted + list(variables or [])
            with tf.GradientTape() as tape:
                tape.watch(shifted)
                out = call(shifted)
            grads = tape.gradient(out, watched, output_gradients=d_out)
            return grads if variables is None else (grads[:len(inputs)], grads[len(inputs):])

        return call(inputs), grad

    return run(*(args[i] for i in index))


def _compiled_by_xla() -> bool:
    """Whether this call is being traced into a function XLA compiles (jit_compile=True, at any level)."""
    from tensorflow.python.ops import control_flow_util  # TF's own test, as its ops use it

    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def recompute_module(fn, module: keras.layers.Layer, *args):
    """`fn(module, *args)` through `recomputed`: the module's weights are read inside, so they get their gradients
    from the recomputation. Dropout seeds must be among `args` (drawn before: a recomputation that drew from the
    seed generators would get new masks)."""
    return recomputed(functools.partial(fn, module), *args)


# ---------------------------------------------------------------------------------------------- embeddings
class LongformerEmbeddings(keras.layers.Layer):
    def __init__(self, config: LongformerConfig, **kwargs):
        super().__init__(**kwargs)
        self.pad = config.pad_token_id
        H = config.hidden_size
        self.word_embeddings = keras.layers.Embedding(config.vocab_size, H, embeddings_initializer=_init(config),
                                                      name="word_embeddings")
        self.position_embeddings = keras.layers.Embedding(config.max_position_embeddings, H,
                                                          embeddings_initializer=_init(config),
                                                          name="position_embeddings")
        self.token_type_embeddings = keras.layers.Embedding(config.type_vocab_size, H,
                                                            embeddings_initializer=_init(config),
                                                            name="token_type_embeddings")
        self.LayerNorm = _layer_norm(config, "LayerNorm")
        self.dropout = Dropout(config.hidden_dropout_prob, name="dropout")

    def build(self, input_shape=None):
        for embed in (self.word_embeddings, self.position_embeddings, self.token_type_embeddings):
            embed.build((None,))
        self.LayerNorm.build((None, None, self.word_embeddings.output_dim))
        self.built = True

    def call(self, input_ids, token_type_ids, position_ids, inputs_embeds, training=False):
        if inputs_embeds is None:
            inputs_embeds = _lookup(self.word_embeddings, input_ids, self.pad)
        else:  # as if looked up in the table: its dtype
            inputs_embeds = tf.cast(inputs_embeds, self.word_embeddings.embeddings.dtype)
        x = (inputs_embeds + _lookup(self.position_embeddings, position_ids, self.pad)
             + _lookup(self.token_type_embeddings, token_type_ids))
        return self.dropout(self.LayerNorm(x), training=training)


# ---------------------------------------------------------------------------------------------- attention
class LongformerSelfAttention(keras.layers.Layer):
    """Projections of one layer; the sliding-window + global attention itself is in `attention.py`."""

    def __init__(self, config: LongformerConfig, layer_id: int, **kwargs):
        super().__init__(**kwargs)
        H = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.window = config.attention_windows[layer_id]
        self.dropout_rate = config.attention_probs_dropout_prob
        self.strategy = None  # how the band loops over its blocks (set_band_strategy); None: the device's default
        self.query_block = None  # rows per band block; None: the strategy's (semantics.query_block)
        self.query = _dense(H, config, "query")
        self.key = _dense(H, config, "key")
        self.value = _dense(H, config, "value")
        self.query_global = _dense(H, config, "query_global")
        self.key_global = _dense(H, config, "key_global")
        self.value_global = _dense(H, config, "value_global")
        # Attention dropout draws its masks from seeds by stateless ops (stateful random ops are ~10x slower under
        # XLA); the generator's state is not a weight.
        self.seed_generator = keras.random.SeedGenerator()

    def build(self, input_shape=None):
        H = self.num_heads * self.head_dim
        for dense in (self.query, self.key, self.value, self.query_global, self.key_global, self.value_global):
            dense.build((None, None, H))
        self.built = True

    def call(self, h, masks: inputs.AttentionMasks, output_attentions: bool = False, training=False, seed=None):
        B, N, H = _shape(h)
        nh, hd, w = self.num_heads, self.head_dim, self.window // 2
        scale = 1.0 / math.sqrt(hd)
        q = tf.reshape(self.query(h) * scale, [B, N, nh, hd])
        k = tf.reshape(self.key(h), [B, N, nh, hd])
        v = tf.reshape(self.value(h), [B, N, nh, hd])
        has_global = masks.has_global
        global_k = global_v = None
        if has_global:  # the local keys and values of the global tokens, (B, nh, G, hd)
            global_k = tf.transpose(tf.gather(k, masks.slot_position, axis=1, batch_dims=1), [0, 2, 1, 3])
            global_v = tf.transpose(tf.gather(v, masks.slot_position, axis=1, batch_dims=1), [0, 2, 1, 3])
        band_seed = rows_seed = None
        if training and self.dropout_rate > 0:
            seed = self.seed_generator.next() if seed is None else seed
            band_seed, rows_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        strategy = self.strategy or semantics.band_strategy("tf-xla" if _compiled_by_xla() else "tf", h.device or "cpu")
        context, probs = band_attention(
            q, k, v, masks.window_key, w, self.query_block or semantics.query_block(w, strategy, "tf"),
            global_k=global_k, global_v=global_v, slot_valid=masks.slot_valid, dropout=self.dropout_rate,
            training=training, seed=band_seed, return_probs=output_attentions, strategy=strategy)
        out = tf.reshape(context, [B, N, H])
        out = tf.where(masks.padding[:, :, None], tf.zeros((), out.dtype), out)  # padding attends to nothing
        global_probs = None
        if has_global:
            global_context, global_probs = global_rows(
                h, masks.slot_position, masks.slot_valid, tf.logical_not(masks.padding), self.query_global,
                self.key_global, self.value_global, nh, scale, dropout=self.dropout_rate, training=training,
                seed=rows_seed)
            out = scatter_global_rows(out, tf.reshape(global_context, [B, -1, H]), masks.slot_position,
                                      masks.slot_valid)
        if probs is not None:
            # Rows of global tokens (their result comes from global_rows) and of padding carry no local attention.
            probs = tf.where((masks.is_global | masks.padding)[:, None, :, None], tf.zeros((), probs.dtype), probs)
        return out, probs, global_probs


class LongformerSelfOutput(keras.layers.Layer):
    """dense -> dropout -> + residual -> LayerNorm (after attention, and after the FFN as `LongformerOutput`)."""

    def __init__(self, config: LongformerConfig, in_features: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.in_features = in_features or config.hidden_size
        self.dense = _dense(config.hidden_size, config, "dense")
        self.LayerNorm = _layer_norm(config, "LayerNorm")
        self.dropout = Dropout(config.hidden_dropout_prob, name="dropout")

    def build(self, input_shape=None):
        self.dense.build((None, None, self.in_features))
        self.LayerNorm.build((None, None, self.dense.units))
        self.built = True

    def call(self, x, residual, training=False, seed=None):
        return self.add_and_norm(self.dense(x), residual, training=training, seed=seed)

    def add_and_norm(self, y, residual, training=False, seed=None):
        # In training, dropout, residual and LayerNorm run again in the backward, from the dense output and the
        # residual: the forward keeps none of their (N, hidden) intermediates (about five per call otherwise).
        if not training:  # no backward to serve: the plain ops (inference graphs and exports as they were)
            return _add_and_norm(self, y, residual, False, None)
        return recompute_module(_add_and_norm, self, y, residual, True, self.dropout.draw_seed(True, seed))


def _add_and_norm(m: LongformerSelfOutput, y, residual, training, seed):
    return m.LayerNorm(m.dropout(y, training=training, seed=seed) + residual)


class LongformerAttention(keras.layers.Layer):
    def __init__(self, config: LongformerConfig, layer_id: int, **kwargs):
        super().__init__(**kwargs)
        self.self = LongformerSelfAttention(config, layer_id, name="self")
        self.output_ = LongformerSelfOutput(config, name="output")

    def build(self, input_shape=None):
        self.self.build()
        self.output_.build()
        self.built = True

    def call(self, h, masks, output_attentions=False, training=False, seeds=(None, None)):
        out, probs, global_probs = self.self(h, masks=masks, output_attentions=output_attentions, training=training,
                                             seed=seeds[0])
        return self.output_(out, h, training=training, seed=seeds[1]), probs, global_probs


# ---------------------------------------------------------------------------------------------- layer, encoder
class LongformerIntermediate(keras.layers.Layer):
    def __init__(self, config: LongformerConfig, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = config.hidden_size
        self.dense = _dense(config.intermediate_size, config, "dense")

    def build(self, input_shape=None):
        self.dense.build((None, None, self.hidden_size))
        self.built = True

    def call(self, x):
        return _gelu(self.dense(x))  # exact (erf) GELU


class LongformerOutput(LongformerSelfOutput):
    def __init__(self, config: LongformerConfig, **kwargs):
        super().__init__(config, in_features=config.intermediate_size, **kwargs)


class LongformerLayer(keras.layers.Layer):
    """Post-LayerNorm block: attention, then the feed-forward network, each with a residual."""

    def __init__(self, config: LongformerConfig, layer_id: int, **kwargs):
        super().__init__(**kwargs)
        self.attention = LongformerAttention(config, layer_id, name="attention")
        self.intermediate = LongformerIntermediate(config, name="intermediate")
        self.output_ = LongformerOutput(config, name="output")

    def build(self, input_shape=None):
        for sub in (self.attention, self.intermediate, self.output_):
            sub.build()
        self.built = True

    def call(self, h, masks, output_attentions=False, training=False, seeds=(None, None, None)):
        """`seeds`: the dropout seeds of the attention probabilities and the two outputs (default: each dropout draws
        its own from its seed generator)."""
        a, probs, global_probs = self.attention(h, masks=masks, output_attentions=output_attentions, training=training,
                                                seeds=seeds[:2])
        # In training the feed-forward network runs again in the backward, from its input (which the layer keeps
        # anyway): the forward keeps none of its (N, intermediate) activations, and the recomputation's second
        # product has no use there (graph and XLA prune it), so it costs one more product of the first layer. Its
        # output is kept, for the add-and-norm's backward: recomputing that too would need the second product again.
        y = recompute_module(_feed_forward, self, a) if training else _feed_forward(self, a)
        return self.output_.add_and_norm(y, a, training=training, seed=seeds[2]), probs, global_probs

    def draw_seeds(self) -> tuple:
        """The seeds a training call draws, in `seeds` order (None for a dropout of rate 0)."""
        attention = self.attention.self
        return (attention.seed_generator.next() if attention.dropout_rate > 0 else None,
                self.attention.output_.dropout.draw_seed(True), self.output_.dropout.draw_seed(True))


def _feed_forward(m: LongformerLayer, a):
    """intermediate (dense, GELU) -> the output's dense."""
    return m.output_.dense(m.intermediate(a))


class LongformerEncoder(keras.layers.Layer):
    def __init__(self, config: LongformerConfig, **kwargs):
        super().__init__(**kwargs)
        self.layer = [LongformerLayer(config, i, name=f"layer.{i}") for i in range(config.num_hidden_layers)]
        self.gradient_checkpointing = False

    def build(self, input_shape=None):
        for layer in self.layer:
            layer.build()
        self.built = True

    def call(self, h, masks, output_attentions=False, output_hidden_states=False, training=False):
        static = (bool(output_attentions), bool(output_hidden_states), bool(training), self.gradient_checkpointing)
        if tf.executing_eagerly():
            # What a trace bakes in is its key: the static setting and every layer's band loop (set_band_strategy).
            key = (*static, *((l.attention.self.strategy, l.attention.self.query_block) for l in self.layer))
            # Eager calls run the layers as one graph (traced once per static setting, shapes generalised): TF
            # then fuses bias and GELU into the matmuls and plans the buffers; longformer-base at n = 4096 runs
            # 5.2 s op by op, 4.5 s as a graph. Inside a caller's tf.function / fit / export this is inlined.
            graphs = _ENCODER_GRAPHS.setdefault(self, {})
            if key not in graphs:
                graphs[key] = tf.function(functools.partial(self._run_layers, static=static), autograph=False,
                                          reduce_retracing=True)
            return graphs[key](h, masks)
        return self._run_layers(h, masks, static=static)

    def _run_layers(self, h, masks, static):
        output_attentions, output_hidden_states, training, _ = static
        all_hidden, all_attn, all_global = [], [], []
        for layer in self.layer:
            if output_hidden_states:
                all_hidden.append(h)
            if self.gradient_checkpointing and training:
                h, probs, global_probs = _recompute_grad(layer, h, masks, output_attentions)
            else:
                h, probs, global_probs = layer(h, masks=masks, output_attentions=output_attentions, training=training)
            if output_attentions:
                all_attn.append(probs)
                all_global.append(global_probs)
        if output_hidden_states:
            all_hidden.append(h)
        return h, all_hidden, all_attn, all_global


_ENCODER_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # encoder -> static setting -> graph


def _recompute_grad(layer: LongformerLayer, h, masks, output_attentions):
    """Gradient checkpointing: keep only the layer's input; recompute its activations in the backward pass. The
    dropout seeds are drawn once, here, so the recomputation draws the forward's masks (a recomputation that drew
    from the seed generators would get new ones: wrong gradients)."""
    if output_attentions:  # attention maps are outputs: compute them normally
        return layer(h, masks=masks, output_attentions=output_attentions, training=True)
    # Our `recomputed`, not `tf.recompute_grad`: under XLA that one's recomputation is merged with the forward and
    # keeps everything (the memory XLA plans per layer: 11 layer inputs' worth, ours ~1; tests/test_tf.py).
    return recompute_module(_checkpointed_layer, layer, h, masks, layer.draw_seeds()), None, None


def _checkpointed_layer(layer: LongformerLayer, h, masks, seeds):
    return layer(h, masks=masks, output_attentions=False, training=True, seeds=seeds)[0]


class LongformerPooler(keras.layers.Layer):
    def __init__(self, config: LongformerConfig, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = config.hidden_size
        self.dense = _dense(config.hidden_size, config, "dense")

    def build(self, input_shape=None):
        self.dense.build((None, self.hidden_size))
        self.built = True

    def call(self, h):
        return tf.tanh(self.dense(h[:, 0]))


def _shape(x: tf.Tensor):
    """Every size of `x`: static where known, dynamic otherwise."""
    return tuple(_dim(x, i) for i in range(len(x.shape)))


# ---------------------------------------------------------------------------------------------- base classes
def _our_errors(call):
    """Input errors reach the user as we raised them: Keras re-raises an exception marked as already annotated
    unchanged, instead of a copy whose message is wrapped in an argument dump."""
    @functools.wraps(call)
    def checked_call(self, *args, **kwargs):
        try:
            return call(self, *args, **kwargs)
        except (ValueError, TypeError) as e:
            e._keras_call_info_injected = True
            raise

    return checked_call


class LongformerPreTrainedModel(LongformerPreTrainedMixin, keras.Model):
    """Input handling, Keras training/serving hooks, checkpoint loading and saving shared by every class below."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "call" in cls.__dict__:
            cls.call = _our_errors(cls.__dict__["call"])

    def __init__(self, config: LongformerConfig, **kwargs):
        config = self.checked_config(config)
        super().__init__(**kwargs)
        self.config = config
        self.loss_tracker = keras.metrics.Mean(name="loss")  # what fit / evaluate report

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, config: LongformerConfig | None = None,
                        dtype=None, device=None, output_loading_info: bool = False, **kwargs: Any):
        """Load a Longformer checkpoint (folder, file or Hub id): `model.safetensors` (no torch needed), sharded
        safetensors, `pytorch_model.bin` (needs torch), or Hugging Face 4.x `tf_model.h5` (sharded or not).
        `dtype="bfloat16"` (or tf.bfloat16; "auto": the checkpoint's) builds the variables and compute in that
        dtype; a Keras mixed policy
        (`dtype="mixed_bfloat16"`, or the global policy) keeps the variables in float32. `device` ("cpu", "gpu",
        "/GPU:1") places the variables (calls run where TF places them: wrap them in `tf.device` to choose).
        Keyword arguments that are config fields (`num_labels=3`) update the config; `revision`, `cache_dir`,
        `local_files_only`, `token` go to the Hub. `ignore_mismatched_sizes=True` initialises anew a head's tensors
        whose shapes differ from the checkpoint's (a classifier of another `num_labels`), with a warning naming
        them."""
        return load_pretrained(cls, name_or_path, config=config, dtype=dtype, device=device,
                               output_loading_info=output_loading_info, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write `config.json` and `model.safetensors` (Hugging Face names and layouts; tied tensors once)."""
        save_pretrained(self, save_directory)

    # ------------------------------------------------------------------ Keras workflow
    def train_step(self, data):
        """`model.fit` on batches that carry their labels (`labels`, or `start_positions`/`end_positions`)."""
        x = data[0] if isinstance(data, tuple) else data
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss = self(**x, training=True, return_dict=True).loss
            if loss is None:
                raise ValueError(f"model.fit needs the labels in the inputs: {list(self.label_names)}.")
            # Under a distribution strategy the replicas' gradients are summed: each replica's mean loss is
            # divided by their number, so the step equals one device's on the whole batch.
            scaled = loss / replicas
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        x = data[0] if isinstance(data, tuple) else data
        self.loss_tracker.update_state(self(**x, training=False, return_dict=True).loss)
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]

    def serving_fields(self) -> tuple[str, ...]:
        """The output fields a SavedModel's serving signature returns."""
        return ("logits",)

    def export(self, filepath, format="tf_saved_model", verbose=False, input_signature=None, **kwargs):
        """SavedModel with a serving signature: int32 `input_ids`, `attention_mask`, `global_attention_mask` of
        any batch and length (multiple choice: any number of choices too); returns the head's output fields."""
        if input_signature is None:
            shape = [None, None, None] if isinstance(self, LongformerForMultipleChoice) else [None, None]
            input_signature = [{name: tf.TensorSpec(shape, tf.int32, name=name)
                                for name in ("input_ids", "attention_mask", "global_attention_mask")}]
        export = keras.export.ExportArchive()
        export.track(self)
        fields = self.serving_fields()

        def serve(inputs):
            out = self(**inputs, training=False, return_dict=True)
            return {f: getattr(out, f) for f in fields}

        export.add_endpoint("serve", serve, input_signature=input_signature)
        export.write_out(filepath, verbose=verbose)

    @_our_errors
    def call(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
             position_ids=None, inputs_embeds=None, labels=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, num_global_slots=None, training=False):
        """Every head's call (LongformerModel and question answering have their own labels): Hugging Face's
        keyword arguments, Keras' `training`, or a batch dict as the first argument."""
        input_ids, kw = _unpack(input_ids, dict(attention_mask=attention_mask,
                                                global_attention_mask=global_attention_mask,
                                                token_type_ids=token_type_ids, position_ids=position_ids,
                                                inputs_embeds=inputs_embeds, labels=labels))
        labels = {"labels": kw.pop("labels")}
        return self._run({"input_ids": input_ids, **kw}, labels, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states, return_dict=return_dict,
                         num_global_slots=num_global_slots, training=training)

    def _forward(self, x: inputs.ModelInputs, labels: dict[str, Any], static: inputs.Static) -> dict[str, Any]:
        """The encoder, then this model's head (eagerly, or traced by tf.function / fit / export)."""
        return self._head(self._base().encode(x, static), labels, static)


# ---------------------------------------------------------------------------------------------- inputs
class TfOps(inputs.Ops):
    """TensorFlow's array ops for the input pipeline (`longformer.inputs`); sizes are Python ints where the shapes
    are static and tensors where they are not."""

    int_dtype = tf.int32

    def tensor(self, x):
        if x is None:
            return None
        if isinstance(x, dict):
            raise TypeError("Pass inputs by keyword (model(**batch)); a dict goes in as the first argument only.")
        return tf.convert_to_tensor(x)

    def kind(self, t) -> str:
        if t.dtype == tf.bool:
            return "b"
        if t.dtype.is_integer:
            return "u" if t.dtype.is_unsigned else "i"
        return "c" if t.dtype.is_complex else "f"

    def is_traced(self, t) -> bool:
        """Graph tensors (inside tf.function, fit, a strategy): their values are unknown while tracing."""
        return tf.is_symbolic_tensor(t)

    def numpy(self, t):
        return t.numpy()

    def shape(self, t):
        return _shape(t)

    def cast(self, t, dtype):
        return t if t.dtype == dtype else tf.cast(t, dtype)

    def full(self, like, shape, value, dtype):
        return tf.fill(shape, tf.constant(value, dtype))

    def pad_right(self, t, pad, value=0):
        return tf.pad(t, [[0, 0], [0, pad]] + [[0, 0]] * (len(t.shape) - 2), constant_values=value)

    def reshape(self, t, shape):
        return tf.reshape(t, shape)

    def minimum(self, a, b):
        return tf.minimum(a, b)

    def cumsum(self, t, axis):
        return tf.cumsum(t, axis=axis)

    def arange(self, like, start, stop):
        return tf.range(start, stop)

    def broadcast_to(self, t, shape):
        return tf.broadcast_to(t, shape)

    def sum(self, t, axis):
        return tf.reduce_sum(t, axis=axis)

    def argmax(self, t, axis):
        return tf.argmax(t, axis=axis, output_type=tf.int32)

    def concat(self, tensors, axis):
        return tf.concat(tensors, axis=axis)

    def transpose_last(self, t):
        return tf.linalg.matrix_transpose(t)


LongformerPreTrainedModel.backend = "tf"
LongformerPreTrainedModel._ops = TfOps()


def _unpack(input_ids, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Keras passes a batch as one dict in the first argument: spread it over the keyword arguments."""
    if isinstance(input_ids, dict):
        batch = dict(input_ids)
        return batch.pop("input_ids", None), {**kwargs, **{k: v for k, v in batch.items() if kwargs.get(k) is None}}
    return input_ids, kwargs


# ---------------------------------------------------------------------------------------------- base model
class LongformerModel(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig, add_pooling_layer: bool = True, **kwargs):
        super().__init__(config, **kwargs)
        self.embeddings = LongformerEmbeddings(config, name="embeddings")
        self.encoder = LongformerEncoder(config, name="encoder")
        self.pooler = LongformerPooler(config, name="pooler") if add_pooling_layer else None
        self.build_all()
        self.built = True

    def build_all(self):
        self.embeddings.build()
        self.encoder.build()
        if self.pooler is not None:
            self.pooler.build()

    def call(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
             position_ids=None, inputs_embeds=None, output_attentions=None, output_hidden_states=None,
             return_dict=None, num_global_slots=None, training=False):
        input_ids, kw = _unpack(input_ids, dict(attention_mask=attention_mask,
                                                global_attention_mask=global_attention_mask,
                                                token_type_ids=token_type_ids, position_ids=position_ids,
                                                inputs_embeds=inputs_embeds))
        return self._run({"input_ids": input_ids, **kw}, {}, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states, return_dict=return_dict,
                         num_global_slots=num_global_slots, training=training)

    def serving_fields(self) -> tuple[str, ...]:
        return ("last_hidden_state",) + (("pooler_output",) if self.pooler is not None else ())

    def encode(self, x: inputs.ModelInputs, static: inputs.Static) -> dict[str, Any]:
        """The base model on padded inputs: its output fields, cut to the input length."""
        h = self.embeddings(x.input_ids, token_type_ids=x.token_type_ids, position_ids=x.position_ids,
                            inputs_embeds=x.inputs_embeds, training=static.training)
        masks = inputs.attention_masks(x.merged_mask, static.num_slots, global_slots)
        h, all_hidden, all_attn, all_global = self.encoder(
            h, masks=masks, output_attentions=static.output_attentions,
            output_hidden_states=static.output_hidden_states, training=static.training)
        return inputs.encoder_outputs(self._ops, static, h, self.pooler, all_hidden, all_attn, all_global)


# ---------------------------------------------------------------------------------------------- heads
def _loss_from_logits(logits, labels, num_classes, ignore_index: int = -100):
    """Mean cross-entropy over the labels that are not `ignore_index` (in float32)."""
    logits = tf.reshape(tf.cast(logits, tf.float32), [-1, num_classes])
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    keep = labels != ignore_index
    per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.where(keep, labels, 0), logits=logits)
    return tf.reduce_sum(tf.where(keep, per_token, 0.0)) / tf.reduce_sum(tf.cast(keep, tf.float32))


class LongformerLMHead(keras.layers.Layer):
    def __init__(self, config: LongformerConfig, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.vocab_size = config.hidden_size, config.vocab_size
        self.dense = _dense(config.hidden_size, config, "dense")
        self.layer_norm = _layer_norm(config, "layer_norm")
        # Tied (the default): the decoder is the word embedding matrix; only its bias is a weight here.
        self.decoder = (None if config.tie_word_embeddings else
                        keras.layers.Dense(config.vocab_size, use_bias=False, kernel_initializer=_init(config),
                                           name="decoder"))

    def build(self, input_shape=None):
        self.dense.build((None, None, self.hidden_size))
        self.layer_norm.build((None, None, self.hidden_size))
        if self.decoder is not None:
            self.decoder.build((None, None, self.hidden_size))
        self.bias = self.add_weight(name="bias", shape=(self.vocab_size,), initializer="zeros")
        self.built = True

    def call(self, h, word_embeddings: keras.layers.Embedding):
        z = self.layer_norm(tf.nn.gelu(self.dense(h), approximate=False))
        if self.decoder is None:
            logits = tf.matmul(z, tf.cast(word_embeddings.embeddings, z.dtype), transpose_b=True)
        else:
            logits = self.decoder(z)
        return logits + tf.cast(self.bias, logits.dtype)


class LongformerForMaskedLM(LongformerPreTrainedModel):

    def __init__(self, config: LongformerConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.longformer = LongformerModel(config, add_pooling_layer=False, name="longformer")
        self.lm_head = LongformerLMHead(config, name="lm_head")
        self.lm_head.build()
        self.built = True

    def tied_keys(self) -> tuple[str, ...]:
        keys = ("lm_head.decoder.bias",)
        return ("lm_head.decoder.weight", *keys) if self.config.tie_word_embeddings else keys

    def _head(self, outputs, labels, static):
        logits = self.lm_head(outputs["last_hidden_state"], word_embeddings=self.longformer.embeddings.word_embeddings)
        loss = None if labels["labels"] is None else _loss_from_logits(logits, labels["labels"],
                                                                       self.config.vocab_size)
        return {"loss": loss, "logits": logits, **encoder_fields(outputs)}



class LongformerClassificationHead(keras.layers.Layer):
    """Head on the `<s>` token: dropout, dense, tanh, dropout, projection."""

    def __init__(self, config: LongformerConfig, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = config.hidden_size
        self.dense = _dense(config.hidden_size, config, "dense")
        self.dropout = Dropout(config.hidden_dropout_prob, name="dropout")
        self.out_proj = _dense(config.num_labels, config, "out_proj")

    def build(self, input_shape=None):
        self.dense.build((None, self.hidden_size))
        self.out_proj.build((None, self.hidden_size))
        self.built = True

    def call(self, h, training=False):
        x = self.dropout(h[:, 0], training=training)
        x = self.dropout(tf.tanh(self.dense(x)), training=training)
        return self.out_proj(x)


class LongformerForSequenceClassification(LongformerPreTrainedModel):

    def __init__(self, config: LongformerConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.num_labels = config.num_labels
        self.longformer = LongformerModel(config, add_pooling_layer=False, name="longformer")
        self.classifier = LongformerClassificationHead(config, name="classifier")
        self.classifier.build()
        self.built = True

    def _head(self, outputs, labels, static):
        logits = self.classifier(outputs["last_hidden_state"], training=static.training)
        loss = None if labels["labels"] is None else self._loss(logits, labels["labels"])
        return {"loss": loss, "logits": logits, **encoder_fields(outputs)}

    def _loss(self, logits, labels):
        problem = inputs.problem_type(self.config, self.num_labels, labels.dtype.is_integer)
        logits = tf.cast(logits, tf.float32)
        if problem == "regression":
            if self.num_labels == 1:
                return tf.reduce_mean((tf.squeeze(logits) - tf.cast(tf.squeeze(labels), tf.float32)) ** 2)
            return tf.reduce_mean((logits - tf.cast(labels, tf.float32)) ** 2)
        if problem == "single_label_classification":
            return _loss_from_logits(logits, labels, self.num_labels)
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, tf.float32),
                                                                      logits=logits))


class LongformerForMultipleChoice(LongformerPreTrainedModel):

    def __init__(self, config: LongformerConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.longformer = LongformerModel(config, name="longformer")
        self.dropout = Dropout(config.hidden_dropout_prob, name="dropout")
        self.classifier = _dense(1, config, "classifier")
        self.classifier.build((None, config.hidden_size))
        self.built = True

    def _head(self, outputs, labels, static):
        logits = self.classifier(self.dropout(outputs["pooler_output"], training=static.training))
        logits = tf.reshape(logits, [-1, static.num_choices])
        loss = None if labels["labels"] is None else _loss_from_logits(logits, labels["labels"], static.num_choices)
        return {"loss": loss, "logits": logits, **encoder_fields(outputs)}



class LongformerForTokenClassification(LongformerPreTrainedModel):

    def __init__(self, config: LongformerConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.num_labels = config.num_labels
        self.longformer = LongformerModel(config, add_pooling_layer=False, name="longformer")
        self.dropout = Dropout(config.hidden_dropout_prob, name="dropout")
        self.classifier = _dense(config.num_labels, config, "classifier")
        self.classifier.build((None, None, config.hidden_size))
        self.built = True

    def _head(self, outputs, labels, static):
        logits = self.classifier(self.dropout(outputs["last_hidden_state"], training=static.training))
        loss = None if labels["labels"] is None else _loss_from_logits(logits, labels["labels"], self.num_labels)
        return {"loss": loss, "logits": logits, **encoder_fields(outputs)}



class LongformerForQuestionAnswering(LongformerPreTrainedModel):

    def __init__(self, config: LongformerConfig, **kwargs):
        if config.num_labels != 2:
            raise ValueError(f"Question answering predicts start and end logits: num_labels must be 2, "
                             f"got {config.num_labels}.")
        super().__init__(config, **kwargs)
        self.longformer = LongformerModel(config, add_pooling_layer=False, name="longformer")
        self.qa_outputs = _dense(config.num_labels, config, "qa_outputs")
        self.qa_outputs.build((None, None, config.hidden_size))
        self.built = True

    def serving_fields(self) -> tuple[str, ...]:
        return ("start_logits", "end_logits")

    def call(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
             position_ids=None, inputs_embeds=None, start_positions=None, end_positions=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, num_global_slots=None,
             training=False):
        input_ids, kw = _unpack(input_ids, dict(attention_mask=attention_mask,
                                                global_attention_mask=global_attention_mask,
                                                token_type_ids=token_type_ids, position_ids=position_ids,
                                                inputs_embeds=inputs_embeds, start_positions=start_positions,
                                                end_positions=end_positions))
        labels = {"start_positions": kw.pop("start_positions"), "end_positions": kw.pop("end_positions")}
        return self._run({"input_ids": input_ids, **kw}, labels, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states, return_dict=return_dict,
                         num_global_slots=num_global_slots, training=training)

    def _head(self, outputs, labels, static):
        logits = self.qa_outputs(outputs["last_hidden_state"])
        start_logits, end_logits = logits[..., 0], logits[..., 1]
        loss = None
        if labels["start_positions"] is not None and labels["end_positions"] is not None:
            n = _shape(start_logits)[1]  # positions outside the input are ignored
            start = tf.clip_by_value(tf.reshape(tf.cast(labels["start_positions"], tf.int32), [-1]), 0, n)
            end = tf.clip_by_value(tf.reshape(tf.cast(labels["end_positions"], tf.int32), [-1]), 0, n)
            loss = (_loss_from_logits(start_logits, start, n, ignore_index=n)
                    + _loss_from_logits(end_logits, end, n, ignore_index=n)) / 2
        return {"loss": loss, "start_logits": start_logits, "end_logits": end_logits, **encoder_fields(outputs)}
