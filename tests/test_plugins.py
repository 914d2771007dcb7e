"""Plugin ops through the ``firefly.ops`` entry-point group (firefly.ops.plugins).

Most tests make fake distributions: a ``<name>-<version>.dist-info`` folder with METADATA and
entry_points.txt, plus the plugin's module, in a folder put on sys.path. One test installs the
real example plugin (examples/plugin_package) with pip, uses it from fresh interpreters, runs
its own test suite, and uninstalls it.
"""

import importlib
import shutil
import subprocess
import sys
import textwrap
import uuid
import warnings

import numpy as np
import pytest

import firefly
from firefly.ops import plugins, registry
from firefly.ops.elementwise import Neg, ReLU
from firefly.testing import gradcheck

# An op that negates, under a name of the test's choosing: built-in neg's kernels (inherited,
# already compiled elsewhere in the suite), so a test pays no compile time.
GOOD_OP = """
@register
class {cls}(Neg):
    name = "{name}"
"""
BAD_KERNEL_OP = """
def python_kernel(x, out):
    out[:] = x

class {cls}(Op):
    name = "{name}"
    forward_kernel = backward_kernel = python_kernel

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, grad):
        return grad
"""
HEADER = """
from firefly.ops import Op, register
from firefly.ops.elementwise import Neg
"""


def plugin_source(*ops, decorate=True, extra=""):
    """A module defining (cls, name, template) ops; without ``decorate`` nothing registers on
    import."""
    body = "".join(template.format(cls=cls, name=name) for cls, name, template in ops)
    if not decorate:
        body = body.replace("@register\n", "")
    return HEADER + extra + body


class FakePlugins:
    """Writes fake installed distributions into a folder on sys.path."""

    def __init__(self, root):
        self.root = root

    def module_name(self, tag):
        # Unique per test: a module left in sys.modules by one test must not satisfy another's.
        return f"fake_firefly_{tag}_{uuid.uuid4().hex[:8]}"

    def add(self, dist, entry_points, modules, version="1.0", metadata=None):
        """``entry_points``: {name: "module[:attr]"}; ``modules``: {module name: source}."""
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        if metadata is None:
            metadata = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
        (info / "METADATA").write_text(metadata)
        lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[firefly.ops]\n{lines}")
        for module, source in modules.items():
            (self.root / f"{module}.py").write_text(textwrap.dedent(source))
        return f"{dist} {version}"


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    """Each test starts with no plugin loaded and autoloading on, and leaves the registry as
    found."""
    monkeypatch.delenv(plugins.DISABLE_VARIABLE, raising=False)
    plugins.reset()
    before = dict(registry._ops)
    yield
    plugins.reset()
    for name in set(registry._ops) - set(before):
        registry.unregister(name)  # ops a test registered explicitly
    assert registry._ops == before


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))  # also invalidates importlib's caches
    return FakePlugins(tmp_path)


def plugin_warnings(fn, *args):
    """Run fn(*args); return its result and the messages of the PluginWarnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args)
    return result, [str(w.message) for w in caught if issubclass(w.category, plugins.PluginWarning)]


def negates(name):
    x = np.array([[-1.5, 0.0, 2.0]], dtype=np.float32)
    out = firefly.ops.apply(name, x)
    return out.dtype == np.float32 and np.array_equal(out.numpy(), -x)


@pytest.fixture
def python_output(run_python):
    """``python_output(code)``: stdout of ``code`` run in a fresh interpreter (with this test's
    environment variables)."""

    def run(code):
        proc = run_python("-c", textwrap.dedent(code), timeout=300)
        assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    return run


# ----------------------------------------------------------------------------- discovery
def test_class_entry_point_is_registered_with_its_distribution_as_origin(fake):
    mod = fake.module_name("cls")
    label = fake.add(
        "fake-class-ops",
        {"fake_negate": f"{mod}:FakeNegate"},
        {mod: plugin_source(("FakeNegate", "fake_negate", GOOD_OP), decorate=False)},
        version="1.2.3",
    )
    assert label == "fake-class-ops 1.2.3"
    assert firefly.ops.get("fake_negate").__module__ == mod  # a lookup miss loads plugins
    assert firefly.ops.origin("fake_negate") == label
    assert "fake_negate" in firefly.ops.names()
    assert negates("fake_negate")
    assert gradcheck("fake_negate", np.array([0.5, -1.0]))


def test_module_entry_point_registers_every_op_it_defines(fake):
    mod = fake.module_name("module")
    label = fake.add(
        "fake-module-ops",
        {"anything": mod},
        {mod: plugin_source(("A", "fake_mod_a", GOOD_OP), ("B", "fake_mod_b", GOOD_OP))},
    )
    assert plugins.load_plugins() == ["fake_mod_a", "fake_mod_b"]
    assert [firefly.ops.origin(n) for n in ("fake_mod_a", "fake_mod_b")] == [label, label]
    assert negates("fake_mod_b")
    assert plugins.load_plugins() == []  # already loaded: nothing new, no second registration


def test_class_entry_point_whose_module_also_registers_it_is_registered_once(fake):
    mod = fake.module_name("both")
    fake.add(
        "fake-both",
        {"fake_both": f"{mod}:Both"},
        {mod: plugin_source(("Both", "fake_both", GOOD_OP))},
    )
    added, messages = plugin_warnings(plugins.load_plugins)
    assert added == ["fake_both"] and messages == []


def test_import_firefly_loads_no_plugin_until_a_lookup_misses_or_names(
    python_output, fake, monkeypatch
):
    mod = fake.module_name("lazy")
    fake.add(
        "fake-lazy",
        {"fake_lazy": f"{mod}:Lazy"},
        {mod: plugin_source(("Lazy", "fake_lazy", GOOD_OP))},
    )
    monkeypatch.setenv("PYTHONPATH", str(fake.root))
    out = python_output(f"""
        import sys
        import firefly
        from firefly.ops import plugins
        print("after import:", {mod!r} in sys.modules, plugins._scanned)
        firefly.ops.get("relu")
        print("after a hit:", {mod!r} in sys.modules, plugins._scanned)
        print("names:", "fake_lazy" in firefly.ops.names(), {mod!r} in sys.modules)
    """)
    assert out.splitlines() == [
        "after import: False False",
        "after a hit: False False",
        "names: True True",
    ]


def test_load_plugins_picks_up_a_distribution_installed_after_the_first_scan(fake):
    firefly.ops.names()
    mod = fake.module_name("late")
    fake.add(
        "fake-late",
        {"fake_late": f"{mod}:Late"},
        {mod: plugin_source(("Late", "fake_late", GOOD_OP))},
    )
    with pytest.raises(KeyError):
        firefly.ops.get("fake_late")  # a miss scans entry points only once
    assert plugins.load_plugins() == ["fake_late"]
    assert negates("fake_late")


def test_reset_unregisters_plugin_ops_and_the_next_lookup_loads_them_again(fake):
    mod = fake.module_name("reset")
    fake.add(
        "fake-reset", {"reset_module": mod}, {mod: plugin_source(("R", "fake_reset", GOOD_OP))}
    )
    first = firefly.ops.get("fake_reset")
    plugins.reset()
    assert "fake_reset" not in registry._ops and mod not in sys.modules
    # The module is imported afresh, so its @register runs again and gives a new class.
    assert firefly.ops.get("fake_reset") is not first
    assert firefly.ops.origin("fake_reset") == "fake-reset 1.0"


# ----------------------------------------------------------------------------- the opt-out variable
def test_disabling_autoload_keeps_explicit_loading_and_registration(fake, monkeypatch):
    mod = fake.module_name("optout")
    fake.add(
        "fake-optout",
        {"fake_optout": f"{mod}:OptOut"},
        {mod: plugin_source(("OptOut", "fake_optout", GOOD_OP), decorate=False)},
    )
    monkeypatch.setenv(plugins.DISABLE_VARIABLE, "1")
    assert "fake_optout" not in firefly.ops.names()
    with pytest.raises(KeyError, match="FIREFLY_DISABLE_PLUGIN_AUTOLOAD.*load_plugins") as missing:
        firefly.ops.get("fake_optout")
    assert str(missing.value).startswith("no op named 'fake_optout' is registered.")
    assert mod not in sys.modules

    class UserNeg(Neg):
        name = "user_negate"

    assert firefly.ops.register(UserNeg) is UserNeg
    assert firefly.ops.origin("user_negate") == f"user code ({__name__})"
    assert negates("user_negate")

    assert plugins.load_plugins() == ["fake_optout"]
    assert negates("fake_optout")


@pytest.mark.parametrize(
    "value, disabled",
    [("0", False), ("", False), ("false", False), ("1", True), ("true", True), ("YES", True)],
)
def test_disable_variable_values(monkeypatch, value, disabled):
    monkeypatch.setenv(plugins.DISABLE_VARIABLE, value)
    assert plugins.autoload_disabled() is disabled


def test_disable_variable_with_an_unknown_value_says_what_to_set(monkeypatch):
    monkeypatch.setenv(plugins.DISABLE_VARIABLE, "maybe")
    with pytest.raises(
        ValueError, match=r"FIREFLY_DISABLE_PLUGIN_AUTOLOAD='maybe' is not understood: set it to 1"
    ):
        firefly.ops.names()


# ----------------------------------------------------------------------------- faults
def test_plugin_that_fails_to_import_warns_once_and_the_rest_keeps_working(fake):
    broken, good = fake.module_name("broken"), fake.module_name("good")
    fake.add(
        "fake-broken",
        {"fake_broken": f"{broken}:Broken"},
        {broken: "import fake_dependency_that_is_not_installed\n"},
        version="0.3",
    )
    fake.add(
        "fake-good",
        {"fake_good": f"{good}:Good"},
        {good: plugin_source(("Good", "fake_good", GOOD_OP))},
    )

    names, messages = plugin_warnings(firefly.ops.names)
    assert len(messages) == 1
    assert messages[0].startswith(
        "firefly: plugin 'fake-broken 0.3' "
        f"(entry point 'fake_broken = {broken}:Broken') failed to load"
    )
    assert (
        "ModuleNotFoundError: No module named 'fake_dependency_that_is_not_installed'"
        in messages[0]
    )
    assert "fake_good" in names and "relu" in names
    assert negates("fake_good") and firefly.ops.get("relu") is ReLU

    with pytest.raises(LookupError) as missing:
        firefly.ops.get("fake_broken")
    assert str(missing.value) == (
        f"op 'fake_broken' is not available: plugin 'fake-broken 0.3' (entry point "
        f"'fake_broken = {broken}:Broken') failed to load: ModuleNotFoundError: No module named "
        "'fake_dependency_that_is_not_installed'"
    )
    _, again = plugin_warnings(plugins.load_plugins)
    assert again == []  # one warning per broken plugin, not one per lookup


def test_module_plugin_failing_on_import_is_named_for_ops_it_never_declared(fake):
    broken = fake.module_name("mystery")
    fake.add("fake-mystery", {"mystery_ops": broken}, {broken: "raise RuntimeError('bad build')\n"})
    _, messages = plugin_warnings(firefly.ops.names)
    assert len(messages) == 1 and "RuntimeError: bad build" in messages[0]
    with pytest.raises(
        KeyError, match="op 'mystery_ops' is not available: plugin 'fake-mystery 1.0'"
    ):
        firefly.ops.get("mystery_ops")  # matched by its entry-point name
    with pytest.raises(
        KeyError,
        match=r"no op named 'some_op' is registered\. These plugins failed to load "
        r"and may define it: 'fake-mystery 1.0' .*RuntimeError: bad build",
    ):
        firefly.ops.get("some_op")


def test_op_with_a_python_kernel_is_rejected_and_its_lookup_explains(fake):
    mod = fake.module_name("pykernel")
    fake.add(
        "fake-pykernel",
        {"pykernel_entry": f"{mod}:PyKernel"},
        {mod: plugin_source(("PyKernel", "py_kernel_op", BAD_KERNEL_OP))},
    )
    _, messages = plugin_warnings(firefly.ops.names)
    assert len(messages) == 1
    assert "'fake-pykernel 1.0' (entry point 'pykernel_entry" in messages[0]
    assert "forward_kernel must be a Numba-compiled function" in messages[0]
    assert negates("neg")
    with pytest.raises(
        KeyError,
        match="op 'py_kernel_op' is not available: plugin 'fake-pykernel 1.0'.*"
        "TypeError: op 'py_kernel_op': forward_kernel must be a Numba-compiled",
    ):
        firefly.ops.get("py_kernel_op")  # matched by the op's own name


def test_module_plugin_failing_halfway_registers_none_of_its_ops(fake):
    mod = fake.module_name("half")
    source = plugin_source(
        ("Fine", "fake_half_fine", GOOD_OP), ("Bad", "fake_half_bad", BAD_KERNEL_OP)
    )
    fake.add("fake-half", {"half": mod}, {mod: source.replace("class Bad", "@register\nclass Bad")})
    _, messages = plugin_warnings(firefly.ops.names)
    assert len(messages) == 1 and "fake_half_bad" in messages[0]
    for name in ("fake_half_fine", "fake_half_bad"):
        with pytest.raises(KeyError, match=f"op '{name}' is not available: plugin 'fake-half 1.0'"):
            firefly.ops.get(name)


def test_entry_point_naming_neither_an_op_nor_a_module_is_a_clear_failure(fake):
    mod = fake.module_name("func")
    fake.add("fake-func", {"fake_func": f"{mod}:make_op"}, {mod: "def make_op():\n    pass\n"})
    _, messages = plugin_warnings(firefly.ops.names)
    assert len(messages) == 1
    assert (
        "TypeError: the entry point must name an Op subclass or a module that registers ops, "
        "got function" in messages[0]
    )


def test_distribution_with_incomplete_metadata_still_loads_and_is_labelled(fake):
    mod = fake.module_name("noname")
    fake.add(
        "fake-noname",
        {"fake_noname": f"{mod}:NoName"},
        {mod: plugin_source(("NoName", "fake_noname", GOOD_OP))},
        metadata="Metadata-Version: 2.1\n",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DeprecationWarning for the missing fields either
        assert "fake_noname" in firefly.ops.names()
    assert firefly.ops.origin("fake_noname") == "unnamed-distribution (no version)"


# ----------------------------------------------------------------------------- name conflicts
@pytest.mark.parametrize(
    "self_registering", [False, True], ids=["plain class", "class decorated with register"]
)
def test_plugin_cannot_replace_a_builtin_op(fake, self_registering):
    mod = fake.module_name("relu")
    fake.add(
        "fake-relu",
        {"relu": f"{mod}:MyReLU"},
        {mod: plugin_source(("MyReLU", "relu", GOOD_OP), decorate=self_registering)},
    )
    _, messages = plugin_warnings(firefly.ops.names)
    assert messages == [
        f"firefly: refused op 'relu' ({mod}.MyReLU) from plugin 'fake-relu 1.0' (entry point "
        f"'relu = {mod}:MyReLU'): the name belongs to a built-in op; plugins cannot replace "
        "built-in ops, so rename the plugin's op."
    ]
    assert firefly.ops.get("relu") is ReLU and firefly.ops.origin("relu") == "built-in"


def test_module_plugin_registering_a_builtin_name_loses_only_that_op(fake):
    mod = fake.module_name("exp")
    fake.add(
        "fake-exp",
        {"fake_exp": mod},
        {mod: plugin_source(("MyExp", "exp", GOOD_OP), ("Other", "fake_exp_other", GOOD_OP))},
    )
    _, messages = plugin_warnings(firefly.ops.names)
    assert len(messages) == 1 and "refused op 'exp'" in messages[0] and "built-in" in messages[0]
    assert firefly.ops.origin("exp") == "built-in"
    assert firefly.ops.origin("fake_exp_other") == "fake-exp 1.0"


def test_two_plugins_with_one_op_name_first_wins_and_the_warning_names_both(
    fake, tmp_path, monkeypatch
):
    # The later distribution sits earlier on sys.path: order is by distribution name, not path.
    first, second = fake.module_name("first"), fake.module_name("second")
    fake.add(
        "aaa-ops",
        {"dup": f"{first}:Dup"},
        {first: plugin_source(("Dup", "fake_dup", GOOD_OP), decorate=False)},
    )
    other = FakePlugins(tmp_path / "earlier")
    other.root.mkdir()
    monkeypatch.syspath_prepend(str(other.root))
    other.add(
        "zzz-ops",
        {"dup": f"{second}:Dup"},
        {second: plugin_source(("Dup", "fake_dup", GOOD_OP), decorate=False)},
        version="2.0",
    )
    _, messages = plugin_warnings(firefly.ops.names)
    assert len(messages) == 1
    assert (
        "plugin 'zzz-ops 2.0'" in messages[0]
        and "plugin 'aaa-ops 1.0' already registered" in messages[0]
    )
    assert firefly.ops.get("fake_dup").__module__ == first
    assert firefly.ops.origin("fake_dup") == "aaa-ops 1.0"


def test_registering_a_taken_name_outside_plugin_loading_is_an_error():
    class Shadow(Neg):
        name = "relu"

    with pytest.raises(
        ValueError, match="an op named 'relu' is already registered \\(from built-in\\)"
    ):
        firefly.ops.register(Shadow)
    with pytest.raises(ValueError, match="'relu' is a built-in op and cannot be unregistered"):
        firefly.ops.unregister("relu")


# -------------------------------------------------------------------------- the real example plugin
def pip(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"pip {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture
def installed_example_plugin(repo_root, tmp_path):
    """Install examples/plugin_package with pip, offline; always uninstall afterwards."""
    pytest.importorskip("setuptools", reason="building the example plugin needs setuptools")
    source = tmp_path / "plugin_package"  # a copy, so the build leaves nothing in the repository
    shutil.copytree(
        repo_root / "examples" / "plugin_package",
        source,
        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"),
    )
    pip("install", "--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir", str(source))
    try:
        yield source
    finally:
        subprocess.run(
            [sys.executable, "-m", "pip", "uninstall", "-y", "firefly-extra-ops"],
            capture_output=True,
            timeout=300,
        )
        importlib.invalidate_caches()


def test_example_plugin_installed_with_pip_works_from_a_fresh_interpreter(
    installed_example_plugin, run_python, python_output
):
    out = python_output("""
        import numpy as np
        import firefly
        from firefly.testing import check_op, gradcheck

        names = firefly.ops.names()
        print(sorted({"extra_softplus", "extra_gelu", "extra_clamp"} & set(names)),
              firefly.ops.origin("extra_softplus"), firefly.ops.origin("extra_clamp"))
        x = np.random.default_rng(0).uniform(-5, 5, size=(3, 7)).astype(np.float32)
        np.testing.assert_allclose(firefly.ops.apply("extra_softplus", x).numpy(),
                                   np.logaddexp(0, x), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(
            firefly.ops.apply("extra_clamp", x, min=-1.0, max=2.0).numpy(), np.clip(x, -1.0, 2.0))
        assert gradcheck("extra_softplus", x.astype(np.float64))
        assert gradcheck("extra_gelu", x.astype(np.float64))
        assert check_op("extra_softplus", reference=lambda a, attrs: np.logaddexp(0, a[0]))
        print("ok")
    """)
    assert out.splitlines() == [
        "['extra_clamp', 'extra_gelu', 'extra_softplus'] firefly-extra-ops 0.2.0 "
        "firefly-extra-ops 0.2.0",
        "ok",
    ]

    # The plugin's own tests and benchmarks (one run each), against the installed package.
    proc = run_python("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=installed_example_plugin)
    assert proc.returncode == 0, f"the plugin's own tests failed:\n{proc.stdout}\n{proc.stderr}"
    assert " passed" in proc.stdout and "skipped" not in proc.stdout

    pip("uninstall", "-y", "firefly-extra-ops")
    out = python_output("""
        import firefly
        print("extra_softplus" in firefly.ops.names())
        try:
            firefly.ops.get("extra_gelu")
        except KeyError as exc:
            print(exc)
    """)
    assert out.splitlines()[0] == "False"
    assert out.splitlines()[1].startswith("no op named 'extra_gelu' is registered.")
