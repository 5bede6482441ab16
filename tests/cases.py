"""Input patterns shared by the parity tests (NumPy arrays; each backend converts them)."""

from __future__ import annotations

import numpy as np

SEP, PAD = 2, 1


def _ids(r, shape, vocab=99):
    return r.integers(5, vocab, size=shape)  # no <s>/<pad>/</s> by accident


def _with_seps(r, rows, n, question_len):
    """Rows shaped `<s> question </s></s> context </s>` (3 separators), question lengths per row."""
    ids = _ids(r, (rows, n))
    ids[:, 0] = 0
    for i, q in enumerate(question_len):
        ids[i, q + 1] = SEP
        ids[i, q + 2] = SEP
        ids[i, n - 1] = SEP
    return ids


def make_inputs(case: str, head: str, hidden_size: int = 32, seed: int = 0) -> dict:
    """Model inputs (and labels) for one case of `CASES` and one class name."""
    r = np.random.default_rng(seed)
    mc = head == "LongformerForMultipleChoice"
    if case == "no_global":  # length 7: not a multiple of the window, no global token
        B, n = 2, 7
        rows = B * (2 if mc else 1)
        inputs = {"input_ids": _ids(r, (rows, n)), "global_attention_mask": np.zeros((rows, n), dtype=np.int64)}
    elif case == "padded_globals":  # padded rows, 3 / 1 / 0 global tokens per row
        B, n = 3, 13
        rows = B * (2 if mc else 1)
        ids = _with_seps(r, rows, n, [3] * rows)
        mask = np.ones((rows, n), dtype=np.int64)
        glob = np.zeros((rows, n), dtype=np.int64)
        for i in range(rows):
            length = (13, 10, 6)[i % 3]
            mask[i, length:] = 0
            ids[i, length:] = PAD
            ids[i, length - 1] = SEP
            glob[i, [(0, 5, 9), (3,), ()][i % 3]] = 1
        inputs = {"input_ids": ids, "attention_mask": mask, "global_attention_mask": glob}
    elif case == "auto_global":  # no global mask: each head's automatic rule (exactly 3 separators per row)
        B, n = 2, 12
        rows = B * (2 if mc else 1)
        inputs = {"input_ids": _with_seps(r, rows, n, [2, 4] * (rows // 2))}
    elif case == "embeds":  # inputs_embeds + explicit position and token type ids
        B, n = 2, 9
        rows = B * (2 if mc else 1)
        glob = np.zeros((rows, n), dtype=np.int64)
        glob[:, 1] = 1
        inputs = {"inputs_embeds": r.normal(size=(rows, n, hidden_size)).astype(np.float32),
                  "position_ids": np.tile(np.arange(2, 2 + n), (rows, 1)),
                  "token_type_ids": r.integers(0, 3, size=(rows, n)),
                  "global_attention_mask": glob}
    else:
        raise KeyError(case)
    if mc:
        inputs = {k: v.reshape(B, 2, *v.shape[1:]) for k, v in inputs.items()}
    if head == "LongformerForMaskedLM":
        labels = _ids(r, (B, n))
        labels[:, ::3] = -100
        inputs["labels"] = labels
    elif head == "LongformerForSequenceClassification":
        inputs["labels"] = r.integers(0, 3, size=(B,))
    elif head == "LongformerForTokenClassification":
        labels = r.integers(0, 3, size=(B, n))
        labels[:, -1] = -100
        inputs["labels"] = labels
    elif head == "LongformerForQuestionAnswering":
        inputs["start_positions"] = r.integers(0, n, size=(B,))
        end = np.minimum(inputs["start_positions"] + 1, n - 1)
        end[-1] = n + 3  # out of range: clamped to n and ignored
        inputs["end_positions"] = end
    elif head == "LongformerForMultipleChoice":
        inputs["labels"] = r.integers(0, 2, size=(B,))
    return inputs


CASES = ("no_global", "padded_globals", "auto_global", "embeds")
