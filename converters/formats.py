"""Every Longformer checkpoint format, read and written tensor by tensor in the canonical form.

The canonical form is Hugging Face PyTorch's: state-dict names (`longformer.encoder.layer.0.attention.self.query.
weight`) and layouts (a Linear weight is (out, in)). Tensors travel as NumPy arrays; bfloat16 is `ml_dtypes.bfloat16`,
so no framework is needed except torch for `pytorch_model.bin` (a pickle) and h5py for `tf_model.h5`.

    format        one file              sharded (index + shards)
    safetensors   model.safetensors     model.safetensors.index.json + model-0000k-of-0000N.safetensors
    pt            pytorch_model.bin     pytorch_model.bin.index.json + pytorch_model-0000k-of-0000N.bin
    tf            tf_model.h5           tf_model.h5.index.json + tf_model-0000k-of-0000N.h5      (HF 4.x Keras 2)
    flax          flax_model.msgpack    flax_model.msgpack.index.json + flax_model-0000k-of-0000N.msgpack

`open_checkpoint` gives a `Source`: the names, shapes and dtypes of every tensor up front, then `read(key)` one at a
time (safetensors and h5 read just that tensor; a .bin or .msgpack shard is held while its tensors are read).
`write_checkpoint` writes a `Source`-like set of tensors in any format, shard by shard, tensor by tensor.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

from .checkpoint import (
    FLAX_WEIGHTS,
    ONNX_HEAD_METADATA,
    ONNX_WEIGHTS,
    PT_WEIGHTS,
    SAFE_WEIGHTS,
    TF_WEIGHTS,
    CheckpointError,
    is_plain_file_name,
    read_index,
)
from .names import BASE_PREFIX, from_format_leaf, guess_head, to_format_leaf

FORMATS = ("safetensors", "pt", "tf", "flax")
WEIGHTS = {"safetensors": SAFE_WEIGHTS, "pt": PT_WEIGHTS, "tf": TF_WEIGHTS, "flax": FLAX_WEIGHTS}
BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": BFLOAT16, "I64": np.int64,
                      "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
DTYPE_CODES = {np.dtype(v): k for k, v in SAFETENSORS_DTYPES.items()}
# The Keras-2 model name Hugging Face 4.x TF gives each class (the first component of every weight name).
TF_MODEL_NAMES = {"LongformerModel": "tf_longformer_model", "LongformerForMaskedLM": "tf_longformer_for_masked_lm",
                  "LongformerForSequenceClassification": "tf_longformer_for_sequence_classification",
                  "LongformerForMultipleChoice": "tf_longformer_for_multiple_choice",
                  "LongformerForTokenClassification": "tf_longformer_for_token_classification",
                  "LongformerForQuestionAnswering": "tf_longformer_for_question_answering"}
HDF5_ATTRIBUTE_LIMIT = 64512  # bytes; longer name lists are split over `name0`, `name1`, ... as Keras does


def nbytes(shape: tuple[int, ...], dtype) -> int:
    """Bytes of a tensor of this shape and dtype."""
    return math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize


def check_dtype(path: str, key: str, dtype: Any) -> np.dtype:
    """`dtype` as a NumPy dtype if it is one a checkpoint tensor may have (the numeric types safetensors knows:
    float 64/32/16, bfloat16, int 64/32/16/8, uint8, bool); anything else is a `CheckpointError` naming the tensor."""
    try:
        found = np.dtype(dtype)
    except TypeError:
        found = None
    if found is None or found not in DTYPE_CODES:
        raise CheckpointError(f"{path}: tensor {key} has dtype {dtype}, which is not a weight type "
                              f"(allowed: {', '.join(sorted(str(np.dtype(d)) for d in DTYPE_CODES))}).")
    return found


def weights_format(path: str) -> tuple[str, bool]:
    """(format, sharded?) of a weights file or shard index, from its name."""
    name = os.path.basename(path)
    sharded = name.endswith(".index.json")
    stem = name.removesuffix(".index.json")
    for fmt, ext in (("safetensors", ".safetensors"), ("pt", ".bin"), ("pt", ".pt"), ("pt", ".pth"), ("tf", ".h5"),
                     ("flax", ".msgpack"), ("onnx", ".onnx")):
        if stem.endswith(ext) and not (fmt == "onnx" and sharded):
            return fmt, sharded
    raise CheckpointError(f"{path}: unknown checkpoint format (expected .safetensors, .bin, .h5, .msgpack, .onnx or "
                          "a shard index *.index.json).")


def shard_name(fmt: str, k: int, n: int) -> str:
    stem, ext = os.path.splitext(WEIGHTS[fmt])
    return f"{'model' if fmt == 'safetensors' else stem}-{k:05d}-of-{n:05d}{ext}"


def is_weight_file(name: str) -> bool:
    """Whether a file name is one a checkpoint's weights use in some format: the single file, its shard index, or a
    shard (`shard_name`)."""
    if name in (ONNX_WEIGHTS, ONNX_WEIGHTS + ".data"):
        return True
    for fmt, single in WEIGHTS.items():
        if name in (single, single + ".index.json"):
            return True
        shard = re.escape(shard_name(fmt, 0, 0)).replace("00000", r"\d{5}")
        if re.fullmatch(shard, name):
            return True
    return False


# ---------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class Entry:
    """Where one canonical tensor lives: its shape, dtype and file, and `name`, where it is inside that file (the
    key of a .bin state dict, the dataset path of an h5 file, `offset:length` byte segments of safetensors and
    msgpack files). `transposed`: the file stores the transpose of the canonical layout."""

    shape: tuple[int, ...]
    dtype: np.dtype
    file: str
    name: str
    transposed: bool = False

    @property
    def nbytes(self) -> int:
        return nbytes(self.shape, self.dtype)


class Source:
    """An open checkpoint: `entries` (canonical key -> `Entry`) up front, then `read(key)` tensor by tensor.

    Read keys in `entries` order (grouped by file) to hold at most one .bin / .msgpack shard at a time."""

    def __init__(self, fmt: str, files: list[str], entries: dict[str, Entry]):
        self.format, self.files, self.entries = fmt, files, entries
        self._file: str | None = None
        self._handle: Any = None

    def read(self, key: str) -> np.ndarray:
        entry = self.entries[key]
        if self._file != entry.file:
            self.close()
            try:
                self._handle, self._file = _OPENERS[self.format](entry.file), entry.file
            except CheckpointError:
                raise
            except (OSError, RuntimeError, ValueError) as e:
                raise unreadable(entry.file, self.format, e) from e
        try:
            value = _READERS[self.format](self._handle, entry)
        except (OSError, RuntimeError, ValueError, KeyError, TypeError, SystemError) as e:  # SystemError: h5py
            raise unreadable(entry.file, self.format, f"tensor {key} cannot be read ({e})") from e
        stored = entry.shape[::-1] if entry.transposed else entry.shape
        if value.shape != stored:
            raise CheckpointError(f"{entry.file}: tensor {key} holds {value.shape}, its header says {entry.shape}.")
        return np.ascontiguousarray(value.T) if entry.transposed else value

    def read_all(self) -> dict[str, np.ndarray]:
        try:
            return {key: self.read(key) for key in self.entries}
        finally:
            self.close()

    def close(self) -> None:
        if hasattr(self._handle, "close"):
            self._handle.close()
        self._handle = self._file = None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_checkpoint(path: str, shard_paths: list[str] | None = None) -> Source:
    """Open a weights file or shard index (shards next to it unless `shard_paths` says where) for reading."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist.")
    fmt, sharded = weights_format(path)
    files = [path]
    if sharded:
        weight_map = read_index(path)
        names = sorted(set(weight_map.values()))
        files = shard_paths or [os.path.join(os.path.dirname(path), n) for n in names]
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise CheckpointError(f"{path} names shard(s) {[os.path.basename(f) for f in missing]}, which do not "
                                  "exist: the download or copy is incomplete.")
    entries: dict[str, Entry] = {}
    for file in files:
        for key, entry in _ENTRIES[fmt](file).items():
            entries.setdefault(key, entry)
    if not entries:
        raise CheckpointError(f"{path} holds no tensors.")
    # HF 4.x TF names the base model `longformer/` even in TFLongformerModel; canonical base keys have no prefix.
    strip = fmt == "tf" and guess_head(entries) == "LongformerModel"
    if strip:
        entries = {strip_base(k): e for k, e in entries.items()}
    if sharded:
        listed = set(weight_map)
        if fmt == "tf":
            listed = {strip_base(k) if strip else k for k in map(_tf_key, weight_map) if k is not None}
        elif fmt == "flax":
            listed = {_flax_key(k.split("/"), path)[0] for k in weight_map}
        lost = sorted(listed - set(entries))
        if lost:
            raise CheckpointError(f"{path} lists tensors that no shard holds: {lost[:10]}")
    return Source(fmt, files, entries)


def strip_base(key: str) -> str:
    return key[len(BASE_PREFIX):] if key.startswith(BASE_PREFIX) else key


# safetensors: an 8-byte little-endian header length, a JSON header, then the tensors' bytes back to back.
def unreadable(path: str, kind: str, why: object) -> CheckpointError:
    """The one error for a file that cannot be read: which file, what it should be, why, what to do."""
    size = os.path.getsize(path) if os.path.exists(path) else 0
    return CheckpointError(f"{path} ({size} bytes) is not a readable {kind} file: {why}. It is truncated or corrupt "
                           "(an interrupted download or copy?): fetch or convert it again.")


SAFETENSORS_HEADER_LIMIT = 100_000_000  # bytes; the format's own limit


def _safetensors_header(path: str) -> tuple[dict[str, Any], int]:
    """The JSON header (tensor entries only) and where the data buffer starts; checks the header's structure."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if n < 2 or 8 + n > size or n > SAFETENSORS_HEADER_LIMIT:
            raise unreadable(path, "safetensors", "its header length is invalid")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise unreadable(path, "safetensors", f"its header is not valid JSON ({e})") from e
    if not isinstance(header, dict):
        raise unreadable(path, "safetensors", "its header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise unreadable(path, "safetensors", "its __metadata__ is not a map of strings")
    return header, 8 + n


def _safetensors_entries(path: str) -> dict[str, Entry]:
    """Every tensor's entry, after the checks the format's specification asks for: each entry has a known dtype,
    a shape of non-negative integers and `data_offsets` [begin, end] whose length is shape x dtype; together
    the offsets cover the data buffer exactly: in range, ordered, contiguous, non-overlapping."""
    header, start = _safetensors_header(path)
    spans = []
    entries = {}
    for key, info in header.items():
        if not isinstance(info, dict):
            raise unreadable(path, "safetensors", f"the header entry of {key} is not an object")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                   for d in shape):
            raise unreadable(path, "safetensors", f"tensor {key} has no valid shape (a list of non-negative "
                             f"integers): {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise unreadable(path, "safetensors", f"tensor {key} has invalid data_offsets {offsets!r} (two "
                             "integers, 0 <= begin <= end)")
        if info.get("dtype") not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{path}: tensor {key} has unsupported dtype {info.get('dtype')!r}.")
        dtype = np.dtype(SAFETENSORS_DTYPES[info["dtype"]])
        begin, end = offsets
        if end - begin != nbytes(shape, dtype):
            raise unreadable(path, "safetensors", f"tensor {key} has {end - begin} bytes for shape {tuple(shape)} "
                             f"{info['dtype']}")
        spans.append((begin, end, key))
        entries[key] = Entry(tuple(shape), dtype, path, f"{start + begin}:{end - begin}")
    position = 0
    for begin, end, key in sorted(spans):
        if begin != position:
            why = "overlaps the tensor before it" if begin < position else "leaves a gap before it"
            raise unreadable(path, "safetensors", f"tensor {key}'s data_offsets [{begin}, {end}] {why}")
        position = end
    if start + position != os.path.getsize(path):
        raise unreadable(path, "safetensors", f"its header describes {start + position} bytes, the file has "
                         f"{os.path.getsize(path)}")
    return entries


# pytorch_model.bin: a pickled state dict, loaded with weights_only=True (and memory-mapped where torch can).
def _load_bin(path: str) -> dict[str, Any]:
    from .checkpoint import read_torch_bin

    return read_torch_bin(path, framework="pt", mmap=True)


def _bin_entries(path: str) -> dict[str, Entry]:
    return {k: Entry(tuple(v.shape), check_dtype(path, k, torch_to_numpy_dtype(v.dtype)), path, k)
            for k, v in _load_bin(path).items()}


def _read_bin(state, entry: Entry) -> np.ndarray:
    return torch_to_numpy(state[entry.name])


def torch_to_numpy_dtype(dtype) -> np.dtype | str:
    """The NumPy dtype of a torch dtype (bfloat16 as ml_dtypes'); the torch name where NumPy has none."""
    import torch

    if dtype == torch.bfloat16:
        return BFLOAT16
    try:
        return torch.empty((), dtype=dtype).numpy().dtype
    except (TypeError, RuntimeError):  # float8, complex32, quantized ... have no NumPy dtype
        return str(dtype)


def torch_to_numpy(t) -> np.ndarray:
    import torch

    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:  # NumPy has bfloat16 only through ml_dtypes: move the bits
        return t.view(torch.int16).numpy().view(BFLOAT16)
    return t.numpy()


def numpy_to_torch(a: np.ndarray):
    import torch

    a = np.ascontiguousarray(a)
    if not a.flags.writeable:  # torch tensors are always writable: give them their own copy
        a = a.copy()
    if a.dtype == BFLOAT16:
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(a))


# tf_model.h5: Hugging Face 4.x `save_weights` (Keras 2) layout, or one shard of it.
def _tf_key(name: str) -> str | None:
    """`tf_longformer_for_masked_lm/longformer/encoder/layer_._0/attention/self/query/kernel:0` (or, in a shard,
    the same without the model name) -> canonical key; None for names that are not Longformer weights."""
    parts = name.split(":")[0].replace("_._", "/").split("/")
    starts = [i for i, p in enumerate(parts) if p.startswith("tf_longformer")]
    parts = parts[starts[0] + 1:] if starts else parts
    leaves = from_format_leaf("tf")
    if len(parts) < 2 or parts[-1] not in leaves:
        return None
    leaf, _ = leaves[parts[-1]]
    return ".".join([*parts[:-1], leaf])


def _h5py():
    try:
        import h5py
    except ImportError as e:
        raise ImportError("tf_model.h5 files need h5py: pip install 'longformer[tf]' (or pip install h5py).") from e
    return h5py


def _h5_entries(path: str) -> dict[str, Entry]:
    """Index a tf_model.h5. Only plain datasets stored in the file itself are read: external links, soft links,
    external storage and virtual datasets (which pull bytes from other files) are refused, as are non-numeric
    dtypes and datasets that declare more data than the file holds (compression bombs, unwritten chunks)."""
    h5py = _h5py()
    leaves = from_format_leaf("tf")
    found: list[tuple[str, Any]] = []
    links: list[tuple[str, str]] = []

    def dataset(name, obj):
        if isinstance(obj, h5py.Dataset):
            if obj.is_virtual or obj.external:
                kind = "a virtual dataset" if obj.is_virtual else "stored in external files"
                raise CheckpointError(f"{path}: dataset {name} is {kind}: it reads bytes from outside this file, "
                                      "which a checkpoint may not do.")
            found.append((name, obj.shape, obj.dtype))

    try:
        with h5py.File(path, "r") as f:
            f.visititems_links(lambda name, link: links.append((name, type(link).__name__))
                               if not isinstance(link, h5py.HardLink) else None)
            if links:
                name, kind = links[0]
                raise CheckpointError(f"{path}: {name} is an HDF5 {kind}; a checkpoint holds its datasets itself "
                                      "(links are refused: they can point at other files).")
            f.visititems(dataset)
    except CheckpointError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, SystemError) as e:  # h5py on corrupt files
        raise unreadable(path, "HDF5 (tf_model.h5)", e) from e
    entries = {}
    for name, shape, dtype in found:
        key = _tf_key(name)
        if key is None or key in entries:  # the MLM head's group repeats the embeddings: read them once
            continue
        dtype = check_dtype(path, name, dtype)
        transposed = leaves[name.split(":")[0].rsplit("/", 1)[-1]][1] and len(shape) == 2
        entries[key] = Entry(tuple(shape)[::-1] if transposed else tuple(shape), dtype, path, name, transposed)
    declared = sum(nbytes(shape, dtype) for _, shape, dtype in found if dtype.kind in "biuf")
    if declared > os.path.getsize(path):
        raise unreadable(path, "HDF5 (tf_model.h5)", f"its datasets declare {declared} bytes but the file has "
                         f"{os.path.getsize(path)} (compressed or unwritten data is not a checkpoint)")
    return entries


def _read_h5(handle, entry: Entry) -> np.ndarray:
    return np.asarray(handle[entry.name][()])


# flax_model.msgpack: flax.serialization's msgpack of the nested parameter dict (arrays as ext type 1).
MSGPACK_NDARRAY, MSGPACK_CHUNK_BYTES = 1, 2**30  # arrays above this many bytes are stored in chunks, as Flax does


class _Blob(tuple):
    """(offset, length) of bytes in a msgpack file that the index parser skipped over."""


MSGPACK_MAX_DEPTH = 64  # a Longformer's parameter tree is 8 levels deep; deeper nesting is not a checkpoint


def _mp_value(f, depth: int = 0) -> Any:
    """Parse the next msgpack value of file `f`, skipping the bytes of bin and ext payloads: those come back as
    `_Blob(offset, length)` (an ext as `("ext", code, _Blob)`). Enough of msgpack for Flax checkpoints; maps and
    arrays nested deeper than `MSGPACK_MAX_DEPTH` are refused."""
    if depth > MSGPACK_MAX_DEPTH:
        raise ValueError(f"it nests maps or arrays deeper than {MSGPACK_MAX_DEPTH} levels")
    b = f.read(1)
    if not b:
        raise ValueError("the file ends early")
    t = b[0]

    def n(size, signed=False):
        raw = f.read(size)
        if len(raw) != size:
            raise ValueError("the file ends early")
        return int.from_bytes(raw, "big", signed=signed)

    def blob(length):
        offset = f.tell()
        if offset + length > os.fstat(f.fileno()).st_size:
            raise ValueError("the file ends early")
        f.seek(length, os.SEEK_CUR)
        return _Blob((offset, length))

    if t <= 0x7F:
        return t
    if t >= 0xE0:
        return t - 0x100
    if 0x80 <= t <= 0x8F or t in (0xDE, 0xDF):
        count = t & 0x0F if t <= 0x8F else n(2 if t == 0xDE else 4)
        out = {}
        for _ in range(count):
            key = _mp_value(f, depth + 1)
            out[key if isinstance(key, str) else str(key)] = _mp_value(f, depth + 1)
        return out
    if 0x90 <= t <= 0x9F or t in (0xDC, 0xDD):
        count = t & 0x0F if t <= 0x9F else n(2 if t == 0xDC else 4)
        return [_mp_value(f, depth + 1) for _ in range(count)]
    if 0xA0 <= t <= 0xBF or t in (0xD9, 0xDA, 0xDB):
        length = t & 0x1F if t <= 0xBF else n({0xD9: 1, 0xDA: 2, 0xDB: 4}[t])
        if f.tell() + length > os.fstat(f.fileno()).st_size:  # before reading: no allocation beyond the file
            raise ValueError("the file ends early")
        return f.read(length).decode()
    if t in (0xC4, 0xC5, 0xC6):  # bin
        return blob(n({0xC4: 1, 0xC5: 2, 0xC6: 4}[t]))
    if t in (0xC7, 0xC8, 0xC9) or 0xD4 <= t <= 0xD8:  # ext
        length = n({0xC7: 1, 0xC8: 2, 0xC9: 4}[t]) if t <= 0xC9 else 1 << (t - 0xD4)
        return ("ext", n(1, signed=True), blob(length))
    if t in (0xCC, 0xCD, 0xCE, 0xCF):
        return n(1 << (t - 0xCC))
    if t in (0xD0, 0xD1, 0xD2, 0xD3):
        return n(1 << (t - 0xD0), signed=True)
    if t in (0xC0, 0xC2, 0xC3):
        return {0xC0: None, 0xC2: False, 0xC3: True}[t]
    if t in (0xCA, 0xCB):
        size = 4 if t == 0xCA else 8
        raw = f.read(size)
        if len(raw) != size:
            raise ValueError("the file ends early")
        return struct.unpack(">f" if t == 0xCA else ">d", raw)[0]
    raise ValueError(f"unknown msgpack type byte 0x{t:02x}")


def _mp_array(f, ext, path: str, key: str) -> tuple[tuple[int, ...], np.dtype, _Blob]:
    """Flax's ext type 1 payload `(shape, dtype name, bytes)` -> shape, dtype and where the bytes are; the
    payload must be exactly that triple, and the bytes exactly shape x dtype."""
    if not (isinstance(ext, tuple) and ext[0] == "ext" and ext[1] == MSGPACK_NDARRAY):
        raise ValueError(f"{key}: expected an array (msgpack ext type {MSGPACK_NDARRAY}), found "
                         f"{type(ext).__name__}")
    offset, length = ext[2]
    f.seek(offset)
    payload = _mp_value(f, MSGPACK_MAX_DEPTH - 2)  # a list of ints, a string and bytes: two levels at most
    if f.tell() != offset + length or not (isinstance(payload, list) and len(payload) == 3):
        raise ValueError(f"{key}: the array payload is not (shape, dtype, bytes)")
    shape, dtype, data = payload
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                            for d in shape)):
        raise ValueError(f"{key}: the array shape {shape!r} is not a list of non-negative integers")
    if not isinstance(dtype, str) or not isinstance(data, _Blob):
        raise ValueError(f"{key}: the array payload is not (shape, dtype name, bytes)")
    try:
        dtype = BFLOAT16 if dtype == "bfloat16" else np.dtype(dtype)
    except TypeError:
        pass  # check_dtype names it
    dtype = check_dtype(path, key, dtype)
    if data[1] != nbytes(shape, dtype):
        raise ValueError(f"{key}: {data[1]} bytes for shape {tuple(shape)} {dtype}")
    return tuple(shape), dtype, data


def _msgpack_entries(path: str) -> dict[str, Entry]:
    """Index a flax_model.msgpack without reading its tensors: canonical key -> Entry whose `name` lists the
    (offset:length) segments of the tensor's bytes (one; several for a chunked array)."""
    entries = {}
    try:
        with open(path, "rb") as f:
            tree = _mp_value(f)
            if f.read(1):
                raise ValueError("extra data after the parameter tree")
            if not isinstance(tree, dict):
                raise CheckpointError(f"{path} holds a {type(tree).__name__}, not a Flax parameter tree.")

            def visit(node, parts):
                where = "/".join(parts)
                if isinstance(node, dict) and node.get("__msgpack_chunked_array__"):
                    shape = tuple(node["shape"][str(i)] for i in range(len(node["shape"])))
                    chunks = [_mp_array(f, node["chunks"][str(i)], path, where) for i in range(len(node["chunks"]))]
                    if not chunks or any(c[1] != chunks[0][1] for c in chunks):
                        raise ValueError(f"{where}: a chunked array needs chunks of one dtype")
                    dtype, segments = chunks[0][1], [c[2] for c in chunks]
                    if not all(isinstance(d, int) and d >= 0 for d in shape) or \
                            sum(c[2][1] for c in chunks) != nbytes(shape, dtype):
                        raise ValueError(f"{where}: its chunks do not hold shape {shape}")
                elif isinstance(node, dict):
                    for k, v in node.items():
                        visit(v, [*parts, k])
                    return
                else:
                    shape, dtype, data = _mp_array(f, node, path, where)
                    segments = [data]
                key, transposed = _flax_key(parts, path)
                transposed = transposed and len(shape) == 2
                name = ",".join(f"{o}:{n}" for o, n in segments)
                entries[key] = Entry(shape[::-1] if transposed else shape, dtype, path, name, transposed)

            visit(tree, [])
    except CheckpointError:
        raise
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise unreadable(path, "Flax msgpack", e) from e
    return entries


def _read_segments(handle, entry: Entry) -> np.ndarray:
    """A tensor from its (offset:length) byte segments (safetensors: one; msgpack: one, or a chunked array's)."""
    parts = []
    for segment in entry.name.split(","):
        offset, length = (int(x) for x in segment.split(":"))
        handle.seek(offset)
        part = np.fromfile(handle, dtype=entry.dtype, count=length // entry.dtype.itemsize)
        if part.nbytes != length:
            raise ValueError("the file ends early")
        parts.append(part)
    value = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return value.reshape(entry.shape[::-1] if entry.transposed else entry.shape)


def _flax_key(parts: list[str], path: str = "") -> tuple[str, bool]:
    leaves = from_format_leaf("flax")
    if not parts or parts[-1] not in leaves:
        raise CheckpointError(f"{path + ': ' if path else ''}{'/'.join(parts) or 'the top level'} is not a Longformer "
                              "parameter name (kernel, scale, embedding, bias).")
    leaf, transposed = leaves[parts[-1]]
    return ".".join([*parts[:-1], leaf]), transposed


# ---------------------------------------------------------------------------------------------- ONNX (read only)
# longformer.onnx writes model.onnx; it is read back here, so that an export is also a checkpoint.
def _onnx_proto(path: str):
    """(the onnx module, the file's ModelProto without external data): only files written by longformer."""
    from longformer._frameworks import require

    onnx = require("onnx")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise unreadable(path, "onnx", e) from e
    if ONNX_HEAD_METADATA not in {p.key for p in model.metadata_props}:
        raise CheckpointError(f"{path} is not an ONNX file written by longformer (no {ONNX_HEAD_METADATA} metadata): "
                              "its weights cannot be read back.")
    return onnx, model


def _load_onnx(path: str):
    """The model's initializers by name, with external data (which must lie beside the file, by plain name)."""
    onnx, model = _onnx_proto(path)
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            where = {e.key: e.value for e in tensor.external_data}.get("location", "")
            if not is_plain_file_name(where):
                raise CheckpointError(f"{path}: tensor {tensor.name} keeps its data in {where!r}, which is not a "
                                      "file beside the model: refused.")
    try:
        onnx.load_external_data_for_model(model, os.path.dirname(path))
    except Exception as e:
        raise unreadable(path, "onnx", f"its external data cannot be read ({e})") from e
    return {t.name: t for t in model.graph.initializer}


def _onnx_entries(path: str) -> dict[str, Entry]:
    onnx, model = _onnx_proto(path)
    leaves = from_format_leaf("onnx")
    entries = {}
    for tensor in model.graph.initializer:
        *parents, leaf = tensor.name.split(".")
        if leaf not in leaves:
            raise CheckpointError(f"{path}: initializer {tensor.name} is not a Longformer weight (a quantized "
                                  "model cannot be read back as a checkpoint).")
        canonical, transposed = leaves[leaf]
        dtype = check_dtype(path, tensor.name, onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
        shape = tuple(int(d) for d in tensor.dims)
        entries[".".join([*parents, canonical])] = Entry(shape[::-1] if transposed else shape, dtype, path,
                                                         tensor.name, transposed)
    return entries


def _read_onnx(initializers, entry: Entry) -> np.ndarray:
    from onnx import numpy_helper  # loaded by _load_onnx, which opened the file

    return numpy_helper.to_array(initializers[entry.name])


_ENTRIES: dict[str, Callable[[str], dict[str, Entry]]] = {
    "safetensors": _safetensors_entries, "pt": _bin_entries, "tf": _h5_entries, "flax": _msgpack_entries,
    "onnx": _onnx_entries}
_OPENERS: dict[str, Callable[[str], Any]] = {
    "safetensors": lambda p: open(p, "rb"), "pt": _load_bin, "tf": lambda p: _h5py().File(p, "r"),
    "flax": lambda p: open(p, "rb"), "onnx": _load_onnx}
_READERS: dict[str, Callable[[Any, Entry], np.ndarray]] = {
    "safetensors": _read_segments, "pt": _read_bin, "tf": _read_h5, "flax": _read_segments, "onnx": _read_onnx}


# ---------------------------------------------------------------------------------------------- writing
def plan_shards(sizes: dict[str, int], max_shard_size: int | None) -> list[list[str]]:
    """Split keys (in order) into shards of at most `max_shard_size` bytes (a larger tensor gets its own shard)."""
    shards: list[list[str]] = [[]]
    total = 0
    for key, size in sizes.items():
        if max_shard_size and shards[-1] and total + size > max_shard_size:
            shards.append([])
            total = 0
        shards[-1].append(key)
        total += size
    return shards


def write_checkpoint(folder: str, fmt: str, entries: dict[str, tuple[tuple[int, ...], np.dtype]],
                     read: Callable[[str], np.ndarray], *, head: str, max_shard_size: int | None = None,
                     progress: Callable[[int], None] | None = None) -> list[str]:
    """Write tensors (canonical key -> (shape, dtype), values from `read(key)`) into `folder` as `fmt`.

    One file, or shards of at most `max_shard_size` bytes plus an index; `progress(nbytes)` after each tensor.
    Returns the files written. The caller gives a fresh folder (see `converters.convert`, which renames it into
    place at the end)."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}; choose from {FORMATS}.")
    if fmt == "tf" and any(np.dtype(d) == BFLOAT16 for _, d in entries.values()):
        raise CheckpointError("tf_model.h5 cannot hold bfloat16 (HDF5 has no such type, and Hugging Face TF loads "
                              "fp32 or fp16): convert with --dtype fp32 or fp16.")
    sizes = {k: nbytes(s, d) for k, (s, d) in entries.items()}
    shards = plan_shards(sizes, max_shard_size)
    names = [WEIGHTS[fmt]] if len(shards) == 1 else [shard_name(fmt, i + 1, len(shards)) for i in range(len(shards))]
    writer = _WRITERS[fmt]
    weight_map: dict[str, str] = {}
    for name, keys in zip(names, shards, strict=True):
        weight_map.update(writer(os.path.join(folder, name), {k: entries[k] for k in keys}, read, head=head,
                                 sharded=len(shards) > 1, progress=progress))
    if len(shards) == 1:
        return names
    index = WEIGHTS[fmt] + ".index.json"
    with open(os.path.join(folder, index), "w", encoding="utf-8") as f:
        json.dump({"metadata": {"total_size": sum(sizes.values())}, "weight_map": weight_map}, f, indent=2,
                  sort_keys=True)
        f.write("\n")
    return [index, *names]


def _write_safetensors(path, entries, read, *, head, sharded, progress) -> dict[str, str]:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key, (shape, dtype) in entries.items():
        n = nbytes(shape, dtype)
        header[key] = {"dtype": DTYPE_CODES[np.dtype(dtype)], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # tensors start 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for key, (shape, dtype) in entries.items():
            value = _checked(read(key), key, shape, dtype)
            f.write(_raw(value))
            _report(progress, value)
    return dict.fromkeys(entries, os.path.basename(path))


def _write_bin(path, entries, read, *, head, sharded, progress) -> dict[str, str]:
    from longformer._frameworks import require

    torch = require("torch")
    state = {}
    for key, (shape, dtype) in entries.items():
        value = _checked(read(key), key, shape, dtype)
        state[key] = numpy_to_torch(value)
        _report(progress, value)
    torch.save(state, path)
    return dict.fromkeys(entries, os.path.basename(path))


def _tf_name(key: str, head: str) -> tuple[str, bool]:
    """Canonical key -> (HF 4.x TF weight name without the model name, transposed?)."""
    parts, transposed = to_format_leaf(key, "tf")
    if head == "LongformerModel":
        parts = ["longformer", *parts]
    name = re.sub(r"(^|/)layer/(\d+)/", r"\1layer_._\2/", "/".join(parts))  # encoder/layer_._3/...
    return name + ":0", transposed


def _write_h5(path, entries, read, *, head, sharded, progress) -> dict[str, str]:
    h5py = _h5py()
    model = TF_MODEL_NAMES[head]
    names = {key: _tf_name(key, head) for key in entries}
    with h5py.File(path, "w") as f:
        if sharded:  # a shard: datasets at the names without the model name, listed in `layer_names`
            for key, (name, transposed) in names.items():
                value = _checked(read(key), key, *entries[key])
                f.create_dataset(name, data=value.T if transposed else value)
                _report(progress, value)
            _h5_attribute(f, "layer_names", [n for n, _ in names.values()])
            return {f"{model}/{name}": os.path.basename(path) for name, _ in names.values()}
        # One file, as Keras 2 `save_weights`: a group per top-level layer, its weights under their full names.
        groups: dict[str, list[str]] = {}
        for key, (name, _) in names.items():
            groups.setdefault(name.split("/")[0], []).append(key)
        if head == "LongformerForMaskedLM":  # the LM head layer holds the input embeddings: Keras saves them twice
            groups["lm_head"] = [*groups.get("lm_head", []), *(k for k in groups["longformer"] if ".embeddings." in k)]
        f.attrs["backend"] = "tensorflow"
        f.attrs["keras_version"] = "2.21.0"
        _h5_attribute(f, "layer_names", list(groups))
        for group, keys in groups.items():
            g = f.create_group(group)
            _h5_attribute(g, "weight_names", [f"{model}/{names[k][0]}" for k in keys])
            for key in keys:
                value = _checked(read(key), key, *entries[key])
                g.create_dataset(f"{model}/{names[key][0]}", data=value.T if names[key][1] else value)
                _report(progress, value)
        _h5_attribute(f.create_group("top_level_model_weights"), "weight_names", [])
    return {}


def _h5_attribute(group, name: str, values: list[str]) -> None:
    """A list of names as an HDF5 attribute, split into `name0`, `name1`, ... when over the header limit."""
    data = np.asarray([v.encode() for v in values])
    chunks = 1
    while any(c.nbytes > HDF5_ATTRIBUTE_LIMIT for c in np.array_split(data, chunks)):
        chunks += 1
    if chunks == 1:
        group.attrs[name] = data
    else:
        for i, part in enumerate(np.array_split(data, chunks)):
            group.attrs[f"{name}{i}"] = part


def _write_msgpack(path, entries, read, *, head, sharded, progress) -> dict[str, str]:
    """Stream the nested parameter dict: map headers, then each array as Flax's ext type, one tensor in memory."""
    import msgpack

    tree: dict[str, Any] = {}
    for key in entries:
        parts, _ = to_format_leaf(key, "flax")
        node = tree
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = key
    packer = msgpack.Packer(use_bin_type=True)
    with open(path, "wb") as f:
        def emit(node):
            f.write(packer.pack_map_header(len(node)))
            for name, child in node.items():
                f.write(packer.pack(name))
                if isinstance(child, dict):
                    emit(child)
                    continue
                value = _checked(read(child), child, *entries[child])
                value = np.ascontiguousarray(value.T) if to_format_leaf(child, "flax")[1] else value
                if value.nbytes <= MSGPACK_CHUNK_BYTES:
                    _write_msgpack_array(f, value, packer)
                else:
                    f.write(packer.pack(_chunked_array(value)))
                _report(progress, value)

        emit(tree)
    return {"/".join(to_format_leaf(k, "flax")[0]): os.path.basename(path) for k in entries}


def _write_msgpack_array(f, value: np.ndarray, packer) -> None:
    """One array as Flax's ext type 1, `(shape, dtype name, bytes)`, written without copying its data: the ext32
    and bin32 headers are built here (msgpack readers accept these longer headers for any size)."""
    head = packer.pack_array_header(3) + packer.pack(list(value.shape)) + packer.pack(value.dtype.name)
    head += b"\xc6" + struct.pack(">I", value.nbytes)
    f.write(b"\xc9" + struct.pack(">I", len(head) + value.nbytes) + bytes([MSGPACK_NDARRAY]) + head)
    f.write(_raw(value))


def _chunked_array(value: np.ndarray) -> dict[str, Any]:
    """Arrays over `MSGPACK_CHUNK_BYTES` as Flax stores them: a dict of flat chunks (msgpack bins stop at 4 GiB)."""
    import msgpack

    def ext(a):
        payload = msgpack.packb((list(a.shape), a.dtype.name, a.tobytes()), use_bin_type=True)
        return msgpack.ExtType(MSGPACK_NDARRAY, payload)

    flat = value.reshape(-1)
    step = max(1, MSGPACK_CHUNK_BYTES // value.dtype.itemsize)
    chunks = [flat[i:i + step] for i in range(0, flat.size, step)]
    return {"__msgpack_chunked_array__": True, "shape": {str(i): s for i, s in enumerate(value.shape)},
            "chunks": {str(i): ext(c) for i, c in enumerate(chunks)}}


def _raw(value: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array, without a copy (bfloat16 included)."""
    return memoryview(np.ascontiguousarray(value).reshape(-1).view(np.uint8))


_WRITERS = {"safetensors": _write_safetensors, "pt": _write_bin, "tf": _write_h5, "flax": _write_msgpack}


def _checked(value: np.ndarray, key: str, shape, dtype) -> np.ndarray:
    if tuple(value.shape) != tuple(shape) or value.dtype != np.dtype(dtype):
        raise CheckpointError(f"tensor {key}: got {value.shape} {value.dtype}, expected {tuple(shape)} {dtype}.")
    return np.ascontiguousarray(value)


def _report(progress, value: np.ndarray) -> None:
    if progress is not None:
        progress(value.nbytes)
