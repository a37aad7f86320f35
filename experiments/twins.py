"""Experiment: can the tiny tracker learn, from scratch, to follow the prompted one of two
objects that only its memory can tell apart after the prompted frame?

Why: on the demo's organ + lesion volumes every training recipe tried ended with a memory
that ignores the prompt (``experiments/memory_use.py``: memory_prompt_dependence 0.2 at init,
0.0003-0.007 after training); the model segments organ + lesion for both labels. This
isolates the memory from everything else. Targets (``--target``):

- ``twins``: two identical discs (same size and brightness) drifting over T frames;
- ``nested``: a small disc of another brightness inside a big one; object 1 is the big
  disc minus the small one (as the phantom's organ label is the organ minus the lesion);
- ``nested-vanish``: ``nested`` where, in half the clips, the small disc shrinks by up to
  3 px per frame and leaves the clip (as a lesion ends before the organ does);
- ``nested-grow``: ``nested`` where the small disc starts at a radius of 1.5-4 px and grows
  by 1.5-3 px per frame (as a clip that starts at a lesion's edge slice).

A prediction that follows the wrong object, or both, scores ``other`` > 0.

Measured (2 CPU cores, 800 steps of 4-frame clips, no corrective clicks, ~3 min each;
``own`` / ``other`` = mean Dice of the unprompted frames with the prompted / the other
object):

    target         recipe  objects  tracking masks   own    other
    twins          mask    both     multi (SAM 2)    0.965  0.003
    twins          mixed   both     multi            0.649  0.649
    twins          single  both     multi            0.972  0.000
    nested         mask    both     multi            0.964  0.012
    nested         mask    one      multi            0.562  0.562
    nested-vanish  mask    both     multi            0.498  0.498
    nested-vanish  mask    both     single           0.950  0.012
    nested-grow    mask    both     multi            0.967  0.014
    nested-grow    mask    both     single           0.875  0.098

(``mask``: clips prompted with the true mask; ``mixed``: mask 50 % / click 25 % / box
25 %, the paper's; ``single``: mask-prompted clips + 50 % single frames prompted with a
click or a box; ``objects``: both objects of a clip trained in the same step, or one;
``tracking masks``: SAM 2's three candidate masks on unprompted frames, trained on the best
one, or a single mask.)

**One seed is not enough.** Whether a from-scratch run learns identity is a bifurcation
decided early by the random stream, not a property of the recipe. The same row, ``nested
mask both multi``, over seeds: 0.964 / 0.012 (seed 0), 0.970 / 0.013 (seed 1), 0.496 /
0.496 (seed 2: collapsed); ``medsam2 train`` fed these very clips (a patched sampler,
seed 0, so another random stream) collapsed too. With a single mask on tracking frames,
seeds 2 and 3 both learned it (0.968 / 0.015, 0.964 / 0.012): the best-of-three loss can
be met without the memory (the three candidates can be the union and each object), a
single mask cannot. So the table's single-seed "fails" (one object per step,
nested-vanish with three masks) may be unlucky draws, and its "works" lucky ones; read
them as "can" and "did not, once". A pool of 30 fixed 28-frame nested sequences (random
4-frame windows, three masks, seed 0) instead of fresh clips: 0.526 / 0.117, partly.

What the single mask does not fix is small objects. With the objects at half size (big
disc radius 16-22 px, small 6-9 px of the 128 px input, about the phantom's organ and
lesion) seed 0 learned (0.875 / 0.084) and seed 1 collapsed (0.576 / 0.576); the usual
objects at a 64 px model input (4 x 4 memory tokens instead of 8 x 8) gave 0.706 / 0.297
and 0.571 / 0.571. An object of one or two memory tokens (Hiera's stride 16) leaves the
memory little to say which object it was.

On the demo's phantoms no from-scratch run learned identity. What the demo does instead is
what the paper does: start from a tracker. The pretraining there (``medsam2 pretrain``,
config ``pretrain``) is this experiment's loop, and this script now runs through it
(``medsam2.pretrain``, whose check tracks through the predictor): same clips, same loss,
but the tiny config has no object-score head any more and the random streams differ from those
of the table above (measured with the earlier, separate loop), so expect the same
picture, not the same digits. Pretraining itself is still a bifurcation: with the demo's
recipe (twins + nested + nested-vanish, single mask, 800 steps) seeds 0 and 1 learned
in one code version, seed 0 learned and seed 1 collapsed in the next;
``results/pretrained/<name>/tracking.json`` says which happened.

    python experiments/twins.py --target nested-vanish --tracking single --recipe mask
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from medsam2.data.videos import VIDEOS
from medsam2.pretrain import pretrain

RECIPES = {"mask": ((1.0, 0.0, 0.0), 0.0), "mixed": ((0.5, 0.25, 0.25), 0.0),
           "single": ((1.0, 0.0, 0.0), 0.5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="single")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", choices=sorted(VIDEOS), default="twins")
    ap.add_argument("--objects", choices=("both", "one"), default="both",
                    help="train both objects of a clip per step, or one drawn at random")
    ap.add_argument("--tracking", choices=("multi", "single"), default="multi",
                    help="masks on unprompted frames: SAM 2's three candidates or one")
    args = ap.parse_args()
    torch.set_num_threads(1)
    probs, single = RECIPES[args.recipe]
    spec = {"arch": "tiny", "image_size": 128, "multimask_tracking": args.tracking == "multi",
            "videos": [args.target], "restarts": 0,
            "train": {"steps": args.steps, "lr": 1e-3, "clip_len": args.frames,
                      "save_every": args.steps, "prompt_probs": list(probs),
                      "single_frame_fraction": single, "max_corrections": 0,
                      "objects": 2 if args.objects == "both" else 1}}
    with tempfile.TemporaryDirectory() as tmp:
        pretrain(spec, Path(tmp), seed=args.seed, resume=False)
        scores = json.loads((Path(tmp) / "tracking.json").read_text())["scores"][args.target]
    name = f"{args.target}_{args.recipe}_{args.objects}_{args.tracking}".replace("-", "_")
    print(f"RESULT {name}_own {scores['own']:.3f}")
    print(f"RESULT {name}_other {scores['other']:.3f}")


if __name__ == "__main__":
    main()
