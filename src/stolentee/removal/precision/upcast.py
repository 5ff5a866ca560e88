"""fp16 model files run as float32 graphs.

onnxruntime's CPU provider has no fp16 kernels for most of IS-Net's operators, so a fp16 file
runs with a cast around nearly every node and its weights converted on every use. Upcasting the
weights once at load (every fp16 initializer and constant to float32, every float<->fp16 cast
removed) gives the same network in float32, and keeping only the first output (the fused matte
the engine uses) lets onnxruntime drop the side outputs' branches. Figures:
benchmarks/removal.md, "The quality tier's speed".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

_FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16)


def has_fp16(model: onnx.ModelProto) -> bool:
    """Whether any weight of ``model`` is stored as fp16."""
    return any(t.data_type == TensorProto.FLOAT16 for t in model.graph.initializer)


def load_float32(path: Path) -> bytes:
    """The serialised float32 graph of the model at ``path`` (unchanged when it has no fp16
    weights, but then only its first output kept all the same)."""
    model = onnx.load(str(path))
    serialised: bytes = to_float32(model).SerializeToString()
    return serialised


def to_float32(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with fp16 weights, constants and float<->fp16 casts turned into float32, and
    only its first output; checked by onnx before it is returned. ``model`` is changed."""
    graph = model.graph
    types = _element_types(model)
    for index, tensor in enumerate(graph.initializer):
        if tensor.data_type == TensorProto.FLOAT16:
            upcast = numpy_helper.to_array(tensor).astype(np.float32)
            graph.initializer[index].CopyFrom(numpy_helper.from_array(upcast, tensor.name))
    for value in (*graph.input, *graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = TensorProto.FLOAT

    rename: dict[str, str] = {}  # a removed cast's output -> its input
    kept: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type == "Cast" and _cast_target(node) in _FLOATS:
            if types.get(node.input[0]) in _FLOATS:  # float <-> fp16: gone
                rename[node.output[0]] = node.input[0]
                continue
            _retarget(node)  # from an integer (shape arithmetic): to float32 instead
        if node.op_type == "Constant":
            _upcast_constant(node)
        kept.append(node)

    def source(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    while len(graph.output) > 1:
        graph.output.pop()
    # A graph output produced by a removed cast: the node before the cast now writes it.
    output_of = {source(o.name): o.name for o in graph.output if source(o.name) != o.name}
    for node in kept:
        for index, name in enumerate(node.input):
            found = source(name)
            node.input[index] = output_of.get(found, found)
        for index, name in enumerate(node.output):
            node.output[index] = output_of.get(name, name)

    needed = {o.name for o in graph.output}
    live: list[onnx.NodeProto] = []
    for node in reversed(kept):
        if any(name in needed for name in node.output):
            live.append(node)
            needed.update(name for name in node.input if name)
    live.reverse()
    del graph.node[:]
    graph.node.extend(live)
    used = {name for node in live for name in node.input}
    weights = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(weights)
    del graph.value_info[:]  # the old shapes carried fp16 types; onnxruntime infers its own
    onnx.checker.check_model(model)
    return model


def _element_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor of ``model`` that onnx's shape inference can type."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {t.name: int(t.data_type) for t in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        types[value.name] = int(value.type.tensor_type.elem_type)
    return types


def _retarget(node: onnx.NodeProto) -> None:
    for attribute in node.attribute:
        if attribute.name == "to":
            attribute.i = TensorProto.FLOAT


def _cast_target(node: onnx.NodeProto) -> int | None:
    for attribute in node.attribute:
        if attribute.name == "to":
            return int(attribute.i)
    return None


def _upcast_constant(node: onnx.NodeProto) -> None:
    for attribute in node.attribute:
        if attribute.name == "value" and attribute.t.data_type == TensorProto.FLOAT16:
            upcast = numpy_helper.to_array(attribute.t).astype(np.float32)
            attribute.t.CopyFrom(numpy_helper.from_array(upcast, attribute.t.name))
