"""What only longformer.tf has (no torch needed): tf.function / XLA, the Keras backend check, Hugging Face 4.x
tf_model.h5, dtype policies, model.fit, SavedModel export, MirroredStrategy, quiet imports. The tests every backend
shares are tests/test_models.py."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from cases import make_inputs  # noqa: E402
from conftest import HEADS, tiny_kwargs  # noqa: E402
from parity import close  # noqa: E402

import longformer.tf as ltf  # noqa: E402
from longformer import LongformerConfig  # noqa: E402
from longformer.tf.checkpoint import canonical_variables  # noqa: E402

ATOL = 1e-5
DATA = pathlib.Path(__file__).parent / "data"


def randomize_(model, seed=0):
    r = np.random.default_rng(seed)
    for key, (variable, _) in canonical_variables(model).items():
        value = r.normal(size=variable.shape) * 0.1
        if key.endswith(("LayerNorm.weight", "layer_norm.weight")):
            value += 1
        variable.assign(value.astype(np.float32))
    return model


def make(head="LongformerModel", seed=0, **overrides):
    if head == "LongformerForQuestionAnswering":
        overrides.setdefault("num_labels", 2)
    return randomize_(getattr(ltf, head)(LongformerConfig(**tiny_kwargs(**overrides))), seed)


def saved(tmp_path, head="LongformerModel", **overrides):
    model = make(head, **overrides)
    model.save_pretrained(tmp_path / head)
    return tmp_path / head, model


def all_close(a, b, atol=ATOL, where=""):
    assert a.keys() == b.keys(), (where, a.keys(), b.keys())
    for key in a.keys():
        pairs = zip(a[key], b[key], strict=True) if isinstance(a[key], tuple) else [(a[key], b[key])]
        for x, y in pairs:
            assert close(x, y, atol), (where, key)


# ---------------------------------------------------------------------------------------------- graph and XLA
@pytest.mark.parametrize("head", HEADS)
def test_eager_graph_and_xla_agree(head):
    model = make(head)
    slots = 4  # inside a graph the slot count comes from the caller (the data is not known when tracing)

    def run(batch):
        return model(**batch, output_attentions=True, output_hidden_states=True, num_global_slots=slots)

    for case in ("padded_globals", "embeds"):
        inputs = {k: tf.constant(v) for k, v in make_inputs(case, head).items()}
        eager = model(**inputs, output_attentions=True, output_hidden_states=True)

        for jit in (False, True):
            out = tf.function(run, jit_compile=jit)(inputs)
            # Slots beyond the batch's global count stay in the graph outputs: compare the real columns.
            if out.attentions is not None and eager.global_attentions is not None:
                x = eager.global_attentions[0].shape[-1]
                out.attentions = tuple(tf.concat([p[..., :x], p[..., slots:]], -1) for p in out.attentions)
                out.global_attentions = tuple(g[..., :x] for g in out.global_attentions)
            elif out.attentions is not None:
                out.attentions = tuple(p[..., slots:] for p in out.attentions)
                out.global_attentions = None
            all_close(out, eager, where=f"{case} jit={jit}")


XLA_STEPS = r"""
import sys
import keras, numpy as np, tensorflow as tf
sys.path.insert(0, sys.argv[1])
from cases import make_inputs
from test_tf import make
model = make("LongformerForSequenceClassification", attention_window=[4, 8])
optimizer = keras.optimizers.SGD(0.1)

@tf.function(jit_compile=True)
def step(batch):
    with tf.GradientTape() as tape:
        loss = model(**batch, training=True, num_global_slots=4).loss
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables,
                                  strict=True))
    return loss

inputs = make_inputs("padded_globals", "LongformerForSequenceClassification")
for i in range(3):  # new weights, new dropout seeds and new token ids every step
    batch = {k: tf.constant(v) for k, v in inputs.items()}
    batch["input_ids"] = tf.constant(np.where(inputs["input_ids"] > 4, 5 + (inputs["input_ids"] + i) % 50,
                                              inputs["input_ids"]))
    step(batch).numpy()
"""


def test_a_compiled_training_step_compiles_once(tmp_path):
    """A jit-compiled training step (dropout on, weights updated) is compiled by XLA once, not on every call: the
    band used to be a nested tf.function whose gradient made q, k and v compile-time constants. Counted from
    XLA's own log of its compilations."""
    script = tmp_path / "steps.py"
    script.write_text(XLA_STEPS)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE="device_compiler=2")
    run = subprocess.run([sys.executable, str(script), os.path.dirname(__file__)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    compiled = run.stderr.count("Compilation of XLA executable")
    assert compiled == 1, run.stderr[-3000:]


def test_training_under_xla_draws_dropout_masks_statelessly():
    """Dropout in a compiled training step comes from stateless random ops seeded per call (stateful ones run ~10x
    slower under XLA): the traced graph has none, and two steps still draw different masks."""
    model = make("LongformerForSequenceClassification", attention_window=[4, 8])
    inputs = {k: tf.constant(v) for k, v in make_inputs("padded_globals", "LongformerForSequenceClassification")
              .items()}

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            loss = model(**inputs, training=True, num_global_slots=4).loss
        return loss, tape.gradient(loss, model.trainable_variables)[0]

    (a, _), (b, _) = step(), step()
    assert float(a) != float(b)
    graph = step.get_concrete_function().graph
    ops = {op.type for op in graph.get_operations()}
    for function in graph.as_graph_def().library.function:
        ops |= {node.op for node in function.node_def}
    assert any(op.startswith("StatelessRandom") for op in ops), sorted(ops)
    stateful = {"RandomUniform", "RandomStandardNormal", "RandomUniformInt", "TruncatedNormal"} & ops
    assert not stateful, stateful
    # Philox by name, in the band's and the hidden layers' dropout: "auto_select" (Keras' and TF's default) compiles
    # under XLA on CPU to a generator ~30x slower.
    graphs = [graph.as_graph_def().node] + [f.node_def for f in graph.as_graph_def().library.function]
    algs = []
    for nodes in graphs:
        by_name = {node.name: node for node in nodes}
        for node in nodes:
            if node.op == "StatelessRandomUniformV2":
                alg = by_name[node.input[3].split(":")[0]]
                algs.append(tf.make_ndarray(alg.attr["value"].tensor).item() if alg.op == "Const" else alg.op)
    assert algs and set(algs) == {1}, algs  # 1: RNG_ALG_PHILOX
    with pytest.raises(ValueError, match="needs a seed"):
        from longformer.tf.attention import band_attention

        x = tf.zeros((1, 8, 1, 4))
        band_attention(x, x, x, tf.ones((1, 8), tf.bool), 2, 4, dropout=0.1, training=True)


XLA_MEMORY = """
import sys
import numpy as np
import tensorflow as tf
sys.path.insert(0, sys.argv[1])
from test_tf import make
n = 2048
ids = tf.constant(np.random.default_rng(0).integers(3, 99, (1, n)), tf.int32)
one_global = tf.constant(np.eye(1, n, dtype=np.int32))
for layers, checkpointing in ((1, False), (3, False), (1, True), (3, True)):
    model = make("LongformerForSequenceClassification", num_hidden_layers=layers, hidden_size=64,
                 intermediate_size=256, max_position_embeddings=n + 2, attention_window=64,
                 hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    if checkpointing:
        model.gradient_checkpointing_enable()

    def step(ids, one_global):
        with tf.GradientTape() as tape:
            loss = model(input_ids=ids, global_attention_mask=one_global, labels=tf.constant([1]), training=True,
                         num_global_slots=1).loss
        return tape.gradient(loss, model.trainable_variables)

    step.__name__ = f"step_{layers}_layers_{checkpointing}"  # names the XLA module
    tf.function(step, jit_compile=True)(ids, one_global)[-1].numpy()
"""


def test_a_training_step_keeps_a_few_activations_per_layer(tmp_path):
    """What a layer adds to the temporary memory XLA plans for a training step (its buffer assignment, dumped):
    the activations the backward needs and no more. The feed-forward network and the add-and-norms keep their
    inputs only; the band keeps q, k, v, its output and log-sum-exps; no dropout mask is drawn before its input
    exists (XLA would draw every layer's at the start and hold them), no recomputation is merged with the forward
    (CSE would keep the forward's (n, 2w) probabilities instead). With checkpointing, little more than the layer's
    input (`tf.recompute_grad`'s recomputation was merged with the forward: it saved nothing)."""
    script = tmp_path / "memory.py"
    script.write_text(XLA_MEMORY)
    dump = tmp_path / "dump"
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_dump_to={dump}")
    run = subprocess.run([sys.executable, str(script), os.path.dirname(__file__)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    temp = {}
    for layers, checkpointing in ((1, False), (3, False), (1, True), (3, True)):
        name = f"step_{layers}_layers_{checkpointing}"
        (report,) = dump.glob(f"*{name}_*cpu_after_optimizations-buffer-assignment.txt")
        sizes = [int(line.split("size ")[1].split(",")[0]) for line in report.read_text().splitlines()
                 if line.startswith("allocation ") and "preallocated-temp" in line]
        assert sizes, f"no preallocated-temp allocation in {report.name}"
        temp[layers, checkpointing] = sum(sizes)
    layer_input = 2048 * 64 * 4
    per_layer = {ckpt: (temp[3, ckpt] - temp[1, ckpt]) / 2 / layer_input for ckpt in (False, True)}
    # Measured (TensorFlow 2.21): 11.2 and 0.94 inputs' worth (10.2 before the feed-forward's output was kept, to
    # spare its recomputation the second product); before this test 55.3 and 11.0.
    assert per_layer[False] <= 12.5 and per_layer[True] <= 2, per_layer


def test_a_graph_without_slot_count_gives_every_position_a_slot():
    model = make("LongformerForQuestionAnswering")
    inputs = {k: tf.constant(v) for k, v in make_inputs("padded_globals", "LongformerForQuestionAnswering").items()}
    eager = model(**inputs)
    out = tf.function(lambda b: model(**b), jit_compile=True)(inputs)
    assert close(out.loss, eager.loss) and close(out.start_logits, eager.start_logits)


# ---------------------------------------------------------------------------------------------- errors
def test_refuses_a_keras_backend_other_than_tensorflow():
    code = "import longformer.tf"
    env = dict(os.environ, KERAS_BACKEND="numpy")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode != 0 and "KERAS_BACKEND=tensorflow" in run.stderr, run.stderr[-2000:]


# ---------------------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("head", ["LongformerForMaskedLM", "LongformerForQuestionAnswering"])
def test_hugging_face_4x_tf_model_h5_matches_its_outputs(tmp_path, head):
    """tests/data/hf4_tf/<head>: tf_model.h5 + config.json written by transformers 4.57 TF (tf-keras), and the
    outputs that model gave (scripts/make_hf4_tf_fixture.py made both). Also loaded from a sharded copy."""
    folder = DATA / "hf4_tf" / head
    expected = np.load(folder / "outputs.npz")
    inputs = {k[len("input."):]: expected[k] for k in expected.files if k.startswith("input.")}
    folders = [folder] + ([DATA / "hf4_tf" / (head + "-sharded")] if head == "LongformerForMaskedLM" else [])
    for path in folders:
        model = getattr(ltf, head).from_pretrained(path)
        out = model(**inputs, output_hidden_states=True)
        for key in expected.files:
            if not key.startswith("input."):
                field, _, index = key.partition(".")
                value = getattr(out, field)
                assert close(value[int(index)] if index else value, expected[key]), (path.name, key)


def test_bfloat16_dtype_policy(tmp_path):
    folder, model = saved(tmp_path, "LongformerForMaskedLM")
    half = ltf.LongformerForMaskedLM.from_pretrained(folder, dtype="bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    inputs = make_inputs("padded_globals", "LongformerForMaskedLM")
    out = half(**inputs)
    assert out.logits.dtype == tf.bfloat16 and np.isfinite(float(out.loss))
    assert close(tf.cast(out.logits, tf.float32), model(**inputs).logits, 0.1)


# ---------------------------------------------------------------------------------------------- training
def _dataset(head, n_batches=2):
    inputs = make_inputs("padded_globals", head)
    return tf.data.Dataset.from_tensor_slices(inputs).repeat(n_batches).batch(len(next(iter(inputs.values()))))


@pytest.mark.parametrize("head", HEADS[1:])
def test_model_fit_trains_each_head_with_its_own_loss(head):
    model = make(head, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(_dataset(head, 4), epochs=3, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0], losses
    assert np.isfinite(model.evaluate(_dataset(head), verbose=0))


# ---------------------------------------------------------------------------------------------- serving
@pytest.mark.parametrize("head", ["LongformerForQuestionAnswering", "LongformerForMultipleChoice"])
def test_exported_saved_model_matches(tmp_path, head):
    model = make(head)
    model.export(str(tmp_path / "export"), verbose=False)
    reloaded = tf.saved_model.load(str(tmp_path / "export"))
    for case in ("padded_globals", "auto_global"):
        inputs = make_inputs(case, head)
        glob = inputs["global_attention_mask"] if "global_attention_mask" in inputs else _auto_global(model, inputs)
        feed = {"input_ids": tf.constant(inputs["input_ids"], tf.int32),
                "attention_mask": tf.constant(inputs.get("attention_mask", np.ones_like(inputs["input_ids"])), tf.int32),
                "global_attention_mask": tf.constant(glob, tf.int32)}
        served = reloaded.serve(feed)
        direct = model(**{k: v.numpy() for k, v in feed.items()})
        for field, value in served.items():
            assert close(value, getattr(direct, field)), (case, field)


def _auto_global(model, inputs):
    """The global mask a head would choose itself (the serving signature takes it explicitly)."""
    from longformer.inputs import automatic_global_attention

    return automatic_global_attention(type(model).__name__, inputs["input_ids"], None, 2)


# ---------------------------------------------------------------------------------------------- distribution
MIRRORED_SCRIPT = r"""
import json, sys
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[1])
from cases import make_inputs
from test_tf import make

head = "LongformerForSequenceClassification"
inputs = make_inputs("padded_globals", head)
inputs = {k: np.concatenate([v, v[:1]]) for k, v in inputs.items()}  # batch 4: 2 per replica
kwargs = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)

single = make(head, **kwargs)
with tf.GradientTape() as tape:
    loss = single(**inputs, training=True).loss
single_grads = tape.gradient(loss, single.trainable_variables)

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = make(head, **kwargs)
dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(inputs).batch(4))

@tf.function
def step(batch):
    def replica(b):
        with tf.GradientTape() as tape:
            # Each replica's mean loss over its half, averaged over the replicas: the global batch mean.
            loss = model(**b, training=True, num_global_slots=4).loss / strategy.num_replicas_in_sync
        return [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]
    per_replica = strategy.run(replica, args=(batch,))
    return [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g in per_replica]

grads = step(next(iter(dataset)))
dense = tf.convert_to_tensor  # embedding gradients are IndexedSlices
diff = max(float(np.abs(dense(a).numpy() - dense(b).numpy()).max()) for a, b in zip(grads, single_grads))

# model.fit: one SGD step on the whole batch, on one device and mirrored on two, gives the same weights.
import keras
def fitted(scope):
    with scope:
        m = make(head, **kwargs)
        m.compile(optimizer=keras.optimizers.SGD(0.1))
    m.fit(tf.data.Dataset.from_tensor_slices(inputs).batch(4), epochs=1, verbose=0)
    return m.classifier.out_proj.kernel.numpy(), m.longformer.encoder.layer[0].attention.self.query.kernel.numpy()
import contextlib
one, two = fitted(contextlib.nullcontext()), fitted(strategy.scope())
fit_diff = max(float(np.abs(a - b).max()) for a, b in zip(one, two))
moved = float(np.abs(one[0] - make(head, **kwargs).classifier.out_proj.kernel.numpy()).max())
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "max_grad_diff": diff, "fit_diff": fit_diff,
                  "fit_moved": moved}))
"""


def test_mirrored_strategy_gives_the_single_device_gradients(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    run = subprocess.run([sys.executable, str(script), os.path.dirname(__file__)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["max_grad_diff"] <= 1e-6, result
    assert result["fit_moved"] > 1e-4 and result["fit_diff"] <= 1e-6, result


# ---------------------------------------------------------------------------------------------- quiet by default
QUIET_IMPORT = "import longformer.tf, numpy as np; print('ready')"


def test_import_prints_nothing_from_tensorflow_unless_asked():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run([sys.executable, "-c", QUIET_IMPORT], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.stdout == "ready\n" and quiet.stderr == "", quiet.stderr
    loud = subprocess.run([sys.executable, "-c", QUIET_IMPORT], capture_output=True, text=True, timeout=300,
                          env={**env, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert loud.stdout == "ready\n" and loud.stderr != ""  # the user asked for TF's own logs


def test_a_band_strategy_set_after_a_call_is_the_one_that_runs(monkeypatch):
    """Eager calls run the layers as a traced graph: a strategy (or query block) set after the first call is part
    of which graph runs, not lost in the one traced before (the band loop that runs is recorded as it is traced)."""
    from longformer.tf import attention

    ran = []
    for name, fn in list(attention._BAND.items()):
        monkeypatch.setitem(attention._BAND, name, lambda *a, _fn=fn, _name=name: ran.append(_name) or _fn(*a))
    model = make()
    ids = np.full((1, 20), 7, np.int32)
    for strategy in ("rows", "batched"):
        model.set_band_strategy(strategy)
        ran.clear()
        model(ids)
        assert set(ran) == {strategy}
    model.set_band_strategy("rows")
    model.encoder.layer[0].attention.self.query_block = 2
    ran.clear()
    model(ids)
    assert set(ran) == {"rows"}  # a new block size: traced again
    model.set_band_strategy(None)  # the default: rows in TensorFlow's kernels, one contraction under XLA
    model.encoder.layer[0].attention.self.query_block = None
    for compile_, want in ((lambda f: f, "rows"), (tf.function, "rows"), (tf.function(jit_compile=True), "batched")):
        ran.clear()
        compile_(lambda ids: model(ids).last_hidden_state)(ids)
        assert set(ran) == {want}


def test_the_row_loop_runs_few_rows_at_once():
    """Every while loop of a checkpointed training step with the row loop (forward, recomputation, the band's own
    backward) runs at most `attention.ROWS_IN_FLIGHT` iterations at once: with TensorFlow's default of 10, each row
    in flight held its blocks' scores and masks, and checkpointing saved nothing (longformer-base, n = 4096)."""
    from longformer.tf import attention

    model = make("LongformerForSequenceClassification", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    model.set_band_strategy("rows")
    model.gradient_checkpointing_enable()
    ids = tf.constant(np.full((1, 20), 7, np.int32))

    @tf.function
    def step(ids):
        with tf.GradientTape() as tape:
            loss = model(input_ids=ids, labels=tf.constant([1]), training=True).loss
        return tape.gradient(loss, model.trainable_variables)

    graph = step.get_concrete_function(ids).graph.as_graph_def()
    nodes = [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
    loops = [n.attr["parallel_iterations"].i for n in nodes if n.op in ("While", "StatelessWhile")]
    assert len(loops) >= 3 * model.config.num_hidden_layers  # forward, recomputation, backward of every layer
    assert max(loops) <= attention.ROWS_IN_FLIGHT


def test_eager_calls_of_new_shapes_do_not_warn_about_retracing(caplog):
    """Layers of different windows, calls with and without global tokens and attentions, many lengths: each
    static setting is traced once (and lengths generalised), so TF has no "excessive retracing" to report."""
    model = ltf.LongformerModel(LongformerConfig(**tiny_kwargs(attention_window=[4, 8], max_position_embeddings=200)))
    with caplog.at_level("WARNING", logger="tensorflow"):
        for i, n in enumerate([5, 9, 13, 17, 21, 33, 41, 57, 70, 90, 100, 120]):
            glob = np.zeros((1, n), np.int32)
            glob[0, :i % 4] = 1
            model(np.full((1, n), 7, np.int32), global_attention_mask=glob, output_attentions=bool(i % 2))
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_export_is_quiet(tmp_path, capsys):
    model = ltf.LongformerForSequenceClassification(LongformerConfig(**tiny_kwargs()))
    model(np.full((1, 8), 7, np.int32))
    model.export(str(tmp_path / "saved"))
    assert "TensorSpec" not in capsys.readouterr().out

