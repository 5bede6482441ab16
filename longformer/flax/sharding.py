"""Scale-out on JAX's own sharding: a `jax.sharding.Mesh` with axes "data" (batch) and "model" (tensor parallel).

The parameters carry partition annotations (modeling.py): the query/key/value projections (local and global) and
the FFN's first matmul are split over their output features ("model": whole heads when the head count divides by
the axis size), the attention output and FFN output matmuls over their input features; embeddings, LayerNorms,
pooler and heads are replicated. Inputs are split over "data". XLA inserts the collectives; the results equal the
single-device ones. A mesh without a "model" axis (pure data parallelism) replicates every parameter.

    mesh = jax.make_mesh((2, 1), ("data", "model"))      # or (1, 2) for tensor parallelism
    shard_model(model, mesh)
    batch = jax.device_put(batch, batch_sharding(mesh))   # every array of the batch, split on its first axis
    out = model(**batch)
"""

from __future__ import annotations

import jax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec


def _spec_for(mesh: jax.sharding.Mesh, names) -> PartitionSpec:
    """A parameter's annotation, with axes the mesh does not have (or has with size 1) left unsplit."""
    return PartitionSpec(*(n if n in mesh.shape and mesh.shape[n] > 1 else None for n in names))


def param_shardings(model: nnx.Module, mesh: jax.sharding.Mesh):
    """A pytree like `nnx.state(model, nnx.Param)` of `NamedSharding`s from the parameters' annotations."""
    state = nnx.state(model, nnx.Param)
    specs = nnx.get_partition_spec(state)
    return jax.tree.map(lambda spec: NamedSharding(mesh, _spec_for(mesh, tuple(spec))), specs,
                        is_leaf=lambda x: isinstance(x, PartitionSpec))


def shard_model(model: nnx.Module, mesh: jax.sharding.Mesh) -> nnx.Module:
    """Place every parameter on `mesh` by its annotation (in place); returns the model."""
    state = nnx.state(model, nnx.Param)
    nnx.update(model, jax.device_put(state, param_shardings(model, mesh)))
    return model


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Split an input's first (batch) axis over the mesh's "data" axis; its other axes stay whole."""
    return NamedSharding(mesh, PartitionSpec("data" if "data" in mesh.shape else None))
