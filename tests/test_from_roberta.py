"""RoBERTa -> Longformer (the paper's recipe): for inputs shorter than half the window the converted model computes
what RoBERTa computes (Hugging Face RobertaModel as the oracle), within 1e-5."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import randomize_  # noqa: E402

import longformer.pt as lpt  # noqa: E402
from converters.checkpoint import read_checkpoint  # noqa: E402
from converters.convert import from_roberta  # noqa: E402

ATOL = 1e-5
ROBERTA = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
               max_position_embeddings=34, type_vocab_size=1, layer_norm_eps=1e-5)  # 32 positions + pad offset 2


def roberta(tmp_path, cls_name, tokenizer_dir=None, **overrides):
    config = transformers.RobertaConfig(**{**ROBERTA, **overrides})
    model = randomize_(getattr(transformers, cls_name)(config)).eval()
    folder = tmp_path / "roberta"
    model.save_pretrained(folder)
    if tokenizer_dir is not None:
        for name in ("vocab.json", "merges.txt"):
            (folder / name).write_bytes((tokenizer_dir / name).read_bytes())
        (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 32}))
    return folder, model


def short_inputs(global_tokens: bool):
    """7 tokens (below half of the smallest window, 16), the second row padded after 5."""
    ids = torch.tensor([[0, 11, 12, 13, 14, 15, 2], [0, 21, 22, 23, 2, 1, 1]])
    mask = (ids != 1).long()
    glob = torch.zeros_like(ids)
    if global_tokens:
        glob[:, 0] = 1
    return ids, mask, glob


@pytest.mark.parametrize(("roberta_cls", "longformer_cls", "fields"), [
    ("RobertaModel", "LongformerModel", ("last_hidden_state", "pooler_output")),
    ("RobertaForMaskedLM", "LongformerForMaskedLM", ("logits",)),
    ("RobertaForSequenceClassification", "LongformerForSequenceClassification", ("logits",)),
])
@pytest.mark.parametrize("global_tokens", [False, True], ids=["local", "global-cls"])
def test_converted_model_matches_roberta(tmp_path, roberta_cls, longformer_cls, fields, global_tokens):
    folder, oracle = roberta(tmp_path, roberta_cls, num_labels=3)
    out = from_roberta(folder, tmp_path / "longformer", max_positions=100, attention_window=[16, 32])
    assert out.head == longformer_cls
    model = getattr(lpt, longformer_cls).from_pretrained(out.folder)
    ids, mask, glob = short_inputs(global_tokens)
    with torch.no_grad():
        want = oracle(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        got = model(input_ids=ids, attention_mask=mask, global_attention_mask=glob, output_hidden_states=True)
    real = mask.bool()  # Longformer zeroes padded query rows; RoBERTa computes them: compare real tokens
    for i, (g, w) in enumerate(zip(got.hidden_states, want.hidden_states, strict=True)):
        torch.testing.assert_close(g[real], w[real], atol=ATOL, rtol=0, msg=f"hidden_states.{i}")
    for field in fields:
        g, w = getattr(got, field), getattr(want, field)
        if field in ("last_hidden_state", "logits") and g.dim() == 3:
            g, w = g[real], w[real]
        torch.testing.assert_close(g, w, atol=ATOL, rtol=0, msg=field)


def test_positions_tiled_globals_copied_and_files_written(tmp_path, tokenizer_dir):
    folder, oracle = roberta(tmp_path, "RobertaForMaskedLM", tokenizer_dir)
    out = from_roberta(folder, tmp_path / "lf", max_positions=70, attention_window=8)
    state = read_checkpoint(str(tmp_path / "lf" / "model.safetensors"))
    old = oracle.roberta.embeddings.position_embeddings.weight.detach().numpy()
    new = state["longformer.embeddings.position_embeddings.weight"]
    assert new.shape == (72, 32)  # 70 positions + the padding offset 2
    np.testing.assert_array_equal(new[:2], old[:2])
    for start in (2, 34, 66):  # RoBERTa's 32 learned rows, again and again (the last copy cut short)
        np.testing.assert_array_equal(new[start:start + 32], old[2:2 + len(new[start:start + 32])])
    for i in range(2):
        for proj in ("query", "key", "value"):
            p = f"longformer.encoder.layer.{i}.attention.self."
            np.testing.assert_array_equal(state[p + proj + "_global.weight"], state[p + proj + ".weight"])
            np.testing.assert_array_equal(state[p + proj + "_global.bias"], state[p + proj + ".bias"])
    config = json.loads((tmp_path / "lf" / "config.json").read_text())
    assert config["model_type"] == "longformer" and config["attention_window"] == 8
    assert config["max_position_embeddings"] == 72 and config["architectures"] == ["LongformerForMaskedLM"]
    assert json.loads((tmp_path / "lf" / "tokenizer_config.json").read_text())["model_max_length"] == 70
    assert (tmp_path / "lf" / "vocab.json").read_bytes() == (tokenizer_dir / "vocab.json").read_bytes()
    assert "lm_head.decoder.weight" not in state and out.tensors == len(state)
    # a long input now runs (RoBERTa stops at 32 tokens)
    model = lpt.LongformerForMaskedLM.from_pretrained(tmp_path / "lf")
    with torch.no_grad():
        assert model(torch.randint(5, 99, (1, 70))).logits.shape == (1, 70, 99)


def test_bad_inputs(tmp_path):
    folder, _ = roberta(tmp_path, "RobertaModel")
    with pytest.raises(ValueError, match="even, positive"):
        from_roberta(folder, tmp_path / "a", max_positions=64, attention_window=7)
    with pytest.raises(ValueError, match="3 entries but the model has num_hidden_layers=2"):
        from_roberta(folder, tmp_path / "a", max_positions=64, attention_window=[8, 8, 8])
    assert not (tmp_path / "a").exists()
    lf = tmp_path / "lf"
    from_roberta(folder, lf, max_positions=64, attention_window=8)
    with pytest.raises(ValueError, match="not a RoBERTa"):
        from_roberta(lf, tmp_path / "b")  # a Longformer is not a RoBERTa
