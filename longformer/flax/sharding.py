"""Scale-out on JAX's own sharding: a `jax.sharding.Mesh` with axes "data" (batch) and "model" (tensor parallel).

The parameters carry partition annotations (modeling.py): the query/key/value projections (local and global) and
the FFN's first matmul are split over their output features ("model": whole heads when the head count divides by
the axis size), the attention output and FFN output matmuls over their input features; embeddings, LayerNorms,
pooler and heads are replicated. Inputs are split over "data". XLA inserts the collectives; the results equal the
single-device ones. A mesh without a "model" axis (pure data parallelism) replicates every parameter.

    mesh = make_mesh(data=2, model=1)                     # or model=2 for tensor parallelism
    shard_model(model, mesh)
    batch = jax.device_put(batch, batch_sharding(mesh))   # every array of the batch, split on its first axis
    out = model(**batch)
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec


def make_mesh(data: int = 1, model: int = 1, devices=None) -> jax.sharding.Mesh:
    """A ("data", "model") mesh with automatic (GSPMD) axes: XLA propagates shardings through the model."""
    auto = jax.sharding.AxisType.Auto
    if devices is None:
        return jax.make_mesh((data, model), ("data", "model"), axis_types=(auto, auto))
    return jax.sharding.Mesh(np.asarray(devices).reshape(data, model), ("data", "model"), axis_types=(auto, auto))


def _spec_for(mesh: jax.sharding.Mesh, names, shape) -> PartitionSpec:
    """A parameter's annotation, leaving unsplit the axes the mesh lacks (or has with size 1) and the dimensions
    the axis size does not divide (a tiny test model's odd FFN width, say)."""
    size = dict(mesh.shape)
    return PartitionSpec(*(n if n in size and size[n] > 1 and dim % size[n] == 0 else None
                           for n, dim in zip(names, shape, strict=True)))


def param_shardings(model: nnx.Module, mesh: jax.sharding.Mesh):
    """A pytree like `nnx.state(model, nnx.Param)` of `NamedSharding`s from the parameters' annotations."""
    state = nnx.state(model, nnx.Param)
    specs = nnx.get_partition_spec(state)
    return jax.tree.map(lambda spec, value: NamedSharding(mesh, _spec_for(mesh, tuple(spec) or (None,) * value.ndim,
                                                                          value.shape)),
                        specs, state, is_leaf=lambda x: isinstance(x, PartitionSpec))


def shard_model(model: nnx.Module, mesh: jax.sharding.Mesh) -> nnx.Module:
    """Place every parameter on `mesh` by its annotation (in place); returns the model."""
    state = nnx.state(model, nnx.Param)
    nnx.update(model, jax.device_put(state, param_shardings(model, mesh)))
    return model


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Split an input's first (batch) axis over the mesh's "data" axis; its other axes stay whole."""
    return NamedSharding(mesh, PartitionSpec("data" if "data" in mesh.shape else None))
