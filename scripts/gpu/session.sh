#!/usr/bin/env bash
# Run ON a lent GPU machine (the device tool), from the repo root, after scripts/gpu/fetch.sh ran
# here; carry `.gpu`. Does the GPU work of the learned backend (issue: bf16 benchmark, CUDA
# rendering, training the largest configuration that fits the time, AR against the weight-free
# backend) in steps that can be split over several calls:
#
#   bash scripts/gpu/session.sh check bench data train-coarse eval     # one call, ~10 min
#
# steps:
#   check         bench/gpu_check.py --device cuda (renderer vs exact sphere, nets vs CPU / bf16,
#                 pipeline on a small scene)                                   -> $OUT/gpu_check.md
#   bench         bench/bench_nets.py (large, bf16) + bench/bench_render.py on cuda
#                                                      -> $OUT/bench_nets_cuda.md, bench_render_cuda.md
#   data          training folders out/gpu/data/train_0..7 (procedural primitives, industrial_part and
#                 12 pybullet shapes each, 8 processes, rendered on the GPU), val (benchmark objects, other scenes) and the
#                 benchmark /tmp/coop_synth_s7 (bench/eval_synthetic.py's set); skipped if present
#   train-coarse  config/train_coarse_gpu.yaml for $COOP_TRAIN_MINUTES (default 4) minutes
#   train-refiner config/train_refiner_gpu.yaml likewise                  -> $OUT/train_<task>.log/.jsonl
#   eval          bench/eval_synthetic.py: weight-free vs coop (the checkpoints trained above that
#                 exist), configs $COOP_EVAL_CONFIGS (default rgb:0,rgb:5,rgbd:0,rgbd:5)
#                                                                    -> $OUT/eval_<backend>.md
# Knobs (environment): COOP_DEVICE (cuda), COOP_TRAIN_MINUTES (4), COOP_TRAIN_ARGS (extra
# `coop-ros train` arguments, e.g. "--set batch_size=64"), COOP_DATA_IMAGES (20 per scene),
# COOP_EVAL_CONFIGS, COOP_EVAL_ARGS (e.g. "--max-targets 10"). A dry run of the whole sequence
# on CPU (tiny networks, a few images) checks the script itself:
#   COOP_DEVICE=cpu COOP_TRAIN_MINUTES=0.3 COOP_DATA_IMAGES=2 COOP_EVAL_CONFIGS=rgb:0 \
#   COOP_EVAL_ARGS="--max-targets 2 --no-vsd" COOP_TRAIN_ARGS="--device cpu --set model.backbone=tiny
#   --set batch_size=2 --set data.workers=1 --set val_batches=1 --set precision=fp32" \
#   PATH=$PWD/.venv/bin:$PATH bash scripts/gpu/session.sh check data train-coarse eval
# The machine keeps out/gpu/ only while it stays warm (30 s after a call): a later call on a
# fresh machine redoes `data` (and finds no checkpoint for `eval` unless it trains again).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/out/gpu/report}"
mkdir -p "$OUT" out/gpu
export PYTHONUNBUFFERED=1
MINUTES="${COOP_TRAIN_MINUTES:-4}"
EVAL_CONFIGS="${COOP_EVAL_CONFIGS:-rgb:0,rgb:5,rgbd:0,rgbd:5}"
DEVICE="${COOP_DEVICE:-cuda}"
IMAGES="${COOP_DATA_IMAGES:-20}"
read -r -a TRAIN_ARGS <<< "${COOP_TRAIN_ARGS:-}"
read -r -a EVAL_ARGS <<< "${COOP_EVAL_ARGS:-}"

prepare() {
  # GL / EGL loaders (glvnd) and the NVIDIA EGL vendor file; the Python packages the image lacks
  # (on the GPU machine only: a CPU dry run uses the venv as it is)
  [[ "$DEVICE" == cpu ]] || prepare_gpu_machine
  python3 - <<'EOF'
import importlib, sys
missing = []
for m in ("torch", "numpy", "scipy", "cv2", "trimesh", "moderngl", "roma", "yaml",
          "tqdm", "PIL"):
    try:
        importlib.import_module(m)
    except Exception as e:
        missing.append(f"{m} ({e})")
if missing:
    sys.exit("missing Python packages: " + ", ".join(missing)
             + " (run scripts/gpu/fetch.sh here and carry .gpu)")
import torch
print(f"[prepare] python {sys.version.split()[0]}, torch {torch.__version__}, "
      f"cuda {torch.cuda.is_available()}")
EOF
}

prepare_gpu_machine() {
  if ls .gpu/gl/*.deb >/dev/null 2>&1 && [[ ! -e /tmp/coop_gpu_gl_done ]]; then
    for f in .gpu/gl/*.deb; do dpkg -x "$f" /; done
    ldconfig && touch /tmp/coop_gpu_gl_done
  fi
  if [[ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ]]; then
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  fi
  if ls .gpu/whl/*.whl >/dev/null 2>&1 && [[ ! -e /tmp/coop_site/.done ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/coop_site .gpu/whl/*.whl && touch /tmp/coop_site/.done
  fi
  export PYTHONPATH="/tmp/coop_site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
}

step_check() {
  python3 bench/gpu_check.py --device "$DEVICE" 2>&1 | tee "$OUT/gpu_check.md"
}

step_bench() {
  python3 bench/bench_nets.py --device cuda --repeat 10 --warmup 3 2>&1 | tee "$OUT/bench_nets_cuda.md"
  python3 bench/bench_render.py --device "$DEVICE" --runs 10 2>&1 | tee "$OUT/bench_render_cuda.md"
}

step_data() {
  local pids=() k mesh=()
  # pybullet's random shapes (scripts/gpu/fetch.sh), 12 per folder, when carried
  ls .gpu/shapes/*/*.obj >/dev/null 2>&1 && mesh=(--mesh-glob '.gpu/shapes/*/*.obj' --meshes 12)
  for k in 0 1 2 3 4 5 6 7; do
    [[ -f out/gpu/data/train_$k/dataset.json ]] && continue
    python3 -m coop_ros.cli train shapes --out "out/gpu/data/train_$k" --names industrial_part \
      "${mesh[@]}" --object-seed $((100 + k)) --primitives 10 --shape-seed $((10 + k)) --scenes 2 \
      --images "$IMAGES" --seed $((1000 + k)) --device "$DEVICE" > "out/gpu/data_$k.log" 2>&1 &
    pids+=($!)
  done
  if [[ ! -f out/gpu/data/val/dataset.json ]]; then
    python3 -m coop_ros.cli train shapes --out out/gpu/data/val --names textured_box,can,mug \
      --primitives 0 --scenes 1 --images "$IMAGES" --seed 100 --device "$DEVICE" > out/gpu/data_val.log 2>&1 &
    pids+=($!)
  fi
  if [[ ! -d /tmp/coop_synth_s7/test ]]; then
    python3 -m coop_ros.cli synth --out /tmp/coop_synth_s7 --objects textured_box,can,mug \
      --scenes 4 --images 5 --objects-per-image 3 3 --occlusion mild --seed 7 --quiet \
      --device "$DEVICE" > out/gpu/data_bench.log 2>&1 &
    pids+=($!)
  fi
  local bad=0 p
  for p in "${pids[@]}"; do wait "$p" || bad=1; done
  tail -n 2 out/gpu/data_*.log
  du -sh out/gpu/data /tmp/coop_synth_s7
  return $bad
}

step_train() {   # $1 = coarse | refiner
  python3 -m coop_ros.train.cli "$1" --config "config/train_$1_gpu.yaml" --max-minutes "$MINUTES" \
    --quiet "${TRAIN_ARGS[@]}" 2>&1 | tee "$OUT/train_$1.log"
  local rc=${PIPESTATUS[0]}
  cp "out/gpu/train/$1/log.jsonl" "$OUT/train_$1.jsonl" 2>/dev/null
  python3 - "$1" <<'EOF' | tee -a "$OUT/train_$1.log"
import json, sys
task = sys.argv[1]
recs = [json.loads(l) for l in open(f"out/gpu/train/{task}/log.jsonl")]
val = [r for r in recs if "val" in r]
keys = ("acc_match", "match_px", "acc") if task == "coarse" else ("epe", "cert_acc", "rot_deg")
print(f"\n{task}: {recs[-1]['step']} steps in {recs[-1]['time_s']:.0f} s; held-out (val) metrics")
print("| step | " + " | ".join(keys) + " |\n|---:|" + "---:|" * len(keys))
for r in val:
    print(f"| {r['step']} | " + " | ".join(f"{r['val'].get(k, float('nan')):.3f}" for k in keys) + " |")
EOF
  return "$rc"
}

step_eval() {
  local args=(--data /tmp/coop_synth_s7 --configs "$EVAL_CONFIGS" --device "$DEVICE"
              --template-cache out/gpu/eval_templates --jobs 8 "${EVAL_ARGS[@]}")
  local ck=()
  [[ -f out/gpu/train/coarse/ckpt_final.pt ]] && ck+=(--coarse-ckpt out/gpu/train/coarse/ckpt_final.pt)
  [[ -f out/gpu/train/refiner/ckpt_final.pt ]] && ck+=(--refiner-ckpt out/gpu/train/refiner/ckpt_final.pt)
  python3 bench/eval_synthetic.py "${args[@]}" 2>&1 | tee "$OUT/eval_weight-free.md" &
  local p1=$!
  if ((${#ck[@]})); then
    python3 bench/eval_synthetic.py "${args[@]}" --backend coop --precision bf16 "${ck[@]}" 2>&1 \
      | tee "$OUT/eval_coop.md"
  else
    echo "no checkpoint under out/gpu/train: coop backend not evaluated" | tee "$OUT/eval_coop.md"
  fi
  wait $p1
}

prepare || exit 1
(($#)) || set -- check
status=0
for s in "$@"; do
  t0=$SECONDS
  echo "===== $s"
  case "$s" in
    check) step_check ;;
    bench) step_bench ;;
    data) step_data ;;
    train-coarse) step_train coarse ;;
    train-refiner) step_train refiner ;;
    eval) step_eval ;;
    *) echo "unknown step '$s' (check bench data train-coarse train-refiner eval)"; false ;;
  esac || status=1
  echo "===== $s: $((SECONDS - t0)) s"
done
exit $status
