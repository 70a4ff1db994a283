"""The run spec: the composed config parsed once, below the entry point a typed, frozen spec."""

from __future__ import annotations

import ast
import dataclasses
from enum import Enum
from pathlib import Path

import pytest
from omegaconf import DictConfig, ListConfig

from degradation import preflight
from degradation.preflight import parse
from degradation.rundir import config_hash
from degradation.spec import RunSpec

SRC = Path(__file__).resolve().parents[1] / "src" / "degradation"

# The modules that may see an OmegaConf config, each for its reason; every other module below
# run.py takes the spec (or its parts).
OMEGACONF_ALLOWED = {
    "run.py": "the entry point: Hydra hands it the composed config",
    "spec.py": "the parser",
    "preflight.py": "the parser's validation: composes command lines, checks every rule",
    "config.py": "the schema the parser reads (II interpolations)",
    "resolvers.py": "the schema's interpolation resolvers",
    "rundir.py": "the run-folder writer and reader (.hydra/config.yaml, the config hash)",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_below_run_py_but_the_parser_and_writer_imports_omegaconf():
    users = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "omegaconf" in _imports(p))
    assert users and set(users) <= set(OMEGACONF_ALLOWED), users


def test_no_enum_unwrapping_outside_the_parser():
    import degradation.choices

    assert not hasattr(degradation.choices, "value")
    for path in SRC.rglob("*.py"):
        assert "choices import value" not in path.read_text(), path


def _assert_plain(x, where="spec"):
    assert not isinstance(x, Enum | DictConfig | ListConfig), where
    if dataclasses.is_dataclass(x):
        for f in dataclasses.fields(x):
            _assert_plain(getattr(x, f.name), f"{where}.{f.name}")
    elif isinstance(x, dict | tuple | list):
        items = x.items() if isinstance(x, dict) else enumerate(x)
        for k, v in items:
            _assert_plain(v, f"{where}[{k!r}]")


def test_the_spec_is_frozen_plain_and_carries_the_hash(compose_cfg):
    cfg = compose_cfg("skip=add", "shortcut=projection", "logger=[csv,tensorboard]")
    spec = parse(cfg)
    assert isinstance(spec, RunSpec)
    _assert_plain(spec)
    assert spec.model.skip == "add" and type(spec.model.skip) is str
    assert spec.model.shortcut == "projection" and spec.model.name == "resnet-8 projection"
    assert spec.records.loggers == ("csv", "tensorboard")
    assert spec.optim.milestones == (15,)
    assert spec.config_hash == config_hash(cfg)
    assert spec.speed is not None and spec.speed.precision in ("32-true", "bf16-mixed")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.model.depth = 20
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 1


def test_a_plain_net_carries_no_shortcut(compose_cfg):
    spec = parse(compose_cfg("skip=none", "shortcut=projection", "zero_init_residual=true"))
    assert spec.model.shortcut is None and not spec.model.zero_init_residual
    assert spec.model.shortcut_label == "not_applicable"
    assert "shortcut" not in spec.model.build_kwargs(num_classes=10, in_channels=3)


def test_a_job_is_validated_once(compose_cfg, monkeypatch):
    """The command line's preflight validates each job; the job's parse does not again."""
    checked = []
    monkeypatch.setattr(preflight, "MACHINE_CHECKS", (lambda cfg: checked.append(cfg.depth),))
    monkeypatch.setattr(preflight, "_validated", set())
    (cfg,) = preflight.check_command_line(["experiment=smoke", "depth=14", "seed=7"])
    assert checked == [14]
    parse(compose_cfg("depth=14", "seed=7"))  # composed anew, as Hydra composes the job
    assert checked == [14]
    parse(compose_cfg("depth=14", "seed=8"))  # another job: validated
    assert checked == [14, 14]
