"""Write tests/data/hf4_tf/<head>/: a tiny `tf_model.h5` + `config.json` saved by Hugging Face transformers 4.x
TensorFlow (Keras 2 via tf-keras), plus `outputs.npz` with the inputs it ran and the outputs it gave (and, for the
MLM, the same weights sharded: `tf_model-0000k-of-0000N.h5` + `tf_model.h5.index.json`).

Needs an environment with the last TF-capable transformers (not this project's test oracle, which is 5.x):

    python3 -m venv /tmp/hf4 && /tmp/hf4/bin/pip install "transformers==4.57.6" "tensorflow-cpu==2.21.0" \
        "tf-keras==2.21.0" h5py && /tmp/hf4/bin/python scripts/make_hf4_tf_fixture.py

The tests then check that longformer.tf (and, through converters/, every backend) loads these files and
reproduces the outputs.
"""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # transformers 4.x TF models are Keras 2 (tf-keras)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import transformers  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "hf4_tf"
CONFIG = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
              max_position_embeddings=64, type_vocab_size=3, attention_window=[4, 8], layer_norm_eps=1e-5)


def inputs() -> dict[str, np.ndarray]:
    r = np.random.default_rng(0)
    ids = r.integers(5, 99, size=(2, 13))
    ids[:, 0] = 0
    ids[:, [3, 4, 12]] = 2  # <s> question </s></s> context </s>
    mask = np.ones_like(ids)
    mask[1, 9:] = 0
    ids[1, 9:] = 1
    ids[1, 8] = 2
    ids[1, 12] = 1
    glob = np.zeros_like(ids)
    glob[0, [0, 1, 2]] = 1
    glob[1, [0, 5]] = 1
    return {"input_ids": ids, "attention_mask": mask, "global_attention_mask": glob}


def main() -> None:
    tf.random.set_seed(0)
    for head, num_labels in (("LongformerForMaskedLM", 2), ("LongformerForQuestionAnswering", 2)):
        config = transformers.LongformerConfig(**CONFIG, num_labels=num_labels)
        model = getattr(transformers, "TF" + head)(config)
        batch = inputs()
        model(**{k: tf.constant(v) for k, v in batch.items()})  # build
        r = np.random.default_rng(1)
        for w in model.weights:  # every weight random (biases and LayerNorms too), as the parity tests do
            value = r.normal(size=w.shape) * 0.1 + (1.0 if "LayerNorm/gamma" in w.name or "layer_norm/gamma"
                                                     in w.name else 0.0)
            w.assign(value.astype(np.float32))
        out = model(**{k: tf.constant(v) for k, v in batch.items()}, output_hidden_states=True)
        folder = OUT / head
        model.save_pretrained(folder)
        arrays = {f"input.{k}": v for k, v in batch.items()}
        for field in ("logits", "start_logits", "end_logits"):
            if getattr(out, field, None) is not None:
                arrays[field] = out[field].numpy()
        for i, h in enumerate(out.hidden_states):
            arrays[f"hidden_states.{i}"] = h.numpy()[:, : batch["input_ids"].shape[1]]  # TF 4.x may keep padding
        np.savez(folder / "outputs.npz", **arrays)
        print(f"wrote {folder}: {sorted(os.listdir(folder))}")
        if head == "LongformerForMaskedLM":  # the same weights as a sharded tf_model.h5 + index
            sharded = OUT / (head + "-sharded")
            model.save_pretrained(sharded, max_shard_size="60KB")
            print(f"wrote {sharded}: {sorted(os.listdir(sharded))}")


if __name__ == "__main__":
    main()
