"""One implementation, one length, in a fresh process: the time and peak memory of a training step.

A step is forward + backward of LongformerForSequenceClassification with a label and one global token (the `<s>`
token), dropout on (train mode), fp32, batch 1; the gradients are computed, no optimizer update. One first step
(warm-up; for compiled implementations trace + compile), then `--repeat` timed steps. Memory is the process's peak
RSS above its RSS once the model is built. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from _run_one import config_kwargs, inputs, rss_mb, torch_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=["pt", "hf", "flax", "tf-eager", "tf-xla"], required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--repeat", type=int, default=1, help="timed steps after the warm-up step")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--checkpointing", action="store_true", help="gradient checkpointing, per layer")
    args = ap.parse_args()
    build = {"flax": train_flax, "tf": train_tf}.get(args.impl.split("-")[0], train_torch)
    step, versions = build(args)
    base = rss_mb()
    t = time.perf_counter()
    step()
    first = time.perf_counter() - t
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": args.impl, "n": args.n, "checkpointing": args.checkpointing, "time_s": min(times),
                      "first_step_s": first, "peak_above_weights_mb": peak - base, **versions}))


def train_torch(args):
    import torch

    model = torch_model(args, "LongformerForSequenceClassification")
    model.train()
    if args.checkpointing:
        model.gradient_checkpointing_enable()
    ids, one_global = (torch.as_tensor(a) for a in inputs(args.n))
    label = torch.tensor([1])

    def step():
        model.zero_grad(set_to_none=True)
        model(ids, global_attention_mask=one_global, labels=label).loss.backward()

    return step, {"torch": torch.__version__}


def train_flax(args):
    import jax
    from flax import nnx

    from longformer import LongformerConfig
    from longformer.flax import LongformerForSequenceClassification

    model = LongformerForSequenceClassification(LongformerConfig(**config_kwargs(args)))
    model.train()
    if args.checkpointing:
        model.gradient_checkpointing_enable()
    ids, one_global = (jax.numpy.asarray(a) for a in inputs(args.n))
    label = jax.numpy.array([1])
    # The functional form of a step (jax.jit over the split state): the compiled program returns the gradients only
    # (nnx.jit over the module would also return a copy of every parameter).
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def grads(params, rest, ids, one_global, label):  # the batch as arguments, as in tf's step (not constants)
        m = nnx.merge(graphdef, params, rest)
        return nnx.grad(lambda m: m(ids, global_attention_mask=one_global, labels=label, num_global_slots=1).loss)(m)

    def step():
        jax.block_until_ready(grads(params, rest, ids, one_global, label))

    return step, {"jax": jax.__version__}


def train_tf(args):
    import tensorflow as tf

    from longformer import LongformerConfig
    from longformer.tf import LongformerForSequenceClassification

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    model = LongformerForSequenceClassification(LongformerConfig(**config_kwargs(args)))
    if args.checkpointing:
        model.gradient_checkpointing_enable()
    ids, one_global = (tf.constant(a, tf.int32) for a in inputs(args.n))
    label = tf.constant([1])
    model(input_ids=ids[:, :8])  # build the weights

    def grads(ids, one_global, label):  # the batch as arguments, as a training loop passes it (closed-over
        # tensors would be constants: XLA folds whatever depends only on them at compile time)
        with tf.GradientTape() as tape:
            loss = model(input_ids=ids, global_attention_mask=one_global, labels=label, training=True,
                         num_global_slots=1 if args.impl == "tf-xla" else None).loss
        return tape.gradient(loss, model.trainable_variables)

    compiled = tf.function(grads, jit_compile=True)

    def step():
        result = (compiled if args.impl == "tf-xla" else grads)(ids, one_global, label)
        tf.convert_to_tensor(result[-1]).numpy()  # the last gradient computed: the step is done

    return step, {"tf": tf.__version__}


if __name__ == "__main__":
    main()
