"""longformer.pt data-parallel as users run it: 2 CPU processes (gloo), DistributedDataParallel without
find_unused_parameters and FSDP (`fully_shard` per layer and on the model), one process's batch with global tokens
and the other's without, then a step where no process has any (Hugging Face's Longformer fails there: its global
projections get no gradient). The averaged gradients equal one process's on the whole batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")

SCRIPT = r'''
import json, os, sys
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
sys.path.insert(0, sys.argv[1])
from conftest import tiny_kwargs
from longformer import LongformerConfig
from longformer.pt import LongformerForSequenceClassification

def model():
    torch.manual_seed(0)
    m = LongformerForSequenceClassification(LongformerConfig(**tiny_kwargs(hidden_dropout_prob=0.0,
                                                                            attention_probs_dropout_prob=0.0)))
    return m.train()

def batches():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 99, (2, 2, 13), generator=g)        # step, row, position
    glob = torch.zeros(2, 2, 13, dtype=torch.long)
    glob[0, 0, [0, 4]] = 1                                      # step 0: row 0 has global tokens, row 1 none
    return ids, glob, torch.tensor([[1, 2], [0, 1]])             # step 1: no global token anywhere

def grads(m):
    # FSDP's gradients are DTensors, each process holding a shard: full_tensor() gathers them.
    return {n: p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad.clone()
            for n, p in m.named_parameters()}

def parallel(m, mode):
    if mode == "ddp":
        return torch.nn.parallel.DistributedDataParallel(m)   # no find_unused_parameters
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (2,))
    for layer in m.longformer.encoder.layer:
        fully_shard(layer, mesh=mesh)
    return fully_shard(m, mesh=mesh)

def worker(rank, folder, mode):
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2)
    wrapped = parallel(model(), mode)
    inner = getattr(wrapped, "module", wrapped)
    ids, glob, labels = batches()
    out = []
    for step in range(2):
        wrapped.zero_grad()
        rows = slice(rank, rank + 1)
        wrapped(ids[step, rows], global_attention_mask=glob[step, rows], labels=labels[step, rows]).loss.backward()
        out.append({n: g.tolist() for n, g in grads(inner).items()})
    if rank == 0:
        with open(f"{folder}/parallel.json", "w") as f:
            json.dump(out, f)
    dist.destroy_process_group()

if __name__ == "__main__":
    folder, mode = sys.argv[2], sys.argv[3]
    mp.spawn(worker, args=(folder, mode), nprocs=2)
    m = model()
    ids, glob, labels = batches()
    single = []
    for step in range(2):
        m.zero_grad()
        m(ids[step], global_attention_mask=glob[step], labels=labels[step]).loss.backward()
        single.append({n: g.tolist() for n, g in grads(m).items()})
    with open(f"{folder}/single.json", "w") as f:
        json.dump(single, f)
'''


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_data_parallel_matches_one_process(tmp_path, mode):
    import numpy as np

    script = tmp_path / "parallel.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, str(script), os.path.dirname(__file__), str(tmp_path), mode],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    ddp, single = (json.loads((tmp_path / name).read_text()) for name in ("parallel.json", "single.json"))
    assert len(ddp) == len(single) == 2
    for step, (a, b) in enumerate(zip(ddp, single, strict=True)):
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-6, err_msg=f"step {step}: {name}")
        assert any(np.abs(a[n]).max() > 0 for n in a if "query_global" in n) or step == 1  # global path trained
