"""What machine and software produced a sweep: recorded in meta.json and printed in report.md.

Tiny models trained from scratch can turn a last-bit rounding difference between CPU kernels into points of score,
so a table that differs between two machines must be traceable to what differs: the commit, the package versions,
torch's threads and kernel set, and the CPU / GPU model.
"""
from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "transformers", "lightning", "tokenizers", "numpy", "lm-eval", "math-verify")
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "OMP_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG")


def git_commit(root: Path | None = None) -> dict[str, Any]:
    """The commit of the checkout holding fr_bench, and whether it has uncommitted changes (None outside git)."""
    where = root or Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        # the sweep itself rewrites its report folder before meta.json: only changes outside reports/ count
        status = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no", "--",
                                 ".", ":(exclude)reports"], capture_output=True, text=True, timeout=10,
                                check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def collect(threads: int) -> dict[str, Any]:
    """The provenance block of meta.json; `threads` is the sweep's torch intra-op setting (0 = torch's default)."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {**git_commit(), "python": platform.python_version(), "packages": package_versions(),
            "torch_threads": threads or torch.get_num_threads(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "kernel_env": {k: os.environ[k] for k in KERNEL_ENV if k in os.environ},
            "cpu": cpu_model(), "cpu_count": os.cpu_count(), "machine": platform.machine(), "gpus": gpus}
