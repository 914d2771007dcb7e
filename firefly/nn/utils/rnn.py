"""``firefly.nn.utils.rnn``: batches of variable-length sequences, as ``torch.nn.utils.rnn``.

A ``PackedSequence`` holds the sequences' steps time-major without padding: ``data`` has the
first step of every sequence, then the second step of those that have one, and so on, the
sequences sorted longest first; ``batch_sizes[t]`` says how many sequences have a step t.
``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` accept one and give each sequence's final state at its
own length. Every conversion here is one differentiable gather (``take``).
"""

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from firefly.functions import cat
from firefly.tensor import Tensor


class PackedSequence(NamedTuple):
    """``(data, batch_sizes, sorted_indices, unsorted_indices)``, as torch's: ``data`` (N, *),
    ``batch_sizes`` (T,) int64, and the permutation that sorted the batch by length (None when
    it came sorted) and its inverse."""

    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor | None = None
    unsorted_indices: Tensor | None = None


def _tensor(x: Tensor | ArrayLike) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _lengths_array(lengths: Tensor | ArrayLike) -> np.ndarray:
    if isinstance(lengths, Tensor):
        lengths = lengths.numpy()
    values = np.asarray(lengths)
    if values.ndim != 1 or (values.size and values.dtype.kind not in "iu"):
        raise TypeError(
            f"pack_padded_sequence: lengths must be a 1-D sequence of integers, got {lengths!r}"
        )
    return values.astype(np.int64)


def _with_padding_row(rows: Tensor, value: float) -> Tensor:
    """``rows`` (N, *) with one more row of ``value`` at index N, which gathers pick for the
    positions no sequence fills."""
    pad = Tensor(np.full((1,) + rows.shape[1:], value, dtype=rows.dtype), dtype=rows.dtype)
    return cat([rows, pad], 0)


def _packed_positions(batch_sizes: np.ndarray, batch: int) -> np.ndarray:
    """For each row of a packed ``data``, its position t * B + b in the padded (T, B) grid."""
    return np.concatenate([t * batch + np.arange(n) for t, n in enumerate(batch_sizes)])


def packed_to_padded(
    sequence: PackedSequence, padding_value: float = 0.0, total_length: int | None = None
) -> tuple[Tensor, tuple[int, ...]]:
    """The packed batch as (T, B, *) in sorted order (longest first), and its lengths."""
    data = sequence.data
    batch_sizes = sequence.batch_sizes.numpy().astype(np.int64)
    steps, batch = len(batch_sizes), int(batch_sizes[0])
    lengths = tuple(int(np.count_nonzero(batch_sizes > b)) for b in range(batch))
    rows = np.full(((total_length or steps), batch), data.shape[0], dtype=np.int64)
    rows.reshape(-1)[_packed_positions(batch_sizes, batch)] = np.arange(data.shape[0])
    padded = _with_padding_row(data, padding_value)[rows.reshape(-1)]
    return padded.reshape(rows.shape + data.shape[1:]), lengths


def padded_to_packed(padded: Tensor, like: PackedSequence) -> PackedSequence:
    """(T, B, *) in sorted order packed with ``like``'s batch sizes and permutations."""
    steps, batch = padded.shape[:2]
    batch_sizes = like.batch_sizes.numpy().astype(np.int64)
    flat = padded.reshape((steps * batch,) + padded.shape[2:])
    data = flat[_packed_positions(batch_sizes, batch)]
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


def pack_padded_sequence(
    input: Tensor,
    lengths: "Tensor | np.ndarray | list[int]",
    batch_first: bool = False,
    enforce_sorted: bool = True,
) -> PackedSequence:
    """Pack a padded batch (T, B, *) (or (B, T, *) with ``batch_first``) of sequences of the
    given ``lengths``. With ``enforce_sorted`` the lengths must be in decreasing order;
    otherwise the batch is sorted here and the permutation kept in the PackedSequence."""
    x = _tensor(input)
    counts = _lengths_array(lengths)
    if x.ndim < 2:
        raise ValueError(
            f"pack_padded_sequence: input must have a time and a batch dimension, got shape "
            f"{x.shape}"
        )
    if batch_first:
        x = x.transpose(0, 1)
    steps, batch = x.shape[:2]
    if counts.shape != (batch,):
        raise ValueError(
            f"pack_padded_sequence: {counts.size} lengths for a batch of {batch} (input shape "
            f"{tuple(input.shape)}, batch_first={batch_first})"
        )
    if batch and (counts.min() <= 0 or counts.max() > steps):
        raise ValueError(
            f"pack_padded_sequence: every length must lie in 1..{steps} (the input's time "
            f"dimension, input shape {tuple(input.shape)}), got {counts.tolist()}"
        )
    if enforce_sorted:
        if np.any(np.diff(counts) > 0):
            raise ValueError(
                f"pack_padded_sequence: lengths must be sorted in decreasing order when "
                f"enforce_sorted=True, got {counts.tolist()}; pass enforce_sorted=False to pack "
                "an unsorted batch"
            )
        sorted_indices = unsorted_indices = None
    else:
        order = np.argsort(-counts, kind="stable")
        counts = counts[order]
        x = x[:, order]
        sorted_indices = Tensor(order, dtype=np.int64)
        unsorted_indices = Tensor(np.argsort(order), dtype=np.int64)
    batch_sizes = np.array([np.count_nonzero(counts > t) for t in range(counts[0])])
    like = PackedSequence(x, Tensor(batch_sizes, dtype=np.int64))
    packed = padded_to_packed(x[: int(counts[0])], like)
    return PackedSequence(packed.data, packed.batch_sizes, sorted_indices, unsorted_indices)


def pad_packed_sequence(
    sequence: PackedSequence,
    batch_first: bool = False,
    padding_value: float = 0.0,
    total_length: int | None = None,
) -> tuple[Tensor, Tensor]:
    """The inverse of ``pack_padded_sequence``: ``(padded, lengths)``, the padded batch
    (T, B, *) (or (B, T, *)) in the original order, T being ``total_length`` when given, and
    the int64 lengths."""
    steps = len(sequence.batch_sizes.numpy())
    if total_length is not None and total_length < steps:
        raise ValueError(
            f"pad_packed_sequence: total_length ({total_length}) is shorter than the longest "
            f"sequence ({steps})"
        )
    padded, lengths = packed_to_padded(sequence, padding_value, total_length)
    counts = np.array(lengths, dtype=np.int64)
    if sequence.unsorted_indices is not None:
        order = sequence.unsorted_indices.numpy()
        padded, counts = padded[:, order], counts[order]
    if batch_first:
        padded = padded.transpose(0, 1)
    return padded, Tensor(counts, dtype=np.int64)


def pad_sequence(
    sequences: "list[Tensor]",
    batch_first: bool = False,
    padding_value: float = 0.0,
    padding_side: str = "right",
) -> Tensor:
    """Sequences (L_i, *) padded with ``padding_value`` to one (T, B, *) batch (or (B, T, *)),
    T the longest length; ``padding_side="left"`` pads before each sequence instead."""
    if padding_side not in ("right", "left"):
        raise ValueError(
            f"pad_sequence: padding_side must be 'right' or 'left', got {padding_side!r}"
        )
    tensors = [_tensor(s) for s in sequences]
    if not tensors:
        raise ValueError("pad_sequence: expected at least one sequence")
    trailing = {t.shape[1:] for t in tensors}
    if len(trailing) > 1 or any(t.ndim == 0 for t in tensors):
        raise ValueError(
            "pad_sequence: every sequence must be (length, *) with the same trailing shape, got "
            f"shapes {[t.shape for t in tensors]}"
        )
    lengths = [t.shape[0] for t in tensors]
    steps, total = max(lengths), sum(lengths)
    rows = np.full((steps, len(tensors)), total, dtype=np.int64)
    start = 0
    for b, n in enumerate(lengths):
        first = 0 if padding_side == "right" else steps - n
        rows[first : first + n, b] = np.arange(start, start + n)
        start += n
    padded = _with_padding_row(cat(tensors, 0), padding_value)[rows.reshape(-1)]
    padded = padded.reshape(rows.shape + tensors[0].shape[1:])
    return padded.transpose(0, 1) if batch_first else padded


def pack_sequence(sequences: "list[Tensor]", enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of sequences (L_i, *) of decreasing lengths (any order with
    ``enforce_sorted=False``)."""
    lengths = [_tensor(s).shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


__all__ = [
    "PackedSequence",
    "pack_padded_sequence",
    "pad_packed_sequence",
    "pad_sequence",
    "pack_sequence",
]
