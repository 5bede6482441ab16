"""What `--quantize int8` keeps: a longformer-base-shape checkpoint (random weights, or --checkpoint), converted with
`longformer convert --to onnx --quantize int8`, whose verification prints the largest logit difference and the
argmax agreement on the verification batch (2 rows x 64 tokens, then lengths 1 and 513).

    python benchmarks/onnx_int8.py                        # random longformer-base MLM + sequence classification
    python benchmarks/onnx_int8.py --checkpoint DIR       # a real checkpoint

Prints what the conversions print; the speed of int8 against fp32 is in benchmarks/bench.py (impl onnx-int8).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

HEADS = ("LongformerForMaskedLM", "LongformerForSequenceClassification")


def random_checkpoint(folder: str, head: str) -> None:
    import torch

    import longformer.pt as lpt
    from longformer import LongformerConfig

    torch.manual_seed(0)
    config = LongformerConfig(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                              intermediate_size=3072, max_position_embeddings=4098, attention_window=512,
                              type_vocab_size=1, num_labels=3)
    getattr(lpt, head)(config).save_pretrained(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="a Longformer checkpoint (default: random longformer-base weights)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sources = [args.checkpoint] if args.checkpoint else []
        if not sources:
            for head in HEADS:
                sources.append(os.path.join(tmp, head))
                random_checkpoint(sources[-1], head)
        for i, src in enumerate(sources):
            print(f"## {src if args.checkpoint else HEADS[i] + ' (random weights)'}", flush=True)
            cmd = [sys.executable, "-m", "longformer", "convert", src, os.path.join(tmp, f"int8-{i}"), "--to", "onnx",
                   "--quantize", "int8", "--quiet"]
            subprocess.run(cmd, check=False)


if __name__ == "__main__":
    main()
