#!/usr/bin/env bash
# GPU throughput of feature extraction: the figures the README quotes for one GPU.
#
#   bash benchmarks/gpu.sh [OUTDIR]        (default OUTDIR: bench-gpu; needs a CUDA device)
#
# Writes one JSON report per run (keys documented in the README, "Fast feature extraction") and
# prints each table. Targets on one H200: ResNet-50 optimized >= 40,000 images/s on synthetic
# on-device input (batch 256-1024), ResNet-18 >= 90,000, ViT-B/16 >= 10,000, and ResNet-50 from
# uint8 host input through the loader path >= 25,000. naive and baseline run at batch 256 only
# (naive keeps every activation for autograd; at batch 1024 that is tens of GiB).
set -euo pipefail
OUT="${1:-bench-gpu}"
PY="${PYTHON:-python}"
LIMIT="${LIMIT:-300}"   # seconds per run, compilation included
mkdir -p "$OUT"

run() {  # run NAME ARGS...
  local name="$1"; shift
  echo "== $name: tlaudit bench $*" >&2
  timeout "$LIMIT" "$PY" -m tlaudit bench "$@" --device cuda --format json --output "$OUT/$name.json" \
    || echo "!! $name failed or timed out (exit $?)" >&2
  "$PY" - "$OUT/$name.json" <<'PYEOF' || true
import json, sys
data = json.load(open(sys.argv[1]))
for r in data["results"]:
    print(f'{data["model"]:10} {data["input"]:10} {r["mode"]:10} batch {r["batch_size"]:5} '
          f'{r["images_per_second"]:10,.0f} img/s  x{r["speedup_vs_baseline"] or 0:5.2f}  cos {r["cosine_vs_fp32"]:.4f}  '
          f'{"" if r["plausible"] else "IMPOSSIBLE"}')
for w in data["warnings"]:
    print("warning:", w)
PYEOF
}

"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
run resnet50-modes   resnet50 --batch-size 256 --iters 20 --warmup 5
run resnet50-sweep   resnet50 --batch-size 256,512,1024 --modes baseline,optimized --iters 20 --warmup 5
run resnet18-sweep   resnet18 --batch-size 256,512,1024 --modes baseline,optimized --iters 20 --warmup 5
run vit_b_16-sweep   vit_b_16 --batch-size 256,512 --modes baseline,optimized --iters 10 --warmup 5
run resnet50-uint8   resnet50 --batch-size 256,512 --modes baseline,optimized --input uint8-host --iters 20 --warmup 5
echo "JSON reports in $OUT/" >&2
