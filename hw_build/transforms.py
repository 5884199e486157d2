"""Graph rewrites our binary pose networks need beyond the stock FINN/qonnx transformations.

Each is a qonnx ``Transformation``; ``apply`` returns ``(model, changed)`` and reaches a fixed
point by returning ``False``.
"""

from __future__ import annotations

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation
from qonnx.transformation.bipolar_to_xnor import ConvertBipolarMatMulToXnorPopcount
from qonnx.transformation.general import SortGraph
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes

from bnnpose.quantize.qonnx_index import consumer_index


def _const_pad(model: ModelWrapper, node) -> tuple[list[int], float] | None:
    """(pads, value) of a constant-mode Pad with static pads, else None."""
    mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "constant")
    pads = model.get_initializer(node.input[1])
    if mode != "constant" or pads is None:
        return None
    value = model.get_initializer(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    return [int(p) for p in pads], float(0.0 if value is None else np.asarray(value).item())


class NotMappable(Exception):
    """A node no FINN layer computes as written; the message says why and what maps."""


def refuse_zero_padded_bipolar_convs(model: ModelWrapper) -> None:
    """Raise :class:`NotMappable` for a Conv that pads a bipolar (+-1) input with zeros.

    0 is not a 1-bit value: the XNOR layer stores -1 as a 0 bit, so its window generator's
    zero padding computes a -1-padded conv, and the accelerator would silently differ from
    the network. A network padded with -1 maps (``F.pad(x, pads, value=-1.0)`` before an
    unpadded conv).
    """
    for node in model.graph.node:
        pads = next((list(a.ints) for a in node.attribute if a.name == "pads"), [])
        if (node.op_type == "Conv" and any(pads)
                and model.get_tensor_datatype(node.input[0]) == DataType["BIPOLAR"]):
            raise NotMappable(
                "zero padding of a bipolar (+-1) input: 0 is not a 1-bit value, so no XNOR "
                "layer computes it; pad with -1 instead (F.pad(x, pads, value=-1.0) before "
                "an unpadded conv)")


class AbsorbPadIntoIm2Col(Transformation):
    """Fold an explicit NCHW ``Pad`` (any constant) into the ``Im2Col`` a lowered conv reads.

    ONNX Conv has no pad value, so a -1-padded binary conv exports as Pad(-1) then an unpadded
    Conv. After ``LowerConvsToMatMul`` the chain is Pad -> Transpose(NCHW->NHWC) -> Im2Col; the
    window generator pads with any value, so the Pad disappears into it.
    """

    def apply(self, model: ModelWrapper):
        # One Pad after another, the graph re-sorted after each as the clean-up of a shape
        # inference would (the next Pad is the first left in that order), and one shape
        # inference at the end. The consumers are indexed once per sort: an absorption
        # rewires only its own Pad's Transposes, from the Pad's output to its input.
        changed = False
        while True:
            pad, chains = self._next(model, consumer_index(model.graph.node))
            if pad is None:
                break
            pads, value = _const_pad(model, pad)
            n, c, h, w = model.get_tensor_shape(pad.input[0])
            for trans, inst in chains:
                inst.set_nodeattr("pad_amount", [pads[2], pads[3], pads[6], pads[7]])
                inst.set_nodeattr("pad_value", int(value))
                inst.set_nodeattr("input_shape", str((n, h, w, c)))
                trans.input[0] = pad.input[0]
                model.set_tensor_shape(trans.output[0], [n, h, w, c])
            model.graph.node.remove(pad)
            model = model.transform(SortGraph(), make_deepcopy=False, cleanup=False)
            changed = True
        return (model.transform(InferShapes()) if changed else model), False

    @staticmethod
    def _next(model: ModelWrapper, consumers: dict) -> tuple[object, list]:
        """The first Pad that folds into the window generators it feeds, and those."""
        for pad in model.graph.node:
            if pad.op_type != "Pad":
                continue
            spec = _const_pad(model, pad)
            if spec is None:
                continue
            pads, value = spec
            # ONNX pads are [N, C, H, W begins, N, C, H, W ends]; Im2Col wants [Hb, Wb, He, We].
            if any(pads[i] for i in (0, 1, 4, 5)) or value != int(value):
                continue
            # Two convs reading one padded sign() share the Pad: each window generator pads.
            chains = []
            for trans in consumers.get(pad.output[0], []):
                after = consumers.get(trans.output[0], []) if trans.op_type == "Transpose" \
                    else []
                im2col = after[0] if after else None
                if (im2col is None or im2col.op_type != "Im2Col" or len(after) != 1
                        or any(getCustomOp(im2col).get_nodeattr("pad_amount"))):
                    break
                chains.append((trans, getCustomOp(im2col)))
            else:
                if chains:
                    return pad, chains
        return None, []


def _unshare_bipolar_thresholds(model: ModelWrapper) -> None:
    """Give every consumer of a bipolar ``MultiThreshold`` its own copy.

    Streamlining merges the identical sign() of convs that read one stream (HRNet's fusion
    does). The stock XNOR conversion turns a threshold's output into {0, 1} for the first
    MatMul it converts and then no longer finds a bipolar producer for the second.
    """
    import copy

    for mt in list(model.get_nodes_by_op_type("MultiThreshold")):
        out = mt.output[0]
        consumers = model.find_consumers(out) or []
        if model.get_tensor_datatype(out) != DataType["BIPOLAR"] or len(consumers) < 2:
            continue
        at = list(model.graph.node).index(mt)
        for k, consumer in enumerate(consumers[1:], start=1):
            clone = copy.deepcopy(mt)
            clone.name = f"{mt.name}_copy{k}"
            clone.output[0] = model.make_new_valueinfo_name()
            model.set_tensor_shape(clone.output[0], model.get_tensor_shape(out))
            model.set_tensor_datatype(clone.output[0], DataType["BIPOLAR"])
            model.graph.node.insert(at + k, clone)
            for i, name in enumerate(consumer.input):
                if name == out:
                    consumer.input[i] = clone.output[0]


class ConvertBipolarMatMulToXnorPopcountPadAware(Transformation):
    """The stock XNOR conversion, also correct when the window generator pads with -1.

    The stock transform re-encodes the bipolar producer as {0, 1} (bit 0 means -1) but leaves
    an ``Im2Col`` ``pad_value`` of -1 untouched, which is then not a legal BINARY value. In the
    bit encoding -1 *is* 0, so the pad value becomes 0.
    """

    def apply(self, model: ModelWrapper):
        _unshare_bipolar_thresholds(model)
        for mm in model.get_nodes_by_op_type("MatMul"):
            if not all(model.get_tensor_datatype(t) == DataType["BIPOLAR"] for t in mm.input[:2]):
                continue
            producer = model.find_producer(mm.input[0])
            if producer is not None and producer.op_type == "Im2Col":
                inst = getCustomOp(producer)
                if inst.get_nodeattr("pad_value") == -1:
                    inst.set_nodeattr("pad_value", 0)
        model = model.transform(ConvertBipolarMatMulToXnorPopcount())
        return model, False


_TO_NHWC, _TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def _perm(node) -> list[int] | None:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), None)


class ConvertStreamsToNHWC(Transformation):
    """Give every 4-D tensor of a lowered graph the NHWC layout and drop the layout Transposes.

    ``LowerConvsToMatMul`` leaves each conv wrapped in NCHW->NHWC and NHWC->NCHW Transposes, and
    FINN's movers cannot cancel them across the forks and joins of residual and hourglass
    topologies. Every op between convs here is layout-agnostic once told its channel axis
    (MultiThreshold, Add, Concat, MaxPool, nearest Resize), so the whole graph is rewritten in
    NHWC at once. The graph input and output become NHWC too: the host feeds HWC images and
    reads channel-last heatmaps, so no Transpose is left for software.

    Refuses (no change) if an NCHW tensor reaches an op it does not know.
    """

    def apply(self, model: ModelWrapper):
        from qonnx.transformation.infer_data_layouts import InferDataLayouts
        import qonnx.core.data_layout as DL

        model = model.transform(InferDataLayouts())
        graph = model.graph
        tensors = [*graph.input, *graph.output, *graph.value_info]
        order = {t.name: i for i, t in reversed(list(enumerate(tensors)))}
        nchw = {t.name for t in tensors if model.get_tensor_layout(t.name) == DL.NCHW
                and len(model.get_tensor_shape(t.name)) == 4}
        if not nchw:
            return model, False
        touched = [n for n in graph.node if n.op_type != "Transpose"
                   and any(t in nchw for t in [*n.input, *n.output])]
        # Decide before changing anything: a half-converted graph would compute garbage.
        if not all(self._supports(model, n) for n in touched):
            return model, False
        for node in touched:
            self._make_nhwc(model, node)
        # In graph order, not the set's (hash-seeded) order: set_tensor_shape may add
        # value_info entries, and their order is part of the saved graph's bytes.
        for name in sorted(nchw, key=order.__getitem__):
            n, c, h, w = model.get_tensor_shape(name)
            model.set_tensor_shape(name, [n, h, w, c])
        # InferDataLayouts re-derives every node output's layout but keeps the graph input's
        # annotation. A MultiThreshold reading the input (a normalised, requantized image)
        # is converted only if its input and output layouts agree, so that annotation must
        # say NHWC; other consumers ignore it, and it is left as it was for them (it is part
        # of the saved graph's bytes).
        inp = graph.input[0].name
        if inp in nchw and any(c.op_type == "MultiThreshold"
                               for c in model.find_consumers(inp) or []):
            model.set_tensor_layout(inp, DL.NHWC)
        for trans in list(model.get_nodes_by_op_type("Transpose")):
            if _perm(trans) not in (_TO_NHWC, _TO_NCHW):
                continue
            src, dst = trans.input[0], trans.output[0]
            if dst == graph.output[0].name:
                producer = model.find_producer(src)
                producer.output[list(producer.output).index(src)] = dst
            else:
                for consumer in model.find_consumers(dst):
                    consumer.input[list(consumer.input).index(dst)] = src
            graph.node.remove(trans)
        model = model.transform(InferShapes())
        model = model.transform(InferDataTypes())
        model = model.transform(InferDataLayouts())
        return model, False

    @staticmethod
    def _supports(model: ModelWrapper, node) -> bool:
        op = node.op_type
        if op == "Concat":
            return next(a.i for a in node.attribute if a.name == "axis") in (1, -3)
        if op == "Resize":
            return (len(node.input) > 2 and model.get_initializer(node.input[2]) is not None
                    and not (len(node.input) > 3 and node.input[3]))
        if op in ("Flatten", "Reshape"):
            # Flattening changes element order between layouts; the MatMul reading the flat
            # vector absorbs that as a permutation of its weight rows.
            consumers = model.find_consumers(node.output[0])
            return (len(model.get_tensor_shape(node.output[0])) == 2 and len(consumers) == 1
                    and consumers[0].op_type == "MatMul"
                    and model.get_initializer(consumers[0].input[1]) is not None)
        return op in ("MultiThreshold", "MaxPool", "Add", "Mul", "Sub")

    @staticmethod
    def _make_nhwc(model: ModelWrapper, node) -> None:
        op = node.op_type
        if op == "MultiThreshold":
            getCustomOp(node).set_nodeattr("data_layout", "NHWC")
        elif op == "Concat":
            next(a for a in node.attribute if a.name == "axis").i = 3
        elif op == "MaxPool":
            ceil = next((a.i for a in node.attribute if a.name == "ceil_mode"), 0)
            node.op_type, node.domain = "MaxPoolNHWC", "qonnx.custom_op.general"
            getCustomOp(node).set_nodeattr("ceil_mode", ceil)
        elif op == "Resize":
            scales = model.get_initializer(node.input[2])
            model.set_initializer(node.input[2], np.asarray(scales)[_TO_NHWC].astype(np.float32))
        elif op in ("Flatten", "Reshape"):
            _, c, h, w = model.get_tensor_shape(node.input[0])
            matmul = model.find_consumer(node.output[0])
            weights = model.get_initializer(matmul.input[1])
            k = weights.shape[1]
            model.set_initializer(matmul.input[1],
                                  weights.reshape(c, h, w, k).transpose(1, 2, 0, 3).reshape(-1, k))
        elif op in ("Add", "Mul", "Sub"):
            for name in node.input:
                const = model.get_initializer(name)
                if const is not None and const.ndim == 4:
                    model.set_initializer(name, const.transpose(_TO_NHWC))


class RemoveTrailingScale(Transformation):
    """Cut a final constant ``Mul`` off the graph output and remember it for the host.

    A heatmap head ends in per-channel scales that only rescale each channel; arg-max decoding
    needs them only as a positive factor, and the host applies them in float. The removed
    factor is returned in ``self.scale`` (broadcastable to the output, channel last).
    """

    def __init__(self):
        super().__init__()
        self.scale: np.ndarray | None = None

    def apply(self, model: ModelWrapper):
        out = model.graph.output[0].name
        mul = model.find_producer(out)
        if mul is None or mul.op_type != "Mul":
            return model, False
        const = model.get_initializer(mul.input[1])
        if const is None:
            return model, False
        self.scale = np.asarray(const, dtype=np.float32).reshape(-1)
        src = mul.input[0]
        producer = model.find_producer(src)
        producer.output[list(producer.output).index(src)] = out
        model.graph.node.remove(mul)
        model.set_tensor_datatype(out, model.get_tensor_datatype(src))
        model = model.transform(InferShapes())
        model = model.transform(InferDataTypes())
        return model, False
