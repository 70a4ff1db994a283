"""The reproducibility report: files, table numbers, excluded runs, seeds, verdict, browser.

One real smoke sweep (module fixture) provides run folders; variations of it (more seeds, a
diverged and a failed run, a CIFAR-10 run) are fabricated by copying a run folder and editing
its summary.json and metrics.csv, which is what such runs leave behind.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
import statistics
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import pytest
import torch
from conftest import REPO, run_cli, summaries

from degradation.models import build_model, conv3x3_bn_layers, layer_response_std
from degradation.report import build_report
from degradation.report.__main__ import main as report_main
from degradation.rundir import LAYER_RESPONSES

CHROMIUM = Path("/usr/bin/chromium")
HEADINGS = {"Verdict", "Results", "Figures", "Runs not in the means", "Provenance"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Output root of `-m depth=8,20 skip=none,add` (smoke budget, 10 steps): four runs."""
    root = tmp_path_factory.mktemp("sweep") / "outputs"
    result = run_cli(
        "-m", "depth=8,20", "skip=none,add", "experiment=smoke", "trainer.max_steps=10",
        f"output_root={root}", cwd=root.parent,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(summaries(root)) == 4
    return root


def report_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "degradation.report", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def run_dir(root: Path, name: str) -> Path:
    """The run folder of variant `name` (e.g. 'plain-8') below root."""
    (found,) = [p for p, s in summaries(root).items() if s["name"] == name]
    return found


def fabricate(src: Path, dst: Path, error_shift: float = 0.0, **changes) -> dict:
    """Copy a run folder, shift its errors (summary and curves) and change summary keys."""
    shutil.copytree(src, dst)
    summary = json.loads((dst / "summary.json").read_text())
    for section in ("final", "best_val"):
        for key, v in summary[section].items():
            if key.endswith("_error") and v is not None:
                summary[section][key] = v + error_shift
    for key, v in changes.items():
        if isinstance(v, dict):
            summary[key].update(v)
        else:
            summary[key] = v
    (dst / "summary.json").write_text(json.dumps(summary))
    with (dst / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in ("train/error", "val/error"):
            if row[key]:
                row[key] = str(float(row[key]) + error_shift)
    with (dst / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return summary


def variant(report: dict, label: str) -> dict:
    (found,) = [v for v in report["variants"] if v["variant"] == label]
    return found


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def test_report_cli_writes_html_markdown_and_figures(sweep, tmp_path):
    out = tmp_path / "report"
    result = report_cli(str(sweep), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"report: {out / 'report.html'}" in result.stdout
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    pngs = sorted(out.glob("*.png"))
    assert {p.name.split("_")[0] for p in pngs} == {"fig1", "fig6", "degradation", "fig7"}
    for png in pngs:
        assert png.read_bytes().startswith(PNG_MAGIC)
        assert f"]({png.name})" in md  # Markdown shows the file beside it
    assert html.count('src="data:image/png;base64,') == len(pngs)  # HTML carries its own
    assert 'src="' + pngs[0].name not in html


def test_training_writes_layer_responses_for_every_3x3_layer(sweep):
    for folder, summary in summaries(sweep).items():
        responses = json.loads((folder / LAYER_RESPONSES).read_text())
        assert len(responses["layers"]) == len(responses["std"]) == summary["depth"] - 1
        assert responses["step"] == summary["steps"] == 10
        assert all(s > 0 for s in responses["std"])


def test_layer_response_std_is_the_mean_channel_std_of_each_bn_output():
    torch.manual_seed(0)
    model = build_model(depth=8, skip="none", shortcut="zero_pad", num_classes=10, in_channels=3)
    images = torch.randn(200, 3, 32, 32)  # two chunks of 128 and 72
    outputs = {}
    hooks = [
        bn.register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o))
        for name, bn in conv3x3_bn_layers(model)
    ]
    model.eval()
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    expected = [
        outputs[name].std(dim=(0, 2, 3)).mean().item() for name, _ in conv3x3_bn_layers(model)
    ]
    model.train()
    measured = layer_response_std(model, images, batch_size=128)
    assert measured == pytest.approx(expected, rel=1e-4)
    assert len(measured) == 7 and model.training  # 6n+1 layers; train mode restored


def test_table_numbers_are_the_run_folders_values(sweep, tmp_path):
    build_report(sweep, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    md = (tmp_path / "report.md").read_text()
    for summary in summaries(sweep).values():
        row = variant(report, summary["name"])
        final, best = summary["final"], summary["best_val"]
        assert row["n"] == 1 and row["seeds"] == [summary["seed"]]
        assert row["final_test_error"] == {"mean": final["test_error"], "std": None, "n": 1}
        assert row["best_val_test_error"]["mean"] == best["test_error"]
        assert row["final_train_error"]["mean"] == final["train_error"]
        assert (row["params"], row["flops"]) == (summary["params"], summary["flops"])
        assert row["wall_time_s"]["mean"] == summary["wall_time_s"]
        cells = [summary["name"], "synthetic", "1", str(summary["seed"])]
        cells += [pct(final["test_error"]), pct(best["test_error"]), pct(final["train_error"])]
        cells.append(f"{summary['params']:,}")
        assert "| " + " | ".join(cells) + " |" in md
    assert "None: all 4 run(s) completed." in md
    assert summaries(sweep)[run_dir(sweep, "plain-8")]["command"] in md
    assert summaries(sweep)[run_dir(sweep, "plain-8")]["dataset_checksum"] in md


def test_diverged_and_failed_runs_are_listed_and_left_out_of_means(sweep, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(sweep, root)
    plain8 = run_dir(root, "plain-8")
    original = json.loads((plain8 / "summary.json").read_text())
    fabricate(
        plain8, root / "diverged", error_shift=0.05, seed=1, status="diverged", diverged_step=7
    )
    fabricate(
        plain8,
        root / "failed",
        error_shift=0.07,
        seed=2,
        status="failed",
        error="RuntimeError: CUDA out of memory\nmore lines",
    )
    build_report(root, tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    md = (tmp_path / "report" / "report.md").read_text()

    row = variant(report, "plain-8")
    assert (row["runs"], row["n"], row["seeds"]) == (3, 1, [0])
    assert row["excluded"] == {"diverged": 1, "failed": 1}
    assert row["final_test_error"]["mean"] == original["final"]["test_error"]
    assert row["final_train_error"]["mean"] == original["final"]["train_error"]
    assert {(e["run"], e["status"], e["reason"]) for e in report["excluded"]} == {
        ("diverged", "diverged", "diverged at step 7"),
        ("failed", "failed", "RuntimeError: CUDA out of memory"),
    }
    assert "| diverged | plain-8 | 1 | diverged | diverged at step 7 |" in md
    assert "| failed | plain-8 | 2 | failed | RuntimeError: CUDA out of memory |" in md
    assert "1 diverged, 1 failed" in md  # the variant row says what it left out
    figures = json.loads((tmp_path / "report" / "figures.json").read_text())
    (fig6,) = [f for f in figures.values() if f["kind"] == "fig6"]
    assert "2 diverged or failed run(s) left out" in fig6["caption"]
    curves = [s for p in fig6["panels"] for s in p["series"] if s["variant"] == "plain-8"]
    assert curves and all(set(s["n"]) == {1} for s in curves)


def test_two_seeds_give_mean_std_in_table_and_band_in_figures(sweep, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(sweep, root)
    for folder in list(summaries(root)):
        fabricate(folder, folder.with_name(folder.name + ",seed=1"), error_shift=-0.04, seed=1)
    build_report(root, tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    md = (tmp_path / "report" / "report.md").read_text()
    for name in ("plain-8", "plain-20", "resnet-8", "resnet-20"):
        pair = [s for s in summaries(root).values() if s["name"] == name]
        errors = [s["final"]["test_error"] for s in pair]
        row = variant(report, name)
        assert (row["n"], row["seeds"]) == (2, [0, 1])
        assert row["final_test_error"]["mean"] == pytest.approx(statistics.fmean(errors))
        assert row["final_test_error"]["std"] == pytest.approx(statistics.stdev(errors))
        shown = f"{pct(statistics.fmean(errors))} ± {pct(statistics.stdev(errors))}"
        assert f"| {name} | synthetic | 2 | 0, 1 | {shown} |" in md

    figures = json.loads((tmp_path / "report" / "figures.json").read_text())
    (fig6,) = [f for f in figures.values() if f["kind"] == "fig6"]
    (val,) = [
        s for p in fig6["panels"] for s in p["series"]
        if s["variant"] == "plain-20" and s["metric"] == "val/error"
    ]  # fmt: skip
    with (run_dir(sweep, "plain-20") / "metrics.csv").open() as f:
        seed0 = {int(r["step"]): float(r["val/error"]) for r in csv.DictReader(f) if r["val/error"]}
    assert val["x"] == sorted(seed0)
    assert set(val["n"]) == {2}
    for x, mean, std in zip(val["x"], val["mean"], val["std"], strict=True):
        both = [seed0[x], seed0[x] - 0.04]
        assert mean == pytest.approx(statistics.fmean(both))
        assert std == pytest.approx(statistics.stdev(both))
    (depth_plot,) = [f for f in figures.values() if f["kind"] == "degradation"]
    (plain,) = [s for s in depth_plot["panels"][0]["series"] if s["variant"] == "plain"]
    assert plain["x"] == [8, 20] and plain["n"] == [2, 2]


def test_verdict_needs_two_plain_depths(sweep, tmp_path):
    root = tmp_path / "runs"
    for name in ("plain-8", "resnet-8", "resnet-20"):
        shutil.copytree(run_dir(sweep, name), root / name)
    result = build_report(root, tmp_path / "report")
    (verdict,) = result["verdict"]
    assert verdict["degradation"] == verdict["skips"] == "not enough runs"
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Degradation (plain nets): not enough runs" in md
    assert "found only plain-8" in md


def test_verdict_follows_the_numbers_and_the_seed_spread(sweep, tmp_path):
    """plain-20 above plain-8; resnet-20 below plain-20 and resnet-8 (two seeds: suggestive)."""
    root = tmp_path / "runs"
    train_errors = {"plain-8": 0.20, "plain-20": 0.30, "resnet-8": 0.18, "resnet-20": 0.15}
    for name, error in train_errors.items():
        for seed, jitter in ((0, 0.0), (1, 0.01)):
            src = run_dir(sweep, name)
            fabricate(
                src, root / f"{name}-s{seed}", seed=seed, final={"train_error": error + jitter}
            )
    (verdict,) = build_report(root, tmp_path / "report")["verdict"]
    assert verdict["degradation"] == "yes, but not established (1 of 1 depth pairs: 1 suggestive)"
    assert verdict["skips"].startswith("yes, but not established (1 of 1 degraded depth pairs")
    (pair,) = verdict["series"][0]["pairs"]
    assert pair["deep_error"]["mean"] == pytest.approx(0.305)
    tight = pair["comparison"]["p_one_sided"]

    # within the spread: the same gap with seeds far apart is not called established
    shutil.rmtree(root)
    for name, error in train_errors.items():
        for seed, jitter in ((0, 0.0), (1, 0.3)):
            fabricate(
                run_dir(sweep, name),
                root / f"{name}-s{seed}",
                seed=seed,
                final={"train_error": error + jitter},
            )
    (verdict,) = build_report(root, tmp_path / "report2")["verdict"]
    assert "not established" in verdict["degradation"]
    assert verdict["skips"] == (
        "yes, but not established (1 of 1 degraded depth pairs: 1 suggestive)"
    )
    assert verdict["series"][0]["pairs"][0]["comparison"]["p_one_sided"] > 10 * tight


def test_cifar10_runs_are_compared_with_the_paper(sweep, tmp_path):
    root = tmp_path / "runs"
    fabricate(
        run_dir(sweep, "resnet-20"),
        root / "r20",
        name="resnet-20",
        dataset="cifar10",
        final={"test_error": 0.09},
    )
    build_report(root, tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    (row,) = report["paper_comparison"]
    assert row["published"]["He et al. 2015, Table 6"] == 8.75
    assert row["difference"]["He et al. 2015, Table 6"] == pytest.approx(0.25)
    assert row["difference"]["nabla0001/resnet"] == pytest.approx(0.49)
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| resnet-20 | 9.00 | 1 | 8.75 | +0.25 | 8.51 ± 0.22 (n=5) | +0.49 |" in md
    assert "picks its best checkpoint on the test set" in md


def test_bad_path_is_one_line_error_and_writes_nothing(tmp_path, capsys):
    result = report_cli(str(tmp_path / "missing"), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr
        == f"error: {tmp_path / 'missing'}: no such folder; give a run, sweep or output folder\n"
    )
    assert not (tmp_path / "out").exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        (str(empty),): "no run folders found",
        (str(empty), "--dry-run"): "add --wandb ENTITY/PROJECT",
        (str(empty), "--wandb", "just-a-project"): "give it as ENTITY/PROJECT",
    }
    for args, message in cases.items():
        with pytest.raises(SystemExit) as exit_:
            report_main([*args, "--out", str(tmp_path / "out")])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
        assert not (tmp_path / "out").exists()


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.headings, self._heading = [], set(), False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))
        self._heading = tag in ("h1", "h2")

    def handle_data(self, data):
        if self._heading:
            self.headings.add(data.strip())

    def handle_endtag(self, tag):
        self._heading = False


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run(
        [str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium (Debian package 'chromium')")
def test_report_renders_in_headless_chromium(sweep, tmp_path):
    out = tmp_path / "report"
    build_report(sweep, out)
    url = (out / "report.html").resolve().as_uri()
    dom = chromium("--dump-dom", url, profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = _Page()
    page.feed(dom.stdout)
    assert HEADINGS <= page.headings
    assert len(page.images) == len(list(out.glob("*.png"))) >= 4
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png.startswith(PNG_MAGIC)
        assert matplotlib.image.imread(io.BytesIO(png)).shape[0] > 100  # decodes, not empty

    screenshot = REPO / "test-artifacts" / "report.png"
    screenshot.parent.mkdir(exist_ok=True)
    screenshot.unlink(missing_ok=True)
    shot = chromium(
        f"--screenshot={screenshot}", "--window-size=1280,2000", url, profile=tmp_path / "profile"
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    pixels = matplotlib.image.imread(screenshot)
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels.std() > 0.05  # text and figures, not a blank page
