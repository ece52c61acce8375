#!/usr/bin/env bash
# The main demo: set up .venv, train the nnMamba BraTS segmentation bundle on its synthetic demo
# data on CPU (minutes), evaluate the selected model, segment the test cases, print the Dice scores.
# Nothing is downloaded: the demo data are generated once into $NNMAMBA_CACHE/brats_synthetic
# (default ~/.cache/nnmamba_nets/brats_synthetic). Outputs go to $DEMO_DIR (default demo_runs/brats):
# models/, and eval/train, eval/validation, eval/test, eval/inference (the bundles' own output layout).
# Extra arguments are passed to the training run, e.g. `bash scripts/demo.sh --max_epochs 10`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
python="${VENV:-$root/.venv}/bin/python"
bundle="$root/bundles/nnmamba_brats_segmentation"
run_dir="${DEMO_DIR:-$root/demo_runs/brats}"
configs="$bundle/configs"
common=(--meta_file "$configs/metadata.json" --logging_file "$configs/logging.conf" --bundle_root "$bundle"
        --ckpt_dir "$run_dir/models")
evaluate="['$configs/train.yaml','$configs/evaluate.yaml']"

rm -rf "$run_dir/models" "$run_dir/eval"   # a fresh run (this folder holds only demo outputs)
start=$(date +%s)
"$python" -m monai.bundle run training --config_file "$configs/train.yaml" "${common[@]}" \
    --output_dir "$run_dir/eval/train" "$@"
echo "[demo] training took $(( $(date +%s) - start )) s"
for split in validation test; do
    "$python" -m monai.bundle run --config_file "$evaluate" "${common[@]}" --eval_split "$split" \
        --output_dir "$run_dir/eval/$split"
done
"$python" -m monai.bundle run --config_file "$configs/inference.yaml" "${common[@]}" \
    --output_dir "$run_dir/eval/inference"

"$python" - "$run_dir/eval" <<'PY'
import csv, os, sys
folder = sys.argv[1]
print("\n[demo] best model (selected on validation mean Dice); Dice (higher is better), HD95 in voxels:")
for split in ("validation", "test"):
    with open(os.path.join(folder, split, "metrics.csv")) as handle:
        metrics = {name: float(value) for name, value in csv.reader(handle)}
    regions = "  ".join(
        f"{r.upper()} Dice {metrics[f'val_dice_{r}']:.3f} HD95 {metrics[f'val_hd95_{r}']:.1f}" for r in ("wt", "tc", "et")
    )
    print(f"  {split:<10} {regions}  mean Dice {metrics['val_mean_dice']:.3f}")
labels = sorted(n for n in os.listdir(os.path.join(folder, "inference")) if n.endswith(".nii.gz"))
print(f"[demo] {len(labels)} label maps (BraTS labels 1 NCR, 2 ED, 3 ET) in {os.path.join(folder, 'inference')}")
PY
# pictures from the run's own outputs, beside them (python -m nnmamba_nets pictures; see the bundle's README)
echo "[demo] pictures (synthetic demo data):"
"$python" -m nnmamba_nets pictures curves "$run_dir/eval/train" --title "nnMamba BraTS segmentation, synthetic demo data"
"$python" -m nnmamba_nets pictures segmentation "$run_dir/eval/inference" --split test \
    --datalist "$("$python" -c 'import nnmamba_nets.demo.brats as demo; print(demo.demo_datalist())')" \
    --title "nnMamba BraTS segmentation, synthetic demo data (test split)"
