"""Property test: our blocked band + global attention equals the plain dense-masked NumPy rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from longformer import LongformerConfig, inputs, reference, semantics  # noqa: E402
from longformer.pt.attention import global_slots  # noqa: E402
from longformer.pt.modeling import LongformerSelfAttention  # noqa: E402


@st.composite
def problems(draw):
    nh = draw(st.sampled_from([1, 2, 4]))
    hd = draw(st.sampled_from([2, 4]))
    window = 2 * draw(st.integers(1, 6))
    B = draw(st.integers(1, 3))
    n = draw(st.integers(1, 24))
    block = draw(st.integers(1, 16))
    seed = draw(st.integers(0, 2**31 - 1))
    r = np.random.default_rng(seed)
    mask = np.ones((B, n), dtype=np.int64)
    for b in range(B):
        mask[b, draw(st.integers(1, n)):] = 0  # right padding (at least one real token)
        hole = draw(st.integers(0, n - 1))
        if draw(st.booleans()) and hole > 0:
            mask[b, hole] = 0  # padding in the middle too
        p_global = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
        mask[b] = np.where((mask[b] == 1) & (r.random(n) < p_global), 2, mask[b])
    return nh, hd, window, block, mask, seed


@settings(max_examples=150, deadline=None)
@given(problems())
def test_attention_matches_dense_reference(problem):
    nh, hd, window, block, mask, seed = problem
    H = nh * hd
    config = LongformerConfig(hidden_size=H, num_attention_heads=nh, num_hidden_layers=1, attention_window=window,
                              intermediate_size=4, vocab_size=10, attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    layer = LongformerSelfAttention(config, 0).eval()
    layer.query_block = block
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    B, N = mask.shape
    h = torch.randn(B, N, H, dtype=torch.float64)
    layer.double()
    merged = torch.as_tensor(mask)
    x = int((merged == 2).sum(1).max())
    G = semantics.num_global_slots(x, N)
    masks = inputs.attention_masks(merged, G, global_slots)
    with torch.no_grad():
        out, probs, global_probs = layer(h, masks, output_attentions=True)
        proj = {name: getattr(layer, name)(h).view(B, N, nh, hd).numpy()
                for name in ("query", "key", "value", "query_global", "key_global", "value_global")}
    scale = 1 / np.sqrt(hd)
    ref_out, ref_local, ref_global = reference.attention(
        proj["query"] * scale, proj["key"], proj["value"], proj["query_global"] * scale, proj["key_global"],
        proj["value_global"], mask, window // 2)
    np.testing.assert_allclose(out.numpy(), ref_out.reshape(B, N, H), atol=1e-10)
    local = torch.cat([probs[..., :x], probs[..., G:]], dim=-1).numpy()
    np.testing.assert_allclose(local, ref_local, atol=1e-12)
    if x:
        np.testing.assert_allclose(global_probs[:, :, :x].numpy(), ref_global, atol=1e-12)
    else:
        assert global_probs is None


def test_global_slots_are_static_powers_of_two():
    from longformer.semantics import num_global_slots

    assert [num_global_slots(x, 100) for x in (0, 1, 2, 3, 5, 9)] == [0, 1, 2, 4, 8, 16]
    assert num_global_slots(7, 6) == 6  # never more slots than positions


def test_the_default_strategy_follows_the_device():
    """CPU: each backend's fastest loop; an accelerator: pt's FlexAttention kernel, batched contractions in Flax and
    TF (device names as each framework writes them)."""
    assert [semantics.band_strategy(b, "cpu") for b in ("pt", "flax", "tf")] == ["rows", "rows", "rows"]
    assert semantics.band_strategy("tf-xla", "cpu") == "batched"  # TensorFlow compiled by XLA
    assert semantics.band_strategy("pt", "cuda") == "flex"
    assert semantics.band_strategy("flax", "gpu") == "batched"
    assert semantics.band_strategy("tf", "/job:localhost/replica:0/task:0/device:GPU:0") == "batched"
    assert semantics.band_strategy("tf", "/job:localhost/replica:0/task:0/device:CPU:0") == "rows"
    with pytest.raises(ValueError, match=r"Unknown band strategy 'flex' for flax; choose one of \('rows', 'batched'\)"):
        semantics.check_band_strategy("flex", "flax")


@pytest.mark.parametrize("w", [1, 4, 64, 100])
@pytest.mark.parametrize("length", [5, 130, 300])
def test_the_flex_block_mask_covers_every_allowed_key(w, length):
    """The "flex" strategy's block mask: its element rule is the band-and-valid-or-global rule, and the key blocks
    it visits (from the geometry, never evaluated on N x N) hold every key a row may see."""
    from longformer.pt.attention import FLEX_BLOCK, flex_block_mask

    r = np.random.default_rng(length + w)
    B = 3
    padded = length + (-length % FLEX_BLOCK)
    valid = np.ones((B, length), bool)
    valid[1, length // 2:] = False                                              # a padded row
    is_global = (r.random((B, length)) < 0.02) & valid
    is_global[2, length - 1] = True                                             # a global token far from row 0
    key_valid = valid & ~is_global
    block_mask = flex_block_mask(torch.as_tensor(key_valid), torch.as_tensor(is_global), w, padded)
    i = np.arange(padded)
    kv = np.pad(key_valid, ((0, 0), (0, padded - length)))
    glob = np.pad(is_global, ((0, 0), (0, padded - length)))
    want = ((np.abs(i[:, None] - i[None, :]) <= w)[None] & kv[:, None, :]) | glob[:, None, :]   # B P P
    rule = block_mask.mask_mod(torch.arange(B)[:, None, None], 0, torch.as_tensor(i)[None, :, None],
                               torch.as_tensor(i)[None, None, :])
    np.testing.assert_array_equal(rule.numpy(), want)
    visited = block_mask.to_dense()[:, 0].numpy().astype(bool)                        # B qblk kblk
    visited = visited.repeat(FLEX_BLOCK, 1).repeat(FLEX_BLOCK, 2)
    assert not (want & ~visited).any(), "an allowed key lies in a block the mask does not visit"


def test_the_flex_block_mask_is_sparse():
    """Without global tokens a query block visits only its neighbours (w < FLEX_BLOCK); one global token adds its
    block to every row's list."""
    from longformer.pt.attention import FLEX_BLOCK, flex_block_mask

    n_blocks = 8
    valid = torch.ones(1, n_blocks * FLEX_BLOCK, dtype=torch.bool)
    none = torch.zeros_like(valid)
    visits = flex_block_mask(valid, none, 16, n_blocks * FLEX_BLOCK).to_dense()[0, 0]
    assert torch.equal(visits.bool(), torch.ones(n_blocks, n_blocks).tril(1).triu(-1).bool())
    one = none.clone()
    one[0, 5 * FLEX_BLOCK + 3] = True
    visits = flex_block_mask(valid & ~one, one, 16, n_blocks * FLEX_BLOCK).to_dense()[0, 0]
    assert visits.sum() == 3 * n_blocks - 2 + (n_blocks - 3) and visits[:, 5].all()
