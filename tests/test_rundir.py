"""Run-folder names and config hashes: both derived from one list of non-defining keys."""

from __future__ import annotations

import dataclasses

import pytest
from hydra import compose, initialize_config_module

from degradation.config import NON_DEFINING_KEYS, RunConfig
from degradation.run import register
from degradation.rundir import MAX_NAME_BYTES, config_hash, run_dir_name

register()

# A value for one leaf below each non-defining key that differs from its default.
CHANGED = {
    "resume": "false",
    "output_root": "elsewhere",
    "logger": "wandb",  # the group
    "logger.wandb.project": "other",
    "trainer.enable_progress_bar": "false",
    "grad_every": "7",
    "compile": "default",
    "channels_last": "true",
    "fused_sgd": "true",
    "jobs_per_gpu": "3",
    "checkpoint_every": "9",
    "data.root": "/somewhere",
    "data.download": "true",
    "verdict.margin_pp": "3.5",
    "verdict.alpha": "0.01",
    "data.num_workers": "2",
    "trainer.profiler": "simple",
    "trainer.num_sanity_val_steps": "0",
    "callbacks": "[lr_monitor,model_summary]",  # the group: options that only watch
}


def composed(*overrides: str):
    with initialize_config_module(config_module="degradation.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_every_non_defining_key_is_a_key_of_the_schema_or_hydras():
    top = {f.name for f in dataclasses.fields(RunConfig)}
    for key in NON_DEFINING_KEYS:
        assert key == "hydra" or key.split(".")[0] in top, key
    assert {k.split(".")[0] for k in CHANGED} | {"hydra"} >= {
        k.split(".")[0] for k in NON_DEFINING_KEYS
    }


@pytest.mark.parametrize("key", sorted(CHANGED))
def test_a_non_defining_key_changes_neither_the_folder_nor_the_hash(key):
    override = f"{key}={CHANGED[key]}"
    assert run_dir_name(["depth=56", override]) == run_dir_name(["depth=56"]) == "depth=56"
    base, changed = composed("depth=56"), composed("depth=56", override)
    assert config_hash(changed) == config_hash(base)


def test_a_defining_key_changes_both():
    assert run_dir_name(["depth=56", "optim.lr=0.05"]) == "depth=56,optim.lr=0.05"
    assert config_hash(composed("depth=56", "optim.lr=0.05")) != config_hash(composed("depth=56"))


def test_a_plain_net_hashes_the_same_whatever_shortcut_or_zero_init_it_is_given():
    plain = config_hash(composed("skip=none"))
    assert config_hash(composed("skip=none", "shortcut=projection")) == plain
    assert config_hash(composed("skip=none", "zero_init_residual=true")) == plain
    # for a residual net both change what it computes
    residual = config_hash(composed("skip=add"))
    assert config_hash(composed("skip=add", "shortcut=projection")) != residual
    assert config_hash(composed("skip=add", "zero_init_residual=true")) != residual


def test_names_follow_hydras_override_dirname_so_old_folders_are_found():
    # Hydra 1.3's rule with the exclude list of earlier versions: input lines, sorted, joined
    task = ["skip=none", "experiment=smoke", "depth=8", "trainer.max_steps=6", "seed=3",
            "name=x", "logger=wandb", "compile=none"]  # fmt: skip
    assert run_dir_name(task) == "depth=8,seed=3,skip=none,trainer.max_steps=6"
    assert run_dir_name([]) == run_dir_name(["experiment=demo", "resume=false"]) == "default"


def test_a_name_too_long_for_the_file_system_gets_a_readable_prefix_and_a_hash():
    overrides = [f"optim.milestones=[{','.join(str(1000 + i) for i in range(60))}]", "depth=56"]
    synthetic = {"train_size": 700, "test_size": 300, "noise": 0.5, "seed": 4}
    overrides += [f"data.synthetic.{k}={v}" for k, v in synthetic.items()]
    name = run_dir_name(overrides)
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert name.startswith("data.synthetic.noise=0.5,data.synthetic.seed=4,")
    assert name == run_dir_name(list(reversed(overrides)))  # the same command finds it again
    shorter = run_dir_name(overrides[:-1])
    assert shorter != name and len(shorter.encode()) <= MAX_NAME_BYTES
    assert name.rpartition("-h")[2] != shorter.rpartition("-h")[2]  # the hash tells them apart
