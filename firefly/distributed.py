"""Data-parallel training over MPI (mpi4py): collectives, DistributedDataParallel,
DistributedOptimizer and a rank-0 checkpoint helper.

Launch N copies of one program with ``mpiexec -n N python train.py``; each copy is a *rank*.
Without ``mpiexec`` a program sees one rank and everything here works unchanged, with no MPI
involved. mpi4py is imported only by ``init()`` (called for you when the program runs under an
MPI launcher), never by ``import firefly``; install it with
``pip install "firefly-dl[distributed]"``.

Gradient averaging rides on the optimizer's flat buffers: every gradient of one dtype already
sits in one contiguous array, so averaging across ranks is one in-place ``Allreduce`` per
buffer, run by a step pre-hook just before the optimizer updates the parameters.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Iterable, Iterator
from os import PathLike
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from firefly import autograd
from firefly.install import install_hint
from firefly.nn.module import Module
from firefly.nn.parameter import Parameter
from firefly.optim.optimizer import FusedOptimizer, register_optimizer_step_pre_hook
from firefly.serialization import save as _save
from firefly.tensor import Tensor

INSTALL_HINT = install_hint("distributed")
# Set by MPI launchers (MPICH/Hydra and Slurm's PMI, Open MPI, MVAPICH) to the number of ranks.
_LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_REDUCE_OPS = ("sum", "mean", "max", "min")
# s; how long a failing rank waits for the launcher to read its traceback before aborting
_DRAIN_TIMEOUT = 5.0

_MPI: Any = None  # the mpi4py.MPI module, once init() ran
_comm: Any = None  # MPI.COMM_WORLD, once init() ran
# What the collectives work on in place, and give back: a Tensor or an ndarray.
Buffer = TypeVar("Buffer", Tensor, np.ndarray)


# ----------------------------------------------------------------------------- setup
def _launched_by_mpi() -> bool:
    """Whether an MPI launcher started this process as one of several ranks."""
    for name in _LAUNCHER_SIZE_VARIABLES:
        try:
            if int(os.environ.get(name, "1")) > 1:
                return True
        except ValueError:
            continue
    return False


def init() -> None:
    """Start MPI (once; later calls do nothing). Under ``mpiexec`` the collectives then span
    every rank, and an uncaught exception on any rank aborts the whole job (see
    ``abort_on_exception``). Raises ImportError naming ``pip install "firefly-dl[distributed]"``
    when mpi4py or its MPI library is missing."""
    global _MPI, _comm
    if _comm is not None:
        return
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError, OSError) as exc:
        raise ImportError(
            "firefly.distributed needs mpi4py and an MPI library; "
            f"install them with {INSTALL_HINT} ({exc})"
        ) from None
    _MPI, _comm = MPI, MPI.COMM_WORLD
    if _comm.Get_size() > 1:
        abort_on_exception()


def is_initialized() -> bool:
    """Whether ``init()`` has run in this process."""
    return _comm is not None


def _communicator() -> Any:
    """COMM_WORLD, starting MPI first when launched by ``mpiexec``; None for a lone process."""
    if _comm is None and _launched_by_mpi():
        init()
    return _comm


def rank() -> int:
    """This process's rank, 0 to ``world_size() - 1``; 0 without ``mpiexec``."""
    comm = _communicator()
    return 0 if comm is None else comm.Get_rank()


def world_size() -> int:
    """The number of ranks; 1 without ``mpiexec``."""
    comm = _communicator()
    return 1 if comm is None else comm.Get_size()


def barrier() -> None:
    """Wait until every rank gets here."""
    comm = _communicator()
    if comm is not None:
        comm.Barrier()


def _launcher_rank() -> str:
    """This rank's number as the MPI launcher set it, read before MPI starts; "?" if unknown."""
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"):
        if name in os.environ:
            return os.environ[name]
    return "?"


def _unread_bytes(fd: int) -> int:
    """How many bytes written to the pipe ``fd`` its reader has not taken yet (0 for anything
    that is not a pipe, or where the platform cannot tell)."""
    try:
        import fcntl
        import termios

        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return 0
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except (ImportError, OSError):
        return 0


def _wait_until_launcher_reads(streams, timeout: float = _DRAIN_TIMEOUT) -> None:
    """Flush ``streams`` and wait, at most ``timeout`` seconds, until the MPI launcher has read
    everything they hold in their pipes.

    Why: the launcher (MPICH's Hydra proxy) reads a rank's stdout/stderr pipes and its abort
    request in one event loop. When both are ready at once, as on a loaded machine, it can act
    on the abort first and kill the job with the traceback still unread in the pipe: the job
    then exits 1 with nothing on stderr. Once the pipes are empty, the output is on its way
    upstream ahead of the abort request."""
    fds = []
    for stream in streams:
        try:
            stream.flush()
            fds.append(stream.fileno())
        except (AttributeError, OSError, ValueError):  # closed, or not backed by a file
            continue
    deadline = time.monotonic() + timeout
    while any(_unread_bytes(fd) for fd in fds) and time.monotonic() < deadline:
        time.sleep(0.002)


def abort_on_exception() -> None:
    """Make an uncaught exception on this rank (in any thread) print its traceback once,
    prefixed with the rank, and then abort every rank (``MPI.COMM_WORLD.Abort(1)``), so that
    no rank is left waiting forever in a collective. The traceback reaches the launcher before
    the abort request does (see ``_wait_until_launcher_reads``), and the rank exits with status
    1 even if ``Abort`` returns. Installed when ``firefly.distributed`` is imported under an MPI
    launcher with several ranks; MPI itself starts only if an exception comes (aborting needs
    it). ``SystemExit`` (``sys.exit``) is not an error here and does not abort: a rank that
    exits early with other ranks waiting for it still hangs the job."""
    if getattr(sys.excepthook, "_firefly_aborts", False):
        return

    def abort(
        kind: type[BaseException], value: BaseException | None, tb: TracebackType | None
    ) -> None:
        rank, size = (
            (_comm.Get_rank(), _comm.Get_size()) if _comm is not None else (_launcher_rank(), "?")
        )
        message = f"firefly.distributed: rank {rank} of {size} failed; aborting the job\n"
        sys.stderr.write(message + "".join(traceback.format_exception(kind, value, tb)))
        _wait_until_launcher_reads((sys.stdout, sys.stderr))
        try:
            init()
        except ImportError:  # no MPI to abort with; the launcher sees this rank's exit status
            return
        _comm.Abort(1)
        os._exit(1)  # Abort returned (the launcher is gone): end this rank, skipping MPI_Finalize

    def abort_from_thread(args: threading.ExceptHookArgs) -> None:
        abort(args.exc_type, args.exc_value, args.exc_traceback)

    abort._firefly_aborts = True  # type: ignore[attr-defined]  # the marker checked above
    sys.excepthook = abort
    threading.excepthook = abort_from_thread


# ----------------------------------------------------------------------------- collectives
def _buffer(name: str, x: object) -> np.ndarray:
    """The ndarray behind ``x`` (a Tensor or an ndarray), checked for in-place MPI use."""
    array = x._data if isinstance(x, Tensor) else x
    if not isinstance(array, np.ndarray):
        raise TypeError(
            f"firefly.distributed.{name}: expected a Tensor or an ndarray, got {type(x).__name__}"
        )
    if array.dtype.kind not in "fiub":
        raise TypeError(f"firefly.distributed.{name}: expected numbers, got dtype {array.dtype}")
    if not (array.flags.c_contiguous and array.flags.writeable):
        raise ValueError(
            f"firefly.distributed.{name}: the array (shape {array.shape}, {array.dtype}) must be "
            "C-contiguous and writeable; pass np.ascontiguousarray(x)"
        )
    return array


def all_reduce(x: Buffer, op: str = "sum") -> Buffer:
    """Combine ``x`` (a Tensor or an ndarray, the same shape and dtype on every rank) across
    ranks in place with ``op``: "sum", "mean", "max" or "min"; returns ``x``. "mean" needs
    floats. As ``torch.distributed.all_reduce``, and with one rank it leaves ``x`` as it is."""
    if op not in _REDUCE_OPS:
        raise ValueError(
            f"firefly.distributed.all_reduce: op must be one of {_REDUCE_OPS}, got {op!r}"
        )
    array = _buffer("all_reduce", x)
    if op == "mean" and array.dtype.kind != "f":
        raise TypeError(
            f"firefly.distributed.all_reduce: op='mean' needs a float array, got {array.dtype}"
        )
    comm = _communicator()
    if comm is None or comm.Get_size() == 1:
        return x
    mpi_op = {"sum": _MPI.SUM, "mean": _MPI.SUM, "max": _MPI.MAX, "min": _MPI.MIN}[op]
    comm.Allreduce(_MPI.IN_PLACE, array, op=mpi_op)
    if op == "mean":
        array /= comm.Get_size()
    return x


def broadcast(x: Buffer, root: int = 0) -> Buffer:
    """Overwrite ``x`` (a Tensor or an ndarray) on every rank with rank ``root``'s; returns
    ``x``."""
    array = _buffer("broadcast", x)
    comm = _communicator()
    size = 1 if comm is None else comm.Get_size()
    if not 0 <= root < size:
        raise ValueError(
            f"firefly.distributed.broadcast: root must be a rank in [0, {size - 1}], got {root}"
        )
    if size > 1:
        comm.Bcast(array, root=root)
    return x


def all_gather(x: Tensor | np.ndarray) -> list[Tensor] | list[np.ndarray]:
    """A list of every rank's ``x`` (Tensors or ndarrays, as given), in rank order. ``x`` must
    have the same shape and dtype on every rank."""
    array = _buffer("all_gather", x)
    comm = _communicator()
    if comm is None or comm.Get_size() == 1:
        parts = [array.copy()]
    else:
        gathered = np.empty((comm.Get_size(), *array.shape), array.dtype)
        comm.Allgather(array, gathered)
        parts = list(gathered)
    if isinstance(x, Tensor):
        return [Tensor(p, dtype=p.dtype) for p in parts]
    return parts


# ----------------------------------------------------------------------------- helpers
def _module_arrays(module):
    """(name, ndarray) of every parameter, then every buffer when the module has buffers."""
    entries = [(name, param.tensor._data) for name, param in module.named_parameters()]
    named_buffers = getattr(module, "named_buffers", None)
    if named_buffers is not None:
        for name, buffer in named_buffers():
            entries.append(
                (name, buffer._data if isinstance(buffer, Tensor) else np.asarray(buffer))
            )
    return entries


def _check_same_layout(owner, comm, entries, kind):
    """Raise ValueError, on every rank alike, unless every rank has the same names, shapes and
    dtypes in ``entries`` (name, ndarray); the message names the first rank and entry that
    differ from rank 0."""
    layout = [(name, array.shape, str(array.dtype)) for name, array in entries]
    layouts = comm.allgather(layout)
    reference = layouts[0]
    for other_rank, other in enumerate(layouts[1:], start=1):
        for position, (mine, theirs) in enumerate(zip(reference, other)):
            if mine != theirs:
                name, shape, dtype = theirs
                raise ValueError(
                    f"{owner}: {kind} {position} '{name}' has shape {shape} "
                    f"and dtype {dtype} on rank "
                    f"{other_rank}, but '{mine[0]}' has shape {mine[1]} "
                    f"and dtype {mine[2]} on rank 0; "
                    "every rank must build the same model"
                )
        if len(other) != len(reference):
            raise ValueError(
                f"{owner}: rank {other_rank} has {len(other)} {kind}s "
                f"but rank 0 has {len(reference)}; "
                "every rank must build the same model"
            )


def _broadcast_arrays(comm, arrays, root=0):
    """Overwrite ``arrays`` with rank ``root``'s values: one Bcast per dtype."""
    by_dtype = {}
    for array in arrays:
        by_dtype.setdefault(array.dtype, []).append(array)
    for members in by_dtype.values():
        flat = np.concatenate([a.ravel() for a in members])
        comm.Bcast(flat, root=root)
        offset = 0
        for array in members:
            array[...] = flat[offset : offset + array.size].reshape(array.shape)
            offset += array.size


def broadcast_parameters(
    params: Module | Iterable[Parameter | Tensor | np.ndarray], root: int = 0
) -> None:
    """Give every rank rank ``root``'s values of ``params``: a Module (its parameters and
    buffers) or an iterable of Parameters, Tensors or arrays (Horovod's
    ``broadcast_parameters``). Shapes and dtypes are checked first, on every rank."""
    comm = _communicator()
    if isinstance(params, Module):
        entries = _module_arrays(params)
    else:
        entries = [(f"parameter {i}", _parameter_array(p)) for i, p in enumerate(params)]
    if comm is None or comm.Get_size() == 1:
        return
    _check_same_layout("broadcast_parameters", comm, entries, "entry")
    _broadcast_arrays(comm, [array for _, array in entries], root)


def _parameter_array(p):
    tensor = getattr(p, "tensor", p)
    return tensor._data if isinstance(tensor, Tensor) else tensor


# ----------------------------------------------------------------------------- averaging
class _GradientAverager:
    """Averages an optimizer's gradients across ranks from its step pre-hook: a division by the
    number of ranks and one in-place Allreduce per flat gradient buffer (split into buckets of
    at most ``bucket_bytes`` when set). Shared by every DistributedDataParallel and
    DistributedOptimizer attached to one optimizer."""

    def __init__(self, optimizer, comm):
        self.comm = comm
        self.bucket_bytes = None
        self.blockers = weakref.WeakSet()  # objects whose ``require_sync`` is False skip averaging
        optimizer.register_step_pre_hook(self.hook)
        self.averaged_steps = 0

    def hook(self, optimizer, args, kwargs):
        if any(not blocker.require_sync for blocker in self.blockers):
            return None
        closure = kwargs.get("closure", args[0] if args else None)
        if closure is None:
            self.average(optimizer)
            return None

        def averaged_closure():
            loss = closure()
            self.average(optimizer)
            return loss

        # The closure computes the gradients inside step(): average right after it.
        return (), {
            **{k: v for k, v in kwargs.items() if k != "closure"},
            "closure": averaged_closure,
        }

    def average(self, optimizer):
        buffers = optimizer.flat_grads()
        _average_buffers(buffers, self.comm, self.bucket_bytes)
        self.averaged_steps += 1


def _average_buffers(buffers, comm, bucket_bytes=None):
    """Average each flat array of ``buffers`` across the ranks of ``comm`` in place: one
    Allreduce per array, or per chunk of at most ``bucket_bytes`` when given.

    Each rank divides by the number of ranks before the sum, as PyTorch's DDP does: the
    division then runs on values still in this core's cache from backward, while after the
    Allreduce the values arrive from the other ranks' caches and the optimizer's update would
    be paying for that fetch anyway."""
    size = comm.Get_size()
    for flat in buffers:
        flat /= size
        if bucket_bytes is None or flat.nbytes <= bucket_bytes:
            comm.Allreduce(_MPI.IN_PLACE, flat, op=_MPI.SUM)
        else:
            step = max(1, bucket_bytes // flat.itemsize)
            for start in range(0, flat.size, step):
                comm.Allreduce(_MPI.IN_PLACE, flat[start : start + step], op=_MPI.SUM)


# optimizer -> its _GradientAverager
_averagers: weakref.WeakKeyDictionary[Any, _GradientAverager] = weakref.WeakKeyDictionary()


def _check_optimizer(owner, optimizer):
    if not (
        callable(getattr(optimizer, "flat_grads", None))
        and callable(getattr(optimizer, "register_step_pre_hook", None))
    ):
        raise TypeError(
            f"{owner}: the optimizer ({type(optimizer).__name__}) needs flat_grads() and "
            "register_step_pre_hook(), as firefly.optim.SGD, Adam and AdamW have; with another "
            "optimizer, call average_gradients() after backward() and before step()"
        )


def _averager(optimizer, comm):
    averager = _averagers.get(optimizer)
    if averager is None:
        averager = _averagers[optimizer] = _GradientAverager(optimizer, comm)
    return averager


def _average_parameter_grads(comm, params):
    """Average the gradients of ``params`` (Parameters) across ranks: packed per dtype into one
    buffer, one Allreduce each. A parameter without a gradient counts as zeros and gets one."""
    by_dtype = {}
    for p in params:
        if p.tensor.requires_grad:
            by_dtype.setdefault(p.tensor.dtype, []).append(p.tensor)
    for dtype, tensors in by_dtype.items():
        flat = np.concatenate(
            [
                (t.grad._data if t.grad is not None else np.zeros(t.shape, dtype)).ravel()
                for t in tensors
            ]
        ).astype(dtype, copy=False)
        _average_buffers([flat], comm)
        offset = 0
        for t in tensors:
            value = flat[offset : offset + t._data.size].reshape(t.shape)
            if t.grad is None:
                t.grad = Tensor(value.copy(), dtype=dtype)
            else:
                t.grad._data[...] = value
            offset += t._data.size


# ----------------------------------------------------------------------------- DDP
_live_ddp_models: weakref.WeakSet[DistributedDataParallel] = weakref.WeakSet()
_auto_attach_handle = None


def _attach_to_stepping_optimizer(optimizer, args, kwargs):
    """A global step pre-hook: an optimizer that steps over a DDP model's parameters without
    being attached to it gets attached, so that ``DDP(model)`` and then
    ``SGD(ddp.parameters())`` average gradients as in PyTorch."""
    if optimizer in _averagers or not _live_ddp_models or not hasattr(optimizer, "flat_grads"):
        return None
    stepping = {id(p.tensor) for p in optimizer.parameters}
    for ddp in list(_live_ddp_models):
        if any(id(p.tensor) in stepping for p in ddp.module.parameters()):
            ddp.attach(optimizer)  # its averaging pre-hook runs in this same step
    return None


def _attach_on_first_step():
    global _auto_attach_handle
    if _auto_attach_handle is None:
        _auto_attach_handle = register_optimizer_step_pre_hook(_attach_to_stepping_optimizer)


class DistributedDataParallel(Module):
    """``DistributedDataParallel(module, optimizer=None, bucket_cap_mb=None)``: data-parallel
    training, as ``torch.nn.parallel.DistributedDataParallel``.

    At construction every rank checks that all ranks built the same parameters and buffers
    (names, shapes, dtypes; a mismatch raises ValueError naming the rank and the parameter) and
    takes rank 0's values, so every rank starts identical. Calling it runs ``module``.

    Gradients are averaged across ranks at the start of the optimizer's ``step()``, with one
    in-place Allreduce per flat gradient buffer (per dtype) of the optimizer. An optimizer over
    the model's parameters attaches itself at its first ``step()``, as in PyTorch; passing it
    here, calling ``attach(optimizer)`` or wrapping it in ``DistributedOptimizer`` attaches it
    up front. A forward in training mode after the parameters changed without averaging raises
    instead of letting ranks drift apart. ``bucket_cap_mb`` splits larger buffers into Allreduces
    of at most that size.

    ``no_sync()`` skips the averaging of ``step()`` calls made inside it (for gradient
    accumulation, run the last backward and ``step()`` outside it). The state_dict keys start
    with ``module.``, as in PyTorch; ``ddp.module`` is the wrapped model.
    """

    _comm: Any  # COMM_WORLD, or None for a lone process
    _bucket_bytes: int | None
    require_sync: bool
    _averagers: list[_GradientAverager]
    _manual_averages: int
    _snapshot: list[np.ndarray] | None

    def __init__(
        self,
        module: Module,
        optimizer: FusedOptimizer | None = None,
        bucket_cap_mb: float | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(
                "DistributedDataParallel: module must be a firefly.nn.Module, "
                f"got {type(module).__name__}"
            )
        if bucket_cap_mb is not None and not (
            isinstance(bucket_cap_mb, (int, float)) and bucket_cap_mb > 0
        ):
            raise ValueError(
                "DistributedDataParallel: bucket_cap_mb must be a positive number or None, "
                f"got {bucket_cap_mb!r}"
            )
        self.module = module
        # Plain attributes, set past Module.__setattr__: an empty list would be registered as
        # a (sub-module) list.
        object.__setattr__(self, "_comm", _communicator())
        object.__setattr__(
            self, "_bucket_bytes", None if bucket_cap_mb is None else int(bucket_cap_mb * 2**20)
        )
        object.__setattr__(self, "require_sync", True)
        object.__setattr__(self, "_averagers", [])
        object.__setattr__(self, "_manual_averages", 0)
        object.__setattr__(self, "_snapshot", None)
        if self._comm is not None and self._comm.Get_size() > 1:
            entries = _module_arrays(module)
            _check_same_layout(
                "DistributedDataParallel", self._comm, entries, "parameter or buffer"
            )
            _broadcast_arrays(self._comm, [array for _, array in entries])
        if optimizer is not None:
            self.attach(optimizer)
        if self._comm is not None and self._comm.Get_size() > 1:
            _live_ddp_models.add(self)
            _attach_on_first_step()

    def attach(self, optimizer: FusedOptimizer) -> DistributedDataParallel:
        """Average gradients across ranks at the start of every ``optimizer.step()``. Attaching
        one optimizer again (or one already wrapped by DistributedOptimizer) adds nothing."""
        _check_optimizer("DistributedDataParallel.attach", optimizer)
        if self._comm is None or self._comm.Get_size() == 1:
            return self
        averager = _averager(optimizer, self._comm)
        if self._bucket_bytes is not None:
            averager.bucket_bytes = self._bucket_bytes
        averager.blockers.add(self)
        if averager not in self._averagers:
            self._averagers.append(averager)
        return self

    def average_gradients(self) -> None:
        """Average the module's gradients across ranks now: for optimizers without
        ``flat_grads()``, call it between ``backward()`` and ``step()``."""
        if self._comm is not None and self._comm.Get_size() > 1:
            _average_parameter_grads(self._comm, list(self.module.parameters()))
        object.__setattr__(self, "_manual_averages", self._manual_averages + 1)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Within it, ``step()`` on the attached optimizer does not average gradients."""
        previous = self.require_sync
        object.__setattr__(self, "require_sync", False)
        try:
            yield
        finally:
            object.__setattr__(self, "require_sync", previous)

    def _check_synchronised(self):
        """Refuse to go on after the parameters changed with no gradient averaging: the ranks
        would silently train different models."""
        if (
            self._comm is None
            or self._comm.Get_size() == 1
            or self._averagers
            or self._manual_averages
        ):
            return
        mine = {id(p.tensor) for p in self.module.parameters()}
        for optimizer in list(_averagers.keys()):  # wrapped by DistributedOptimizer: adopt it
            if any(id(p.tensor) in mine for p in optimizer.parameters):
                self.attach(optimizer)
                return
        arrays = [p.tensor._data for p in self.module.parameters()]
        if self._snapshot is not None and any(
            not np.array_equal(a, s) for a, s in zip(arrays, self._snapshot)
        ):
            raise RuntimeError(
                "DistributedDataParallel: the parameters changed since the last forward but no "
                "gradients were averaged across ranks, so the ranks now hold different models. "
                "Give DDP the optimizer: DistributedDataParallel(model, optimizer), "
                "ddp.attach(optimizer) or DistributedOptimizer(optimizer)"
            )
        object.__setattr__(self, "_snapshot", [a.copy() for a in arrays])

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.training and autograd.is_grad_enabled():
            self._check_synchronised()
        return self.module(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"world_size={1 if self._comm is None else self._comm.Get_size()}"


class DistributedOptimizer:
    """``DistributedOptimizer(optimizer)``, in the style of Horovod: the same optimizer, with
    gradients averaged across ranks at the start of every ``step()``, and the optimizer's
    parameters set to rank 0's values at construction (after checking that every rank has the
    same shapes and dtypes). Every other attribute is the wrapped optimizer's."""

    def __init__(self, optimizer: FusedOptimizer, bucket_cap_mb: float | None = None) -> None:
        object.__setattr__(self, "optimizer", optimizer)
        comm = _communicator()
        _check_optimizer("DistributedOptimizer", optimizer)
        if comm is not None and comm.Get_size() > 1:
            averager = _averager(optimizer, comm)
            if bucket_cap_mb is not None:
                averager.bucket_bytes = int(bucket_cap_mb * 2**20)
            broadcast_parameters(optimizer.parameters)

    def step(self, *args: Any, **kwargs: Any) -> Any:
        return self.optimizer.step(*args, **kwargs)

    def zero_grad(self, *args: Any, **kwargs: Any) -> Any:
        return self.optimizer.zero_grad(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "optimizer":  # not set yet: no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.optimizer, name, value)

    def __repr__(self) -> str:
        return f"DistributedOptimizer({self.optimizer!r})"


# ----------------------------------------------------------------------------- checkpoints
def save(state: Any, path: str | PathLike[str], root: int = 0) -> None:
    """``firefly.save(state, path)`` on rank ``root`` only, then a barrier, so that every rank
    continues once the checkpoint is on disk (any rank can then ``firefly.load`` it, given a
    shared filesystem)."""
    if rank() == root:
        _save(state, path)
    barrier()


__all__ = [
    "init",
    "is_initialized",
    "rank",
    "world_size",
    "barrier",
    "all_reduce",
    "broadcast",
    "all_gather",
    "abort_on_exception",
    "broadcast_parameters",
    "DistributedDataParallel",
    "DistributedOptimizer",
    "save",
]


if _launched_by_mpi():
    abort_on_exception()
