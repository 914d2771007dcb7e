"""``firefly.onnx.export``: a model's forward as an ONNX file, as ``torch.onnx.export``.

The forward runs once on the example inputs, in eval mode and without a graph, while
``firefly.autograd.set_op_hook`` reports every op it runs (its name, inputs, attributes and
output) and forward hooks on every submodule say which module is running. Each op becomes ONNX
nodes built with ``onnx.helper``; parameters and buffers become initializers named by their
``state_dict`` keys; any other tensor an op reads that was not computed by a traced op (a
constant made in Python) is stored as a constant. Comparisons run outside the ops, so the
trace watches them: a mask one computes from an input is refused where it would be frozen (as is
a mask input of ``nn.MultiheadAttention``, which reads its masks with NumPy, and an input no
traced op reads). ``onnx.checker`` checks the result.

Needs the ``onnx`` extra (``pip install "firefly-dl[onnx]"``: onnx, and onnxruntime to run the
file).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from firefly import autograd
from firefly.nn.layers.attention import MultiheadAttention
from firefly.nn.layers.dropout import Dropout
from firefly.nn.layers.norm import _BatchNorm
from firefly.nn.layers.recurrent import RNNBase
from firefly.nn.module import Module
from firefly.nn.utils.rnn import PackedSequence
from firefly.tensor import Tensor, set_compare_hook

__all__ = ["export", "supported_ops"]


class _Unsupported(Exception):
    """An op (or one of its settings) that has no ONNX mapping; ``export`` adds the module."""


class _Graph:
    """The ONNX graph being built: nodes, initializers, and the value name of each traced
    Tensor (kept alive in ``keep`` so that ids stay unique while tracing)."""

    def __init__(self, helper: Any, opset: int, parameters: dict[int, str]) -> None:
        self.helper, self.opset = helper, opset
        self.nodes: list = []
        self.initializers: dict[str, np.ndarray] = {}
        self.names: dict[int, str] = {}
        self.array_names: dict[int, str] = {}  # id(traced Tensor's array) -> its value name
        self.keep: list = []
        self.parameters = parameters  # id(parameter or buffer array) -> its state_dict key
        # A recurrent layer op's value name -> (T, the names of its parts: the outputs
        # (T, B, H), then the final h (B, H) and c): the layer's slices of it take the parts,
        # so that neither T nor B is baked into a Slice.
        self.recurrent_parts: dict[str, tuple[int, list[str]]] = {}
        # id(array) -> the bool Tensor a comparison (which runs outside the ops, unseen by the
        # op hook) computed from a traced value: a mask that the graph cannot compute
        self.derived: dict[int, Tensor] = {}
        self.count = 0

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def node(self, op_type: str, inputs: Sequence[str], **attributes: Any) -> str:
        output = self.fresh(op_type)
        self.nodes.append(
            self.helper.make_node(
                op_type, list(inputs), [output], name=f"{op_type}_{self.count}", **attributes
            )
        )
        return output

    def multi_node(self, op_type: str, inputs: Sequence[str], outputs: int, **attributes: Any):
        """A node with several outputs (an optional input is named ""); their names."""
        names = [self.fresh(f"{op_type}_out{k}") for k in range(outputs)]
        self.nodes.append(
            self.helper.make_node(
                op_type, list(inputs), names, name=f"{op_type}_{self.count}", **attributes
            )
        )
        return names

    def traced(self, source: Any) -> bool:
        """Whether ``source`` is a value computed in the graph (from the model's inputs)."""
        if isinstance(source, Tensor):
            if id(source) in self.names:
                return True
            source = source._data
        return isinstance(source, np.ndarray) and id(source) in self.array_names

    def is_constant(self, source: Any) -> bool:
        """Neither computed in the graph nor a parameter or buffer: a constant made in Python."""
        array = source._data if isinstance(source, Tensor) else source
        return not self.traced(source) and id(array) not in self.parameters

    def constant(self, value: Any, dtype: Any = None) -> str:
        array = np.asarray(value, dtype=dtype)
        name = self.fresh("const")
        self.initializers[name] = array
        return name

    def value(self, source: Any, dtype: np.dtype) -> str:
        """The name of an op input: a traced Tensor's value, a parameter or buffer (by its
        state_dict key), or a constant (other Tensors, arrays, Python numbers in ``dtype``)."""
        if isinstance(source, Tensor):
            name = self.names.get(id(source))
            if name is not None:
                return name
            source = source._data
        if isinstance(source, np.ndarray):
            name = self.array_names.get(id(source))  # an attribute holding a traced value
            if name is not None:
                return name
            key = self.parameters.get(id(source))
            if key is not None:
                self.initializers[key] = source
                return key
            return self.constant(source)
        return self.constant(source, dtype)

    def derived_from_inputs(self, source: Any) -> bool:
        """Whether ``source`` was computed from the inputs outside the traced ops (a
        comparison such as ``ids == 0``): stored as a constant, it would be frozen."""
        array = source._data if isinstance(source, Tensor) else source
        return id(array) in self.derived

    def bind(self, tensor: Tensor, name: str) -> None:
        self.names[id(tensor)] = name
        self.array_names[id(tensor._data)] = name
        self.keep.append(tensor)


# ----------------------------------------------------------------------------- op mappings
def _pair(value: Any) -> list[int]:
    return [int(value)] * 2 if np.ndim(value) == 0 else [int(v) for v in value]


def _conv_pads(padding: Any, kernel: list[int], dilation: list[int]) -> list[int]:
    """ONNX's ``pads`` (all starts, then all ends) for torch's ``padding``."""
    if padding == "valid":
        return [0] * 2 * len(kernel)
    if padding == "same":  # torch's 'same': the extra pixel of an odd total goes at the end
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return [t // 2 for t in totals] + [t - t // 2 for t in totals]
    pads = [int(padding)] * len(kernel) if np.ndim(padding) == 0 else [int(p) for p in padding]
    return pads + pads


def _conv(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
    weight = args[1]
    kernel = list(weight.shape[2:])
    spatial = len(kernel)
    as_list = _pair if spatial == 2 else (lambda v: [int(v)] if np.ndim(v) == 0 else list(v))
    dilation = as_list(attrs.get("dilation", 1))
    return g.node(
        "Conv",
        [x, g.value(weight, out.dtype), g.value(args[2], out.dtype)],
        kernel_shape=kernel,
        strides=as_list(attrs.get("stride", 1)),
        pads=_conv_pads(attrs.get("padding", 0), kernel, dilation),
        dilations=dilation,
        group=int(attrs.get("groups", 1)),
    )


def _pool(kind: str) -> Callable:
    def build(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
        kernel = _pair(attrs.get("kernel_size", 2))
        stride = attrs.get("stride")
        settings: dict[str, Any] = dict(
            kernel_shape=kernel,
            strides=kernel if stride is None else _pair(stride),
            pads=_pair(attrs.get("padding", 0)) * 2,
            ceil_mode=int(bool(attrs.get("ceil_mode", False))),
        )
        if kind == "MaxPool":
            settings["dilations"] = _pair(attrs.get("dilation", 1))
        else:
            if attrs.get("divisor_override") is not None:
                raise _Unsupported("avg_pool2d with divisor_override")
            settings["count_include_pad"] = int(bool(attrs.get("count_include_pad", True)))
        return g.node(kind, [x], **settings)

    return build


def _adaptive_avg_pool2d(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
    size = _pair(attrs.get("output_size", 1))
    if size == [1, 1]:
        return g.node("GlobalAveragePool", [x])
    height, width = args[0].shape[-2:]
    if height % size[0] or width % size[1]:
        raise _Unsupported(
            f"adaptive_avg_pool2d from {height}x{width} to {size[0]}x{size[1]} (not a divisor)"
        )
    kernel = [height // size[0], width // size[1]]
    return g.node("AveragePool", [x], kernel_shape=kernel, strides=kernel)


def _linear(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
    weight, bias = (g.value(a, out.dtype) for a in args[1:3])
    if args[0].ndim == 2:
        return g.node("Gemm", [x, weight, bias], transB=1)
    return g.node("Add", [g.node("MatMul", [x, g.node("Transpose", [weight], perm=[1, 0])]), bias])


def _batch_norm(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
    if attrs.get("training") or attrs.get("running_mean") is None:
        raise _Unsupported("batch_norm with batch statistics (training, or no running stats)")
    inputs = [x] + [g.value(a, out.dtype) for a in args[1:3]]
    inputs += [g.value(attrs[k], out.dtype) for k in ("running_mean", "running_var")]
    return g.node("BatchNormalization", inputs, epsilon=float(attrs.get("eps", 1e-5)))


def _layer_norm(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
    axes = len(attrs["normalized_shape"])
    inputs = [x] + [g.value(a, out.dtype) for a in args[1:3]]
    return g.node("LayerNormalization", inputs, axis=-axes, epsilon=float(attrs.get("eps", 1e-5)))


def _reshape(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
    before, after = tuple(args[0].shape), tuple(out.shape)
    # An unsqueeze or squeeze (one size-1 dimension more or less) names only that axis, so the
    # other dimensions (batch, time) stay free.
    for axis in range(len(after)):
        if len(after) == len(before) + 1 and after[axis] == 1:
            if after[:axis] + after[axis + 1 :] == before:
                return g.node("Unsqueeze", [x, g.constant([axis], np.int64)])
    for axis in range(len(before)):
        if len(before) == len(after) + 1 and before[axis] == 1:
            if before[:axis] + before[axis + 1 :] == after:
                return g.node("Squeeze", [x, g.constant([axis], np.int64)])
    shape = list(out.shape)
    # ONNX's 0 copies the input's dimension: the leading dimensions the reshape keeps (batch,
    # sequence: attention's split of the features into heads and back) may vary.
    for axis, size in enumerate(args[0].shape[: len(shape)]):
        if size != shape[axis]:
            break
        shape[axis] = 0
    return g.node("Reshape", [x, g.constant(shape, np.int64)])


def _transpose(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
    axes = attrs.get("axes")
    perm = list(range(args[0].ndim))[::-1] if axes is None else [int(a) for a in axes]
    return g.node("Transpose", [x], perm=perm)


def _reduce(kind: str) -> Callable:
    def build(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
        axis = attrs.get("axis")
        ndim = args[0].ndim
        if axis is None:
            axes = list(range(ndim))
        else:
            axes = [int(a) % ndim for a in (axis if np.ndim(axis) else [axis])]
        keepdims = int(bool(attrs.get("keepdims", False)))
        if kind == "ReduceSum" or g.opset >= 18:  # axes became an input
            return g.node(kind, [x, g.constant(axes, np.int64)], keepdims=keepdims)
        return g.node(kind, [x], axes=axes, keepdims=keepdims)

    return build


def _unary(kind: str) -> Callable:
    return lambda g, x, args, attrs, out: g.node(kind, [x])


def _binary(kind: str) -> Callable:
    return lambda g, x, args, attrs, out: g.node(kind, [x, g.value(args[1], out.dtype)])


def _scalar(g: _Graph, value: float, like: Tensor) -> str:
    return g.constant(value, like.dtype)


def _gelu(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
    half = g.node("Mul", [x, _scalar(g, 0.5, out)])
    if attrs.get("approximate", "none") == "tanh":
        cube = g.node("Mul", [g.node("Mul", [x, x]), x])
        inner = g.node("Add", [x, g.node("Mul", [cube, _scalar(g, 0.044715, out)])])
        scaled = g.node("Mul", [inner, _scalar(g, math.sqrt(2 / math.pi), out)])
        return g.node("Mul", [half, g.node("Add", [g.node("Tanh", [scaled]), _scalar(g, 1, out)])])
    scaled = g.node("Div", [x, _scalar(g, math.sqrt(2), out)])
    return g.node("Mul", [half, g.node("Add", [g.node("Erf", [scaled]), _scalar(g, 1, out)])])


def _clip(low_key: str, high_key: str) -> Callable:
    def build(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
        low, high = attrs.get(low_key), attrs.get(high_key)
        if low_key == "min_val":  # hardtanh's defaults
            low, high = attrs.get("min_val", -1.0), attrs.get("max_val", 1.0)
        bounds = ["" if v is None else _scalar(g, v, out) for v in (low, high)]
        return g.node("Clip", [x, *bounds])

    return build


def _softplus(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
    beta, threshold = attrs.get("beta", 1.0), attrs.get("threshold", 20.0)
    if beta != 1:
        raise _Unsupported(f"softplus with beta={beta}")
    soft = g.node("Softplus", [x])
    # torch's softplus is x itself above the threshold
    above = g.node("Greater", [x, _scalar(g, threshold, out)])
    return g.node("Where", [above, x, soft])


def _cast(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
    to = g.helper.np_dtype_to_tensor_dtype(out.dtype)
    return g.node("Cast", [x], to=int(to))


def _cat(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
    return g.node("Concat", [x, g.value(args[1], out.dtype)], axis=int(attrs.get("dim", 0)))


def _expand(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
    # ONNX's Expand broadcasts both ways: a 1 keeps the input's size there, so the dimensions
    # the input already has (the batch among them) are not baked in.
    shape = list(out.shape)
    before = len(shape) - args[0].ndim
    for axis, size in enumerate(args[0].shape):
        if size == shape[before + axis]:
            shape[before + axis] = 1
    return g.node("Expand", [x, g.constant(shape, np.int64)])


def _embedding(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
    # The indices are the op's attribute (an array): an input of the model when traced.
    indices = g.value(attrs["indices"], np.dtype(np.int64))
    return g.node("Gather", [x, indices], axis=0)


_END = np.iinfo(np.int64).max  # ONNX Slice's "to the end"


def _getitem(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
    """Basic indexing: ints and slices with a positive step (and one Ellipsis); a full slice
    ``:`` takes nothing, so the batch dimension stays free."""
    index = attrs.get("index", ())
    if x in g.recurrent_parts:
        part = _recurrent_part(g, x, index)
        if part is not None:
            return part
    items = list(index) if isinstance(index, tuple) else [index]
    ndim = args[0].ndim
    ellipses = [i for i, item in enumerate(items) if item is Ellipsis]
    if ellipses:
        at = ellipses[0]
        items[at : at + 1] = [slice(None)] * (ndim - len(items) + 1)
    starts, ends, axes, steps, dropped = [], [], [], [], []
    for axis, item in enumerate(items):
        if isinstance(item, slice):
            if item == slice(None):
                continue
            step = 1 if item.step is None else int(item.step)
            if step < 1:
                raise _Unsupported(f"getitem with the slice {item}")
            starts.append(0 if item.start is None else int(item.start))
            ends.append(_END if item.stop is None else int(item.stop))
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            step = 1
            starts.append(int(item))
            ends.append(_END if item == -1 else int(item) + 1)
            dropped.append(axis)
        else:
            raise _Unsupported(f"getitem with the index {item!r}")
        axes.append(axis)
        steps.append(step)
    if not axes:
        return g.node("Identity", [x])
    columns = [g.constant(v, np.int64) for v in (starts, ends, axes, steps)]
    sliced = g.node("Slice", [x, *columns])
    if not dropped:
        return sliced
    return g.node("Squeeze", [sliced, g.constant(dropped, np.int64)])


def _log_base(base: float) -> Callable:
    def build(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
        return g.node("Div", [g.node("Log", [x]), _scalar(g, math.log(base), out)])

    return build


def _length(g: _Graph, x: str) -> str:
    """The size of ``x``'s dimension -2 (a sequence length) as a 0-d int64, read at run time."""
    return g.node("Gather", [g.node("Shape", [x]), g.constant(-2, np.int64)], axis=0)


def _causal_mask(g: _Graph, query: str, key: str) -> str:
    """(Tq, Tk) bool, True above the diagonal (key j > query i: masked, torch's top-left
    alignment), built from the run-time lengths so that the sequence length may vary."""
    zero, one = g.constant(0, np.int64), g.constant(1, np.int64)
    rows = g.node("Range", [zero, _length(g, query), one])
    columns = g.node("Range", [zero, _length(g, key), one])
    rows = g.node("Unsqueeze", [rows, g.constant([1], np.int64)])
    return g.node("Greater", [columns, rows])


def _reduce_min_last(g: _Graph, x: str) -> str:
    if g.opset >= 18:  # axes became an input
        return g.node("ReduceMin", [x, g.constant([-1], np.int64)], keepdims=1)
    return g.node("ReduceMin", [x], axes=[-1], keepdims=1)


def _attention(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
    """``scaled_dot_product_attention`` as MatMul, Mul, Add, Softmax and MatMul, the masks
    (-inf in the bias, False in ``bool_mask``, the causal triangle) put in with Where; a row
    with no key left gives zeros, as firefly's op. Dropout is exported as in eval mode (off),
    as the dropout op is."""
    query, key, value, bias = args
    dtype = out.dtype
    key_t = g.node(
        "Transpose", [g.value(key, dtype)], perm=[*range(key.ndim - 2), key.ndim - 1, key.ndim - 2]
    )
    scale = attrs.get("scale")
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1]) if query.shape[-1] else 1.0
    scores = g.node("Mul", [g.node("MatMul", [x, key_t]), _scalar(g, float(scale), out)])
    masks = []
    bias_array = bias._data if isinstance(bias, Tensor) else np.asarray(bias)
    if bias_array.ndim > 0:
        bias_name = g.value(bias, dtype)
        scores = g.node("Add", [scores, bias_name])
        if g.traced(bias):
            masks.append(g.node("IsInf", [bias_name], detect_positive=0))
        elif np.isneginf(bias_array).any():
            masks.append(g.constant(np.isneginf(bias_array)))
    keep = attrs.get("bool_mask")
    for mask in (keep, bias):
        if mask is not None and g.derived_from_inputs(mask):
            raise _Unsupported(
                "scaled_dot_product_attention with a mask computed from the inputs by a "
                "comparison (outside the traced ops, so it would be frozen at the example's "
                "values)"
            )
    if keep is not None:
        if g.traced(keep):
            masks.append(g.node("Not", [g.value(keep, np.dtype(np.bool_))]))
        else:
            masks.append(g.constant(~np.asarray(getattr(keep, "_data", keep), dtype=np.bool_)))
    causal = bool(attrs.get("is_causal"))
    if causal:
        masks.append(_causal_mask(g, x, g.value(key, dtype)))
    if not masks:
        return g.node("MatMul", [g.node("Softmax", [scores], axis=-1), g.value(value, dtype)])
    masked = masks[0]
    for other in masks[1:]:
        masked = g.node("Or", [masked, other])
    kept = g.node("Where", [masked, _scalar(g, -np.inf, out), scores])
    probs = g.node("Softmax", [kept], axis=-1)
    if not (causal and len(masks) == 1):  # the causal triangle alone leaves every row a key
        # a row whose keys are all masked: Softmax gives NaN there, firefly's op zeros
        as_float = g.node("Cast", [masked], to=int(g.helper.np_dtype_to_tensor_dtype(dtype)))
        dead = g.node(
            "Cast",
            [_reduce_min_last(g, as_float)],
            to=int(g.helper.np_dtype_to_tensor_dtype(np.dtype(np.bool_))),
        )
        probs = g.node("Where", [dead, _scalar(g, 0.0, out), probs])
    return g.node("MatMul", [probs, g.value(value, dtype)])


def _packed_attention(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
    """``packed_self_attention`` as the torch lines it stands for: Split of qkv into q, k and
    v, each Reshape to (..., T, H, D) and Transpose to (..., H, T, D); MatMul, Mul, the causal
    triangle put in with Where, Softmax and MatMul; Transpose and Reshape back to (..., T, C).
    Dropout is exported as in eval mode (off), as the dropout op is."""
    (qkv,) = args
    heads, width = int(attrs.get("num_heads", 1)), int(qkv.shape[-1])
    head, ndim = width // (3 * heads), qkv.ndim
    swap = [*range(ndim - 2), ndim - 1, ndim - 2, ndim]  # (..., T, H, D) <-> (..., H, T, D)
    split_heads = g.constant([0] * (ndim - 1) + [heads, head], np.int64)  # 0: keep that size
    q, k, v = (
        g.node("Transpose", [g.node("Reshape", [piece, split_heads])], perm=swap)
        for piece in g.multi_node("Split", [x, g.constant([width // 3] * 3, np.int64)], 3, axis=-1)
    )
    scale = attrs.get("scale")
    if scale is None:
        scale = 1.0 / math.sqrt(head) if head else 1.0
    key_t = g.node("Transpose", [k], perm=[*range(ndim - 1), ndim, ndim - 1])
    scores = g.node("Mul", [g.node("MatMul", [q, key_t]), _scalar(g, float(scale), out)])
    if attrs.get("is_causal"):
        scores = g.node("Where", [_causal_mask(g, q, k), _scalar(g, -np.inf, out), scores])
    attended = g.node("MatMul", [g.node("Softmax", [scores], axis=-1), v])
    merge_heads = g.constant([0] * (ndim - 1) + [width // 3], np.int64)
    return g.node("Reshape", [g.node("Transpose", [attended], perm=swap), merge_heads])


# Gate blocks in ONNX's order, as indices of torch's blocks: the LSTM's i, o, f, c from
# torch's i, f, g, o; the GRU's z, r, h from torch's r, z, n. The RNN has one block.
_GATE_ORDERS = {"lstm_layer": [0, 3, 1, 2], "gru_layer": [1, 0, 2], "rnn_layer": [0]}


def _recurrent_array(g: _Graph, source: Any, op_name: str, label: str) -> np.ndarray:
    """A weight or bias of a recurrent layer op with its gate blocks in ONNX's order."""
    if g.traced(source):
        raise _Unsupported(f"{op_name} with {label} computed in the forward")
    array = source._data if isinstance(source, Tensor) else np.asarray(source)
    order = _GATE_ORDERS[op_name]
    blocks = np.split(array, len(order), axis=0)
    return np.concatenate([blocks[k] for k in order], axis=0)


def _recurrent_initializer(g: _Graph, key_source: Any, array: np.ndarray, label: str) -> str:
    """``array`` under a leading direction axis as an initializer, named after the state_dict
    key of ``key_source`` (with ``label`` for its part) when it is a parameter."""
    source = key_source._data if isinstance(key_source, Tensor) else key_source
    key = g.parameters.get(id(source))
    name = g.fresh(label) if key is None else f"{key}.onnx_{label}"
    g.initializers[name] = array[None]
    return name


def _recurrent(op_name: str) -> Callable:
    """``rnn_layer``/``lstm_layer``/``gru_layer`` (one layer, one direction) as ONNX's
    RNN/LSTM/GRU. The value is the op's (T + states, B, H) array; its parts go to
    ``recurrent_parts``, where the layer's slices find them."""

    def build(g: _Graph, x: str, args: tuple, attrs: dict, out: Tensor) -> str:
        if attrs.get("lengths") is not None:
            raise _Unsupported(
                f"{op_name} with sequence lengths (a PackedSequence): packed sequences are "
                "not supported in ONNX export; pass the padded batch as a Tensor"
            )
        count = 2 if op_name == "lstm_layer" else 1
        states, (w_ih, w_hh, b_ih, _) = args[1 : 1 + count], args[1 + count :]
        hidden = int(states[0].shape[-1])
        # ONNX's W, R and B (both biases in one row), named after the torch parameters
        arrays = {
            label: _recurrent_array(g, source, op_name, label)
            for label, source in zip(
                ("weight_ih", "weight_hh", "bias_ih", "bias_hh"), args[1 + count :]
            )
        }
        weights = [
            _recurrent_initializer(g, w_ih, arrays["weight_ih"], "W"),
            _recurrent_initializer(g, w_hh, arrays["weight_hh"], "R"),
            _recurrent_initializer(
                g, b_ih, np.concatenate([arrays["bias_ih"], arrays["bias_hh"]]), "B"
            ),
        ]
        initial = []
        for state in states:
            if g.is_constant(state) and not np.any(np.asarray(state._data)):
                initial.append("")  # ONNX's default initial state is zeros, at any batch size
            else:
                initial.append(
                    g.node("Unsqueeze", [g.value(state, out.dtype), g.constant([0], np.int64)])
                )
        settings: dict[str, Any] = {
            "hidden_size": hidden,
            "direction": "reverse" if attrs.get("reverse") else "forward",
        }
        if op_name == "gru_layer":
            settings["linear_before_reset"] = 1  # torch's GRU: r multiplies (W_hn h + b_hn)
        if op_name == "rnn_layer":
            settings["activations"] = [attrs.get("nonlinearity", "tanh").capitalize()]
        kind = {"lstm_layer": "LSTM", "gru_layer": "GRU", "rnn_layer": "RNN"}[op_name]
        inputs = [x, *weights, "", *initial]
        while inputs[-1] == "":  # no trailing optional inputs
            inputs.pop()
        results = g.multi_node(kind, inputs, 1 + count, **settings)
        axis0 = g.constant([0], np.int64)
        outputs = g.node("Squeeze", [results[0], g.constant([1], np.int64)])  # (T, 1, B, H)
        finals = [g.node("Squeeze", [r, axis0]) for r in results[1:]]  # each (1, B, H)
        whole = g.node("Concat", [outputs, *results[1:]], axis=0)
        g.recurrent_parts[whole] = (int(args[0].shape[0]), [outputs, *finals])
        return whole

    return build


def _recurrent_part(g: _Graph, x: str, index: Any) -> str | None:
    """The part of a recurrent op's value that ``index`` takes, when it is one the layer takes
    (``[:T]``, the outputs, or ``[T + k]``, a final state); otherwise None."""
    steps, parts = g.recurrent_parts[x]
    if index == slice(None, steps, None):
        return parts[0]
    if isinstance(index, (int, np.integer)) and steps <= index < steps + len(parts) - 1:
        return parts[int(index) - steps + 1]
    return None


_MAPPINGS: dict[str, Callable] = {
    "rnn_layer": _recurrent("rnn_layer"),
    "lstm_layer": _recurrent("lstm_layer"),
    "gru_layer": _recurrent("gru_layer"),
    "linear": _linear,
    "matmul": _binary("MatMul"),
    "scaled_dot_product_attention": _attention,
    "packed_self_attention": _packed_attention,
    "conv1d": _conv,
    "conv2d": _conv,
    "max_pool2d": _pool("MaxPool"),
    "avg_pool2d": _pool("AveragePool"),
    "adaptive_avg_pool2d": _adaptive_avg_pool2d,
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "reshape": _reshape,
    "getitem": _getitem,
    "embedding": _embedding,
    "transpose": _transpose,
    "expand": _expand,
    "cat": _cat,
    "cast": _cast,
    "sum": _reduce("ReduceSum"),
    "mean": _reduce("ReduceMean"),
    "max": _reduce("ReduceMax"),
    "softmax": lambda g, x, args, attrs, out: g.node("Softmax", [x], axis=attrs.get("axis", -1)),
    "log_softmax": lambda g, x, args, attrs, out: g.node(
        "LogSoftmax", [x], axis=attrs.get("axis", -1)
    ),
    # Dropout is traced in eval mode, where it is the identity (a functional dropout with
    # training=True exports its eval behaviour too, as torch's exporter does).
    "dropout": _unary("Identity"),
    "add": _binary("Add"),
    "sub": _binary("Sub"),
    "mul": _binary("Mul"),
    "div": _binary("Div"),
    "pow": _binary("Pow"),
    "maximum": _binary("Max"),
    "minimum": _binary("Min"),
    "relu": _unary("Relu"),
    "tanh": _unary("Tanh"),
    "sigmoid": _unary("Sigmoid"),
    "exp": _unary("Exp"),
    "log": _unary("Log"),
    "sqrt": _unary("Sqrt"),
    "abs": _unary("Abs"),
    "neg": _unary("Neg"),
    "sign": _unary("Sign"),
    "reciprocal": _unary("Reciprocal"),
    "floor": _unary("Floor"),
    "ceil": _unary("Ceil"),
    "round": _unary("Round"),
    "erf": _unary("Erf"),
    "sin": _unary("Sin"),
    "cos": _unary("Cos"),
    "tan": _unary("Tan"),
    "asin": _unary("Asin"),
    "acos": _unary("Acos"),
    "atan": _unary("Atan"),
    "sinh": _unary("Sinh"),
    "cosh": _unary("Cosh"),
    "square": lambda g, x, args, attrs, out: g.node("Mul", [x, x]),
    "rsqrt": lambda g, x, args, attrs, out: g.node("Reciprocal", [g.node("Sqrt", [x])]),
    "expm1": lambda g, x, args, attrs, out: g.node("Sub", [g.node("Exp", [x]), _scalar(g, 1, out)]),
    "log1p": lambda g, x, args, attrs, out: g.node("Log", [g.node("Add", [x, _scalar(g, 1, out)])]),
    "log2": _log_base(2),
    "log10": _log_base(10),
    "silu": lambda g, x, args, attrs, out: g.node("Mul", [x, g.node("Sigmoid", [x])]),
    "log_sigmoid": lambda g, x, args, attrs, out: g.node(
        "Neg", [g.node("Softplus", [g.node("Neg", [x])])]
    ),
    "gelu": _gelu,
    "leaky_relu": lambda g, x, args, attrs, out: g.node(
        "LeakyRelu", [x], alpha=float(attrs.get("negative_slope", 0.01))
    ),
    "elu": lambda g, x, args, attrs, out: g.node("Elu", [x], alpha=float(attrs.get("alpha", 1.0))),
    "hardtanh": _clip("min_val", "max_val"),
    "clamp": _clip("min", "max"),
    "softplus": _softplus,
}


def supported_ops() -> list[str]:
    """The names of the firefly ops that ``export`` maps to ONNX."""
    return sorted(_MAPPINGS)


# ----------------------------------------------------------------------------- export
def _dynamic_dims(dynamic_axes: Any, name: str) -> dict[int, str]:
    """``{axis: symbolic name}`` for ``name`` from torch's ``dynamic_axes`` (a dict of axis
    lists or of ``{axis: name}`` dicts)."""
    axes = (dynamic_axes or {}).get(name)
    if axes is None:
        return {}
    if isinstance(axes, dict):
        return {int(a): str(n) for a, n in axes.items()}
    return {int(a): f"{name}_dim{a}" for a in axes}


def _flatten(result: Any) -> list:
    """The forward's outputs in order, nested tuples flattened and Nones left out, as torch's
    exporter does (an LSTM's ``(output, (h_n, c_n))`` is three outputs)."""
    if isinstance(result, (tuple, list)):
        return [leaf for item in result for leaf in _flatten(item)]
    return [] if result is None else [result]


def _prune(graph: _Graph, output_names: Sequence[str]) -> None:
    """Drops the nodes and initializers no output needs (a recurrent op's whole value, when the
    layer takes only its parts)."""
    needed = set(output_names)
    kept = []
    for node in reversed(graph.nodes):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    graph.nodes = kept[::-1]
    graph.initializers = {k: v for k, v in graph.initializers.items() if k in needed}


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError(
            'firefly.onnx.export needs the onnx package: pip install "firefly-dl[onnx]"'
        ) from None
    return onnx


def export(
    model: Module,
    example_inputs: Any,
    path: Any,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_axes: dict[str, Any] | None = None,
    opset_version: int = 17,
) -> None:
    """Write ``model``'s forward on ``example_inputs`` (a Tensor or array, or a tuple of them)
    to the ONNX file ``path``, as ``torch.onnx.export``.

    ``input_names``/``output_names`` name the graph's inputs and outputs (default ``input_0``,
    ``output_0``, ...). ``dynamic_axes`` marks axes whose size may differ from the example's,
    torch's format: ``{"input_0": {0: "batch"}, "output_0": {0: "batch"}}`` (or axis lists).
    The forward is traced in eval mode (a model in training mode with dropout or batch norm
    gets a warning: those are exported as in eval mode) and the model is left in its mode.
    An op with no ONNX mapping raises a ValueError naming the op and the module that ran it;
    ``supported_ops()`` lists those that have one."""
    onnx = _import_onnx()
    if not isinstance(model, Module):
        raise TypeError(f"onnx.export: model must be a firefly Module, got {type(model).__name__}")
    if not isinstance(opset_version, int) or not 13 <= opset_version <= 21:
        raise ValueError(f"onnx.export: opset_version must be from 13 to 21, got {opset_version!r}")
    examples = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    inputs = []
    for example in examples:
        if not isinstance(example, Tensor):
            array = np.asarray(example)  # integer inputs (token ids) keep their dtype
            example = Tensor(array, dtype=array.dtype if array.dtype.kind in "iub" else None)
        inputs.append(example)
    input_names = list(input_names or [f"input_{i}" for i in range(len(inputs))])
    if len(input_names) != len(inputs):
        raise ValueError(
            f"onnx.export: {len(input_names)} input_names for {len(inputs)} example inputs"
        )

    parameters = {id(p._data): name for name, p in model.named_parameters()}
    parameters.update(
        {id(b._data): name for name, b in model.named_buffers() if isinstance(b, Tensor)}
    )
    graph = _Graph(onnx.helper, opset_version, parameters)
    for tensor, name in zip(inputs, input_names):
        graph.bind(tensor, name)

    running: list[str] = []  # the modules whose forward is running, outermost first
    failures: list[BaseException] = []

    def record(op: Any, args: tuple, attrs: dict, out: Tensor) -> None:
        if failures:
            return
        inputs_seen = [*args, *(a for a in attrs.values() if isinstance(a, (Tensor, np.ndarray)))]
        if all(graph.is_constant(a) for a in inputs_seen if isinstance(a, (Tensor, np.ndarray))):
            # Computed from constants only (an RNN's zero initial state, sliced): the output
            # stays unbound, so that a later use stores its value as a constant.
            return
        mapping = _MAPPINGS.get(op.name)
        try:
            if mapping is None:
                raise _Unsupported(f"op '{op.name}'")
            first = graph.value(args[0], out.dtype) if args else None
            graph.bind(out, mapping(graph, first, args, attrs, out))
        except _Unsupported as exc:
            where = running[-1] if running else "the model's own forward"
            module = model.get_submodule(where) if running and where else model
            failures.append(
                ValueError(
                    f"onnx.export: {exc} has no ONNX mapping; it ran in module "
                    f"'{where or type(model).__name__}' ({type(module).__name__}). Ops with a "
                    f"mapping: {', '.join(supported_ops())}"
                )
            )

    def enter(module: Module, args: tuple, name: str) -> None:
        running.append(name)
        if isinstance(module, RNNBase) and args and isinstance(args[0], PackedSequence):
            # before any failure of the packing's own ops: this is the cause
            failures.insert(
                0,
                ValueError(
                    f"onnx.export: packed sequences are not supported in ONNX export; module "
                    f"'{name or type(model).__name__}' ({type(module).__name__}) got a "
                    "PackedSequence: pass the padded batch as a Tensor"
                ),
            )

    def leave(module: Module, args: tuple, output: Any) -> None:  # None: the output stays
        running.pop()

    def check_masks(module: Module, args: tuple, kwargs: dict, name: str) -> None:
        # MultiheadAttention merges its masks into a bias with NumPy, outside the traced ops:
        # a mask that is (or comes from) an input would be frozen at the example's values.
        masks = {"key_padding_mask": args[3] if len(args) > 3 else None}
        masks["attn_mask"] = args[5] if len(args) > 5 else None
        masks.update({k: v for k, v in kwargs.items() if k in masks})
        for which, mask in masks.items():
            if mask is not None and (graph.traced(mask) or graph.derived_from_inputs(mask)):
                failures.append(
                    ValueError(
                        f"onnx.export: module '{name or type(model).__name__}' "
                        f"({type(module).__name__}) got a {which} that is or comes from an "
                        "input of the model; MultiheadAttention turns its masks into a bias "
                        "with NumPy, outside the traced ops, so the graph would freeze the "
                        "example's mask. Make the mask a constant of the model, or use "
                        "is_causal=True (its mask follows the sequence length), or call "
                        "F.scaled_dot_product_attention with the mask as an input"
                    )
                )

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(lambda m, a, n=name: enter(m, a, n)))
        handles.append(module.register_forward_hook(leave))
        if isinstance(module, MultiheadAttention):
            handles.append(
                module.register_forward_pre_hook(
                    lambda m, a, k, n=name: check_masks(m, a, k, n), with_kwargs=True
                )
            )

    def watch_comparison(tensor: Tensor, other: Any, result: Tensor) -> None:
        # Comparisons run outside the ops: a mask computed from an input is noted here.
        if any(graph.traced(x) or graph.derived_from_inputs(x) for x in (tensor, other)):
            graph.derived[id(result._data)] = result

    was_training = model.training
    changing = [
        f"'{name or type(model).__name__}' ({type(m).__name__})"
        for name, m in model.named_modules()
        if isinstance(m, (Dropout, _BatchNorm))
        or (isinstance(m, (RNNBase, MultiheadAttention)) and m.dropout)
    ]
    if was_training and changing:
        warnings.warn(
            "onnx.export: the model is in training mode; it is exported in eval mode, as "
            "torch.onnx.export does: dropout off (also between recurrent layers), batch norm "
            f"on its running statistics (modules {', '.join(changing)})",
            UserWarning,
            stacklevel=2,
        )
    model.eval()
    previous = autograd.set_op_hook(record)
    previous_compare = set_compare_hook(watch_comparison)
    try:
        with autograd.no_grad():
            result = model(*inputs)
    finally:
        set_compare_hook(previous_compare)
        autograd.set_op_hook(previous)
        for handle in handles:
            handle.remove()
        if was_training:
            model.train()
    if failures:
        raise failures[0]

    outputs = _flatten(result)
    if not all(isinstance(o, Tensor) for o in outputs):
        raise TypeError(
            "onnx.export: the model's forward must return a Tensor or (nested) tuples of them"
        )
    output_names = list(output_names or [f"output_{i}" for i in range(len(outputs))])
    if len(output_names) != len(outputs):
        raise ValueError(
            f"onnx.export: {len(output_names)} output_names for {len(outputs)} outputs"
        )
    for tensor, name in zip(outputs, output_names):
        graph.nodes.append(
            onnx.helper.make_node("Identity", [graph.value(tensor, tensor.dtype)], [name])
        )

    _prune(graph, output_names)
    used = {name for node in graph.nodes for name in node.input}
    for tensor, name in zip(inputs, input_names):
        if name not in used:
            raise ValueError(
                f"onnx.export: input '{name}' (shape {tuple(tensor.shape)}, {tensor.dtype}) is "
                "used by no traced op: the forward read its values in Python (with .numpy(), "
                "say), so the graph would keep the example's values and ignore the input. "
                "Compute with firefly's ops on it, or make the value a constant of the model"
            )
    unknown = set(dynamic_axes or {}) - set(input_names) - set(output_names)
    if unknown:
        raise ValueError(
            f"onnx.export: dynamic_axes names {sorted(unknown)}, which are neither input_names "
            f"{input_names} nor output_names {output_names}"
        )

    def declare(name: str, tensor: Tensor, fixed: bool) -> Any:
        dims = _dynamic_dims(dynamic_axes, name)
        shape: list[str | int | None] = [
            dims.get(axis, size) for axis, size in enumerate(tensor.shape)
        ]
        if not (fixed or dims):  # an output whose sizes may follow a dynamic input's: unnamed
            shape = [None] * tensor.ndim
        elem = onnx.helper.np_dtype_to_tensor_dtype(tensor.dtype)
        return onnx.helper.make_tensor_value_info(name, elem, shape)

    any_dynamic = bool(dynamic_axes)
    proto = onnx.helper.make_model(
        onnx.helper.make_graph(
            graph.nodes,
            type(model).__name__,
            [declare(n, t, True) for t, n in zip(inputs, input_names)],
            [declare(n, t, not any_dynamic) for t, n in zip(outputs, output_names)],
            [onnx.numpy_helper.from_array(a, name) for name, a in graph.initializers.items()],
        ),
        opset_imports=[onnx.helper.make_opsetid("", opset_version)],
        producer_name="firefly",
    )
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
