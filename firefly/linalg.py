"""``firefly.linalg``: torch.linalg's norms, composed of recorded ops (so they differentiate
to any order). ``vector_norm`` and ``norm`` take torch's arguments; ``matrix_norm`` computes
the Frobenius and the 1- and inf-norms (the spectral and nuclear norms need an SVD, which
firefly does not have, and are refused by name)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import DTypeLike

from firefly.creation import as_tensor
from firefly.tensor import Tensor, _dim_index
from firefly.tensor import vector_norm as _vector_norm

__all__ = ["vector_norm", "matrix_norm", "norm"]

_Dims = int | Sequence[int] | None


def vector_norm(
    x: Tensor,
    ord: float = 2,
    dim: _Dims = None,
    keepdim: bool = False,
    *,
    dtype: DTypeLike | None = None,
) -> Tensor:
    """The vector ``ord``-norm over ``dim`` (every element when None): sum(|x|^ord)^(1/ord),
    max |x| for inf, min |x| for -inf, the count of non-zeros for 0."""
    return _vector_norm("linalg.vector_norm", as_tensor(x), ord, dim, keepdim, dtype)


def matrix_norm(
    A: Tensor,
    ord: float | str = "fro",
    dim: tuple[int, int] = (-2, -1),
    keepdim: bool = False,
    *,
    dtype: DTypeLike | None = None,
) -> Tensor:
    """The matrix norm over the two dims ``dim``: ``"fro"`` (the default), 1 and -1 (the
    largest and smallest column sum of |A|), inf and -inf (row sums)."""
    return _matrix_norm("linalg.matrix_norm", as_tensor(A), ord, dim, keepdim, dtype)


def _matrix_norm(method, A, ord, dim, keepdim, dtype):
    if A.ndim < 2:
        raise ValueError(f"{method}: A must have at least 2 dimensions, got shape {A.shape}")
    if not isinstance(dim, (tuple, list)) or len(dim) != 2:
        raise ValueError(f"{method}: dim must be a pair of dims, got {dim!r}")
    rows, cols = (_dim_index(method, d, A.ndim, A.shape) for d in dim)
    if rows == cols:
        raise ValueError(f"{method}: dim {tuple(dim)} must name two different dims")
    if ord == "fro":
        return _vector_norm(method, A, 2, (rows, cols), keepdim, dtype)
    if ord in ("nuc", 2, -2):
        raise NotImplementedError(
            f"{method}: ord={ord!r} needs singular values (an SVD), which firefly does not have; "
            "'fro', 1, -1, inf and -inf are supported"
        )
    if ord not in (1, -1, np.inf, -np.inf):
        raise ValueError(f"{method}: ord must be 'fro', 1, -1, inf or -inf, got {ord!r}")
    x = A if dtype is None else A.to(dtype)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{method}: A must be a float tensor, got {x.dtype} (shape {x.shape})")
    # 1-norms sum each column (over the rows), inf-norms each row (over the columns).
    summed, extreme = (rows, cols) if abs(ord) == 1 else (cols, rows)
    sums = x.abs().sum(dim=summed, keepdim=True)
    result = (
        sums.amax(dim=extreme, keepdim=True) if ord > 0 else sums.amin(dim=extreme, keepdim=True)
    )
    return result if keepdim else result.squeeze((rows, cols))


def norm(
    A: Tensor,
    ord: float | str | None = None,
    dim: _Dims = None,
    keepdim: bool = False,
    *,
    dtype: DTypeLike | None = None,
) -> Tensor:
    """torch.linalg.norm: a vector norm over one dim (or of the flattened tensor when neither
    ``ord`` nor ``dim`` is given), a matrix norm over two dims (or of a 2-D tensor when ``ord``
    is given without ``dim``)."""
    A = as_tensor(A)
    if isinstance(dim, int) or (dim is not None and len(dim) == 1):
        return _vector_norm("linalg.norm", A, 2 if ord is None else ord, dim, keepdim, dtype)
    if dim is None and ord is None:
        return _vector_norm("linalg.norm", A, 2, None, keepdim, dtype)
    if dim is None:
        if A.ndim == 1:
            return _vector_norm("linalg.norm", A, ord, None, keepdim, dtype)
        if A.ndim != 2:
            raise ValueError(
                f"linalg.norm: with ord={ord!r} and no dim the input must be 1-D or 2-D, got shape "
                f"{A.shape}"
            )
        dim = (-2, -1)
    if len(dim) != 2:
        raise ValueError(f"linalg.norm: dim must be an int or a pair of dims, got {dim!r}")
    return _matrix_norm("linalg.norm", A, "fro" if ord is None else ord, tuple(dim), keepdim, dtype)
