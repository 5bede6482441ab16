"""Make the small checkpoint bundled in the package (longformer/data/tiny): random weights, a tiny BPE vocab.

Deterministic (fixed seeds), framework-free (NumPy + tokenizers), so anyone can regenerate it:
    python scripts/make_tiny_checkpoint.py
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from tokenizers import ByteLevelBPETokenizer

from converters import write_safetensors
from converters.names import canonical_shapes
from longformer import LongformerConfig, LongformerTokenizer

OUT = os.path.join(os.path.dirname(__file__), "..", "longformer", "data", "tiny")
CORPUS = [
    "Longformer reads long documents with a sliding window of local attention.",
    "A few global tokens, such as the question in question answering, see every other token.",
    "The same weights give the same outputs in PyTorch, TensorFlow and JAX.",
    "Checkpoints convert between safetensors, pytorch_model.bin, tf_model.h5 and flax msgpack files.",
]


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 10, vocab_size=512, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        tokenizer = LongformerTokenizer.from_pretrained(tmp)
    tokenizer.model_max_length = 256
    tokenizer.save_pretrained(OUT)

    config = LongformerConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=64, max_position_embeddings=258,
                              type_vocab_size=1, layer_norm_eps=1e-5, attention_window=[8, 16])
    config.extra["architectures"] = ["LongformerForMaskedLM"]
    r = np.random.default_rng(2020)
    state = {}
    for name, shape in canonical_shapes(config, "LongformerForMaskedLM").items():
        values = (0.1 * r.standard_normal(shape)).astype(np.float32)
        state[name] = 1 + values if name.endswith(("LayerNorm.weight", "layer_norm.weight")) else values
    for name in ("word_embeddings", "position_embeddings"):  # the padding rows are zero, as in training
        state[f"longformer.embeddings.{name}.weight"][config.pad_token_id] = 0
    write_safetensors(state, os.path.join(OUT, "model.safetensors"))
    config.save_pretrained(OUT)
    print(f"wrote {os.path.abspath(OUT)}")


if __name__ == "__main__":
    main()
