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
)
from ..pretrained import LongformerPreTrainedMixin
from .attention import band_attention, global_rows, global_slots, scatter_global_rows
from .checkpoint import load_pretrained, save_pretrained

# ---------------------------------------------------------------------------------------------- linear layers
_ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


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
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids, position_ids, inputs_embeds):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
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
        self.query_block = semantics.QUERY_BLOCK  # query rows per band step
        self.query = nn.Linear(H, H)
        self.key = nn.Linear(H, H)
        self.value = nn.Linear(H, H)
        self.query_global = nn.Linear(H, H)
        self.key_global = nn.Linear(H, H)
        self.value_global = nn.Linear(H, H)

    def forward(self, h, mask: dict[str, Any], output_attentions: bool = False):
        B, N, H = h.shape
        nh, hd, w = self.num_heads, self.head_dim, self.window // 2
        scale = 1.0 / math.sqrt(hd)
        q = linear(self.query, h).mul_(scale).view(B, N, nh, hd)  # in place: addmm keeps no output for backward
        k = linear(self.key, h).view(B, N, nh, hd)
        v = linear(self.value, h).view(B, N, nh, hd)
        G = mask["num_slots"]
        global_k = global_v = None
        if G:  # the local keys and values of the global tokens, (B, nh, G, hd)
            index = mask["slot_position"][:, :, None, None].expand(B, G, nh, hd)
            global_k = torch.gather(k, 1, index).transpose(1, 2)
            global_v = torch.gather(v, 1, index).transpose(1, 2)
        context, probs = band_attention(
            q, k, v, mask["window_key"], w, semantics.rows_per_step(N, self.query_block), global_k=global_k,
            global_v=global_v, slot_valid=mask["slot_valid"], dropout=self.dropout, training=self.training,
            return_probs=output_attentions)
        out = context.reshape(B, N, H)
        out = out.masked_fill_(mask["padding"][:, :, None], 0.0)  # padding rows attend to nothing (out is ours)
        global_probs = None
        if G:
            global_context, global_probs = global_rows(
                h, mask["slot_position"], mask["slot_valid"], ~mask["padding"], self.query_global,
                self.key_global, self.value_global, nh, scale, dropout=self.dropout, training=self.training)
            out = scatter_global_rows(out, global_context.reshape(B, G, H), mask["slot_position"],
                                      mask["slot_valid"])
        if probs is not None:
            # Rows of global tokens (their result comes from global_rows) and of padding carry no local attention.
            probs = probs.masked_fill((mask["is_global"] | mask["padding"])[:, None, :, None], 0.0)
        return out, probs, global_probs


class LongformerSelfOutput(nn.Module):
    """dense -> dropout -> + residual -> LayerNorm (after attention, and after the FFN as `LongformerOutput`)."""

    def __init__(self, config: LongformerConfig, in_features: int | None = None):
        super().__init__()
        self.dense = nn.Linear(in_features or config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x, residual):
        y = self.dropout(linear(self.dense, x))
        return self.LayerNorm(y.add_(residual))  # in place: neither dense nor dropout keeps y for backward


class LongformerAttention(nn.Module):
    def __init__(self, config: LongformerConfig, layer_id: int):
        super().__init__()
        self.self = LongformerSelfAttention(config, layer_id)
        self.output = LongformerSelfOutput(config)

    def forward(self, h, mask, output_attentions=False):
        out, probs, global_probs = self.self(h, mask, output_attentions)
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

    def forward(self, h, mask, output_attentions=False):
        a, probs, global_probs = self.attention(h, mask, output_attentions)
        # The feed-forward network is row-wise: run it on slices of the sequence so that its (N, 4H) activations
        # never exist whole (less memory, and temporaries small enough for the allocator to reuse).
        rows = semantics.rows_per_step(a.shape[1], semantics.FEED_FORWARD_ROWS)
        out = torch.cat([self.output(self.intermediate(a[:, i:i + rows]), a[:, i:i + rows])
                         for i in range(0, a.shape[1], rows)], dim=1)
        return out, probs, global_probs


class LongformerEncoder(nn.Module):
    def __init__(self, config: LongformerConfig):
        super().__init__()
        self.layer = nn.ModuleList(LongformerLayer(config, i) for i in range(config.num_hidden_layers))
        self.gradient_checkpointing = False

    def forward(self, h, mask, output_attentions=False, output_hidden_states=False):
        all_hidden, all_attn, all_global = [], [], []
        for layer in self.layer:
            if output_hidden_states:
                all_hidden.append(h)
            if self.gradient_checkpointing and self.training:
                h, probs, global_probs = checkpoint(layer, h, mask, output_attentions, use_reentrant=False)
            else:
                h, probs, global_probs = layer(h, mask, output_attentions)
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
                        dtype: torch.dtype | None = None, output_loading_info: bool = False, **kwargs: Any):
        """Load a Hugging Face Longformer checkpoint (folder, file or Hub id); returns the model in eval mode.

        Reads `model.safetensors`, `pytorch_model.bin` (with `weights_only=True`) or sharded versions of either.
        Keyword arguments that are config fields (`num_labels=3`, `attention_window=...`) update the config; the
        others (`revision`, `cache_dir`, `local_files_only`, `token`) go to the Hub.
        """
        return load_pretrained(cls, name_or_path, config=config, dtype=dtype,
                               output_loading_info=output_loading_info, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write `config.json` and `model.safetensors` (Hugging Face names; tied tensors stored once)."""
        save_pretrained(self, save_directory)


# ---------------------------------------------------------------------------------------------- inputs
def _check_inputs(config: LongformerConfig, inputs: dict[str, torch.Tensor | None]) -> None:
    """The shared input rules on this batch: dtypes always, values unless compiling (they need the data)."""
    given = {k: t for k, t in inputs.items() if t is not None}
    semantics.check_input_dtypes({k: _kind(t) for k, t in given.items()})
    if torch.compiler.is_compiling():
        return
    semantics.check_input_values(config, **{k: (t.detach().float() if t.is_floating_point() else t.detach())
                                            .cpu().numpy() for k, t in given.items()})


def _kind(t: torch.Tensor) -> str:
    """The NumPy dtype kind of a tensor's dtype ('b', 'i', 'u', 'f', 'c')."""
    if t.dtype == torch.bool:
        return "b"
    if t.is_floating_point():
        return "f"
    return "c" if t.is_complex() else "u" if t.dtype == torch.uint8 else "i"


def _position_ids(config: LongformerConfig, input_ids, position_ids, B: int, N: int, device) -> torch.Tensor:
    pad = config.pad_token_id
    if position_ids is None:
        if input_ids is not None:
            real = (input_ids != pad).to(torch.int64)
            position_ids = torch.cumsum(real, dim=1) * real + pad
        else:
            position_ids = torch.arange(pad + 1, N + pad + 1, device=device)[None, :].expand(B, N)
    if not torch.compiler.is_compiling():
        high = int(position_ids.max())
        if high >= config.max_position_embeddings:
            raise ValueError(semantics.positions_too_long_message(high, config.max_position_embeddings, pad))
    return position_ids


def _as_tensor(x):
    """A tensor of the input's own dtype (NumPy int64 stays int64, a float stays float: checks see what was given)."""
    if x is None or isinstance(x, torch.Tensor):
        return x
    return torch.as_tensor(x)


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

    def forward(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
                position_ids=None, inputs_embeds=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, num_global_slots=None):
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.return_dict if return_dict is None else return_dict
        ints = dict(input_ids=_as_tensor(input_ids), attention_mask=_as_tensor(attention_mask),
                    global_attention_mask=_as_tensor(global_attention_mask), token_type_ids=_as_tensor(token_type_ids),
                    position_ids=_as_tensor(position_ids))
        inputs_embeds = _as_tensor(inputs_embeds)
        _check_inputs(config, ints)  # before any cast: a float id or an int64 beyond int32 is refused, not wrapped
        input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids = (
            None if t is None else t.to(torch.int64) for t in ints.values())

        B, n_in = semantics.check_input_shapes(
            input_ids=None if input_ids is None else input_ids.shape,
            inputs_embeds=None if inputs_embeds is None else inputs_embeds.shape,
            attention_mask=None if attention_mask is None else attention_mask.shape,
            global_attention_mask=None if global_attention_mask is None else global_attention_mask.shape,
            token_type_ids=None if token_type_ids is None else token_type_ids.shape,
            position_ids=None if position_ids is None else position_ids.shape,
            hidden_size=config.hidden_size)
        device = self.device

        # 0 = padding, 1 = local, 2 = global; then right-pad everything to a multiple of the largest window.
        if attention_mask is None:
            attention_mask = torch.ones(B, n_in, dtype=torch.int64, device=device)
        merged = attention_mask.to(torch.int64)
        if global_attention_mask is not None:
            merged = (merged * (global_attention_mask + 1)).clamp_(max=2)
        pad = semantics.padding_length(n_in, config.max_attention_window)
        N = n_in + pad
        if input_ids is not None:
            input_ids = F.pad(input_ids, (0, pad), value=config.pad_token_id)
        if position_ids is not None:
            position_ids = F.pad(position_ids, (0, pad), value=config.pad_token_id)
        if inputs_embeds is not None:
            # Padding rows are masked everywhere, so their content never reaches an output.
            inputs_embeds = F.pad(inputs_embeds, (0, 0, 0, pad))
        token_type_ids = (torch.zeros(B, N, dtype=torch.int64, device=device) if token_type_ids is None
                          else F.pad(token_type_ids, (0, pad)))
        merged = F.pad(merged, (0, pad))
        position_ids = _position_ids(config, input_ids, position_ids, B, N, device)

        h = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        mask = self._attention_masks(merged, num_global_slots, global_attention_mask is not None)
        h, all_hidden, all_attn, all_global = self.encoder(h, mask, output_attentions, output_hidden_states)

        # Cut back to the input length (global attentions keep the padded length, as Hugging Face's do).
        h = h[:, :n_in]
        pooled = self.pooler(h) if self.pooler is not None else None
        x = mask["num_global"]
        hidden_states = tuple(t[:, :n_in] for t in all_hidden) if output_hidden_states else None
        attentions = global_attentions = None
        if output_attentions:
            G = mask["num_slots"]
            attentions = tuple(torch.cat([p[..., :x], p[..., G:]], dim=-1)[:, :, :n_in] for p in all_attn)
            if x:
                global_attentions = tuple(g[:, :, :x].transpose(-1, -2) for g in all_global)
        out = LongformerBaseModelOutputWithPooling(
            last_hidden_state=h, pooler_output=pooled, hidden_states=hidden_states, attentions=attentions,
            global_attentions=global_attentions)
        return out if return_dict else out.to_tuple()

    @staticmethod
    def _attention_masks(merged: torch.Tensor, num_global_slots: int | None = None,
                         has_global_mask: bool = True) -> dict[str, Any]:
        """Everything the layers need about which token is padding, local or global (computed once).

        The number of global slots is a shape. Eagerly it is read from the data here, outside the layers (or
        checked against `num_global_slots` when given); under torch.compile it must not depend on the data
        (`semantics.traced_global_slots`)."""
        padding = merged == 0
        is_global = merged == 2
        if torch.compiler.is_compiling():
            x = G = semantics.traced_global_slots(num_global_slots, merged.shape[1], has_global_mask)
        else:
            x = int(is_global.sum(dim=1).max()) if is_global.numel() else 0
            G = semantics.num_global_slots(x, merged.shape[1], num_global_slots)
        slot_position = slot_valid = None
        if G:
            slot_position, slot_valid = global_slots(is_global, G)
        return {"padding": padding, "is_global": is_global, "window_key": merged == 1, "num_global": x,
                "num_slots": G, "slot_position": slot_position, "slot_valid": slot_valid}


# ---------------------------------------------------------------------------------------------- heads
def _loss_from_logits(logits, labels, num_classes: int):
    return F.cross_entropy(logits.reshape(-1, num_classes).float(), labels.reshape(-1), ignore_index=-100)


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

    def forward(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
                position_ids=None, inputs_embeds=None, labels=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, num_global_slots=None):
        return_dict = self.config.return_dict if return_dict is None else return_dict
        outputs = self.longformer(input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids,
                                  inputs_embeds, output_attentions, output_hidden_states, return_dict=True,
                                  num_global_slots=num_global_slots)
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None if labels is None else _loss_from_logits(logits, _as_tensor(labels).to(logits.device),
                                                              self.config.vocab_size)
        out = LongformerMaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                       attentions=outputs.attentions, global_attentions=outputs.global_attentions)
        return out if return_dict else out.to_tuple()


class LongformerClassificationHead(nn.Module):
    """Head on the `<s>` token: dropout, dense, tanh, dropout, projection."""

    def __init__(self, config: LongformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, h):
        x = self.dropout(h[:, 0])
        x = self.dropout(torch.tanh(self.dense(x)))
        return self.out_proj(x)


def _first_token_global(input_ids, inputs_embeds, attention_mask) -> torch.Tensor:
    """Sequence classification: global attention on the first token (`<s>`), unless it is padding."""
    ref = input_ids if input_ids is not None else inputs_embeds[..., 0]
    mask = torch.zeros(ref.shape[:2], dtype=torch.int64, device=ref.device)
    mask[:, 0] = 1
    return mask if attention_mask is None else mask * (attention_mask != 0)


def _sep_based_global(input_ids: torch.Tensor, attention_mask, sep_token_id: int, before_sep: bool) -> torch.Tensor:
    """Question answering (before_sep): global on every token before the first separator.
    Multiple choice (not before_sep): global on every token after the first `</s></s>` pair.
    Both need exactly three separators per row (`<s> A </s></s> B </s>`)."""
    is_sep = input_ids == sep_token_id
    counts = is_sep.sum(dim=1)
    if not torch.compiler.is_compiling() and bool((counts != 3).any()):
        raise ValueError(semantics.sep_count_message(counts.tolist(), sep_token_id))
    first_sep = torch.argmax(is_sep.to(torch.int64), dim=1, keepdim=True)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
    mask = positions < first_sep if before_sep else positions > first_sep + 1
    mask = mask.to(torch.int64)
    return mask if attention_mask is None else mask * (attention_mask != 0)


class LongformerForSequenceClassification(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.longformer = LongformerModel(config, add_pooling_layer=False)
        self.classifier = LongformerClassificationHead(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
                position_ids=None, inputs_embeds=None, labels=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, num_global_slots=None):
        return_dict = self.config.return_dict if return_dict is None else return_dict
        input_ids, inputs_embeds = _as_tensor(input_ids), _as_tensor(inputs_embeds)
        attention_mask = _as_tensor(attention_mask)
        if global_attention_mask is None and (input_ids is not None or inputs_embeds is not None):
            global_attention_mask = _first_token_global(input_ids, inputs_embeds, attention_mask)
        outputs = self.longformer(input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids,
                                  inputs_embeds, output_attentions, output_hidden_states, return_dict=True,
                                  num_global_slots=num_global_slots)
        logits = self.classifier(outputs.last_hidden_state)
        loss = None if labels is None else self._loss(logits, _as_tensor(labels).to(logits.device))
        out = LongformerSequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                                 attentions=outputs.attentions,
                                                 global_attentions=outputs.global_attentions)
        return out if return_dict else out.to_tuple()

    def _loss(self, logits, labels):
        problem = self.config.problem_type
        if problem is None:
            if self.num_labels == 1:
                problem = "regression"
            elif labels.dtype in (torch.long, torch.int, torch.int16, torch.int8, torch.uint8):
                problem = "single_label_classification"
            else:
                problem = "multi_label_classification"
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
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
                position_ids=None, inputs_embeds=None, labels=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, num_global_slots=None):
        return_dict = self.config.return_dict if return_dict is None else return_dict
        input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids = (
            _as_tensor(t) for t in (input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids))
        inputs_embeds = _as_tensor(inputs_embeds)
        ref = input_ids if input_ids is not None else inputs_embeds
        if ref is None or ref.dim() != (3 if input_ids is not None else 4):
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
        outputs = self.longformer(flat_ids, flat_mask, flat_global, flat(token_type_ids), flat(position_ids),
                                  flat(inputs_embeds), output_attentions, output_hidden_states, return_dict=True,
                                  num_global_slots=num_global_slots)
        logits = self.classifier(self.dropout(outputs.pooler_output)).view(-1, num_choices)
        loss = None if labels is None else F.cross_entropy(logits.float(), _as_tensor(labels).to(logits.device))
        out = LongformerMultipleChoiceModelOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                                  attentions=outputs.attentions,
                                                  global_attentions=outputs.global_attentions)
        return out if return_dict else out.to_tuple()


class LongformerForTokenClassification(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.longformer = LongformerModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
                position_ids=None, inputs_embeds=None, labels=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, num_global_slots=None):
        return_dict = self.config.return_dict if return_dict is None else return_dict
        outputs = self.longformer(input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids,
                                  inputs_embeds, output_attentions, output_hidden_states, return_dict=True,
                                  num_global_slots=num_global_slots)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None if labels is None else _loss_from_logits(logits, _as_tensor(labels).to(logits.device),
                                                              self.num_labels)
        out = LongformerTokenClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                              attentions=outputs.attentions,
                                              global_attentions=outputs.global_attentions)
        return out if return_dict else out.to_tuple()


class LongformerForQuestionAnswering(LongformerPreTrainedModel):
    def __init__(self, config: LongformerConfig):
        super().__init__(config)
        if config.num_labels != 2:
            raise ValueError(f"Question answering predicts start and end logits: num_labels must be 2, "
                             f"got {config.num_labels}.")
        self.longformer = LongformerModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
                position_ids=None, inputs_embeds=None, start_positions=None, end_positions=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, num_global_slots=None):
        return_dict = self.config.return_dict if return_dict is None else return_dict
        input_ids, attention_mask = _as_tensor(input_ids), _as_tensor(attention_mask)
        if global_attention_mask is None:
            if input_ids is None:
                warn("No global_attention_mask and no input_ids to find the question: running without "
                     "global attention.")
            else:
                # Global attention on <s> and the question (everything before the first </s>).
                global_attention_mask = _sep_based_global(input_ids, attention_mask, self.config.sep_token_id,
                                                          before_sep=True)
        outputs = self.longformer(input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids,
                                  inputs_embeds, output_attentions, output_hidden_states, return_dict=True,
                                  num_global_slots=num_global_slots)
        logits = self.qa_outputs(outputs.last_hidden_state)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            n = start_logits.shape[1]  # positions outside the input are ignored
            start = _as_tensor(start_positions).to(logits.device).reshape(-1).clamp(0, n)
            end = _as_tensor(end_positions).to(logits.device).reshape(-1).clamp(0, n)
            loss = (F.cross_entropy(start_logits.float(), start, ignore_index=n)
                    + F.cross_entropy(end_logits.float(), end, ignore_index=n)) / 2
        out = LongformerQuestionAnsweringModelOutput(
            loss=loss, start_logits=start_logits, end_logits=end_logits, hidden_states=outputs.hidden_states,
            attentions=outputs.attentions, global_attentions=outputs.global_attentions)
        return out if return_dict else out.to_tuple()
