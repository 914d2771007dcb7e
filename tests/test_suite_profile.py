"""``FIREFLY_SUITE_PROFILE`` (conftest.py): one JSON line per test with its wall and CPU seconds
kernel counts and compiles, and the process's collection and total times."""

import json

TEST = "tests/test_registry.py::test_builtin_ops_cannot_be_unregistered"


def test_profile_writes_one_line_per_test_and_the_phases(run_python, tmp_path):
    result = run_python(
        "-m", "pytest", "-q", "-n", "0", TEST, env={"FIREFLY_SUITE_PROFILE": str(tmp_path)}
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert [path.name for path in tmp_path.iterdir()] == ["main.jsonl"]
    lines = [json.loads(line) for line in (tmp_path / "main.jsonl").read_text().splitlines()]
    assert [line.get("event", line.get("test")) for line in lines] == [
        "collected",
        TEST,
        "finished",
    ], lines
    test = lines[1]
    fields = {"wall", "cpu", "children_cpu", "compiled", "loaded", "kernels", "compiles"}
    assert fields <= test.keys()
    assert test["kernels"] == test["compiles"] == []  # it compiles nothing, so it names no kernel
    assert test["children_cpu"] == 0  # this test starts no interpreter
    assert 0 <= test["cpu"] and 0 <= test["wall"] <= lines[2]["wall"]
    assert test["compiled"] >= 0 and test["loaded"] >= 0
