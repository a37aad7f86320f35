"""GPU check of MedSAM-2 at full size: bf16 training steps and volume propagation speed.

Why: when a GPU machine is at hand, a short prepared run of the real configuration:
hiera-tiny (sam2.1) at 1024 px, random init, self-sorting memory; 20 training steps under
``torch.autocast(bfloat16)`` (``medsam2.train.clip_loss`` + AdamW + gradient clipping, as
``medsam2 train`` does), then one 256-slice volume propagated both ways with
``segment_sequence`` under bf16 autocast, for ``fifo`` and ``self_sorting``.

Data: clips and the volume are slices of a synthetic CT phantom
(``medsam2.data.phantoms.abdomen3d_case``, resampled along z); training prompts are drawn
as in training (mask 50 %, click 25 %, box 25 %), the volume gets a box on its key slice.

    python bench/gpu_check.py            # on a CUDA machine (a few minutes on one H100)
    python bench/gpu_check.py --smoke    # CPU: tiny arch, 64 px, 3 steps, 8 frames

Then, beside SAM 2's own ``SAM2VideoPredictor`` on the same random weights, frames and
box (``bench/vs_sam2.py``'s session; 1024 px, bf16 autocast, both directions), frames/s
for hiera-tiny and hiera-small, eager and compiled (ours: ``compile_model``; SAM 2's:
its ``vos_optimized`` predictor, which compiles with ``max-autotune``; the first,
compiling run is not timed); the image encoder's time per frame by frames per call
(``medsam2.model.predictor.ENCODER_CHUNK``). Last, a 13-label 512 x 512 x S CT phantom
predicted end to end (``predict_volume``, hiera-tiny at 1024 px, bf16) for each
``--volumes`` S: seconds, label-frames/s and peak GPU memory (a 300-slice volume must
not hold every frame's features at once: ``medsam2.model.predictor.FEATURE_BYTES``).

Prints per-step times, frames/s per policy, peak GPU memory, then
``RESULT gpu_train_step_s <median step time after 2 warm-up steps>``,
``RESULT gpu_propagate_fps <frames/s of self_sorting>``, per architecture and mode
``RESULT gpu_fps_<arch>_<eager|compiled>_<ours|sam2>``, ``RESULT encoder_chunk_best_cuda``
and per volume
``RESULT gpu_volume13_<S>_s`` / ``RESULT gpu_volume13_<S>_peak_gib``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

# the repository itself, for a checkout where medsam2 is not pip-installed
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from medsam2.data.frames import Intensity, to_model_frames, to_model_masks  # noqa: E402
from medsam2.data.prompts import box_prompt, key_slice, make_prompt, volume_prompts  # noqa: E402
from medsam2.model.build import build_model  # noqa: E402
from medsam2.model.memory import build_policy  # noqa: E402
from medsam2.model.predictor import compile_model, segment_objects, segment_sequence  # noqa: E402
from medsam2.predict import predict_volume  # noqa: E402
from medsam2.train import clip_loss  # noqa: E402

try:  # run as a script from bench/: the sibling benchmarks hold the helpers
    from memory_bank import phantom_sequence
    from shared_encoding import phantom
    from vs_sam2 import encoder_per_frame, run_sam2, sam2_predictor, scene
except ImportError:  # pragma: no cover - imported as bench.gpu_check
    from bench.memory_bank import phantom_sequence
    from bench.shared_encoding import phantom
    from bench.vs_sam2 import encoder_per_frame, run_sam2, sam2_predictor, scene

SELF_SORTING = {"policy": "self_sorting", "confidence": True, "dissimilarity": True,
                "resampling": True}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak(device: torch.device) -> str:
    if device.type != "cuda":
        return "n/a (cpu)"
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _to(inputs: tuple, device: torch.device) -> tuple:
    points, mask = inputs
    if points is not None:
        points = {k: v.to(device) for k, v in points.items()}
    return points, None if mask is None else mask.to(device)


def train_steps(model, device, size: int, steps: int, clip_len: int, seed: int) -> list[float]:
    """Seconds per optimiser step (bf16 autocast forward, fp32 weights and optimiser)."""
    rng = np.random.default_rng(seed)
    img, mask = phantom_sequence(max(64, 4 * clip_len), seed)
    on = np.nonzero(mask.reshape(len(mask), -1).any(axis=1))[0]
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01)
    times = []
    for step in range(steps):
        start = int(rng.choice(on[: max(1, len(on) - clip_len)]))
        images, masks = img[start:start + clip_len], mask[start:start + clip_len]
        kind = str(rng.choice(["mask", "click", "box"], p=[0.5, 0.25, 0.25]))
        prompt = make_prompt(kind, masks[0], 0, rng, 0.1).model_inputs(
            masks[0].shape, size, masks[0])
        frames = to_model_frames(images, size).to(device)
        gts = to_model_masks(masks, size).to(device)
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = clip_loss(model, frames, gts, _to(prompt, device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        _sync(device)
        times.append(time.perf_counter() - t0)
        print(f"train step {step + 1:>2}/{steps}: {times[-1]:.3f} s  loss {loss.item():.4f}  "
              f"prompt {kind}", flush=True)
    model.eval()
    return times


def propagate(model, device, frames: torch.Tensor, prompts: dict, chunk_size: int) -> float:
    """Frames per second of one ``segment_sequence`` call under bf16 autocast."""
    _sync(device)
    t0 = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16):
        logits = segment_sequence(model, frames, prompts, chunk_size)
    _sync(device)
    seconds = time.perf_counter() - t0
    if not torch.isfinite(logits).all():
        raise RuntimeError("non-finite logits from segment_sequence")
    return frames.shape[0] / seconds


def vs_sam2(device: torch.device, arch: str, size: int, frames_n: int, compiled: bool,
            ) -> tuple[float, float, str]:
    """Frames/s of ours (FIFO, one object) and of SAM 2's predictor on the same weights,
    frames and box, under bf16 autocast; and the peak GPU memory of ours."""
    import tempfile

    from PIL import Image

    pred = sam2_predictor(size, str(device), arch, vos_optimized=compiled)
    ours = build_model(arch, size, {"policy": "fifo"}, device=device)
    ours.load_state_dict(pred.state_dict())
    ours.binarize_mask_from_pts_for_mem_enc = pred.binarize_mask_from_pts_for_mem_enc
    ours.eval()
    if compiled:
        compile_model(ours)
    imgs, masks = scene(1, frames_n, size)
    key = frames_n // 2
    prompt = make_prompt("box", masks[0, key], key)
    box = np.asarray(prompt.points, np.float32).reshape(-1) + 0.5
    frames = to_model_frames(imgs, size)
    inputs = [{key: prompt.model_inputs((size, size), size)}]
    with tempfile.TemporaryDirectory() as tmp, torch.autocast(device.type, torch.bfloat16):
        for t, img in enumerate(imgs):
            Image.fromarray((img * 255).astype(np.uint8)).convert("RGB").save(
                f"{tmp}/{t:05d}.jpg")
        for _ in range(2):  # the first run compiles / warms up, the second counts
            (_, elapsed_sam2), _ = run_sam2(pred, Path(tmp), frames, [box], key)
            _sync(device)
            _reset_peak(device)
            t0 = time.perf_counter()
            segment_objects(ours, frames, inputs)
            _sync(device)
            elapsed_ours = time.perf_counter() - t0
    del pred, ours
    return frames_n / elapsed_ours, frames_n / elapsed_sam2, _peak(device)


def volume_end_to_end(device: torch.device, slices: int, labels: int, size: int,
                      arch: str, seed: int) -> tuple[float, str]:
    """Seconds and peak GPU memory of ``predict_volume`` on a 512 x 512 x ``slices``
    phantom with ``labels`` labels (mask prompts on the key slices), bf16 autocast."""
    image, label = phantom(labels, (512, 512, slices), seed)
    names = {f"l{v}": v for v in range(1, labels + 1) if (label == v).any()}
    prompts = {n: volume_prompts(label == v, "mask") for n, v in names.items()}
    model = build_model(arch, size, {"policy": "fifo"}, seed=seed, device=device).eval()
    _sync(device)
    _reset_peak(device)
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16):
        predict_volume(model, image, Intensity("ct", -160, 240), prompts, label, names, size)
    _sync(device)
    return time.perf_counter() - t0, _peak(device)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true",
                    help="CPU smoke test: tiny arch, 64 px, 3 steps, 8 frames")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--clip-len", type=int, default=8)
    ap.add_argument("--slices", type=int, default=256, help="slices of the propagated volume")
    ap.add_argument("--chunk-size", type=int, default=16, help="image-encoder batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--archs", nargs="*", default=["hiera_t", "hiera_s"],
                    help="architectures timed beside SAM 2's predictor (none: skip)")
    ap.add_argument("--vs-frames", type=int, default=64, help="frames of that comparison")
    ap.add_argument("--modes", nargs="+", default=["eager", "compiled"],
                    choices=["eager", "compiled"])
    ap.add_argument("--volumes", type=int, nargs="*", default=[200, 300],
                    help="slices of the 13-label 512 x 512 volumes predicted end to end")
    args = ap.parse_args(argv)
    if args.smoke:
        device, arch, size = torch.device("cpu"), "tiny", 64
        args.steps, args.clip_len, args.slices = 3, 8, 8
        args.vs_frames, args.modes = 4, ["eager"]
        args.archs = args.archs[:1]
        args.volumes = [8] if args.volumes else []
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            raise SystemExit("gpu_check: no CUDA device (use --smoke for the CPU smoke test)")
        device, arch, size = torch.device("cuda"), "hiera_t", 1024
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"# device {name}, torch {torch.__version__}, {arch} at {size} px, "
          f"{args.steps} train steps of {args.clip_len}-frame clips, "
          f"{args.slices}-slice volume, bf16 autocast", flush=True)

    # -- training --------------------------------------------------------------------
    torch.manual_seed(args.seed)
    model = build_model(arch, size, SELF_SORTING, seed=args.seed, device=device,
                        postprocessing=False)  # as medsam2.train builds it
    _reset_peak(device)
    times = train_steps(model, device, size, args.steps, args.clip_len, args.seed)
    step_s = statistics.median(times[2:] if len(times) > 2 else times)
    print(f"train: median step {step_s:.3f} s (steps 3..{len(times)}), "
          f"peak GPU memory {_peak(device)}", flush=True)

    # -- propagation: a fresh random-init model with inference settings (as predict) --
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    model = build_model(arch, size, SELF_SORTING, seed=args.seed, device=device).eval()
    img, mask = phantom_sequence(args.slices, args.seed)
    key = key_slice(mask, axis=0)
    prompt = box_prompt(mask[key], key).model_inputs(mask.shape[1:], size)
    frames = to_model_frames(img, size)  # stays on the CPU; chunks go to the device
    warm = min(8, args.slices)
    propagate(model, device, frames[:warm], {min(key, warm - 1): prompt}, args.chunk_size)
    fps = {}
    for policy in ("fifo", "self_sorting"):
        model.memory_policy = build_policy(SELF_SORTING if policy == "self_sorting"
                                           else {"policy": "fifo"}, args.seed)
        _reset_peak(device)
        fps[policy] = propagate(model, device, frames, {key: prompt}, args.chunk_size)
        print(f"propagate {policy:<12}: {fps[policy]:7.2f} frames/s "
              f"({args.slices} slices, key slice {key}), "
              f"peak GPU memory {_peak(device)}", flush=True)
    print(f"self_sorting / fifo time: {fps['fifo'] / fps['self_sorting']:.3f}")
    print(f"RESULT gpu_train_step_s {step_s:.4f}")
    print(f"RESULT gpu_propagate_fps {fps['self_sorting']:.2f}")
    del model
    vs_size = 128 if args.smoke else 1024

    # -- beside SAM 2's own predictor --------------------------------------------------
    for arch in args.archs:
        for mode in args.modes:
            ours_fps, sam2_fps, peak = vs_sam2(device, arch, vs_size, args.vs_frames,
                                               mode == "compiled")
            print(f"{arch} {mode:8s} {vs_size} px: ours {ours_fps:7.2f} frames/s, SAM 2's "
                  f"predictor {sam2_fps:7.2f} frames/s, ours peak GPU memory {peak}",
                  flush=True)
            print(f"RESULT gpu_fps_{arch}_{mode}_ours {ours_fps:.2f}")
            print(f"RESULT gpu_fps_{arch}_{mode}_sam2 {sam2_fps:.2f}")

    # -- frames per image-encoder call (medsam2.model.predictor.ENCODER_CHUNK) ----------
    if args.archs:
        model = build_model(args.archs[0], vs_size, {"policy": "fifo"}, device=device).eval()
        chunks = (1, 2) if args.smoke else (1, 4, 8, 16, 32)
        frames = torch.rand(max(chunks), 3, vs_size, vs_size)
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16):
            encoder_per_frame(model, frames, chunks[-1], 1)  # warm-up
            per_frame = {c: encoder_per_frame(model, frames, c, 1) for c in chunks}
        print(f"{args.archs[0]} image encoder at {vs_size} px, s per frame by frames per call: "
              + ", ".join(f"{c}: {t:.4f}" for c, t in per_frame.items()))
        print(f"RESULT encoder_chunk_best_{device.type} {min(per_frame, key=per_frame.get)}")
        del model

    # -- a 13-label volume end to end ----------------------------------------------------
    for slices in args.volumes:
        seconds, peak = volume_end_to_end(device, slices, 13, vs_size, args.archs[0]
                                          if args.archs else "hiera_t", args.seed)
        print(f"13 labels, 512 x 512 x {slices} at {vs_size} px: {seconds:.1f} s, "
              f"{13 * slices / seconds:.1f} label-frames/s, peak GPU memory {peak}", flush=True)
        print(f"RESULT gpu_volume13_{slices}_s {seconds:.2f}")
        if device.type == "cuda":
            print(f"RESULT gpu_volume13_{slices}_peak_gib "
                  f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
