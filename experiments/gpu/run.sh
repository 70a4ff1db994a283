#!/usr/bin/env bash
# Issue 9's H100 measurement in one call on a machine that has torch, torchvision and
# Lightning but not hydra-core/omegaconf/antlr4 (the lent GPU machine; README.md here).
#
#   make gpu-site                              # here: the missing pure-Python packages
#   bash experiments/gpu_bench/run.sh [all|speed|pack]   # there, from the repo root
#
# speed: the common recipe vs the framework (default fast path) for ResNet-20/56/110 and the
#        projected canonical sweep; pack: ResNet-56 shared by 4 processes (jobs_per_gpu) and
#        4 members fused into one model, plus the CUDA tests. Each phase writes as it goes,
#        so a phase cut short by its timeout still leaves its log.
# DEVICE=cpu STEPS=2 WARMUP=1 runs the same commands as a quick check without a GPU.
set -uo pipefail
phase=${1:-all}
out=${OUT:-experiments/gpu_bench/out}
device=${DEVICE:-cuda}
steps=${STEPS:-200}
warmup=${WARMUP:-30}  # torch.compile and cuDNN autotuning happen here, untimed
mkdir -p "$out"
export PYTHONPATH="$PWD/src:$PWD/.gpu-site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
bench=(python3 -m degradation.bench --device "$device" --steps "$steps" --warmup "$warmup")
status=0
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; } \
  >"$out/machine.txt" 2>&1
python3 -c 'import torch, lightning; print(torch.__version__, lightning.__version__)' \
  >>"$out/machine.txt" 2>&1

if [[ $phase == all || $phase == speed ]]; then
  timeout 330 "${bench[@]}" --models 20,56,110 --json "$out/bench-speed.json" \
    2>&1 | tee "$out/bench-speed.log" || status=1
fi
if [[ $phase == all || $phase == pack ]]; then
  timeout 330 "${bench[@]}" --models 56 --pack 4 --fuse 4 --json "$out/bench-pack.json" \
    2>&1 | tee "$out/bench-pack.log" || status=1
  if [[ $device == cuda ]]; then
    timeout 200 python3 -m pytest -q -p no:cacheprovider -k cuda \
      tests/test_speed_options.py tests/test_packed.py \
      2>&1 | tee "$out/tests-cuda.log" || status=1
  fi
fi
exit $status
