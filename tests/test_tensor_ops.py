"""The Tensor and top-level ops that whole PyTorch programs reach for (issue 21): selecting and
rearranging (narrow, flip, roll, repeat, repeat_interleave, tril/triu, masked_fill,
index_select, scatter, topk, sort), products (mm, bmm, addmm, baddbmm, einsum), norms
(norm, firefly.linalg, F.normalize, cosine_similarity, cdist), cumsum, erfc, multinomial and
one_hot.

Each is checked forward against NumPy, gradients against central differences in float64
(firefly.testing.gradcheck), second derivatives where they are defined (gradgradcheck), and
against torch as an oracle where torch is installed."""

import math

import numpy as np
import pytest

import firefly
import firefly.nn.functional as F
from firefly import Tensor
from firefly.testing import check_op, gradcheck, gradgradcheck

RNG = np.random.default_rng(21)


def data(*shape):
    return RNG.standard_normal(shape)


def long(values):
    return firefly.tensor(np.asarray(values), dtype="int64")


X = data(3, 4, 5)
Y = data(3, 5, 2)
MASK = RNG.random((4, 1)) < 0.5
INDEX = np.array([4, 0, 0, 2])
SCATTER_INDEX = RNG.integers(0, 4, size=(3, 2, 5))
SCATTER_SRC = data(3, 2, 5)
# A permutation per (batch, column): scatter without repeated positions, where torch's result
# is defined.
UNIQUE_INDEX = np.stack([RNG.permutation(4)[:2] for _ in range(15)]).reshape(3, 5, 2)
UNIQUE_INDEX = UNIQUE_INDEX.transpose(0, 2, 1).copy()
WITH_ZERO = data(3, 4)
WITH_ZERO[0, 1] = WITH_ZERO[2, 0] = WITH_ZERO[2, 3] = 0.0  # one zero in a row, and two
RNG_INDEX = RNG.integers(0, 4, size=(1, 6, 5))  # broadcasts along dim 0


def np_scatter_add(x, dim, index, src):
    out = x.copy()
    coords = list(np.indices(index.shape))
    coords[dim] = index
    np.add.at(out, tuple(coords), src[tuple(slice(0, n) for n in index.shape)])
    return out


def np_scatter(x, dim, index, src):
    out = x.copy()
    coords = list(np.indices(index.shape))
    coords[dim] = index
    out[tuple(coords)] = src[tuple(slice(0, n) for n in index.shape)]
    return out


def np_index_add(x, dim, index, source):
    out = x.copy()
    for k, i in enumerate(index):
        out[(slice(None),) * dim + (i,)] += source[(slice(None),) * dim + (k,)]
    return out


def np_index_copy(x, index, source):
    out = x.copy()
    out[..., index] = source
    return out


def np_cosine(a, b, dim, eps=1e-8):
    na = np.maximum(np.linalg.norm(a, axis=dim, keepdims=True), eps)
    nb = np.maximum(np.linalg.norm(b, axis=dim, keepdims=True), eps)
    return np.sum(a / na * (b / nb), axis=dim)


# name -> (input arrays, firefly function, NumPy reference, torch function (of torch, *tensors))
CASES = {
    "narrow": (
        [X],
        lambda x: x.narrow(1, 1, 2),
        lambda x: x[:, 1:3],
        lambda t, x: x.narrow(1, 1, 2),
    ),
    "narrow negative": (
        [X],
        lambda x: firefly.narrow(x, -1, -3, 2),
        lambda x: x[..., 2:4],
        lambda t, x: t.narrow(x, -1, -3, 2),
    ),
    "flip": ([X], lambda x: x.flip(0, 2), lambda x: np.flip(x, (0, 2)), lambda t, x: x.flip(0, 2)),
    "flip top-level": (
        [X],
        lambda x: firefly.flip(x, [-1]),
        lambda x: x[..., ::-1],
        lambda t, x: t.flip(x, [-1]),
    ),
    "fliplr": ([X[0]], lambda x: x.fliplr(), np.fliplr, lambda t, x: x.fliplr()),
    "roll": (
        [X],
        lambda x: x.roll((1, -2), (0, -1)),
        lambda x: np.roll(x, (1, -2), (0, -1)),
        lambda t, x: x.roll((1, -2), (0, -1)),
    ),
    "roll flat": ([X], lambda x: x.roll(7), lambda x: np.roll(x, 7), lambda t, x: x.roll(7)),
    "repeat": (
        [X[0]],
        lambda x: x.repeat(2, 1, 3),
        lambda x: np.tile(x, (2, 1, 3)),
        lambda t, x: x.repeat(2, 1, 3),
    ),
    "repeat_interleave": (
        [X],
        lambda x: x.repeat_interleave(2, dim=1),
        lambda x: np.repeat(x, 2, axis=1),
        lambda t, x: x.repeat_interleave(2, dim=1),
    ),
    "repeat_interleave counts": (
        [X],
        lambda x: firefly.repeat_interleave(x, long([1, 0, 3]), dim=0),
        lambda x: np.repeat(x, [1, 0, 3], axis=0),
        lambda t, x: t.repeat_interleave(x, t.tensor([1, 0, 3]), dim=0),
    ),
    "repeat_interleave flat": (
        [X[0]],
        lambda x: x.repeat_interleave(2),
        lambda x: np.repeat(x.reshape(-1), 2),
        lambda t, x: x.repeat_interleave(2),
    ),
    "tril": ([X], lambda x: x.tril(), np.tril, lambda t, x: x.tril()),
    "triu offset": (
        [X],
        lambda x: firefly.triu(x, 1),
        lambda x: np.triu(x, 1),
        lambda t, x: t.triu(x, 1),
    ),
    "masked_fill broadcast mask": (
        [X],
        lambda x: x.masked_fill(firefly.tensor(MASK), -5.0),
        lambda x: np.where(MASK, -5.0, x),
        lambda t, x: x.masked_fill(t.tensor(MASK), -5.0),
    ),
    "masked_fill tensor value": (
        [X, np.array(2.5)],
        lambda x, v: x.masked_fill(firefly.tensor(MASK), v),
        lambda x, v: np.where(MASK, v, x),
        lambda t, x, v: x.masked_fill(t.tensor(MASK), v),
    ),
    "index_select": (
        [X],
        lambda x: x.index_select(-1, long(INDEX)),
        lambda x: np.take(x, INDEX, axis=-1),
        lambda t, x: x.index_select(-1, t.tensor(INDEX)),
    ),
    "topk values": (
        [X],
        lambda x: x.topk(3).values,
        lambda x: -np.sort(-x, axis=-1)[..., :3],
        lambda t, x: x.topk(3).values,
    ),
    "topk smallest": (
        [X],
        lambda x: firefly.topk(x, 2, dim=0, largest=False)[0],
        lambda x: np.sort(x, axis=0)[:2],
        lambda t, x: t.topk(x, 2, dim=0, largest=False)[0],
    ),
    "sort values": (
        [X],
        lambda x: x.sort(1).values,
        lambda x: np.sort(x, axis=1),
        lambda t, x: x.sort(1).values,
    ),
    "sort descending": (
        [X],
        lambda x: firefly.sort(x, -1, descending=True)[0],
        lambda x: -np.sort(-x, axis=-1),
        lambda t, x: t.sort(x, -1, descending=True)[0],
    ),
    "scatter_add": (
        [X[:, :4], SCATTER_SRC],
        lambda x, s: x.scatter_add(1, long(SCATTER_INDEX), s),
        lambda x, s: np_scatter_add(x, 1, SCATTER_INDEX, s),
        lambda t, x, s: x.scatter_add(1, t.tensor(SCATTER_INDEX), s),
    ),
    "scatter": (
        [X[:, :4], SCATTER_SRC],
        lambda x, s: firefly.scatter(x, 1, long(UNIQUE_INDEX), s),
        lambda x, s: np_scatter(x, 1, UNIQUE_INDEX, s),
        lambda t, x, s: t.scatter(x, 1, t.tensor(UNIQUE_INDEX), s),
    ),
    "scatter value": (
        [X[:, :4]],
        lambda x: x.scatter(1, long(UNIQUE_INDEX), 2.5),
        lambda x: np_scatter(x, 1, UNIQUE_INDEX, np.full(UNIQUE_INDEX.shape, 2.5)),
        lambda t, x: x.scatter(1, t.tensor(UNIQUE_INDEX), 2.5),
    ),
    "cumsum": ([X], lambda x: x.cumsum(1), lambda x: np.cumsum(x, 1), lambda t, x: x.cumsum(1)),
    "cumsum negative dim": (
        [X],
        lambda x: firefly.cumsum(x, -1),
        lambda x: np.cumsum(x, -1),
        lambda t, x: t.cumsum(x, -1),
    ),
    "erfc": (
        [X],
        lambda x: firefly.erfc(x),
        np.vectorize(math.erfc),
        lambda t, x: t.erfc(x),
    ),
    "mm": (
        [X[0], Y[0]],
        lambda a, b: a.mm(b),
        lambda a, b: a @ b,
        lambda t, a, b: a.mm(b),
    ),
    "bmm": ([X, Y], lambda a, b: firefly.bmm(a, b), np.matmul, lambda t, a, b: t.bmm(a, b)),
    "addmm": (
        [data(2), X[0], Y[0]],
        lambda c, a, b: firefly.addmm(c, a, b, beta=0.5, alpha=2.0),
        lambda c, a, b: 0.5 * c + 2.0 * a @ b,
        lambda t, c, a, b: t.addmm(c, a, b, beta=0.5, alpha=2.0),
    ),
    "baddbmm": (
        [data(3, 1, 2), X, Y],
        lambda c, a, b: c.baddbmm(a, b, beta=-1.0, alpha=0.5),
        lambda c, a, b: -c + 0.5 * (a @ b),
        lambda t, c, a, b: c.baddbmm(a, b, beta=-1.0, alpha=0.5),
    ),
    "einsum attention": (
        [data(2, 3, 4, 5), data(2, 3, 6, 5)],
        lambda q, k: firefly.einsum("bhqd,bhkd->bhqk", q, k),
        lambda q, k: np.einsum("bhqd,bhkd->bhqk", q, k),
        lambda t, q, k: t.einsum("bhqd,bhkd->bhqk", q, k),
    ),
    "einsum bilinear": (
        [data(2, 3), data(3, 4, 5), data(2, 5)],
        lambda a, w, b: firefly.einsum("bi,ioj,bj->bo", a, w, b),
        lambda a, w, b: np.einsum("bi,ioj,bj->bo", a, w, b),
        lambda t, a, w, b: t.einsum("bi,ioj,bj->bo", a, w, b),
    ),
    "einsum ellipsis broadcast": (
        [data(2, 1, 3, 4), data(5, 4, 2)],
        lambda a, b: firefly.einsum("...ij,...jk->...ik", [a, b]),
        lambda a, b: np.einsum("...ij,...jk->...ik", a, b),
        lambda t, a, b: t.einsum("...ij,...jk->...ik", [a, b]),
    ),
    "einsum trace and implicit output": (
        [data(3, 3), data(4, 3)],
        lambda a, b: firefly.einsum("ii,ji", a, b),
        lambda a, b: np.einsum("ii,ji", a, b),
        lambda t, a, b: t.einsum("ii,ji", a, b),
    ),
    "norm": ([X], lambda x: x.norm(), np.linalg.norm, lambda t, x: x.norm()),
    "norm p dims keepdim": (
        [X],
        lambda x: x.norm(3, dim=(0, 2), keepdim=True),
        lambda x: np.sum(np.abs(x) ** 3, axis=(0, 2), keepdims=True) ** (1 / 3),
        lambda t, x: x.norm(3, dim=(0, 2), keepdim=True),
    ),
    "vector_norm 1": (
        [X],
        lambda x: firefly.linalg.vector_norm(x, 1, dim=-1),
        lambda x: np.abs(x).sum(-1),
        lambda t, x: t.linalg.vector_norm(x, 1, dim=-1),
    ),
    "vector_norm inf": (
        [X],
        lambda x: firefly.linalg.vector_norm(x, float("inf"), dim=1),
        lambda x: np.abs(x).max(1),
        lambda t, x: t.linalg.vector_norm(x, float("inf"), dim=1),
    ),
    "matrix_norm fro": (
        [X],
        lambda x: firefly.linalg.matrix_norm(x),
        lambda x: np.linalg.norm(x, "fro", axis=(-2, -1)),
        lambda t, x: t.linalg.matrix_norm(x),
    ),
    "matrix_norm 1": (
        [X],
        lambda x: firefly.linalg.matrix_norm(x, 1, keepdim=True),
        lambda x: np.linalg.norm(x, 1, axis=(-2, -1), keepdims=True),
        lambda t, x: t.linalg.matrix_norm(x, 1, keepdim=True),
    ),
    "linalg.norm -inf": (
        [X[0]],
        lambda x: firefly.linalg.norm(x, -float("inf")),
        lambda x: np.linalg.norm(x, -np.inf),
        lambda t, x: t.linalg.norm(x, -float("inf")),
    ),
    "normalize": (
        [X],
        lambda x: F.normalize(x, dim=1),
        lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12),
        lambda t, x: t.nn.functional.normalize(x, dim=1),
    ),
    "normalize p=1 last dim": (
        [X],
        lambda x: F.normalize(x, p=1, dim=-1),
        lambda x: x / np.abs(x).sum(-1, keepdims=True),
        lambda t, x: t.nn.functional.normalize(x, p=1, dim=-1),
    ),
    "cosine_similarity": (
        [X, data(4, 5)],
        lambda a, b: firefly.cosine_similarity(a, b, dim=-1),
        lambda a, b: np_cosine(a, b, -1),
        lambda t, a, b: t.cosine_similarity(a, b, dim=-1),
    ),
    "F.cosine_similarity": (
        [X, X[::-1].copy()],
        lambda a, b: F.cosine_similarity(a, b),
        lambda a, b: np_cosine(a, b, 1),
        lambda t, a, b: t.nn.functional.cosine_similarity(a, b),
    ),
    "cdist": (
        [data(2, 4, 3), data(2, 5, 3)],
        lambda a, b: firefly.cdist(a, b),
        lambda a, b: np.linalg.norm(a[:, :, None] - b[:, None], axis=-1),
        lambda t, a, b: t.cdist(a, b),
    ),
    "cdist p=1": (
        [data(4, 3), data(5, 3)],
        lambda a, b: firefly.cdist(a, b, p=1.0),
        lambda a, b: np.abs(a[:, None] - b[None]).sum(-1),
        lambda t, a, b: t.cdist(a, b, p=1.0),
    ),
    "pairwise_distance": (
        [data(4, 3), data(4, 3)],
        lambda a, b: F.pairwise_distance(a, b),
        lambda a, b: np.linalg.norm(a - b + 1e-6, axis=-1),
        lambda t, a, b: t.nn.functional.pairwise_distance(a, b),
    ),
    "var": ([X], lambda x: x.var(), lambda x: np.var(x, ddof=1), lambda t, x: x.var()),
    "var dims correction keepdim": (
        [X],
        lambda x: firefly.var(x, (0, -1), keepdim=True, correction=0),
        lambda x: np.var(x, axis=(0, 2), keepdims=True),
        lambda t, x: t.var(x, (0, -1), keepdim=True, correction=0),
    ),
    "std unbiased=False": (
        [X],
        lambda x: x.std(1, False),
        lambda x: np.std(x, axis=1),
        lambda t, x: x.std(1, False),
    ),
    "logsumexp": (
        [X * 30.0],
        lambda x: x.logsumexp(-1),
        lambda x: np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1),
        lambda t, x: x.logsumexp(-1),
    ),
    "logsumexp dims keepdim": (
        [X],
        lambda x: firefly.logsumexp(x, (0, 2), keepdim=True),
        lambda x: np.log(np.exp(x).sum((0, 2), keepdims=True)),
        lambda t, x: t.logsumexp(x, (0, 2), keepdim=True),
    ),
    "clamp_min": (
        [X],
        lambda x: x.clamp_min(0.1),
        lambda x: np.maximum(x, 0.1),
        lambda t, x: x.clamp_min(0.1),
    ),
    "addcmul addcdiv": (
        [X, X[::-1].copy(), X * X + 1.0],
        lambda a, b, c: a.addcmul(b, c, value=0.5).addcdiv(b, c, value=-2.0),
        lambda a, b, c: a + 0.5 * b * c - 2.0 * b / c,
        lambda t, a, b, c: a.addcmul(b, c, value=0.5).addcdiv(b, c, value=-2.0),
    ),
    "lerp": (
        [X, X[::-1].copy()],
        lambda a, b: firefly.lerp(a, b, 0.3),
        lambda a, b: a + 0.3 * (b - a),
        lambda t, a, b: t.lerp(a, b, 0.3),
    ),
    "hypot": (
        [X, X[::-1].copy()],
        lambda a, b: a.hypot(b),
        np.hypot,
        lambda t, a, b: a.hypot(b),
    ),
    "logaddexp": (
        [X * 40.0, X[::-1] * 40.0],
        lambda a, b: firefly.logaddexp(a, b),
        np.logaddexp,
        lambda t, a, b: t.logaddexp(a, b),
    ),
    "diagonal": (
        [X],
        lambda x: x.diagonal(1, 2, 1),
        lambda x: np.diagonal(x, 1, 2, 1),
        lambda t, x: x.diagonal(1, 2, 1),
    ),
    "diag of a vector": (
        [X[0, 0]],
        lambda x: firefly.diag(x, -1),
        lambda x: np.diag(x, -1),
        lambda t, x: t.diag(x, -1),
    ),
    "diag of a matrix and trace": (
        [X[0]],
        lambda x: x.diag(1) * x.trace(),
        lambda x: np.diag(x, 1) * np.trace(x),
        lambda t, x: x.diag(1) * x.trace(),
    ),
    "outer and dot": (
        [X[0, 0], X[1, 1]],
        lambda a, b: firefly.outer(a, b) * a.dot(b),
        lambda a, b: np.outer(a, b) * np.dot(a, b),
        lambda t, a, b: t.outer(a, b) * a.dot(b),
    ),
    "masked_select": (
        [X],
        lambda x: x.masked_select(firefly.tensor(MASK)),
        lambda x: x[np.broadcast_to(MASK, x.shape)],
        lambda t, x: x.masked_select(t.tensor(MASK)),
    ),
    "select and unbind": (
        [X],
        lambda x: x.select(1, -1) + firefly.stack(x.unbind(2), 0).sum(0)[:, :1],
        lambda x: x[:, -1] + x.sum(2)[:, :1],
        lambda t, x: x.select(1, -1) + t.stack(x.unbind(2), 0).sum(0)[:, :1],
    ),
    "movedim": (
        [X],
        lambda x: x.movedim((0, 1), (2, 0)),
        lambda x: np.moveaxis(x, (0, 1), (2, 0)),
        lambda t, x: x.movedim((0, 1), (2, 0)),
    ),
    "swapaxes unflatten": (
        [X],
        lambda x: x.swapaxes(0, 2).unflatten(0, (-1, 1)),
        lambda x: np.swapaxes(x, 0, 2).reshape(5, 1, 4, 3),
        lambda t, x: x.swapaxes(0, 2).unflatten(0, (-1, 1)),
    ),
    "take_along_dim": (
        [X],
        lambda x: x.take_along_dim(long(RNG_INDEX), 1),
        lambda x: np.take_along_axis(x, RNG_INDEX, 1),
        lambda t, x: x.take_along_dim(t.tensor(RNG_INDEX), 1),
    ),
    "diff": ([X], lambda x: x.diff(2, 1), lambda x: np.diff(x, 2, 1), lambda t, x: x.diff(2, 1)),
    "nan_to_num": (
        [np.where(X > 1.0, np.inf, np.where(X < -1.0, np.nan, X))],
        lambda x: x.nan_to_num(0.5, 9.0, -9.0),
        lambda x: np.nan_to_num(x, nan=0.5, posinf=9.0, neginf=-9.0),
        lambda t, x: x.nan_to_num(0.5, 9.0, -9.0),
    ),
    "hstack vstack": (
        [X[0], X[1, 0]],
        lambda a, b: firefly.vstack([a, b]) + firefly.hstack([b[:2], b[2:]]),
        lambda a, b: np.vstack([a, b]) + np.hstack([b[:2], b[2:]]),
        lambda t, a, b: t.vstack([a, b]) + t.hstack([b[:2], b[2:]]),
    ),
    "meshgrid": (
        [X[0, 0], X[0, 1, :3]],
        lambda a, b: firefly.meshgrid(a, b, indexing="xy")[0] * firefly.meshgrid(a, b)[1].T,
        lambda a, b: np.meshgrid(a, b)[0] * np.meshgrid(a, b, indexing="ij")[1].T,
        lambda t, a, b: t.meshgrid(a, b, indexing="xy")[0] * t.meshgrid(a, b, indexing="ij")[1].T,
    ),
    "index_add": (
        [X, data(3, 3, 5)],
        lambda x, s: x.index_add(1, long([3, 0, 3]), s, alpha=0.5),
        lambda x, s: np_index_add(x, 1, [3, 0, 3], 0.5 * s),
        lambda t, x, s: x.index_add(1, t.tensor([3, 0, 3]), s, alpha=0.5),
    ),
    "index_copy": (
        [X, data(3, 4, 2)],
        lambda x, s: firefly.index_copy(x, -1, long([4, 1]), s),
        lambda x, s: np_index_copy(x, [4, 1], s),
        lambda t, x, s: t.index_copy(x, -1, t.tensor([4, 1]), s),
    ),
    "index_fill": (
        [X],
        lambda x: x.index_fill(0, long([2, 0]), -1.5),
        lambda x: np.where(np.isin(np.arange(3), [2, 0])[:, None, None], -1.5, x),
        lambda t, x: x.index_fill(0, t.tensor([2, 0]), -1.5),
    ),
    "prod": ([X[0] + 0.5], lambda x: x.prod(), np.prod, lambda t, x: x.prod()),
    "prod dim keepdim": (
        [X],
        lambda x: firefly.prod(x, -1, keepdim=True),
        lambda x: np.prod(x, -1, keepdims=True),
        lambda t, x: t.prod(x, -1, keepdim=True),
    ),
    "prod with a zero": (
        [WITH_ZERO],
        lambda x: x.prod(1),
        lambda x: np.prod(x, 1),
        lambda t, x: x.prod(1),
    ),
    "kthvalue": (
        [X],
        lambda x: x.kthvalue(2, 1).values,
        lambda x: np.sort(x, 1)[:, 1],
        lambda t, x: x.kthvalue(2, 1).values,
    ),
    "median": (
        [X],
        lambda x: firefly.median(x, -1, keepdim=True)[0] + x.median(),
        lambda x: np.sort(x, -1)[..., 2:3] + np.sort(x.reshape(-1))[29],
        lambda t, x: t.median(x, -1, keepdim=True)[0] + x.median(),
    ),
    "tensordot": (
        [X, data(5, 4, 2)],
        lambda a, b: firefly.tensordot(a, b, ([1, 2], [1, 0])) + firefly.tensordot(a, b, 0).sum(),
        lambda a, b: np.tensordot(a, b, ([1, 2], [1, 0])) + np.tensordot(a, b, 0).sum(),
        lambda t, a, b: t.tensordot(a, b, ([1, 2], [1, 0])) + t.tensordot(a, b, 0).sum(),
    ),
    "cumprod": (
        [X],
        lambda x: x.cumprod(-1),
        lambda x: np.cumprod(x, -1),
        lambda t, x: x.cumprod(-1),
    ),
    "cumprod with zeros": (
        [WITH_ZERO],
        lambda x: firefly.cumprod(x, 1),
        lambda x: np.cumprod(x, 1),
        lambda t, x: t.cumprod(x, 1),
    ),
    "cross": (
        [data(4, 3), data(1, 3)],
        lambda a, b: a.cross(b, dim=-1) + firefly.cross(a.T, b.T.expand(3, 4)).T,
        lambda a, b: 2.0 * np.cross(a, b),
        lambda t, a, b: t.cross(a, b, dim=-1) + t.cross(a.T, b.T.expand(3, 4), dim=0).T,
    ),
}
# Compositions of linear ops, norms that are smooth away from 0 and matmuls: their second
# derivatives are defined. (The sort-like selections are linear in the values too.)
NAMES = sorted(CASES)


def tensors(arrays, requires_grad=False):
    return [Tensor(np.array(a, dtype=np.float64), requires_grad=requires_grad) for a in arrays]


@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_numpy(name):
    arrays, fn, reference, _ = CASES[name]
    out = fn(*tensors(arrays))
    expected = reference(*arrays)
    assert out.shape == np.shape(expected)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_float32_keeps_its_dtype(name):
    arrays, fn, reference, _ = CASES[name]
    out = fn(*[Tensor(np.asarray(a, dtype=np.float32)) for a in arrays])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), reference(*arrays), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_finite_differences(name):
    arrays, fn, _, _ = CASES[name]
    assert gradcheck(fn, *arrays)


@pytest.mark.parametrize("name", NAMES)
def test_second_derivatives_match_finite_differences(name):
    arrays, fn, _, _ = CASES[name]
    assert gradgradcheck(fn, *arrays)


@pytest.mark.parametrize("name", NAMES)
def test_forward_and_gradients_match_torch(name):
    torch = pytest.importorskip("torch")
    arrays, fn, _, torch_fn = CASES[name]
    ours = tensors(arrays, requires_grad=True)
    theirs = [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in arrays]
    out, expected = fn(*ours), torch_fn(torch, *theirs)
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    weights = RNG.standard_normal(out.shape)
    out.backward(weights)
    expected.backward(torch.tensor(weights))
    for mine, reference in zip(ours, theirs):
        np.testing.assert_allclose(
            mine.grad.numpy(), reference.grad.numpy(), rtol=1e-10, atol=1e-12
        )


# ----------------------------------------------------------------------------- the new ops
@pytest.mark.parametrize(
    "name, reference",
    [
        ("erfc", lambda a, attrs: np.vectorize(math.erfc, otypes=[np.float64])(a[0])),
        (
            "cumsum",
            lambda a, attrs: (
                a[0]
                if a[0].ndim == 0
                else np.flip(np.cumsum(np.flip(a[0], attrs["dim"]), attrs["dim"]), attrs["dim"])
                if attrs["reverse"]
                else np.cumsum(a[0], attrs["dim"])
            ),
        ),
    ],
)
def test_new_kernel_ops_pass_the_battery(name, reference):
    assert check_op(name, reference=reference)


def test_erfc_keeps_precision_where_one_minus_erf_cancels():
    x = firefly.tensor([5.0, 10.0, 26.0], dtype="float64")
    expected = [math.erfc(v) for v in (5.0, 10.0, 26.0)]
    np.testing.assert_allclose(x.erfc().numpy(), expected, rtol=1e-14)
    assert (1.0 - x.erf()).numpy()[1] == 0.0  # what erfc avoids


def test_cumsum_accumulates_float32_in_float64():
    x = firefly.full((100_000,), 0.1, dtype="float32")
    assert abs(float(x.cumsum(0)[-1]) - 10_000.0) < 1e-2


# ----------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("diagonal", [-4, -2, -1, 0, 1, 3, 5])
@pytest.mark.parametrize("shape", [(3, 4), (4, 3), (2, 3, 4)])
def test_tril_triu_at_every_diagonal_offset(shape, diagonal):
    x = data(*shape)
    np.testing.assert_array_equal(Tensor(x).tril(diagonal).numpy(), np.tril(x, diagonal))
    np.testing.assert_array_equal(Tensor(x).triu(diagonal).numpy(), np.triu(x, diagonal))


def test_tril_gradient_is_the_mask():
    x = firefly.ones(3, 3, requires_grad=True)
    x.tril(-1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.tril(np.ones((3, 3)), -1))


def test_in_place_forms_match_the_out_of_place_ones():
    x = data(3, 4)
    for method, args in [
        ("tril_", (1,)),
        ("triu_", ()),
        ("masked_fill_", (firefly.tensor(MASK[:3]), 0.5)),
        ("scatter_", (1, long([[0], [3], [1]]), firefly.tensor(data(3, 1), dtype="float64"))),
        ("scatter_add_", (0, long([[0, 2, 2, 1]]), firefly.tensor(data(1, 4), dtype="float64"))),
    ]:
        target = firefly.tensor(x, dtype="float64")
        expected = getattr(firefly.tensor(x, dtype="float64"), method.rstrip("_"))(*args)
        assert getattr(target, method)(*args) is target
        np.testing.assert_array_equal(target.numpy(), expected.numpy())


def test_masked_fill_in_place_on_a_computed_tensor_records_the_gradient():
    w = firefly.tensor([1.0, 2.0, 3.0], dtype="float64", requires_grad=True)
    y = w * 2.0
    y.masked_fill_(firefly.tensor([False, True, False]), 0.0)
    y.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [2.0, 0.0, 2.0])


def test_masked_fill_refuses_a_leaf_that_requires_grad_in_place():
    with pytest.raises(RuntimeError, match="masked_fill_"):
        firefly.zeros(2, requires_grad=True).masked_fill_(firefly.tensor([True, False]), 1.0)


def test_masked_fill_tensor_value_gets_the_gradient_of_the_filled_places():
    value = firefly.tensor(2.0, dtype="float64", requires_grad=True)
    mask = firefly.tensor([[True, False, True]])
    firefly.zeros(2, 3, dtype="float64").masked_fill(mask, value).sum().backward()
    assert float(value.grad) == 4.0


@pytest.mark.parametrize(
    "fn, reference",
    [
        (lambda x: x.sort(0).values, lambda a: np.sort(a, 0)),
        (lambda x: x.topk(0, dim=1).values, lambda a: a[:, :0]),
        (lambda x: x.cumsum(1), lambda a: np.cumsum(a, 1)),
        (lambda x: x.index_select(1, long([])), lambda a: a[:, []]),
        (lambda x: x.masked_fill(firefly.tensor(np.zeros(1, bool)), 1.0), lambda a: a),
        (lambda x: x.flip(0, 1), lambda a: a[::-1, ::-1]),
        (lambda x: x.roll(2, 1), lambda a: np.roll(a, 2, 1)),
        (lambda x: x.repeat(2, 1), lambda a: np.tile(a, (2, 1))),
        (lambda x: x.tril(), np.tril),
        (lambda x: x.narrow(1, 1, 0), lambda a: a[:, 1:1]),
        (lambda x: x.norm(dim=1), lambda a: np.linalg.norm(a, axis=1)),
        (
            lambda x: firefly.einsum("ij,jk->ik", x, firefly.ones(3, 2, dtype="float64")),
            lambda a: a @ np.ones((3, 2)),
        ),
    ],
)
@pytest.mark.parametrize("shape", [(0, 3), (2, 3)])
def test_empty_tensors_and_empty_selections(fn, reference, shape):
    a = data(*shape)
    x = firefly.tensor(a, dtype="float64", requires_grad=True)
    out = fn(x)
    expected = reference(a)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-12)
    out.sum().backward()
    assert x.grad.shape == shape


def test_topk_k_zero_and_k_full():
    x = firefly.tensor(data(3, 4), dtype="float64")
    values, indices = x.topk(0)
    assert values.shape == (3, 0) and indices.shape == (3, 0) and indices.dtype == np.int64
    values, indices = x.topk(4, dim=-1)
    np.testing.assert_array_equal(values.numpy(), -np.sort(-x.numpy(), -1))
    np.testing.assert_array_equal(
        np.take_along_axis(x.numpy(), indices.numpy(), -1), values.numpy()
    )


def test_sort_and_topk_indices_record_nothing():
    x = firefly.tensor(data(3, 4), dtype="float64", requires_grad=True)
    values, indices = x.sort(dim=0)
    assert values.requires_grad and not indices.requires_grad
    assert indices.dtype == np.int64 and x.argsort().dtype == np.int64
    assert not x.topk(2).indices.requires_grad


def test_sort_is_stable_and_places_nan_as_torch():
    torch = pytest.importorskip("torch")
    x = np.array([[2.0, np.nan, 1.0, 2.0, -np.inf, 1.0, np.inf]])
    for descending in (False, True):
        ours = firefly.tensor(x, dtype="float64").sort(-1, descending, stable=True)
        theirs = torch.tensor(x).sort(dim=-1, descending=descending, stable=True)
        np.testing.assert_array_equal(ours.values.numpy(), theirs.values.numpy())
        np.testing.assert_array_equal(ours.indices.numpy(), theirs.indices.numpy())
        np.testing.assert_array_equal(
            firefly.argsort(firefly.tensor(x), descending=descending, stable=True).numpy(),
            torch.argsort(torch.tensor(x), dim=-1, descending=descending, stable=True).numpy(),
        )


def test_zero_dim_tensors():
    x = firefly.tensor(3.0, dtype="float64", requires_grad=True)
    assert x.sort().values.shape == () and float(x.topk(1).values) == 3.0
    assert float(x.cumsum(0)) == 3.0 and float(x.cumsum(-1)) == 3.0
    assert x.flip(0).shape == () and x.roll(1, 0).shape == ()
    assert float(x.norm()) == 3.0
    x.topk(1).values.backward()
    assert float(x.grad) == 1.0


def test_norm_of_zero_has_gradient_zero_as_torch():
    torch = pytest.importorskip("torch")
    x = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    for p in (2, 3, 1):
        ours = firefly.tensor(x, dtype="float64", requires_grad=True)
        theirs = torch.tensor(x, requires_grad=True)
        ours.norm(p, dim=1).sum().backward()
        theirs.norm(p, dim=1).sum().backward()
        np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), atol=1e-15)
        assert np.isfinite(ours.grad.numpy()).all()


def test_normalize_and_cosine_similarity_of_a_zero_vector_match_torch():
    torch = pytest.importorskip("torch")
    a = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    b = np.array([[1.0, -1.0, 0.5], [0.0, 1.0, 0.0]])
    for ours_fn, torch_fn in [
        (lambda u, v: F.normalize(u, dim=1), lambda u, v: torch.nn.functional.normalize(u, dim=1)),
        (lambda u, v: F.cosine_similarity(u, v), lambda u, v: torch.cosine_similarity(u, v)),
    ]:
        ours = tensors([a, b], requires_grad=True)
        theirs = [torch.tensor(v, requires_grad=True) for v in (a, b)]
        out, expected = ours_fn(*ours), torch_fn(*theirs)
        np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), atol=1e-15)
        out.sum().backward()
        expected.sum().backward()
        for mine, reference in zip(ours, theirs):
            if reference.grad is not None:
                np.testing.assert_allclose(mine.grad.numpy(), reference.grad.numpy(), atol=1e-12)


def test_norm_zero_counts_and_empty_norm_is_zero():
    x = firefly.tensor([[0.0, 1.5, -2.0], [0.0, 0.0, 3.0]], dtype="float64")
    np.testing.assert_array_equal(x.norm(0, dim=1).numpy(), [2.0, 1.0])
    assert float(firefly.zeros(0).norm()) == 0.0


def test_integer_and_bool_tensors_rearrange_without_a_graph():
    a = np.arange(12).reshape(3, 4)
    x = long(a)
    assert x.tril(1).equal(np.tril(a, 1)) and x.triu().equal(np.triu(a))
    assert x.flip(1).equal(a[:, ::-1]) and x.roll(1, 0).equal(np.roll(a, 1, 0))
    assert x.repeat(2, 1).equal(np.tile(a, (2, 1)))
    assert x.repeat_interleave(2, dim=1).equal(np.repeat(a, 2, 1))
    assert x.index_select(0, long([2, 0])).equal(a[[2, 0]])
    assert x.sort(1, descending=True).values.equal(a[:, ::-1])
    assert x.cumsum(1).equal(np.cumsum(a, 1)) and x.cumsum(0).dtype == np.int64
    assert firefly.tensor([True, False, True]).cumsum(0).equal(np.array([1, 1, 2]))
    assert x.masked_fill(firefly.tensor(a % 2 == 0), -1).equal(np.where(a % 2 == 0, -1, a))
    assert x.scatter_add(1, long([[0, 0]] * 3), long([[1, 2]] * 3)).equal(
        a + np.array([[3, 0, 0, 0]] * 3)
    )
    assert x.narrow(0, 1, 2).equal(a[1:3])


def test_scatter_repeated_positions_keep_the_last_write_and_scatter_add_sums_them():
    x = firefly.zeros(4, dtype="float64")
    src = firefly.tensor([1.0, 2.0, 3.0], dtype="float64")
    index = long([1, 1, 3])
    np.testing.assert_array_equal(x.scatter(0, index, src).numpy(), [0.0, 2.0, 0.0, 3.0])
    np.testing.assert_array_equal(x.scatter_add(0, index, src).numpy(), [0.0, 3.0, 0.0, 3.0])
    np.testing.assert_array_equal(x.scatter(0, index, 7.0, reduce="add").numpy(), [0, 14, 0, 7])


def test_scatter_src_larger_than_the_index_reads_its_leading_corner():
    x = np.zeros((2, 4))
    src = data(3, 5)
    index = np.array([[3, 0], [1, 2]])
    out = Tensor(x).scatter_add(1, long(index), Tensor(src))
    np.testing.assert_allclose(out.numpy(), np_scatter_add(x, 1, index, src))


def test_repeat_interleave_with_output_size_and_counts_alone():
    x = firefly.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert x.repeat_interleave(long([1, 2]), dim=0, output_size=3).equal(
        np.array([[1.0, 2.0], [3.0, 4.0], [3.0, 4.0]], np.float32)
    )
    assert firefly.repeat_interleave(long([2, 0, 1])).equal(np.array([0, 0, 2]))


def test_tril_and_triu_indices_match_torch():
    torch = pytest.importorskip("torch")
    for row, col, offset in [(3, 3, 0), (4, 3, -1), (3, 5, 2), (0, 2, 0)]:
        np.testing.assert_array_equal(
            firefly.tril_indices(row, col, offset).numpy(),
            torch.tril_indices(row, col, offset).numpy(),
        )
        np.testing.assert_array_equal(
            firefly.triu_indices(row, col, offset).numpy(),
            torch.triu_indices(row, col, offset).numpy(),
        )


def test_one_hot_matches_torch():
    torch = pytest.importorskip("torch")
    labels = np.array([[0, 3], [2, 1]])
    for num_classes in (-1, 5):
        ours = F.one_hot(long(labels), num_classes)
        theirs = torch.nn.functional.one_hot(torch.tensor(labels), num_classes)
        assert ours.dtype == np.int64
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize(
    "equation, shapes",
    [
        ("ij,jk", [(3, 4), (4, 5)]),
        ("ij->", [(3, 4)]),
        ("ij->ji", [(3, 4)]),
        ("i,j->ij", [(3,), (4,)]),
        ("i,i->", [(3,), (3,)]),
        ("ii->i", [(3, 3)]),
        ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
        ("nd,md->nm", [(3, 4), (5, 4)]),
        ("b i d, b j d -> b i j", [(2, 3, 4), (2, 5, 4)]),
        ("abc,abd->cd", [(2, 3, 4), (2, 3, 5)]),
        ("ijk,jil->kl", [(2, 3, 4), (3, 2, 5)]),
        ("i,i,i->i", [(3,), (3,), (3,)]),
        ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]),
        ("ij,ij->ij", [(3, 1), (1, 4)]),
        ("...d,...d->...", [(2, 3, 4), (3, 4)]),
        ("Ab,bC->CA", [(2, 3), (3, 4)]),
    ],
)
def test_einsum_equations_match_torch_forward_and_backward(equation, shapes):
    torch = pytest.importorskip("torch")
    arrays = [data(*s) for s in shapes]
    ours = tensors(arrays, requires_grad=True)
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, expected = firefly.einsum(equation, *ours), torch.einsum(equation, *theirs)
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        out.numpy(), np.einsum(equation.replace(" ", ""), *arrays), atol=1e-12
    )
    weights = RNG.standard_normal(out.shape)
    out.backward(weights)
    expected.backward(torch.tensor(weights))
    for mine, reference in zip(ours, theirs):
        np.testing.assert_allclose(
            mine.grad.numpy(), reference.grad.numpy(), rtol=1e-12, atol=1e-12
        )


def test_einsum_of_integer_tensors_is_numpys():
    a = np.arange(6).reshape(2, 3)
    assert firefly.einsum("ij,kj->ik", long(a), long(a)).equal(a @ a.T)


def test_tensor_norm_points_the_nuclear_norm_to_linalg():
    with pytest.raises(ValueError, match="norm: p='nuc'.*linalg.matrix_norm"):
        firefly.ones(2, 2).norm("nuc")


def test_baddbmm_with_beta_zero_ignores_nan_in_the_input():
    bias = firefly.full((2, 3, 3), float("nan"), dtype="float64")
    a, b = firefly.ones(2, 3, 4, dtype="float64"), firefly.ones(2, 4, 3, dtype="float64")
    np.testing.assert_array_equal(bias.baddbmm(a, b, beta=0).numpy(), np.full((2, 3, 3), 4.0))


# ----------------------------------------------------------------------------- multinomial
def test_multinomial_with_replacement_follows_the_weights():
    weights = firefly.tensor([[1.0, 3.0, 0.0, 6.0], [5.0, 0.0, 5.0, 0.0]], dtype="float64")
    draws = weights.multinomial(
        20_000, replacement=True, generator=firefly.Generator().manual_seed(1)
    )
    assert draws.shape == (2, 20_000) and draws.dtype == np.int64 and not draws.requires_grad
    for row, expected in zip(draws.numpy(), ([0.1, 0.3, 0.0, 0.6], [0.5, 0.0, 0.5, 0.0])):
        frequencies = np.bincount(row, minlength=4) / row.size
        np.testing.assert_allclose(frequencies, expected, atol=0.015)


def test_multinomial_without_replacement_draws_each_category_at_most_once():
    weights = firefly.tensor([1.0, 0.0, 2.0, 7.0, 0.5], dtype="float64")
    generator = firefly.Generator().manual_seed(3)
    firsts = []
    for _ in range(3000):
        draw = weights.multinomial(4, generator=generator).numpy()
        assert sorted(draw) == [0, 2, 3, 4]  # every non-zero category once, category 1 never
        firsts.append(draw[0])
    # The first draw follows the weights; the later ones the weights of what is left.
    np.testing.assert_allclose(
        np.bincount(firsts, minlength=5) / 3000, np.array([1, 0, 2, 7, 0.5]) / 10.5, atol=0.03
    )


def test_multinomial_is_reproducible_from_a_generator_and_from_manual_seed():
    weights = firefly.tensor([0.2, 0.3, 0.5])
    first = weights.multinomial(10, True, generator=firefly.Generator().manual_seed(7))
    second = firefly.multinomial(weights, 10, True, generator=firefly.Generator().manual_seed(7))
    assert first.equal(second)
    firefly.manual_seed(11)
    third = weights.multinomial(2)
    firefly.manual_seed(11)
    assert third.equal(weights.multinomial(2))


# ----------------------------------------------------------------------------- public names
@pytest.mark.parametrize(
    "name",
    [
        "erfc",
        "narrow",
        "flip",
        "roll",
        "tril",
        "triu",
        "masked_fill",
        "scatter",
        "scatter_add",
        "index_select",
        "topk",
        "sort",
        "argsort",
        "multinomial",
        "norm",
        "cumsum",
        "mm",
        "bmm",
        "addmm",
        "baddbmm",
        "einsum",
        "cosine_similarity",
        "cdist",
        "repeat_interleave",
        "tril_indices",
        "triu_indices",
        "t",
        "var",
        "std",
        "logsumexp",
        "clamp_min",
        "addcmul",
        "lerp",
        "hypot",
        "logaddexp",
        "isnan",
        "isfinite",
        "nan_to_num",
        "nonzero",
        "count_nonzero",
        "unique",
        "bincount",
        "diagonal",
        "diag",
        "trace",
        "outer",
        "dot",
        "masked_select",
        "select",
        "unbind",
        "movedim",
        "broadcast_to",
        "take_along_dim",
        "diff",
        "hstack",
        "vstack",
        "meshgrid",
    ],
)
def test_top_level_names_are_public_as_in_torch(name):
    torch = pytest.importorskip("torch")
    assert name in firefly.__all__ and callable(getattr(firefly, name))
    assert callable(getattr(torch, name))


def test_linalg_and_functional_names_are_public():
    for name in ("vector_norm", "matrix_norm", "norm"):
        assert name in firefly.linalg.__all__
    for name in ("normalize", "cosine_similarity", "pairwise_distance", "one_hot"):
        assert name in F.__all__


def test_discrete_results_match_torch():
    torch = pytest.importorskip("torch")
    a = np.array([[0.0, 2.0, np.nan], [np.inf, -1.0, 2.0], [0.0, 0.0, -np.inf]])
    ours, theirs = firefly.tensor(a, dtype="float64"), torch.tensor(a)
    for name in ("isnan", "isinf", "isfinite", "nonzero", "argwhere", "count_nonzero"):
        np.testing.assert_array_equal(
            getattr(ours, name)().numpy(), getattr(theirs, name)().numpy()
        )
    np.testing.assert_array_equal(ours.count_nonzero(1).numpy(), theirs.count_nonzero(1).numpy())
    for k, c in zip(ours.nonzero(as_tuple=True), theirs.nonzero(as_tuple=True)):
        np.testing.assert_array_equal(k.numpy(), c.numpy())
    labels = np.array([[3, 1], [1, 0]])
    mine = long(labels).unique(return_inverse=True, return_counts=True)
    reference = torch.tensor(labels).unique(return_inverse=True, return_counts=True)
    for m, r in zip(mine, reference):
        np.testing.assert_array_equal(m.numpy(), r.numpy())
    rows = long([[1, 2], [1, 2], [0, 5]]).unique(dim=0)
    np.testing.assert_array_equal(rows.numpy(), [[0, 5], [1, 2]])
    counts = long([0, 3, 3, 1])
    np.testing.assert_array_equal(counts.bincount(minlength=5).numpy(), [1, 1, 0, 2, 0])
    weighted = counts.bincount(firefly.tensor([0.5, 1.0, 2.0, 4.0]))
    assert weighted.dtype == np.float32
    np.testing.assert_array_equal(weighted.numpy(), [0.5, 4.0, 0.0, 3.0])


def test_var_of_one_element_is_nan_as_torch():
    assert math.isnan(float(firefly.tensor([2.0]).var()))
    assert float(firefly.tensor([2.0]).var(correction=0)) == 0.0


def test_logsumexp_handles_infinite_rows():
    x = firefly.tensor([[-np.inf, -np.inf], [np.inf, 0.0], [1000.0, 1000.0]], dtype="float64")
    np.testing.assert_allclose(x.logsumexp(1).numpy(), [-np.inf, np.inf, 1000.0 + math.log(2.0)])


def test_in_place_index_forms_and_where_alone():
    x = firefly.zeros(2, 3, dtype="float64")
    x.index_add_(1, long([2, 2]), firefly.ones(2, 2, dtype="float64"))
    x.index_fill_(0, long([0]), 7.0)
    x.index_copy_(1, long([0]), firefly.full((2, 1), 3.0, dtype="float64"))
    np.testing.assert_array_equal(x.numpy(), [[3.0, 7.0, 7.0], [3.0, 0.0, 2.0]])
    rows, cols = firefly.where(x > 2.5)
    np.testing.assert_array_equal(rows.numpy(), [0, 0, 0, 1])
    np.testing.assert_array_equal(cols.numpy(), [0, 1, 2, 0])


def test_prod_of_integers_and_of_nothing():
    assert long([[2, 3], [4, 5]]).prod(0).equal(np.array([8, 15]))
    assert float(firefly.zeros(0).prod()) == 1.0


def test_median_and_kthvalue_indices_match_torch():
    torch = pytest.importorskip("torch")
    ours, theirs = firefly.tensor(X, dtype="float64"), torch.tensor(X)
    np.testing.assert_array_equal(ours.median(1).indices.numpy(), theirs.median(1).indices.numpy())
    np.testing.assert_array_equal(
        ours.kthvalue(3, 0, keepdim=True).indices.numpy(),
        theirs.kthvalue(3, 0, keepdim=True).indices.numpy(),
    )
