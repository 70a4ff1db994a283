"""One vocabulary (vocabulary.py): the config's choices, the models' valid choices and the
report's words come from one place, and the report groups runs by their fields, not names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from degradation import config, models, vocabulary
from degradation.config import variant_name
from degradation.models import build
from degradation.report.__main__ import main as report_main
from degradation.report.runs import find_runs, group_runs
from degradation.vocabulary import Block, Family, HeadInit, Shortcut, Skip

SRC = Path(__file__).resolve().parents[1] / "src" / "degradation"


@pytest.mark.parametrize(
    "choice,valid",
    [
        (Skip, models.SKIPS),
        (Shortcut, models.SHORTCUTS),
        (Family, models.FAMILIES),
        (Block, models.BLOCKS),
        (HeadInit, build.HEAD_INITS),
    ],
)
def test_the_config_the_models_and_the_vocabulary_name_the_same_choices_in_order(choice, valid):
    assert getattr(config, choice.__name__) is choice  # `from degradation.config import Skip`
    assert valid == vocabulary.values(choice) == tuple(m.value for m in choice)
    assert [vocabulary.order(choice, m) for m in choice] == list(range(len(choice)))
    assert vocabulary.order(choice, "from_another_version") == len(choice)  # goes last


def test_every_skip_has_a_label_and_a_title_in_the_enums_order():
    assert list(vocabulary.SKIP_LABELS) == list(Skip) == list(vocabulary.SKIP_TITLES)
    assert list(vocabulary.SKIP_LABELS.values()) == ["plain", "resnet", "concatnet"]
    assert list(vocabulary.SKIP_TITLES.values()) == ["plain", "residual", "concatenation"]


# A second copy of the skip words' tables: a skip's variant-name word, the old figure title, an
# order or title table, or a dict literal keyed by skip values ({"none": ..., "add": ...})
SECOND_COPY = re.compile(
    r"\"concatnet\"|\"plain \(no skip\)\"|SKIP_(ORDER|TITLES|LABELS) = |"
    r"[{,]\s*[\"'](none|add|concat)[\"']\s*:"
)


def test_the_source_tree_holds_the_skip_words_once():
    found = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "vocabulary.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SECOND_COPY.search(line)
    ]
    assert found == []
    assert SECOND_COPY.search((SRC / "vocabulary.py").read_text())  # the pattern does match


def test_variant_names_come_from_the_fields():
    class Cfg:
        skip, depth, family, block, shortcut = "add", 56, "cifar", None, "zero_pad"
        preact, width = False, 1

    def name(**fields) -> str:
        cfg = Cfg()
        cfg.__dict__.update(fields)
        return variant_name(cfg)

    assert name(skip=Skip.none, shortcut="projection") == "plain-56"
    assert name(shortcut=Shortcut.projection, width=2) == "resnet-56 projection x2"
    assert name(skip="concat", block="bottleneck", preact=True) == "concatnet-56 bottleneck preact"
    assert name(family="keras", depth=50, shortcut="all_projection") == "resnet-50 keras"
    # an imagenet net's block is its depth's: named the same whether given or not
    assert name(family="imagenet", depth=50, block="bottleneck") == "resnet-50 imagenet"
    assert name(family="imagenet", depth=50, block=None) == "resnet-50 imagenet"


def write_run(root: Path, folder: str, name: str, seed: int, error: float, **fields) -> None:
    summary = {"name": name, "dataset": "synthetic", "seed": seed, "status": "completed"}
    summary.update(steps=10, final={"train_error": error, "test_error": error}, **fields)
    (root / folder).mkdir(parents=True)
    (root / folder / "summary.json").write_text(json.dumps(summary))
    (root / folder / "metrics.csv").write_text(f"step,train/error\n10,{error}\n")
    (root / folder / "layer_responses.json").write_text(json.dumps({"std": [1.0]}))


def test_the_report_groups_runs_by_their_fields_whatever_their_names_say(tmp_path):
    """A run renamed by hand is still counted with its twins, and a summary whose name lacks
    its shortcut is not averaged with the zero_pad net: both by summary.json's fields."""
    root = tmp_path / "runs"
    plain = dict(depth=20, skip="none", shortcut="not_applicable", family="cifar", block="basic")
    write_run(root, "p0", "plain-20", 0, 0.30, **plain)
    write_run(root, "p1", "plain-20", 1, 0.32, **plain)
    write_run(root, "p2", "my favourite run (edited)", 2, 0.34, **plain)
    resnet = dict(depth=20, skip="add", family="cifar", block="basic")
    write_run(root, "r0", "resnet-20", 0, 0.20, shortcut="zero_pad", **resnet)
    write_run(root, "r1", "resnet-20", 0, 0.25, shortcut="projection", **resnet)

    variants = group_runs(find_runs(root))
    assert [(v.label, len(v.usable)) for v in variants] == [
        ("plain-20", 3),
        ("resnet-20", 1),
        ("resnet-20 projection", 1),
    ]
    report_main([str(root), "--out", str(tmp_path / "report")])
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    rows = {v["variant"]: (v["n"], v["seeds"]) for v in report["variants"]}
    assert rows == {
        "plain-20": (3, [0, 1, 2]),
        "resnet-20": (1, [0]),
        "resnet-20 projection": (1, [0]),
    }
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "my favourite run" not in markdown
