"""Lightning's and Hydra's private names are used in one module only (degradation.private_api),
which pins the versions; docs/development.md lists every name."""

from __future__ import annotations

import ast
from importlib import metadata
from pathlib import Path

import degradation

SRC = Path(degradation.__file__).parent.parent
ROOT = SRC.parent
HOME = SRC / "degradation" / "private_api.py"
# Private attributes of Lightning objects the package once reached for, and those it still
# overrides in a subclass (allowed only where docs/development.md says)
PACKAGES = ("lightning", "hydra", "hydra_plugins")
ATTRIBUTES = {
    "total_batch_idx": [],  # trainer.global_step is public
    "_experiment": [],  # through private_api.open_tensorboard_writer only
    "_get_file_writer": [],  # through private_api.tensorboard_file_writer only
    "_check_log_dir_exists": [],
    "_configure_launcher": ["degradation/ddp_relaunch.py"],
    "_launcher": ["degradation/ddp_relaunch.py"],
    "_call_children_scripts": ["degradation/ddp_relaunch.py"],
    "_check_can_spawn_children": ["degradation/ddp_relaunch.py"],
}


def sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p != HOME)


def private_imports(tree: ast.AST) -> list[str]:
    """Names imported from Lightning, Hydra or Hydra's plugins that are private (or whose
    module is)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            hidden = any(part.startswith("_") for part in node.module.split("."))
            if top in PACKAGES:
                found += [a.name for a in node.names if hidden or a.name.startswith("_")]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in PACKAGES and any(p.startswith("_") for p in parts):
                    found.append(alias.name)
    return found


def test_no_module_but_private_api_imports_private_lightning_or_hydra_names():
    offenders = {}
    for path in sources():
        names = private_imports(ast.parse(path.read_text()))
        if names:
            offenders[str(path.relative_to(SRC))] = names
    assert offenders == {}


def test_private_attributes_only_where_listed():
    seen: dict[str, list[str]] = {}
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            name = None
            if isinstance(node, ast.Attribute):
                name = node.attr
                if name == "rank" and getattr(node.value, "id", None) == "rank_zero_only":
                    name = "rank_zero_only.rank"
            elif isinstance(node, ast.FunctionDef):
                name = node.name
            if name in ATTRIBUTES or name == "rank_zero_only.rank":
                seen.setdefault(name, [])
                where = str(path.relative_to(SRC))
                if where not in seen[name]:
                    seen[name].append(where)
    assert seen == {k: v for k, v in ATTRIBUTES.items() if v}


def test_the_docs_list_every_private_name_and_the_pins():
    import degradation.private_api as private_api

    docs = (ROOT / "docs" / "development.md").read_text()
    names = [*private_api._LIGHTNING, "BasicSweeper", "rank_zero_only.rank", "_core"]
    names += [k for k, v in ATTRIBUTES.items() if v]
    prefixes = ("", "DDPStrategy.", "_SubprocessScriptLauncher.")
    assert [n for n in names if not any(f"`{p}{n}`" in docs for p in prefixes)] == []
    assert "degradation/private_api.py" in docs or "private_api.py" in docs
    assert private_api.TESTED_LIGHTNING and private_api.TESTED_HYDRA
    import hydra
    import lightning

    assert lightning.__version__.startswith(private_api.TESTED_LIGHTNING)
    assert hydra.__version__.startswith(private_api.TESTED_HYDRA)
    try:  # an optional dependency (the `cluster` extra)
        joblib_launcher = metadata.version("hydra-joblib-launcher")
    except metadata.PackageNotFoundError:
        return
    assert joblib_launcher.startswith(private_api.TESTED_JOBLIB_LAUNCHER)
