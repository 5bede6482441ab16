"""Bad input gets a clear error that says what is wrong and how to fix it."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from conftest import tiny_kwargs  # noqa: E402

import longformer.pt as lpt  # noqa: E402
from longformer import LongformerConfig  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return lpt.LongformerModel(LongformerConfig(**tiny_kwargs())).eval()


def ids(*shape):
    return torch.randint(5, 99, shape)


def test_sequence_longer_than_position_table(model):
    model(ids(1, 62))  # 62 tokens use positions 2..63 of 64: fits
    with pytest.raises(ValueError, match="position 64 .* 64 rows .* at most 62 tokens fit"):
        model(ids(1, 63))
    with pytest.raises(ValueError, match="position table"):  # from embeddings: every padded position counts
        model(inputs_embeds=torch.randn(1, 63, 32))


def test_ids_outside_the_vocabulary(model):
    bad = ids(1, 5)
    bad[0, 2] = 99
    with pytest.raises(ValueError, match=r"input_ids holds values in \[\d+, 99\] but must lie in \[0, 98\]"):
        model(bad)
    bad[0, 2] = -1
    with pytest.raises(ValueError, match="input_ids"):
        model(bad)
    with pytest.raises(ValueError, match="token_type_ids"):
        model(ids(1, 5), token_type_ids=torch.full((1, 5), 3))


def test_mismatched_shapes(model):
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 4\) but the input has shape \(1, 5\)"):
        model(ids(1, 5), attention_mask=torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="global_attention_mask has shape"):
        model(ids(2, 5), global_attention_mask=torch.ones(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        model(ids(1, 5), inputs_embeds=torch.randn(1, 5, 32))
    with pytest.raises(ValueError, match="exactly one"):
        model()
    with pytest.raises(ValueError, match=r"inputs_embeds must have shape \(batch, sequence, 32\)"):
        model(inputs_embeds=torch.randn(1, 5, 31))
    with pytest.raises(ValueError, match=r"input_ids must have shape \(batch, sequence\)"):
        model(ids(5))


def test_global_attention_on_padding(model):
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    glob = torch.tensor([[1, 0, 0, 1, 0]])
    with pytest.raises(ValueError, match="Padding tokens cannot be global"):
        model(ids(1, 5), attention_mask=mask, global_attention_mask=glob)


def test_question_answering_needs_three_separators():
    qa = lpt.LongformerForQuestionAnswering(LongformerConfig(**tiny_kwargs(num_labels=2))).eval()
    with pytest.raises(ValueError, match=r"exactly 3 separator tokens .* found \[0\]"):
        qa(ids(1, 8))
    with pytest.raises(ValueError, match="num_labels must be 2"):
        lpt.LongformerForQuestionAnswering(LongformerConfig(**tiny_kwargs(num_labels=3)))


def test_multiple_choice_needs_choice_dimension():
    mc = lpt.LongformerForMultipleChoice(LongformerConfig(**tiny_kwargs())).eval()
    with pytest.raises(ValueError, match=r"\(batch, num_choices, sequence\)"):
        mc(ids(2, 7), global_attention_mask=torch.zeros(2, 7, dtype=torch.long))


def test_odd_window_in_model_config():
    config = LongformerConfig(**tiny_kwargs())
    config.attention_window = 5
    with pytest.raises(ValueError, match="even"):
        lpt.LongformerModel(config)
