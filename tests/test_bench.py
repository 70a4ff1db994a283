"""The throughput benchmark: what it runs, what it reports, how it refuses bad arguments.

Correctness only: tiny step counts, no timing assertions (the machine is shared and noisy).
"""

from __future__ import annotations

import json
import math
import re
from functools import partial

import pytest
import torch
from conftest import REPO, run_tool

from degradation.bench import CPU_OPTIONS, main, run_minutes, sweep_minutes
from degradation.speed import native_bf16_flags

TINY = ["--device", "cpu", "--steps", "2", "--warmup", "1", "--batch", "16"]
TINY += ["--workers", "0", "--train-size", "128", "--no-options"]


bench_cli = partial(run_tool, "bench", timeout=600)  # python -m degradation.bench


def test_bench_times_baseline_and_framework_for_each_model(tmp_path):
    out = tmp_path / "bench.json"
    result = bench_cli(*TINY, "--models", "8,14", "--json", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    records = json.loads(out.read_text())
    assert [r["model"] for r in records] == ["resnet-8", "resnet-14"]
    for r in records:
        assert (r["device"], r["batch"], r["steps"], r["warmup"]) == ("cpu", 16, 2, 1)
        assert r["baseline_img_s"] > 0 and r["framework_img_s"] > 0
        assert r["ratio"] == pytest.approx(r["framework_img_s"] / r["baseline_img_s"])
        assert r["baseline_img_s_by_workers"] == {"0": r["baseline_img_s"]}
        # the CPU default path: bf16 + channels_last where the CPU has native bf16, else fp32
        fast = bool(native_bf16_flags())
        expected = ("bf16-mixed" if fast else "32-true", "none", fast)
        assert (r["precision"], r["compile"], r["channels_last"]) == expected
        assert r["cpu_bf16_flags"] == native_bf16_flags() and r["image_size"] == 32
        assert r["run_64k_min"] == pytest.approx(64000 * 128 / r["framework_img_s"] / 60)
        assert r["pack"] == 1 and r["packed_img_s"] is None
        assert r["torch"] == torch.__version__ and r["cpus"] >= 1 and r["date"]
    table = result.stdout[result.stdout.index("baseline img/s") :]
    assert "resnet-8" in table and "resnet-14" in table and "b/a" in table
    assert "canonical sweep" not in result.stdout  # projected on a GPU only
    # piped: plain lines, numbers formatted, none of the noise the console rules filter
    both = result.stdout + result.stderr
    assert "\r" not in both and "{" not in both
    for noise in ("💡", "litlogger", "Tip:", "FutureWarning", "LeafSpec"):
        assert noise not in both, noise
    line = next(x for x in result.stdout.splitlines() if x.startswith("[bench] resnet-8:"))
    assert re.fullmatch(r"\[bench\] resnet-8: baseline [\d.]+ img/s \(0 workers\), "
                        r"framework [\d.]+ img/s", line), line  # fmt: skip


def test_bench_on_a_cpu_times_each_speed_option_against_fp32_eager(tmp_path):
    out = tmp_path / "bench.json"
    tiny = [a for a in TINY if a != "--no-options"]
    args = [*tiny, "--models", "8", "--image-size", "16", "--json", str(out)]
    result = bench_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = json.loads(out.read_text())
    assert record["image_size"] == 16
    options = record["options"]
    assert list(options) == list(CPU_OPTIONS)
    assert options["fp32 eager"]["vs_fp32_eager"] == 1.0
    for label, o in options.items():
        assert o["img_s"] > 0 and o["warmup_s"] > 0
        assert o["vs_fp32_eager"] == pytest.approx(o["img_s"] / options["fp32 eager"]["img_s"])
        assert o["trainer.precision"] == CPU_OPTIONS[label]["trainer.precision"]
    compiled = options["fp32 + torch.compile"]
    assert "compile_extra_s" in compiled and "break_even_steps" in compiled
    table = result.stdout[result.stdout.index("CPU speed options") :]
    for label in CPU_OPTIONS:
        assert label in table
    assert "native bf16:" in table and "torch.compile's warm-up takes" in table


def test_bench_pack_sums_concurrent_framework_loops(tmp_path):
    out = tmp_path / "bench.json"
    result = bench_cli(*TINY, "--models", "8", "--pack", "2", "--json", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = json.loads(out.read_text())
    assert record["pack"] == 2 and len(record["packed_img_s_each"]) == 2
    assert all(v > 0 for v in record["packed_img_s_each"])
    assert record["packed_img_s"] == pytest.approx(sum(record["packed_img_s_each"]))
    assert "packed sum img/s" in result.stdout


def test_bench_fuse_steps_members_together_and_sums_their_images(tmp_path, monkeypatch):
    import degradation.bench as bench

    seen: dict[str, set] = {"images": set(), "members": set()}

    class Recording(bench.Classifier):
        def training_step(self, batch, batch_idx):
            seen["images"].add(len(batch[1]))
            seen["members"].add(getattr(self.model, "members", 1))
            return super().training_step(batch, batch_idx)

    monkeypatch.setattr(bench, "Classifier", Recording)
    out = tmp_path / "bench.json"
    assert main([*TINY, "--models", "8", "--fuse", "3", "--json", str(out)]) == 0
    (record,) = json.loads(out.read_text())
    assert record["fuse"] == 3 and record["fused_img_s"] > 0
    assert record["framework_img_s"] > 0 and record["packed_img_s"] is None
    # one net on 16 images a step, then 3 fused members on 16 images each
    assert seen == {"images": {16, 48}, "members": {1, 3}}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "20,21"], "--models 21: depth=21"),
        (["--models", "twenty"], "--models twenty: expected comma-separated integers"),
        (["--steps", "0"], "--steps 0: must be >= 1"),
        (["--fuse", "0"], "--fuse 0: must be >= 1"),
        (["--image-size", "4"], "--image-size 4: must be >= 8"),
        (["--workers", "-1"], "--workers -1: expected comma-separated integers >= 0"),
        (["--train-size", "10", "--batch", "16"], "--train-size 10: smaller than --batch 16"),
    ],
)
def test_bench_rejects_bad_arguments_with_one_line(args, message, capsys):
    assert main(["--device", "cpu", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {message}") and "\n" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a CPU-only machine")
def test_bench_on_cuda_without_a_gpu_says_so(capsys):
    assert main(["--device", "cuda", "--models", "20"]) == 2
    assert "no CUDA device is visible" in capsys.readouterr().err


def test_sweep_projection_adds_two_runs_per_canonical_depth():
    speeds = {20: 32000.0, 56: 16000.0, 110: 8000.0}
    one_run = {d: 64000 * 128 / v / 60 for d, v in speeds.items()}
    assert run_minutes(speeds[56]) == pytest.approx(one_run[56])
    assert sweep_minutes(speeds) == pytest.approx(2 * sum(one_run.values()))
    assert sweep_minutes({20: 32000.0, 56: 16000.0}) is None  # 110 not measured
    assert sweep_minutes({**speeds, 110: None}) is None
    assert not math.isnan(sweep_minutes(speeds))


def test_bench_help_names_every_option():
    result = bench_cli("--help", cwd=REPO)
    assert result.returncode == 0
    options = ("--models", "--steps", "--warmup", "--batch", "--device", "--json", "--pack")
    for option in (*options, "--fuse"):
        assert option in result.stdout
