"""Recurrent layers: RNN (tanh or relu), LSTM and GRU over whole sequences, and their one-step
cells, with torch's arguments, parameter names, layouts and initialization, so that torch
state_dicts load and outputs match.

Each layer and direction is one op (``rnn_layer``, ``lstm_layer``, ``gru_layer``: the whole time
loop in one kernel each way, see ``firefly.ops.recurrent``). The cells run the same ops over
one step.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from firefly import ops, random
from firefly.functions import cat, stack
from firefly.nn import functional as F
from firefly.nn.module import Module
from firefly.nn.parameter import Parameter
from firefly.nn.utils.rnn import PackedSequence, packed_to_padded, padded_to_packed
from firefly.tensor import Tensor
from firefly.validation import as_int

# Gates per hidden unit, and the op that runs one layer in one direction.
_MODES = {
    "RNN_TANH": (1, "rnn_layer"),
    "RNN_RELU": (1, "rnn_layer"),
    "LSTM": (4, "lstm_layer"),
    "GRU": (3, "gru_layer"),
}


def _as_tensor(x: Tensor | ArrayLike) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _uniform_parameter(
    rng: np.random.Generator, bound: float, shape: tuple[int, ...], dtype: np.dtype
) -> Parameter:
    return Parameter(rng.uniform(-bound, bound, size=shape), dtype=dtype)


def _run_layer(
    mode: str,
    x: Tensor,
    states: list[Tensor],
    weights: list[Tensor],
    lengths: tuple[int, ...] | None,
    reverse: bool,
) -> tuple[Tensor, list[Tensor]]:
    """One layer in one direction: (outputs (T, B, H), final states [h] or [h, c])."""
    gates, op_name = _MODES[mode]
    attrs: dict[str, Any] = {"lengths": lengths, "reverse": reverse}
    if mode == "RNN_RELU":
        attrs["nonlinearity"] = "relu"
    out = ops.apply(op_name, x, *states, *weights, **attrs)
    steps = x.shape[0]
    return out[:steps], [out[steps + k] for k in range(len(states))]


class RNNBase(Module):
    """What RNN, LSTM and GRU share: the parameters of every layer and direction, named as
    torch names them (``weight_ih_l0``, ``bias_hh_l1_reverse``...), the input and state checks,
    and the loop over layers."""

    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    _weight_names: tuple[tuple[str, ...], ...]  # per layer and direction, biases last

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        dtype: DTypeLike | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.mode = mode
        self.input_size = as_int(name, "input_size", input_size, 1)
        self.hidden_size = as_int(name, "hidden_size", hidden_size, 1)
        self.num_layers = as_int(name, "num_layers", num_layers, 1)
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, numbers.Real)
            or not 0.0 <= dropout <= 1.0
        ):
            raise ValueError(f"{name}: dropout must be a probability in [0, 1], got {dropout!r}")
        if proj_size:
            raise NotImplementedError(f"{name}: proj_size is not supported by firefly")
        self.bias, self.batch_first = bool(bias), bool(batch_first)
        self.dropout, self.bidirectional = float(dropout), bool(bidirectional)
        self.proj_size = 0
        directions = 2 if self.bidirectional else 1
        gates = _MODES[mode][0]
        dtype = np.dtype(dtype or np.float32)
        bound = 1.0 / math.sqrt(self.hidden_size)
        rng = random.generator()
        weight_names = []  # per layer and direction: the parameters' names, biases last
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.hidden_size * directions
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = {
                    "weight_ih": (gates * self.hidden_size, layer_input),
                    "weight_hh": (gates * self.hidden_size, self.hidden_size),
                }
                if self.bias:
                    shapes["bias_ih"] = shapes["bias_hh"] = (gates * self.hidden_size,)
                names = []
                for kind, shape in shapes.items():
                    setattr(self, kind + suffix, _uniform_parameter(rng, bound, shape, dtype))
                    names.append(kind + suffix)
                weight_names.append(tuple(names))
        self._weight_names = tuple(weight_names)

    def _layer_weights(self, index: int, dtype: np.dtype) -> list[Tensor]:
        weights = [getattr(self, n) for n in self._weight_names[index]]
        if not self.bias:
            zeros = Tensor(np.zeros(weights[0].shape[0], dtype=dtype))
            weights += [zeros, zeros]
        return weights

    def _state_count(self) -> int:
        return 2 if self.mode == "LSTM" else 1

    def _check_state(
        self, state: Tensor | ArrayLike, label: str, expected: tuple[int, ...]
    ) -> Tensor:
        if not isinstance(state, Tensor):
            state = Tensor(state)
        if state.shape != expected:
            raise ValueError(
                f"{type(self).__name__}: expected {label} of shape {expected}, got {state.shape}"
            )
        return state

    def forward(
        self,
        input: Tensor | PackedSequence | ArrayLike,
        hx: Tensor | tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor | PackedSequence, Tensor | tuple[Tensor, ...]]:
        name = type(self).__name__
        packed: PackedSequence | None = None
        lengths = None
        if isinstance(input, PackedSequence):
            packed = input
            x, lengths = packed_to_padded(packed)
            unbatched = False
        else:
            x = _as_tensor(input)
            if x.ndim not in (2, 3):
                raise ValueError(
                    f"{name}: expected a 2-D (unbatched) or 3-D (batched) input, got shape "
                    f"{x.shape}"
                )
            unbatched = x.ndim == 2
            if unbatched:
                x = x.unsqueeze(1)
            elif self.batch_first:
                x = x.transpose(0, 1)
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: input.size(-1) must be equal to input_size. Expected "
                f"{self.input_size}, got {x.shape[-1]} (input shape {x.shape})"
            )
        directions = 2 if self.bidirectional else 1
        batch = x.shape[1]
        state_shape = (self.num_layers * directions, batch, self.hidden_size)
        count = self._state_count()
        if hx is None:
            zeros = Tensor(np.zeros(state_shape, dtype=x.dtype))
            states = [zeros] * count
        else:
            given: list[Any] = list(hx) if isinstance(hx, (tuple, list)) and count == 2 else [hx]
            if count == 2 and (not isinstance(hx, (tuple, list)) or len(given) != 2):
                raise TypeError(f"{name}: hx must be a tuple (h_0, c_0)")
            labels = ("h_0", "c_0")
            expected = state_shape[:1] + state_shape[2:] if unbatched else state_shape
            states = [self._check_state(s, labels[k], expected) for k, s in enumerate(given)]
            if unbatched:
                states = [s.unsqueeze(1) for s in states]
            if packed is not None and packed.sorted_indices is not None:
                order = packed.sorted_indices.numpy()
                states = [s[:, order] for s in states]
        finals: list[list[Tensor]] = [[] for _ in range(count)]
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                index = layer * directions + direction
                output, final = _run_layer(
                    self.mode,
                    layer_input,
                    [s[index] for s in states],
                    self._layer_weights(index, x.dtype),
                    lengths,
                    bool(direction),
                )
                outputs.append(output)
                for k in range(count):
                    finals[k].append(final[k])
            layer_input = outputs[0] if directions == 1 else cat(outputs, -1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, True)
        final_states = [stack(f, 0) for f in finals]
        result: Tensor | PackedSequence
        if packed is not None:
            if packed.unsorted_indices is not None:
                order = packed.unsorted_indices.numpy()
                final_states = [s[:, order] for s in final_states]
            result = padded_to_packed(layer_input, packed)
        elif unbatched:
            result = layer_input[:, 0]
            final_states = [s[:, 0] for s in final_states]
        else:
            result = layer_input.transpose(0, 1) if self.batch_first else layer_input
        return result, (tuple(final_states) if count == 2 else final_states[0])

    def extra_repr(self) -> str:
        parts = [f"{self.input_size}", f"{self.hidden_size}"]
        if self.num_layers != 1:
            parts.append(f"num_layers={self.num_layers}")
        if not self.bias:
            parts.append("bias=False")
        if self.batch_first:
            parts.append("batch_first=True")
        if self.dropout:
            parts.append(f"dropout={self.dropout}")
        if self.bidirectional:
            parts.append("bidirectional=True")
        return ", ".join(parts)


class RNN(RNNBase):
    """``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False)``, as ``torch.nn.RNN``:
    h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh). Returns (output, h_n)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        **kwargs: Any,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: unknown nonlinearity {nonlinearity!r} (tanh or relu)")
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(mode, input_size, hidden_size, num_layers, **kwargs)
        self.nonlinearity = nonlinearity

    def extra_repr(self) -> str:
        extra = super().extra_repr()
        return extra + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class LSTM(RNNBase):
    """``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False)``, as ``torch.nn.LSTM`` (gates i, f, g, o). ``forward(x,
    (h_0, c_0))`` returns (output, (h_n, c_n)). ``proj_size`` is not supported."""

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, **kwargs: Any
    ) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, **kwargs)


class GRU(RNNBase):
    """``GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False)``, as ``torch.nn.GRU`` (gates r, z, n; r multiplies W_hn h + b_hn).
    Returns (output, h_n)."""

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, **kwargs: Any
    ) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, **kwargs)


# ----------------------------------------------------------------------------------------- cells
class RNNCellBase(Module):
    """One step: the layer op over a sequence of one, with the cell's parameters (torch's names
    ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``)."""

    bias_ih: Parameter | None
    bias_hh: Parameter | None

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        dtype: DTypeLike | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.mode = mode
        self.input_size = as_int(name, "input_size", input_size, 1)
        self.hidden_size = as_int(name, "hidden_size", hidden_size, 1)
        self.bias = bool(bias)
        gates = _MODES[mode][0]
        dtype = np.dtype(dtype or np.float32)
        bound = 1.0 / math.sqrt(self.hidden_size)
        rng = random.generator()
        self.weight_ih = _uniform_parameter(rng, bound, (gates * hidden_size, input_size), dtype)
        self.weight_hh = _uniform_parameter(rng, bound, (gates * hidden_size, hidden_size), dtype)
        if self.bias:
            self.bias_ih = _uniform_parameter(rng, bound, (gates * hidden_size,), dtype)
            self.bias_hh = _uniform_parameter(rng, bound, (gates * hidden_size,), dtype)
        else:
            self.bias_ih = self.bias_hh = None

    def forward(
        self, input: Tensor | ArrayLike, hx: Tensor | tuple[Tensor, Tensor] | None = None
    ) -> Tensor | tuple[Tensor, ...]:
        name = type(self).__name__
        x = _as_tensor(input)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: expected input of shape (batch, {self.input_size}) or "
                f"({self.input_size},), got {x.shape}"
            )
        unbatched = x.ndim == 1
        batch = 1 if unbatched else x.shape[0]
        count = 2 if self.mode == "LSTM" else 1
        expected = (self.hidden_size,) if unbatched else (batch, self.hidden_size)
        if hx is None:
            states = [Tensor(np.zeros((batch, self.hidden_size), dtype=x.dtype))] * count
        else:
            given: list[Any] = list(hx) if isinstance(hx, (tuple, list)) else [hx]
            if len(given) != count:
                raise TypeError(f"{name}: hx must be a tuple (h, c)")
            states = []
            for label, s in zip(("h", "c"), given):
                s = _as_tensor(s)
                if s.shape != expected:
                    raise ValueError(f"{name}: expected {label} of shape {expected}, got {s.shape}")
                states.append(s.reshape(batch, self.hidden_size))
        biases: list[Any]  # Parameters, or the zeros that stand for bias=False
        if self.bias:
            biases = [self.bias_ih, self.bias_hh]
        else:
            zeros = Tensor(np.zeros(self.weight_ih.shape[0], dtype=x.dtype))
            biases = [zeros, zeros]
        weights = [self.weight_ih, self.weight_hh, *biases]
        _, final = _run_layer(
            self.mode, x.reshape(1, batch, self.input_size), states, weights, None, False
        )
        if unbatched:
            final = [f.reshape(self.hidden_size) for f in final]
        return tuple(final) if count == 2 else final[0]

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(RNNCellBase):
    """``RNNCell(input_size, hidden_size, bias=True, nonlinearity='tanh')``: h' = act(x W_ih^T
    + b_ih + h W_hh^T + b_hh)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        dtype: DTypeLike | None = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: unknown nonlinearity {nonlinearity!r} (tanh or relu)")
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(mode, input_size, hidden_size, bias, dtype)
        self.nonlinearity = nonlinearity


class LSTMCell(RNNCellBase):
    """``LSTMCell(input_size, hidden_size, bias=True)``: ``forward(x, (h, c))`` returns
    (h', c')."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        dtype: DTypeLike | None = None,
    ) -> None:
        super().__init__("LSTM", input_size, hidden_size, bias, dtype)


class GRUCell(RNNCellBase):
    """``GRUCell(input_size, hidden_size, bias=True)``: returns h'."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        dtype: DTypeLike | None = None,
    ) -> None:
        super().__init__("GRU", input_size, hidden_size, bias, dtype)
