"""What the three backends' `LongformerPreTrainedModel` share, written once (no framework imported here).

Each backend's base class is `class LongformerPreTrainedModel(LongformerPreTrainedMixin, <framework Module>)`."""

from __future__ import annotations

from typing import Any

from . import inputs as pipeline
from .config import LongformerConfig
from .outputs import LABEL_NAMES, OUTPUT_CLASSES


class LongformerPreTrainedMixin:
    base_model_prefix = "longformer"  # a head model keeps its LongformerModel under this attribute
    config_class = LongformerConfig
    head_name = "LongformerModel"  # the model class this is (or derives from), by name: its rules and output type
    label_names: tuple[str, ...] = ()
    _ops: pipeline.Ops  # the backend's array ops for the input pipeline
    backend: str  # "pt", "flax" or "tf"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__name__ in OUTPUT_CLASSES:
            cls.head_name = cls.__name__
            cls.label_names = LABEL_NAMES.get(cls.__name__, ("labels",))

    # ------------------------------------------------------------------ one call, the same in every backend
    def _run(self, inputs: dict[str, Any], labels: dict[str, Any], *, output_attentions, output_hidden_states,
             return_dict, num_global_slots, training: bool = False):
        """Prepare the inputs (`longformer.inputs`), run `_forward` (the backend's encoder and this head, compiled
        where the backend compiles), drop the unused global slots' columns, wrap in the head's output type."""
        config = self.config
        prepared = pipeline.prepare(
            config, self._ops, self.head_name, inputs, num_global_slots,
            output_attentions=config.output_attentions if output_attentions is None else output_attentions,
            output_hidden_states=config.output_hidden_states if output_hidden_states is None else output_hidden_states,
            training=training or self._trains())
        labels = {name: self._ops.tensor(value) for name, value in labels.items()}
        pipeline.check_labels(config, self._ops, self.head_name, labels, prepared)
        out = self._forward(prepared.inputs, labels, prepared.static)
        out = pipeline.finish_outputs(self._ops, dict(out), prepared.num_global, prepared.static.num_slots)
        result = OUTPUT_CLASSES[self.head_name](**out)
        return result if (config.return_dict if return_dict is None else return_dict) else result.to_tuple()

    def _trains(self) -> bool:
        """Whether this call computes gradients in training mode (PyTorch: `train()` and grad enabled); Keras passes
        `training` to `_run` itself."""
        return False

    # The call signatures, Hugging Face's keyword arguments: pt's `forward` and flax's `__call__` are these
    # functions (tf's `call` adds Keras' `training` and a batch dict as the first argument).
    def _call_base(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
                   position_ids=None, inputs_embeds=None, output_attentions=None, output_hidden_states=None,
                   return_dict=None, num_global_slots=None):
        return self._run(dict(input_ids=input_ids, attention_mask=attention_mask,
                              global_attention_mask=global_attention_mask, token_type_ids=token_type_ids,
                              position_ids=position_ids, inputs_embeds=inputs_embeds), {},
                         output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                         return_dict=return_dict, num_global_slots=num_global_slots)

    def _call_head(self, input_ids=None, attention_mask=None, global_attention_mask=None, token_type_ids=None,
                   position_ids=None, inputs_embeds=None, labels=None, output_attentions=None,
                   output_hidden_states=None, return_dict=None, num_global_slots=None):
        return self._run(dict(input_ids=input_ids, attention_mask=attention_mask,
                              global_attention_mask=global_attention_mask, token_type_ids=token_type_ids,
                              position_ids=position_ids, inputs_embeds=inputs_embeds), {"labels": labels},
                         output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                         return_dict=return_dict, num_global_slots=num_global_slots)

    def _call_question_answering(self, input_ids=None, attention_mask=None, global_attention_mask=None,
                                 token_type_ids=None, position_ids=None, inputs_embeds=None, start_positions=None,
                                 end_positions=None, output_attentions=None, output_hidden_states=None,
                                 return_dict=None, num_global_slots=None):
        return self._run(dict(input_ids=input_ids, attention_mask=attention_mask,
                              global_attention_mask=global_attention_mask, token_type_ids=token_type_ids,
                              position_ids=position_ids, inputs_embeds=inputs_embeds),
                         {"start_positions": start_positions, "end_positions": end_positions},
                         output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                         return_dict=return_dict, num_global_slots=num_global_slots)

    def _head(self, outputs: dict[str, Any], labels: dict[str, Any], static: pipeline.Static) -> dict[str, Any]:
        """The head on the encoder's fields: its output fields (the base model: the encoder's own)."""
        return outputs

    @staticmethod
    def checked_config(config: LongformerConfig) -> LongformerConfig:
        """The config, validated; a TypeError for anything that is not a LongformerConfig."""
        if not isinstance(config, LongformerConfig):
            raise TypeError(f"config must be a LongformerConfig, got {type(config).__name__}.")
        config.validate()
        return config

    def tied_keys(self) -> tuple[str, ...]:
        """Canonical keys that are aliases of other parameters: not saved, not expected in checkpoints."""
        return ()

    def gradient_checkpointing_enable(self) -> None:
        """Recompute each layer's activations in the backward pass instead of keeping them (less memory)."""
        self._base().encoder.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self._base().encoder.gradient_checkpointing = False

    def set_band_strategy(self, strategy: str | None) -> None:
        """How every layer's band attention loops over its blocks: "rows", "batched" or (PyTorch) "flex"
        (semantics.BAND_STRATEGIES; same results, different speed); None: the default of the device the model runs
        on (semantics.BAND_STRATEGY: the CPU's fastest, the accelerator's few-kernel one)."""
        from . import semantics

        if strategy is not None:
            semantics.check_band_strategy(strategy, self.backend)  # refused here, not at the next call
        for layer in self._base().encoder.layer:
            layer.attention.self.strategy = strategy

    def _base(self):
        """The LongformerModel inside a head model; LongformerModel itself otherwise."""
        return getattr(self, self.base_model_prefix, self)
