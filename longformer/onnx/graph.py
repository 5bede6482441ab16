"""Longformer as an ONNX graph, written from the canonical weights: one file, right at every length and global
pattern.

The graph is built node by node (`onnx.helper`), not traced from a framework: a trace bakes the example's length and
its data-dependent branches into the graph (why Hugging Face's exported Longformer is wrong at other lengths).
Here every length-dependent quantity is computed in the graph from the input's shape, and the number of global
slots from the data (`TopK` with a computed k), so one file serves every batch, length and global pattern.

The algorithm is the one of `longformer/*/attention.py`, in the batched loop strategy:
- band: queries in blocks of `query_block` rows; each block attends to one window of `query_block + 2w` keys
  gathered from the key sequence padded by `w` on both sides; a static (block, window) pattern keeps |i - j| <= w;
- global slots: the positions of the row's global tokens (`TopK` of the global mask, k = the busiest row's count,
  at least 1; slots past a row's count are filler, masked as keys and never written back), whose local keys and
  values every local query also attends to, in one softmax with the band;
- global rows: the global tokens' queries (global projections) over every non-padding key, scattered back.

Initializers are exactly the weights, named canonically with the "onnx" leaf names of `converters.names.LEAVES`
(linear weights as `kernel`, stored (in, out)): `converters.formats` reads a `model.onnx` back as a checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from converters.checkpoint import ONNX_HEAD_METADATA

from ..config import LongformerConfig
from ..semantics import FEED_FORWARD_ROWS
from ..semantics import QUERY_BLOCK as BLOCKS

HEADS = ("LongformerModel", "LongformerForMaskedLM", "LongformerForSequenceClassification",
         "LongformerForMultipleChoice", "LongformerForTokenClassification", "LongformerForQuestionAnswering")
QUERY_BLOCK = BLOCKS["batched"]["onnx"]  # query rows per band block (semantics)
OPSET = 17  # LayerNormalization is in the default domain from 17 on
HEAD_METADATA = ONNX_HEAD_METADATA


def input_names(config: LongformerConfig) -> list[str]:
    names = ["input_ids", "attention_mask", "global_attention_mask"]
    return names + (["token_type_ids"] if config.type_vocab_size > 1 else [])


class _Graph:
    """Nodes and weights of the graph being built; `op` returns the output name(s) of a new node."""

    def __init__(self, dtype: np.dtype, onnx):
        self.onnx, self.helper = onnx, onnx.helper
        self.dtype = np.dtype(dtype)
        self.nodes, self.weights, self._n = [], [], 0

    def op(self, kind: str, *inputs: str, outputs: int = 1, **attrs):
        self._n += 1
        names = [f"{kind.lower()}_{self._n}" + (f"_{i}" if outputs > 1 else "") for i in range(outputs)]
        self.nodes.append(self.helper.make_node(kind, list(inputs), names, name=names[0], **attrs))
        return names if outputs > 1 else names[0]

    def const(self, value, dtype=None) -> str:
        """A small constant (a node, not an initializer: initializers are the weights and nothing else)."""
        array = np.asarray(value, dtype=dtype if dtype is not None else self.dtype)
        return self.op("Constant", value=self.onnx.numpy_helper.from_array(array))

    def ints(self, *values: int) -> str:
        return self.const(list(values), np.int64)

    def branch(self, condition: str, then, otherwise) -> str:
        """`If(condition)`: `then()` and `otherwise()` each build their subgraph and return its one result."""
        subgraphs = []
        for build in (then, otherwise):
            outer, self.nodes = self.nodes, []
            result = build()
            if result in {n for node in outer for n in node.output} or not self.nodes:
                self.nodes.append(self.helper.make_node("Identity", [result], [result + "_kept"]))
                result = result + "_kept"
            out = self.helper.make_tensor_value_info(result, self.helper.np_dtype_to_tensor_dtype(self.dtype), None)
            subgraphs.append(self.helper.make_graph(self.nodes, f"branch_{self._n}_{len(subgraphs)}", [], [out]))
            self.nodes = outer
        return self.op("If", condition, then_branch=subgraphs[0], else_branch=subgraphs[1])

    def scan_rows(self, x: str, width: int, rows: int, body) -> str:
        """`body(chunk)` on `rows` rows of `x` (..., width) at a time (a Scan over the rows padded to a multiple of
        `rows`), then the rows back in `x`'s shape: row-wise work whose intermediates stay small (cache-resident)."""
        flat = self.op("Reshape", x, self.ints(-1, width))
        total = self.op("Shape", flat, end=1)
        padded = self.op("Mul", self.op("Div", self.op("Add", total, self.ints(rows - 1)), self.ints(rows)),
                         self.ints(rows))
        pads = self.op("Concat", self.ints(0, 0), self.op("Sub", padded, total), self.ints(0), axis=0)
        chunks = self.op("Reshape", self.op("Pad", flat, pads), self.ints(-1, rows, width))
        outer, self.nodes = self.nodes, []
        chunk = f"scan_in_{self._n}"
        result = body(chunk)
        elem = self.helper.np_dtype_to_tensor_dtype(self.dtype)
        graph = self.helper.make_graph(self.nodes, f"scan_{self._n}",
                                       [self.helper.make_tensor_value_info(chunk, elem, [rows, width])],
                                       [self.helper.make_tensor_value_info(result, elem, [rows, width])])
        self.nodes = outer
        y = self.op("Reshape", self.op("Scan", chunks, body=graph, num_scan_inputs=1), self.ints(-1, width))
        return self.op("Reshape", self.op("Slice", y, self.ints(0), total, self.ints(0)), self.op("Shape", x))

    def weight(self, name: str, value: np.ndarray) -> str:
        self.weights.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(value.astype(self.dtype)), name))
        return name


class _Builder:
    def __init__(self, config: LongformerConfig, head: str, state: Mapping[str, np.ndarray], dtype, onnx,
                 query_block: int):
        from converters.formats import strip_base
        from converters.names import BASE_PARTS, BASE_PREFIX, to_format_leaf

        self.config, self.head, self.g = config, head, _Graph(dtype, onnx)
        self.query_block = query_block
        self._leaf, self._base_parts = to_format_leaf, BASE_PARTS
        self.state = {strip_base(k): v for k, v in state.items()}  # base-model keys without `longformer.`
        self.prefix = "" if head == "LongformerModel" else BASE_PREFIX  # ... which the head's own names have
        self._names: dict[str, str] = {}
        self._per_window: dict[int, dict[str, str]] = {}

    # ------------------------------------------------------------------ weights
    def w(self, key: str) -> str:
        """The initializer holding tensor `key` (base-model keys without `longformer.`), created on first use and
        named as `head` names it canonically, with its onnx leaf."""
        if key not in self._names:
            name = self.prefix + key if key.startswith(self._base_parts) else key
            parts, transposed = self._leaf(name, "onnx")
            value = self.state[key]
            self._names[key] = self.g.weight(".".join(parts), value.T if transposed else value)
        return self._names[key]

    def linear(self, x: str, name: str) -> str:
        return self.g.op("Add", self.g.op("MatMul", x, self.w(name + ".weight")), self.w(name + ".bias"))

    def layer_norm(self, x: str, name: str) -> str:
        return self.g.op("LayerNormalization", x, self.w(name + ".weight"), self.w(name + ".bias"), axis=-1,
                         epsilon=self.config.layer_norm_eps, stash_type=1)

    def gelu(self, x: str) -> str:
        """Exact (erf) GELU, x * 0.5 * (1 + erf(x / sqrt 2)), written in the order onnxruntime's Gelu fusion
        recognises (one kernel, with the preceding bias add: BiasGelu)."""
        g = self.g
        erf = g.op("Erf", g.op("Div", x, g.const(math.sqrt(2.0))))
        return g.op("Mul", g.op("Mul", x, g.op("Add", erf, g.const(1.0))), g.const(0.5))

    # ------------------------------------------------------------------ inputs
    def embeddings(self, ids: str, token_types: str | None) -> str:
        g, pad = self.g, self.config.pad_token_id
        real = g.op("Cast", g.op("Not", g.op("Equal", ids, g.ints(pad))), to=7)  # int64
        positions = g.op("Add", g.op("Mul", g.op("CumSum", real, g.const(1, np.int64)), real), g.ints(pad))
        x = g.op("Add", g.op("Gather", self.w("embeddings.word_embeddings.weight"), ids),
                 g.op("Gather", self.w("embeddings.position_embeddings.weight"), positions))
        if token_types is None:  # one token type: every token gets row 0
            types = g.op("Gather", self.w("embeddings.token_type_embeddings.weight"), g.ints(0))
        else:
            types = g.op("Gather", self.w("embeddings.token_type_embeddings.weight"), token_types)
        return self.layer_norm(g.op("Add", x, types), "embeddings.LayerNorm")

    def shapes(self, mask: str) -> dict[str, str]:
        """Dynamic sizes and the global slots of the batch, computed once: `B`, `N` (1-element int64 tensors),
        `slots` (B, G) positions, `slot_valid` (B, G), `slot_index` (B, G, 2) for ScatterND/GatherND,
        `flat_slots` (B, G) rows of the flattened (B*N, .) activations."""
        g = self.g
        shape = g.op("Shape", mask)
        B = g.op("Slice", shape, g.ints(0), g.ints(1))
        N = g.op("Slice", shape, g.ints(1), g.ints(2))
        is_global = g.op("Cast", g.op("Equal", mask, g.ints(2)), to=1)  # float32 0/1
        busiest = g.op("ReduceMax", g.op("ReduceSum", is_global, g.ints(1), keepdims=0), keepdims=1)
        k = g.op("Max", g.op("Cast", busiest, to=7), g.ints(1))  # at least one (filler) slot: no empty tensors
        values, slots = g.op("TopK", is_global, k, axis=-1, outputs=2)
        slot_valid = g.op("Greater", values, g.const(0.5, np.float32))
        batch_rows = g.op("Range", g.const(0, np.int64), g.op("Squeeze", B), g.const(1, np.int64))
        rows = g.op("Unsqueeze", batch_rows, g.ints(1))  # (B, 1)
        flat_slots = g.op("Add", slots, g.op("Mul", rows, N))
        G = g.op("Shape", slots, start=1)
        slot_index = g.op("Concat", g.op("Unsqueeze", g.op("Expand", rows, g.op("Shape", slots)), g.ints(2)),
                          g.op("Unsqueeze", slots, g.ints(2)), axis=2)
        has_global = g.op("Greater", busiest, g.const(0.5, np.float32))
        return {"B": B, "N": N, "G": G, "has_global": has_global, "slots": slots, "slot_valid": slot_valid,
                "flat_slots": flat_slots, "slot_index": slot_index, "mask": mask}

    def band_geometry(self, s: dict[str, str], w: int) -> dict[str, str]:
        """For one-sided window `w` (shared by the layers that have it): the number of blocks, the block padding,
        the key windows' index (blocks, span) and the additive mask of a block's keys, global slots first:
        (B, 1, blocks, block, G + span), 0 where a query may attend, the dtype's minimum elsewhere."""
        if w in self._per_window:
            return self._per_window[w]
        g, b = self.g, self.query_block
        span = b + 2 * w
        N = s["N"]
        blocks = g.op("Div", g.op("Add", N, g.ints(b - 1)), g.ints(b))
        padded = g.op("Mul", blocks, g.ints(b))
        tail = g.op("Sub", padded, N)
        starts = g.op("Range", g.const(0, np.int64), g.op("Squeeze", padded), g.const(b, np.int64))
        band_index = g.op("Add", g.op("Unsqueeze", starts, g.ints(1)), g.ints(*range(span)))  # (blocks, span)
        # keys are gathered from [the G slots, then the padded sequence]: each block's window is the G slots
        # followed by its span, (blocks, G + span), one Gather for both
        slot_columns = g.op("Expand", g.op("Unsqueeze", g.op("Range", g.const(0, np.int64), g.op("Squeeze", s["G"]),
                                                             g.const(1, np.int64)), g.ints(0)),
                            g.op("Concat", blocks, s["G"], axis=0))
        index = g.op("Concat", slot_columns, g.op("Add", band_index, s["G"]), axis=1)
        local_key = g.op("Cast", g.op("Equal", s["mask"], g.ints(1)), to=7)
        key_pads = g.op("Concat", g.ints(0, w, 0), g.op("Add", tail, g.ints(w)), axis=0)
        key_ok = g.op("Gather", g.op("Pad", local_key, key_pads), band_index, axis=1)  # (B, blocks, span)
        key_ok = g.op("Cast", g.op("Unsqueeze", key_ok, g.ints(1, 3)), to=9)  # (B, 1, blocks, 1, span) bool
        r, c = np.arange(b)[:, None], np.arange(span)[None, :]
        in_band = g.const(np.abs(c - w - r) <= w, np.bool_)  # key c of a block's window is query r's offset c-w-r
        allowed = g.op("And", key_ok, in_band)  # (B, 1, blocks, block, span)
        slot_ok = g.op("Expand", g.op("Unsqueeze", s["slot_valid"], g.ints(1, 2, 3)),
                       g.op("Concat", g.ints(1, 1), blocks, g.ints(b, 1), axis=0))  # (B, 1, blocks, block, G)
        allowed = g.op("Concat", slot_ok, allowed, axis=-1)
        bias = g.op("Where", allowed, g.const(0.0), g.const(np.finfo(g.dtype).min))
        zeros = g.const(np.zeros(1, g.dtype))
        H = self.config.hidden_size
        left = g.op("Expand", zeros, g.op("Concat", s["B"], g.ints(w, H), axis=0))
        right = g.op("Expand", zeros, g.op("Concat", s["B"], g.op("Add", tail, g.ints(w)), g.ints(H), axis=0))
        geometry = {"blocks": blocks, "tail": tail, "index": index, "bias": bias, "left": left, "right": right}
        self._per_window[w] = geometry
        return geometry

    # ------------------------------------------------------------------ attention
    def heads(self, x: str) -> str:
        """(B, L, H) -> (B, nh, L, hd)."""
        nh, hd = self.config.num_attention_heads, self.config.head_dim
        return self.g.op("Transpose", self.g.op("Reshape", x, self.g.ints(0, -1, nh, hd)), perm=[0, 2, 1, 3])

    def masked_softmax(self, scores: str, allowed: str) -> str:
        g = self.g
        return g.op("Softmax", g.op("Where", allowed, scores, g.const(np.finfo(self.g.dtype).min)), axis=-1)

    def self_attention(self, h: str, s: dict[str, str], layer: int) -> str:
        g, cfg = self.g, self.config
        nh, hd, H = cfg.num_attention_heads, cfg.head_dim, cfg.hidden_size
        w = cfg.attention_windows[layer] // 2
        b = self.query_block
        p = f"encoder.layer.{layer}.attention.self."
        geo = self.band_geometry(s, w)
        scale = g.const(1.0 / math.sqrt(hd))
        q = g.op("Mul", self.linear(h, p + "query"), scale)
        k, v = self.linear(h, p + "key"), self.linear(h, p + "value")

        # band: (B, nh, blocks, block, hd) queries; (B, nh, blocks, G + span, hd) keys and values of each block:
        # the row's global slots (their local keys and values), then the block's window, gathered from the slots
        # followed by the padded sequence
        row_pads = g.op("Concat", g.ints(0, 0, 0, 0), g.op("Concat", geo["tail"], g.ints(0), axis=0), axis=0)
        qb = g.op("Transpose", g.op("Reshape", g.op("Pad", q, row_pads), g.ints(0, -1, b, nh, hd)),
                  perm=[0, 3, 1, 2, 4])
        flat = g.ints(-1, H)
        windows = []
        for t in (k, v):
            slots = g.op("Gather", g.op("Reshape", t, flat), s["flat_slots"])  # (B, G, H)
            # [slots, w zeros, the sequence, zeros to the block multiple + w]: (B, nh, G + N', hd), one copy
            keys = self.heads(g.op("Concat", slots, geo["left"], t, geo["right"], axis=1))
            windows.append(g.op("Gather", keys, geo["index"], axis=2))
        kw, vw = windows
        scores = g.op("Add", g.op("MatMul", qb, g.op("Transpose", kw, perm=[0, 1, 2, 4, 3])), geo["bias"])
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), vw)  # (B, nh, blocks, block, hd)
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 3, 1, 4]), g.ints(0, -1, H))
        context = g.op("Slice", context, g.ints(0), s["N"], g.ints(1))  # drop the block padding
        padding = g.op("Unsqueeze", g.op("Equal", s["mask"], g.ints(0)), g.ints(2))
        context = g.op("Where", padding, g.const(0.0), context)  # padding rows attend to nothing

        # global rows, when the batch has global tokens (an If: without them the global projections cost nothing);
        # filler slots write back what is there
        keep = g.op("GatherND", context, s["slot_index"])
        rows = g.branch(s["has_global"], lambda: self.global_rows(h, keep, s, layer), lambda: keep)
        return g.op("ScatterND", context, s["slot_index"], rows)

    def global_rows(self, h: str, keep: str, s: dict[str, str], layer: int) -> str:
        """The global tokens' queries over every non-padding key, with the global projections: the new rows of
        the global positions, (B, G, H) (`keep`, the band's rows, for filler slots). With few slots
        (G * nh <= H) by re-association, as longformer.pt: q . (Wk x + bk) = (Wk^T q) . x + q . bk and
        sum_j p_j (Wv x_j + bv) = (P x) Wv^T + bv, so no global key or value is projected over all N tokens."""
        g, cfg = self.g, self.config
        H, nh, hd = cfg.hidden_size, cfg.num_attention_heads, cfg.head_dim
        p = f"encoder.layer.{layer}.attention.self."
        scale = g.const(1.0 / math.sqrt(hd))
        qg = self.heads(g.op("Mul", self.linear(g.op("Gather", g.op("Reshape", h, g.ints(-1, H)), s["flat_slots"]),
                                                p + "query_global"), scale))  # (B, nh, G, hd)
        key_ok = g.op("Unsqueeze", g.op("Not", g.op("Equal", s["mask"], g.ints(0))), g.ints(1, 2))

        def reassociated() -> str:
            per_head = g.ints(nh, hd, H)  # a (H_out, H_in) weight as (nh, hd, H_in)
            wk = g.op("Reshape", g.op("Transpose", self.w(p + "key_global.weight"), perm=[1, 0]), per_head)
            wv = g.op("Reshape", g.op("Transpose", self.w(p + "value_global.weight"), perm=[1, 0]), per_head)
            x = g.op("Unsqueeze", h, g.ints(1))  # (B, 1, N, H)
            scores = g.op("Add", g.op("MatMul", g.op("MatMul", qg, wk), g.op("Transpose", x, perm=[0, 1, 3, 2])),
                          g.op("MatMul", qg, g.op("Reshape", self.w(p + "key_global.bias"), g.ints(nh, hd, 1))))
            probs = self.masked_softmax(scores, key_ok)
            rows = g.op("MatMul", g.op("MatMul", probs, x), g.op("Transpose", wv, perm=[0, 2, 1]))
            return g.op("Add", rows, g.op("Reshape", self.w(p + "value_global.bias"), g.ints(nh, 1, hd)))

        def projected() -> str:
            kg, vg = self.heads(self.linear(h, p + "key_global")), self.heads(self.linear(h, p + "value_global"))
            probs = self.masked_softmax(g.op("MatMul", qg, g.op("Transpose", kg, perm=[0, 1, 3, 2])), key_ok)
            return g.op("MatMul", probs, vg)

        few = g.op("LessOrEqual", g.op("Mul", s["G"], g.ints(nh)), g.ints(H))
        rows = g.branch(few, reassociated, projected)  # (B, nh, G, hd)
        rows = g.op("Reshape", g.op("Transpose", rows, perm=[0, 2, 1, 3]), g.ints(0, -1, H))
        return g.op("Where", g.op("Unsqueeze", s["slot_valid"], g.ints(2)), rows, keep)

    def layer(self, h: str, s: dict[str, str], i: int) -> str:
        p = f"encoder.layer.{i}."
        a = self.layer_norm(self.g.op("Add", self.linear(self.self_attention(h, s, i), p + "attention.output.dense"),
                                      h), p + "attention.output.LayerNorm")

        def feed_forward(x: str) -> str:  # row-wise: on FEED_FORWARD_ROWS rows at a time, as longformer.pt
            f = self.gelu(self.linear(x, p + "intermediate.dense"))
            return self.layer_norm(self.g.op("Add", self.linear(f, p + "output.dense"), x), p + "output.LayerNorm")

        return self.g.scan_rows(a, self.config.hidden_size, FEED_FORWARD_ROWS, feed_forward)

    def encoder(self, ids: str, mask: str, token_types: str | None) -> str:
        h = self.embeddings(ids, token_types)
        s = self.shapes(mask)
        for i in range(self.config.num_hidden_layers):
            h = self.layer(h, s, i)
        return h

    def first_token(self, h: str) -> str:
        return self.g.op("Squeeze", self.g.op("Slice", h, self.g.ints(0), self.g.ints(1), self.g.ints(1)),
                         self.g.ints(1))

    # ------------------------------------------------------------------ the model
    def build(self, opset: int):
        onnx, helper, g = self.g.onnx, self.g.helper, self.g
        cfg, head = self.config, self.head
        choices = head == "LongformerForMultipleChoice"
        axes = ["batch", "choices", "sequence"] if choices else ["batch", "sequence"]
        names = input_names(cfg)
        inputs = [helper.make_tensor_value_info(n, onnx.TensorProto.INT64, axes) for n in names]
        ids, attention, global_mask = names[:3]
        types = names[3] if len(names) > 3 else None
        if choices:  # (batch, choices, sequence) -> (batch * choices, sequence)
            rows = g.op("Concat", g.ints(-1), g.op("Slice", g.op("Shape", ids), g.ints(2), g.ints(3)), axis=0)
            ids, attention, global_mask = (g.op("Reshape", t, rows) for t in (ids, attention, global_mask))
            types = None if types is None else g.op("Reshape", types, rows)
        # 0 padding, 1 local, 2 global: min(attention_mask * (global_attention_mask + 1), 2)
        mask = g.op("Min", g.op("Mul", attention, g.op("Add", global_mask, g.ints(1))), g.ints(2))
        h = self.encoder(ids, mask, types)
        out = {}
        if head == "LongformerModel":
            out["last_hidden_state"] = h
            if "pooler.dense.weight" in self.state:
                out["pooler_output"] = g.op("Tanh", self.linear(self.first_token(h), "pooler.dense"))
        elif head == "LongformerForMaskedLM":
            z = self.layer_norm(self.gelu(self.linear(h, "lm_head.dense")), "lm_head.layer_norm")
            if "lm_head.decoder.weight" in self.state and not cfg.tie_word_embeddings:
                decoder = self.w("lm_head.decoder.weight")
            else:
                decoder = g.op("Transpose", self.w("embeddings.word_embeddings.weight"), perm=[1, 0])
            out["logits"] = g.op("Add", g.op("MatMul", z, decoder), self.w("lm_head.bias"))
        elif head == "LongformerForSequenceClassification":
            x = g.op("Tanh", self.linear(self.first_token(h), "classifier.dense"))
            out["logits"] = self.linear(x, "classifier.out_proj")
        elif head == "LongformerForMultipleChoice":
            pooled = g.op("Tanh", self.linear(self.first_token(h), "pooler.dense"))
            per_choice = g.op("Slice", g.op("Shape", names[0]), g.ints(1), g.ints(2))
            out["logits"] = g.op("Reshape", self.linear(pooled, "classifier"),
                                 g.op("Concat", g.ints(-1), per_choice, axis=0))
        elif head == "LongformerForTokenClassification":
            out["logits"] = self.linear(h, "classifier")
        elif head == "LongformerForQuestionAnswering":
            both = self.linear(h, "qa_outputs")
            start, end = g.op("Split", both, g.ints(1, 1), axis=-1, outputs=2)
            out["start_logits"] = g.op("Squeeze", start, g.ints(-1))
            out["end_logits"] = g.op("Squeeze", end, g.ints(-1))
        else:
            raise ValueError(f"Unknown model class {head!r}; choose from {list(HEADS)}.")
        elem = helper.np_dtype_to_tensor_dtype(g.dtype)
        outputs = []
        for name, value in out.items():  # rename the last node's output to the output's name
            g.nodes.append(helper.make_node("Identity", [value], [name]))
            outputs.append(helper.make_tensor_value_info(name, elem, None))
        graph = helper.make_graph(g.nodes, head, inputs, outputs, g.weights)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="longformer")
        helper.set_model_props(model, {HEAD_METADATA: head})
        return model


def build_model(config: LongformerConfig, head: str, state: Mapping[str, np.ndarray], *, dtype="float32",
                opset: int = OPSET, query_block: int = QUERY_BLOCK):
    """The ONNX `ModelProto` of `head` with the canonical weights `state` (a head's weights under `longformer.`
    or not), computing in `dtype` ("float32" or "float16")."""
    from .._frameworks import require

    onnx = require("onnx")
    if head not in HEADS:
        raise ValueError(f"Unknown model class {head!r}; choose from {list(HEADS)}.")
    if opset < OPSET:
        raise ValueError(f"opset {opset} is too old: the graph needs LayerNormalization (opset {OPSET} or newer).")
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise ValueError(f"ONNX export computes in float32 or float16, not {dtype}.")
    return _Builder(config, head, state, dtype, onnx, query_block).build(opset)
