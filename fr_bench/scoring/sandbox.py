"""Run untrusted programs (model-written code plus a benchmark's tests) in a sandbox, many in parallel.

Each worker thread owns one trusted runner process (`sandbox_runner.py`, a fresh `python -I -S`); the runner forks
a fresh child per program, so a program costs a few forks, not an interpreter start-up. A program passes only when
its tests ran to the end and the child wrote that job's random nonce to a private pipe and exited 0, so `sys.exit(0)`,
`os._exit(0)` or a crash before the asserts cannot look like a pass. See docs/sandbox.md for what is isolated.
"""
from __future__ import annotations

import json
import os
import queue
import select
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

RUNNER = Path(__file__).with_name("sandbox_runner.py")
ISOLATION_LEVELS = ("auto", "namespaces", "uid", "process")


@dataclass
class SandboxConfig:
    """Limits for every program; the defaults suit HumanEval/MBPP-sized programs."""

    timeout_s: float = 20.0          # wall clock per program (CPU limit = this + 1 s); MBPP 123 needs ~6 CPU-s
    memory_mb: int = 2048            # RLIMIT_AS / RLIMIT_DATA per process
    max_processes: int = 32          # RLIMIT_NPROC for the program's uid (threads count too)
    max_file_mb: int = 64            # RLIMIT_FSIZE, and the size of each private tmpfs
    max_output_bytes: int = 8192     # stdout+stderr kept per program; the rest is read and dropped
    workers: int | None = None       # parallel programs; None = os.cpu_count()
    isolation: str = "auto"          # namespaces > uid > process; auto takes the strongest that works here
    tmp_root: str | None = None      # parent of the per-run scratch folder (default: the system temp dir)
    uid_base: int = 1_900_000_000    # root only: programs run as unused uids/gids from uid_base + [0, 2**27)
    site_packages: bool = True       # let programs import installed packages (numpy etc.), not only the stdlib
    python: str | None = None        # interpreter for the runner and the programs (stdlib only); None = this one

    def __post_init__(self) -> None:
        if self.isolation not in ISOLATION_LEVELS:
            raise ValueError(f"SandboxConfig.isolation={self.isolation!r}; choose one of {ISOLATION_LEVELS}")
        if self.timeout_s <= 0:
            raise ValueError(f"SandboxConfig.timeout_s={self.timeout_s} must be > 0")


@dataclass
class Program:
    """`code` runs first; `test` then runs in a fresh scope with pristine builtins and the code's globals, except
    globals that shadow a builtin (`def abs(x): return 0` must not fool the asserts) unless named in `keep` (a task
    whose target function really is called e.g. `sum`)."""

    code: str
    test: str
    keep: tuple[str, ...] = ()


@dataclass
class ExecResult:
    status: str                # passed | failed | timeout | error (sandbox set-up or runner failure)
    exit_code: int | None
    signal: int | None
    output: str                # head of the program's stdout+stderr
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class SandboxError(RuntimeError):
    pass


_PATHS_QUERY = ("import json, os, site, sysconfig; p = sysconfig.get_paths(); print(json.dumps({'stdlib': "
                "[p['stdlib'], p['platstdlib'], os.path.dirname(os.__file__), os.path.join(p['stdlib'], "
                "'lib-dynload')], 'site': site.getsitepackages()}))")


def interpreter_paths(python: str) -> tuple[list[str], list[str]]:
    """(stdlib dirs, site-packages dirs) of an interpreter: what its programs must be able to read and import."""
    out = subprocess.run([python, "-I", "-c", _PATHS_QUERY], capture_output=True, text=True, check=True, timeout=60)
    paths = json.loads(out.stdout)
    return ([d for d in paths["stdlib"] if os.path.isdir(d)], [d for d in paths["site"] if os.path.isdir(d)])


def _program_env(run_root: str) -> dict[str, str]:
    """The whole environment a program sees (nothing of the caller's: no tokens, no proxies)."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": run_root, "TMPDIR": run_root, "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class _Runner:
    """One trusted runner process; jobs go in as JSON lines, results come back as JSON lines."""

    def __init__(self, cfg: SandboxConfig, slot: int, uid: int, run_root: str,
                 paths: tuple[list[str], list[str]]) -> None:
        self.cfg = cfg
        self.slot = slot
        stdlib, site_dirs = paths
        self.proc = subprocess.Popen(
            [cfg.python or sys.executable, "-I", "-S", str(RUNNER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, start_new_session=True, cwd=run_root, env=_program_env(run_root))
        server_cfg = {
            "isolation": cfg.isolation, "uid": uid, "run_root": run_root,
            "memory_bytes": cfg.memory_mb << 20, "max_processes": cfg.max_processes,
            "max_file_bytes": cfg.max_file_mb << 20, "max_output_bytes": cfg.max_output_bytes,
            "readable_dirs": stdlib + (site_dirs if cfg.site_packages else []),
            "private_dirs": ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"],
            "sys_path": site_dirs if cfg.site_packages else [],
        }
        hello = self._ask(server_cfg, timeout=60)
        if hello is None or "error" in hello:
            self.close()
            raise SandboxError(f"sandbox runner failed to start: {hello and hello['error']}; set "
                               f"SandboxConfig.isolation to a level this machine supports (see docs/sandbox.md)")
        self.isolation: str = hello["isolation"]
        if self.isolation == "process" and cfg.isolation == "auto":
            warnings.warn(f"code sandbox: no namespaces or setuid here, programs run as uid {os.geteuid()} with "
                          f"resource limits only (docs/sandbox.md)", RuntimeWarning, stacklevel=2)

    def _ask(self, obj: dict, timeout: float) -> dict | None:
        assert self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write((json.dumps(obj) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            return None
        line = self.proc.stdout.readline()  # the runner writes each reply as one flushed line
        return json.loads(line) if line else None

    def run(self, program: Program) -> ExecResult | None:
        """None when the runner itself died or hung (the caller replaces it)."""
        job = {"program": program.code, "test": program.test, "keep": list(program.keep),
               "timeout_s": self.cfg.timeout_s}
        reply = self._ask(job, timeout=self.cfg.timeout_s + 30)
        return None if reply is None else ExecResult(**reply)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream:
                stream.close()


class Sandbox:
    """`with Sandbox(cfg) as sb: results = sb.run(programs)`; runners start on first use and stop on close."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.workers = max(1, self.config.workers or os.cpu_count() or 1)
        if self.workers > 1024:
            raise ValueError(f"SandboxConfig.workers={self.workers}; at most 1024")
        # A random block of 1024 uids per sandbox, so two sandboxes on one machine never share a uid (RLIMIT_NPROC
        # and the uid-level clean-up `kill(-1)` must only ever reach this sandbox's own programs).
        self._uid_block = self.config.uid_base + secrets.randbelow(1 << 17) * 1024
        self._run_root: str | None = None
        self._paths: tuple[list[str], list[str]] | None = None
        self._idle: queue.Queue[_Runner] = queue.Queue()
        self._all: list[_Runner] = []
        self._lock = threading.Lock()

    @property
    def isolation(self) -> str:
        """The level the runners settled on (starts one runner if none is up yet)."""
        if not self._all:
            self._get_runner_for_slot(0)
        return self._all[0].isolation

    @property
    def uids(self) -> range:
        """The uids programs run as (meaningful at the namespaces and uid levels)."""
        return range(self._uid_block, self._uid_block + self.workers)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        if self._run_root is None:
            root = tempfile.mkdtemp(prefix="fr_bench_sandbox_", dir=self.config.tmp_root)
            os.chmod(root, 0o711)  # the programs' uids need to pass through, not list or write
            self._run_root = root

    def _get_runner_for_slot(self, slot: int) -> _Runner:
        self._start()
        assert self._run_root is not None
        if self._paths is None:
            self._paths = interpreter_paths(self.config.python or sys.executable)
        runner = _Runner(self.config, slot, self._uid_block + slot, self._run_root, self._paths)
        with self._lock:
            self._all.append(runner)
        self._idle.put(runner)
        return runner

    def run(self, programs: Sequence[Program]) -> list[ExecResult]:
        if not programs:
            return []
        self._start()
        with self._lock:
            missing = [s for s in range(min(self.workers, len(programs))) if s >= len(self._all)]
        with ThreadPoolExecutor(max_workers=max(1, len(missing))) as pool:
            list(pool.map(self._get_runner_for_slot, missing))
        with ThreadPoolExecutor(max_workers=min(self.workers, len(programs))) as pool:
            return list(pool.map(self._run_one, programs))

    def _run_one(self, program: Program) -> ExecResult:
        runner = self._idle.get()
        try:
            result = runner.run(program)
        except BaseException:
            self._replace(runner)
            raise
        if result is None:
            self._replace(runner)
            return ExecResult("error", None, None, "sandbox runner died or hung; program counted as failed", 0.0)
        self._idle.put(runner)
        return result

    def _replace(self, runner: _Runner) -> None:
        runner.close()
        with self._lock:
            self._all.remove(runner)
        self._get_runner_for_slot(runner.slot)

    def close(self) -> None:
        with self._lock:
            runners, self._all = self._all, []
        for r in runners:
            r.close()
        self._idle = queue.Queue()
        if self._run_root is not None:
            shutil.rmtree(self._run_root, ignore_errors=True)
            self._run_root = None


def run_programs(programs: Sequence[Program], config: SandboxConfig | None = None) -> list[ExecResult]:
    """Run a batch in a fresh sandbox and tear it down (what the code tasks call)."""
    with Sandbox(config) as sandbox:
        return sandbox.run(programs)


__all__ = ["ExecResult", "Program", "Sandbox", "SandboxConfig", "SandboxError", "run_programs"]
