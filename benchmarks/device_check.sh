#!/usr/bin/env bash
# Every GPU figure the benchmark pages leave empty, on one H100/H200 in under 9 minutes (benchmarks/device_check.py):
#   benchmarks/device_check.sh [OUT]          -> OUT.json + OUT.md (default benchmarks/device_check.gpu)
#   benchmarks/device_check.sh --tiny [OUT]   -> the same on the CPU at toy sizes, in seconds
set -euo pipefail
cd "$(dirname "$0")/.."
tiny=()
if [[ "${1:-}" == "--tiny" ]]; then tiny=(--tiny); shift; fi
default=benchmarks/device_check.gpu
if (( ${#tiny[@]} )); then default=benchmarks/device_check.tiny; fi
out="${1:-$default}"
PY="${PYTHON:-python}"
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" benchmarks/device_check.py "${tiny[@]}" --out "$out"
