"""Longformer (Beltagy et al., 2020, arXiv:2004.05150) in torch.nn.

Module and parameter names are Hugging Face's PyTorch checkpoint keys, so `state_dict()` *is* the canonical
checkpoint. The attention maths lives in `attention.py`; this file owns the parameters and the data flow.
Read top to bottom: embeddings, attention, layer, encoder, base model, heads.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .. import inputs, semantics
from ..config import LongformerConfig
from ..outputs import encoder_fields
from ..pretrained import LongformerPreTrainedMixin
from .attention import band_attention, global_rows, global_slots, scatter_global_rows, take_rows
from .checkpoint import load_pretrained, save_pretrained

# ---------------------------------------------------------------------------------------------- linear layers
_ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class Dropout(nn.Dropout):
    """nn.Dropout that keeps a 1-byte mask for the backward: on CPU, torch's dropout keeps its float32 noise (four
    bytes per value; the hidden dropouts of one base layer at n = 4096: ~25 MB of a training step's memory)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand_like(x) >= self.p
        return torch.where(keep, x * (1.0 / (1.0 - self.p)), 0.0)


def linear(layer: nn.Linear, x: torch.Tensor, *, gelu: bool = False) -> torch.Tensor:
    """`layer(x)`, then the exact (erf) GELU if asked.

    Inference in float32 on CPU runs as one oneDNN call with the GELU fused in (the operator `torch.compile` itself
    lowers linear layers to on CPU): oneDNN picks its kernels by the CPU's instruction sets, while aten's float32
    matmul goes to MKL, which is tuned for Intel CPUs; on the AMD EPYC (AVX-512) benchmark machine oneDNN runs the
    encoder's projections ~12% faster and the MLM decoder ~35%. Anything that needs autograd, other dtypes and
    devices, code being compiled (the compiler fuses on its own) and `torch.backends.mkldnn.flags(enabled=False)`
    run aten.
    """
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad)
    if (_ONEDNN_LINEAR and not needs_grad and x.dtype == torch.float32 and x.device.type == "cpu"
            and torch.backends.mkldnn.enabled and not torch.compiler.is_compiling()):
        return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "gelu" if gelu else "none", [],
                                                  "none" if gelu else "")
    y = layer(x)
    return F.gelu(y) if gelu else y


# ---------------------------------------------------------------------------------------------- embeddings
class LongformerEmbeddings(nn.Module):
    def __init__(self, config: LongformerConfig):
        super().__init__()
        H = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, H, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, H, padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, H)
        self.LayerNorm = nn.LayerNorm(H, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids, position_ids, inputs_embeds):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        else:  # as if looked up in the table: its dtype
            inputs_embeds = inputs_embeds.to(self.word_embeddings.weight.dtype)
        x = inputs_embeds + self.position_embeddings(position_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


# ---------------------------------------------------------------------------------------------- attention
class LongformerSelfAttention(nn.Module):
    """Projections of one layer; the sliding-window + global attention itself is in `attention.py`."""

    def __init__(self, config: LongformerConfig, layer_id: int):
        super().__init__()
        H = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.window = config.attention_windows[layer_id]
        self.dropout = config.attention_probs_dropout_prob
        self.strategy = None  # how the band loops over its blocks (set_band_strategy); None: the device's default
        self.query_block = None  # rows per band block; None: the strategy's (semantics.query_block)
        self.query = nn.Linear(H, H)
        self.key = nn.Linear(H, H)
        self.value = nn.Linear(H, H)
        self.query_global = nn.Linear(H, H)
        self.key_global = nn.Linear(H, H)
        self.value_global = nn.Linear(H, H)

    def forward(self, h, masks: inputs.AttentionMasks, output_attentions: bool = False):
        B, N, H = h.shape
        nh, hd, w = self.num_heads, self.head_dim, self.window // 2
        scale = 1.0 / math.sqrt(hd)
        q = linear(self.query, h).mul_(scale).view(B, N, nh, hd)  # in place: addmm keeps no output for backward
        k = linear(self.key, h).view(B, N, nh, hd)
        v = linear(self.value, h).view(B, N, nh, hd)
        G = masks.slot_position.shape[1] if masks.has_global else 0
        global_k = global_v = None
        if G:  # the local keys and values of the global tokens, (B, nh, G, hd)
            global_k = take_rows(k, masks.slot_position).transpose(1, 2)
            global_v = take_rows(v, masks.slot_position).transpose(1, 2)
        strategy = self.strategy or semantics.band_strategy("pt", q.device.type)
        context, probs = band_attention(
            q, k, v, masks.window_key, w, self.query_block or semantics.query_block(w, strategy, "pt"),
            global_k=global_k, global_v=global_v, slot_valid=masks.slot_valid, is_global=masks.is_global,
            dropout=self.dropout, training=self.training, return_probs=output_attentions, strategy=strategy)
        out = context.reshape(B, N, H)
        out = out.masked_fill(masks.padding[:, :, None], 0.0)  # padding rows attend to nothing
        global_probs = None
        if G:
            global_context, global_probs = global_rows(
                h, masks.slot_position, masks.slot_valid, ~masks.padding, self.query_global,
                self.key_global, self.value_global, nh, scale, dropout=self.dropout, training=self.training)
            out = scatter_global_rows(out, global_context.reshape(B, G, H), masks.slot_position,
                                      masks.slot_valid)
        if probs is not None:
            # Rows of global tokens (their result comes from global_rows) and of padding carry no local attention.
            probs = probs.masked_fill((masks.is_global | masks.padding)[:, None, :, None], 0.0)
        return out, probs, global_probs


class LongformerSelfOutput(nn.Module):
    """dense -> dropout -> + residual -> LayerNorm (after attention, and after the FFN as `LongformerOutput`)."""

    def __init__(self, config: LongformerConfig, in_features: int | None = None):
        super().__init__()
        self.dense = nn.Linear(in_features or config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, x, residual):
        y = self.dropout(linear(self.dense, x))
        return self.LayerNorm(y.add_(residual))  # in place: neither dense nor dropout keeps y for backward


class LongformerAttention(nn.Module):
    def __init__(self, config: LongformerConfig, layer_id: int):
        super().__init__()
        self.self = LongformerSelfAttention(config, layer_id)
        self.output = LongformerSelfOutput(config)

    def forward(self, h, masks, output_attentions=False):
        out, probs, global_probs = self.self(h, masks, output_attentions)
        return self.output(out, h), probs, global_probs


# ---------------------------------------------------------------------------------------------- layer, encoder
class LongformerIntermediate(nn.Module):
    def __init__(self, config: LongformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, x):
        return linear(self.dense, x, gelu=True)  # exact (erf) GELU


class LongformerOutput(LongformerSelfOutput):
    def __init__(self, config: LongformerConfig):
        super().__init__(config, in_features=config.intermediate_size)


class LongformerLayer(nn.Module):
    """Post-LayerNorm block: attention, then the feed-forward network, each with a residual."""

    def __init__(self, config: LongformerConfig, layer_id: int):
        super().__init__()
        self.attention = LongformerAttention(config, layer_id)
        self.intermediate = LongformerIntermediate(config)
        self.output = LongformerOutput(config)

    def forward(self, h, masks, output_attentions=False):
        a, probs, global_probs = self.attention(h, masks, output_attentions)
        # The feed-forward network is row-wise: run it on slices of the sequence so that its (N, 4H) activations
        # never exist whole (less memory, and temporaries small enough for the allocator to reuse).
        rows = semantics.rows_per_step(a.shape[1], semantics.FEED_FORWARD_ROWS)
        out = torch.cat([self._feed_forward(a[:, i:i + rows]) for i in range(0, a.shape[1], rows)], dim=1)
        return out, probs, global_probs

    def _feed_forward(self, x):
        """intermediate (dense, GELU) -> output (dense, dropout, + x, LayerNorm). When gradients are kept, the
        (rows, 4H) activations are not: `FeedForward` computes them again in the backward."""
        first, second = self.intermediate.dense, self.output.dense
        if (torch.is_grad_enabled() and (x.requires_grad or first.weight.requires_grad)
                and not torch.is_autocast_enabled(x.device.type)):
            y = FeedForward.apply(x, first.weight, first.bias, second.weight, second.bias)
            return self.output.LayerNorm(self.output.dropout(y) + x)
        return self.output(self.intermediate(x), x)


class FeedForward(torch.autograd.Function):
    """`F.linear(gelu(F.linear(x, w1, b1)), w2, b2)` that keeps only `x` for the backward (which the first layer's
    weight gradient needs anyway, and which the layer keeps as its residual): the backward computes the GELU's
    (rows, 4H) input and output again, one more product of the first layer (~10% of a training step), instead of
    storing an (N, 4H) activation per layer (longformer-base at n = 4096: 50 MB a layer)."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2):
        ctx.save_for_backward(x, w1, b1, w2)
        return F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)

    @staticmethod
    def backward(ctx, dy):
        x, w1, b1, w2 = ctx.saved_tensors
        h = F.linear(x, w1, b1)
        dh = torch.ops.aten.gelu_backward(dy @ w2, h)
        dy2, dh2 = dy.reshape(-1, dy.shape[-1]), dh.reshape(-1, dh.shape[-1])
        want = ctx.needs_input_grad
        dx = dh @ w1 if want[0] else None
        d_w1 = dh2.T @ x.reshape(-1, x.shape[-1]) if want[1] else None
        d_b1 = dh2.sum(0) if want[2] else None
        d_w2 = dy2.T @ F.gelu(h).reshape(-1, h.shape[-1]) if want[3] else None
        d_b2 = dy2.sum(0) if want[4] else None
        return dx, d_w1, d_b1, d_w2, d_b2


class LongformerEncoder(nn.Module):
    def __init__(self, config: LongformerConfig):
        super().__init__()
        self.layer = nn.ModuleList(LongformerLayer(config, i) for i in range(config.num_hidden_layers))
        self.gradient_checkpointing = False

    def forward(self, h, masks, output_attentions=False, output_hidden_states=False):
        all_hidden, all_attn, all_global = [], [], []
        for layer in self.layer:
            if output_hidden_states:
                all_hidden.append(h)
            if self.gradient_checkpointing and self.training:
                h, probs, global_probs = checkpoint(layer, h, masks, output_attentions, use_reentrant=False)
            else:
                h, probs, global_probs = layer(h, masks, output_attentions)
            if output_attentions:
                all_attn.append(probs)
                all_global.append(global_probs)
        if output_hidden_states:
            all_hidden.append(h)
        return h, all_hidden, all_attn, all_global


class LongformerPooler(nn.Module):
    def __init__(self, config: LongformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, h):
        return torch.tanh(self.dense(h[:, 0]))


# ---------------------------------------------------------------------------------------------- base classes
class LongformerPreTrainedModel(LongformerPreTrainedMixin, nn.Module):
    """Weight initialisation, checkpoint loading and saving shared by every class below."""

    def __init__(self, config: LongformerConfig):
        super().__init__()
        self.config = self.checked_config(config)

    def _trains(self) -> bool:
        return self.training and torch.is_grad_enabled()

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, LongformerLMHead):
            nn.init.zeros_(module.bias)

    def post_init(self) -> None:
        self.apply(self._init_weights)
        self.tie_weights()

    def tie_weights(self) -> None:
        """The MLM decoder shares the word embeddings (when `tie_word_embeddings`) and always `lm_head.bias`."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, config: LongformerConfig | None = None,
                        dtype: torch.dtype | str | None = None, device: str | torch.device | None = None,
                        output_loading_info: bool = False, torch_dtype: torch.dtype | str | None = None,
                        **kwargs: Any):
        """Load a Hugging Face Longformer checkpoint (folder, file or Hub id); returns the model in eval mode, on
        `device` ("cuda", "cuda:1", "gpu", a torch.device; default the CPU; `.to()` moves it later), in `dtype`
        (torch.bfloat16 or "bfloat16", ...; "auto": the checkpoint's; default float32; `torch_dtype`, Hugging Face
        4.x's name for it, works too).

        Reads `model.safetensors`, `pytorch_model.bin` (with `weights_only=True`) or sharded versions of either.
        Keyword arguments that are config fields (`num_labels=3`, `attention_window=...`) update the config; the
        others (`revision`, `cache_dir`, `local_files_only`, `token`) go to the Hub. `ignore_mismatched_sizes=True`
        initialises anew a head's tensors whose shapes differ from the checkpoint's (a classifier of another
        `num_labels`), with a warning naming them.
        """
        if torch_dtype is not None:
            if dtype is not None:
                raise TypeError("from_pretrained got both dtype and torch_dtype (Hugging Face 4.x's name for dtype); "
                                "pass only dtype.")
            dtype = torch_dtype
        return load_pretrained(cls, name_or_path, config=config, dtype=dtype, device=device,
                               output_loading_info=output_loading_info, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write `config.json` and `model.safetensors` (Hugging Face names; tied tensors stored once)."""
        save_pretrained(self, save_directory)

    forward = LongformerPreTrainedMixin._call_head  # LongformerModel and question answering: their own

    def _forward(self, x: inputs.ModelInputs, labels: dict[str, Any], static: inputs.Static) -> dict[str, Any]:
        """The encoder, then this model's head (eagerly, or inside the caller's torch.compile), on the model's
        device: inputs given elsewhere (NumPy arrays, CPU tensors) are copied there once, after the input checks."""
        device = self.device
        x = inputs.ModelInputs(*(None if t is None else t.to(device, non_blocking=True) for t in x))
        return self._head(self._base().encode(x, static), labels, static)


# ---------------------------------------------------------------------------------------------- inputs
class TorchOps(inputs.Ops):
    """PyTorch's array ops for the input pipeline (`longformer.inputs`)."""

    int_dtype = torch.int64

    def tensor(self, x):
        """A tensor of the input's own dtype (NumPy int64 stays int64, a float stays float). Integer inputs on an
        accelerator are read to the host once: the checks and masks run there (one transfer, not one wait per
        check), and `_forward` copies the results to the model's device."""
        if x is None:
            return None
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
        if t.device.type != "cpu" and not t.is_floating_point() and not torch.compiler.is_compiling():
            t = t.cpu()
        return t

    def kind(self, t) -> str:
        if t.dtype == torch.bool:
            return "b"
        if t.is_floating_point():
            return "f"
        return "c" if t.is_complex() else "u" if t.dtype == torch.uint8 else "i"

    def is_traced(self, t) -> bool:
        return torch.compiler.is_compiling()

    def numpy(self, t):
        return (t.detach().float() if t.is_floating_point() else t.detach()).cpu().numpy()

    def cast(self, t, dtype):
        return t.to(dtype)

    def full(self, like, shape, value, dtype):
        return torch.full(shape, value, dtype=dtype, device=like.device)

    def pad_right(self, t, pad, value=0):
        return F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad), value=value)

    def reshape(self, t, shape):
        return t.reshape(shape)

    def minimum(self, a, b):
        return a.clamp(max=b)

    def cumsum(self, t, axis):
        return torch.cumsum(t, dim=axis)

    def arange(self, like, start, stop):
        return torch.arange(start, stop, device=like.device)

    def broadcast_to(self, t, shape):
        return t.expand(shape)

    def sum(self, t, axis):
        return t.sum(dim=axis)

    def argmax(self, t, axis):
        return torch.argmax(t, dim=axis)

    def concat(self, tensors, axis):
        return torch.cat(tensors, dim=axis)

    def transpose_last(self, t):
        return t.transpose(-1, -2)


LongformerPreTrainedModel.backend = "pt"
LongformerPreTrainedModel._ops = TorchOps()


# ---------------------------------------------------------------------------------------------- base model
class LongformerModel(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = LongformerEmbeddings(config)
        self.encoder = LongformerEncoder(config)
        self.pooler = LongformerPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    forward = LongformerPreTrainedMixin._call_base

    def encode(self, x: inputs.ModelInputs, static: inputs.Static) -> dict[str, Any]:
        """The base model on padded inputs: its output fields, cut to the input length."""
        h = self.embeddings(x.input_ids, x.token_type_ids, x.position_ids, x.inputs_embeds)
        masks = inputs.attention_masks(x.merged_mask, static.num_slots, global_slots)
        h, all_hidden, all_attn, all_global = self.encoder(h, masks, static.output_attentions,
                                                           static.output_hidden_states)
        return inputs.encoder_outputs(self._ops, static, h, self.pooler, all_hidden, all_attn, all_global)


# ---------------------------------------------------------------------------------------------- heads
def _loss_from_logits(logits, labels, num_classes: int):
    return F.cross_entropy(logits.reshape(-1, num_classes).float(), labels.reshape(-1).long(), ignore_index=-100)


class LongformerLMHead(nn.Module):
    def __init__(self, config: LongformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias

    def forward(self, h):
        return linear(self.decoder, self.layer_norm(linear(self.dense, h, gelu=True)))


class LongformerForMaskedLM(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig):
        super().__init__(config)
        self.longformer = LongformerModel(config, add_pooling_layer=False)
        self.lm_head = LongformerLMHead(config)
        self.post_init()

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.decoder.weight = self.longformer.embeddings.word_embeddings.weight
        self.lm_head.decoder.bias = self.lm_head.bias

    def tied_keys(self) -> tuple[str, ...]:
        keys = ("lm_head.decoder.bias",)
        return ("lm_head.decoder.weight", *keys) if self.config.tie_word_embeddings else keys

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def _head(self, outputs, labels, static):
        logits = self.lm_head(outputs["last_hidden_state"])
        loss = None if labels["labels"] is None else _loss_from_logits(logits, labels["labels"].to(logits.device),
                                                                        self.config.vocab_size)
        return {"loss": loss, "logits": logits, **encoder_fields(outputs)}


class LongformerClassificationHead(nn.Module):
    """Head on the `<s>` token: dropout, dense, tanh, dropout, projection."""

    def __init__(self, config: LongformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, h):
        x = self.dropout(h[:, 0])
        x = self.dropout(torch.tanh(self.dense(x)))
        return self.out_proj(x)


class LongformerForSequenceClassification(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.longformer = LongformerModel(config, add_pooling_layer=False)
        self.classifier = LongformerClassificationHead(config)
        self.post_init()

    def _head(self, outputs, labels, static):
        logits = self.classifier(outputs["last_hidden_state"])
        loss = None if labels["labels"] is None else self._loss(logits, labels["labels"].to(logits.device))
        return {"loss": loss, "logits": logits, **encoder_fields(outputs)}

    def _loss(self, logits, labels):
        problem = inputs.problem_type(self.config, self.num_labels,
                                      not labels.is_floating_point() and labels.dtype != torch.bool)
        if problem == "regression":
            if self.num_labels == 1:
                return F.mse_loss(logits.squeeze().float(), labels.squeeze().float())
            return F.mse_loss(logits.float(), labels.float())
        if problem == "single_label_classification":
            return _loss_from_logits(logits, labels, self.num_labels)
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


class LongformerForMultipleChoice(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig):
        super().__init__(config)
        self.longformer = LongformerModel(config)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def _head(self, outputs, labels, static):
        logits = self.classifier(self.dropout(outputs["pooler_output"])).view(-1, static.num_choices)
        loss = None if labels["labels"] is None else _loss_from_logits(logits, labels["labels"].to(logits.device),
                                                                        static.num_choices)
        return {"loss": loss, "logits": logits, **encoder_fields(outputs)}


class LongformerForTokenClassification(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.longformer = LongformerModel(config, add_pooling_layer=False)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _head(self, outputs, labels, static):
        logits = self.classifier(self.dropout(outputs["last_hidden_state"]))
        loss = None if labels["labels"] is None else _loss_from_logits(logits, labels["labels"].to(logits.device),
                                                                        self.num_labels)
        return {"loss": loss, "logits": logits, **encoder_fields(outputs)}


class LongformerForQuestionAnswering(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig):
        super().__init__(config)
        if config.num_labels != 2:
            raise ValueError(f"Question answering predicts start and end logits: num_labels must be 2, "
                             f"got {config.num_labels}.")
        self.longformer = LongformerModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    forward = LongformerPreTrainedMixin._call_question_answering

    def _head(self, outputs, labels, static):
        logits = self.qa_outputs(outputs["last_hidden_state"])
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
        loss = None
        if labels["start_positions"] is not None and labels["end_positions"] is not None:
            n = start_logits.shape[1]  # positions outside the input are ignored
            start = labels["start_positions"].to(logits.device).reshape(-1).long().clamp(0, n)
            end = labels["end_positions"].to(logits.device).reshape(-1).long().clamp(0, n)
            loss = (F.cross_entropy(start_logits.float(), start, ignore_index=n)
                    + F.cross_entropy(end_logits.float(), end, ignore_index=n)) / 2
        return {"loss": loss, "start_logits": start_logits, "end_logits": end_logits, **encoder_fields(outputs)}
