"""Hostile programs (issue #8): each must be contained (counted failed, never passed), the harness must survive, and
honest programs scored in the same batch must be scored right.

Run at both levels that can contain them, as root: `namespaces` and `uid` (docs/sandbox.md); a level this machine lacks
is skipped. At the `process` level (not root) a program runs as the calling user and several of these attacks would
succeed, so it is never tried here. Containment is checked on a small fork count before the
fork bomb runs.
"""
from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
from pathlib import Path

import pytest

from fr_bench.scoring.sandbox import Program, Sandbox, SandboxConfig, SandboxError

TIMEOUT_S = 3
MAX_PROCESSES = 16
# Every hostile program defines answer() returning the wrong value, so only a faked verdict could pass it.
WRONG = "\ndef answer():\n    return 0\n"
TEST = "assert answer() == 42\n"


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sandbox's scratch parent, next to a decoy tree the programs try to destroy."""
    root = tmp_path_factory.mktemp("hostile")
    decoy = root / "decoy"
    (decoy / "sub").mkdir(parents=True)
    (decoy / "keep.txt").write_text("precious\n")
    (decoy / "sub" / "keep2.txt").write_text("precious\n")
    (root / "sandbox_parent").mkdir()
    return root


def _open_sandbox(level: str, parent: Path) -> Sandbox:
    """A started sandbox at `level`, or skip. The uid level needs a Python whose stdlib others can read: pyenv under
    /root (mode 0700) is not, so fall back to the system python3 (programs then get the stdlib only)."""
    if os.geteuid() != 0:
        pytest.skip(f"not root (euid {os.geteuid()}): the process level cannot contain hostile programs; "
                    f"see docs/sandbox.md")
    base = dict(timeout_s=TIMEOUT_S, workers=2, max_processes=MAX_PROCESSES, max_output_bytes=2000,
                tmp_root=str(parent / "sandbox_parent"), isolation=level)
    attempts = [SandboxConfig(**base)]
    if level == "uid":
        attempts += [SandboxConfig(**base, python=p, site_packages=False) for p in _other_pythons()]
    errors = []
    for cfg in attempts:
        sb = Sandbox(cfg)
        try:
            assert sb.isolation == level
            return sb
        except SandboxError as e:
            sb.close()
            errors.append(str(e))
    pytest.skip(f"isolation level {level!r} is not available here: {errors}")


def _other_pythons() -> list[str]:
    """python3 interpreters on this machine other than the one running the tests."""
    own = os.path.realpath(sys.executable)
    found = [shutil.which("python3", path=d) for d in os.get_exec_path() + ["/usr/bin", "/usr/local/bin"]]
    return list(dict.fromkeys(p for p in found if p and os.path.realpath(p) != own))


@pytest.fixture(scope="module", params=["namespaces", "uid"])
def sandbox(request: pytest.FixtureRequest, parent: Path):
    sb = _open_sandbox(request.param, parent)
    yield sb
    sb.close()


@pytest.fixture
def listener():
    """A TCP server on 127.0.0.1 that records every connection it accepts."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    accepted.append(conn.recv(100) or b"<connected>")
                except OSError:
                    accepted.append(b"<connected>")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


def _leftover_processes(uids: range) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if p.stat().st_uid in uids:
                    pids.append(int(p.name))
            except FileNotFoundError:
                pass
    return pids


def test_process_limit_holds_on_a_small_fork_count(sandbox: Sandbox) -> None:
    """Precondition for the fork bomb: forking stops at max_processes and the children die with the program."""
    prog = ("import os, time\nn = 0\nfor _ in range(3 * %d):\n    try:\n        pid = os.fork()\n"
            "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
            "    n += 1\n" % MAX_PROCESSES)
    [res] = sandbox.run([Program(prog, "assert n < %d, n\n" % MAX_PROCESSES)])
    assert res.status == "passed", res.output
    assert _leftover_processes(sandbox.uids) == []


def test_hostile_batch_is_contained(sandbox: Sandbox, parent: Path, listener) -> None:
    port, accepted = listener
    decoy = parent / "decoy"
    escape = parent / "escaped.txt"
    tmp_escape = Path(f"/tmp/fr_bench_escape_{os.getpid()}")
    hostile = {
        "fork bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "rm -rf parent and decoy": (
            "import os, shutil\nshutil.rmtree(os.path.dirname(os.getcwd()), ignore_errors=True)\n"
            f"shutil.rmtree({str(decoy)!r}, ignore_errors=True)\n"
            f"shutil.rmtree({str(parent)!r}, ignore_errors=True)\n"
            f"os.remove({str(decoy / 'keep.txt')!r})\n"),
        "write outside workdir": (
            f"for p in ({str(escape)!r}, {str(decoy / 'injected.txt')!r}, {str(tmp_escape)!r},\n"
            f"          '/dev/shm/fr_bench_escape_{os.getpid()}', {str(Path.cwd() / 'PWNED')!r}):\n"
            "    try:\n        open(p, 'w').write('x')\n    except OSError:\n        pass\n"
            "open(os.path.join(os.getcwd(), 'inside.txt'), 'w').write('fine')\n".replace(
                "open(os.path", "import os\nopen(os.path", 1)),
        "network socket": (
            "import socket\n"
            f"s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'leak')\n"),
        "allocate 50 GB": "x = bytearray(50 * 1024 ** 3)\nx[-1] = 1\n",
        "infinite loop": "while True:\n    pass\n",
        "flood stdout": "while True:\n    print('x' * 100000)\n",
        "sys.exit(0) before asserts": "import sys\nsys.exit(0)\n",
        "os._exit(0)": "import os\nos._exit(0)\n",
        "patch builtins module": "import builtins\nbuiltins.abs = lambda x: 0\n",
        "shadow a builtin": "def abs(x):\n    return 0\n",
        "settrace over asserts": (
            "import sys\ndef tr(frame, event, arg):\n    if event == 'line' and frame.f_code.co_filename == '<test>':\n"
            "        frame.f_lineno += 1\n    return tr\nsys.settrace(tr)\n"),
        "kill the parent": "import os\nos.kill(os.getppid(), 9)\n",
        "print a fake nonce": "import os\nos.write(3, b'0' * 32)\nos.write(1, b'passed\\n')\nos._exit(0)\n",
    }
    tests = {name: TEST for name in hostile}
    tests["patch builtins module"] = "assert abs(answer() - 42) < 1e-9\n"
    tests["shadow a builtin"] = "assert abs(answer() - 42) < 1e-9\n"
    tests["settrace over asserts"] = TEST + "done = True\n"  # a line to jump to (a naive harness is fooled)
    honest = {
        "honest right 1": ("def answer():\n    return 42\n", TEST, "passed"),
        "honest right 2": ("import math\ndef answer():\n    return math.factorial(5) // 3 + 2\n", TEST, "passed"),
        "honest right 3": ("def answer():\n    return sum(range(10)) - 3\n", TEST, "passed"),
        "honest wrong 1": ("def answer():\n    return 41\n", TEST, "failed"),
        "honest wrong 2": ("def answer():\n    return '42'\n", TEST, "failed"),
    }
    names = list(hostile) + list(honest)
    programs = [Program(hostile[n] + WRONG, tests[n]) for n in hostile]
    programs += [Program(code, test) for code, test, _ in honest.values()]
    order = [0, 14, 1, 2, 15, 3, 4, 5, 16, 6, 7, 8, 17, 9, 10, 11, 18, 12, 13]  # honest ones between hostile ones
    assert sorted(order) == list(range(len(names)))
    results = dict(zip([names[i] for i in order], sandbox.run([programs[i] for i in order])))

    contained = {n: results[n].status != "passed" for n in hostile}
    print(f"\nhostile programs: {len(hostile)} tried, {sum(contained.values())} contained "
          f"(isolation={sandbox.isolation})")
    for n in hostile:
        print(f"  {n:28s} -> {results[n].status}")
    assert all(contained.values()), {n: results[n] for n, ok in contained.items() if not ok}
    assert {n: results[n].status for n in honest} == {n: want for n, (_, _, want) in honest.items()}

    assert results["infinite loop"].status == "timeout"
    assert len(results["flood stdout"].output) <= 2000
    assert "MemoryError" in results["allocate 50 GB"].output
    assert (decoy / "keep.txt").read_text() == "precious\n" and (decoy / "sub" / "keep2.txt").is_file()
    assert not escape.exists() and not (decoy / "injected.txt").exists() and not (Path.cwd() / "PWNED").exists()
    shm_escape = Path(f"/dev/shm/fr_bench_escape_{os.getpid()}")
    leaked = [p for p in (tmp_escape, shm_escape) if p.exists()]
    for p in leaked:  # at the uid level /tmp and /dev/shm stay shared (docs/sandbox.md); tidy up
        p.unlink()
    if sandbox.isolation == "namespaces":
        assert leaked == []
    assert accepted == []
    assert _leftover_processes(sandbox.uids) == []
    # the harness is alive and still scores correctly after all that
    assert [r.status for r in sandbox.run([Program("x = 1\n", "assert x == 1\n")] * 3)] == ["passed"] * 3
