#!/usr/bin/env bash
# Create benchmarks/peers/.venv: a separate environment holding the peer XPCS tools
# (boost_corr 0.1.7 from APS, on PyTorch; scikit-beam) and the peer CDI tool (cohere-core
# 4.5.4 from APS) for side-by-side benchmarks.
# Idempotent: re-running only installs what is missing. Never a project dependency.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PY=/usr/bin/python3
BOOST_VERSION=0.1.7

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi
VPY="$VENV/bin/python"
have() { "$VPY" -c "import $1" >/dev/null 2>&1; }

if ! "$VPY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    echo "installing torch 2.13.0"
    "$VPY" -m pip install -q torch==2.13.0
fi
for mod in numpy scipy h5py hdf5plugin tqdm psutil; do
    if ! have "$mod"; then
        "$VPY" -m pip install -q numpy scipy h5py hdf5plugin tqdm psutil
        break
    fi
done

# boost_corr wheels declare Requires-Python >= 3.12 but the code runs on 3.11.
if ! "$VPY" -c "import importlib.metadata as m, sys; sys.exit(m.version('boost_corr') != '$BOOST_VERSION')" 2>/dev/null; then
    echo "installing boost_corr $BOOST_VERSION"
    WHEELS="$(mktemp -d)"
    "$VPY" -m pip download -q --no-deps --python-version 3.12 --only-binary=:all: \
        -d "$WHEELS" "boost-corr==$BOOST_VERSION"
    "$VPY" -m pip install -q --no-deps --ignore-requires-python "$WHEELS"/boost_corr-*.whl
    rm -rf "$WHEELS"
fi

if ! have skbeam; then
    echo "installing scikit-beam (builds from source, about 2 minutes)"
    "$VPY" -m pip install -q scikit-beam
fi

# cohere-core (APS) for the CDI phase-retrieval benchmark (benchmarks/bench_cdi.py).
COHERE_VERSION=4.5.4
if ! "$VPY" -c "import importlib.metadata as m, sys; sys.exit(m.version('cohere_core') != '$COHERE_VERSION')" 2>/dev/null; then
    echo "installing cohere-core $COHERE_VERSION"
    "$VPY" -m pip install -q "cohere-core==$COHERE_VERSION"
fi

"$VPY" - <<'PY'
import importlib.metadata as m
import torch, numpy, boost_corr, skbeam.core.correlation  # noqa: F401
import cohere_core.controller.phasing  # noqa: F401
for name in ("torch", "numpy", "scipy", "h5py", "boost_corr", "scikit-beam", "cohere_core"):
    print(f"{name:12s} {m.version(name)}")
PY
echo "peer venv ready: $VENV"
