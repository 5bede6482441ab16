"""The one test matrix: every installed backend (the `backend` fixture), the same tests.

Each backend loads the same canonical checkpoint (random weights written with NumPy) and is held to the NumPy
reference (`longformer/reference.py`, float64) on every output field of all six heads; then dtypes, devices,
dropout, gradient checkpointing, a training step, saving and loading. What only one framework has (compile, jit
and meshes, Keras fit / export) is in that framework's own file; backend against backend and Hugging Face is
tests/test_cross.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from backends import BACKENDS, adapter
from cases import CASES, make_inputs
from conftest import HEADS, random_checkpoint

from converters import CheckpointError
from longformer import LongformerConfig, semantics
from longformer.reference import ReferenceModel

pytestmark = pytest.mark.skipif(not BACKENDS, reason="no backend installed (core env)")
ATOL = 1e-5  # fp32 against the float64 reference
ATOL_ON = {"cpu": ATOL, "gpu": 1e-4}  # fp32 on a GPU (TF32 off in tests/backends.py) against the same reference
GRAD_ATOL = 1e-4  # gradients of two fp32 runs (another strategy or device), as in tests/test_cross.py
WINDOWS = [4, 8]  # per-layer windows: the largest (8) sets the padding, the smaller one its own band
LABELS = ("labels", "start_positions", "end_positions")


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    return adapter(request.param)


@pytest.fixture(params=["cpu", "gpu"])
def device(request, backend):
    if request.param not in backend.devices():
        pytest.skip(f"no GPU visible to {backend.name}")
    return request.param


_CHECKPOINTS: dict = {}


def checkpoint(tmp_path_factory, head: str, **overrides):
    """A canonical checkpoint of `head` (random weights, written once per session) and its reference model."""
    key = (head, json.dumps(overrides, sort_keys=True))
    if key not in _CHECKPOINTS:
        folder = tmp_path_factory.mktemp(head)
        folder, config, state = random_checkpoint(folder, head, **overrides)
        _CHECKPOINTS[key] = folder, ReferenceModel(config, state)
    return _CHECKPOINTS[key]


def assert_fields_close(backend, ours, want: dict, atol: float, where: str) -> None:
    """Every field the reference gives, and no other, within `atol` (tuples field by field)."""
    want = {k: v for k, v in want.items() if v is not None}
    assert set(ours.keys()) == set(want), f"{where}: fields {sorted(ours.keys())} vs {sorted(want)}"
    for key, value in want.items():
        pairs = zip(ours[key], value, strict=True) if isinstance(value, tuple) else [(ours[key], value)]
        for i, (a, b) in enumerate(pairs):
            a, b = backend.numpy(a), np.asarray(b, np.float64)
            assert a.shape == b.shape, f"{where} {key}[{i}]: shape {a.shape} vs {b.shape}"
            diff = np.abs(a - b).max() if a.size else 0.0
            assert diff <= atol, f"{where} {key}[{i}]: max |diff| {diff:.3g} > {atol:.3g}"


# ---------------------------------------------------------------------------------------------- the reference
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("head", HEADS)
def test_every_output_field_matches_the_reference(tmp_path_factory, backend, device, head, case):
    folder, reference = checkpoint(tmp_path_factory, head, attention_window=WINDOWS)
    inputs = make_inputs(case, head)
    model = backend.load(folder, head, device=device)
    ours = backend.call(model, inputs, output_attentions=True, output_hidden_states=True)
    assert_fields_close(backend, ours, reference.outputs(head, **inputs), ATOL_ON[device],
                        f"{backend.name} {head}/{case}")


@pytest.mark.parametrize("length", [1, 7, 8, 29], ids=lambda n: f"n{n}")  # 1, W - 1, W, 3W + 5 (W = 8)
@pytest.mark.parametrize("globals_", [0, 3], ids=lambda g: f"g{g}")  # 3: 4 slots, one a filler
def test_every_length_and_global_count(tmp_path_factory, backend, device, length, globals_):
    head = "LongformerForTokenClassification"
    folder, reference = checkpoint(tmp_path_factory, head, attention_window=WINDOWS)
    r = np.random.default_rng(length)
    inputs = {"input_ids": r.integers(5, 99, (2, length)), "attention_mask": np.ones((2, length), np.int64),
              "global_attention_mask": np.zeros((2, length), np.int64), "labels": r.integers(0, 3, (2, length))}
    inputs["attention_mask"][1, length // 2 + 1:] = 0  # the second row padded
    inputs["global_attention_mask"][0, r.permutation(length)[:globals_]] = 1
    model = backend.load(folder, head, device=device)
    ours = backend.call(model, inputs, output_attentions=True, output_hidden_states=True)
    assert_fields_close(backend, ours, reference.outputs(head, **inputs), ATOL_ON[device],
                        f"{backend.name} n={length}")


@pytest.mark.parametrize("head", ["LongformerForQuestionAnswering"])
def test_the_device_path_matches_the_reference(tmp_path_factory, backend, device, head):
    """`from_pretrained(device=...)` puts every weight on the device; NumPy inputs run there through the device's
    default band strategy (no probabilities asked: on a GPU, pt's FlexAttention kernel), and on an accelerator its
    gradients match the CPU's other strategy's (no dropout: the two runs' masks would differ). Heads of 16
    (FlexAttention's smallest on a GPU)."""
    folder, reference = checkpoint(tmp_path_factory, head, attention_window=WINDOWS, hidden_dropout_prob=0.0,
                                   attention_probs_dropout_prob=0.0, hidden_size=64)
    inputs = make_inputs("padded_globals", head)
    model = backend.load(folder, head, device=device)
    assert backend.param_devices(model) == {device}
    want = {k: v for k, v in reference.outputs(head, **inputs).items() if "att" not in k}
    ours = backend.call(model, inputs, output_hidden_states=True)
    assert_fields_close(backend, ours, want, ATOL_ON[device], f"{backend.name} {device} {head}")
    if device == "cpu":
        return  # the CPU's strategies' gradients are tests/test_band_kernels.py's; here: a device's own kernels
    _, grads = backend.grads(model, inputs, head)
    other = backend.load(folder, head)
    other.set_band_strategy("batched" if semantics.band_strategy(backend.name, "cpu") == "rows" else "rows")
    _, want_grads = backend.grads(other, inputs, head)
    assert grads.keys() == want_grads.keys()
    for name, g in want_grads.items():
        np.testing.assert_allclose(grads[name], g, atol=GRAD_ATOL, err_msg=f"{backend.name} {device} {name}")


def test_a_device_that_is_not_here_is_refused(tmp_path_factory, backend):
    """A device the framework cannot see is a ValueError naming it (TensorFlow would otherwise place the weights on
    the CPU without a word)."""
    folder, _ = checkpoint(tmp_path_factory, "LongformerForMaskedLM", attention_window=WINDOWS)
    with pytest.raises(ValueError, match="No .*device 'gpu:7' here"):
        backend.load(folder, "LongformerForMaskedLM", device="gpu:7")


# Half precision against the float64 reference. Tolerance derived from the unit roundoff u (bf16 2^-8, fp16
# 2^-11): the tiny model's fields are O(1) (LayerNorm outputs, logits of 32-wide products of 0.1-scale weights);
# each of its 2 layers rounds about 8 such tensors (4 projections, context, 2 FFN products, residual) and the
# embeddings 2 more, errors adding in quadrature: sqrt(2 * 8 + 2) ~ 4.2 roundings of relative u on values up to
# ~4 in magnitude, so ~17u; the bound is 32u (about 2x margin), on every field. Probabilities are softmaxes of
# such scores, so they obey it too. Measured: bf16 3-9u, fp16 3-10u.
HALF_TOLERANCE = {"bfloat16": 32 * 2.0**-8, "float16": 32 * 2.0**-11}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("head", ["LongformerForMaskedLM", "LongformerForQuestionAnswering"])
def test_half_precision_tracks_the_reference(tmp_path_factory, backend, device, dtype, head):
    folder, reference = checkpoint(tmp_path_factory, head, attention_window=WINDOWS)
    inputs = make_inputs("padded_globals", head)
    model = backend.load(folder, head, dtype=dtype, device=device)
    ours = backend.call(model, inputs, output_attentions=True, output_hidden_states=True)
    assert_fields_close(backend, ours, reference.outputs(head, **inputs), HALF_TOLERANCE[dtype],
                        f"{backend.name} {dtype} {head}")


@pytest.mark.parametrize(("given", "want"), [
    ("bfloat16", "bfloat16"), ("bf16", "bfloat16"), ("fp16", "float16"), ("float32", "float32"),
    ("the framework's bfloat16", "bfloat16"), (np.float16, "float16"), (np.dtype("bfloat16"), "bfloat16"),
    ("auto", "float16"),  # the checkpoint's config records torch_dtype float16
])
def test_dtype_is_read_the_same_in_every_backend(tmp_path_factory, backend, given, want):
    """One rule (semantics.model_dtype): a name, the command line's short name, any framework's dtype, or "auto" for
    the checkpoint's; before, longformer.pt took "bfloat16" for a device name and Flax cast to int8 when asked."""
    folder, _ = checkpoint(tmp_path_factory, "LongformerModel", torch_dtype="float16")
    given = backend.dtype("bfloat16") if given == "the framework's bfloat16" else given
    model = backend.module.LongformerModel.from_pretrained(folder, dtype=given)
    assert backend.param_dtypes(model) == {want}


def test_a_dtype_no_longformer_runs_in_is_refused(tmp_path_factory, backend):
    folder, _ = checkpoint(tmp_path_factory, "LongformerModel", torch_dtype="float16")
    with pytest.raises(ValueError, match="dtype='int8' is not a dtype a Longformer runs in"):
        backend.module.LongformerModel.from_pretrained(folder, dtype="int8")


# ---------------------------------------------------------------------------------------------- training
# Three heads, three kinds of loss (a function of the base model's outputs, token cross-entropy, start/end); each
# head's gradients against Hugging Face's / longformer.pt's are in test_pt_parity, test_flax_parity, test_tf_parity.
@pytest.mark.parametrize("head", ["LongformerModel", "LongformerForMaskedLM", "LongformerForQuestionAnswering"])
def test_a_training_step_lowers_the_loss(tmp_path_factory, backend, head):
    folder, _ = checkpoint(tmp_path_factory, head, attention_window=WINDOWS, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0)
    model = backend.load(folder, head)
    inputs = make_inputs("padded_globals", head)
    loss, grads = backend.grads(model, inputs, head)
    assert all(np.isfinite(g).all() for g in grads.values())
    nonzero = {k for k, g in grads.items() if np.abs(g).max() > 0}
    assert len(nonzero) >= 0.9 * len(grads) - 2, sorted(set(grads) - nonzero)
    # A step that lowers the loss by 1% to first order: only a right gradient of the right sign does.
    backend.sgd_step(model, grads, 0.01 * loss / sum(float((g ** 2).sum()) for g in grads.values()))
    assert backend.grads(model, inputs, head)[0] < 0.995 * loss


def test_gradient_checkpointing_draws_the_forwards_dropout_masks(tmp_path_factory, backend):
    """A checkpointed step from the same random state gives the plain step's loss and gradients, with dropout on:
    the recomputation draws the forward's masks (a step from the state after it draws new ones). Without dropout
    it is the same code with nothing drawn, so this covers it too."""
    head = "LongformerForTokenClassification"
    folder, _ = checkpoint(tmp_path_factory, head, attention_window=WINDOWS, hidden_dropout_prob=0.2,
                           attention_probs_dropout_prob=0.2)
    model = backend.load(folder, head)
    inputs = make_inputs("padded_globals", head)
    restore = backend.rng_snapshot(model)
    loss, plain = backend.grads(model, inputs, head)
    restore()
    model.gradient_checkpointing_enable()
    again, remat = backend.grads(model, inputs, head)
    later, _ = backend.grads(model, inputs, head)
    assert abs(again - loss) <= 1e-6 and abs(later - loss) > 1e-4 and plain.keys() == remat.keys()
    for key, g in plain.items():
        assert np.abs(g - remat[key]).max() <= 1e-6 * max(1.0, np.abs(g).max()), key


def test_mixed_precision_training_tracks_float32(tmp_path_factory, backend):
    """Mixed precision as each framework's users run it (torch.autocast bf16; Flax `compute_dtype=jnp.bfloat16`;
    Keras' mixed_bfloat16 policy): float32 master weights, eight AdamW steps track the float32 losses within one
    bfloat16 rounding step, 2^-8 relative (observed 1.2e-3 pt, 1.4e-3 flax; softmax, log-sum-exp and the loss stay
    in float32), through the band's own backward. TensorFlow: two steps, 2^-7 (observed 3.8e-3 with the batched band
    loop, 4.0e-3 with rows): Keras' policy hands every layer's output, LayerNorm's included, to the next in
    bfloat16, so the residual stream itself is rounded at every layer."""
    head = "LongformerForSequenceClassification"
    folder, _ = checkpoint(tmp_path_factory, head, attention_window=WINDOWS, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0)
    inputs = make_inputs("padded_globals", head)
    plain, plain_dtype = backend.adamw_losses(folder, head, inputs, 8, mixed=False)
    mixed, mixed_dtype = backend.adamw_losses(folder, head, inputs, 8, mixed=True)
    assert (plain_dtype, mixed_dtype) == ("float32", "bfloat16")  # the logits: computed in bfloat16
    assert mixed[-1] < mixed[0], mixed
    np.testing.assert_allclose(mixed, plain, rtol=2.0 ** (-7 if backend.name == "tf" else -8), atol=0)


def test_dropout_only_in_training(tmp_path_factory, backend):
    head = "LongformerForMaskedLM"
    folder, _ = checkpoint(tmp_path_factory, head, attention_window=WINDOWS)
    model = backend.load(folder, head)
    inputs = make_inputs("padded_globals", head)
    a, b = (backend.call(model, inputs, train=True, output_attentions=True) for _ in range(2))
    assert np.abs(backend.numpy(a.logits) - backend.numpy(b.logits)).max() > 1e-3  # a new mask each call
    probs = backend.numpy(a.attentions[0]).sum(-1)
    assert not np.allclose(probs[probs > 0], 1.0)  # dropout on the attention probabilities too
    a, b = (backend.numpy(backend.call(model, inputs).logits) for _ in range(2))
    assert np.array_equal(a, b)


def test_the_band_strategies_agree(tmp_path_factory, backend):
    """Each of the backend's band strategies (semantics.BAND_STRATEGIES: pt's "flex" a compiled FlexAttention
    kernel) gives the reference's outputs, with and without attention probabilities (which "flex" hands to
    "batched"); None goes back to the device's default."""
    head = "LongformerForQuestionAnswering"
    folder, reference = checkpoint(tmp_path_factory, head, attention_window=WINDOWS)
    inputs = make_inputs("padded_globals", head)
    want = {k: v for k, v in reference.outputs(head, **inputs).items() if k != "hidden_states"}
    model = backend.load(folder, head)
    for strategy in [s for s in semantics.BAND_STRATEGIES if backend.name in semantics.STRATEGY_BACKENDS[s]]:
        model.set_band_strategy(strategy)
        assert_fields_close(backend, backend.call(model, inputs, output_attentions=True), want, ATOL,
                            f"{backend.name} {strategy}")
        if strategy == "flex":  # the kernel itself runs only without probabilities
            assert_fields_close(backend, backend.call(model, inputs),
                                {k: v for k, v in want.items() if "att" not in k}, ATOL, f"{backend.name} flex kernel")
    model.set_band_strategy(None)
    assert_fields_close(backend, backend.call(model, inputs), {k: v for k, v in want.items() if "att" not in k},
                        ATOL, f"{backend.name} default")
    with pytest.raises(ValueError, match=f"Unknown band strategy 'diagonal' for {backend.name}"):
        model.set_band_strategy("diagonal")
    if backend.name != "pt":
        with pytest.raises(ValueError, match="Unknown band strategy 'flex'"):
            model.set_band_strategy("flex")


# ---------------------------------------------------------------------------------------------- checkpoints
def test_save_and_load_round_trip(tmp_path_factory, tmp_path, backend):
    head = "LongformerForMaskedLM"
    folder, _ = checkpoint(tmp_path_factory, head, attention_window=WINDOWS)
    model = backend.load(folder, head)
    model.save_pretrained(tmp_path / "saved")
    again = backend.load(tmp_path / "saved", head)
    inputs = make_inputs("padded_globals", head)
    assert np.array_equal(backend.numpy(backend.call(again, inputs).logits),
                          backend.numpy(backend.call(model, inputs).logits))
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["config.json", "model.safetensors"]


def test_base_and_head_checkpoints_load_into_each_other(tmp_path_factory, tmp_path, backend):
    folder, _ = checkpoint(tmp_path_factory, "LongformerForMaskedLM", attention_window=WINDOWS)
    mlm = backend.load(folder, "LongformerForMaskedLM")
    inputs = make_inputs("padded_globals", "LongformerModel")
    with pytest.warns(UserWarning, match="lm_head"):  # the MLM head is not used; the pooler is newly initialised
        base = backend.load(folder, "LongformerModel")
    want = backend.numpy(backend.call(mlm, inputs, output_hidden_states=True).hidden_states[-1])
    assert np.array_equal(backend.numpy(backend.call(base, inputs).last_hidden_state), want)
    base.save_pretrained(tmp_path / "base")
    with pytest.warns(UserWarning, match="newly initialised"):
        head = backend.load(tmp_path / "base", "LongformerForMaskedLM")
    got = backend.numpy(backend.call(head, inputs, output_hidden_states=True).hidden_states[-1])
    assert np.array_equal(got, want)


def test_broken_checkpoints_name_the_file_and_tensor(tmp_path, backend):
    folder, _, _ = random_checkpoint(tmp_path / "a", "LongformerModel")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        backend.load(folder, "LongformerModel")
    folder, _, _ = random_checkpoint(tmp_path / "b", "LongformerModel")
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 40
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"intermediate.dense.weight: checkpoint \(37, 32\), model \(40, 32\)"):
        backend.load(folder, "LongformerModel")


def test_a_head_of_another_size_is_initialised_anew_when_asked(tmp_path_factory, backend):
    """A classifier trained with 3 labels, loaded with num_labels=5: refused with a message naming the option;
    with ignore_mismatched_sizes=True its projection is new (a warning names it) and the rest is the checkpoint's.
    The encoder must still fit."""
    head = "LongformerForSequenceClassification"
    folder, _ = checkpoint(tmp_path_factory, head, attention_window=WINDOWS)
    cls = getattr(backend.module, head)
    with pytest.raises(CheckpointError, match=r"classifier.out_proj.weight: checkpoint \(3, 32\), model \(5, 32\).*"
                       r"Loading a head with another number of labels\? Pass ignore_mismatched_sizes=True"):
        cls.from_pretrained(folder, num_labels=5)
    with pytest.warns(UserWarning, match=r"shapes differ .* newly initialised .*classifier.out_proj.bias: "
                      r"checkpoint \(3,\), model \(5,\)"):
        model, info = cls.from_pretrained(folder, num_labels=5, ignore_mismatched_sizes=True,
                                          output_loading_info=True)
    assert sorted(k for k, _, _ in info["mismatched_keys"]) == ["classifier.out_proj.bias",
                                                                 "classifier.out_proj.weight"], info
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    inputs = {k: v for k, v in make_inputs("padded_globals", head).items() if k != "labels"}
    out = backend.call(model, inputs, output_hidden_states=True)
    want = backend.call(backend.load(folder, head), inputs, output_hidden_states=True)
    assert out.logits.shape == (inputs["input_ids"].shape[0], 5)
    assert np.array_equal(backend.numpy(out.hidden_states[-1]), backend.numpy(want.hidden_states[-1]))
    with pytest.raises(CheckpointError, match="initialises only a head's tensors anew"):
        cls.from_pretrained(folder, intermediate_size=40, ignore_mismatched_sizes=True)


# ---------------------------------------------------------------------------------------------- errors
def test_errors_of_the_model_itself(tmp_path_factory, backend):
    """What the shared input rules (tests/test_inputs.py) cannot see: the position table, the heads' own shapes
    and configs."""
    folder, _ = checkpoint(tmp_path_factory, "LongformerModel")
    model = backend.load(folder, "LongformerModel")
    ids = np.random.default_rng(0).integers(5, 99, (1, 63))
    backend.call(model, {"input_ids": ids[:, :62]})
    with pytest.raises(ValueError, match="position 64 .* 64 rows .* at most 62 tokens fit"):
        backend.call(model, {"input_ids": ids})
    with pytest.raises(ValueError, match="position table"):
        backend.call(model, {"inputs_embeds": np.zeros((1, 63, 32), np.float32)})
    folder, _ = checkpoint(tmp_path_factory, "LongformerForQuestionAnswering")
    with pytest.raises(ValueError, match=r"exactly 3 separator tokens .* found \[0\]"):
        backend.call(backend.load(folder, "LongformerForQuestionAnswering"), {"input_ids": ids[:, :8]})
    folder, _ = checkpoint(tmp_path_factory, "LongformerForMultipleChoice")
    with pytest.raises(ValueError, match=r"\(batch, num_choices, sequence\)"):
        backend.call(backend.load(folder, "LongformerForMultipleChoice"),
                     {"input_ids": ids[:, :7], "global_attention_mask": np.zeros((1, 7), np.int64)})
    with pytest.raises(ValueError, match="num_labels must be 2"):
        backend.module.LongformerForQuestionAnswering(LongformerConfig(num_labels=3))
    config = LongformerConfig()
    config.attention_window = 5
    with pytest.raises(ValueError, match="even"):
        backend.module.LongformerModel(config)
