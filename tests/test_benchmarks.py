"""The benchmark scripts run and print the keys the performance issue names (tiny settings: numbers, not speed)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def last_json(script: str, *args: str) -> dict:
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_decode_overhead_prints_its_ratios():
    result = last_json("decode_overhead.py", "--new-tokens", "12", "--prompt-len", "8", "--repeats", "2",
                       "--router-switch-rate", "0.2", "--stress-switch-rate", "0.3", "--threads", "1")
    for key in ("fusion_over_single_b1", "fusion_over_single_b8", "naive_over_single_b1", "naive_over_single_b8",
                "catch_up_share", "catch_up_share_b8", "peak_mem_over_weights_plus_kv", "stress_fusion_over_single_b8",
                "fusion_no_switch_over_single_b8"):
        assert result[key] > 0, key
    assert result["fusion_equals_naive_b1"] and result["fusion_equals_naive_b8"]
    assert 0.05 < result["measured_switch_rate_b8"] < 0.4          # the schedule switches at about the asked rate
    assert result["fusion_forwards_over_single_b8"] > 2            # switches cost expert forwards beyond the home one


@pytest.mark.slow
def test_sft_overhead_prints_its_ratio():
    result = last_json("sft_overhead.py", "--batch-size", "2", "--prompt-len", "8", "--response-len", "16",
                       "--repeats", "2", "--warmup", "1", "--threads", "1")
    assert result["sft_over_plain"] > 0
