"""Every backend loads every checkpoint format (one file and sharded, local and from a Hub cache) with the same
outputs, through longformer.auto. Runs in the `cross` env, where torch, JAX/Flax and TensorFlow are all installed."""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("flax")
pytest.importorskip("tensorflow")

from conftest import longformer_inputs, make_cache, random_checkpoint  # noqa: E402

import longformer  # noqa: E402
from converters.convert import convert  # noqa: E402
from converters.formats import FORMATS  # noqa: E402
from longformer.backends import load_backend  # noqa: E402
from longformer.reference import ReferenceModel  # noqa: E402

ATOL = 1e-5
BACKENDS = ("pt", "flax", "tf")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The same random MaskedLM in every format, one file and sharded; and what the NumPy reference says."""
    root = tmp_path_factory.mktemp("formats")
    src, config, state = random_checkpoint(root / "canonical", "LongformerForMaskedLM", attention_window=[4, 8])
    folders = {}
    for fmt in FORMATS:
        for shard in (None, 40_000):
            folders[fmt, shard is not None] = convert(src, root / f"{fmt}-{shard}", fmt, max_shard_size=shard).folder
    inputs = longformer_inputs()
    return folders, inputs, ReferenceModel(config, state)(**inputs)


def assert_matches_reference(out, want):
    for field in ("logits", "hidden_states", "attentions", "global_attentions"):
        got, exp = out[field], want[field]
        for i, (g, e) in enumerate(zip(got, exp, strict=True) if isinstance(exp, tuple) else [(got, exp)]):
            np.testing.assert_allclose(g, e, atol=ATOL, err_msg=f"{field}[{i}]")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("sharded", [False, True], ids=["one-file", "sharded"])
def test_each_backend_loads_each_format(checkpoints, backend, fmt, sharded):
    folders, inputs, want = checkpoints
    model = longformer.AutoModelForMaskedLM.from_pretrained(folders[fmt, sharded], backend=backend)
    out = load_backend(backend).forward_numpy(model, inputs, output_attentions=True, output_hidden_states=True)
    assert_matches_reference(out, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_loads_from_a_hub_cache_offline(tmp_path, checkpoints, backend, monkeypatch):
    """Hub id + revision + cache_dir + local_files_only; the best file present (safetensors over the others)."""
    folders, inputs, want = checkpoints
    mixed = tmp_path / "mixed"
    os.makedirs(mixed)
    for fmt in ("flax", "tf", "safetensors"):  # three formats in one repository
        for name in os.listdir(folders[fmt, False]):
            shutil.copy(os.path.join(folders[fmt, False], name), mixed / name)
    cache = make_cache(tmp_path, mixed, revision="v2")
    monkeypatch.setenv("LONGFORMER_BACKEND", backend)
    model = longformer.AutoModelForMaskedLM.from_pretrained("someorg/tiny-longformer", revision="v2", cache_dir=cache,
                                                           local_files_only=True)
    assert type(model).__module__.startswith(f"longformer.{backend}.")
    from longformer.hub import resolve_weights

    assert resolve_weights("someorg/tiny-longformer", revision="v2", cache_dir=cache,
                           local_files_only=True).endswith("model.safetensors")
    out = load_backend(backend).forward_numpy(model, inputs, output_attentions=True, output_hidden_states=True)
    assert_matches_reference(out, want)
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"), warnings.catch_warnings():
        longformer.AutoModel.from_pretrained("someorg/other", cache_dir=cache, local_files_only=True)
