#!/usr/bin/env bash
# bench/gpu_check.py on a GPU machine that reaches no package index, from a wheelhouse carried in parts
# (docs/offline-install.md). On the machine, in this checkout's root, once every part has arrived:
#
#   bash bench/gpu_run.sh [gpu_check.py options]        # default: --no-compile (its compile costs a minute)
#
# 1. unless an earlier run installed them: checks the parts in $WHEELHOUSE_PARTS (default .whl/cp312-parts) against their SHA256SUMS and joins them;
# 2. installs hpo-cls's dependencies from them, --no-index, into the Python that holds torch ($PYTHON,
#    default python3): what the machine already has (torch, numpy, ...) stays as it is;
# 3. runs bench/gpu_check.py on this checkout's code (PYTHONPATH; the wheelhouse's hpo-cls wheel may be older).
# Logs, Tune's command output and nvidia-smi's samples go to $OUT (default /tmp/gpu_run). Exit status: the
# check's (1: a check failed), or the first failing install step's.
#
# Built here with:  python deploy/wheelhouse.py --python-version 3.12 --out .whl/cp312 --parts .whl/cp312-parts --part-mib 56 \
#   --exclude 'torch,torchvision,nvidia-*,cuda-*,triton,pyarrow,pandas,grpcio,matplotlib,pyyaml,rich,scipy,numpy'
set -euo pipefail
cd "$(dirname "$0")/.."
parts=${WHEELHOUSE_PARTS:-.whl/cp312-parts}
logs=${OUT:-/tmp/gpu_run}
python=${PYTHON:-python3}
wheelhouse=/tmp/hpo-cls-wheelhouse
work=/tmp/gpu_check_work
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--no-compile)
mkdir -p "$logs"
export PYTHONUNBUFFERED=1

{
  echo "== $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader || true
  "$python" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'
  if "$python" -m pip show -q hpo-cls >/dev/null 2>&1; then
    echo "hpo-cls is installed already (an earlier run on this machine): no install"
  else
    (cd "$parts" && sha256sum -c SHA256SUMS)  # a missing or cut part fails here, by name
    rm -rf "$wheelhouse" && mkdir -p "$wheelhouse"
    cat "$parts"/wheelhouse.tar.part-* | tar -x -C "$wheelhouse"
    "$python" -m pip install --no-index --find-links "$wheelhouse" hpo-cls
    "$python" -m pip check || echo "warning: pip check found the conflicts above"
  fi
  "$python" -c 'import ray, optuna, mlflow; print("ray", ray.__version__, "optuna", optuna.__version__, "mlflow", mlflow.__version__)'
} 2>&1 | tee "$logs/install.log"

status=0
PYTHONPATH="$PWD/src:$PWD" "$python" bench/gpu_check.py --keep "$work" "${args[@]}" 2>&1 | tee "$logs/gpu_check.log" \
  || status=$?
cp "$work"/cli.log "$work"/*-utilization.csv "$logs"/ 2>/dev/null || true
exit "$status"
