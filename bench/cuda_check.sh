#!/usr/bin/env bash
# Everything the CUDA backend needs a GPU for, in one run (the device tool's
# machine: nvcc, PyTorch with CUDA, compute-sanitizer; no network):
#   bash bench/cuda_check.sh        # results and log.txt in $OUT (else ./cuda-check-out)
# 1. build FASTLSTM_CUDA=ON for this GPU's architecture, `fastlstm info`;
# 2. the GPU tests (parity with cuDNN, gradchecks) and the host-side CUDA tests;
# 3. compute-sanitizer memcheck and initcheck on a small case;
# 4. the benchmark against cuDNN (training and inference shapes, LSTM, GRU);
# 5. the CPU benchmark at 1-16 threads.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$repo/cuda-check-out}"
mkdir -p "$out"
py="${PYTHON:-python3}"
step() { echo; echo "== $* ($(date +%T))"; }
{
  step machine
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  nvcc --version | tail -2
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  arch="$("$py" -c "import torch; a, b = torch.cuda.get_device_capability(); print(f'{a}{b}')")"
  step "build (sm_$arch)"
  cd "$repo" || exit 1
  FASTLSTM_NO_JAX=1 "$py" -m pip install -q --no-build-isolation --no-deps \
    -Ccmake.define.FASTLSTM_CUDA=ON -Ccmake.define.CMAKE_CUDA_ARCHITECTURES="$arch" \
    -Cbuild-dir=/tmp/fastlstm-cuda-build . || exit 1
  (cd /tmp && "$py" -m fastlstm info)
  step tests
  (cd /tmp && "$py" -m pytest -q -p no:cacheprovider -rs "$repo/tests/test_cuda_gpu.py" \
    "$repo/tests/test_cuda_torch_glue.py" "$repo/tests/test_cuda_host.py")
  step compute-sanitizer
  for tool in memcheck initcheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 9 "$py" bench/cuda_sanitize_case.py \
      && echo "$tool: clean" || echo "$tool: FAILED ($?)"
  done
  step "bench vs cuDNN"
  "$py" bench/cuda_bench.py --json "$out/bench_lstm.json"
  "$py" bench/cuda_bench.py --cell gru --json "$out/bench_gru.json"
  step "CPU bench, 1-16 threads"
  (cd /tmp && "$py" -m fastlstm bench --shapes small,mid,deepbench --threads 1,2,4,8,16 \
    --json "$out/cpu_threads.json")
} 2>&1 | tee "$out/log.txt"
