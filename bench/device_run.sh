#!/usr/bin/env bash
# The one prepared command for a lent GPU machine (it has torch, not our other packages:
# they travel as wheels in .gpu_wheels/, made by `pip wheel`/`pip download` here).
#   bash bench/device_run.sh "$OUT"
set -u
OUT=${1:?output folder}
mkdir -p /tmp/site "$OUT"
python3 -m pip install -q --no-deps --no-index --target /tmp/site .gpu_wheels/*.whl
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi -L
python3 -c "import torch, sam2; print('torch', torch.__version__, torch.cuda.get_device_name())"
timeout 150 python3 bench/gpu_check.py > "$OUT/gpu_check.log" 2>&1
echo "gpu_check rc=$?"; grep -E "RESULT|fps|step|peak" "$OUT/gpu_check.log" | tail -12
