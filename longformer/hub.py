"""Find checkpoint files in a local folder or on the Hugging Face Hub (through `huggingface_hub`'s cache).

Every `from_pretrained` goes through `resolve_file` / `resolve_weights`, so a Hub id (`org/name`), `revision=`,
`cache_dir=`, `local_files_only=` and `token=` work the same everywhere, and offline use reads the local cache.
"""

from __future__ import annotations

import os
import re
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
    "model.onnx",  # an ONNX export of ours (its initializers are the weights): last, any other format wins
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


class HubUnreachableError(ConnectionError):
    """The Hugging Face Hub could not be reached, and the local cache does not have what was asked for."""


def resolve_file(name_or_path: str | os.PathLike, filename: str, **hub_kwargs: Any) -> str:
    """Return a local path to `filename` inside a folder or a Hub repository; raise `FileNotFoundError` (or
    `HubUnreachableError` when the Hub cannot be reached and the cache does not hold it)."""
    return resolve_first(name_or_path, (filename,), **hub_kwargs)


def resolve_first(name_or_path: str | os.PathLike, filenames: tuple[str, ...], **hub_kwargs: Any) -> str:
    """The first of `filenames` (in order of preference) that a folder or Hub repository has, as a local path.

    Hub ids are offline-first: a file set the cache holds (for that revision) is used with no network at all;
    otherwise one request (no retries, `HF_HUB_ETAG_TIMEOUT` seconds, 10 by default) lists the repository's
    files, and only the file chosen is downloaded. With no network this fails within that timeout, saying what
    was looked for in the cache and how to work offline."""
    path = os.fspath(name_or_path)
    kwargs = _hub_kwargs(hub_kwargs)
    if os.path.isdir(path):
        for filename in filenames:
            if os.path.isfile(os.path.join(path, filename)):
                return os.path.join(path, filename)
        raise FileNotFoundError(f"{path} has no {' or '.join(filenames)}.")
    if not _looks_like_repo_id(path):
        raise FileNotFoundError(f"{path} is neither a folder nor a Hugging Face Hub id (org/name).")
    from huggingface_hub import hf_hub_download

    revision, cache_dir = kwargs.get("revision"), kwargs.get("cache_dir")
    if not kwargs.get("force_download"):
        cached = _from_cache(path, filenames, revision, cache_dir)
        if cached is not None:
            return cached
    if kwargs.get("local_files_only") or _offline():
        raise FileNotFoundError(
            f"{' or '.join(filenames)} of {path} is not in the local Hugging Face cache ({_cache_folder(cache_dir)})"
            " and the Hub is not asked (HF_HUB_OFFLINE=1 or local_files_only=True). Download it once with network "
            "access, or pass a local folder.")
    try:
        commit, present = repo_listing(path, revision, kwargs.get("token"))
    except HubUnreachableError as e:
        message = (f"Could not reach the Hugging Face Hub ({e}) to find {path}"
                   f"{'' if '/' in path else f' (no local folder {path} exists either)'}, and the local cache "
                   f"({_cache_folder(cache_dir)}) has no {' or '.join(filenames)} of it. To work offline, download "
                   "it once with network access (then set HF_HUB_OFFLINE=1 to skip the Hub), or pass a local folder.")
        if _has_snapshot(path, revision, cache_dir):  # a cached repo without this (optional?) file: not found
            raise FileNotFoundError(message) from e
        raise HubUnreachableError(message) from e
    chosen = next((f for f in filenames if f in present), None)
    _remember_absent(path, revision, commit, filenames[:filenames.index(chosen)] if chosen else filenames, cache_dir)
    if chosen is None:
        raise FileNotFoundError(f"The Hub repository {path} has no {' or '.join(filenames)}.")
    return hf_hub_download(path, chosen, **kwargs)


def _from_cache(repo: str, filenames: tuple[str, ...], revision: str | None, cache_dir) -> str | None:
    """The first of `filenames` the cache holds; `FileNotFoundError` when the cache records all of them absent
    from the repository (huggingface_hub's `.no_exist` markers); None when the Hub must be asked."""
    from huggingface_hub import _CACHED_NO_EXIST, try_to_load_from_cache

    found = [try_to_load_from_cache(repo, f, cache_dir=cache_dir, revision=revision) for f in filenames]
    cached = next((f for f in found if isinstance(f, str)), None)
    if cached is None and all(f is _CACHED_NO_EXIST for f in found):
        raise FileNotFoundError(f"The Hub repository {repo} has no {' or '.join(filenames)} (as the local cache "
                                f"{_cache_folder(cache_dir)} recorded when it was last asked).")
    return cached


def _remember_absent(repo: str, revision: str | None, commit: str | None, filenames, cache_dir) -> None:
    """Record files a listing showed absent as huggingface_hub does (`.no_exist/<commit>/<name>`, `refs/<revision>`
    naming the commit), so that the next process knows without the network. A read-only cache only costs that
    process one listing."""
    if not commit or not filenames:
        return
    folder = os.path.join(_cache_folder(cache_dir), "models--" + repo.replace("/", "--"))
    try:
        if (revision or "main") != commit:
            os.makedirs(os.path.join(folder, "refs"), exist_ok=True)
            with open(os.path.join(folder, "refs", revision or "main"), "w", encoding="utf-8") as f:
                f.write(commit)
        os.makedirs(os.path.join(folder, ".no_exist", commit), exist_ok=True)
        for filename in filenames:
            open(os.path.join(folder, ".no_exist", commit, filename), "a").close()
    except OSError:
        pass


def _has_snapshot(repo: str, revision: str | None, cache_dir) -> bool:
    """Whether the cache holds files of `repo` at `revision` (huggingface_hub's layout: refs/<revision> names the
    commit whose files are in snapshots/<commit>)."""
    folder = os.path.join(_cache_folder(cache_dir), "models--" + repo.replace("/", "--"))
    commit = revision or "main"
    ref = os.path.join(folder, "refs", commit)
    if os.path.isfile(ref):
        with open(ref, encoding="utf-8") as f:
            commit = f.read().strip()
    return os.path.isdir(os.path.join(folder, "snapshots", commit))


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", os.environ.get("TRANSFORMERS_OFFLINE", "")).upper() in (
        "1", "ON", "YES", "TRUE")


def _cache_folder(cache_dir) -> str:
    from huggingface_hub import constants

    return os.fspath(cache_dir or constants.HF_HUB_CACHE)


_LISTINGS: dict[tuple[str, str, str], tuple[str | None, frozenset[str]] | HubUnreachableError] = {}


def repo_listing(repo: str, revision: str | None, token: str | bool | None) -> tuple[str | None, frozenset[str]]:
    """The commit and file names of a Hub repository at `revision`: one request per process and repository, no
    retries."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers

    key = (repo, revision or "main", constants.ENDPOINT)
    if isinstance(_LISTINGS.get(key), HubUnreachableError):  # asked once already: do not wait again
        raise HubUnreachableError(*_LISTINGS[key].args)
    if key in _LISTINGS:
        return _LISTINGS[key]
    url = (f"{constants.ENDPOINT.rstrip('/')}/api/models/{repo}/revision/"
           f"{urllib.parse.quote(revision or 'main', safe='')}")
    request = urllib.request.Request(url, headers=build_hf_headers(token=token))
    timeout = float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or 10)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            info = json.load(response)
    except urllib.error.HTTPError as e:
        if e.code in (401, 403, 404):
            raise FileNotFoundError(f"No Hub repository {repo}{f' at revision {revision}' if revision else ''} "
                                    "(or it is private: pass token=, or log in with `hf auth login`).") from e
        _LISTINGS[key] = HubUnreachableError(_unreachable(f"HTTP {e.code}"))
        raise _LISTINGS[key] from e
    except (OSError, ValueError) as e:  # URLError, timeouts, refused connections, DNS failures, bad JSON
        _LISTINGS[key] = HubUnreachableError(_unreachable(getattr(e, "reason", e)))
        raise _LISTINGS[key] from e
    files = frozenset(s["rfilename"] for s in info.get("siblings", []) if "rfilename" in s)
    commit = info.get("sha")
    _LISTINGS[key] = (commit if isinstance(commit, str) and re.fullmatch("[0-9a-f]{40}", commit) else None), files
    return _LISTINGS[key]


def _unreachable(reason: object) -> str:
    from huggingface_hub import constants

    return f"{constants.ENDPOINT}: {reason}"


def resolve_weights(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> str:
    """Return the best weights file present (see `WEIGHTS_FILES`), as a local path.

    A sharded checkpoint returns its index; `resolve_checkpoint` also fetches the shards it names.
    """
    path = os.fspath(name_or_path)
    if os.path.isfile(path):
        return path
    try:
        return resolve_first(path, WEIGHTS_FILES, **hub_kwargs)
    except HubUnreachableError:
        raise
    except FileNotFoundError as e:
        raise FileNotFoundError(f"No Longformer weights found at {path}: looked for {', '.join(WEIGHTS_FILES)}. "
                                f"({e})") from e


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
