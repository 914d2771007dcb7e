"""The shared on-disk kernel cache: where it lives, the CLI that shows and empties it, and that
a damaged, foreign or concurrently filled cache never crashes nor runs a wrong kernel.

Each test runs fresh interpreters on a cache folder of its own (XDG_CACHE_HOME or NUMBA_CACHE_DIR
under tmp_path); the rest of the suite shares the user's cache (docs/architecture.md, "The price
of the JIT").
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import firefly
from firefly.kernels._jit import is_sized_kernel

# Adds two arrays (one kernel, specialised per dtype and number of dimensions) and prints what
# it loaded and compiled, the warnings it saw, and whether the sums were right.
WORKLOAD = """
import json, sys, warnings
import numpy as np
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import firefly
    from firefly.kernels._jit import kernel_load_counts
    right = True
    for dtype, ndim in {cases}:
        x = np.linspace(-2.0, 2.0, 24, dtype=dtype).reshape((24,) if ndim == 1 else (4, 6))
        out = (firefly.Tensor(x) + firefly.Tensor(x)).numpy()
        right = right and out.dtype == x.dtype and np.array_equal(out, x + x)
loaded, compiled = kernel_load_counts()
print(json.dumps(dict(loaded=loaded, compiled=compiled, right=bool(right),
                      warnings=[str(w.message) for w in caught])))
"""
CASES = [("float64", 2)]


def run_workload(run_python, cache, cases=CASES, env=None):
    code = WORKLOAD.format(cases=repr(cases))
    env = {
        "NUMBA_CACHE_DIR": "",  # the default folder, under XDG_CACHE_HOME
        "XDG_CACHE_HOME": str(cache),
        "FIREFLY_DISABLE_PLUGIN_AUTOLOAD": "1",
        **(env or {}),
    }
    proc = run_python("-c", code, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def filled_cache(run_python, tmp_path_factory):
    """A cache folder that one process filled with the workload's kernel."""
    cache = tmp_path_factory.mktemp("filled") / "cache"
    package = Path(firefly.__file__).parent
    before = set(package.rglob("*.nb[ic]"))
    result = run_workload(run_python, cache)
    assert set(package.rglob("*.nb[ic]")) == before  # nothing written into the checkout
    assert result["compiled"] >= 1 and result["loaded"] == 0 and result["right"]
    assert result["warnings"] == []
    return cache


@pytest.fixture
def cache_copy(filled_cache, tmp_path):
    copy = tmp_path / "cache"
    shutil.copytree(filled_cache, copy)
    return copy


def files(cache, suffix):
    found = sorted(p for p in cache.rglob(f"*{suffix}") if "add_forward" in p.name)
    assert found, sorted(p.name for p in cache.rglob("*"))
    return found


def test_a_filled_cache_is_loaded_without_compiling(run_python, cache_copy):
    result = run_workload(run_python, cache_copy)
    assert result == dict(loaded=result["loaded"], compiled=0, right=True, warnings=[])
    assert result["loaded"] >= 1


def test_default_folder_is_under_xdg_cache_home_and_not_in_the_package(filled_cache):
    (version_folder,) = (filled_cache / "firefly").iterdir()
    assert version_folder.name.startswith(f"{firefly.__version__}-")
    assert files(version_folder / "kernels", ".nbi")


def assert_recompiled_with_one_warning(result, words):
    assert result["right"] and result["compiled"] >= 1 and result["loaded"] == 0, result
    assert len(result["warnings"]) == 1, result["warnings"]
    assert words in result["warnings"][0], result["warnings"]


@pytest.mark.parametrize("kind", ["truncated", "garbage"])
def test_a_damaged_data_file_is_recompiled_with_one_warning(run_python, cache_copy, kind):
    for data in files(cache_copy, ".nbc"):
        content = data.read_bytes()
        data.write_bytes(content[: len(content) // 3] if kind == "truncated" else b"\x80garbage")
    assert_recompiled_with_one_warning(run_workload(run_python, cache_copy), "unreadable")
    if kind == "truncated":  # the entry was rewritten (once is enough: the same code path)
        again = run_workload(run_python, cache_copy)
        assert again["compiled"] == 0 and again["right"] and again["warnings"] == []


def test_a_damaged_index_is_recompiled_with_one_warning(run_python, cache_copy):
    for index in files(cache_copy, ".nbi"):
        content = index.read_bytes()
        index.write_bytes(content[: len(content) - 20])
    assert_recompiled_with_one_warning(run_workload(run_python, cache_copy), "unreadable")


def test_a_cache_filled_by_another_version_is_recompiled_with_one_warning(run_python, cache_copy):
    # What another firefly version leaves in the folder: indexes stamped with its version.
    rewrite = textwrap.dedent("""
        import pickle, sys
        for path in sys.argv[1:]:
            with open(path, "rb") as f:
                numba_version = pickle.load(f)
                (owner, stamp), overloads = pickle.loads(f.read())
            with open(path, "wb") as f:
                pickle.dump(numba_version, f, protocol=-1)
                f.write(pickle.dumps((("0.0.1-other", stamp), overloads), protocol=-1))
    """)
    proc = run_python("-c", rewrite, *files(cache_copy, ".nbi"))
    assert proc.returncode == 0, proc.stderr
    result = run_workload(run_python, cache_copy)
    assert_recompiled_with_one_warning(result, "filled by firefly 0.0.1-other")


def test_an_edited_helper_in_another_file_recompiles_the_kernels_that_inline_it(
    run_python, tmp_path
):
    # exp's float32 kernel inlines vmath's _exp_f32, from another file; Numba's own stamp
    # covers only the kernel's file, so an edit of vmath.py once loaded the stale kernel.
    package = tmp_path / "copy" / "firefly"
    shutil.copytree(Path(firefly.__file__).parent, package, ignore=shutil.ignore_patterns("*.nb?"))
    env = {"PYTHONPATH": str(package.parent), "FIREFLY_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.update(NUMBA_CACHE_DIR="", XDG_CACHE_HOME=str(tmp_path / "cache"))
    code = "import firefly; print(firefly.exp(firefly.zeros(4, dtype=firefly.float32)).tolist())"

    def run():
        proc = run_python("-c", code, env=env, cwd=tmp_path, repo_importable=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert run() == "[1.0, 1.0, 1.0, 1.0]"
    vmath = package / "kernels" / "vmath.py"
    source = vmath.read_text()
    start = source.index("def _exp_f32(")
    end = source.index("    return y if v == v else v\n", start)  # its last line
    vmath.write_text(source[:end] + "    y = 2 * y\n" + source[end:])
    assert run() == "[2.0, 2.0, 2.0, 2.0]"


SCALE = 2.0


def _scaled(x):
    return x * SCALE


def _calls_scaled(x):
    return _scaled(x) + 1.0


def test_a_kernels_stamp_follows_the_helpers_it_calls_and_the_constants_they_read(monkeypatch):
    from firefly.kernels._cache import _Dependencies, kernel_dependencies_digest

    found = _Dependencies(_calls_scaled)
    assert found.files == {os.path.abspath(__file__)}
    assert found.constants == {b"SCALE=2.0"}  # Numba freezes it into the compiled code
    before = kernel_dependencies_digest(_calls_scaled)
    assert kernel_dependencies_digest(_calls_scaled) == before
    monkeypatch.setattr(sys.modules[__name__], "SCALE", 3.0)
    assert kernel_dependencies_digest(_calls_scaled) != before


def test_a_plugin_kernels_stamp_follows_its_own_package_and_no_other(tmp_path, monkeypatch):
    from firefly.kernels._cache import _Dependencies

    (tmp_path / "plug" / "sub").mkdir(parents=True)
    (tmp_path / "plug" / "__init__.py").write_text("")
    (tmp_path / "plug" / "sub" / "__init__.py").write_text("")
    (tmp_path / "plug" / "sub" / "helpers.py").write_text("def half(v):\n    return v / 2\n")
    (tmp_path / "neighbour.py").write_text("def third(v):\n    return v / 3\n")
    (tmp_path / "plug" / "kernels.py").write_text(
        "from neighbour import third\nfrom plug.sub.helpers import half\n\n"
        "def kernel(v):\n    return half(v) + third(v)\n"
    )
    # a plugin that is one module, in a folder of other modules (as site-packages is)
    (tmp_path / "solo.py").write_text(
        "from neighbour import third\n\ndef kernel(v):\n    return third(v)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("plug", "plug.sub", "plug.sub.helpers", "plug.kernels", "neighbour", "solo"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    from plug.kernels import kernel
    from solo import kernel as solo_kernel

    def found(py_func):
        return {
            Path(path).relative_to(tmp_path).as_posix() for path in _Dependencies(py_func).files
        }

    assert found(kernel) == {"plug/kernels.py", "plug/sub/helpers.py"}  # not the module beside it
    assert found(solo_kernel) == {"solo.py"}


@pytest.mark.parametrize(
    "op, files",
    [
        ("exp", {"kernels/families.py", "kernels/vmath.py"}),  # vmath.exp bound as the math
        ("add", {"kernels/families.py", "ops/binary.py"}),  # a lambda in binary.py
        # its row sum is a called helper in families.py; no function of reduce.py remains
        ("log_softmax", {"kernels/families.py", "kernels/vmath.py", "ops/softmax.py"}),
        # its GEMMs: cblas.gemm, and in float32 the micro-kernel
        ("conv2d", {"kernels/conv.py", "kernels/cblas.py", "kernels/microkernel.py"}),
    ],
)
def test_a_kernels_stamp_covers_the_files_it_is_built_from_and_no_others(op, files):
    from firefly.kernels._cache import _Dependencies

    package = Path(firefly.__file__).parent
    kernel = firefly.ops.declared_kernels(firefly.ops.get(op).forward_kernel)[0]
    py_func = (kernel.dispatchers()[0] if is_sized_kernel(kernel) else kernel).py_func
    found = {Path(path).relative_to(package).as_posix() for path in _Dependencies(py_func).files}
    assert found == files


# Adds (families.py with binary.py's scalar math) and takes exp (families.py inlining vmath.py),
# printing what each loaded and compiled.
TWO_KERNELS = """
import json
import firefly
from firefly.kernels._jit import kernel_load_counts
counts = {}
before = kernel_load_counts()
for name, run in (("add", lambda x: x + x), ("exp", firefly.exp)):
    assert run(firefly.ones(4, dtype=firefly.float64)).numpy().sum() > 0
    after = kernel_load_counts()
    counts[name] = dict(loaded=after[0] - before[0], compiled=after[1] - before[1])
    before = after
print(json.dumps(counts))
"""


def test_an_edit_recompiles_only_the_kernels_built_from_the_edited_file(run_python, tmp_path):
    package = tmp_path / "copy" / "firefly"
    shutil.copytree(Path(firefly.__file__).parent, package, ignore=shutil.ignore_patterns("*.nb?"))
    env = {"PYTHONPATH": str(package.parent), "FIREFLY_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.update(NUMBA_CACHE_DIR="", XDG_CACHE_HOME=str(tmp_path / "cache"))

    def run_after_appending_to(*files):
        for name in files:
            path = package / name
            path.write_text(path.read_text() + "# edited\n")
        proc = run_python("-c", TWO_KERNELS, env=env, cwd=tmp_path, repo_importable=False)
        assert proc.returncode == 0, proc.stderr
        counts = json.loads(proc.stdout.strip().splitlines()[-1])
        return {name: "compiled" if c["compiled"] else "loaded" for name, c in counts.items()}

    assert run_after_appending_to() == {"add": "compiled", "exp": "compiled"}
    # conv.py, the jit module and the ops' registry are no part of either kernel
    assert run_after_appending_to("kernels/conv.py", "kernels/_jit.py", "ops/registry.py") == {
        "add": "loaded",
        "exp": "loaded",
    }
    assert run_after_appending_to("kernels/vmath.py") == {"add": "loaded", "exp": "compiled"}
    assert run_after_appending_to("ops/binary.py") == {"add": "compiled", "exp": "loaded"}
    assert run_after_appending_to("kernels/families.py") == {"add": "compiled", "exp": "compiled"}


# cumsum forward and backward (scan.py's kernel, stamped by the files it is built from);
# prints (loaded, compiled)
CUMSUM = """
import numpy as np, firefly
from firefly.kernels._jit import kernel_load_counts
x = firefly.tensor(np.linspace(-1.0, 1.0, 12), requires_grad=True)
x.cumsum(0).sum().backward()
print(firefly.__file__, *kernel_load_counts())
"""


def test_a_second_clone_loads_what_the_first_compiled(run_python, tmp_path):
    """Two copies of one source in different folders stamp their kernels alike: the second
    loads from the shared cache (a fresh clone's test run, the suite's own clones)."""
    env = {"NUMBA_CACHE_DIR": "", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env["FIREFLY_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    results = []
    for clone in ("one", "two"):
        package = tmp_path / clone / "firefly"
        ignore = shutil.ignore_patterns("*.nb?", "__pycache__")
        shutil.copytree(Path(firefly.__file__).parent, package, ignore=ignore)
        env["PYTHONPATH"] = str(package.parent)
        proc = run_python("-c", CUMSUM, env=env, cwd=tmp_path, repo_importable=False)
        assert proc.returncode == 0, proc.stderr
        where, *counts = proc.stdout.split()
        assert Path(where).parent == package
        results.append(counts)
    # The first compiles (and loads nothing); the second compiles nothing and loads the
    # kernels (a called helper compiled on its own in the first is part of its caller's
    # cached code in the second, so the counts need not be equal).
    (first_loaded, first_compiled), (second_loaded, second_compiled) = results
    assert first_loaded == "0" and int(first_compiled) > 0, results
    assert second_compiled == "0" and int(second_loaded) > 0, results


def test_four_processes_filling_one_cache_at_once_all_succeed(run_python, tmp_path):
    cache = tmp_path / "cache"
    # Two signatures, added in either order: the four write one index, and data files, at once.
    signatures = [("float32", 1), ("float64", 2)]
    code = [WORKLOAD.format(cases=repr(signatures[:: 1 if i % 2 else -1])) for i in range(4)]
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(cache),  # NUMBA_CACHE_DIR/firefly
        "FIREFLY_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", c], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for c in code
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
        result = json.loads(out.decode().strip().splitlines()[-1])
        assert result["right"] and result["warnings"] == [], result
    # A later process loads whatever the racing indexes kept, and every kernel it loads is right.
    after = run_workload(run_python, cache, signatures, env={"NUMBA_CACHE_DIR": str(cache)})
    assert after["right"] and after["loaded"] >= 1 and after["warnings"] == [], after


def test_cache_command_shows_and_clears_the_folder(run_python, cache_copy):
    env = {"NUMBA_CACHE_DIR": "", "XDG_CACHE_HOME": str(cache_copy)}
    shown = run_python("-m", "firefly", "cache", env=env)
    assert shown.returncode == 0, shown.stderr
    assert str(cache_copy / "firefly") in shown.stdout and " MB" in shown.stdout
    cleared = run_python("-m", "firefly", "cache", "clear", env=env)
    assert cleared.returncode == 0, cleared.stderr
    assert "removed" in cleared.stdout
    assert not (cache_copy / "firefly").exists()
    assert run_workload(run_python, cache_copy)["compiled"] >= 1


# On an empty cache the first kernel compiles for well over the notice's delay (set low here).
# The relu runs in shares, the multiplication on one thread. Prints a digest of the
# outputs, what was loaded and compiled, and whether Numba's typing and lowering registries
# were imported.
NOTICE = """
import hashlib, json, sys
import numpy as np, firefly
from firefly.kernels import _jit
from firefly.kernels._jit import kernel_load_counts
_jit.COMPILE_NOTICE_AFTER_SECONDS = {delay}
firefly.ops.get("relu").forward_kernel.threshold = 0
x = firefly.Tensor(np.linspace(-1.0, 1.0, 50).reshape(2, 25))
y = x.relu()
z = y * 3.0  # another kernel compiles: still one notice
digest = hashlib.sha256(y.numpy().tobytes() + z.numpy().tobytes()).hexdigest()
loaded, compiled = kernel_load_counts()
print(json.dumps(dict(digest=digest, loaded=loaded, compiled=compiled,
                      registries="numba.np.arraymath" in sys.modules)))
"""


def test_a_slow_first_call_says_what_is_compiling_once_and_loads_compute_the_same(
    run_python, tmp_path
):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache"), "FIREFLY_DISABLE_PLUGIN_AUTOLOAD": "1"}
    cold = run_python("-c", NOTICE.format(delay=0.05), env=env)
    assert cold.returncode == 0, cold.stderr
    notices = [line for line in cold.stderr.splitlines() if line.startswith("compiling kernels")]
    assert notices == [
        "compiling kernels for relu (first use; cached for later runs, "
        "`python -m firefly warmup` fills the cache ahead)"
    ], cold.stderr
    # warm: nothing compiles, nothing is said
    warm = run_python("-c", NOTICE.format(delay=0.0), env=env)
    assert warm.returncode == 0 and "compiling kernels" not in warm.stderr, warm.stderr
    cold, warm = json.loads(cold.stdout), json.loads(warm.stdout)
    # relu's parallel run compiles its share loop and their launcher, mul's serial run its loop
    # as written: three compiled. Warm, two loaded: the launcher's cached code holds its loop's.
    assert cold["compiled"] == 3 and warm["compiled"] == 0 and warm["loaded"] == 2
    # Loading links the cached code with Numba's runtime alone (KernelCache.load_overload),
    # without Numba's typing and lowering registries; the results must be bit for bit those of
    # the compiled kernels, parallel and serial.
    assert cold["registries"] and not warm["registries"]
    assert warm["digest"] == cold["digest"]


def test_the_compile_notice_can_be_turned_off(run_python, tmp_path):
    env = {
        "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
        "FIREFLY_DISABLE_PLUGIN_AUTOLOAD": "1",
        "FIREFLY_NO_COMPILE_NOTICE": "1",
    }
    code = "from firefly.kernels import _jit\n_jit.COMPILE_NOTICE_AFTER_SECONDS = 0.0\n"
    proc = run_python("-c", code + WORKLOAD.format(cases=CASES), env=env)
    assert proc.returncode == 0 and json.loads(proc.stdout)["compiled"] >= 1, proc.stderr
    assert "compiling kernels" not in proc.stderr, proc.stderr


# A matrix product's kernel runs SciPy's BLAS; the process imports its extension, not the whole
# scipy.linalg package (0.15-0.2 s of CPU), and a later import of scipy.linalg is whole.
PRODUCT_THEN_SCIPY = """
import json, sys
import numpy as np, firefly
a, b = np.arange(12.0).reshape(3, 4), np.arange(8.0).reshape(4, 2)
right = np.array_equal((firefly.tensor(a) @ firefly.tensor(b)).numpy(), a @ b)
package_imported = "scipy.linalg" in sys.modules
import scipy.linalg.cython_blas
attributes = (scipy.linalg.cython_blas is sys.modules["scipy.linalg.cython_blas"]
              and scipy.linalg.cython_lapack is sys.modules["scipy.linalg.cython_lapack"])
inverse = np.allclose(scipy.linalg.inv(2 * np.eye(3)), np.eye(3) / 2)
print(json.dumps(dict(right=bool(right), package_imported=package_imported,
                      attributes=attributes, inverse=bool(inverse))))
"""


def test_a_matrix_product_loads_scipys_blas_without_scipy_linalg(run_python, tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache"), "FIREFLY_DISABLE_PLUGIN_AUTOLOAD": "1"}
    for _ in ("empty cache", "warm cache"):
        proc = run_python("-c", PRODUCT_THEN_SCIPY, env=env)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == dict(
            right=True, package_imported=False, attributes=True, inverse=True
        )


MICRO_KERNEL_WORKLOAD = """
import numpy as np
from firefly import Tensor, ops
from firefly.kernels import microkernel
from firefly.kernels._jit import kernel_load_counts
rng = np.random.default_rng(0)
def leaf(*shape):
    return Tensor(rng.normal(size=shape).astype(np.float32), requires_grad=True)
ops.apply("linear", leaf(256, 784), leaf(256, 784), leaf(256)).sum().backward()
ops.apply("conv2d", leaf(2, 16, 8, 8), leaf(32, 16, 3, 3), leaf(32), padding=1).sum().backward()
print(*kernel_load_counts(), microkernel.loaded(), microkernel.fallback_calls[0])
"""


def test_the_micro_kernel_and_its_callers_load_from_the_cache_in_a_second_process(
    run_python, tmp_path
):
    """The micro-kernel (compiled by ``microkernel.load``) and the kernels that call it through
    its cell have stamps that do not change from process to process."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache"), "FIREFLY_DISABLE_PLUGIN_AUTOLOAD": "1"}
    results = []
    for _ in range(2):
        proc = run_python("-c", MICRO_KERNEL_WORKLOAD, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        results.append(proc.stdout.split()[-4:])
    (_, first_compiled, _, _), (loaded, compiled, is_loaded, fallback_calls) = results
    assert int(first_compiled) > 0
    assert (int(compiled), is_loaded, fallback_calls) == (0, "True", "0")
    assert int(loaded) > 0
