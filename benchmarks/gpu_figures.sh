#!/usr/bin/env bash
# Every GPU figure of the model side in one go, for a CUDA machine without network access.
#
#   bash benchmarks/gpu_figures.sh [LOG_FOLDER]        (STEPS="generation engine-compiled" runs only those)
#
# The default steps (encoder generation engine-graph backends) fit in one 10-minute call: their limits add up to
# 580 s. engine-eager and engine-compiled, measured before (benchmarks/README.md), run when named in STEPS.
#   DRY_RUN=1 bash benchmarks/gpu_figures.sh            (no GPU: prints every step's command and runs the back-end
#                                                        comparison on the CPU with the tiny models)
#
# Python packages the machine lacks (diffusers, pylsl, pyxdf) are taken from wheels in .whl/ when that
# folder exists (with liblsl.so beside them); on a machine where `pip install .` worked it is not needed.
# Each step has its own time limit, so that one slow compile cannot take the others with it.
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS="${1:-${OUT:-/tmp/bci-dream-gpu}}"
mkdir -p "$LOGS"
PY="${PYTHON:-python3}"
if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    [ -f .whl/liblsl.so ] && export PYLSL_LIB="$PWD/.whl/liblsl.so"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 XDG_CACHE_HOME=/tmp/bci-dream-cache

step() {  # step SECONDS NAME COMMAND...
    local limit=$1 name=$2
    shift 2
    case " ${STEPS:-encoder generation engine-graph backends} " in *" $name "*) ;; *) return ;; esac
    echo "=== $name (limit ${limit} s) ==="
    if [ -n "${DRY_RUN:-}" ]; then
        echo "$*"
        return
    fi
    local start=$SECONDS
    timeout -k 10 "$limit" "$@" 2>&1 | grep -v -e "Warning" -e "warnings.warn" | tee "$LOGS/$name.log"
    echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s ==="
}

if [ -n "${DRY_RUN:-}" ]; then
    "$PY" benchmarks/backend_speed.py --models tiny --device cpu --frames 2 || exit 1
else
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
fi
"$PY" -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
step 50 encoder "$PY" benchmarks/encoder_speed.py --device cuda --repeats 200
step 170 generation "$PY" benchmarks/generation_speed.py --device cuda --compile --compile-mode reduce-overhead \
    --compile-timeout 130
step 60 engine-eager "$PY" benchmarks/engine_overhead.py --device cuda --model full --preset dreamdiffusion
# (the compiled UNet and decoder come from inductor's cache, filled by the generation step)
step 120 engine-compiled "$PY" benchmarks/engine_overhead.py --device cuda --model full --preset dreamdiffusion \
    --compile reduce-overhead
step 60 engine-graph "$PY" benchmarks/engine_overhead.py --device cuda --model full --preset dreamdiffusion \
    --backend graph
# every back end on both routes at 512² (full SD-Turbo and SDXL-Turbo + IP-Adapter architectures, random weights),
# checked against eager, with batched interpolation; compile is timed by the generation step above
step 300 backends "$PY" benchmarks/backend_speed.py --device cuda --models full --size 512 \
    --backends eager,graph,int8,fp8,tensorrt --frames 30
[ -n "${DRY_RUN:-}" ] || grep -h "SUMMARY" "$LOGS"/*.log
