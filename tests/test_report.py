"""The reproducibility report: files, table numbers, excluded runs, seeds, verdict, browser.

One real smoke sweep (module fixture) provides run folders; variations of it (more seeds, a
diverged and a failed run, a CIFAR-10 run) are fabricated by copying a run folder and editing
its summary.json and metrics.csv, which is what such runs leave behind.
"""

from __future__ import annotations

import base64
import csv
import importlib.util
import io
import json
import math
import re
import shutil
import statistics
import subprocess
from functools import partial
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import pytest
import torch
import yaml
from conftest import REPO, run_cli, run_tool, summaries

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


report_cli = partial(run_tool, "report")  # python -m degradation.report


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
    """plain-20 above plain-8; resnet-20 below plain-20 and resnet-8 (two seeds a side: each
    labelled by its test, underpowered)."""
    root = tmp_path / "runs"
    train_errors = {"plain-8": 0.20, "plain-20": 0.30, "resnet-8": 0.18, "resnet-20": 0.15}
    for name, error in train_errors.items():
        for seed, jitter in ((0, 0.0), (1, 0.01)):
            src = run_dir(sweep, name)
            fabricate(
                src, root / f"{name}-s{seed}", seed=seed, final={"train_error": error + jitter}
            )
    (verdict,) = build_report(root, tmp_path / "report")["verdict"]
    assert verdict["degradation"] == "yes, established (1 of 1 depth pairs; 1 underpowered)"
    assert verdict["skips"].startswith("removed (1 of 1 degraded depth pairs")
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
    assert verdict["skips"].startswith("neither removal nor reduction shown")
    assert verdict["series"][0]["pairs"][0]["comparison"]["p_one_sided"] > 10 * tight


def test_each_run_records_the_verdict_settings_it_was_run_with(sweep):
    """The margin of 'removed' is fixed before the results exist: in each run's config."""
    config = yaml.safe_load((run_dir(sweep, "plain-8") / ".hydra" / "config.yaml").read_text())
    assert config["verdict"] == {"margin_pp": 2.0, "alpha": 0.05}


def test_the_same_run_reached_twice_counts_once(sweep, tmp_path):
    """Issue 24 row 4: seed 0 of plain-8 run again with an explicit optim.momentum=0.9 (the
    default) lands in another folder with the same config hash; the report counts it once."""
    root = tmp_path / "outputs"
    shutil.copytree(sweep, root)
    args = [
        "depth=8",
        "skip=none",
        "experiment=smoke",
        "trainer.max_steps=10",
        "optim.momentum=0.9",
    ]
    result = run_cli(*args, f"output_root={root}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    again = [p for p, s in summaries(root).items() if s["name"] == "plain-8"]
    assert len(again) == 2 and len({summaries(root)[p]["config_hash"] for p in again}) == 1
    build_report(root, tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert (variant(report, "plain-8")["n"], variant(report, "plain-8")["seeds"]) == (1, [0])
    (duplicate,) = report["duplicates"]
    assert duplicate["same_run"] is True and duplicate["seed"] == 0
    assert (
        "1 duplicate run folder(s) counted once" in (tmp_path / "report" / "report.md").read_text()
    )


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


# --- run folders that cannot be read (issue 14) ----------------------------------------------

NOT_JSON = '{"name": "plain-8", '  # a write torn by a crash (before atomic writes)


def damaged_tree(sweep: Path, root: Path) -> None:
    """Two good runs (plain-8, resnet-8), two partly damaged ones (plain-20: layer responses
    and gradient norms; resnet-20: metrics, lesion and landscape) and six folders that cannot
    be read (summary.json: not JSON, not an object, keys missing, a wrong type, a wrong type in
    `final`; .hydra/config.yaml not YAML)."""
    for name in ("plain-8", "resnet-8", "plain-20", "resnet-20"):
        shutil.copytree(run_dir(sweep, name), root / name)
    (root / "plain-20" / LAYER_RESPONSES).write_text('{"std": "high"}')
    (root / "plain-20" / "grad_norms.csv").write_text("step,layer\n2,0.5\n4,not-a-number\n")
    (root / "resnet-20" / "metrics.csv").write_bytes(b"\xff\xfe\x00 binary\n")
    (root / "resnet-20" / "analysis").mkdir()
    lesion = {"baseline": {"test_error": 0.5}, "blocks": [{"block": "b", "deleted": "yes"}]}
    (root / "resnet-20" / "analysis" / "lesion.json").write_text(json.dumps(lesion))
    (root / "resnet-20" / "analysis" / "landscape.npz").write_bytes(b"PK\x03\x04 torn")
    good = json.loads((root / "plain-8" / "summary.json").read_text())
    summaries_of = {
        "not_json": NOT_JSON,
        "not_object": "[1, 2]",
        "missing_keys": json.dumps({"name": "plain-8", "status": "completed"}),
        "wrong_type": json.dumps({**good, "depth": "eight"}),
        "wrong_final": json.dumps({**good, "final": {**good["final"], "test_error": "low"}}),
    }
    for folder, text in summaries_of.items():
        shutil.copytree(root / "plain-8", root / "bad" / folder)
        (root / "bad" / folder / "summary.json").write_text(text)
    shutil.copytree(root / "plain-8", root / "bad" / "not_yaml")
    (root / "bad" / "not_yaml" / ".hydra" / "config.yaml").write_text("depth: [8\n")


UNREADABLE = {  # (run folder, file) -> (reason, left out)
    ("bad/missing_keys", "summary.json"): ("'dataset', 'depth', 'skip', 'seed' missing", True),
    ("bad/not_json", "summary.json"): (
        "not valid JSON (Expecting property name enclosed in double quotes at line 1 column 21)",
        True,
    ),
    ("bad/not_object", "summary.json"): ("the file holds [1, 2], not a JSON object", True),
    ("bad/not_yaml", ".hydra/config.yaml"): (
        "not readable as YAML (expected ',' or ']', but got '<stream end>' at line 2)",
        True,
    ),
    ("bad/wrong_final", "summary.json"): ("'final.test_error' is \"low\", not a number", True),
    ("bad/wrong_type", "summary.json"): ("'depth' is \"eight\", not an integer", True),
    ("plain-20", "grad_norms.csv"): ("line 3: 'layer' is \"not-a-number\", not a number", False),
    ("plain-20", "layer_responses.json"): (
        "'std' is \"high\", not a list of numbers (or null)",
        False,
    ),
    ("resnet-20", "analysis/lesion.json"): (
        "'blocks.0.deleted' is \"yes\", not true or false",
        False,
    ),
    ("resnet-20", "metrics.csv"): (
        "cannot be read as CSV text ('utf-8' codec can't decode byte 0xff in position 0: "
        "invalid start byte)",
        False,
    ),
}


def test_report_lists_unreadable_runs_and_is_built_from_the_rest(sweep, tmp_path, capsys):
    root = tmp_path / "runs"
    damaged_tree(sweep, root)
    with pytest.raises(SystemExit) as exit_:
        report_main([str(root), "--out", str(tmp_path / "report")])
    assert exit_.value.code == 1  # written, but not from everything
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    found = {(u["run"], u["file"]): (u["reason"], u["left_out"]) for u in report["unreadable"]}
    landscape = found.pop(("resnet-20", "analysis/landscape.npz"))
    assert landscape[0].startswith("not a readable .npz file (") and not landscape[1]
    assert found == UNREADABLE

    # every run that could be read is in the numbers, with its own values
    assert {v["variant"] for v in report["variants"]} == {
        "plain-8", "resnet-8", "plain-20", "resnet-20"
    }  # fmt: skip
    for name in ("plain-8", "resnet-8", "plain-20", "resnet-20"):
        summary = json.loads((root / name / "summary.json").read_text())
        row = variant(report, name)
        assert (row["n"], row["final_test_error"]["mean"]) == (1, summary["final"]["test_error"])
    # the partly damaged runs lack only the part that could not be read
    figures = json.loads((tmp_path / "report" / "figures.json").read_text())
    (fig6,) = [f for f in figures.values() if f["kind"] == "fig6"]
    curves = {(s["variant"], s["metric"]): s["x"] for p in fig6["panels"] for s in p["series"]}
    assert curves[("resnet-20", "train/error")] == []
    assert curves[("plain-20", "train/error")] and curves[("resnet-8", "val/error")]
    (fig7,) = [f for f in figures.values() if f["kind"] == "fig7"]
    shown = {s["variant"] for s in fig7["panels"][0]["series"]}
    assert shown == {"plain-8", "resnet-8", "resnet-20"}

    md = (tmp_path / "report" / "report.md").read_text()
    section = md.split("## Runs that could not be read")[1].split("\n## ")[0]
    for run, file in UNREADABLE:
        assert f"| {run} | {file} |" in section.replace("\\_", "_")
    err = capsys.readouterr().err
    assert err.startswith("note: 11 file(s) of run folders could not be read")
    assert f"{root / 'bad' / 'not_json' / 'summary.json'}: not valid JSON" in err


INJECTED = "<script>alert(1)</script> | col | *x* [a](javascript:x)\nnext line"
FOLDER = "c *x* | col | [a](javascript:x) <img src=x onerror=alert(1)>"  # no '/' in a name
HTML_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "ul", "li"}
HTML_TAGS |= {"table", "caption", "thead", "tbody", "tr", "th", "td"}
HTML_TAGS |= {"figure", "img", "figcaption"}


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def injected_tree(sweep: Path, root: Path) -> None:
    """Run folders a colleague might send: the text of a name, dataset, error, command, commit,
    config value and folder name is markup (HTML, Markdown tables, emphasis, links, newline)."""
    src = run_dir(sweep, "plain-8")
    for folder in ("a", "b"):  # the same seed twice: the results table adds a note naming it
        fabricate(src, root / folder, name=INJECTED, dataset=INJECTED, command=INJECTED)
    fabricate(
        src, root / FOLDER, name=INJECTED, dataset=INJECTED, status="failed", error=INJECTED,
        git_commit=INJECTED,
    )  # fmt: skip
    config = root / FOLDER / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.1", f"lr: {json.dumps(INJECTED)}"))


def test_text_from_run_folders_is_escaped_in_every_format(sweep, tmp_path):
    from degradation.report.markdown import text as markdown_text

    root = tmp_path / "runs"
    injected_tree(sweep, root)
    build_report(root, tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    unescaped = re.sub(r"\\.", "", md)  # what Markdown reads as markup
    for raw in ("<script>", "<img", "](javascript:", "*x*", "| col |"):
        assert raw not in unescaped
    assert markdown_text(INJECTED) in md  # shown, escaped, on one line
    assert markdown_text(f"[optim.lr={INJECTED}]") in md  # a config value in a label
    assert not any(line.startswith("next line") for line in md.splitlines())
    tables = re.findall(r"(?:^\|.*\n)+", md, flags=re.MULTILINE)
    for table in tables:  # every row has its header's cells: no '|' or newline broke one
        widths = {len(re.findall(r"(?<!\\)\|", row)) for row in table.splitlines()}
        assert len(widths) == 1, table

    page = _Tags()
    page.feed((tmp_path / "report" / "report.html").read_text())
    assert {tag for tag, _ in page.tags} <= HTML_TAGS
    for tag, attrs in page.tags:
        if tag == "img":
            assert set(attrs) == {"alt", "src"} and attrs["src"].startswith("data:image/png;")
    shown = "".join(page.text)
    first_line = INJECTED.splitlines()[0]
    assert f"Fig. 6 style ({first_line}" in shown  # in a figure caption, as text
    note = "Each seed counted once; duplicate run folders left out (see 'Runs not in the means'): "
    assert f"{note}{first_line}" in shown  # a table note
    assert FOLDER in shown

    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["excluded"][0]["reason"] == first_line
    assert {v["name"] for v in report["variants"]} == {INJECTED}


def test_analyze_skips_a_run_it_cannot_load_and_says_so(sweep, tmp_path, capsys):
    from degradation.analyze.__main__ import main as analyze_main

    root = tmp_path / "runs"
    for name in ("plain-8", "resnet-8"):
        shutil.copytree(run_dir(sweep, name), root / name)
    (root / "plain-8" / LAYER_RESPONSES).unlink()
    torn = root / "resnet-8" / "checkpoints" / "last.ckpt"
    torn.write_bytes(b"PK\x03\x04 torn by a crash")
    responses_before = (root / "resnet-8" / LAYER_RESPONSES).read_bytes()
    with pytest.raises(SystemExit) as exit_:
        analyze_main(["responses", str(root), "--device", "cpu"])
    assert exit_.value.code == 1
    assert (root / "plain-8" / LAYER_RESPONSES).is_file()  # the loadable run was analysed
    assert (root / "resnet-8" / LAYER_RESPONSES).read_bytes() == responses_before
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"skipped: checkpoint {torn} is corrupted")
    assert err[1] == "note: 1 of 2 run folders skipped"

    shutil.copy(torn, root / "plain-8" / "checkpoints" / "last.ckpt")
    with pytest.raises(SystemExit) as exit_:
        analyze_main(["responses", str(root), "--device", "cpu"])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last == "error: none of the 2 run folders could be analysed (see above)"


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("wandb", "wandb_workspaces")),
    reason="needs the optional extra degradation[wandb]",
)
def test_wandb_report_leaves_out_unreadable_runs_and_escapes_names(tmp_path, capsys):
    from degradation.report.wandb import build_report as build_wandb_report

    config = "name: 'a|b`c'\ndepth: 8\nskip: none\nlogger: {kind: wandb, wandb: {mode: offline}}\n"
    summary = {"name": "plain-8", "dataset": "synthetic", "depth": 8, "skip": "none"}
    summary.update(seed=0, status="completed", final={"train_error": 0.25})
    for folder, text in (("good", json.dumps(summary)), ("bad", NOT_JSON)):
        (tmp_path / "runs" / folder / ".hydra").mkdir(parents=True)
        (tmp_path / "runs" / folder / ".hydra" / "config.yaml").write_text(config)
        (tmp_path / "runs" / folder / "summary.json").write_text(text)
    spec = build_wandb_report(tmp_path / "runs", "team/proj", dry_run_path=tmp_path / "w.json")
    err = capsys.readouterr().err
    bad = tmp_path / "runs" / "bad" / "summary.json"
    assert f"note: left out of the W&B report: {bad}: not valid JSON" in err
    markdown = "\n".join(b["content"] for b in spec["spec"]["blocks"] if "content" in b)
    (row,) = [line for line in markdown.splitlines() if "plain-8" in line]
    assert row.startswith("| `` a\\|b`c/plain-8 #") and row.count("|") - row.count("\\|") == 7
    assert "| 1 | 25.00 |" in row


def odd_run(root: Path, name: str, depth: int, skip: str, seed: int) -> None:
    """A run folder whose every file is readable but whose numbers are not: infinities, NaN,
    values near the float limit, negative and zero gradient norms, a repeated step."""
    import numpy as np

    folder = root / f"{name},seed={seed}"
    (folder / "analysis").mkdir(parents=True)
    summary = {"name": name, "dataset": "synthetic", "seed": seed, "depth": depth, "skip": skip}
    summary.update(status="completed", steps=10, wall_time_s=1e308, throughput_img_s=-5)
    summary.update(final={"train_error": [1e308, 1.7e308][seed], "test_error": math.nan})
    summary.update(best_val={"test_error": math.inf}, environment={"packages": ["torch 2"]})
    (folder / "summary.json").write_text(json.dumps(summary))
    metrics = "step,train/error,val/error\n0,inf,nan\n5,1e308,-1e308\n5,0.5,\n10,nan,nan\n"
    (folder / "metrics.csv").write_text(metrics)
    (folder / LAYER_RESPONSES).write_text(json.dumps({"std": [None, math.inf, 0, -1e308]}))
    grads = "step,rms/stem.conv,rel/stem.conv,rms/stages.0,rel/stages.0\n"
    grads += "2,inf,0,nan,-1\n2,0,nan,inf,1e308\n4,-0.0,1e-320,0,inf\n"
    (folder / "grad_norms.csv").write_text(grads)
    blocks = [
        {"block": "a", "deleted": True, "test_error": math.inf},
        {"block": "b", "deleted": False},
    ]
    lesion = {"baseline": {"test_error": None}, "blocks": blocks}
    (folder / "analysis" / "lesion.json").write_text(json.dumps(lesion))
    axis = np.array([-1.0, 0.0, 1.0])
    np.savez(
        folder / "analysis" / "landscape.npz", alphas=axis, betas=axis, depth=np.array(depth),
        loss_1d=np.array([np.nan, np.inf, -1.0]), loss_2d=np.full((3, 3), np.inf),
    )  # fmt: skip


def test_figures_are_drawn_whatever_numbers_the_run_folders_hold(tmp_path):
    for seed in (0, 1):
        for name, depth, skip in (("plain-8", 8, "none"), ("plain-20", 20, "none"),
                                  ("resnet-8", 8, "add")):  # fmt: skip
            odd_run(tmp_path / "runs", name, depth, skip, seed)
    result = build_report(tmp_path / "runs", tmp_path / "report")
    assert result["unreadable"] == []
    drawn = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert drawn == [
        "analysis_gradient_flow.png", "analysis_gradient_profile.png", "analysis_landscape.png",
        "analysis_lesion.png", "degradation_synthetic.png", "fig1_synthetic.png",
        "fig6_synthetic.png", "fig7_synthetic.png",
    ]  # fmt: skip
    for png in drawn:
        assert (tmp_path / "report" / png).read_bytes().startswith(PNG_MAGIC)
    text = (tmp_path / "report" / "report.json").read_text()
    report = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    row = variant(report, "plain-8")
    assert row["final_train_error"]["mean"] == pytest.approx(1.35e308)  # no overflow
    assert row["final_train_error"]["n"] == 2


MATH = "$\\frac{$"  # mathtext that matplotlib cannot parse: a plain label must not reach it


def test_a_dollar_in_a_config_value_is_drawn_as_text(sweep, tmp_path, capsys):
    """A config value is shown in labels (recipes that differ); a `$` in it once made
    matplotlib's math parser end the report."""
    root = tmp_path / "runs"
    for name in ("plain-8", "plain-20", "resnet-8"):
        shutil.copytree(run_dir(sweep, name), root / name)
    config = root / "plain-8" / ".hydra" / "config.yaml"
    tree = yaml.safe_load(config.read_text())
    tree["data"]["val_size"] = MATH
    config.write_text(yaml.safe_dump(tree))
    report_main([str(root), "--out", str(tmp_path / "report")])  # no SystemExit: exit 0
    assert "error" not in capsys.readouterr().err
    figures = json.loads((tmp_path / "report" / "figures.json").read_text())
    labels = {s["variant"] for f in figures.values() for p in f["panels"] for s in p["series"]}
    assert f"plain-8 [data.val_size={MATH}]" in labels
    for figure in figures.values():
        png = tmp_path / "report" / figure["file"]
        assert png.read_bytes().startswith(PNG_MAGIC), figure["file"]


def test_a_completed_run_without_metrics_is_listed_and_its_curves_not_in_the_legend(
    sweep, tmp_path, capsys, monkeypatch
):
    from degradation.report import figures as report_figures

    root = tmp_path / "runs"
    for name in ("plain-8", "resnet-8", "resnet-20"):
        shutil.copytree(run_dir(sweep, name), root / name)
    (root / "resnet-8" / "metrics.csv").unlink()
    legends = {}
    save = report_figures.save_figure

    def keep_legends(fig, path):
        legends[Path(path).name] = [
            t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()
        ]
        return save(fig, path)

    monkeypatch.setattr(report_figures, "save_figure", keep_legends)
    with pytest.raises(SystemExit) as exit_:
        report_main([str(root), "--out", str(tmp_path / "report")])
    assert exit_.value.code == 1  # written, but not from every file
    err = capsys.readouterr().err
    assert f"{root / 'resnet-8' / 'metrics.csv'}: no such file; a completed run writes it" in err

    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["unreadable"] == [
        {
            "run": "resnet-8",
            "file": "metrics.csv",
            "reason": "no such file; a completed run writes it",
            "left_out": False,
            "effect": "run kept, without its training curves",
        }
    ]
    md = (tmp_path / "report" / "report.md").read_text()
    section = md.split("## Runs that could not be read")[1].split("\n## ")[0]
    assert "None: every file" not in section and "| resnet-8 | metrics.csv |" in section

    (fig6,) = [name for name in legends if name.startswith("fig6_")]
    shown = legends[fig6]
    assert "resnet-8 train" not in shown and "resnet-8 val" not in shown  # nothing drawn
    assert {"resnet-8 test (final)", "resnet-20 train", "resnet-20 val"} <= set(shown)
    figures = json.loads((tmp_path / "report" / "figures.json").read_text())
    (caption,) = [f["caption"] for f in figures.values() if f["kind"] == "fig6"]
    assert "No curves for resnet-8: no readable metrics.csv" in caption


def plain_run(root: Path, name: str, depth: int, skip: str, seed: int, stds: list[float]):
    """A readable run folder with ordinary numbers, its layer responses and gradient norms."""
    folder = root / f"{name},seed={seed}"
    folder.mkdir(parents=True)
    summary = {"name": name, "dataset": "synthetic", "seed": seed, "depth": depth, "skip": skip}
    summary.update(status="completed", steps=10, wall_time_s=1.0, throughput_img_s=100.0)
    error = 0.5 + 0.01 * depth + 0.01 * seed - 0.2 * (skip == "add")
    summary.update(final={"train_error": error, "test_error": error}, best_val=None)
    (folder / "summary.json").write_text(json.dumps(summary))
    metrics = f"step,train/error,val/error\n5,0.9,0.9\n10,{error},{error}\n"
    (folder / "metrics.csv").write_text(metrics)
    (folder / LAYER_RESPONSES).write_text(json.dumps({"std": stds}))
    grads = "step,rms/stem.conv,rel/stem.conv,rms/stages.0,rel/stages.0\n"
    grads += "2,0.1,0.01,0.2,0.02\n4,0.1,0.01,0.2,0.02\n"
    (folder / "grad_norms.csv").write_text(grads)


def test_figures_a_paper_can_use_and_the_count_the_report_prints(tmp_path, monkeypatch):
    """Every figure (the report's and the analyses') as a PNG of at least 150 dpi and an SVG,
    legends of at least 9 pt, Fig. 7 on a log axis once its stds span over two orders of
    magnitude (a plain-56's explode), and the printed count is the number of files written."""
    from PIL import Image

    from degradation.report.figure_files import save_figure

    ordinary = [1.0, 1.2, 1.5, 2.0]
    for seed in (0, 1):
        for name, depth, skip in (("plain-8", 8, "none"), ("plain-20", 20, "none"),
                                  ("resnet-8", 8, "add")):  # fmt: skip
            plain_run(tmp_path / "runs", name, depth, skip, seed, ordinary)
            exploded = [1.3e5 * s for s in ordinary] if name == "plain-20" else ordinary
            plain_run(tmp_path / "exploded", name, depth, skip, seed, exploded)
    build_report(tmp_path / "runs", tmp_path / "linear")
    fig7 = json.loads((tmp_path / "linear" / "figures.json").read_text())["fig7_synthetic"]
    assert fig7["yscale"] == "linear"

    legends = []

    def recording(save):
        def save_and_record(fig, path):
            legends.extend(t.get_fontsize() for ax in fig.axes if ax.get_legend()
                           for t in ax.get_legend().get_texts())  # fmt: skip
            return save(fig, path)

        return save_and_record

    for module in ("degradation.report.figures", "degradation.analyze.plots"):
        monkeypatch.setattr(f"{module}.save_figure", recording(save_figure))
    out = tmp_path / "report"
    build_report(tmp_path / "exploded", out)
    fig7 = json.loads((out / "figures.json").read_text())["fig7_synthetic"]
    means = [m for p in fig7["panels"] for s in p["series"] for m in s["mean"]]
    assert max(means) / min(means) > 100 and fig7["yscale"] == "log"
    assert legends and min(legends) >= 9

    result = report_cli(str(tmp_path / "exploded"), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    pngs = sorted(out.glob("*.png"))
    assert {p.name.split("_")[0] for p in pngs} >= {"fig7", "analysis"}
    assert f"({len(pngs)} figures, each as PNG and SVG)" in result.stdout
    assert sorted(out.glob("*.svg")) == [p.with_suffix(".svg") for p in pngs]
    for png in pngs:
        assert png.with_suffix(".svg").read_text().lstrip().startswith("<?xml")
        with Image.open(png) as image:
            assert min(image.info["dpi"]) >= 149.9, png.name
