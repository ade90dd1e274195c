#!/usr/bin/env bash
# The GPU session's one run on a lent machine (the `device` tool: one NVIDIA GPU, its own
# python3 with cupy, torch, numpy, h5py, scipy, matplotlib, pytest; no package registry).
#
#   here:    make gpu-wheels          # hdf5plugin and boost_corr wheels into benchmarks/.wheels
#   device:  run(command="bash benchmarks/gpu_check.sh", carry=["benchmarks/.wheels"], timeout_s=540)
#
# 1. the GPU parity tests (and the CPU tests of the same files), 2. the XPCS benchmark on the GPU:
# speckle on cupy against boost_corr on torch's cuda:0, same card, with the card's peak memory
# bandwidth and the achieved fraction (benchmarks/bench_xpcs.py --device gpu), 3. the refocus
# sweep (times cupy when a GPU is usable), 4. a 2048^2 detector streamed on the GPU (10 000 frames,
# frames/s and peak host memory). Everything lands under $OUT; copy the results into
# benchmarks/results/ with the card's name.
set -u
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
PY=${PY:-python3}
DEPS=${TMPDIR:-/tmp}/speckle-gpu-deps
{
  date -u
  nvidia-smi
  $PY -m pip install -q --no-index --find-links benchmarks/.wheels --no-deps --target "$DEPS" \
      hdf5plugin boost_corr && echo "wheels installed into $DEPS"
} > "$OUT/machine.txt" 2>&1
export PYTHONPATH="$PWD:$PWD/extensions:$DEPS${PYTHONPATH:+:$PYTHONPATH}"
$PY -c "import cupy, numpy, torch, speckle.backend as b; print('cupy', cupy.__version__, \
'numpy', numpy.__version__, 'torch', torch.__version__, '|', b.device_description())" \
    >> "$OUT/machine.txt" 2>&1

timeout 180 $PY -m pytest -q -p no:cacheprovider -o addopts="" \
    tests/test_backend.py tests/test_imaging_gpu.py tests/test_focus.py tests/test_phasing.py \
    tests/test_conditioning.py tests/test_propagation.py -rs > "$OUT/gpu-tests.txt" 2>&1
echo "pytest exit status $?" >> "$OUT/gpu-tests.txt"

timeout 240 $PY benchmarks/bench_xpcs.py --device gpu --peer-python "$(command -v "$PY")" \
    --tag "$(date +%Y%m%d)_gpu" > "$OUT/bench_xpcs_gpu.txt" 2>&1
echo "bench_xpcs exit status $?" >> "$OUT/bench_xpcs_gpu.txt"
cp benchmarks/results/xpcs_gpu_* "$OUT/" 2>/dev/null

timeout 60 $PY benchmarks/run_speckle.py --generate 10000x2048 --device gpu \
    --out "$OUT/stream_gpu_2048" > "$OUT/stream_gpu.txt" 2>&1
echo "stream exit status $?" >> "$OUT/stream_gpu.txt"

timeout 60 $PY benchmarks/bench_refocus.py --repeats 3 --no-naive --no-write \
    > "$OUT/bench_refocus.txt" 2>&1
echo "bench_refocus exit status $?" >> "$OUT/bench_refocus.txt"
tail -n 3 "$OUT"/*.txt
