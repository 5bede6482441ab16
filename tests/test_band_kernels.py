"""The band attention kernel of every installed backend, with each loop strategy, against a dense NumPy oracle, at
real geometries: windows from 4 to 600 (512, 514 and 500 included, whose blocks used to differ), lengths up to
3W + 5, global slots 0..9; its outputs and its gradients (the training path: longformer.pt's own backward)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longformer import semantics
from longformer.backends import available_backends

BACKENDS = available_backends()
pytestmark = pytest.mark.skipif(not BACKENDS, reason="no backend installed (core env)")


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    return request.param


# The loop strategies every backend has; pt's "flex" kernel gives no probabilities and has no CPU backward (it hands
# both to "batched"): its outputs are tested at the model level (test_models) and its block mask in test_attention.
LOOP_STRATEGIES = [s for s in semantics.BAND_STRATEGIES if {"pt", "flax", "tf"} <= set(semantics.STRATEGY_BACKENDS[s])]


@pytest.fixture(scope="module", params=LOOP_STRATEGIES)
def strategy(request):
    return request.param


def run_kernel(backend: str, strategy: str, q, k, v, key_valid, w, gk, gv, slot_valid):
    """(context, band probabilities) of the backend's `band_attention` with the strategy's block size, as NumPy."""
    import importlib

    attention = importlib.import_module(f"longformer.{backend}.attention")
    block = semantics.query_block(w, strategy, backend)
    if backend == "pt":
        import torch

        t = [None if x is None else torch.as_tensor(x) for x in (q, k, v, key_valid, gk, gv, slot_valid)]
        with torch.no_grad():
            out, probs = attention.band_attention(t[0], t[1], t[2], t[3], w, block, global_k=t[4], global_v=t[5],
                                                  slot_valid=t[6], return_probs=True, strategy=strategy)
        return out.numpy(), probs.numpy()
    out, probs = attention.band_attention(q, k, v, key_valid, w, block, global_k=gk, global_v=gv,
                                          slot_valid=slot_valid, return_probs=True, strategy=strategy)
    return np.asarray(out), np.asarray(probs)


def kernel_gradients(backend: str, strategy: str, q, k, v, key_valid, w, gk, gv, slot_valid, d_out):
    """Gradients of sum(context * d_out) with respect to q, k, v (and the global slots' keys and values), through
    the backend's training path, as NumPy."""
    import importlib

    attention = importlib.import_module(f"longformer.{backend}.attention")
    block = semantics.query_block(w, strategy, backend)
    wrt = (q, k, v) if gk is None else (q, k, v, gk, gv)
    if backend == "pt":
        import torch

        t = [torch.tensor(x, requires_grad=True) for x in wrt]
        out, _ = attention.band_attention(t[0], t[1], t[2], torch.as_tensor(key_valid), w, block,
                                          global_k=t[3] if gk is not None else None,
                                          global_v=t[4] if gk is not None else None,
                                          slot_valid=None if slot_valid is None else torch.as_tensor(slot_valid),
                                          strategy=strategy)
        return [g.numpy() for g in torch.autograd.grad((out * torch.as_tensor(d_out)).sum(), t)]
    if backend == "flax":
        import jax

        def loss(*x):
            out, _ = attention.band_attention(x[0], x[1], x[2], key_valid, w, block, global_k=x[3] if gk is not None
                                              else None, global_v=x[4] if gk is not None else None,
                                              slot_valid=slot_valid, strategy=strategy)
            return (out * d_out).sum()

        return [np.asarray(g) for g in jax.grad(loss, argnums=tuple(range(len(wrt))))(*wrt)]
    import tensorflow as tf

    t = [tf.Variable(x) for x in wrt]
    with tf.GradientTape() as tape:
        out, _ = attention.band_attention(t[0], t[1], t[2], tf.constant(key_valid), w, block,
                                          global_k=t[3] if gk is not None else None,
                                          global_v=t[4] if gk is not None else None,
                                          slot_valid=None if slot_valid is None else tf.constant(slot_valid),
                                          strategy=strategy)
        loss = tf.reduce_sum(out * d_out)
    return [np.asarray(g) for g in tape.gradient(loss, t)]


def dense_gradients(q, k, v, key_valid, w, gk, gv, slot_valid, d_out):
    """The gradients of sum(context * d_out) for the dense rules, written out: dP = dO V^T, dS = P (dP - rowsum(P
    dP)), dq = dS K, dK = dS^T q, dV = P^T dO (global slots as extra key columns)."""
    B, N, nh, hd = q.shape
    i = np.arange(N)
    allowed = ((np.abs(i[:, None] - i[None, :]) <= w)[None] & key_valid[:, None, :])[:, None]   # B 1 N N
    keys, values = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)                              # B nh N hd
    if gk is not None:
        allowed = np.concatenate([np.broadcast_to(slot_valid[:, None, None, :], (B, 1, N, gk.shape[2])),
                                  allowed], axis=-1)
        keys, values = np.concatenate([gk, keys], axis=2), np.concatenate([gv, values], axis=2)
    scores = np.where(allowed, np.einsum("bihd,bhjd->bhij", q, keys), -np.inf)
    top = np.max(np.where(allowed, scores, -1e300), axis=-1, keepdims=True)
    e = np.where(allowed, np.exp(scores - top), 0.0)
    p = e / np.maximum(e.sum(-1, keepdims=True), 1e-300)
    d_p = np.einsum("bihd,bhjd->bhij", d_out, values)
    d_s = p * (d_p - (p * d_p).sum(-1, keepdims=True))
    dq = np.einsum("bhij,bhjd->bihd", d_s, keys)
    d_keys, d_values = np.einsum("bhij,bihd->bhjd", d_s, q), np.einsum("bhij,bihd->bhjd", p, d_out)
    G = 0 if gk is None else gk.shape[2]
    grads = [dq, d_keys[:, :, G:].transpose(0, 2, 1, 3), d_values[:, :, G:].transpose(0, 2, 1, 3)]
    return grads + ([d_keys[:, :, :G], d_values[:, :, :G]] if G else [])


def dense(q, k, v, key_valid, w, gk, gv, slot_valid):
    """Softmax over every key within w positions that is valid, and every real global slot, written densely.
    Returns the context and which (batch, row) see at least one key (the model overwrites the others)."""
    B, N, nh, hd = q.shape
    i = np.arange(N)
    allowed = (np.abs(i[:, None] - i[None, :]) <= w)[None] & key_valid[:, None, :]       # B N N
    scores = np.where(allowed[:, None], np.einsum("bihd,bjhd->bhij", q, k), -np.inf)
    parts = [scores]
    sees = allowed.any(-1)
    if gk is not None:
        parts.insert(0, np.where(slot_valid[:, None, None, :], np.einsum("bihd,bhgd->bhig", q, gk), -np.inf))
        sees = sees | slot_valid.any(-1)[:, None]
    scores = np.concatenate(parts, axis=-1)
    top = np.max(np.where(np.isfinite(scores), scores, -1e300), axis=-1, keepdims=True)
    e = np.where(np.isfinite(scores), np.exp(scores - top), 0.0)
    p = e / np.maximum(e.sum(-1, keepdims=True), 1e-300)
    G = 0 if gk is None else gk.shape[2]
    context = np.einsum("bhij,bjhd->bihd", p[..., G:], v)
    if G:
        context += np.einsum("bhig,bhgd->bihd", p[..., :G], gv)
    return context, sees


@st.composite
def problems(draw):
    window = draw(st.sampled_from([4, 6, 16, 130, 320, 500, 512, 514, 600]))
    w = window // 2
    n = draw(st.integers(1, 3 * window + 5))
    B, nh, hd = draw(st.integers(1, 2)), draw(st.sampled_from([1, 2])), 4
    G = draw(st.integers(0, 9))
    r = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    q, k, v = (r.standard_normal((B, n, nh, hd)).astype(np.float32) for _ in range(3))
    key_valid = r.random((B, n)) < draw(st.sampled_from([1.0, 0.9, 0.3]))
    gk = gv = slot_valid = None
    if G:
        gk, gv = (r.standard_normal((B, nh, G, hd)).astype(np.float32) for _ in range(2))
        slot_valid = r.random((B, G)) < 0.7
    return q, k, v, key_valid, w, gk, gv, slot_valid


@settings(max_examples=6, deadline=None)  # per strategy: 12 per backend
@given(problem=problems())
def test_band_kernel_matches_the_dense_rules(backend, strategy, problem):
    q, k, v, key_valid, w, gk, gv, slot_valid = problem
    out, probs = run_kernel(backend, strategy, q, k, v, key_valid, w, gk, gv, slot_valid)
    want, sees = dense(*(x.astype(np.float64) if isinstance(x, np.ndarray) and x.dtype == np.float32 else x
                         for x in problem[:4]), w, *(None if x is None else x.astype(np.float64) if x.dtype ==
                                                     np.float32 else x for x in (gk, gv, slot_valid)))
    rows = sees[:, :, None, None]                                # B N 1 1: rows with a key (others are overwritten)
    np.testing.assert_allclose(np.where(rows, out, 0), np.where(rows, want, 0), atol=2e-5)
    G = 0 if gk is None else gk.shape[2]
    assert probs.shape == (q.shape[0], q.shape[2], q.shape[1], G + 2 * w + 1)
    row_sums = probs.sum(-1).transpose(0, 2, 1)                 # B N nh
    np.testing.assert_allclose(row_sums[sees], 1.0, atol=1e-4)


@settings(max_examples=3, deadline=None)  # per strategy: 6 per backend
@given(problem=problems())
def test_band_kernel_gradients_match_the_dense_rules(backend, strategy, problem):
    """The training path's gradients (longformer.pt: its own backward, recomputing each block) against the dense
    rules' in float64. Rows that see no key (padding, global tokens with no local key: the model overwrites
    them) get no output gradient, as in the model."""
    q, k, v, key_valid, w, gk, gv, slot_valid = problem
    as64 = [None if x is None else x.astype(np.float64) if x.dtype == np.float32 else x for x in problem[:4]]
    g64 = [None if x is None else x.astype(np.float64) if x.dtype == np.float32 else x for x in (gk, gv, slot_valid)]
    _, sees = dense(*as64, w, *g64)
    d_out = np.random.default_rng(1).standard_normal(q.shape).astype(np.float32) * sees[:, :, None, None]
    got = kernel_gradients(backend, strategy, q, k, v, key_valid, w, gk, gv, slot_valid, d_out)
    want = dense_gradients(*as64, w, *g64, d_out.astype(np.float64))
    names = ("q", "k", "v") if gk is None else ("q", "k", "v", "global_k", "global_v")
    for name, a, b in zip(names, got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)


def test_band_kernel_gradients_of_numpy_inputs_that_need_no_padding(backend, strategy):
    """Found by the test above: inputs of a whole number of blocks are not padded, so the backward got them back
    as the NumPy arrays they came in as (Flax's rows loop then indexed one with a traced row)."""
    r = np.random.default_rng(0)
    q, k, v = (r.standard_normal((1, 4, 1, 4)).astype(np.float32) for _ in range(3))
    key_valid = np.ones((1, 4), bool)
    d_out = r.standard_normal(q.shape).astype(np.float32)
    got = kernel_gradients(backend, strategy, q, k, v, key_valid, 2, None, None, None, d_out)
    want = dense_gradients(*(x.astype(np.float64) for x in (q, k, v)), key_valid, 2, None, None, None,
                           d_out.astype(np.float64))
    for name, a, b in zip("qkv", got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)


def own_gradients(backend: str, strategy: str, n: int, w: int, block: int, G: int, rate: float, own: bool):
    """(context, gradients of q, k, v and the global slots' keys and values) of sum(context * d_out), float64,
    through the backend's band with its own gradient (`own`) or through the framework's autodiff of the same
    forward (`_band_forward`), with the same dropout masks (pt: a seed; flax: PRNG keys; tf: stateless seeds)."""
    import importlib

    attention = importlib.import_module(f"longformer.{backend}.attention")
    r = np.random.default_rng(0)
    B, nh, hd = 2, 3, 5
    arrays = [r.standard_normal((B, n, nh, hd)) for _ in range(3)] + [r.standard_normal((B, nh, G, hd))
                                                                        for _ in range(2 if G else 0)]
    key_valid, slot_valid = r.random((B, n)) > 0.2, r.random((B, G)) > 0.3
    d_out = r.standard_normal((B, n, nh, hd))
    _, tail, span = semantics.band_geometry(n, w, block)
    pads = ((0, tail), (w, span - w + tail), (w, span - w + tail))

    def args(x, key_valid, slot_valid, dtype):
        band_bias, key_bias = attention._band_bias(key_valid, w, block, span, tail, dtype)
        padded = [attention._pad_rows(a, *p) for a, p in zip(x[:3], pads, strict=True)]
        slots = (x[3], x[4], band_bias, key_bias, attention._additive_bias(slot_valid, dtype)) if G else (
            None, None, band_bias, key_bias, None)
        return (*padded, *slots)

    if backend == "pt":
        import torch

        x = [torch.tensor(a, requires_grad=True) for a in arrays]
        drop = attention.AttentionDropout(rate, 1234 if rate else None)
        call = attention.BandAttention.apply if own else lambda *a: attention._band_forward(*a)[0]
        context = call(*args(x, torch.as_tensor(key_valid), torch.as_tensor(slot_valid), torch.float64), w,
                       block, strategy, drop)[:, :n]
        grads = torch.autograd.grad((context * torch.as_tensor(d_out)).sum(), x)
        return context.detach().numpy(), [g.numpy() for g in grads]
    if backend == "flax":
        import jax

        keys = tuple(jax.random.split(jax.random.key(7))) if rate else None
        call = attention.band_core if own else lambda *a: attention._band_forward(*a)[0]
        with jax.enable_x64(True):
            def loss(*x):
                context = call(*args(x, key_valid, slot_valid, jax.numpy.float64), keys, w, block, strategy,
                               rate)[:, :n]
                return (context * d_out).sum(), context

            grads, context = jax.grad(loss, argnums=tuple(range(len(arrays))), has_aux=True)(*arrays)
            return np.asarray(context), [np.asarray(g) for g in grads]
    import tensorflow as tf

    x = [tf.Variable(a) for a in arrays]
    seeds = tf.unstack(attention._split(tf.constant([3, 4])))
    call = attention.band_core if own else lambda *a: attention._band_forward(*a)[0]
    with tf.GradientTape() as tape:
        context = call(*args(x, tf.constant(key_valid), tf.constant(slot_valid), tf.float64), *seeds, w, block,
                       strategy, rate)[:, :n]
        loss = tf.reduce_sum(context * d_out)
    return context.numpy(), [g.numpy() for g in tape.gradient(loss, x)]


@pytest.mark.parametrize("n, w, block, G", [(50, 6, 4, 2), (100, 10, 8, 4), (23, 4, 8, 0)])
def test_own_gradient_draws_the_forwards_dropout_masks_again(backend, strategy, n, w, block, G):
    """The band's own gradient (pt BandAttention, flax band_core (jax.custom_vjp), tf band_core
    (tf.custom_gradient)) keeps no dropout mask: its backward draws each mask again. Its output is the forward's
    and its gradients equal the framework's own through the same forward and masks (float64)."""
    context, ours = own_gradients(backend, strategy, n, w, block, G, 0.3, own=True)
    want_context, want = own_gradients(backend, strategy, n, w, block, G, 0.3, own=False)
    assert not np.allclose(want_context, own_gradients(backend, strategy, n, w, block, G, 0.0, own=False)[0])
    # Exactly the forward's (XLA may fuse the two traces differently in Flax: the last bit of float64).
    np.testing.assert_allclose(context, want_context, rtol=0, atol={"flax": 1e-12}.get(backend, 0.0))
    tolerance = {"pt": 1e-12}.get(backend, 1e-10)
    for a, b in zip(ours, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance)
