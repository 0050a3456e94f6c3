"""The GPU acceptance check runs end to end in --smoke mode on the CPU, through its shell
wrapper, and writes the JSON a GPU run writes (with the GPU-only parts skipped and saying why)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from train.gpu_check import FALLBACK_PRESET, CheckTimeout, alarm_after, peak_bf16_tflops, resolve_preset

REPO = Path(__file__).resolve().parents[2]


def test_smoke_run_writes_the_report(tmp_path):
    out = tmp_path / "bench" / "gpu.json"
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["complete"] is True and report["device"]["type"] == "cpu"
    assert report["device"]["torch"] and report["device"]["peak_bf16_tflops"] is None
    assert report["preset"] in ("paper", FALLBACK_PRESET)
    assert report["precision"] == "fp32"
    assert report["text_tower"]["kind"] == "random weights"
    eager = report["eager"]
    for name in ("smaug", "dense"):
        run = eager[name]
        assert run["clips_per_s"] > 0 and len(run["step_s"]) == eager["timed_steps"] == 2
        assert run["flops_per_clip"] > 0 and run["peak_memory_bytes"] > 0
        assert run["mfu"] is None  # no known peak for a CPU
        assert run["final_loss"] > 0
    # the ratios are of the figures beside them
    assert eager["speedup"] == pytest.approx(eager["smaug"]["clips_per_s"] / eager["dense"]["clips_per_s"])
    assert eager["flops_ratio"] == pytest.approx(eager["dense"]["flops_per_clip"] / eager["smaug"]["flops_per_clip"])
    assert eager["flops_ratio"] > 1  # masking + sparsification compute less than dense
    ckpt = report["grad_checkpointing"]
    assert ckpt["grad_checkpointing"] is True and ckpt["smaug"]["clips_per_s"] > 0
    # recomputation changes no number: the same losses as the eager runs, step for step
    for name in ("smaug", "dense"):
        assert ckpt[name]["final_loss"] == pytest.approx(eager[name]["final_loss"], abs=1e-5)
    assert "smoke" in report["compiled"]["skipped"]
    assert "no CUDA GPU" in report["dali"]["skipped"]
    assert "-> " + str(out) in proc.stdout


def test_peak_table_and_preset_fallback():
    assert peak_bf16_tflops("NVIDIA H200") == 989.0
    assert peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_bf16_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_bf16_tflops("NVIDIA RTX A6000") == 154.8
    assert peak_bf16_tflops("Tesla V100-SXM2-16GB") is None
    name, note = resolve_preset("no-such-preset")
    assert name == FALLBACK_PRESET and "no-such-preset" in note
    assert resolve_preset(FALLBACK_PRESET) == (FALLBACK_PRESET, None)


def test_a_part_past_its_time_is_stopped():
    import time

    t0 = time.perf_counter()
    with pytest.raises(CheckTimeout):
        with alarm_after(1):
            time.sleep(10)
    assert time.perf_counter() - t0 < 5
    with alarm_after(5):  # finished in time: nothing rings later
        pass
    time.sleep(0.1)
