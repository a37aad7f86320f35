"""Evaluation protocols: how a dataset's test images are prompted, by name.

One definition shared by the config (``medsam2.spec``), the prompts stage
(``medsam2.data.prompts``), prediction and the report's footnotes, so that a table never
puts two protocols in one column and always says which one it shows. Light on purpose
(no torch): the workflow imports it when it plans.

- ``key_slice`` (3D): one prompt per label, on the slice where the label is largest.
- ``interactive`` (3D): the key slice, and each other slice of the volume drawn with
  probability p (seeded per case and label) over *all* slices; a drawn slice without the
  label gets an empty-mask prompt. The paper's headline 3D setting (p = 0.25 per frame).
  The authors' released code prompts every ``prompt_freq``-th frame over the whole volume
  and gives a zero mask where the object is absent (SuperMedIntel/Medical-SAM2,
  func_3d/function.py, ``validation_sam``: ``prompt_frame_id = range(0, n, prompt_freq)``
  and ``train_add_new_mask(mask=torch.zeros(...))`` on a KeyError).
- ``per_image`` (2D): every test image prompted on its own.
- ``one_prompt`` (2D): the paper's One-Prompt Segmentation: one prompted training
  template, then the test images through memory only.
- ``interactive_one_prompt`` (2D): the template, and each test image prompted with
  probability p (seeded); an image drawn for a label it lacks gets an empty-mask prompt.
  The paper's headline 2D setting (p = 0.3 per image).
"""

from __future__ import annotations

PROTOCOLS: dict[str, str] = {
    "key_slice": "key slice (one prompt per label, on its largest slice)",
    "interactive": "interactive 3D (key slice + each slice prompted with probability p, "
                   "drawn over all slices; no object there: empty-mask prompt)",
    "per_image": "per image (every image prompted)",
    "one_prompt": "One-Prompt (one prompted training template, test images through "
                  "memory only)",
    "interactive_one_prompt": "interactive One-Prompt (the template + each test image "
                              "prompted with probability p; label absent: empty-mask prompt)",
}
PROTOCOLS_3D = ("key_slice", "interactive")
PROTOCOLS_2D = ("per_image", "one_prompt", "interactive_one_prompt")
INTERACTIVE = ("interactive", "interactive_one_prompt")
#: the paper's headline settings: "prompts were applied with probability 0.3 per 2D image
#: and 0.25 per 3D frame in the interactive setting" (Zhu et al. 2024, arXiv:2408.00874)
PAPER_SETTINGS: dict[str, float] = {"interactive": 0.25, "interactive_one_prompt": 0.3}


def resolve(protocol: str | None, dims: int | None, mode_2d: str, rate: float) -> str:
    """The protocol of a dataset: the one named, else the one its ``mode_2d`` and
    ``prompt_rate`` imply for its dimensionality (unknown dims: as for 3D unless One-Prompt).

    Raises ValueError for a name that does not fit the data or the rate."""
    if protocol is None:
        if dims == 2 or mode_2d == "one_prompt":
            if mode_2d == "one_prompt":
                protocol = "interactive_one_prompt" if rate > 0 else "one_prompt"
            else:
                protocol = "per_image"
        else:
            protocol = "interactive" if rate > 0 else "key_slice"
    check(protocol, dims, rate)
    return protocol


def check(protocol: str, dims: int | None, rate: float) -> None:
    """A protocol fits the data's dimensionality and the prompt rate (ValueError if not)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol '{protocol}' (one of {', '.join(PROTOCOLS)})")
    if dims == 3 and protocol not in PROTOCOLS_3D:
        raise ValueError(f"'{protocol}' is a 2D protocol; 3D data: {', '.join(PROTOCOLS_3D)}")
    if dims == 2 and protocol not in PROTOCOLS_2D:
        raise ValueError(f"'{protocol}' is a 3D protocol; 2D data: {', '.join(PROTOCOLS_2D)}")
    if protocol in INTERACTIVE and not rate > 0:
        raise ValueError(f"'{protocol}' needs a prompt_rate > 0 (the paper: "
                         f"{PAPER_SETTINGS[protocol]})")
    if protocol not in INTERACTIVE and rate > 0:
        raise ValueError(f"'{protocol}' prompts no drawn frames: prompt_rate must be 0 "
                         f"(interactive protocols: {', '.join(INTERACTIVE)})")


def describe(protocol: str, rate: float, kind: str) -> str:
    """Short text for a footnote: 'interactive 3D, p = 0.25, box prompts'."""
    short = PROTOCOLS[protocol].split(" (")[0]
    rate_text = f", p = {rate:g}" if protocol in INTERACTIVE else ""
    return f"{short}{rate_text}, {kind} prompts"


def is_paper_setting(protocol: str, rate: float) -> bool:
    """Whether this is the setting the paper's reported numbers were measured in."""
    return protocol in PAPER_SETTINGS and abs(rate - PAPER_SETTINGS[protocol]) < 1e-9
