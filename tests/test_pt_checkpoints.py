"""Loading and saving checkpoints with longformer.pt: every file layout, prefixes, ties, and broken files."""

from __future__ import annotations

import json
import os
import warnings

import pytest

torch = pytest.importorskip("torch")

from cases import make_inputs  # noqa: E402
from conftest import hf_model, tiny_kwargs  # noqa: E402

import longformer.pt as lpt  # noqa: E402
from converters import CheckpointError  # noqa: E402
from longformer import LongformerConfig  # noqa: E402


def _inputs(head="LongformerModel"):
    return {k: torch.as_tensor(v) for k, v in make_inputs("padded_globals", head).items()}


def _same_outputs(a, b, head="LongformerModel"):
    with torch.no_grad():
        x = a(**_inputs(head)).to_tuple()
        y = b(**_inputs(head)).to_tuple()
    return all(torch.equal(p, q) for p, q in zip(x, y, strict=True))


@pytest.fixture
def saved(tmp_path):
    model = hf_model("LongformerForMaskedLM")
    model.save_pretrained(tmp_path / "st")
    return tmp_path, model


def test_pytorch_bin_and_sharded_files_load_the_same(saved):
    tmp, hf = saved
    ref = lpt.LongformerForMaskedLM.from_pretrained(tmp / "st")
    # pytorch_model.bin (with the tied decoder stored, as old releases did)
    os.makedirs(tmp / "bin")
    torch.save(hf.state_dict(), tmp / "bin" / "pytorch_model.bin")
    (tmp / "bin" / "config.json").write_text((tmp / "st" / "config.json").read_text())
    assert _same_outputs(ref, lpt.LongformerForMaskedLM.from_pretrained(tmp / "bin"), "LongformerForMaskedLM")
    # sharded safetensors written by Hugging Face
    hf.save_pretrained(tmp / "sharded", max_shard_size="20KB")
    assert (tmp / "sharded" / "model.safetensors.index.json").exists()
    assert _same_outputs(ref, lpt.LongformerForMaskedLM.from_pretrained(tmp / "sharded"), "LongformerForMaskedLM")
    # sharded pytorch_model.bin
    os.makedirs(tmp / "binshard")
    state = hf.state_dict()
    keys = list(state)
    weight_map = {}
    for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2:])):
        name = f"pytorch_model-0000{i + 1}-of-00002.bin"
        torch.save({k: state[k] for k in part}, tmp / "binshard" / name)
        weight_map.update(dict.fromkeys(part, name))
    (tmp / "binshard" / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp / "binshard" / "config.json").write_text((tmp / "st" / "config.json").read_text())
    assert _same_outputs(ref, lpt.LongformerForMaskedLM.from_pretrained(tmp / "binshard"), "LongformerForMaskedLM")


def test_mlm_ties_and_saved_keys(saved, tmp_path):
    from safetensors import safe_open

    tmp, _ = saved
    model = lpt.LongformerForMaskedLM.from_pretrained(tmp / "st")
    assert model.lm_head.decoder.weight is model.longformer.embeddings.word_embeddings.weight
    assert model.lm_head.decoder.bias is model.lm_head.bias
    model.save_pretrained(tmp_path / "ours")
    with safe_open(tmp_path / "ours" / "model.safetensors", framework="pt") as f:
        keys = set(f.keys())
        assert f.metadata() == {"format": "pt"}
    assert "lm_head.decoder.weight" not in keys and "lm_head.bias" in keys and len(keys) == 54
    assert not [p for p in os.listdir(tmp_path / "ours") if p.endswith(".tmp")]


def test_legacy_gamma_beta_names_load(tmp_path, saved):
    tmp, hf = saved
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in hf.state_dict().items()}
    os.makedirs(tmp / "legacy")
    torch.save(state, tmp / "legacy" / "pytorch_model.bin")
    (tmp / "legacy" / "config.json").write_text((tmp / "st" / "config.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = lpt.LongformerForMaskedLM.from_pretrained(tmp / "legacy")
    assert _same_outputs(model, lpt.LongformerForMaskedLM.from_pretrained(tmp / "st"), "LongformerForMaskedLM")


def test_corrupt_bin_is_reported(tmp_path, saved):
    tmp, _ = saved
    os.makedirs(tmp / "bad")
    (tmp / "bad" / "pytorch_model.bin").write_bytes(b"not a zip file at all")
    (tmp / "bad" / "config.json").write_text((tmp / "st" / "config.json").read_text())
    with pytest.raises(CheckpointError, match="pytorch_model.bin is not a PyTorch checkpoint"):
        lpt.LongformerForMaskedLM.from_pretrained(tmp / "bad")


def test_missing_and_misshaped_tensors_are_named(tmp_path):
    from safetensors.torch import save_file

    hf = hf_model("LongformerModel")
    hf.save_pretrained(tmp_path / "ok")
    state = {k: v.contiguous() for k, v in hf.state_dict().items()}
    broken = dict(state)
    del broken["encoder.layer.1.attention.self.key_global.weight"]
    os.makedirs(tmp_path / "missing")
    save_file(broken, tmp_path / "missing" / "model.safetensors")
    (tmp_path / "missing" / "config.json").write_text((tmp_path / "ok" / "config.json").read_text())
    with pytest.raises(CheckpointError, match="encoder.layer.1.attention.self.key_global.weight"):
        lpt.LongformerModel.from_pretrained(tmp_path / "missing")
    with pytest.raises(CheckpointError, match=r"word_embeddings.weight: checkpoint \(99, 32\), model \(50, 32\)"):
        lpt.LongformerModel.from_pretrained(tmp_path / "ok", vocab_size=50)


def test_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    import safetensors.torch

    model = lpt.LongformerModel(LongformerConfig(**tiny_kwargs()))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_missing_folder_and_weights(tmp_path):
    with pytest.raises(FileNotFoundError):
        lpt.LongformerModel.from_pretrained(tmp_path / "nope")
    LongformerConfig(**tiny_kwargs()).save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="No Longformer weights"):
        lpt.LongformerModel.from_pretrained(tmp_path)


def test_from_pretrained_overrides_and_dtype(tmp_path):
    hf_model("LongformerModel").save_pretrained(tmp_path)
    model = lpt.LongformerForSequenceClassification.from_pretrained(tmp_path, num_labels=5, dtype=torch.bfloat16)
    assert model.config.num_labels == 5 and model.classifier.out_proj.out_features == 5
    assert model.dtype == torch.bfloat16 and not model.training
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        lpt.LongformerModel.from_pretrained(tmp_path, colour="blue")


def test_torch_dtype_is_hugging_face_4s_name_for_dtype(saved):
    """`torch_dtype=` is in most Longformer code written for transformers 4.x; it means `dtype`."""
    folder = saved[0] / "st"
    model = lpt.LongformerModel.from_pretrained(folder, torch_dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with pytest.raises(TypeError, match="both dtype and torch_dtype"):
        lpt.LongformerModel.from_pretrained(folder, torch_dtype=torch.bfloat16, dtype=torch.float16)
