"""Shared fixtures: tiny configs, tiny tokenizers and Hugging Face oracle checkpoints, all built locally."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")  # fp32 on a GPU is compared as fp32 (each adapter says it too)

HEADS = ("LongformerModel", "LongformerForMaskedLM", "LongformerForSequenceClassification",
         "LongformerForMultipleChoice", "LongformerForTokenClassification", "LongformerForQuestionAnswering")

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, type_vocab_size=3, attention_window=4, num_labels=3,
            layer_norm_eps=1e-5)


def tiny_kwargs(**overrides):
    kwargs = dict(TINY)
    kwargs.update(overrides)
    return kwargs


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    """A byte-level BPE vocabulary trained in milliseconds, with RoBERTa's special tokens at ids 0-4."""
    from tokenizers import ByteLevelBPETokenizer

    corpus = ["The quick brown fox jumps over the lazy dog.", "Longformer reads long documents, doesn't it?",
              "Hello world! Question answering needs a question and a context.",
              "Numbers 12345 and symbols #$%&* appear too; café naïve 東京."] * 20
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(corpus, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    folder = tmp_path_factory.mktemp("tokenizer")
    tok.save_model(str(folder))
    return folder


def randomize_(model, seed: int = 0):
    """Give every parameter (biases and LayerNorms included) random values so parity tests see all of them."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight") or name.endswith("layer_norm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model


def hf_model(cls_name: str, seed: int = 0, **config_overrides):
    import transformers

    if cls_name == "LongformerForQuestionAnswering":
        config_overrides.setdefault("num_labels", 2)  # start and end logits
    config = transformers.LongformerConfig(**tiny_kwargs(**config_overrides))
    return randomize_(getattr(transformers, cls_name)(config), seed).eval()


@pytest.fixture
def hf_checkpoint(tmp_path):
    """Factory: save a randomised Hugging Face model of class `cls_name`; returns (folder, hf_model)."""

    def make(cls_name: str, seed: int = 0, **config_overrides):
        model = hf_model(cls_name, seed, **config_overrides)
        folder = tmp_path / f"{cls_name}-{seed}"
        model.save_pretrained(folder)
        return folder, model

    return make


def rng(seed=0):
    return np.random.default_rng(seed)


def random_checkpoint(folder, head: str = "LongformerForMaskedLM", seed: int = 0, **config_overrides):
    """A canonical safetensors checkpoint of `head` with random weights, built with NumPy alone (no framework).

    Returns (folder, config, state)."""
    from converters.formats import write_checkpoint
    from converters.names import canonical_shapes
    from longformer import LongformerConfig

    if head == "LongformerForQuestionAnswering":
        config_overrides.setdefault("num_labels", 2)
    config = LongformerConfig(**tiny_kwargs(**config_overrides), architectures=[head])
    r = rng(seed)
    state = {}
    for key, shape in canonical_shapes(config, head).items():
        base = 1.0 if key.endswith(("LayerNorm.weight", "layer_norm.weight")) else 0.0
        state[key] = (base + 0.1 * r.standard_normal(shape)).astype(np.float32)
    os.makedirs(folder, exist_ok=True)
    write_checkpoint(str(folder), "safetensors", {k: (v.shape, v.dtype) for k, v in state.items()}, state.__getitem__,
                     head=head)
    config.save_pretrained(folder)
    return folder, config, state


def longformer_inputs(seed: int = 0, batch: int = 2, length: int = 13, vocab: int = 99):
    """Token ids with <s> first, the second row padded, and global tokens in both rows."""
    r = rng(seed)
    ids = r.integers(5, vocab, size=(batch, length))
    ids[:, 0] = 0
    mask = np.ones_like(ids)
    mask[-1, length - 4:] = 0
    ids[-1, length - 4:] = 1
    glob = np.zeros_like(ids)
    glob[:, 0] = 1
    glob[0, 3] = 1
    return {"input_ids": ids, "attention_mask": mask, "global_attention_mask": glob}


def make_cache(tmp_path, source, repo="someorg/tiny-longformer", revision="main", absent=()):
    """A Hugging Face Hub cache holding `source`'s files as repository `repo` at `revision`, laid out as
    huggingface_hub writes it: `models--org--name/{refs/<revision>, snapshots/<sha>/..., .no_exist/<sha>/...}`
    (`absent`: files recorded as not in the repository). Returns the cache dir."""
    import shutil

    sha = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = tmp_path / "cache" / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / revision).write_text(sha)
    shutil.copytree(source, repo_dir / "snapshots" / sha)
    for name in absent:
        (repo_dir / ".no_exist" / sha).mkdir(parents=True, exist_ok=True)
        (repo_dir / ".no_exist" / sha / name).touch()
    return tmp_path / "cache"
