"""Benchmark: medpy's HD95/Dice vs ``medsam2.metrics`` (and MONAI if installed).

Why: HD95 is computed for every (case, label, model) of the benchmark; medpy's two
full-volume distance transforms cost ~23 s and 2.6 GB per 512 x 512 x 200 pair. This
script measures, on the same masks, time, peak memory and values, and checks that ours
equals medpy's.

Masks: an organ-like ellipsoid (ground truth); prediction = the same ellipsoid with a
smoothly perturbed boundary, shifted by a voxel or two, plus a few small spurious blobs
near the image corners (they stretch the union bounding box to nearly the whole image,
the hard case for cropping). Spacing 0.8 x 0.8 x 2.5 mm (0.8 x 0.8 in 2D).

Each method runs in a fresh subprocess that loads the masks from .npy, so the peak
resident memory it reports (``VmHWM`` reset via ``/proc/self/clear_refs``) is the
method's own; ``traced_mb`` is the tracemalloc peak (numpy buffers) for a separate call.

    python bench/metrics.py                  # all four sizes (~1 min, medpy dominates)
    python bench/metrics.py --sizes 256x256 128x128x128

MONAI (``pip install .[bench]``) is the fastest peer: its HD95 is not medpy's (the larger
of the two directed percentiles, in float32: +3..10 % here), so it is timed, not matched.

Last lines: ``RESULT hd95_speedup_512 <medpy time / our time on 512x512x200>``,
``RESULT hd95_speedup_vs_monai_512 <MONAI time / our time>`` (wall; ``_cpu``: CPU time of
all threads, steadier on shared cores) and
``RESULT hd95_max_diff_vs_medpy <max |ours - medpy| over the sizes, mm>``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import ndimage

DEFAULT_SIZES = ("256x256", "128x128x128", "256x256x128", "512x512x200")
SPACING_3D = (0.8, 0.8, 2.5)
METHODS = ("medpy", "ours", "monai")


def make_pair(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth ellipsoid and a perturbed prediction with spurious blobs (bool arrays)."""
    rng = np.random.default_rng(seed)
    nd = len(shape)
    centre = np.array(shape) * rng.uniform(0.45, 0.55, nd)
    radii = np.array(shape) * rng.uniform(0.22, 0.3, nd)
    shift = rng.uniform(-2, 2, nd)

    def implicit(c: np.ndarray) -> np.ndarray:
        grids = np.ogrid[tuple(slice(0, s) for s in shape)]
        f = np.zeros(shape, dtype=np.float32)
        for axis, g in enumerate(grids):
            f += (((g - c[axis]) / radii[axis]) ** 2).astype(np.float32)
        return f

    gt = implicit(centre) <= 1.0
    coarse = rng.uniform(-1, 1, (6,) * nd).astype(np.float32)
    noise = ndimage.zoom(coarse, [s / 6 for s in shape], order=1, mode="nearest")
    pred = implicit(centre + shift) <= 1.0 + 0.2 * noise[tuple(slice(0, s) for s in shape)]
    del noise
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    for _ in range(3):  # small spurious blobs near random corners
        corner = np.array([rng.choice([0.08, 0.92]) * s for s in shape])
        r = max(1.5, min(shape) * 0.01)
        d2 = sum((g - corner[a]) ** 2 for a, g in enumerate(grids))
        pred |= d2 <= r * r
    return gt, pred


def _rss_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _method(name: str, spacing: tuple[float, ...]):
    if name == "medpy":
        from medpy.metric import binary

        return lambda g, p: (binary.hd95(p, g, voxelspacing=spacing), binary.dc(p, g))
    if name == "ours":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
        from medsam2.metrics import binary_metrics

        def ours(g: np.ndarray, p: np.ndarray) -> tuple[float, float]:
            r = binary_metrics(g, p, spacing)
            return r["hd95"], r["dice"]

        return ours
    if name == "monai":
        import torch
        from monai.metrics import compute_dice, compute_hausdorff_distance

        def monai(g: np.ndarray, p: np.ndarray) -> tuple[float, float]:
            gt_t = torch.from_numpy(g)[None, None]
            pr_t = torch.from_numpy(p)[None, None]
            h = compute_hausdorff_distance(pr_t, gt_t, percentile=95, spacing=list(spacing))
            return float(h.item()), float(compute_dice(pr_t, gt_t).item())

        return monai
    raise ValueError(f"unknown method {name}")


def worker(name: str, gt_path: str, pred_path: str, spacing: tuple[float, ...], repeat: int):
    """Run one method on saved masks; print one JSON line (time, memory, values)."""
    gt, pred = np.load(gt_path), np.load(pred_path)
    fn = _method(name, spacing)
    have_rss = _rss_reset()
    rss0 = _status_kb("VmRSS")
    times, cpu = [], []
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn(gt, pred)
    times.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
    peak_rss = (_status_kb("VmHWM") - rss0) / 1024 if have_rss else float("nan")
    for _ in range(repeat - 1):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(gt, pred)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    traced = float("nan")
    if name == "ours":
        tracemalloc.start()
        fn(gt, pred)
        traced = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    print(
        json.dumps(
            {
                "time_s": min(times),
                "cpu_s": min(cpu),
                "peak_rss_mb": peak_rss,
                "traced_mb": traced,
                "hd95": value[0],
                "dice": value[1],
            }
        )
    )


def run_method(name: str, tmp: Path, spacing: tuple[float, ...], repeat: int) -> dict | None:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        name,
        str(tmp / "gt.npy"),
        str(tmp / "pred.npy"),
        "--spacing",
        *map(str, spacing),
        "--repeat",
        str(repeat),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        if "ModuleNotFoundError" in proc.stderr:
            return None
        raise RuntimeError(f"{name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", nargs=3, metavar=("METHOD", "GT", "PRED"), help=argparse.SUPPRESS)
    ap.add_argument("--spacing", nargs="+", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per method (min taken)")
    args = ap.parse_args(argv)
    if args.worker:
        worker(*args.worker, tuple(args.spacing), args.repeat)
        return 0

    header = (
        f"{'size':>12} {'method':>6} {'time_s':>8} {'peak_rss_mb':>11} {'traced_mb':>9} "
        f"{'hd95_mm':>12} {'dice':>8} {'|dhd95|':>9} {'speedup':>8}"
    )
    print(header)
    speedup_512 = monai_512 = monai_512_cpu = float("nan")
    max_diff = 0.0
    for size in args.sizes:
        shape = tuple(int(s) for s in size.split("x"))
        spacing = SPACING_3D[: len(shape)]
        gt, pred = make_pair(shape, args.seed)
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            np.save(tmp / "gt.npy", gt)
            np.save(tmp / "pred.npy", pred)
            del gt, pred
            results = {}
            for name in METHODS:
                big = np.prod(shape) > 10_000_000
                repeat = 1 if (name == "medpy" and big) else args.repeat
                res = run_method(name, tmp, spacing, repeat)
                results[name] = res
        ref = results["medpy"]
        assert ref is not None, "medpy is required as the reference"
        for name, r in results.items():
            if r is None:
                print(f"{size:>12} {name:>6}  (not installed)")
                continue
            speed = ref["time_s"] / r["time_s"]
            print(
                f"{size:>12} {name:>6} {r['time_s']:8.3f} {r['peak_rss_mb']:11.1f} "
                f"{r['traced_mb']:9.1f} {r['hd95']:12.6f} {r['dice']:8.5f} "
                f"{abs(r['hd95'] - ref['hd95']):9.2e} {speed:8.1f}"
            )
        ours = results["ours"]
        assert ours is not None
        max_diff = max(max_diff, abs(ours["hd95"] - ref["hd95"]))
        if size == "512x512x200":
            speedup_512 = ref["time_s"] / ours["time_s"]
            if results["monai"] is not None:
                monai_512 = results["monai"]["time_s"] / ours["time_s"]
                monai_512_cpu = results["monai"]["cpu_s"] / ours["cpu_s"]
        sys.stdout.flush()
    print(f"RESULT hd95_speedup_512 {speedup_512:.1f}")
    if results.get("monai") is None:
        print("MONAI not installed (pip install .[bench]): no MONAI ratio")
    else:
        print(f"RESULT hd95_speedup_vs_monai_512 {monai_512:.1f}")
        # CPU time (all threads): steadier than wall time on shared cores
        print(f"RESULT hd95_speedup_vs_monai_512_cpu {monai_512_cpu:.1f}")
    print(f"RESULT hd95_max_diff_vs_medpy {max_diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
