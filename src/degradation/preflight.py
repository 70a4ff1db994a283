"""Validation: every value of a command line checked before anything runs, nothing written.

    check_command_line(argv)   # each job of a sweep composed and validated; UserError if not
    validate(cfg)              # one run's config: every field's rule, then the cross-checks
    parse(cfg)                 # validate, then the run's typed spec (spec.py)

Every value of every swept key is composed with the others at their first value, so
`-m depth=20,21` fails before the first job starts rather than in the middle of a sweep.
`validate` walks the schema (`config.RunConfig`) and checks that no key was added or removed,
each field's declared rules and that every float is finite, then what involves several fields
(`check_values`), then what needs torch or Lightning (`check_machine`): the architecture (built
on the meta device), the trainer arguments Lightning would reject, the logger's package. Hydra's
own settings (hydra/launcher=...) are composed with Hydra's config. Dataset files must be
readable and `output_root` writable (checked without creating anything). A command line's jobs
get the cheap checks first, so most mistakes are found before torch is imported. A mistake is a
one-line UserError naming the value and the valid choices.

Over 300 lines: the one home of validation, from Hydra's parse errors to Lightning's arguments.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import tempfile
from pathlib import Path
from shutil import which
from typing import TYPE_CHECKING, Any

from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from degradation.config import (
    FINITE,
    LIGHTNING_DEFAULT_TRAINER_KEYS,
    MANAGED_TRAINER_ARGS,
    RULES,
    RunConfig,
    logger_kinds,
)
from degradation.errors import UserError, first_line

if TYPE_CHECKING:
    from degradation.spec import RunSpec

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
    return first_line(err) if err is not None and str(err).strip() else ""


def _explain(err: Exception, overrides: list[str], config_name: str) -> str:
    if isinstance(err, MissingConfigException):
        group = getattr(err, "missing_cfg_file", "") or ""
        options = sorted(getattr(err, "options", None) or _group_options(group))
        bad = next((o for o in overrides if _sets_group(o, group)), "")
        if options:
            return f"{bad or group}: no such option; choose one of: {', '.join(options)}"
        return _first_line(err)
    cause = err.__cause__
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        key = getattr(cause, "full_key", "") or ""
        parent, _, leaf = key.rpartition(".")
        valid = _valid_keys(config_name, parent)
        bad = next((o for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), key)
        if parent == "trainer" and leaf in MANAGED_TRAINER_ARGS:
            return managed_trainer_arg(bad, leaf)
        if parent.startswith("callbacks.") and not bad.startswith("+"):  # its config's keys
            return (
                f"{bad}: unknown key '{leaf}' in {parent}'s config; to pass the callback an "
                f"argument its config does not list, write +{bad}"
            )
        choices = f"; valid keys{' under ' + parent if parent else ''}: {', '.join(valid)}"
        return f"{bad}: unknown key '{leaf}'{choices if valid else ''}"
    head = _first_line(err).removeprefix("Error merging override ")
    detail = _first_line(cause)
    if "is not a valid bool" in detail:
        detail += "; choose true or false"
    return f"{head}: {detail}" if detail else head


def _group_options(missing: str) -> list[str]:
    """The options of the config group of a missing 'group/option' (Hydra names none for one
    of a list of options, `logger=[csv,mlflow]`)."""
    from hydra.core.global_hydra import GlobalHydra

    group = missing.rpartition("/")[0]
    try:
        return GlobalHydra.instance().config_loader().get_group_options(group) if group else []
    except Exception:
        return []


def _sets_group(override: str, missing_file: str) -> bool:
    """Whether `override` (e.g. hydra/launcher=foo) chose the missing file (hydra/launcher/foo)."""
    key = override.split("=", 1)[0].lstrip("+~")
    return bool(missing_file) and key in (
        missing_file.rsplit("/", 1)[0],
        missing_file.split("/")[0],
    )


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
    check_one_mode(argv)
    overrides, config_name, check = split_command_line(argv)
    if not check:
        return []  # --help, --shell-completion, ...: no torch import (seconds) for those
    from degradation.data import load_images
    from degradation.spec import data_spec

    try:
        variants = job_variants(overrides)
    except OverrideParseException as err:
        raise UserError(_first_line(err)) from None
    configs = []
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        check_hydra_overrides(overrides, config_name)
        for variant in variants:
            cfg = compose_checked(variant, config_name)
            check_values(cfg)
            configs.append(cfg)
    printing_only = any(arg.split("=", 1)[0] in ("--cfg", "-c") for arg in argv)
    for root in [] if printing_only else sorted({cfg.output_root for cfg in configs}):
        check_output_root(root)
    for check in MACHINE_CHECKS:  # each over every job: torch's before Lightning's import
        for cfg in configs:
            check(cfg)
    _validated.update(_identity(cfg) for cfg in configs)
    if printing_only:
        return configs  # only printing the config: no dataset is needed (or downloaded)

    train_sizes: dict[Any, int] = {}
    for cfg in configs:  # dataset files present and readable, once per dataset
        key = (cfg.data.name, cfg.data.root)
        if cfg.data.name == "synthetic":
            continue
        if key not in train_sizes:
            train_sizes[key] = len(load_images(data_spec(cfg)).train_labels)
        check_split_sizes(cfg.data, train_sizes[key])
    return configs


# Hydra's modes, of which it takes one (else a ValueError traceback): flag -> how it is named
HYDRA_MODES = {"-m": "--multirun", "--multirun": "--multirun", "-r": "--run", "--run": "--run",
               "-c": "--cfg", "--cfg": "--cfg", "-i": "--info", "--info": "--info",
               "-sc": "--shell-completion", "--shell-completion": "--shell-completion"}  # fmt: skip


def check_one_mode(argv: list[str]) -> None:
    """One line instead of Hydra's traceback when two modes are asked for (-m with --cfg)."""
    modes = sorted(
        {HYDRA_MODES[a.split("=", 1)[0]] for a in argv if a.split("=", 1)[0] in HYDRA_MODES}
    )
    if len(modes) > 1:
        raise UserError(
            f"{' and '.join(modes)} cannot be combined; Hydra takes one of --multirun, --run, "
            "--cfg, --info, --shell-completion (to print one job's config: drop -m and give "
            "each key one value)"
        )


def check_hydra_overrides(overrides: list[str], config_name: str = "config") -> None:
    """Hydra's own settings (hydra/launcher=..., hydra.job.chdir=...), composed with Hydra's
    config and each job's values (an experiment may set hydra keys); a sweep over Hydra's
    settings is Hydra's to expand."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    ours = [
        text
        for override, text in zip(parsed, overrides, strict=True)
        if override.get_key_element().lstrip("+~").startswith("hydra")
        and not override.is_sweep_override()
    ]
    for variant in job_variants(overrides) if ours else []:
        try:
            composed = compose(config_name, overrides=variant + ours, return_hydra_config=True)
        except (ConfigCompositionException, MissingConfigException, OverrideParseException) as e:
            raise UserError(_explain(e, variant + ours, config_name)) from None
        except Exception as err:  # Hydra's own assertions, e.g. a key below a null node
            raise UserError(f"{' '.join(ours)}: {_first_line(err)}") from None
        check_launcher_available(composed.hydra.launcher, ours)


def check_launcher_available(launcher: DictConfig, overrides: list[str]) -> None:
    """A SLURM launcher needs SLURM's sbatch on this machine; without it submitit fails with
    a long traceback once the sweep starts."""
    if str(launcher.get("_target_", "")).endswith(".SlurmLauncher") and not which("sbatch"):
        given = next((o for o in overrides if o.startswith("hydra/launcher=")), "the launcher")
        raise UserError(
            f"{given} needs SLURM, and this machine has none (no sbatch command on the PATH); "
            "run it where SLURM is (a cluster's login node), or choose "
            "hydra/launcher=submitit_local (the same path on this machine) or joblib"
        )


def check_output_root(root: str) -> None:
    """UserError unless run folders can be made under `root` (`check_writable_folder`)."""
    check_writable_folder(root, f"output_root={root}")


def check_writable_folder(folder: str | Path, label: str) -> None:
    """UserError (starting with `label`, e.g. "--out PATH") unless files can be written in
    `folder` once it is made: its nearest existing folder must take a new file (probed with an
    unnamed temporary file; nothing is left behind, nothing is made)."""
    existing = Path(folder).expanduser().absolute()
    while not existing.exists():
        if existing.is_symlink():  # a link to nothing: making the folder would fail there
            raise UserError(
                f"{label}: {existing} is a symbolic link to {os.readlink(existing)}, which does "
                "not exist; create that folder, or remove the link, or choose another folder"
            )
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(
            f"{label}: {existing} is a file, not a folder; choose a folder you can write to"
        )
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as err:
        raise UserError(
            f"{label}: cannot create files in {existing} ({err.strerror}); "
            "choose a folder you can write to"
        ) from None


def check_writable_file(path: str | Path, label: str) -> None:
    """UserError unless a file can be written at `path` (its folder made if missing)."""
    if Path(path).is_dir():
        raise UserError(f"{label}: {path} is a folder; give a file name")
    check_writable_folder(Path(path).absolute().parent, label)


# --- one run's config ---------------------------------------------------------------------------


# The configs validated in this process, by their full resolved text: the command line's
# preflight validates every job before Hydra starts, and the job's parse() then finds its
# config here instead of building the meta-device model and a Trainer a second time.
_validated: set[str] = set()


def validate(cfg: DictConfig) -> None:
    """Raises a one-line UserError for the first value that cannot work (see the module doc);
    once per config in a process."""
    key = _identity(cfg)
    if key is not None and key in _validated:
        return
    check_values(cfg)
    check_machine(cfg)
    _validated.add(key)


def parse(cfg: DictConfig) -> RunSpec:
    """The run spec of a composed config (spec.py): validated here first (a config validated
    before in this process, as the command line's check does for every job, is not validated
    again), with `auto` and null resolved for this machine. The one way from a config to a run:
    run.py calls it and hands the spec to train()."""
    from degradation.spec import build_spec, speed_request
    from degradation.speed import resolve_speed

    validate(cfg)
    return build_spec(cfg, resolve_speed(speed_request(cfg)))


def spec_of_settings(settings: dict[str, Any]) -> RunSpec:
    """The parsed spec of the schema's defaults with settings by their config keys
    ({"depth": 56, "trainer.precision": "bf16-mixed"}): for tools that build runs in Python
    (degradation.bench, tests) rather than from a command line."""
    cfg = OmegaConf.structured(RunConfig)
    for key, value in settings.items():
        OmegaConf.update(cfg, key, value)
    return parse(cfg)


def _identity(cfg: DictConfig) -> str | None:
    """The config's full resolved text (None where it does not resolve: check_values says)."""
    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except OmegaConfBaseException:
        return None


def check_values(cfg: DictConfig) -> None:
    """What the config alone decides: interpolations, keys, each field's rules, cross-checks."""
    _resolve_all(cfg)
    check_fields(cfg)
    _check_cross_fields(cfg)


def check_machine(cfg: DictConfig) -> None:
    """What needs torch or Lightning (seconds to import): the architecture, the trainer's
    arguments, the logger's package (MACHINE_CHECKS)."""
    for check in MACHINE_CHECKS:
        check(cfg)


def _resolve_all(cfg: DictConfig) -> None:
    """Every interpolation must resolve (`${...}` naming a missing key or resolver)."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "a value"
        raise UserError(f"{key}: {_first_line(err)}") from None


def check_fields(cfg: DictConfig, node: Any = None, schema: Any = None, prefix: str = "") -> None:
    """Every field's declared rules (config.checked) and every float's finiteness, walking the
    schema's dataclasses and the config side by side."""
    schema = RunConfig() if schema is None else schema
    node = cfg if node is None else node
    _check_keys(node, schema, prefix)
    for f in dataclasses.fields(schema):
        key, current = f"{prefix}{f.name}", node[f.name]
        default = getattr(schema, f.name)
        if dataclasses.is_dataclass(default):
            check_fields(cfg, current, default, key + ".")
            continue
        if current is None:
            continue
        rules = (FINITE, *f.metadata.get(RULES, ()))
        for rule in rules:
            if not _holds(rule, current):
                shown = list(current) if isinstance(current, ListConfig) else current
                raise UserError(f"{key}={shown} is not valid: {rule.text}")


def _check_keys(node: DictConfig, schema: Any, prefix: str) -> None:
    """No key of the schema removed (~key), none added (+key): the run would ignore it."""
    names = [f.name for f in dataclasses.fields(schema)]
    removed = [n for n in names if n not in node]
    if removed:
        raise UserError(
            f"~{prefix}{removed[0]}: {prefix}{removed[0]} cannot be removed; set it to a value "
            "(or null where the key allows it) instead"
        )
    added = [k for k in node.keys() if k not in names]
    if added and prefix == "trainer." and added[0] in MANAGED_TRAINER_ARGS:
        raise UserError(managed_trainer_arg(f"+trainer.{added[0]}", added[0]))
    if added:
        under = f" under {prefix.rstrip('.')}" if prefix else ""
        raise UserError(
            f"+{prefix}{added[0]}: unknown key '{added[0]}'; valid keys{under}: {', '.join(names)}"
        )


def managed_trainer_arg(given: str, key: str) -> str:
    """The one line for a Lightning argument this program sets itself."""
    return f"{given}: trainer.{key} is set by this program; {MANAGED_TRAINER_ARGS[key]}"


def _holds(rule, current: Any) -> bool:
    try:
        return bool(rule.holds(current))
    except (TypeError, ValueError):  # e.g. a string where a number is needed
        return False


def _check_cross_fields(cfg: DictConfig) -> None:
    data = cfg.data
    if data.name == "synthetic":
        if data.root:
            raise UserError(
                f"data.root={data.root} is not used by data=synthetic (generated, no files); "
                "drop it or choose a dataset with files: cifar10, cifar100, fashion_mnist"
            )
        check_split_sizes(data, data.synthetic.train_size)
    if cfg.optim.nesterov and cfg.optim.momentum <= 0:
        raise UserError(
            f"optim.nesterov=true needs momentum: optim.momentum={cfg.optim.momentum}; "
            "set optim.momentum > 0 or optim.nesterov=false"
        )


def check_split_sizes(data: DictConfig, num_train_images: int) -> None:
    """The validation split, the training images left and the batch must fit the dataset."""
    if data.val_size >= num_train_images:
        raise UserError(
            f"data.val_size={data.val_size} is not valid: the training split has "
            f"{num_train_images} images; choose fewer than {num_train_images}"
        )
    left = num_train_images - data.val_size
    if data.train_limit is not None:
        left = min(left, data.train_limit)
    if data.batch_size > left:
        raise UserError(
            f"data.batch_size={data.batch_size} is larger than the {left} training images "
            "left after the validation split; choose a smaller batch or more images"
        )


def check_trainer(cfg: DictConfig) -> None:
    """What `lightning.Trainer` would reject (accelerator, devices, strategy, precision,
    num_nodes), found by building one with the run's arguments (it starts no process), and a
    batch that does not split over the run's processes."""
    import logging

    import lightning as L

    from degradation.data import per_device_batch_size
    from degradation.private_api import keeping_process_rank
    from degradation.spec import speed_request
    from degradation.speed import resolve_speed

    def plain(v: Any) -> Any:
        return OmegaConf.to_object(v) if isinstance(v, ListConfig | DictConfig) else v

    # the arguments Lightning checks when a Trainer is built (not deterministic or benchmark:
    # they set process-wide torch flags); the other keys are checked by their rules
    base = {k: plain(cfg.trainer[k]) for k in ("accelerator", "devices", "num_nodes", "strategy")}
    base["precision"] = resolve_speed(speed_request(cfg)).precision
    quiet = logging.getLogger("lightning.pytorch")
    level = quiet.level
    quiet.setLevel(logging.ERROR)

    def build(args: dict, about: list[str]) -> L.Trainer:
        try:
            return L.Trainer(**args, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
        except Exception as err:
            message = _first_line(err)
            lower = message.lower()  # name the argument the message is about: `devices=0`, ...
            named = [k for k in about if f"{k}=" in lower]
            named = named or [k for k in about if re.search(rf"\b{k}\b", lower)]
            key = (named or about)[0]
            raise UserError(f"trainer.{key}={cfg.trainer[key]}: {message}") from None

    try:  # a Trainer under a faked cluster sets the process's rank: put back after the check
        with keeping_process_rank():
            trainer = build(base, [k for k in base if k != "precision"] + ["precision"])
            for key in LIGHTNING_DEFAULT_TRAINER_KEYS:  # each set one on its own: it is named
                if cfg.trainer[key] is not None:
                    build({**base, key: plain(cfg.trainer[key])}, [key])
    finally:
        quiet.setLevel(level)
    per_device_batch_size(cfg.data.batch_size, trainer.world_size)


def check_architecture(cfg: DictConfig) -> None:
    """Builds the model on the meta device: every impossible combination fails here, cheaply."""
    import torch

    from degradation.models import build_model
    from degradation.spec import model_spec

    try:
        with torch.device("meta"):
            build_model(**model_spec(cfg).build_kwargs(num_classes=10, in_channels=3))
    except ValueError as err:
        raise UserError(str(err)) from None


def check_logger_available(cfg: DictConfig) -> None:
    """A chosen logger whose optional package is not installed is a user mistake."""
    chosen = logger_kinds(cfg.logger.kind)
    wandb_on = "wandb" in chosen and cfg.logger.wandb.mode != "disabled"
    if wandb_on and importlib.util.find_spec("wandb") is None:
        raise UserError(
            "logger=wandb: the wandb package is not installed; `pip install wandb`, "
            "or choose logger=csv (or logger.wandb.mode=disabled)"
        )
    if "tensorboard" in chosen and importlib.util.find_spec("tensorboard") is None:
        raise UserError(
            "logger=tensorboard: the tensorboard package is not installed; "
            "`pip install tensorboard` (or degradation[tensorboard]), or choose logger=csv"
        )


def check_callbacks(cfg: DictConfig) -> None:
    """Each `callbacks.NAME` builds (hydra.utils.instantiate, cheap: nothing runs), is a
    Lightning Callback, needs no missing package, and monitors a metric the run logs."""
    from degradation.callbacks import configured_callbacks

    configs = OmegaConf.to_container(cfg.callbacks, resolve=True)
    configured_callbacks(configs, progress_bar=cfg.trainer.enable_progress_bar)


MACHINE_CHECKS = (check_architecture, check_trainer, check_logger_available, check_callbacks)
