"""Find checkpoint files in a local folder or on the Hugging Face Hub (through `huggingface_hub`'s cache).

Every `from_pretrained` goes through `resolve_file` / `resolve_weights`, so a Hub id (`org/name`), `revision=`,
`cache_dir=`, `local_files_only=` and `token=` work the same everywhere, and offline use reads the local cache.
"""

from __future__ import annotations

import os
from typing import Any

# Weight files in order of preference: safetensors first (no pickle, memory-mapped).
WEIGHTS_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "tf_model.h5",
    "tf_model.h5.index.json",
    "flax_model.msgpack",
    "flax_model.msgpack.index.json",
)

_HUB_KEYS = ("revision", "cache_dir", "local_files_only", "token", "force_download")


def _hub_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = set(kwargs) - set(_HUB_KEYS)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}; hub options are {list(_HUB_KEYS)}")
    return {k: v for k, v in kwargs.items() if v is not None}


def _looks_like_repo_id(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not name.startswith((".", "~")) and "\\" not in name


def resolve_file(name_or_path: str | os.PathLike, filename: str, **hub_kwargs: Any) -> str:
    """Return a local path to `filename` inside a folder or a Hub repository; raise `FileNotFoundError`."""
    path = os.fspath(name_or_path)
    kwargs = _hub_kwargs(hub_kwargs)
    if os.path.isdir(path):
        candidate = os.path.join(path, filename)
        if not os.path.isfile(candidate):
            raise FileNotFoundError(f"{path} has no {filename}.")
        return candidate
    if not _looks_like_repo_id(path):
        raise FileNotFoundError(f"{path} is neither a folder nor a Hugging Face Hub id (org/name).")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return hf_hub_download(path, filename, **kwargs)
    except LocalEntryNotFoundError as e:  # (a subclass of EntryNotFoundError in some versions: test it first)
        raise FileNotFoundError(
            f"{filename} of {path} is not in the local Hugging Face cache and the Hub cannot be reached "
            "(offline, or local_files_only=True). Download it once with network access.") from e
    except EntryNotFoundError as e:
        raise FileNotFoundError(f"The Hub repository {path} has no {filename}.") from e
    except RepositoryNotFoundError as e:
        raise FileNotFoundError(f"No Hub repository {path} (or it is private: pass token=).") from e


def resolve_weights(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> str:
    """Return the best weights file present (see `WEIGHTS_FILES`), as a local path.

    A sharded checkpoint returns its index; `resolve_checkpoint` also fetches the shards it names.
    """
    path = os.fspath(name_or_path)
    if os.path.isfile(path):
        return path
    errors = []
    for filename in WEIGHTS_FILES:
        try:
            return resolve_file(path, filename, **hub_kwargs)
        except FileNotFoundError as e:
            errors.append(str(e))
    raise FileNotFoundError(f"No Longformer weights found at {path}: looked for {', '.join(WEIGHTS_FILES)}. "
                            f"({errors[-1]})")


def resolve_checkpoint(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> tuple[str, list[str] | None]:
    """The best weights file present and, when it is a shard index, the local paths of its shards."""
    weights = resolve_weights(name_or_path, **hub_kwargs)
    if not weights.endswith(".index.json"):
        return weights, None
    from converters.checkpoint import read_index

    shard_names = sorted(set(read_index(weights).values()))
    return weights, resolve_shards(weights, shard_names, name_or_path, **hub_kwargs)


def resolve_shards(index_path: str, shard_names: list[str], name_or_path: str | os.PathLike,
                   **hub_kwargs: Any) -> list[str]:
    """Local paths of the shards an index names (next to the index, from the Hub cache if needed)."""
    folder = os.path.dirname(index_path)
    out = []
    for name in shard_names:
        local = os.path.join(folder, name)
        if os.path.isfile(local):
            out.append(local)
        elif os.path.isdir(os.fspath(name_or_path)) or os.path.isfile(os.fspath(name_or_path)):
            raise FileNotFoundError(f"{index_path} names shard {name}, which is missing from {folder}.")
        else:
            out.append(resolve_file(name_or_path, name, **hub_kwargs))
    return out


def checkpoint_config(name_or_path: str | os.PathLike, config=None, **kwargs: Any):
    """The config a backend's `from_pretrained` builds its model with, and the Hub options it was given.

    `config` (copied) or the checkpoint's `config.json`; keyword arguments that are config fields (`num_labels=3`,
    `attention_window=...`) override it, Hub options (`revision`, `cache_dir`, ...) are returned; anything else is
    a TypeError. Returns (validated config, hub kwargs)."""
    from .config import LongformerConfig

    hub = {k: kwargs.pop(k) for k in list(kwargs) if k in _HUB_KEYS}
    if config is None:
        path = os.fspath(name_or_path)
        config = LongformerConfig.from_pretrained(os.path.dirname(path) if os.path.isfile(path) else path, **hub)
    else:
        config = config.copy()
    for key, value in kwargs.items():
        if key == "num_labels":
            config.num_labels = value
        elif hasattr(config, key):
            setattr(config, key, value)
        else:
            raise TypeError(f"from_pretrained got an unexpected keyword argument {key!r} (not a config field nor a "
                            f"Hub option {list(_HUB_KEYS)}).")
    config.validate()
    return config, hub
