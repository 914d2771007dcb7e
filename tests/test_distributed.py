"""firefly.distributed: single-process behaviour here, and real ``mpiexec -n 2`` jobs running
tests/mpi_worker.py (skipped with a reason when mpi4py or the mpiexec beside this Python is
missing)."""

import importlib.util
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import firefly
from firefly import distributed as dist
from firefly import nn
from firefly.optim import SGD

REPO_ROOT = Path(__file__).resolve().parents[1]

MPIEXEC = Path(sys.executable).parent / "mpiexec"
WORKER = Path(__file__).resolve().parent / "mpi_worker.py"
TIMEOUT = 600  # s; the first job compiles (or loads from the cache) every kernel on 2 ranks

needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or not MPIEXEC.exists(),
    reason="needs mpi4py and MPICH's mpiexec in this Python's environment: "
    'pip install ".[distributed]"',
)


def mpiexec(*args, ranks=2, timeout=TIMEOUT):
    """``mpiexec -n ranks python *args`` against this checkout, one thread per rank."""
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [str(MPIEXEC), "-n", str(ranks), sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
    )


# ----------------------------------------------------------------------------- one process
def test_importing_firefly_does_not_import_mpi4py(run_python):
    result = run_python(
        "-c", "import sys, firefly, firefly.distributed; print('mpi4py' in sys.modules)"
    )
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_without_mpiexec_one_rank_and_everything_works(run_python):
    code = (
        "import numpy as np, sys, firefly\n"
        "from firefly import distributed as dist\n"
        "x = np.array([1.0, 2.0])\n"
        "assert dist.all_reduce(x, op='mean') is x and x.tolist() == [1.0, 2.0]\n"
        "assert dist.broadcast(x) is x and "
        "[a.tolist() for a in dist.all_gather(x)] == [[1.0, 2.0]]\n"
        "dist.barrier()\n"
        "print(dist.rank(), dist.world_size(), dist.is_initialized(), 'mpi4py' in sys.modules)\n"
    )
    env = {name: "" for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")}
    result = run_python("-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "1", "False", "False"]


def test_init_without_the_extra_names_the_install_command(run_python):
    code = (
        "import sys; sys.modules['mpi4py'] = None\n"
        "from firefly import distributed\n"
        "distributed.init()\n"
    )
    result = run_python("-c", code)
    assert result.returncode != 0 and "ImportError" in result.stderr
    assert 'pip install "firefly-dl[distributed]"' in result.stderr


def test_under_mpiexec_without_mpi4py_rank_queries_refuse_to_guess(run_python):
    code = (
        "import sys; sys.modules['mpi4py'] = None\n"
        "from firefly import distributed\n"
        "distributed.world_size()\n"
    )
    result = run_python("-c", code, env={"PMI_SIZE": "2"})
    assert result.returncode != 0 and 'pip install "firefly-dl[distributed]"' in result.stderr


def test_one_process_ddp_trains_like_the_model_itself():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(8, 4)), rng.integers(0, 3, size=8)

    def run(wrap):
        firefly.manual_seed(0)
        model = nn.Sequential(
            nn.Linear(4, 5, dtype=np.float64), nn.ReLU(), nn.Linear(5, 3, dtype=np.float64)
        )
        optimizer = SGD(model.get_parameters(), lr=0.5)
        net = dist.DistributedDataParallel(model, optimizer) if wrap else model
        for _ in range(3):
            optimizer.zero_grad()
            nn.CrossEntropyLoss()(net(X), y).backward()
            optimizer.step()
        return [p.numpy().copy() for p in model.parameters()], net

    plain, _ = run(False)
    wrapped, ddp = run(True)
    assert all(np.array_equal(a, b) for a, b in zip(plain, wrapped))
    assert list(ddp.state_dict()) == [
        "module.0.weight",
        "module.0.bias",
        "module.2.weight",
        "module.2.bias",
    ]
    with ddp.no_sync():
        assert not ddp.require_sync
    assert ddp.require_sync


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: dist.all_reduce(np.ones(2), op="prod"), ValueError, "op must be one of"),
        (
            lambda: dist.all_reduce(np.ones(2, dtype=np.int64), op="mean"),
            TypeError,
            "op='mean' needs a float array",
        ),
        (
            lambda: dist.all_reduce(np.ones((4, 4))[:, 0]),
            ValueError,
            r"shape \(4,\).*must be C-contiguous",
        ),
        (
            lambda: dist.broadcast([1.0, 2.0]),
            TypeError,
            "expected a Tensor or an ndarray, got list",
        ),
        (
            lambda: dist.broadcast(np.ones(2), root=3),
            ValueError,
            r"root must be a rank in \[0, 0\], got 3",
        ),
        (
            lambda: dist.DistributedDataParallel(object()),
            TypeError,
            "module must be a firefly.nn.Module",
        ),
        (
            lambda: dist.DistributedDataParallel(nn.Linear(2, 2), bucket_cap_mb=0),
            ValueError,
            "bucket_cap_mb",
        ),
        (
            lambda: dist.DistributedDataParallel(nn.Linear(2, 2)).attach(object()),
            TypeError,
            "needs flat_grads",
        ),
    ],
)
def test_misuse_is_explained(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.skipif(os.name != "posix", reason="counts unread pipe bytes with FIONREAD (POSIX)")
def test_the_abort_hook_waits_until_its_output_is_read_and_no_longer():
    """What keeps a failing rank's traceback: before Abort, the hook flushes stdout/stderr and
    waits until the launcher has read their pipes, or until the time limit."""
    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "w") as stream, os.fdopen(read_fd, "rb", buffering=0) as reader:
        stream.write("Traceback (most recent call last):\n")  # still in Python's buffer
        launcher = threading.Timer(0.3, reader.read, args=(4096,))  # reads it 0.3 s later
        start = time.monotonic()
        launcher.start()
        dist._wait_until_launcher_reads([stream], timeout=10.0)
        waited = time.monotonic() - start
        launcher.join()
        assert 0.25 <= waited < 9.0, waited
        assert dist._unread_bytes(write_fd) == 0

        stream.write("nobody reads this\n")  # no launcher: the wait gives up at its limit
        start = time.monotonic()
        dist._wait_until_launcher_reads([stream], timeout=0.2)
        waited = time.monotonic() - start
        assert 0.2 <= waited < 5.0, waited
        assert dist._unread_bytes(write_fd) == len("nobody reads this\n")


# ----------------------------------------------------------------------------- real MPI jobs
EQUIVALENCE_CASES = [
    ("float64", "sgd", "ddp"),
    ("float64", "adam", "ddp-ctor"),
    ("float64", "sgd", "dopt"),
    ("float32", "adam", "ddp"),
    ("float64", "sgd", "bucketed"),
    ("float64", "adam", "closure"),
    ("float64", "seed-sgd", "manual"),
]


@pytest.fixture(scope="module")
def one_job(tmp_path_factory):
    """One ``mpiexec -n 2`` job running, in turn, every worker mode that ends with an OK line.
    Each launch costs two interpreters importing firefly and starting MPI (about 1 s of CPU),
    more than most modes' own checks; a failing mode aborts the job, and the tests of it and of
    the modes after it show the job's output."""
    modes = [":".join(("equivalence", *case)) for case in EQUIVALENCE_CASES]
    folder = tmp_path_factory.mktemp("checkpoint")  # the checkpoint mode wants an empty folder
    modes += ["accumulation", "collectives", f"checkpoint:{folder}", "buffers", "unattached"]
    return mpiexec(WORKER, "several", *modes, "mismatch")


def job_output(job, line):
    """The job's stdout, once it holds ``line`` and the job succeeded."""
    assert line in job.stdout and job.returncode == 0, (
        f"{line!r}: exit {job.returncode}\nstdout:\n{job.stdout}\nstderr:\n{job.stderr}"
    )
    return job.stdout


@needs_mpi
@pytest.mark.parametrize("dtype, optimizer, style", EQUIVALENCE_CASES)
def test_two_ranks_on_half_batches_match_one_process_on_whole_batches(
    one_job, dtype, optimizer, style
):
    # The worker also checks, after every step, that both ranks hold identical weights.
    job_output(one_job, f"OK equivalence {dtype} {optimizer} {style}")


@needs_mpi
def test_no_sync_accumulates_locally_and_averages_once(one_job):
    job_output(one_job, "OK accumulation")


@needs_mpi
def test_collectives_and_distributed_sampler_shards(one_job):
    job_output(one_job, "OK collectives")


@needs_mpi
def test_save_on_rank_0_and_load_on_every_rank(one_job):
    job_output(one_job, "OK checkpoint")


@needs_mpi
def test_different_models_are_reported_with_the_rank_and_parameter(one_job):
    out = job_output(one_job, "OK mismatch")
    assert re.search(
        r"parameter or buffer 0 '0\.weight' has shape \(17, 6\) and dtype float64 on rank 1, "
        r"but '0\.weight' has shape \(16, 6\) and dtype float64 on rank 0",
        out,
    ), out


@needs_mpi
def test_buffers_are_broadcast_from_rank_0(one_job):
    job_output(one_job, "OK buffers")


@needs_mpi
def test_ddp_updated_by_hand_without_averaging_refuses_to_drift(one_job):
    job_output(one_job, "OK unattached")


# The traceback used to be lost about once in 12 runs on a loaded machine; what keeps it (the
# hook's wait for the launcher to read) has the deterministic test above, and these runs check
# the hook end to end. Each aborted job's two ranks (~1 s of CPU) escape the suite's CPU count.
FAILURE_RUNS = 10
FAILURE_JOBS_AT_ONCE = 5  # concurrent jobs: faster, and a loaded machine is where output got lost


@needs_mpi
def test_a_failing_rank_aborts_the_job_with_one_traceback():
    def run_failure(_):
        return mpiexec(WORKER, "failure", timeout=120)

    with ThreadPoolExecutor(FAILURE_JOBS_AT_ONCE) as pool:
        results = list(pool.map(run_failure, range(FAILURE_RUNS)))
    for run, result in enumerate(results):
        report = (
            f"run {run + 1} of {FAILURE_RUNS}, exit {result.returncode}, stderr:\n{result.stderr}"
        )
        assert result.returncode != 0, report
        assert "rank 0 got past the collective" not in result.stdout, report
        assert result.stderr.count("Traceback (most recent call last)") == 1, report
        assert "rank 1 of 2 failed" in result.stderr, report
        assert "deliberate failure on rank 1" in result.stderr, report


@needs_mpi
def test_a_rank_failing_before_mpi_starts_aborts_the_job_too():
    result = mpiexec(WORKER, "early_failure", timeout=120)
    assert result.returncode != 0
    assert "rank 0 got past the collective" not in result.stdout
    assert result.stderr.count("Traceback (most recent call last)") == 1, result.stderr
    assert "rank 1 of ? failed" in result.stderr and "before MPI started" in result.stderr


@needs_mpi
def test_demo_distributed_prints_one_set_of_epoch_lines():
    result = mpiexec("-m", "firefly", "demo", "--distributed", "--epochs", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum(line.startswith("Epoch [") for line in lines) == 3, result.stdout
    assert "2 ranks" in lines[0], lines[0]


@needs_mpi
def test_ddp_digits_example_learns_on_two_ranks():
    pytest.importorskip(
        "sklearn", reason='the digits example needs scikit-learn: pip install ".[examples]"'
    )
    result = mpiexec(REPO_ROOT / "examples" / "ddp_digits.py")
    assert result.returncode == 0, result.stderr
    assert "2 rank(s)" in result.stdout and result.stdout.count("Epoch [") == 20, result.stdout
    final = float(re.search(r"final test accuracy: (\S+)%", result.stdout).group(1))
    assert final >= 95.0, result.stdout
