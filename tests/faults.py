"""Faults injected into a run the tests start: a failure or a NaN at a chosen training step.

The product knows nothing of them: a run adds the callbacks its test-only hook names
(`DEGRADATION_TEST_CALLBACKS=module:Class`, callbacks.test_callbacks), which `env` sets with
this folder on PYTHONPATH, so that the run's process imports this module:

    run_cli(..., env=faults.env({FAIL_AT_STEP: "3:seed=1"}))

`DEGRADATION_FAIL_AT_STEP=S` raises a RuntimeError in the forward pass of training step S,
`DEGRADATION_NAN_AT_STEP=S` feeds that forward pass NaN inputs, so its loss is NaN;
`S:seed=N` limits either to the run with seed N (e.g. one job of a sweep).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from lightning.pytorch import Callback

FAIL_AT_STEP = "DEGRADATION_FAIL_AT_STEP"
NAN_AT_STEP = "DEGRADATION_NAN_AT_STEP"
TEST_CALLBACKS = "DEGRADATION_TEST_CALLBACKS"  # the product's hook (callbacks.test_callbacks)


def env(steps: dict[str, str], **more: str) -> dict[str, str]:
    """The environment variables of a run with FaultInjection and these `steps`."""
    here = str(Path(__file__).parent)
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    return {**steps, **more, TEST_CALLBACKS: "faults:FaultInjection", "PYTHONPATH": path}


def injected_step(variable: str, seed: int) -> int | None:
    """The step a fault variable (`S` or `S:seed=N`) names for a run with this seed, else None."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return None
    step, _, only = text.partition(":")
    if only and only.strip() != f"seed={seed}":
        return None
    return int(step)


class FaultInjection(Callback):
    """The fault comes from a one-shot forward pre-hook on the model (an eager model: compiled
    graphs skip hooks added later). Built by the hook with the run's config."""

    def __init__(self, spec):
        self.fail_at = injected_step(FAIL_AT_STEP, spec.seed)
        self.nan_at = injected_step(NAN_AT_STEP, spec.seed)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if step not in (self.fail_at, self.nan_at):
            return
        model = getattr(pl_module, "model", pl_module)

        def fault(module, args):
            handle.remove()
            if step == self.fail_at:
                raise RuntimeError(f"injected failure at step {step} ({FAIL_AT_STEP})")
            return (args[0] * math.nan, *args[1:])

        handle = model.register_forward_pre_hook(fault)
