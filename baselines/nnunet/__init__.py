"""nnU-Net v2 baseline: our standard datasets through nnunetv2's own planning, training
and inference (see runner.py for the folder layout and the schedule-as-parameter trainer)."""
