"""``firefly.linalg``: torch.linalg's norms and singular value decomposition. The norms are
composed of recorded ops (so they differentiate to any order); ``svd`` and ``svdvals`` read the
``svd`` op (LAPACK's gesdd, torch's gradient formulas), on which the spectral (``ord`` 2, -2) and
nuclear (``"nuc"``) matrix norms are built."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence

import numpy as np
from numpy.typing import DTypeLike

from firefly import ops
from firefly.creation import as_tensor
from firefly.ops.linalg import svd_parts
from firefly.tensor import Tensor, _dim_index
from firefly.tensor import vector_norm as _vector_norm

__all__ = ["vector_norm", "matrix_norm", "norm", "svd", "svdvals"]

SVD = namedtuple("SVD", ["U", "S", "Vh"])

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
    """The matrix norm over the two dims ``dim``: ``"fro"`` (the default), ``"nuc"`` (the sum
    of the singular values), 2 and -2 (the largest and smallest singular value), 1 and -1 (the
    largest and smallest column sum of |A|), inf and -inf (row sums)."""
    return _matrix_norm("linalg.matrix_norm", as_tensor(A), ord, dim, keepdim, dtype)


def _svd_of(method: str, A: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The thin (U, S, Vh) of a float tensor A (..., m, n), as recorded slices of the svd op."""
    if A.ndim < 2:
        raise ValueError(f"{method}: A must have at least 2 dimensions, got shape {A.shape}")
    if A.dtype not in (np.float32, np.float64):
        raise TypeError(f"{method}: A must be a float tensor, got {A.dtype} (shape {A.shape})")
    m, n = A.shape[-2:]
    return svd_parts(ops.apply("svd", A), m, n, min(m, n))


def svd(A: Tensor, full_matrices: bool = True, *, driver: str | None = None) -> SVD:
    """torch.linalg.svd: A (..., m, n) = U diag(S) Vh, singular values descending, as the
    named tuple (U, S, Vh). With ``full_matrices`` (the default, as torch's) U is (..., m, m)
    and Vh (..., n, n): the columns past min(m, n) complete an orthonormal basis and carry no
    gradient, as in torch. Each singular pair's sign makes the largest-magnitude entry of its
    column of U positive (torch leaves the sign to LAPACK). Gradients follow torch's formulas;
    they are undefined (large or NaN) where singular values repeat, as in torch, unless the
    loss depends on the singular values alone or is invariant to the choice of basis."""
    if driver is not None:
        raise ValueError(
            f"linalg.svd: driver is for CUDA inputs in torch and must be None, got {driver!r}"
        )
    A = as_tensor(A)
    u, s, vh = _svd_of("linalg.svd", A)
    m, n = A.shape[-2:]
    if full_matrices and m != n:
        # The columns of a complete QR of the thin factor past its own: orthonormal, orthogonal
        # to it, constants (torch's gradient reads only the thin part too).
        if m > n:
            basis = np.linalg.qr(u.numpy(), mode="complete")[0][..., :, n:]
            u = ops.apply("cat", u, Tensor(np.ascontiguousarray(basis), dtype=u.dtype), dim=-1)
        else:
            basis = np.linalg.qr(vh.numpy().swapaxes(-1, -2), mode="complete")[0][..., :, m:]
            rows = np.ascontiguousarray(basis.swapaxes(-1, -2))
            vh = ops.apply("cat", vh, Tensor(rows, dtype=vh.dtype), dim=-2)
    return SVD(u, s, vh)


def svdvals(A: Tensor, *, driver: str | None = None) -> Tensor:
    """torch.linalg.svdvals: the singular values of each matrix of A (..., m, n), descending,
    (..., min(m, n)); their gradient U diag(gS) Vh is defined everywhere but at repeats."""
    if driver is not None:
        raise ValueError(
            f"linalg.svdvals: driver is for CUDA inputs in torch and must be None, got {driver!r}"
        )
    return _svd_of("linalg.svdvals", as_tensor(A))[1]


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
    if isinstance(ord, bool) or ord not in ("nuc", 2, -2, 1, -1, np.inf, -np.inf):
        raise ValueError(
            f"{method}: ord must be 'fro', 'nuc', 2, -2, 1, -1, inf or -inf, got {ord!r}"
        )
    x = A if dtype is None else A.to(dtype)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{method}: A must be a float tensor, got {x.dtype} (shape {x.shape})")
    if ord in ("nuc", 2, -2):
        # The singular values of the matrices over (rows, cols), moved to the end.
        rest = [d for d in range(x.ndim) if d not in (rows, cols)]
        values = _svd_of(method, x.permute(*rest, rows, cols))[1]
        if ord == "nuc":
            result = values.sum(dim=-1)
        else:
            result = values.amax(dim=-1) if ord == 2 else values.amin(dim=-1)
        if keepdim:
            for d in sorted((rows, cols)):
                result = result.unsqueeze(d)
        return result
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
