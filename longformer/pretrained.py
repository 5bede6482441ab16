"""What the three backends' `LongformerPreTrainedModel` share, written once (no framework imported here).

Each backend's base class is `class LongformerPreTrainedModel(LongformerPreTrainedMixin, <framework Module>)`."""

from __future__ import annotations

from .config import LongformerConfig


class LongformerPreTrainedMixin:
    base_model_prefix = "longformer"  # a head model keeps its LongformerModel under this attribute
    config_class = LongformerConfig

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

    def _base(self):
        """The LongformerModel inside a head model; LongformerModel itself otherwise."""
        return getattr(self, self.base_model_prefix, self)
