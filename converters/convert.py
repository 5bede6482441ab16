"""Checkpoint conversion: any format to any format, and RoBERTa to Longformer, streaming and all-or-nothing.

Both read the source tensor by tensor (`converters.formats.Source`), write the result into a fresh temporary folder
beside the destination (`write_checkpoint`, shard by shard), add `config.json` and the tokenizer files, and only
then rename the folder into place. A failure at any point removes the temporary folder; an existing destination is
replaced only with `force=True`, and is left as it was if the conversion fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from longformer import semantics
from longformer._warn import warn
from longformer.config import LongformerConfig
from longformer.hub import checkpoint_config, resolve_checkpoint, resolve_file

from .checkpoint import CheckpointError
from .formats import (
    BFLOAT16,
    FORMATS,
    Source,
    is_weight_file,
    nbytes,
    open_checkpoint,
    write_checkpoint,
)
from .names import BASE_PREFIX, IGNORED, canonical_shapes, guess_head, legacy_rename, match_names

DTYPES = {"fp32": np.dtype(np.float32), "fp16": np.dtype(np.float16), "bf16": BFLOAT16}
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


@dataclass
class Conversion:
    """What a conversion wrote: the folder, its weight files, the model class, tensor count and bytes."""

    folder: str
    files: list[str]
    head: str
    config: LongformerConfig
    tensors: int
    nbytes: int
    carried: list[str] = field(default_factory=list)  # tensors no Longformer class uses, copied as they were


def total_bytes(entries: dict[str, tuple[tuple[int, ...], np.dtype]]) -> int:
    return sum(nbytes(shape, dtype) for shape, dtype in entries.values())


def parse_size(size: int | str | None) -> int | None:
    """`500MB`, `2GB`, `1GiB` or a number of bytes -> bytes (None stays None: no sharding)."""
    if size is None or isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", size, flags=re.IGNORECASE)
    if not m:
        raise ValueError(f"Cannot read shard size {size!r}; write e.g. 500MB, 2GB or 1GiB.")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").upper()])


def cast_dtype(stored: np.dtype, dtype: str | None) -> np.dtype:
    """The dtype `cast` gives a tensor stored as `stored`: `dtype` for floating tensors, else unchanged."""
    floating = np.issubdtype(stored, np.floating) or stored == BFLOAT16
    return DTYPES[dtype] if dtype is not None and floating else np.dtype(stored)


def cast(value: np.ndarray, dtype: str | None, key: str = "tensor") -> np.ndarray:
    """Round a floating tensor to `dtype` ("fp32", "fp16", "bf16"; nearest-even), through fp32 (exact from bf16 and
    fp16), refusing values fp16 cannot hold. Integer tensors and `dtype=None` pass unchanged."""
    target = cast_dtype(value.dtype, dtype)
    if value.dtype == target:
        return value
    with np.errstate(over="ignore"):  # fp16 overflow is reported below, by tensor name
        out = value.astype(np.float32, copy=False).astype(target)
    if target == np.float16 and not np.isfinite(out).all() and np.isfinite(value.astype(np.float32)).all():
        raise CheckpointError(f"{key} has values beyond fp16's range (|x| > 65504); use --dtype bf16 or fp32.")
    return out


# ---------------------------------------------------------------------------------------------- plan
def canonical_names(keys: Iterable[str], config: LongformerConfig,
                    rename: Callable[[str], str] = legacy_rename) -> dict[str, str]:
    """Output key -> source key: each key renamed by `rename`, buffers (position_ids) dropped, and aliases of
    other tensors dropped: the decoder bias (always lm_head.bias, which it becomes when that is missing) and,
    when the config ties them, the decoder weight."""
    names: dict[str, str] = {}
    for key in keys:
        new = rename(key)
        if not new.endswith(IGNORED):
            names.setdefault(new, key)
    bias = "lm_head.decoder.bias"
    if bias in names and "lm_head.bias" not in names:
        names["lm_head.bias"] = names[bias]
    names.pop(bias, None)
    if config.tie_word_embeddings:
        names.pop("lm_head.decoder.weight", None)
    return names


def plan(source: Source, config: LongformerConfig, where: str) -> tuple[str, dict[str, str], list[str]]:
    """The model class, output key -> source key (canonical names, aliases dropped), and tensors carried as-is.

    Raises `CheckpointError` when a tensor's shape does not fit the config or the encoder is incomplete (a
    foreign file)."""
    names = canonical_names(source.entries, config)
    head = guess_head(names)
    prefix = BASE_PREFIX if head != "LongformerModel" else ""
    report = match_names(canonical_shapes(config, head), {k: source.entries[v].shape for k, v in names.items()},
                         model_has_prefix=bool(prefix), source=where)
    if report.unexpected_keys:
        warn(f"{where}: tensors no {head} uses, copied unchanged: {report.unexpected_keys}")
    return head, names, report.unexpected_keys


def _write(dst: str, fmt: str, entries: dict[str, tuple[tuple[int, ...], np.dtype]], read: Callable[[str], Any], *,
           head: str, config: LongformerConfig, tokenizer_from: Callable[[str], str | None], force: bool,
           max_shard_size: int | str | None, progress: bool | None, sources: Iterable[str] = (),
           finish: Callable[[str], None] | None = None,
           writer: Callable[[str], list[str]] | None = None) -> list[str]:
    """Write weights, config and tokenizer files into a staging folder beside `dst`, then install them.

    A new `dst` appears in one rename. An existing one (`force=True`) keeps everything the conversion does not
    write: only its files, and stale weight files of other formats that would shadow them, are replaced, each by
    one rename. `sources` are the folders read from: `dst` may be none of them, nor inside one. `writer(folder)`,
    when given, writes the weights instead of `write_checkpoint` (the ONNX export) and returns its files."""
    from tqdm.auto import tqdm

    dst = os.path.abspath(dst)
    check_destination(dst, sources)
    if os.path.exists(dst) and not os.path.isdir(dst):
        raise FileExistsError(f"{dst} is a file; the destination must be a folder.")
    if os.path.exists(dst) and not force:
        raise FileExistsError(f"{dst} already exists; pass --force (force=True) to replace the checkpoint in it "
                              "(other files there are kept).")
    parent = os.path.dirname(dst)
    os.makedirs(parent, exist_ok=True)
    with _DestinationLock(dst):
        tmp = os.path.join(parent, f".{os.path.basename(dst)}.{os.getpid()}.partial")
        shutil.rmtree(tmp, ignore_errors=True)  # ours by the lock: a leftover of a killed run with a reused pid
        os.mkdir(tmp)  # mode from the umask, like any folder the user creates
        try:
            if writer is not None:
                files = writer(tmp)
            else:
                with tqdm(total=total_bytes(entries), unit="B", unit_scale=True, desc=f"writing {fmt}",
                          disable=None if progress is None else not progress, leave=False) as bar:
                    files = write_checkpoint(tmp, fmt, entries, read, head=head,
                                             max_shard_size=parse_size(max_shard_size), progress=bar.update)
            config.save_pretrained(tmp)
            for name in TOKENIZER_FILES:
                path = tokenizer_from(name)
                if path is not None:
                    shutil.copyfile(path, os.path.join(tmp, name))
            if finish is not None:
                finish(tmp)
            _install(tmp, dst, force)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return files


def check_destination(dst: str, sources: Iterable[str]) -> None:
    """Refuse a destination that is a source folder or lies inside one (`--force` would overwrite the source)."""
    real = os.path.realpath(dst)
    for source in sources:
        for folder in {os.path.abspath(source), os.path.realpath(source)}:
            if real == folder or real.startswith(folder.rstrip(os.sep) + os.sep):
                where = "the source folder" if real == folder else "inside the source folder"
                raise ValueError(f"The destination {dst} is {where} {folder}: write the conversion to another "
                                 "folder.")


class _DestinationLock:
    """`.DST.lock` beside DST, created exclusively and holding our process id, for the whole conversion: of two
    conversions to one destination exactly one runs, the other fails at once. A lock whose process is gone (a
    killed run) is removed, with its staging folder, and reported."""

    def __init__(self, dst: str):
        self.dst = dst
        self.path = os.path.join(os.path.dirname(dst), f".{os.path.basename(dst)}.lock")

    def __enter__(self) -> _DestinationLock:
        for attempt in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                owner = _lock_owner(self.path)
                if attempt == 0 and owner is not None and not _process_alive(owner):
                    self._clean_leftovers(owner)
                    continue
                raise FileExistsError(
                    f"Another conversion{f' (process {owner})' if owner else ''} is writing {self.dst} right now; "
                    f"wait for it to finish. If none is running, delete {self.path}.") from None
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise AssertionError("unreachable")

    def _clean_leftovers(self, owner: int) -> None:
        parent, name = os.path.split(self.dst)
        staging = os.path.join(parent, f".{name}.{owner}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        os.remove(self.path)
        warn(f"Removed the leftovers of an interrupted conversion to {self.dst} (process {owner}): {staging}. "
             f"Check {self.dst}: that conversion may have replaced only some of its files.")

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(FileNotFoundError):  # removed by hand meanwhile: nothing to release
            os.remove(self.path)


def _lock_owner(path: str) -> int | None:
    try:
        with open(path, encoding="utf-8") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _install(tmp: str, dst: str, force: bool) -> None:
    """Move the files of `tmp` into `dst`. A new `dst` is one rename (of two racing conversions exactly one
    succeeds). Into an existing `dst`, file by file (each rename is atomic: every file is always whole, old or
    new): weights first, then the index, config and tokenizer files; then stale weight files of other formats or
    shard counts, which would shadow or contradict the new ones, are removed and listed."""
    if not force or not os.path.exists(dst):
        try:
            os.rename(tmp, dst)  # fails if dst appeared meanwhile and is not empty
            return
        except OSError as e:
            if not os.path.isdir(dst):
                raise
            if not force:
                raise FileExistsError(f"{dst} was created by someone else during the conversion; nothing was "
                                      "written to it.") from e
    def rank(name: str) -> int:  # weights, then the index that names them, then the rest, config.json last
        if is_weight_file(name):
            return 1 if name.endswith(".index.json") else 0
        return 3 if name == "config.json" else 2

    new = sorted(os.listdir(tmp), key=lambda n: (rank(n), n))
    blocked = [n for n in new if os.path.isdir(os.path.join(dst, n)) and not os.path.islink(os.path.join(dst, n))]
    if blocked:
        raise FileExistsError(f"{dst} has folders named like the files the conversion writes: {blocked}.")
    stale = sorted(n for n in os.listdir(dst) if is_weight_file(n) and n not in new
                   and not os.path.isdir(os.path.join(dst, n)))
    for name in new:
        os.replace(os.path.join(tmp, name), os.path.join(dst, name))
    for name in stale:
        os.remove(os.path.join(dst, name))
    if stale:
        warn(f"Removed weight files of the previous checkpoint in {dst} that would shadow or contradict "
                      f"the new one: {stale}")


def _source_folders(src: str, weights: str) -> list[str]:
    """The folders a conversion reads: the one given (when local) and the one holding the weights (a Hub cache
    snapshot for a Hub id)."""
    folders = [os.path.dirname(weights)]
    if os.path.exists(src):
        folders.append(src if os.path.isdir(src) else os.path.dirname(os.path.abspath(src)))
    return folders


def _tokenizer_source(src: str, hub: dict[str, Any]) -> Callable[[str], str | None]:
    def find(name: str) -> str | None:
        folder = os.path.dirname(src) if os.path.isfile(src) else src
        try:
            return resolve_file(folder, name, **hub)
        except FileNotFoundError:
            return None

    return find


# ---------------------------------------------------------------------------------------------- convert
TARGETS = (*FORMATS, "onnx")  # every format `convert` writes; ONNX is a model, not only weights


def convert(src: str | os.PathLike, dst: str | os.PathLike, to: str = "safetensors", *, dtype: str | None = None,
            max_shard_size: int | str | None = None, force: bool = False, progress: bool | None = None,
            head: str | None = None, opset: int | None = None, quantize: str | None = None,
            **hub_kwargs: Any) -> Conversion:
    """Convert a Longformer checkpoint (folder, weights file or Hub id) to `to` in the folder `dst`.

    Args:
        to: "safetensors", "pt" (pytorch_model.bin), "tf" (HF 4.x tf_model.h5), "flax" (flax_model.msgpack) or
            "onnx" (model.onnx, see `longformer.onnx`).
        dtype: "fp32", "fp16" or "bf16" to round floating tensors (nearest-even); None keeps them. An ONNX export
            computes in its dtype: fp32 (the default) or fp16.
        max_shard_size: bytes or "500MB"; larger checkpoints are written as shards plus an index (not ONNX).
        force: replace an existing `dst`.
        progress: show a progress bar (None: when writing to a terminal).
        head: ONNX only: the model class to export (default: the checkpoint's own).
        opset: ONNX only: the opset (default `longformer.onnx.graph.OPSET`).
        quantize: ONNX only: "int8" for onnxruntime's dynamic quantization of the linear layers.
        hub_kwargs: revision=, cache_dir=, local_files_only=, token= for Hub ids.
    """
    if to not in TARGETS:
        raise ValueError(f"Unknown target format {to!r}; choose from {list(TARGETS)}.")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}; choose from {list(DTYPES)}.")
    onnx_options = {"--head": head, "--opset": opset, "--quantize": quantize}
    if to != "onnx" and any(v is not None for v in onnx_options.values()):
        given = [k for k, v in onnx_options.items() if v is not None]
        raise ValueError(f"{', '.join(given)} only apply to --to onnx.")
    if to == "onnx":
        if dtype == "bf16":
            raise ValueError("An ONNX export computes in fp32 or fp16 (onnxruntime has no bf16 CPU kernels); "
                             "use --dtype fp16 or leave it out.")
        if max_shard_size is not None:
            raise ValueError("An ONNX export is not sharded: model.onnx keeps weights above 2 GB in model.onnx.data "
                             "by itself. Leave out --max-shard-size.")
        if quantize not in (None, "int8"):
            raise ValueError(f"Unknown quantization {quantize!r}; the choice is int8.")
    src, dst = os.fspath(src), os.fspath(dst)
    config, hub = checkpoint_config(src, None, **hub_kwargs)
    weights, shards = resolve_checkpoint(src, **hub)
    with open_checkpoint(weights, shards) as source:
        found, names, carried = plan(source, config, weights)
        entries = {k: (source.entries[v].shape, cast_dtype(source.entries[v].dtype, dtype)) for k, v in names.items()}
        config = config.copy()
        writer = None
        if to == "onnx":
            target = head or found
            _check_head_weights(target, found, {k: source.entries[v].shape for k, v in names.items()}, config,
                                weights)
            config.extra["architectures"] = [target]
            writer = _onnx_writer(config, target, source, names, dtype or "fp32", opset, quantize)
            found = target
        else:
            config.extra["architectures"] = [found]
        if dtype is not None:
            config.extra["torch_dtype"] = semantics.DTYPE_SHORT_NAMES[dtype]
        files = _write(dst, to, entries, lambda k: cast(source.read(names[k]), dtype, k), head=found, config=config,
                       tokenizer_from=_tokenizer_source(src, hub), force=force, max_shard_size=max_shard_size,
                       progress=progress, sources=_source_folders(src, weights), writer=writer)
    return Conversion(os.path.abspath(dst), files, found, config, len(entries), total_bytes(entries), carried)


def _check_head_weights(target: str, found: str, shapes: dict[str, tuple[int, ...]], config: LongformerConfig,
                        where: str) -> None:
    """An ONNX export of `target` needs every tensor of that head (no newly initialised weights in a file
    meant for deployment)."""
    report = match_names(canonical_shapes(config, target), shapes, model_has_prefix=target != "LongformerModel",
                         source=where)
    missing = [k for k in report.missing_keys if not (target == "LongformerModel" and k.startswith("pooler."))]
    if missing:
        raise CheckpointError(f"{where} is a {found} checkpoint; it lacks {missing[:5]} of {target}, so an export "
                              f"of {target} would hold untrained weights. Export its own head (leave out --head) "
                              "or fine-tune that head first.")


def _onnx_writer(config: LongformerConfig, head: str, source: Source, names: dict[str, str], dtype: str,
                 opset: int | None, quantize: str | None) -> Callable[[str], list[str]]:
    def write(folder: str) -> list[str]:
        from longformer.onnx import export
        from longformer.onnx import quantize as quantize_int8
        from longformer.onnx.graph import OPSET

        state = {k: cast(source.read(v), "fp32", k) for k, v in names.items()}
        files = export(config, head, state, folder, dtype=semantics.DTYPE_SHORT_NAMES[dtype], opset=opset or OPSET)
        if quantize == "int8":
            quantize_int8(folder)
            files = [f for f in files if os.path.exists(os.path.join(folder, f))]
        return files

    return write


# ---------------------------------------------------------------------------------------------- RoBERTa
ROBERTA_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "type_vocab_size",
                  "initializer_range", "layer_norm_eps", "pad_token_id", "bos_token_id", "eos_token_id",
                  "id2label", "label2id", "problem_type", "classifier_dropout")


def longformer_config_from_roberta(roberta: dict[str, Any], max_positions: int,
                                   attention_window: int | list[int]) -> LongformerConfig:
    """A Longformer config with RoBERTa's sizes, `max_positions` tokens and the given window(s)."""
    if roberta.get("model_type") not in ("roberta", None):
        raise ValueError(f"This is a {roberta.get('model_type')!r} config, not a RoBERTa one.")
    fields = {k: roberta[k] for k in ROBERTA_FIELDS if roberta.get(k) is not None}
    pad = fields.get("pad_token_id", 1)
    architectures = [a.replace("Roberta", "Longformer") for a in roberta.get("architectures") or []]
    config = LongformerConfig(**fields, max_position_embeddings=max_positions + pad + 1,
                              attention_window=attention_window, architectures=architectures)
    return config


def _roberta_to_longformer_name(key: str) -> str:
    return legacy_rename(BASE_PREFIX + key[len("roberta."):] if key.startswith("roberta.") else key)


def from_roberta(src: str | os.PathLike, dst: str | os.PathLike, *, max_positions: int = 4096,
                 attention_window: int | list[int] = 512, to: str = "safetensors", dtype: str | None = None,
                 max_shard_size: int | str | None = None, force: bool = False, progress: bool | None = None,
                 **hub_kwargs: Any) -> Conversion:
    """Turn a Hugging Face RoBERTa checkpoint into a Longformer one, as the Longformer paper did.

    The position table grows to `max_positions + 2` rows by tiling RoBERTa's learned positions (the first two rows,
    the padding offset, are kept); `query_global` / `key_global` / `value_global` start as copies of the local
    projections; every layer gets `attention_window` (an int, or one per layer). Everything else is copied.
    For inputs shorter than half the window the result computes exactly what RoBERTa computes."""
    src, dst = os.fspath(src), os.fspath(dst)
    hub = {k: v for k, v in hub_kwargs.items() if v is not None}
    folder = os.path.dirname(src) if os.path.isfile(src) else src
    with open(resolve_file(folder, "config.json", **hub), encoding="utf-8") as f:
        roberta = json.load(f)
    config = longformer_config_from_roberta(roberta, max_positions, attention_window)
    weights, shards = resolve_checkpoint(src, **hub)
    with open_checkpoint(weights, shards) as source:
        names = canonical_names(source.entries, config, rename=_roberta_to_longformer_name)
        prefix = BASE_PREFIX if any(k.startswith(BASE_PREFIX) for k in names) else ""
        for i in range(config.num_hidden_layers):
            for proj in ("query", "key", "value"):
                for leaf in ("weight", "bias"):
                    local = f"{prefix}encoder.layer.{i}.attention.self.{proj}.{leaf}"
                    if local not in names:
                        raise CheckpointError(f"{weights} has no {local}: not a RoBERTa checkpoint of this config.")
                    names[f"{prefix}encoder.layer.{i}.attention.self.{proj}_global.{leaf}"] = names[local]
        positions = f"{prefix}embeddings.position_embeddings.weight"
        if positions not in names:
            raise CheckpointError(f"{weights} has no {positions}: not a RoBERTa checkpoint.")
        head = guess_head(names)
        old_rows, hidden = source.entries[names[positions]].shape
        offset = config.pad_token_id + 1
        if old_rows <= offset:
            raise CheckpointError(f"{weights}: {positions} has {old_rows} rows; RoBERTa's have 514.")

        def read(key: str) -> np.ndarray:
            value = source.read(names[key])
            if key == positions:  # tile the learned rows (after the padding offset) over the longer table
                grown = np.empty((config.max_position_embeddings, hidden), value.dtype)
                grown[:offset] = value[:offset]
                learned = value[offset:]
                for start in range(offset, config.max_position_embeddings, len(learned)):
                    stop = min(start + len(learned), config.max_position_embeddings)
                    grown[start:stop] = learned[: stop - start]
                value = grown
            return cast(value, dtype, key)

        shapes = {k: source.entries[v].shape for k, v in names.items()}
        shapes[positions] = (config.max_position_embeddings, hidden)
        match_names(canonical_shapes(config, head), shapes, model_has_prefix=bool(prefix), source=weights)
        entries = {k: (s, cast_dtype(source.entries[names[k]].dtype, dtype)) for k, s in shapes.items()}
        config.extra["architectures"] = [head]

        files = _write(dst, to, entries, read, head=head, config=config, tokenizer_from=_tokenizer_source(src, hub),
                       force=force, max_shard_size=max_shard_size, progress=progress,
                       sources=_source_folders(src, weights),
                       finish=lambda folder: _set_model_max_length(folder, max_positions))
    return Conversion(os.path.abspath(dst), files, head, config, len(entries), total_bytes(entries))


def _set_model_max_length(folder: str, max_positions: int) -> None:
    path = os.path.join(folder, "tokenizer_config.json")
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data["model_max_length"] = max_positions
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(path + ".tmp", path)
