#!/usr/bin/env bash
# One training session on a machine with a GPU: its own torch, no network, a wall-clock budget.
#
#   bench/train_gpu.sh WHEELS OUT BUDGET_S [bnnpose train options...]
#
# WHEELS  a folder of wheels for what the machine lacks (brevitas and the packages it needs; for
#         --data mesh also anny, moderngl, ...), installed with --no-index into a venv that sees
#         the machine's own torch (--system-site-packages). An empty folder installs nothing.
# OUT     written: OUT/run (config.json, last.pt, best.pt, metrics.jsonl, curves.png),
#         OUT/train.log, OUT/machine.json (torch, GPU, cores) and OUT/cache (rendered crops).
# BUDGET_S  seconds of training: the session ends before an epoch that would end later; the
#         run folder continues with `--resume OUT/run` in the next session.
#
# Renders on every core (--render-workers), trains on the GPU when torch sees one (--device
# auto). BNNPOSE_ANNY_CACHE and BNNPOSE_BACKGROUNDS point at the carried anny cache and
# background library for --data mesh; a pack (`bnnpose pack`, --data packed:DIR) needs
# neither, nor the footage. BNNPOSE_VENV names a ready environment instead of installing one
# (how the CPU test runs this script).
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 WHEELS OUT BUDGET_S [bnnpose train options...]" >&2
    exit 2
fi
wheels=$1 out=$2 budget=$3
shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$wheels" ]; then
    echo "$0: wheel folder not found: $wheels" >&2
    exit 2
fi
case $budget in
    ''|*[!0-9.]*) echo "$0: BUDGET_S must be a number of seconds, got '$budget'" >&2; exit 2 ;;
esac
mkdir -p "$out"

if [ -n "${BNNPOSE_VENV:-}" ]; then
    python=$BNNPOSE_VENV/bin/python
else
    "${PYTHON:-python3}" -m venv --system-site-packages "$out/venv"
    python=$out/venv/bin/python
    shopt -s nullglob
    found=("$wheels"/*.whl)
    if [ ${#found[@]} -gt 0 ]; then
        "$python" -m pip install -q --no-index --no-deps "${found[@]}"
    fi
    "$python" -m pip install -q --no-index --no-deps --no-build-isolation -e "$here"
fi

cores=$(nproc)
"$python" - "$out/machine.json" <<'EOF'
import json, os, sys
import torch
gpu = torch.cuda.is_available()
json.dump({"torch": torch.__version__, "cuda": gpu, "cores": os.cpu_count(),
           "gpu": torch.cuda.get_device_name(0) if gpu else None},
          open(sys.argv[1], "w"), indent=2)
EOF

"$python" -m bnnpose.quantize.train_cli --device auto --render-workers "$cores" \
    --time-budget "$budget" --out "$out/run" --cache-dir "$out/cache" "$@" 2>&1 \
    | tee "$out/train.log"
