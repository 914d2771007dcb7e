"""The DataLoader's worker processes (``num_workers > 0``), with torch's semantics.

Each worker is a process with a task queue of its own (index lists, or "next batch" tokens for
an IterableDataset) and a result pipe of its own. A worker fetches and collates a batch, writes
every array in it into one ``multiprocessing.shared_memory`` block and sends the block's name
with the batch's structure; the main process copies the arrays out and unlinks the block. Only
the structure (containers, dtypes, shapes, the leaves that are not arrays) is pickled.

Why a pipe per worker rather than one shared result queue: the main process waits on every pipe
and every process sentinel at once (``multiprocessing.connection.wait``), so a worker that dies
is noticed at once, and a worker killed in the middle of a send cannot corrupt a channel that
the others write to.
"""

from __future__ import annotations

import itertools
import os
import pickle
import queue
import random as python_random
import signal
import sys
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from multiprocessing import connection, resource_tracker, shared_memory
from typing import Any

import numba
import numpy as np

from firefly import random
from firefly.tensor import Tensor

_POLL_S = 0.5  # how often an idle worker checks that the main process still exists
_SHUTDOWN_S = 5.0  # how long shutdown waits for workers to finish before terminating them
_ALIGN = 64  # byte alignment of each array in a shared block (a cache line)


class WorkerInfo:
    """What ``get_worker_info()`` returns inside a worker process, as torch's: ``id`` (0 to
    ``num_workers - 1``), ``num_workers``, ``seed`` (the worker's seed, ``base_seed + id``) and
    ``dataset`` (the worker's copy of the dataset)."""

    __slots__ = ("id", "num_workers", "seed", "dataset")

    def __init__(self, id: int, num_workers: int, seed: int, dataset: object) -> None:
        self.id, self.num_workers, self.seed, self.dataset = id, num_workers, seed, dataset

    def __repr__(self) -> str:
        return (
            f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed}, "
            f"dataset={type(self.dataset).__name__})"
        )


_worker_info: WorkerInfo | None = None  # set in a worker process only


def get_worker_info() -> WorkerInfo | None:
    """In a DataLoader worker process, its ``WorkerInfo`` (an IterableDataset uses ``id`` and
    ``num_workers`` to give each worker its own share); None in the main process."""
    return _worker_info


def default_context() -> Any:
    """The start method workers use unless ``multiprocessing_context`` names one: 'fork' where
    the platform has it (a worker starts in milliseconds instead of re-importing firefly and
    Numba, ~1 s, under 'spawn'), unless Numba's OpenMP threading layer has started in this
    process: GNU OpenMP is not fork-safe, so then 'forkserver' (or 'spawn')."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    try:
        openmp_started = numba.threading_layer() == "omp"
    except ValueError:  # no parallel kernel has run yet: no threading layer is loaded
        openmp_started = False
    if "fork" in methods and not openmp_started:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


# ----------------------------------------------------------------------------- shared memory
class _Shared:
    """Stands, in a batch's pickled structure, for array ``slot`` of its shared block."""

    __slots__ = ("slot", "tensor", "requires_grad")

    def __init__(self, slot: int, tensor: bool, requires_grad: bool) -> None:
        self.slot, self.tensor, self.requires_grad = slot, tensor, requires_grad

    def __reduce__(self):
        return _Shared, (self.slot, self.tensor, self.requires_grad)


def _strip(value: Any, arrays: list[np.ndarray]) -> Any:
    """``value`` with each Tensor and numeric array replaced by a ``_Shared`` (the array
    appended to ``arrays``), through dicts, lists, tuples and namedtuples."""
    if isinstance(value, Tensor):
        arrays.append(value._data)
        return _Shared(len(arrays) - 1, True, value.requires_grad)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        arrays.append(value)
        return _Shared(len(arrays) - 1, False, False)
    if type(value) is dict:
        return {key: _strip(item, arrays) for key, item in value.items()}
    if type(value) is list:
        return [_strip(item, arrays) for item in value]
    if type(value) is tuple:
        return tuple(_strip(item, arrays) for item in value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_strip(item, arrays) for item in value))
    return value


def _rebuild(value: Any, arrays: list[np.ndarray]) -> Any:
    """The inverse of ``_strip``."""
    if isinstance(value, _Shared):
        array = arrays[value.slot]
        if not value.tensor:
            return array
        tensor = Tensor._wrap(array)
        return tensor.requires_grad_() if value.requires_grad else tensor
    if type(value) is dict:
        return {key: _rebuild(item, arrays) for key, item in value.items()}
    if type(value) is list:
        return [_rebuild(item, arrays) for item in value]
    if type(value) is tuple:
        return tuple(_rebuild(item, arrays) for item in value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_rebuild(item, arrays) for item in value))
    return value


def to_shared(batch: Any) -> tuple[str | None, list, Any]:
    """``(block name, layout, structure)``: the arrays of ``batch`` written into a new shared
    block (None when it has none), each array's ``(offset, dtype, shape)``, and ``batch`` with
    ``_Shared`` in place of its arrays. The block is closed here, not unlinked: whoever
    receives the name unlinks it (``from_shared`` or ``discard``)."""
    arrays: list[np.ndarray] = []
    structure = _strip(batch, arrays)
    if not arrays:
        return None, [], structure
    layout, size = [], 0
    for array in arrays:
        layout.append((size, array.dtype.str, array.shape))
        size += -(-array.nbytes // _ALIGN) * _ALIGN
    block = shared_memory.SharedMemory(create=True, size=max(size, 1))
    try:
        for array, (offset, dtype, shape) in zip(arrays, layout):
            np.ndarray(shape, dtype, buffer=block.buf, offset=offset)[...] = array
    except BaseException:
        block.close()
        block.unlink()
        raise
    block.close()
    return block.name, layout, structure


def from_shared(name: str | None, layout: list, structure: Any) -> Any:
    """The batch ``to_shared`` wrote: its arrays copied out of the block, which is unlinked."""
    if name is None:
        return _rebuild(structure, [])
    block = shared_memory.SharedMemory(name=name)
    try:
        arrays = [
            np.ndarray(shape, dtype, buffer=block.buf, offset=offset).copy()
            for offset, dtype, shape in layout
        ]
    finally:
        block.close()
        block.unlink()
    return _rebuild(structure, arrays)


def discard(message: tuple) -> None:
    """Unlink the shared block of a batch message that will not be used."""
    if message[0] == "batch" and message[3][0] is not None:
        try:
            block = shared_memory.SharedMemory(name=message[3][0])
        except FileNotFoundError:
            return
        block.close()
        block.unlink()


# ----------------------------------------------------------------------------- worker side
class WorkerError:
    """A worker's exception, sent to the main process: its type (RuntimeError when the type
    cannot be pickled) and the text torch gives, with the worker's traceback."""

    def __init__(self, worker_id: int, where: str) -> None:
        exc = sys.exc_info()[1]
        self.exc_type: type[BaseException] = type(exc) if exc is not None else RuntimeError
        try:
            pickle.dumps(self.exc_type)
        except Exception:
            self.exc_type = RuntimeError
        self.text = (
            f"Caught {type(exc).__name__} in DataLoader worker process {worker_id} {where}.\n"
            f"Original {traceback.format_exc()}"
        )

    def exception(self) -> BaseException:
        """The exception to raise in the main process, carrying the worker's traceback text."""
        text = repr(self.text) if self.exc_type is KeyError else self.text  # KeyError quotes
        try:
            return self.exc_type(text)
        except Exception:  # a type whose constructor takes other arguments
            return RuntimeError(text)


def _seed_worker(seed: int, base_seed: int, worker_id: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and firefly's default generator, as
    torch seeds its workers: ``seed = base_seed + worker_id``; NumPy, which takes 32-bit words,
    gets a state derived from both (NumPy's SeedSequence, where torch hashes them itself)."""
    python_random.seed(seed)
    np.random.seed(np.random.SeedSequence([worker_id, base_seed]).generate_state(4))
    random.manual_seed(seed)


def worker_loop(
    worker_id: int,
    num_workers: int,
    fetcher: Any,
    tasks: Any,
    results: Any,
    stop: Any,
    base_seed: int,
    worker_init_fn: Callable[[int], None] | None,
    parent_pid: int,
) -> None:
    """A worker process's body: answer each task from ``tasks`` with one message on
    ``results`` until a None task, a set ``stop`` or the main process's end."""
    global _worker_info
    # Ctrl-C reaches the whole process group: the main process alone handles it (and shuts the
    # workers down), so a worker never prints a KeyboardInterrupt traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    seed = base_seed + worker_id
    _seed_worker(seed, base_seed, worker_id)
    _worker_info = WorkerInfo(worker_id, num_workers, seed, fetcher.dataset)
    if worker_init_fn is not None:
        try:
            worker_init_fn(worker_id)
        except Exception:
            results.send(("error", None, None, WorkerError(worker_id, "in worker_init_fn")))
            return
    stream: Iterator | None = None
    stream_epoch = None
    while True:
        try:
            task = tasks.get(timeout=_POLL_S)
        except queue.Empty:
            if os.getppid() != parent_pid:  # the main process is gone: nobody will read
                return
            continue
        if task is None:
            return
        if stop.is_set():
            continue
        epoch, seq, indices = task
        try:
            if fetcher.iterable:
                if stream_epoch != epoch:
                    stream, stream_epoch = fetcher.stream(), epoch
                assert stream is not None
                batch = next(stream, _END)
                if batch is _END:
                    results.send(("end", epoch, seq, None))
                    continue
            else:
                batch = fetcher.fetch(indices)
            message: tuple = ("batch", epoch, seq, to_shared(batch))
        except Exception:
            message = ("error", epoch, seq, WorkerError(worker_id, "while fetching a batch"))
        try:
            results.send(message)
        except (BrokenPipeError, ConnectionResetError):
            discard(message)
            return
        except Exception:  # the batch holds something that cannot be pickled
            discard(message)
            error = WorkerError(worker_id, "while sending a batch")
            results.send(("error", epoch, seq, error))


_END = object()


# ----------------------------------------------------------------------------- main side
class WorkerPool:
    """``num_workers`` processes running ``worker_loop`` over copies of ``fetcher``, and their
    channels. ``shutdown()`` stops them (also when the pool is garbage collected through the
    finalizer of its owner) and leaves no process behind."""

    def __init__(
        self,
        fetcher: Any,
        num_workers: int,
        context: Any,
        worker_init_fn: Callable[[int], None] | None,
        base_seed: int,
    ) -> None:
        # Workers create the blocks and the main process unlinks them: both must talk to one
        # resource tracker, so start it here, before the workers inherit its address.
        resource_tracker.ensure_running()
        self.num_workers = num_workers
        self.stop = context.Event()
        self.tasks: list = []
        self.readers: list = []
        self.processes: list = []
        self.epoch = 0
        self.alive = True
        try:
            for worker_id in range(num_workers):
                tasks = context.Queue()
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(
                    target=worker_loop,
                    args=(
                        worker_id,
                        num_workers,
                        fetcher,
                        tasks,
                        writer,
                        self.stop,
                        base_seed,
                        worker_init_fn,
                        os.getpid(),
                    ),
                    name=f"firefly DataLoader worker {worker_id}",
                    daemon=True,
                )
                self.tasks.append(tasks)
                self.readers.append(reader)
                self.processes.append(process)
                process.start()
                writer.close()  # the worker holds the only write end: EOF means it has ended
        except BaseException:
            self.shutdown()
            raise

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def send(self, worker_id: int, task: tuple) -> None:
        self.tasks[worker_id].put(task)

    def receive(self, timeout: float | None) -> list[tuple]:
        """The messages that arrive within ``timeout`` seconds (None: until one does): all
        those waiting once any is. A worker that has ended raises a RuntimeError saying how."""
        sentinels = [p.sentinel for p in self.processes]
        ready = connection.wait(self.readers + sentinels, timeout)
        messages = []
        for reader in self.readers:
            if reader in ready:
                while reader.poll():
                    try:
                        messages.append(reader.recv())
                    except (EOFError, OSError):
                        break
        if messages:
            return messages
        for worker_id, process in enumerate(self.processes):
            if process.sentinel in ready or self.readers[worker_id] in ready:
                process.join(1.0)
                raise RuntimeError(self._ended(worker_id))
        return messages

    def _ended(self, worker_id: int) -> str:
        process = self.processes[worker_id]
        code = process.exitcode
        where = f"DataLoader worker {worker_id} (pid {process.pid})"
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = (
                " SIGKILL often means the system ran out of memory (the kernel's OOM killer)."
                if -code == signal.SIGKILL
                else ""
            )
            return f"{where} was killed by {name} (signal {-code}).{hint}"
        return f"{where} exited unexpectedly with exit code {code}."

    def shutdown(self) -> None:
        """Stop the workers: they skip queued tasks and end; the blocks of batches that were
        in flight are unlinked; a worker still busy after ``_SHUTDOWN_S`` is terminated."""
        if not self.alive:
            return
        self.alive = False
        self.stop.set()
        for tasks in self.tasks:
            try:
                tasks.put(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + _SHUTDOWN_S
        open_readers = list(self.readers)
        while open_readers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for reader in connection.wait(open_readers, remaining):
                assert isinstance(reader, connection.Connection)
                try:
                    discard(reader.recv())
                except (EOFError, OSError):
                    open_readers.remove(reader)
        for process in self.processes:
            if process.pid is None:
                continue
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(1.0)
            if process.is_alive():
                process.kill()
                process.join()
        for tasks in self.tasks:
            tasks.cancel_join_thread()  # a dead worker never reads: do not wait at exit
            tasks.close()
        for reader in self.readers:
            reader.close()


def _release(pool: WorkerPool | None, ready: dict[int, tuple]) -> None:
    """End a pass: unlink the blocks of the batches it received and did not yield, and shut
    ``pool`` down (None: persistent workers, which outlive the pass)."""
    for message in ready.values():
        discard(message)
    ready.clear()
    if pool is not None:
        pool.shutdown()


class WorkerIterator:
    """One pass over a DataLoader with worker processes: keeps ``prefetch_factor`` tasks per
    worker in flight, hands tasks to the workers in turn, and yields the batches in the
    sampler's order (or as they arrive when ``in_order`` is False)."""

    def __init__(
        self,
        pool: WorkerPool,
        tasks: Iterator | None,
        prefetch_factor: int,
        timeout: float,
        in_order: bool,
        owns_pool: bool,
    ) -> None:
        pool.epoch += 1
        self.pool, self.epoch = pool, pool.epoch
        self.tasks = tasks  # index lists (or indices); None: an IterableDataset's tokens
        self.timeout, self.in_order = timeout, in_order
        self.active = [True] * pool.num_workers
        self.worker_of: dict[int, int] = {}  # seq -> worker, for tasks sent and not yet yielded
        self.ready: dict[int, tuple] = {}  # seq -> message received, not yet yielded
        self.sent = self.yielded = 0
        self.next_seq = 0
        self.turns = itertools.cycle(range(pool.num_workers))
        # Batches received and not yet yielded hold shared blocks: released with the pass.
        self.finalizer = weakref.finalize(self, _release, pool if owns_pool else None, self.ready)
        for _ in range(prefetch_factor * pool.num_workers):
            self._send()

    def __iter__(self) -> WorkerIterator:
        return self

    def _send(self) -> None:
        if not any(self.active):
            return
        if self.tasks is None:
            payload = None
        else:
            payload = next(self.tasks, _END)
            if payload is _END:
                self.active = [False] * len(self.active)
                return
        worker_id = next(self.turns)
        while not self.active[worker_id]:
            worker_id = next(self.turns)
        self.pool.send(worker_id, (self.epoch, self.sent, payload))
        self.worker_of[self.sent] = worker_id
        self.sent += 1

    def _finish(self) -> None:
        self.finalizer()

    def _abandon(self) -> None:
        self._finish()
        self.pool.shutdown()

    def _wait(self) -> None:
        """Receive until the batch to yield next has arrived (any batch, out of order). A
        timeout, a worker that ended or a failed ``worker_init_fn`` stops the workers, also
        persistent ones (the next pass starts new ones)."""
        deadline = time.monotonic() + self.timeout if self.timeout else None
        while (self.next_seq not in self.ready) if self.in_order else not self.ready:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self._abandon()
                raise RuntimeError(
                    f"DataLoader timed out after {self.timeout} seconds waiting for a batch "
                    "from its workers"
                )
            try:
                messages = self.pool.receive(remaining)
            except RuntimeError:
                self._abandon()
                raise
            for message in messages:
                if message[1] is None:  # worker_init_fn failed: the worker has ended
                    self._abandon()
                    raise message[3].exception()
                if message[1] != self.epoch:  # left over from an earlier pass of the pool
                    discard(message)
                    continue
                self.ready[message[2]] = message

    def __next__(self) -> Any:
        if self.epoch != self.pool.epoch:
            raise RuntimeError(
                "DataLoader: this iterator was replaced by a newer iter(loader) over the same "
                "persistent workers"
            )
        while True:
            if not self.worker_of:
                self._finish()
                raise StopIteration
            if not self.pool.alive:
                raise RuntimeError("DataLoader: the worker processes have been shut down")
            self._wait()
            seq = self.next_seq if self.in_order else next(iter(self.ready))
            message = self.ready.pop(seq)
            worker_id = self.worker_of.pop(seq)
            if self.in_order:
                self.next_seq += 1
            if message[0] == "end":  # this worker's stream is done; its other tokens end too
                self.active[worker_id] = False
                self._send()
                continue
            if message[0] == "error":
                self._finish()
                raise message[3].exception()
            self._send()
            return from_shared(*message[3])
