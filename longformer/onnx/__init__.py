"""Longformer in ONNX: `export` writes one `model.onnx` that is right at every length and global pattern
(`graph.py`), `LongformerOnnxModel` runs such a folder in onnxruntime with the same inputs and output classes as
the other backends.

Needs the `onnx` extra (`pip install 'longformer[onnx]'`): onnx to build, onnxruntime to run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from converters.checkpoint import ONNX_WEIGHTS

from .. import inputs as pipeline
from .. import semantics
from .._frameworks import require
from ..config import LongformerConfig
from ..outputs import OUTPUT_CLASSES
from .graph import HEAD_METADATA, HEADS, OPSET, build_model, input_names

EXTERNAL_DATA = ONNX_WEIGHTS + ".data"
PROTOBUF_LIMIT = 2**31 - 2**24  # bytes a single protobuf may hold, less room for the graph itself


def export(config: LongformerConfig, head: str, state: Mapping[str, np.ndarray], folder: str | os.PathLike, *,
           dtype: str = "float32", opset: int = OPSET, external_data_above: int = PROTOBUF_LIMIT) -> list[str]:
    """Write `folder/model.onnx` for `head` from canonical weights; weights go to `model.onnx.data` beside it when
    they exceed `external_data_above` bytes (protobuf's 2 GB limit). Returns the file names written."""
    onnx = require("onnx")
    model = build_model(config, head, state, dtype=dtype, opset=opset)
    path = os.path.join(os.fspath(folder), ONNX_WEIGHTS)
    size = sum(t.ByteSize() for t in model.graph.initializer)
    if size > external_data_above:
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=EXTERNAL_DATA, size_threshold=0)
        return [ONNX_WEIGHTS, EXTERNAL_DATA]
    onnx.save_model(model, path)
    return [ONNX_WEIGHTS]


def quantize(folder: str | os.PathLike) -> None:
    """Replace `folder/model.onnx` by its int8 dynamic quantization (weights of the linear layers in int8,
    activations quantized on the fly; onnxruntime.quantization)."""
    require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = os.path.join(os.fspath(folder), ONNX_WEIGHTS)
    tmp = path + ".int8"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process (shape inference for CNNs) does not apply here
    try:
        quantize_dynamic(path, tmp, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         extra_options={"MatMulConstBOnly": True, "EnableSubgraph": True})
    finally:
        root.setLevel(level)
    os.replace(tmp, path)
    data = os.path.join(os.fspath(folder), EXTERNAL_DATA)
    if os.path.exists(data):  # the quantized weights fit in the file itself
        os.remove(data)


class LongformerOnnxModel:
    """An exported Longformer folder (`model.onnx` + `config.json`) run in onnxruntime.

    Takes NumPy (or anything `np.asarray` reads) inputs named as in every backend and returns the head's output
    dataclass (`last_hidden_state`/`pooler_output`, `logits`, or `start_logits`/`end_logits`). The input rules are
    the shared ones (`longformer.semantics`): checked values, the automatic global tokens of sequence
    classification, question answering and multiple choice when `global_attention_mask` is not given.
    """

    def __init__(self, session, config: LongformerConfig, head: str, path: str = ""):
        self.session, self.config, self.head, self.path = session, config, head, path
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, providers: list[str] | None = None,
                        session_options: Any = None, threads: int | None = None, **hub_kwargs: Any):
        """Open `model.onnx` of a folder (or the file itself, or a Hub id) with its `config.json`."""
        ort = require("onnxruntime")
        from ..hub import checkpoint_config, resolve_file

        path = os.fspath(name_or_path)
        folder = os.path.dirname(path) if os.path.isfile(path) else path
        config, hub = checkpoint_config(folder, None, **hub_kwargs)
        model_path = path if os.path.isfile(path) else resolve_file(folder, ONNX_WEIGHTS, **hub)
        options = session_options or ort.SessionOptions()
        if session_options is None:
            options.log_severity_level = 4  # a failure is raised below, with the file's name, not logged
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(model_path, options, providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ValueError(f"{model_path} cannot be opened by onnxruntime: {e}") from e
        head = session.get_modelmeta().custom_metadata_map.get(HEAD_METADATA)
        if head not in HEADS:
            raise ValueError(f"{model_path} is not a longformer export (no {HEAD_METADATA} in its metadata); "
                             "write one with `longformer convert SRC DST --to onnx`.")
        return cls(session, config, head, model_path)

    def __call__(self, input_ids, attention_mask=None, global_attention_mask=None, token_type_ids=None,
                 return_dict: bool = True):
        cfg = self.config
        choices = self.head == "LongformerForMultipleChoice"
        given = {name: None for name in pipeline.INPUT_NAMES}
        ids = np.asarray(input_ids)
        given.update(input_ids=ids, attention_mask=attention_mask,
                     global_attention_mask=global_attention_mask, token_type_ids=token_type_ids)
        given = {k: None if v is None else np.asarray(v) for k, v in given.items()}
        if choices:
            given, _ = pipeline.flatten_choices(pipeline.NUMPY, given)
        flat = {k: v for k, v in given.items() if v is not None}
        pipeline.check_inputs(cfg, pipeline.NUMPY, flat)
        semantics.check_input_shapes(**{k: None if v is None else v.shape for k, v in given.items()},
                                     hidden_size=cfg.hidden_size)
        rows, n = flat["input_ids"].shape
        if n > semantics.max_tokens(cfg):
            raise ValueError(semantics.positions_too_long_message(n + cfg.pad_token_id, cfg.max_position_embeddings,
                                                                  cfg.pad_token_id))
        mask = flat.get("attention_mask", np.ones((rows, n), np.int64))
        glob = flat.get("global_attention_mask")
        if glob is None:
            glob = pipeline.automatic_global_attention(self.head, flat["input_ids"], flat.get("attention_mask"),
                                                       cfg.sep_token_id)
        if glob is None:
            glob = np.zeros((rows, n), np.int64)
        feed = {"input_ids": flat["input_ids"], "attention_mask": mask, "global_attention_mask": glob}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = flat.get("token_type_ids", np.zeros((rows, n), np.int64))
        # (with one token type the graph takes none: check_input_values has refused any id but 0)
        feed = {k: np.ascontiguousarray(v, dtype=np.int64).reshape(ids.shape) for k, v in feed.items()}
        values = self.session.run(self.output_names, feed)
        out = OUTPUT_CLASSES[self.head](**dict(zip(self.output_names, values, strict=True)))
        return out if return_dict else out.to_tuple()


def forward_numpy(model: LongformerOnnxModel, inputs: dict, **_: Any) -> dict[str, np.ndarray]:
    """Run `model` on NumPy inputs; its output fields as NumPy arrays (an export has no attentions or hidden
    states: those options are ignored)."""
    out = model(**inputs)
    return {key: np.asarray(out[key]) for key in out.keys()}


__all__ = ["EXTERNAL_DATA", "LongformerOnnxModel", "ONNX_WEIGHTS", "export", "forward_numpy", "input_names",
           "quantize"]
