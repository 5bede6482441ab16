"""Proof that a Longformer learns long-range: "does a marker token occur anywhere in these 2,048 tokens?"

    python examples/long_range.py                          # every installed backend, with and without global
    python examples/long_range.py --backends pt --plot docs/images/long_range.png

A tiny Longformer (2 layers, hidden 32, window 64) is trained from random weights to classify random token
sequences: label 1 when the marker token occurs somewhere among the tokens, 0 when it does not. After two layers of
windowed attention a token has seen 64 tokens on each side at most, so without global attention the <s> token's
prediction rests on ~6% of the sequence and stays near chance. With <s> global it attends to every token in every
layer and the task is easy. Each backend trains the same task with its own optimizer loop (torch.optim.AdamW,
optax.adamw under nnx.jit, keras.optimizers.AdamW under tf.function) and reports held-out accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np

from longformer import LongformerConfig

BOS, PAD, EOS, MARKER = 0, 1, 2, 3  # <s>, <pad>, </s>, the marker; every other id is a filler word
VOCAB = 32


@dataclass
class Task:
    length: int = 2048  # tokens per sequence, <s> and </s> included
    window: int = 64
    steps: int = 400
    warmup: int = 40  # steps per length of the curriculum: 16, 32, 64, ... up to `length`
    batch: int = 16
    lr: float = 3e-3
    clip: float = 1.0  # gradient norm clipping, as Hugging Face's Trainer does: no loss spikes as the length doubles
    eval_size: int = 256
    pad: bool = False  # pad every curriculum batch to `length` (masked): one shape, one compilation in JAX and TF
    seed: int = 0

    def config(self) -> LongformerConfig:
        return LongformerConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, attention_window=self.window,
                                max_position_embeddings=self.length + PAD + 1, type_vocab_size=1, num_labels=2,
                                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                bos_token_id=BOS, pad_token_id=PAD, eos_token_id=EOS)

    def length_at(self, step: int) -> int:
        """The curriculum: 128 tokens for `warmup` steps, then twice as many every `warmup` steps, up to `length`.
        At 2,048 tokens from the start, a marker is 1/2,048 of what <s> averages over, too little a signal for the
        attention to find in a few hundred steps; once it has learned to look for the marker in short sequences it
        carries over to long ones."""
        return min(self.length, 16 << (step // self.warmup)) if self.warmup else self.length

    def batch_of(self, rng: np.random.Generator, size: int, use_global: bool, length: int | None = None
                 ) -> dict[str, np.ndarray]:
        """`size` sequences of `length` tokens (default: the task's), half of them (at random) with one marker at a
        random position."""
        length = length or self.length
        ids = rng.integers(MARKER + 1, VOCAB, (size, length))
        ids[:, 0], ids[:, -1] = BOS, EOS
        labels = rng.integers(0, 2, size)
        rows = np.flatnonzero(labels)
        ids[rows, rng.integers(1, length - 1, len(rows))] = MARKER
        global_mask = np.zeros((size, length), np.int64)
        global_mask[:, 0] = int(use_global)  # explicit zeros: no global token at all (not the automatic <s>)
        batch = {"input_ids": ids, "attention_mask": np.ones_like(ids), "global_attention_mask": global_mask}
        if self.pad:  # padded tokens are masked and take the padding position: the real ones' outputs do not change
            fill = {"input_ids": PAD, "attention_mask": 0, "global_attention_mask": 0}
            batch = {k: np.pad(v, [(0, 0), (0, self.length - length)], constant_values=fill[k])
                     for k, v in batch.items()}
        return {**batch, "labels": labels}

    def training_batches(self, use_global: bool):
        """The `steps` training batches, at the curriculum's lengths, drawn from the task's seed."""
        rng = np.random.default_rng(self.seed)
        for step in range(self.steps):
            yield self.batch_of(rng, self.batch, use_global, self.length_at(step))

    def held_out(self, use_global: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """`eval_size` sequences of full length from another seed: the inputs, and the labels apart."""
        batch = self.batch_of(np.random.default_rng(self.seed + 1), self.eval_size, use_global)
        labels = batch.pop("labels")
        return batch, labels


def accuracy(logits, labels) -> float:
    return float((np.asarray(logits).argmax(-1) == labels).mean())


# ---------------------------------------------------------------------------------------------- one loop per backend
def train_pt(task: Task, use_global: bool) -> tuple[list[float], float]:
    import torch

    import longformer.pt as lpt

    torch.manual_seed(task.seed)
    model = lpt.LongformerForSequenceClassification(task.config()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=task.lr)
    losses = []
    for batch in task.training_batches(use_global):
        loss = model(**{k: torch.as_tensor(v) for k, v in batch.items()}).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), task.clip)
        optimizer.step()
        losses.append(float(loss.detach()))
    held_out, labels = task.held_out(use_global)
    model.eval()
    with torch.no_grad():
        logits = model(**{k: torch.as_tensor(v) for k, v in held_out.items()}).logits
    return losses, accuracy(logits.numpy(), labels)


def train_flax(task: Task, use_global: bool) -> tuple[list[float], float]:
    import jax.numpy as jnp
    import optax
    from flax import nnx

    import longformer.flax as lfx

    model = lfx.LongformerForSequenceClassification(task.config(), rngs=nnx.Rngs(task.seed))
    model.train()
    optimizer = nnx.Optimizer(model, optax.chain(optax.clip_by_global_norm(task.clip), optax.adamw(task.lr)),
                              wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, batch):
        loss, grads = nnx.value_and_grad(lambda m: m(**batch, num_global_slots=1).loss)(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer, {k: jnp.asarray(v) for k, v in batch.items()}))
              for batch in task.training_batches(use_global)]
    held_out, labels = task.held_out(use_global)
    model.eval()
    return losses, accuracy(model(**held_out).logits, labels)


def train_tf(task: Task, use_global: bool) -> tuple[list[float], float]:
    import keras
    import tensorflow as tf

    import longformer.tf as ltf

    keras.utils.set_random_seed(task.seed)
    model = ltf.LongformerForSequenceClassification(task.config())
    optimizer = keras.optimizers.AdamW(task.lr, global_clipnorm=task.clip)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = model(**batch, training=True, num_global_slots=1).loss
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables,
                                  strict=True))
        return loss

    losses = [float(step({k: tf.constant(v) for k, v in batch.items()})) for batch in task.training_batches(use_global)]
    held_out, labels = task.held_out(use_global)
    return losses, accuracy(model(**held_out).logits, labels)


TRAIN = {"pt": train_pt, "flax": train_flax, "tf": train_tf}


def run(task: Task, backend: str, use_global: bool) -> dict:
    start = time.perf_counter()
    losses, acc = TRAIN[backend](task, use_global)
    return {"backend": backend, "global": use_global, "accuracy": acc, "losses": losses,
            "seconds": time.perf_counter() - start}


def plot(task: Task, results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        smooth = np.convolve(r["losses"], np.ones(10) / 10, mode="valid")  # a 10-step moving average
        ax.plot(np.arange(len(smooth)) + 10, smooth, linestyle="-" if r["global"] else "--",
                label=f"{r['backend']}, {'<s> global' if r['global'] else 'no global'}: "
                      f"{100 * r['accuracy']:.0f}% held out")
    ax.axhline(np.log(2), color="grey", linewidth=0.8)
    for step in range(0, task.steps, task.warmup or task.steps):  # the curriculum's lengths along the top
        ax.axvline(step, color="grey", linewidth=0.4, linestyle=":")
        ax.text(step + 2, 1.02, str(task.length_at(step)), transform=ax.get_xaxis_transform(), fontsize=7)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (10-step mean)")
    ax.set_title(f"Is there a marker anywhere in {task.length:,} tokens? "
                 f"(window {task.window}; tokens per sequence above)", fontsize=10, pad=14)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default=None, help="comma-separated: pt, flax, tf (default: every installed one)")
    ap.add_argument("--length", type=int, default=Task.length)
    ap.add_argument("--steps", type=int, default=Task.steps)
    ap.add_argument("--plot", help="write the loss curves to this PNG (needs matplotlib)")
    ap.add_argument("--json", help="write the results (accuracy, losses, seconds) to this file")
    args = ap.parse_args()
    from longformer.backends import available_backends

    backends = args.backends.split(",") if args.backends else available_backends()
    task = Task(length=args.length, steps=args.steps)
    results = []
    for backend in backends:
        for use_global in (True, False):
            r = run(task, backend, use_global)
            results.append(r)
            print(f"{backend:5s} {'<s> global' if use_global else 'no global ':10s}  held-out accuracy "
                  f"{100 * r['accuracy']:5.1f}%  final loss {np.mean(r['losses'][-10:]):.3f}  "
                  f"{r['seconds']:.0f} s", flush=True)
    if args.plot:
        plot(task, results, args.plot)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"task": task.__dict__, "results": results}, f)
    learned = all(r["accuracy"] >= 0.95 for r in results if r["global"])
    chance = all(r["accuracy"] <= 0.65 for r in results if not r["global"])
    sys.exit(0 if learned and chance else 1)


if __name__ == "__main__":
    main()
