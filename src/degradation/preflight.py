"""Check a command line before Hydra runs it: one line per mistake, nothing written.

Every value of every swept key is composed with the others at their first value, so
`-m depth=20,21` fails before the first job starts rather than in the middle of a sweep.
Dataset files must be readable and `output_root` writable (checked without creating it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from degradation.errors import UserError

CONFIG_MODULE = "degradation.conf"
# Hydra's own flags: those that take a value, and those after which nothing is trained.
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-name", "-cn"}
FLAGS_WITHOUT_CHECK = {
    "--help", "-h", "--hydra-help", "--version", "--info", "-i", "--shell-completion", "-sc",
    "--config-path", "-cp", "--config-dir", "-cd", "--experimental-rerun",
}  # fmt: skip


def split_command_line(argv: list[str]) -> tuple[list[str], str, bool]:
    """(overrides, config name, whether to check) from the arguments after the program."""
    overrides, config_name, i = [], "config", 0
    while i < len(argv):
        arg = argv[i]
        flag = arg.split("=", 1)[0]
        if flag in FLAGS_WITHOUT_CHECK:
            return [], config_name, False
        if flag in FLAGS_WITH_VALUE:
            value = (
                arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            )
            if flag in ("--config-name", "-cn"):
                config_name = value
            i += 1 if "=" in arg else 2
            continue
        if not arg.startswith("-"):
            overrides.append(arg)
        i += 1
    return overrides, config_name, True


def job_variants(overrides: list[str]) -> list[list[str]]:
    """Override lists covering every value of every sweep, each once (not the full product)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed: list[str] = []
    sweeps: list[tuple[str, list[str]]] = []
    for override, text in zip(parsed, overrides, strict=True):
        key = override.get_key_element()
        if key.lstrip("+~").startswith("hydra"):
            continue  # Hydra's own settings (launcher, sweep dirs): not part of the run config
        if override.is_sweep_override():
            try:
                values = list(override.sweep_string_iterator())
            except Exception:  # interval sweeps (optimisers) have no finite list of values
                continue
            sweeps.append((key, values))
        else:
            fixed.append(text)
    variants = [fixed + [f"{k}={vals[0]}" for k, vals in sweeps]]
    for i, (key, values) in enumerate(sweeps):
        others = [f"{k}={vals[0]}" for j, (k, vals) in enumerate(sweeps) if j != i]
        variants += [fixed + others + [f"{key}={v}"] for v in values[1:]]
    return variants


def _first_line(err: BaseException | None) -> str:
    return str(err).strip().splitlines()[0] if err is not None and str(err).strip() else ""


def _explain(err: Exception, overrides: list[str], config_name: str) -> str:
    if isinstance(err, MissingConfigException):
        group = getattr(err, "missing_cfg_file", "") or ""
        options = sorted(getattr(err, "options", None) or [])
        bad = next((o for o in overrides if group and o.startswith(group.split("/")[0] + "=")), "")
        if options:
            return f"{bad or group}: no such option; choose one of: {', '.join(options)}"
        return _first_line(err)
    cause = err.__cause__
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        key = getattr(cause, "full_key", "") or ""
        parent, _, leaf = key.rpartition(".")
        valid = _valid_keys(config_name, parent)
        bad = next((o for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), key)
        choices = f"; valid keys{' under ' + parent if parent else ''}: {', '.join(valid)}"
        return f"{bad}: unknown key '{leaf}'{choices if valid else ''}"
    head = _first_line(err).removeprefix("Error merging override ")
    detail = _first_line(cause)
    if "is not a valid bool" in detail:
        detail += "; choose true or false"
    return f"{head}: {detail}" if detail else head


def _valid_keys(config_name: str, parent: str) -> list[str]:
    try:
        cfg = compose(config_name)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return sorted(node.keys()) if isinstance(node, DictConfig) else []
    except Exception:
        return []


def compose_checked(overrides: list[str], config_name: str = "config") -> DictConfig:
    """Compose one job's config; Hydra's multi-line errors become one-line UserErrors."""
    try:
        return compose(config_name, overrides=overrides)
    except (ConfigCompositionException, MissingConfigException, OverrideParseException) as err:
        raise UserError(_explain(err, overrides, config_name)) from None


def check_command_line(argv: list[str]) -> list[DictConfig]:
    """Raises UserError on the first bad value; returns the composed configs it checked."""
    from degradation.config import validate
    from degradation.data import load_images

    overrides, config_name, check = split_command_line(argv)
    if not check:
        return []
    try:
        variants = job_variants(overrides)
    except OverrideParseException as err:
        raise UserError(_first_line(err)) from None
    configs = []
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        for variant in variants:
            cfg = compose_checked(variant, config_name)
            validate(cfg)
            configs.append(cfg)
    if any(arg.split("=", 1)[0] in ("--cfg", "-c") for arg in argv):
        return configs  # only printing the config: no dataset is needed (or downloaded)
    for root in sorted({cfg.output_root for cfg in configs}):
        check_output_root(root)
    checked_data: set[Any] = set()
    for cfg in configs:  # dataset files present and readable, once per dataset
        key = (cfg.data.name, cfg.data.root)
        if key not in checked_data and cfg.data.name != "synthetic":
            load_images(cfg.data)
            checked_data.add(key)
    return configs


def check_output_root(root: str) -> None:
    """UserError unless run folders can be made under `root`: its nearest existing folder
    must take a new file (probed with an unnamed temporary file; nothing is left behind)."""
    existing = Path(root).expanduser().absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(
            f"output_root={root}: {existing} is a file, not a folder; "
            "choose a folder you can write to"
        )
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as err:
        raise UserError(
            f"output_root={root}: cannot create files in {existing} ({err.strerror}); "
            "choose a folder you can write to"
        ) from None
