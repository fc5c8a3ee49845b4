#!/usr/bin/env bash
# The device check: what a run on an NVIDIA GPU has to tell us, in one script (< 8 min on an H100).
#
#   benchmarks/device_check.sh            # on a CUDA GPU: GPU tests, then the benchmark grid
#   benchmarks/device_check.sh --quick    # anywhere (CPU too): the same stages, tiny, no GPU rows
#
# Installs nothing and needs no network: jax with the CUDA plugin, flax, optax and torch (CUDA)
# must be there already. The repository runs in place (PYTHONPATH=.). Results (each stage's
# log, results.json, table.md and plot.png per grid) go to $OUT/device_check when OUT is set,
# else to benchmarks/results/device_check.
#
# 1. the gpu-marked tests (backend="cudnn" against backend="xla" on the device), with
#    RNNJAX_REQUIRE_GPU=1 so a missing GPU fails rather than skips (not in --quick);
# 2. benchmarks/run.py --impls rnnjax,linen,nnx,cudnn,torch --kinds lstm,gru at
#    (32,128,128,128), (64,256,256,256), (8,8192,128,128) float32 and (64,256,256,256)
#    bfloat16; every rnnjax LSTM row comes twice, XLA ("auto") and "rnnjax LSTM cudnn".
# Each stage has a time limit, and a stage that fails or runs out of time is reported and
# the next one still runs; the exit status is that of the first failed stage.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # torch's worker shares the GPU
PYTHON=${PYTHON:-python}
QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
RESULTS="${OUT:-benchmarks/results}/device_check"
mkdir -p "$RESULTS"
STATUS=0

stage() {  # stage NAME SECONDS COMMAND...: runs COMMAND, its output also in $RESULTS/NAME.log
  local name=$1 seconds=$2
  shift 2
  echo "=== $name (limit ${seconds}s): $*"
  local started=$SECONDS
  timeout "$seconds" "$@" 2>&1 | tee "$RESULTS/$name.log"
  local code=${PIPESTATUS[0]}
  echo "=== $name: exit $code after $((SECONDS - started))s" | tee -a "$RESULTS/summary.txt"
  if [[ $code -ne 0 && $STATUS -eq 0 ]]; then STATUS=$code; fi
}

: > "$RESULTS/summary.txt"
stage environment 120 "$PYTHON" -c "import jax, rnnjax; print(jax.__version__, jax.devices(), rnnjax.__file__)"

BENCH=("$PYTHON" benchmarks/run.py --impls rnnjax,linen,nnx,cudnn,torch --kinds lstm,gru)
if [[ $QUICK -eq 1 ]]; then
  stage gpu_tests 120 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/test_cudnn.py
  stage bench_quick 300 "$PYTHON" benchmarks/run.py --impls rnnjax,nnx,cudnn --kinds lstm,gru \
    --quick --repeats 1 --warmup 0 --out "$RESULTS/quick"
else
  RNNJAX_REQUIRE_GPU=1 stage gpu_tests 150 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu \
    tests/test_cudnn.py tests/test_lowering.py::test_cudnn_lowers_for_cuda_only
  stage bench_float32 240 "${BENCH[@]}" --repeats 5 --warmup 1 --out "$RESULTS/float32" \
    --shape 32,128,128,128 --shape 64,256,256,256 --shape 8,8192,128,128
  stage bench_bfloat16 90 "${BENCH[@]}" --repeats 5 --warmup 1 --out "$RESULTS/bfloat16" \
    --dtype bfloat16 --shape 64,256,256,256
fi
cat "$RESULTS/summary.txt"
for table in "$RESULTS"/*/table.md; do
  [[ -f $table ]] && { echo "--- $table"; cat "$table"; }
done
exit $STATUS
