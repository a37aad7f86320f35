"""Train (or fine-tune) MedSAM-2 / SAM 2 on frame clips with simulated prompts.

The recipe follows the paper: clips of N consecutive slices of a volume (or N images of a
2D image set, as a pseudo-video); the first frame is prompted with the GT mask (50 %), a
click (25 %) or a box (25 %); every frame is supervised with BCE + Dice on the best of the
multimask outputs, the IoU head with MSE and the object-score head with BCE; AdamW
(0.9, 0.999), linear warm-up then cosine decay, gradient clipping. The memory policy of
the model config is active during training, so MedSAM-2 and SAM 2 differ only there.
Frames without the object teach the object-score head "absent" (SAM 2 then blanks the
mask); a model without that head (our tiny config) learns an empty mask there instead.

Checkpoints (``last.pt`` every ``save_every`` steps, ``checkpoint.pt`` at the end) carry
the model config, step, optimiser, scheduler and RNG states: a killed run resumed with
``--resume`` ends with the same weights as an uninterrupted one (CPU, same seed).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from medsam2.config import add_model_config_args, tracker_spec_from_args
from medsam2.data.frames import (
    Intensity,
    sequence_axis,
    slices,
    to_model_frames,
    to_model_masks,
)
from medsam2.data.layout import StandardDataset
from medsam2.data.preprocess import is_cache, load_cache
from medsam2.data.prompts import make_prompt
from medsam2.data.videos import VideoSampler
from medsam2.fileio import parse_json
from medsam2.model.build import build_from_spec, read_checkpoint, save_checkpoint
from medsam2.spec import TrackerSpec, TrainSpec
from medsam2.typed import to_plain


class ClipSampler:
    """Training cases of several standard datasets, held as [0, 1] slice stacks: (T, H, W),
    or for a colour 2D dataset images of (H, W, 3) (``frames.to_model_frames`` takes both)."""

    def __init__(self, dataset_dirs: list[Path], image_size: int,
                 weights: tuple[float, ...] | list[float] = ()):
        if weights and (len(weights) != len(dataset_dirs) or min(weights) < 0
                        or sum(weights) <= 0):
            raise ValueError(f"train.dataset_weights: {list(weights)} needs one weight >= 0 "
                             f"per training dataset ({len(dataset_dirs)}), not all 0")
        self.image_size = image_size
        self.cases: list[tuple[np.ndarray, np.ndarray, dict[str, int]]] = []
        self.sets_2d: list[tuple[list[np.ndarray], list[np.ndarray], dict[str, int]]] = []
        origin_3d: list[int] = []  # dataset index of each case / image set
        origin_2d: list[int] = []
        for n, d in enumerate(dataset_dirs):
            n_3d, n_2d = len(self.cases), len(self.sets_2d)
            self._load(Path(d))
            origin_3d += [n] * (len(self.cases) - n_3d)
            origin_2d += [n] * (len(self.sets_2d) - n_2d)
        self.sources = [("3d", i) for i in range(len(self.cases))]
        self.sources += [("2d", i) for i in range(len(self.sets_2d))]
        self.weights = None
        if weights:  # a dataset's weight shared by its sources
            origin = origin_3d + origin_2d
            counts = np.bincount(origin, minlength=len(dataset_dirs))
            w = np.array([weights[o] / counts[o] for o in origin], dtype=float)
            self.weights = w / w.sum()

    def _load(self, d: Path) -> None:
        """Add one dataset's training cases (3D) or image set (2D)."""
        if is_cache(d):  # medsam2 preprocess: cropped, resized, small masks dropped
            index, cached = load_cache(d)
            labels = {k: int(v) for k, v in index["labels"].items()}
            if index["is_3d"]:
                self.cases += [(f, lb, labels) for f, lb in cached]
            else:
                self.sets_2d.append(([f[0] for f, _ in cached], [lb[0] for _, lb in cached],
                                     labels))
            return
        ds = StandardDataset(d)
        channel = next(iter(ds.meta["channel_names"].values()))
        intensity = Intensity.for_channel(channel)
        loaded = [(intensity.apply(img.array), lab.array, img.spacing)
                  for _, img, lab in tqdm(list(ds.iter_cases("train")),
                                          desc=f"load {ds.name}", unit="case")]
        if not loaded:
            raise ValueError(f"{d}: no training cases")
        if ds.is_3d:
            # frames along each volume's sequence axis, as prompts and prediction take them
            self.cases += [(slices(i, sequence_axis(sp)), slices(lb, sequence_axis(sp)),
                            ds.labels) for i, lb, sp in loaded]
        else:
            self.sets_2d.append(([i for i, _, _ in loaded], [lb for _, lb, _ in loaded],
                                 ds.labels))

    def sample(self, rng: np.random.Generator, clip_len: int) -> tuple[np.ndarray, np.ndarray]:
        """(T, H, W) (colour: (T, H, W, 3)) images in [0, 1] and (T, H, W) binary masks;
        frame 0 has the object."""
        images, masks = self.sample_objects(rng, clip_len, 1)
        return images, masks[0]

    def sample_objects(self, rng: np.random.Generator, clip_len: int, max_objects: int,
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(T, H, W) images and (K, T, H, W) masks of K <= ``max_objects`` labels, all in
        frame 0: one drawn label decides the clip, others visible on its first frame join.

        Several objects of one clip share the image encoder's pass and see the very same
        frames, so only their prompts and memories tell them apart (SAM 2 trains several
        objects per video the same way).
        """
        pick = (int(rng.integers(len(self.sources))) if self.weights is None
                else int(rng.choice(len(self.sources), p=self.weights)))
        kind, idx = self.sources[pick]
        if kind == "3d":
            img, lab, labels = self.cases[idx]
            present = [v for v in labels.values() if (lab == v).any()]
            value = present[int(rng.integers(len(present)))]
            on = np.nonzero((lab == value).reshape(len(lab), -1).any(axis=1))[0]
            start = int(on[rng.integers(len(on))])
            # walk towards the middle of the object so that most frames contain it
            step = 1 if start <= (on[0] + on[-1]) / 2 else -1
            if rng.random() < 0.25:
                step = -step  # ... but also learn to follow it out of view
            order = np.clip(start + step * np.arange(clip_len), 0, len(img) - 1)
            images, labs = img[order], lab[order]
        else:
            set_images, set_labs, labels = self.sets_2d[idx]
            value = list(labels.values())[int(rng.integers(len(labels)))]
            with_obj = [i for i, lb in enumerate(set_labs) if (lb == value).any()]
            first = with_obj[int(rng.integers(len(with_obj)))]
            others = rng.permutation([i for i in range(len(set_images)) if i != first])
            picks = [first, *others[: clip_len - 1].tolist()]
            size = set_images[first].shape
            same = [i for i in picks if set_images[i].shape == size]  # one size per clip
            # (and one channel layout: a colour dataset holds colour images only)
            images = np.stack([set_images[i] for i in same])
            labs = np.stack([set_labs[i] for i in same])
        extra = [v for v in labels.values() if v != value and (labs[0] == v).any()]
        # (no draw for one object: the random stream stays that of single-object training)
        if extra and max_objects > 1:
            extra = rng.permutation(extra)[: max_objects - 1].tolist()
        else:
            extra = []
        return images, np.stack([labs == v for v in [value, *extra]])


def augment_clip(images: np.ndarray, masks: np.ndarray, rng: np.random.Generator,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One random flip / 90-degree turn and intensity change, the same for every frame.

    For small training sets (the demo trains on a dozen volumes). Frames are (T, H, W) or
    colour (T, H, W, 3) in [0, 1]; the geometry is applied to the masks too. Off by
    default: in one demo run with it on (from random initialisation), both trackers
    segmented the background of ``synth2d`` (Dice 0.01); on the 32-volume demo data with
    the pretrained trackers, two training seeds gave synth3d 0.35 and 0.59, against 0.61
    and 0.63 with the same seeds and recipe without it.
    """
    k = int(rng.integers(4))
    flip = bool(rng.random() < 0.5)

    def geometry(a: np.ndarray, rows: int) -> np.ndarray:
        """Turn and flip the (rows, rows + 1) plane (a colour clip has its channels last)."""
        a = np.rot90(a, k, axes=(rows, rows + 1))
        return np.ascontiguousarray(np.flip(a, rows + 1) if flip else a)

    contrast = rng.uniform(0.8, 1.2)
    brightness = rng.uniform(-0.1, 0.1)
    gamma = float(np.exp(rng.uniform(-0.3, 0.3)))
    mean = images.mean()
    out = np.clip((images - mean) * contrast + mean + brightness, 0.0, 1.0) ** gamma
    return geometry(out.astype(images.dtype, copy=False), 1), geometry(masks, masks.ndim - 2)


#: prompt kinds (mask, click, box) of the single-frame steps
SINGLE_FRAME_PROMPTS = (0.0, 0.5, 0.5)


def param_groups(model: torch.nn.Module, tcfg: TrainSpec) -> list[dict]:
    """Trainable parameters grouped by learning rate (``lr_scale``: prefix -> factor).

    SAM 2's own recipe trains parts at different rates (vision_lr vs lr), e.g. a slower
    image encoder when fine-tuning an official checkpoint. (From scratch, a 0.1 factor on
    memory_attention kept its softmax from saturating, without a better Dice.)
    """
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = next((f for prefix, f in tcfg.lr_scale.items() if name.startswith(prefix)), 1.0)
        groups.setdefault(float(scale), []).append(p)
    return [{"params": ps, "lr": tcfg.lr * scale} for scale, ps in groups.items()]


def unmatched_prefixes(model: torch.nn.Module, tcfg: TrainSpec) -> list[str]:
    """``train.freeze`` / ``train.lr_scale`` prefixes that name no parameter of this model:
    a typo there would freeze or slow down nothing, silently. Not an error, because a
    recipe written for one architecture may name a part another lacks (SAM 2's
    ``no_obj_ptr`` exists only where object pointers are scored, not in the tiny one)."""
    names = [n for n, _ in model.named_parameters()]
    return [f"train.{key}: {prefix!r}" for key, prefixes in (("freeze", tcfg.freeze),
                                                             ("lr_scale", tcfg.lr_scale))
            for prefix in prefixes if not any(n.startswith(prefix) for n in names)]


def lr_factor(step: int, total: int, warmup_fraction: float) -> float:
    """Linear warm-up to 1, then cosine decay to 0 (the paper's schedule)."""
    warmup = max(1, int(round(warmup_fraction * total)))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def frame_loss(out: dict, gt: torch.Tensor, object_scores: bool = True) -> torch.Tensor:
    """BCE + Dice on the best multimask output, IoU-head MSE, object-score BCE (for a
    model with an object-score head: without one SAM 2 reports a constant score)."""
    present = gt.flatten(1).amax(dim=1)  # (B,)
    obj_loss = (F.binary_cross_entropy_with_logits(out["object_score_logits"][:, 0], present)
                if object_scores else present.new_zeros(()))
    if present.sum() == 0 and object_scores:  # SAM 2: the head alone says "absent"
        return obj_loss
    logits = F.interpolate(out["multistep_pred_multimasks"], size=gt.shape[-2:],
                           mode="bilinear", align_corners=False)
    target = gt.expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean((-2, -1))
    prob = logits.sigmoid()
    inter = (prob * target).sum((-2, -1))
    dice = 1 - (2 * inter + 1) / (prob.sum((-2, -1)) + target.sum((-2, -1)) + 1)
    per_mask = bce + dice  # (B, M)
    best = per_mask.min(dim=1).values.mean()
    with torch.no_grad():
        hard = logits > 0
        union = (hard | (target > 0)).sum((-2, -1))
        true_iou = (hard & (target > 0)).sum((-2, -1)) / union.clamp_min(1)
        true_iou = torch.where(union == 0, 1.0, true_iou)  # nothing to find, nothing found
    iou_loss = F.mse_loss(out["multistep_pred_ious"].float(), true_iou.float())
    return best + iou_loss + obj_loss


def corrective_click(logits: torch.Tensor, gt: torch.Tensor,
                     rng: np.random.Generator) -> dict | None:
    """A click on the larger error region of a prediction (SAM 2's correction sampling).

    Missed foreground gets a positive click, false foreground a negative one; ``None`` when
    the prediction is already perfect. Coordinates are in the model's input pixels.
    """
    pred = F.interpolate(logits.detach().float(), size=gt.shape[-2:], mode="bilinear") > 0
    truth = gt > 0.5
    fn, fp = (truth & ~pred)[0, 0], (pred & ~truth)[0, 0]
    region, label = (fn, 1) if fn.sum() >= fp.sum() else (fp, 0)
    idx = torch.nonzero(region)
    if len(idx) == 0:
        return None
    r, c = idx[int(rng.integers(len(idx)))].tolist()
    return {"point_coords": torch.tensor([[[c + 0.5, r + 0.5]]], device=logits.device),
            "point_labels": torch.tensor([[label]], dtype=torch.int32, device=logits.device)}


def encode_clip(model, frames: torch.Tensor) -> tuple[list, list, list]:
    """The image encoder's features of a clip's frames: (features, positions, sizes)."""
    _, feats, pos, sizes = model._prepare_backbone_features(model.forward_image(frames))
    return feats, pos, sizes


def clip_loss(model, frames: torch.Tensor, masks: torch.Tensor, prompt_inputs,
              correct_frames: tuple[int, ...] = (), rng: np.random.Generator | None = None,
              encoded: tuple[list, list, list] | None = None) -> torch.Tensor:
    """Run the memory loop over one clip (frame 0 prompted) and average the frame losses.

    Frames in ``correct_frames`` are segmented, then corrected with one click on their
    error (fed with the previous mask logits, as SAM 2 trains); both predictions are
    supervised and the corrected one becomes a prompted (conditioning) frame.
    ``encoded`` = :func:`encode_clip` of ``frames``, shared by several objects.
    """
    feats, pos, sizes = encoded if encoded is not None else encode_clip(model, frames)
    n = frames.shape[0]
    output_dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    model.memory_policy.reset()
    losses = []
    for t in range(n):
        f_t = [f[:, t:t + 1] for f in feats]
        p_t = [p[:, t:t + 1] for p in pos]
        point_inputs, mask_inputs = prompt_inputs if t == 0 else (None, None)
        correcting = t in correct_frames and t > 0 and rng is not None
        out = model.track_step(t, t == 0, f_t, p_t, sizes, point_inputs, mask_inputs,
                               output_dict, n, run_mem_encoder=not correcting)
        key = "cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"
        if correcting:
            losses.append(frame_loss(out, masks[t:t + 1], model.pred_obj_scores))
            click = corrective_click(out["pred_masks"], masks[t:t + 1], rng)
            if click is not None:
                out = model.track_step(t, False, f_t, p_t, sizes, click, None, output_dict, n,
                                       prev_sam_mask_logits=out["pred_masks"])
                key = "cond_frame_outputs"
            else:  # nothing to correct: encode the memory of the first prediction
                out = model.track_step(t, False, f_t, p_t, sizes, None, None, output_dict, n)
        output_dict[key][t] = out
        if mask_inputs is None:  # a mask-prompted frame outputs its prompt: nothing to learn
            losses.append(frame_loss(out, masks[t:t + 1], model.pred_obj_scores))
    return torch.stack(losses).mean()


def _distributed() -> tuple[int, int]:
    """(rank, world size), initialising torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def _average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """Data parallelism: every rank steps with the mean gradient of all ranks' clips.

    (DDP's hooks need ``forward()`` to run through its wrapper; our memory loop calls
    the model's parts directly, so the gradients are averaged explicitly.)
    """
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset:offset + g.numel()].view_as(g)
        offset += g.numel()


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def train(
    spec: TrackerSpec,
    dataset_dirs: list[Path],
    out_dir: Path,
    seed: int = 0,
    resume: bool = True,
    stop_after: int | None = None,
    sampler: ClipSampler | VideoSampler | None = None,
    init: Path | str | None = None,
    recipe_extra: dict | None = None,
) -> Path:
    """Train one model; returns the final checkpoint path (``out_dir/checkpoint.pt``).

    Clips come from ``sampler`` (default: the training cases of ``dataset_dirs``;
    :func:`medsam2.pretrain.pretrain` passes synthetic videos). Weights start from
    ``init`` (default: the model spec's ``checkpoint``; none: random initialisation).

    Under ``torchrun --nproc_per_node N`` every process trains on its own clips and the
    gradients are averaged (gloo on CPU, NCCL on GPUs); rank 0 writes logs and checkpoints.
    ``stop_after`` ends the run early after that many steps (as a kill would; for tests).

    A run resumes from ``out_dir/last.pt`` only when that checkpoint was made by the same
    recipe (:func:`recipe_sha256`: the weight-relevant spec, the data, the starting weights,
    the seed, ``recipe_extra``); a ``last.pt`` of another recipe (say an old learning rate)
    would otherwise hand its old weights to a checkpoint labelled with the new one, so that
    run is moved aside into ``out_dir/stale-<time>/`` and training starts afresh.
    """
    rank, world = _distributed()
    torch.manual_seed(seed)
    tcfg = spec.train or TrainSpec()
    device = _device(tcfg.device)
    print(f"train rank {rank}/{world} on {device} "
          f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')})")
    start_from = init or spec.checkpoint
    model = build_from_spec(spec, seed, start_from, device, postprocessing=False)
    image_size = model.image_size
    for name, p in model.named_parameters():
        p.requires_grad_(not any(name.startswith(f) for f in tcfg.freeze))
    for unmatched in unmatched_prefixes(model, tcfg):
        print(f"warning: {unmatched} matches no parameter of arch {spec.arch}: it does nothing")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(model, tcfg), betas=(0.9, 0.999),
                                  weight_decay=tcfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, tcfg.steps, tcfg.warmup_fraction))
    rng = np.random.default_rng(seed if rank == 0 else [seed, rank])
    out_dir.mkdir(parents=True, exist_ok=True)
    last = out_dir / "last.pt"
    start = 0
    recipe = recipe_sha256(spec, dataset_dirs, start_from, seed, world, recipe_extra)
    if resume and last.is_file() and rank == 0:
        _set_aside_other_recipe(out_dir, recipe)
    if world > 1:
        dist.barrier()
    if resume and last.is_file():
        ckpt = read_checkpoint(last)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start = int(ckpt["step"])
        if rank == 0:  # exact resume of the single-process RNG streams
            rng.bit_generator.state = parse_json(ckpt["rng"]["numpy"], str(last),
                                                 "checkpoint's numpy generator state")
            torch.set_rng_state(ckpt["rng"]["torch"])
            _set_policy_rng(model, ckpt["rng"].get("policy"))
        else:
            rng = np.random.default_rng([seed, rank, start])
    if sampler is None:
        sampler = ClipSampler(dataset_dirs, image_size, tcfg.dataset_weights)
    resolved = {**to_plain(spec),
                "train": {**to_plain(tcfg), "datasets": [str(d) for d in dataset_dirs]},
                "seed": seed, "world_size": world,
                "init": None if start_from is None else str(start_from),
                "recipe_sha256": recipe}
    lead = rank == 0
    if lead:
        (out_dir / "config.yaml").write_text(yaml.safe_dump(_plain(resolved), sort_keys=False))
        log = _open_log(out_dir / "train_log.csv", start)
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if tcfg.amp and device.type == "cuda"
           else contextlib.nullcontext())
    model.train()
    t0 = time.time()
    done = start
    bar = tqdm(range(start, tcfg.steps), desc=f"train {out_dir.name}", unit="step",
               initial=start, total=tcfg.steps, disable=not lead)
    for step in bar:
        images, objects = sampler.sample_objects(rng, tcfg.clip_len, tcfg.objects)
        if tcfg.augment:
            images, objects = augment_clip(images, objects, rng)
        probs = tcfg.prompt_probs
        if tcfg.single_frame_fraction > 0 and rng.random() < tcfg.single_frame_fraction:
            images, objects, probs = images[:1], objects[:, :1], SINGLE_FRAME_PROMPTS
        frames = to_model_frames(images, image_size).to(device)
        with amp:
            encoded = encode_clip(model, frames)
            loss = torch.stack([
                clip_loss(model, frames, to_model_masks(masks, image_size).to(device),
                          *_simulated_prompts(masks, image_size, probs, tcfg, rng, device), rng,
                          encoded)
                for masks in objects]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:
            _average_gradients(params, world)
        torch.nn.utils.clip_grad_norm_(params, tcfg.grad_clip)
        optimizer.step()
        scheduler.step()
        done = step + 1
        if lead:
            bar.set_postfix(loss=f"{loss.item():.3f}")
            log.write(f"{done},{loss.item():.6f},{scheduler.get_last_lr()[0]:.3e},"
                      f"{time.time() - t0:.1f}\n")
            log.flush()
            if done % tcfg.save_every == 0 or done == tcfg.steps:
                _save(last, model, resolved, done, optimizer, scheduler, rng)
        if stop_after is not None and done - start >= stop_after:
            break
    if lead:
        log.close()
    if world > 1:
        _check_in_sync(params)
    if stop_after is not None and done < tcfg.steps:
        return last
    final = out_dir / "checkpoint.pt"
    if lead:
        save_checkpoint(final, model, _plain(resolved), step=tcfg.steps)
    return final


def recipe_sha256(spec: TrackerSpec, dataset_dirs: list[Path], init: Path | str | None,
                  seed: int, world: int, extra: dict | None = None) -> str:
    """What decides a run's weights, hashed: the spec's weight fields, the training data,
    the starting weights, the seed and the number of processes."""
    weights = {name: to_plain(getattr(spec, name)) for name in TrackerSpec.WEIGHT_FIELDS}
    text = json.dumps({"spec": weights, "data": [str(d) for d in dataset_dirs],
                       "init": None if init is None else str(init), "seed": seed,
                       "world_size": world, "extra": extra or {}}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _set_aside_other_recipe(out_dir: Path, recipe: str) -> None:
    """Move a run of another recipe out of the way (never deleted: it may be wanted)."""
    last = out_dir / "last.pt"
    made_by = read_checkpoint(last).get("config", {}).get("recipe_sha256")
    if made_by == recipe:
        return
    aside = out_dir / f"stale-{time.strftime('%Y%m%d-%H%M%S')}"
    aside.mkdir()
    for name in ("last.pt", "train_log.csv", "config.yaml"):
        if (out_dir / name).exists():
            (out_dir / name).rename(aside / name)
    print(f"{last}: made by another recipe ({str(made_by)[:12]}, now {recipe[:12]}); moved "
          f"to {aside} and training from the start")


def _open_log(path: Path, start: int):
    """The training log, holding exactly one row per step done (steps after ``start``,
    logged before a kill and redone now, are dropped)."""
    header = "step,loss,lr,seconds\n"
    rows = path.read_text().splitlines(keepends=True)[1:] if start and path.is_file() else []
    kept = [r for r in rows if r.split(",", 1)[0].isdigit() and int(r.split(",", 1)[0]) <= start]
    path.write_text(header + "".join(kept))
    return path.open("a")


def _simulated_prompts(masks: np.ndarray, image_size: int, probs: tuple[float, float, float],
                       tcfg: TrainSpec, rng: np.random.Generator, device: torch.device,
                       ) -> tuple[tuple, tuple]:
    """A mask / click / box prompt (``probs``) on frame 0 and the frames to correct."""
    kind = rng.choice(["mask", "click", "box"], p=list(probs))
    prompt = make_prompt(str(kind), masks[0], 0, rng, tcfg.box_jitter)
    points, mask_in = prompt.model_inputs(masks[0].shape, image_size, masks[0])
    inputs = ({k: v.to(device) for k, v in points.items()} if points else None,
              None if mask_in is None else mask_in.to(device))
    n = len(masks)
    n_fix = int(rng.integers(0, tcfg.max_corrections + 1)) if n > 1 else 0
    fix = tuple(rng.choice(np.arange(1, n), size=min(n_fix, n - 1), replace=False).tolist())
    return inputs, fix


def _check_in_sync(params: list[torch.nn.Parameter]) -> None:
    """All ranks must end with identical weights (else the averaging is broken)."""
    total = torch.stack([p.detach().double().sum() for p in params]).sum().reshape(1)
    gathered = [torch.zeros_like(total) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, total)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise RuntimeError(f"ranks diverged: weight checksums {[g.item() for g in gathered]}")


def _save(path, model, cfg, step, optimizer, scheduler, rng) -> None:
    policy_gen = getattr(model.memory_policy, "_generator", None)
    save_checkpoint(path, model, _plain(cfg), step=step, optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(),
                    rng={"numpy": json.dumps(rng.bit_generator.state),
                         "torch": torch.get_rng_state(),
                         "policy": None if policy_gen is None else policy_gen.get_state()})


def _set_policy_rng(model, state) -> None:
    gen = getattr(model.memory_policy, "_generator", None)
    if gen is not None and state is not None:
        gen.set_state(state)


def _plain(obj):
    """Config as plain YAML/JSON types (tuples -> lists, paths -> str)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _cli(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    spec = tracker_spec_from_args(args)
    train(spec, args.dataset_dir, args.out_dir, seed=args.seed, resume=not args.no_resume,
          init=args.init)
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a MedSAM-2 / SAM 2 model on frame clips")
    add_model_config_args(p)
    p.add_argument("--dataset-dir", required=True, type=Path, nargs="+")
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest for SAM 2 on small CPUs)")
    p.add_argument("--init", type=Path,
                   help="checkpoint to start from (default: the spec's 'checkpoint', if any)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing last.pt")
    p.set_defaults(func=_cli)
