"""The trusted side of the code sandbox: a small server that forks a fresh child for every untrusted program.

Started by `fr_bench.scoring.sandbox` as `python -I -S sandbox_runner.py` and kept alive for a batch, so a program
costs a few forks instead of an interpreter start-up (tens of ms here). Standard library only: it must not import
anything the untrusted code could have tampered with, and it runs before any fr_bench code could be loaded.

Protocol (one JSON object per line): the first stdin line is the server config; the server answers
{"isolation": level}; then every job line {"program", "test", "timeout_s"} gets one result line
{"status", "exit_code", "signal", "output", "duration_s"}.

Per job:  server ── fork ── keeper ──[new pid, ipc and mount namespaces]── fork ── program
(at the namespaces level the server itself sits in an empty network namespace that all its programs share).
The keeper is a disposable parent that enforces the wall-clock limit; the program child sets up its private file
system, resource limits and (as root) an unprivileged uid, then runs `program` and `test` and writes the job's random
nonce to a pipe only when both finished without an exception. The server reports "passed" only for exit status 0 plus
the right nonce. docs/sandbox.md says what each isolation level does and does not contain.
"""
import builtins
import ctypes
import gc
import json
import os
import resource
import select
import shutil
import signal
import sys
import time
import traceback

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x08000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 2, 4, 4096, 8192, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38
LEVELS = ("namespaces", "uid", "process")
SETUP_FAILED = 71  # exit code of a program child whose sandbox set-up failed (never a pass)
_LIBC = ctypes.CDLL(None, use_errno=True)
_PROBE = {"program": "import math, json, re, collections, socket\nx = math.sqrt(4)\n", "test": "assert x == 2\n",
          "timeout_s": 10}


def _libc_call(name, *args):
    if getattr(_LIBC, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}{args}: {os.strerror(err)}")


def _mount(source, target, fstype, flags, data=None):
    enc = (lambda s: None if s is None else str(s).encode())
    _libc_call("mount", enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))


def _others_can_traverse(path):
    st = os.stat(path)
    return bool(st.st_mode & 0o001)


def _blocked_ancestors(dirs):
    """Outermost ancestors of `dirs` that others cannot traverse (e.g. /root, mode 0700, holding pyenv's Python)."""
    blocked = set()
    for d in dirs:
        parts = d.split(os.sep)
        for i in range(2, len(parts)):
            anc = os.sep.join(parts[:i])
            if not _others_can_traverse(anc):
                blocked.add(anc)
                break
    return sorted(b for b in blocked if not any(b != o and b.startswith(o + os.sep) for o in blocked))


class Server:
    def __init__(self, cfg):
        self.cfg = cfg
        self.uid = int(cfg["uid"])
        self.run_root = cfg["run_root"]
        self.jobs = 0
        readable = [os.path.realpath(d) for d in cfg["readable_dirs"] if os.path.isdir(d)]
        self.readable = sorted({d for d in readable if not any(d.startswith(o + os.sep) for o in readable)})
        self.private_dirs = [d for d in cfg["private_dirs"] if os.path.isdir(d)]
        self.level = None

    # ----- isolation level -------------------------------------------------------------------------------------
    def choose_level(self):
        """The strongest level that runs the probe program; each is tried in a throw-away fork first."""
        wanted = self.cfg["isolation"]
        candidates = LEVELS if wanted == "auto" else (wanted,)
        errors = []
        for level in candidates:
            if level != "process" and os.geteuid() != 0:
                errors.append(f"{level}: needs root")
                continue
            ok, detail = self._probe(level)
            if ok:
                self._enter(level)
                return level
            errors.append(f"{level}: {detail}")
        raise RuntimeError(f"sandbox isolation {wanted!r} is not available here; tried " + " | ".join(errors))

    def _probe(self, level):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                self._enter(level)
                res = self.run_job(_PROBE)
                detail = res["status"] + " " + res["output"][-600:]
                code = 0 if res["status"] == "passed" else 1
            except BaseException:
                detail, code = traceback.format_exc()[-600:], 1
            os.write(w, detail.encode()[:4000])
            os._exit(code)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        detail = self._read_nonblocking(r, 4000).decode("utf-8", "replace")
        os.close(r)
        return os.waitstatus_to_exitcode(status) == 0, detail

    def _enter(self, level):
        """Runner-wide set-up: at the namespaces level an empty network namespace and a mount namespace in which the
        interpreter's own files are readable by the programs' uid (all jobs share these; each job adds its own
        pid, ipc and mount namespaces on top)."""
        self.level = level
        if level != "namespaces":
            return
        _libc_call("unshare", CLONE_NEWNET | CLONE_NEWNS)
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        blocked = _blocked_ancestors(self.readable)
        if not blocked:
            return
        # Hide e.g. /root (mode 0700, holding pyenv's Python) behind an empty tmpfs and bind back only the Python
        # install inside it: programs then read the stdlib but none of root's other files.
        stage = os.path.join(self.run_root, f".stage-{os.getpid()}")
        moved = [d for d in self.readable if any(d.startswith(b + os.sep) for b in blocked)]
        for i, d in enumerate(moved):
            os.makedirs(f"{stage}/{i}")
            _mount(d, f"{stage}/{i}", None, MS_BIND | MS_REC)
        for b in blocked:
            _mount("tmpfs", b, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
        for i, d in enumerate(moved):
            os.makedirs(d, exist_ok=True)
            _mount(f"{stage}/{i}", d, None, MS_MOVE)
        shutil.rmtree(stage)

    # ----- one job -----------------------------------------------------------------------------------------------
    def run_job(self, job):
        self.jobs += 1
        workdir = os.path.join(self.run_root, f"job-{os.getpid()}-{self.jobs}")
        os.mkdir(workdir, 0o700)
        nonce = os.urandom(16).hex().encode()
        out_r, out_w = os.pipe()
        res_r, res_w = os.pipe()
        st_r, st_w = os.pipe()
        timeout = float(job["timeout_s"])
        start = time.monotonic()
        sys.stdout.flush()
        keeper = os.fork()
        if keeper == 0:
            os.close(out_r), os.close(res_r), os.close(st_r)
            self._keeper(job, workdir, nonce, out_w, res_w, st_w, timeout)  # never returns
        for fd in (out_w, res_w, st_w):
            os.close(fd)
        output, status, timed_out = self._collect(keeper, out_r, st_r, timeout)
        result = self._read_nonblocking(res_r, 64)
        for fd in (out_r, res_r, st_r):
            os.close(fd)
        self._cleanup(workdir)
        code = os.waitstatus_to_exitcode(status) if status is not None else None
        passed = code == 0 and result == nonce
        verdict = "passed" if passed else "timeout" if timed_out else "error" if code == SETUP_FAILED else "failed"
        return {"status": verdict, "exit_code": code if code is None or code >= 0 else None,
                "signal": -code if code is not None and code < 0 else None,
                "output": output.decode("utf-8", "replace"), "duration_s": round(time.monotonic() - start, 4)}

    def _collect(self, keeper, out_r, st_r, timeout):
        """Read (and cap) the program's output while the keeper runs; backstop-kill a keeper that overstays."""
        cap = int(self.cfg["max_output_bytes"])
        output = bytearray()
        pidfd = os.pidfd_open(keeper)
        poller = select.poll()
        poller.register(out_r, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        deadline = time.monotonic() + timeout + 5.0
        out_open = True
        overstayed = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(keeper, signal.SIGKILL)  # the program child dies with it (parent-death signal)
                overstayed = True
                break
            events = dict(poller.poll(left * 1000))
            if out_open and out_r in events:
                chunk = os.read(out_r, 65536)
                if chunk:
                    if len(output) < cap:
                        output += chunk[: cap - len(output)]
                else:
                    poller.unregister(out_r)
                    out_open = False
            if pidfd in events:
                break
        os.close(pidfd)
        _, wait_status = os.waitpid(keeper, 0)
        tail = self._read_nonblocking(out_r, cap) if out_open else b""
        output += tail[: max(0, cap - len(output))]
        report = self._read_nonblocking(st_r, 4096)
        if not report:  # the keeper died: killed by our backstop, or by the program (process level)
            return bytes(output), wait_status, overstayed
        info = json.loads(report)
        return bytes(output), info["status"], info["timed_out"]

    @staticmethod
    def _read_nonblocking(fd, limit):
        os.set_blocking(fd, False)
        data = bytearray()
        try:
            while len(data) < limit:
                chunk = os.read(fd, limit - len(data))
                if not chunk:
                    break
                data += chunk
        except BlockingIOError:
            pass
        return bytes(data)

    def _cleanup(self, workdir):
        if self.level == "uid":  # kill whatever the program left behind, as its own uid (kill -1 reaches only those)
            pid = os.fork()
            if pid == 0:
                try:
                    os.setgid(self.uid), os.setuid(self.uid)
                    for _ in range(50):
                        os.kill(-1, signal.SIGKILL)
                        time.sleep(0.001)
                except ProcessLookupError:
                    os._exit(0)
                except BaseException:
                    os._exit(1)
                os._exit(0)
            os.waitpid(pid, 0)
        while True:  # reap orphans re-parented to us (we are a child subreaper)
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        shutil.rmtree(workdir, ignore_errors=True)

    # ----- keeper: the program's disposable parent ------------------------------------------------------------------
    def _keeper(self, job, workdir, nonce, out_w, res_w, st_w, timeout):
        try:
            gc.disable()
            _libc_call("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # a killed runner takes its jobs along
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0), os.dup2(devnull, 1)  # never write into the server's protocol pipe
            if self.level == "namespaces":
                _libc_call("unshare", CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC)
                _mount(None, "/", None, MS_REC | MS_PRIVATE)
            child = os.fork()
            if child == 0:
                os.close(st_w)
                self._program_child(job, workdir, nonce, out_w, res_w)  # never returns
            os.close(out_w), os.close(res_w)
            pidfd = os.pidfd_open(child)
            timed_out = not select.select([pidfd], [], [], timeout)[0]
            if timed_out:
                os.kill(child, signal.SIGKILL)  # in a pid namespace this takes every process of the program down
            _, status = os.waitpid(child, 0)
            os.write(st_w, json.dumps({"status": status, "timed_out": timed_out}).encode())
            os._exit(0)
        except BaseException:
            os._exit(70)

    # ----- the untrusted program ------------------------------------------------------------------------------------
    def _program_child(self, job, workdir, nonce, out_w, res_w):
        try:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0), os.dup2(out_w, 1), os.dup2(out_w, 2), os.dup2(res_w, 3)
            os.closerange(4, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
            if self.level == "namespaces":
                self._private_filesystem(workdir)
            elif self.level == "uid":
                os.chown(workdir, self.uid, self.uid)
            os.chdir(workdir)
            os.environ.update(HOME=workdir, TMPDIR=workdir)  # the rest of the (minimal) env comes from the launcher
            self._limits(job)
            if self.level != "process":
                os.setgroups([])
                os.setgid(self.uid)
                os.setuid(self.uid)
            _libc_call("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it
            _libc_call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            if self.level != "namespaces":
                _block_sockets()
            sys.path[:] = [p for p in sys.path if p] + list(self.cfg["sys_path"])
            sys.argv = ["sandbox_program"]
            sys.stdout.reconfigure(line_buffering=True)  # sys.std* already wrap fds 0-2, now /dev/null and the pipe
            gc.enable()
        except BaseException:
            try:
                os.write(2, traceback.format_exc().encode())
            finally:
                os._exit(SETUP_FAILED)
        _run_untrusted(job["program"], job["test"], job.get("keep", ()), nonce, 3)

    def _limits(self, job):
        cpu = int(float(job["timeout_s"])) + 1
        mem = int(self.cfg["memory_bytes"])
        fsize = int(self.cfg["max_file_bytes"])
        nproc = int(self.cfg["max_processes"])
        if self.level == "process":  # RLIMIT_NPROC counts every process and thread of the user, not only ours
            nproc += _user_tasks(os.getuid())
        for res, value in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_DATA, mem), (resource.RLIMIT_CPU, cpu),
                           (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_NPROC, nproc),
                           (resource.RLIMIT_NOFILE, 256), (resource.RLIMIT_CORE, 0)):
            hard = resource.getrlimit(res)[1]
            if hard != resource.RLIM_INFINITY:  # a user cannot raise a hard limit, only lower it
                value = min(value, hard)
            resource.setrlimit(res, (value, value))

    def _private_filesystem(self, workdir):
        """This job's /proc, private tmpfs over the world-writable dirs, and a tmpfs working dir."""
        size = int(self.cfg["max_file_bytes"])
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV)
        for d in self.private_dirs:
            _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777")
        os.makedirs(workdir, exist_ok=True)
        _mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=0700,uid={self.uid},gid={self.uid}")


def _user_tasks(uid):
    """Threads (tasks) the user runs right now: what RLIMIT_NPROC already counts against the program."""
    count = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{pid}/task"))
            except OSError:
                pass
    return count


def _block_sockets():
    """Best effort only (raw syscalls through ctypes still work); namespaces mode needs none of it."""
    import _socket
    import socket

    def refuse(*args, **kwargs):
        raise PermissionError("network access is disabled in the sandbox")

    for mod in (socket, _socket):
        for name in ("socket", "socketpair", "create_connection", "create_server", "fromfd", "getaddrinfo"):
            if hasattr(mod, name):
                setattr(mod, name, refuse)


def _run_untrusted(program, test, keep, nonce, result_fd):
    """Run the program, then its tests in a scope with pristine builtins; write the nonce only if both succeed."""
    write, exit_, settrace, setprofile = os.write, os._exit, sys.settrace, sys.setprofile
    pristine = dict(builtins.__dict__)
    scope = {"__name__": "sandbox_program", "__builtins__": builtins}
    try:
        exec(compile(program, "<program>", "exec"), scope)
        settrace(None)  # a trace function could jump over the asserts
        setprofile(None)
        test_scope = {k: v for k, v in scope.items() if k not in pristine or k in keep}  # no shadowed builtins
        test_scope.update(__name__="sandbox_test", __builtins__=dict(pristine))
        exec(compile(test, "<test>", "exec"), test_scope)
    except BaseException:
        try:
            traceback.print_exc()
        finally:
            exit_(1)
    try:
        write(result_fd, nonce)  # fails (no pass) if the program closed or replaced fd 3
    finally:
        exit_(0)


def main():
    cfg = json.loads(sys.stdin.buffer.readline())
    _libc_call("prctl", PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    server = Server(cfg)
    try:
        level = server.choose_level()
    except RuntimeError as e:
        print(json.dumps({"error": str(e)}), flush=True)
        return
    print(json.dumps({"isolation": level}), flush=True)
    for line in sys.stdin.buffer:
        gc.freeze()  # keep the collector from touching (and so copying) every inherited object in each fork
        try:
            result = server.run_job(json.loads(line))
        except Exception:  # a broken job must not take the runner (and the rest of the batch) down
            result = {"status": "error", "exit_code": None, "signal": None, "duration_s": 0.0,
                      "output": "sandbox runner error:\n" + traceback.format_exc()}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
