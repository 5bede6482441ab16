"""Hub ids resolve through huggingface_hub's cache, offline, with a cache layout the test builds."""

from __future__ import annotations

import shutil

import pytest

torch = pytest.importorskip("torch")

from conftest import hf_model, make_cache  # noqa: E402

import longformer.pt as lpt  # noqa: E402
from longformer import LongformerConfig, LongformerTokenizer  # noqa: E402


def test_load_from_hub_cache_offline(tmp_path, tokenizer_dir):
    hf = hf_model("LongformerForMaskedLM")
    hf.save_pretrained(tmp_path / "src")
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, tmp_path / "src")
    cache = make_cache(tmp_path, tmp_path / "src")
    model = lpt.LongformerForMaskedLM.from_pretrained("someorg/tiny-longformer", cache_dir=cache,
                                                      local_files_only=True)
    local = lpt.LongformerForMaskedLM.from_pretrained(tmp_path / "src")
    ids = torch.randint(5, 99, (1, 9))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, local(ids).logits)
    config = LongformerConfig.from_pretrained("someorg/tiny-longformer", cache_dir=cache, local_files_only=True)
    assert config.vocab_size == 99
    tok = LongformerTokenizer.from_pretrained("someorg/tiny-longformer", cache_dir=cache, local_files_only=True)
    assert tok("hello")["input_ids"][0] == 0


def test_revision_and_missing_entries(tmp_path):
    hf = hf_model("LongformerModel")
    hf.save_pretrained(tmp_path / "src")
    cache = make_cache(tmp_path, tmp_path / "src", revision="v1")
    model = lpt.LongformerModel.from_pretrained("someorg/tiny-longformer", revision="v1", cache_dir=cache,
                                                local_files_only=True)
    assert not model.training
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        lpt.LongformerModel.from_pretrained("someorg/other", cache_dir=cache, local_files_only=True)
