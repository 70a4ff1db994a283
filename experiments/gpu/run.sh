#!/usr/bin/env bash
# The first GPU run in one call (experiments/gpu/README.md): the CUDA tests, the demo on the
# fast path and on eager fp32, Fig. 6 on Fashion-MNIST, and the throughput benchmark; the
# small files of it all packed into $OUT as they are made.
#
#   make gpu-prep                                     # here: .gpu-site/ and .gpu-data/
#   bash experiments/gpu/run.sh [PHASE...]            # there, from the repo root
#
# PHASE: tests demo fig6 bench bench_share (default: all five). tests, demo and fig6 run at
# once (none of them measures speed; they share the GPU), then bench and bench_share alone.
# Every phase has its own timeout, clipped so that the whole call ends within BUDGET_S.
# Environment: DEVICE (cuda | cpu), SMOKE=1 (tiny settings: seconds per phase on a CPU),
# OUT (default experiments/gpu/out), RESULTS (default experiments/gpu/results; a rerun there
# resumes unfinished runs and skips finished ones), DATA_ROOT (Fashion-MNIST's idx files),
# FIG6_STEPS and FIG6_TIMEOUT_S (a longer Fig. 6, same schedule shape), DEMO_ARGS,
# FIG6_ARGS, BENCH_ARGS (extra overrides or options, appended), BUDGET_S, COMMIT, PYTHON.
# $OUT receives run.log (this console), phases.tsv and results.tar.gz (RESULTS' files:
# logs, bench JSON, every run folder without checkpoints).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2

DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-390}
RESULTS=${RESULTS:-experiments/gpu/results}
DATA_ROOT=${DATA_ROOT:-.gpu-data/fashion-mnist}
OUT=${OUT:-experiments/gpu/out}
ALL_PHASES=(tests demo fig6 bench bench_share)
PACK_RESERVE_S=15  # kept free at the end for packing
MIN_PHASE_S=20  # a phase with less time than this left is skipped, not started
STAGE1_TIMEOUT_S=200  # tests, demo and fig6, which run at once: the stage lasts the longest

mkdir -p "$OUT" "$RESULTS"/{logs,bench,runs} || exit 2
OUT=$(cd "$OUT" && pwd) RESULTS=$(cd "$RESULTS" && pwd)
export PYTHONPATH="$PWD/src:$PWD/.gpu-site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
started=$(date +%s)

if [[ ${SMOKE:-0} == 1 ]]; then  # every phase runs, in seconds: a check of this script
  # the runs' folders are named by job number: overrides this many would overflow a name
  tiny=(trainer.max_steps=4 trainer.val_check_interval=2 log_every=2 data.batch_size=32
    data.val_size=64 optim.milestones=[2,3] depth=8 skip=add seed=0
    'hydra.sweep.subdir=${hydra.job.num}')
  demo_smoke=("${tiny[@]}" data.synthetic.train_size=300 data.synthetic.test_size=64)
  fig6_smoke=("${tiny[@]}" data.train_limit=256)
  bench_smoke=(--models 8 --steps 2 --warmup 1 --batch 32 --train-size 64 --workers 0)
  share_smoke=(--pack 1 --fuse 2)  # --pack K > 1 starts K more processes: tests/test_bench.py
else
  demo_smoke=() fig6_smoke=() bench_smoke=() share_smoke=()
fi
read -ra demo_args <<<"${DEMO_ARGS:-}"
read -ra fig6_args <<<"${FIG6_ARGS:-}"
read -ra bench_args <<<"${BENCH_ARGS:-}"

say() { echo "$*" | tee -a "$OUT/run.log"; }

# The seconds a phase may run: its own limit, cut to what the budget has left (0: skip it).
limit_for() {
  local wanted=$1 left=$((started + BUDGET_S - PACK_RESERVE_S - $(date +%s)))
  ((left < MIN_PHASE_S)) && { echo 0; return; }
  echo $((wanted < left ? wanted : left))
}

# run_phase NAME LIMIT_S COMMAND...: COMMAND under `timeout` (it signals the whole process
# group: sweep workers and bench children too), output in logs/NAME.log as it goes; one
# line per phase in phases.tsv: name, exit code (124: timed out; skipped), seconds, limit.
run_phase() {
  local name=$1 limit; limit=$(limit_for "$2"); shift 2
  if ((limit == 0)); then
    printf '%s\tskipped\t0\t0\n' "$name" >>"$RESULTS/phases.tsv"
    say "$name: skipped, the budget of ${BUDGET_S} s is spent"
    return 1
  fi
  local t0 rc; t0=$(date +%s)
  say "[$(date -u +%T)] $name: started (timeout ${limit} s)"
  timeout --kill-after=15 "$limit" "$@" >"$RESULTS/logs/$name.log" 2>&1 &
  local pid=$!
  echo "$pid" >>"$RESULTS/.phase_pids"  # its process group, for stop_call
  wait "$pid"
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - t0))" "$limit" >>"$RESULTS/phases.tsv"
  say "[$(date -u +%T)] $name: exit $rc after $(($(date +%s) - t0)) s"
  ((rc == 0)) ||
    tail -n 15 "$RESULTS/logs/$name.log" | sed "s/^/    $name| /" | tee -a "$OUT/run.log"
  return "$rc"
}

phase_machine() {
  {
    echo "date: $(date -u +%FT%TZ)"
    echo "commit: ${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
    echo "phases: $* | device: $DEVICE | smoke: ${SMOKE:-0} | budget: ${BUDGET_S} s"
    echo "cpus: $(nproc)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
    "$PY" -c 'import sys, torch, lightning, hydra
print("python", sys.version.split()[0], "| torch", torch.__version__, "| lightning",
      lightning.__version__, "| hydra", hydra.__version__)
print("cuda available:", torch.cuda.is_available())' 2>&1
  } >"$RESULTS/machine.txt"
  cat "$RESULTS/machine.txt" | tee -a "$OUT/run.log"
  if [[ $DEVICE == cuda ]] && ! grep -q "cuda available: True" "$RESULTS/machine.txt"; then
    say "error: DEVICE=cuda but torch sees no CUDA device; choose DEVICE=cpu for a CPU check"
    return 1
  fi
}

phase_tests() {  # the tests named *cuda* in the files that have them (skipped without CUDA)
  run_phase tests "$STAGE1_TIMEOUT_S" "$PY" -m pytest -q -p no:cacheprovider -k cuda \
    tests/test_speed_options.py tests/test_packed.py tests/test_bench.py
}

phase_demo() {  # the demo twice, at once: the default fast path, and eager fp32
  local common=(experiment=demo hydra/launcher=joblib "trainer.accelerator=$DEVICE"
    trainer.enable_progress_bar=false "${demo_smoke[@]}" "${demo_args[@]}")
  run_phase demo_fast "$STAGE1_TIMEOUT_S" "$PY" -m degradation.run "${common[@]}" \
    "output_root=$RESULTS/runs/demo_fast" &
  local fast=$!
  run_phase demo_eager "$STAGE1_TIMEOUT_S" "$PY" -m degradation.run "${common[@]}" \
    "output_root=$RESULTS/runs/demo_eager" compile=none trainer.precision=32-true \
    channels_last=false fused_sgd=false
  local eager=$?
  wait "$fast" && return "$eager"
}

phase_fig6() {  # Fig. 6 on Fashion-MNIST: one sweep sharing the GPU (experiment's header)
  local steps=()
  if [[ -n ${FIG6_STEPS:-} ]]; then  # the same schedule shape: lr / 10 at 1/2 and 3/4
    local s=$FIG6_STEPS
    steps=("trainer.max_steps=$s" "optim.milestones=[$((s / 2)),$((s * 3 / 4))]"
      "trainer.val_check_interval=$((s / 6 > 0 ? s / 6 : 1))")
  fi
  run_phase fig6 "${FIG6_TIMEOUT_S:-$STAGE1_TIMEOUT_S}" "$PY" -m degradation.run \
    experiment=fashion_mnist_fig6_gpu hydra/launcher=joblib "trainer.accelerator=$DEVICE" \
    trainer.enable_progress_bar=false "data.root=$DATA_ROOT" "output_root=$RESULTS/runs/fig6" \
    "${steps[@]}" "${fig6_smoke[@]}" "${fig6_args[@]}"
}

phase_bench() {  # common recipe vs the framework, one run per depth; alone on the device
  run_phase bench 100 "$PY" -m degradation.bench --device "$DEVICE" --models 20,56,110 \
    --steps 100 --warmup 20 --json "$RESULTS/bench/bench.json" "${bench_smoke[@]}" \
    "${bench_args[@]}"
  local rc=$?
  sed -n '/^\(cuda\|cpu\): /,$p' "$RESULTS/logs/bench.log" | tee -a "$OUT/run.log"
  return "$rc"
}

phase_bench_share() {  # ResNet-56 by 4 processes sharing the GPU, and by 4 fused members
  run_phase bench_share 80 "$PY" -m degradation.bench --device "$DEVICE" --models 56 \
    --pack 4 --fuse 4 --steps 100 --warmup 20 --json "$RESULTS/bench/bench_share.json" \
    "${bench_smoke[@]}" "${share_smoke[@]}" "${bench_args[@]}"
  local rc=$?
  sed -n '/^\(cuda\|cpu\): /,$p' "$RESULTS/logs/bench_share.log" | tee -a "$OUT/run.log"
  return "$rc"
}

# RESULTS' small files (no checkpoints, nothing over 4 MiB) as $OUT/results.tar.gz, whose
# top folder is results/; replaced in one rename, so a call cut short keeps the last pack.
pack_results() {
  local tmp="$OUT/.results.$BASHPID.tmp"
  cp "$RESULTS/phases.tsv" "$OUT/phases.tsv" 2>/dev/null
  (cd "$RESULTS" && find . -type f ! -path '*/checkpoints/*' ! -name '*.ckpt' \
    ! -path '*/wandb/*' -size -4M -print0 |
    tar --null -T - --transform 's,^\./,results/,' -czf "$tmp") && mv "$tmp" "$OUT/results.tar.gz"
}

# The call itself stopped (TERM, INT): end every phase's process group, keep what was made.
stop_call() {
  trap - TERM INT
  say "stopped from outside after $(($(date +%s) - started)) s: ending the phases"
  local pid
  while read -r pid; do kill -TERM -- "-$pid" 2>/dev/null; done <"$RESULTS/.phase_pids"
  pack_results
  exit 143
}

main() {
  local phases=("$@") status=0 p
  ((${#phases[@]})) || phases=("${ALL_PHASES[@]}")
  for p in "${phases[@]}"; do
    if [[ " ${ALL_PHASES[*]} " != *" $p "* ]]; then
      echo "error: unknown phase '$p'; choose from: ${ALL_PHASES[*]}" >&2
      exit 2
    fi
  done
  printf '# call %s: %s\n' "$(date -u +%FT%TZ)" "${phases[*]}" >>"$RESULTS/phases.tsv"
  : >"$RESULTS/.phase_pids"
  trap stop_call TERM INT
  phase_machine "${phases[@]}" || { pack_results; exit 1; }
  local sampler=
  if command -v nvidia-smi >/dev/null && [[ $DEVICE == cuda ]]; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 2 \
      >>"$RESULTS/gpu_usage.csv" 2>&1 &
    sampler=$!
  fi
  local pids=() packer
  # the first stage is long: pack as it goes; a TERM waits for a pack under way to end
  (trap 'exit 0' TERM; while true; do sleep 30 & wait $!; pack_results; done) &
  packer=$!
  for p in tests demo fig6; do  # the first stage: at once
    [[ " ${phases[*]} " == *" $p "* ]] || continue
    # a dozen processes compile at once here: fewer compile workers (processes) each
    (export TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS:-4}; "phase_$p") &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || status=1; done
  kill "$packer" && wait "$packer" 2>/dev/null
  pack_results
  for p in bench bench_share; do  # then alone, one after the other
    [[ " ${phases[*]} " == *" $p "* ]] || continue
    "phase_$p" || status=1
    pack_results
  done
  [[ -n $sampler ]] && kill "$sampler" 2>/dev/null
  pack_results
  say "phases (name, exit, seconds, timeout):"
  sed -n '/^# call/h;/^# call/!H;${x;p}' "$RESULTS/phases.tsv" | tee -a "$OUT/run.log"
  say "done in $(($(date +%s) - started)) s, exit $status; results: $OUT/results.tar.gz"
  exit "$status"
}

main "$@"
