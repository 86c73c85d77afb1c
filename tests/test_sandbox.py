"""The sandbox's verdicts and limits on ordinary programs (any isolation level; hostile ones: test_sandbox_hostile)."""
from __future__ import annotations

import socket

import pytest

from fr_bench.scoring.sandbox import Program, Sandbox, SandboxConfig


@pytest.fixture(scope="module", params=["auto", "process"])
def sandbox(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The strongest level here, and the weakest (what a non-root user gets): verdicts must not depend on it."""
    cfg = SandboxConfig(timeout_s=3, workers=2, max_output_bytes=1000, isolation=request.param,
                        tmp_root=str(tmp_path_factory.mktemp("sandbox_parent")))
    with Sandbox(cfg) as sb:
        yield sb


def run(sandbox: Sandbox, *programs: Program):
    return sandbox.run(list(programs))


def test_verdicts_of_plain_programs(sandbox: Sandbox) -> None:
    res = run(sandbox,
              Program("def f(x):\n    return x + 1\n", "assert f(1) == 2\n"),
              Program("def f(x):\n    return x\n", "assert f(1) == 2\n"),
              Program("def f(:\n", "assert True\n"),
              Program("raise ValueError('boom')\n", "assert True\n"),
              Program("import math, collections, re, heapq\n", "assert math.gcd(4, 6) == 2\n"))
    assert [r.status for r in res] == ["passed", "failed", "failed", "failed", "passed"]
    assert "AssertionError" in res[1].output and "SyntaxError" in res[2].output and "boom" in res[3].output


def test_exits_before_the_asserts_are_failures(sandbox: Sandbox) -> None:
    res = run(sandbox,
              Program("import sys\nsys.exit(0)\n", "assert False\n"),
              Program("import os\nos._exit(0)\n", "assert False\n"),
              Program("raise SystemExit\n", "assert False\n"),
              Program("x = 1\n", "import os\nos._exit(0)\n"))
    assert [r.status for r in res] == ["failed"] * 4
    assert res[1].exit_code == 0  # a clean exit status alone is not a pass


def test_timeout_and_output_cap(sandbox: Sandbox) -> None:
    res = run(sandbox, Program("while True:\n    pass\n", ""),
              Program("import sys\nfor _ in range(10**5):\n    print('y' * 100)\nsys.stdout.flush()\n", ""))
    assert res[0].status == "timeout" and 2.5 < res[0].duration_s < 10
    assert res[1].status == "passed" and len(res[1].output) == 1000  # read in full, kept capped


def test_tests_see_pristine_builtins_but_kept_targets(sandbox: Sandbox) -> None:
    # MBPP task 126's reference really is named `sum`; the test must see it when the task says so
    shadow = "def sum(a, b):\n    return 6\n"
    res = run(sandbox, Program(shadow, "assert sum(10, 15) == 6\n", keep=("sum",)),
              Program(shadow, "assert sum([1, 2]) == 3\n"))
    assert [r.status for r in res] == ["passed", "passed"]


def test_main_guard_does_not_run_and_stdin_is_empty(sandbox: Sandbox) -> None:
    res = run(sandbox, Program("def f():\n    return 1\nif __name__ == '__main__':\n    f = None\n", "assert f() == 1"),
              Program("import sys\ndata = sys.stdin.read()\n", "assert data == ''\n"))
    assert [r.status for r in res] == ["passed", "passed"]


def test_network_is_refused(sandbox: Sandbox) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:  # listening: only the sandbox can stop a connect
        port = server.getsockname()[1]
        code = ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', %d), timeout=2)\n    ok = True\n"
                "except OSError as e:\n    print(repr(e))\n    ok = False\n" % port)
        [res] = run(sandbox, Program(code, "assert ok is False\n"))
    assert res.status == "passed", res.output


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="isolation"):
        SandboxConfig(isolation="docker")
    with pytest.raises(ValueError, match="timeout_s"):
        SandboxConfig(timeout_s=0)
