"""What the backend-parametrized tests need from a framework, one small adapter per backend (tests only).

Models are loaded from canonical checkpoints written with NumPy (`conftest.random_checkpoint`), so every backend
runs the very same weights; inputs are NumPy and outputs come back as NumPy."""

from __future__ import annotations

import contextlib

import numpy as np

from longformer.backends import available_backends, load_backend
from longformer.semantics import device_kind

BACKENDS = available_backends()
DTYPES = ("float32", "bfloat16", "float16")


def _loss(out, head: str, total=lambda x: x.sum()):
    """A scalar to differentiate: the head's loss, or for the base model a function of both its outputs."""
    if head == "LongformerModel":
        return total(out.last_hidden_state ** 2) + total(out.pooler_output)
    return out.loss


class PtAdapter:
    name = "pt"

    def __init__(self):
        import torch

        self.torch = torch
        self.module = load_backend("pt")
        # fp32 on a GPU is compared as fp32: no TensorFloat-32 matmuls or convolutions.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    def devices(self) -> list[str]:
        return ["cpu"] + (["gpu"] if self.torch.cuda.is_available() else [])

    def load(self, folder, head: str, dtype: str = "float32", device: str = "cpu"):
        return getattr(self.module, head).from_pretrained(folder, dtype=getattr(self.torch, dtype), device=device)

    def param_devices(self, model) -> set[str]:
        return {device_kind(p.device.type) for p in model.parameters()}

    def param_dtypes(self, model) -> set[str]:
        return {str(p.dtype).removeprefix("torch.") for p in model.parameters()}

    def dtype(self, name: str):
        return getattr(self.torch, name)

    def _tensors(self, model, inputs):
        return {k: self.torch.as_tensor(v).to(model.device) for k, v in inputs.items()}

    def call(self, model, inputs, *, train: bool = False, **kwargs):
        model.train(train)
        with self.torch.no_grad():
            return model(**self._tensors(model, inputs), **kwargs)

    def numpy(self, x) -> np.ndarray:
        return x.detach().double().cpu().numpy() if hasattr(x, "detach") else np.asarray(x, np.float64)

    def grads(self, model, inputs, head: str) -> tuple[float, dict[str, np.ndarray]]:
        model.train()
        model.zero_grad()
        loss = _loss(model(**self._tensors(model, inputs)), head)
        loss.backward()
        return float(loss.detach()), {n: p.grad.double().cpu().numpy() for n, p in model.named_parameters()
                                      if p.grad is not None}

    def rng_snapshot(self, model):
        """A function that puts the random state dropout draws from back to what it is now."""
        state = self.torch.get_rng_state()
        return lambda: self.torch.set_rng_state(state)

    def adamw_losses(self, folder, head: str, inputs, steps: int, mixed: bool) -> tuple[list[float], str]:
        """`steps` AdamW steps (lr 1e-3) from the checkpoint; `mixed`: torch.autocast bf16, float32 weights. Returns
        the losses and the dtype of the last logits."""
        torch = self.torch
        model = getattr(self.module, head).from_pretrained(folder).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        tensors, losses = self._tensors(model, inputs), []
        for _ in range(steps):
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
                out = model(**tensors)
                loss = _loss(out, head)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert all(p.dtype == torch.float32 for p in model.parameters())
        return losses, str(out.logits.dtype).removeprefix("torch.")

    def sgd_step(self, model, grads: dict[str, np.ndarray], lr: float) -> None:
        with self.torch.no_grad():
            for name, p in model.named_parameters():
                if name in grads:
                    p -= lr * self.torch.as_tensor(grads[name], dtype=p.dtype)


class FlaxAdapter:
    name = "flax"

    def __init__(self):
        import jax
        import jax.numpy as jnp
        from flax import nnx

        self.jax, self.jnp, self.nnx = jax, jnp, nnx
        self.module = load_backend("flax")
        jax.config.update("jax_default_matmul_precision", "highest")  # fp32 on a GPU: no TensorFloat-32

    def devices(self) -> list[str]:
        try:
            return ["cpu"] + (["gpu"] if self.jax.devices("gpu") else [])
        except RuntimeError:
            return ["cpu"]

    @contextlib.contextmanager
    def on(self, device: str):
        with self.jax.default_device(self.jax.devices(device)[0]):
            yield

    def load(self, folder, head: str, dtype: str = "float32", device: str = "cpu"):
        model = getattr(self.module, head).from_pretrained(folder, dtype=getattr(self.jnp, dtype), device=device)
        model.device_name = device
        return model

    def param_devices(self, model) -> set[str]:
        state = self.nnx.state(model, self.nnx.Param)
        return {device_kind(d.platform) for leaf in self.jax.tree.leaves(state) for d in leaf.devices()}

    def param_dtypes(self, model) -> set[str]:
        return {leaf.dtype.name for leaf in self.jax.tree.leaves(self.nnx.state(model, self.nnx.Param))}

    def dtype(self, name: str):
        return getattr(self.jnp, name)

    def call(self, model, inputs, *, train: bool = False, **kwargs):
        model.train() if train else model.eval()
        with self.on(getattr(model, "device_name", "cpu")):
            return model(**inputs, **kwargs)

    def numpy(self, x) -> np.ndarray:
        return np.asarray(x, np.float64)

    def grads(self, model, inputs, head: str) -> tuple[float, dict[str, np.ndarray]]:
        from longformer.flax.checkpoint import canonical_key

        model.train()
        loss, grads = self.nnx.value_and_grad(lambda m: _loss(m(**inputs), head))(model)
        return float(loss), {canonical_key(path)[0]: np.asarray(v.get_value(), np.float64)
                             for path, v in self.nnx.to_flat_state(grads)}

    def rng_snapshot(self, model):
        """A function that puts the random state dropout draws from back to what it is now."""
        state = self.jax.tree.map(lambda x: x, self.nnx.state(model, self.nnx.RngState))
        return lambda: self.nnx.update(model, state)

    def adamw_losses(self, folder, head: str, inputs, steps: int, mixed: bool) -> tuple[list[float], str]:
        """`steps` AdamW steps (optax, lr 1e-3); `mixed`: compute_dtype=bfloat16, float32 parameters."""
        import optax

        nnx = self.nnx
        model = getattr(self.module, head).from_pretrained(folder, compute_dtype=self.jnp.bfloat16 if mixed else None)
        model.train()
        optimizer, losses = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param), []
        for _ in range(steps):
            (loss, out), grads = nnx.value_and_grad(lambda m: (lambda o: (_loss(o, head), o))(m(**inputs)),
                                                    has_aux=True)(model)
            optimizer.update(model, grads)
            losses.append(float(loss))
        assert {p.dtype for p in self.jax.tree.leaves(nnx.state(model, nnx.Param))} == {self.jnp.dtype("float32")}
        return losses, str(out.logits.dtype)

    def sgd_step(self, model, grads: dict[str, np.ndarray], lr: float) -> None:
        from longformer.flax.checkpoint import canonical_key

        state = self.nnx.state(model, self.nnx.Param)
        for path, var in self.nnx.to_flat_state(state):
            g = grads[canonical_key(path)[0]]
            var.set_value(var.get_value() - self.jnp.asarray(lr * g, var.get_value().dtype))
        self.nnx.update(model, state)


class TfAdapter:
    name = "tf"

    def __init__(self):
        import tensorflow as tf

        self.tf = tf
        self.module = load_backend("tf")

    def devices(self) -> list[str]:
        return ["cpu"] + (["gpu"] if self.tf.config.list_physical_devices("GPU") else [])

    def load(self, folder, head: str, dtype: str = "float32", device: str = "cpu"):
        model = getattr(self.module, head).from_pretrained(folder, dtype=dtype, device=device)
        model.device_name = device
        return model

    def param_devices(self, model) -> set[str]:
        return {device_kind(v.value.device) for v in model.weights}

    def param_dtypes(self, model) -> set[str]:
        return {self.tf.as_dtype(v.dtype).name for v in model.weights}

    def dtype(self, name: str):
        return getattr(self.tf, name)

    def call(self, model, inputs, *, train: bool = False, **kwargs):
        with self.tf.device("/GPU:0" if getattr(model, "device_name", "cpu") == "gpu" else "/CPU:0"):
            return model(**inputs, training=train, **kwargs)

    def numpy(self, x) -> np.ndarray:
        return np.asarray(self.tf.cast(x, self.tf.float64) if hasattr(x, "dtype") and not isinstance(x, np.ndarray)
                          else x, np.float64)

    def grads(self, model, inputs, head: str) -> tuple[float, dict[str, np.ndarray]]:
        from longformer.tf.checkpoint import canonical_variables

        variables = {key: var for key, (var, _) in canonical_variables(model).items()}
        with self.tf.GradientTape() as tape:
            loss = _loss(model(**inputs, training=True), head, self.tf.reduce_sum)
        grads = tape.gradient(loss, list(variables.values()))
        return float(loss), {key: np.asarray(self.tf.convert_to_tensor(g), np.float64)
                             for key, g in zip(variables, grads, strict=True) if g is not None}

    def rng_snapshot(self, model):
        """A function that puts the random state dropout draws from (the seed generators' states, the model's
        non-trainable variables) back to what it is now."""
        state = [(v, v.numpy()) for v in model.non_trainable_variables]
        return lambda: [v.assign(value) for v, value in state]

    def adamw_losses(self, folder, head: str, inputs, steps: int, mixed: bool) -> tuple[list[float], str]:
        """`steps` AdamW steps (Keras, lr 1e-3); `mixed`: the mixed_bfloat16 policy, float32 variables."""
        import keras

        model = getattr(self.module, head).from_pretrained(folder, dtype="mixed_bfloat16" if mixed else None)
        optimizer, losses = keras.optimizers.AdamW(1e-3), []
        for _ in range(steps):
            with self.tf.GradientTape() as tape:
                out = model(**inputs, training=True)
                loss = _loss(out, head, self.tf.reduce_sum)
            optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables,
                                      strict=True))
            losses.append(float(loss))
        assert {v.dtype for v in model.trainable_variables} == {"float32"}
        return losses, out.logits.dtype.name

    def sgd_step(self, model, grads: dict[str, np.ndarray], lr: float) -> None:
        from longformer.tf.checkpoint import canonical_variables

        for key, (var, _) in canonical_variables(model).items():
            if key in grads:
                var.assign_sub(self.tf.cast(lr * grads[key], var.dtype))


class HfAdapter(PtAdapter):
    """Hugging Face transformers (PyTorch): the oracle, loaded and called like a backend (forward only)."""

    name = "hf"

    def __init__(self):
        import torch
        import transformers

        self.torch = torch
        self.module = transformers

    def load(self, folder, head: str, dtype: str = "float32", device: str = "cpu"):
        return getattr(self.module, head).from_pretrained(folder).eval()


def hf_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("torch", "transformers"))


ADAPTERS = {"pt": PtAdapter, "flax": FlaxAdapter, "tf": TfAdapter, "hf": HfAdapter}
_MADE: dict = {}


def adapter(name: str):
    if name not in _MADE:
        _MADE[name] = ADAPTERS[name]()
    return _MADE[name]
