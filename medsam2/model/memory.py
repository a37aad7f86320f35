"""Memory-bank policies: which past frames condition the frame being segmented.

SAM 2 attends to the prompted frames plus the ``num_maskmem - 1`` most recent frames
(``FifoPolicy``). MedSAM-2 replaces "most recent" by "most useful" with a self-sorting
bank (paper Sec. 3.2, ``SelfSortingPolicy``), whose three steps are separate switches so
that the paper's ablation (none / +confidence / +dissimilarity / +resampling) is four
configurations of one class:

1. confidence gate: a frame's memory becomes a candidate only if the mask decoder's
   predicted IoU for it is >= ``confidence_threshold``;
2. dissimilarity top-K: over bank + candidate, score each entry by the sum over all other
   entries of (1 - cosine similarity) of their memory features and keep the K highest
   (switched off: keep the K most recent, i.e. a FIFO of accepted frames);
3. resampling: before memory attention, draw ``num_maskmem - 1`` entries with replacement,
   with probability softmax(cosine similarity to the current frame's image features)
   (switched off: attend to the whole bank, the most recent ``num_maskmem - 1``).

The prompted (conditioning) frames are not part of any policy: the model always attends
to them. A policy only sees the non-conditioning frames of the current propagation;
``reset`` is called at the start of each propagation direction. Objects tracked together
(``medsam2.model.predictor.segment_objects``) each get their own policy (``spawn``):
each object selects from its own bank. Resampling draws from one seeded stream that the
objects use in turn, as if tracked one after the other (``random_state``, ``draws``,
``skip_draws``).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any

import torch

FrameOutput = dict[str, Any]


@dataclass
class MemoryQuery:
    """What a policy may look at when choosing memories for ``frame_idx``."""

    frame_idx: int
    output_dict: dict[str, dict[int, FrameOutput]]
    unselected_cond_outputs: dict[int, FrameOutput]
    track_in_reverse: bool
    num_maskmem: int
    stride: int
    current_feats: torch.Tensor  # (HW, B, C) top-level image features of the current frame


class MemoryPolicy(ABC):
    """Chooses the non-conditioning memories; the model adds the prompted frames itself."""

    name: str = "abstract"

    def reset(self) -> None:
        """Forget all state (a new sequence or a new propagation direction starts)."""

    def observe(self, frame_idx: int, output: FrameOutput, image_feats: torch.Tensor) -> None:
        """Called after a non-conditioning frame was segmented and its memory encoded."""

    @abstractmethod
    def select(self, query: MemoryQuery) -> list[tuple[int, FrameOutput]]:
        """Return (t_pos, frame output) pairs; t_pos in 1..num_maskmem-1 (larger = newer)."""

    def spawn(self) -> MemoryPolicy:
        """A policy of the same settings and an empty state, for one more object tracked
        alongside this one (each object keeps its own bank). A random stream, if any,
        continues from where this policy's stands."""
        new = copy.copy(self)
        new.reset()
        return new

    def random_state(self) -> torch.Tensor | None:
        """The state of the random stream the policy draws from; None if it draws nothing."""
        return None

    def set_random_state(self, state: torch.Tensor) -> None:
        """Continue the random stream from ``state`` (of ``random_state``)."""
        raise TypeError(f"policy '{self.name}' draws nothing")

    def expected_draws(self, pass_lengths: list[int], num_maskmem: int) -> list[tuple[int, int]]:
        """The ``draws`` a pass would make that tracks ``pass_lengths[i]`` frames in its
        i-th direction if every frame entered the bank (a guess; see ``draws``)."""
        return []


class FifoPolicy(MemoryPolicy):
    """SAM 2's rule: the last ``num_maskmem - 1`` frames (every ``stride``-th but the last)."""

    name = "fifo"

    def select(self, query: MemoryQuery) -> list[tuple[int, FrameOutput]]:
        direction = -1 if query.track_in_reverse else 1
        stride = query.stride
        non_cond = query.output_dict["non_cond_frame_outputs"]
        chosen = []
        for t_pos in range(1, query.num_maskmem):
            frames_back = query.num_maskmem - t_pos
            if frames_back == 1:
                prev = query.frame_idx - direction
            elif direction == 1:
                # nearest multiple of `stride` at least two frames back, then further back
                prev = ((query.frame_idx - 2) // stride) * stride - (frames_back - 2) * stride
            else:
                prev = -(-(query.frame_idx + 2) // stride) * stride + (frames_back - 2) * stride
            out = non_cond.get(prev, query.unselected_cond_outputs.get(prev))
            if out is not None:
                chosen.append((t_pos, out))
        return chosen


@dataclass
class _BankEntry:
    frame_idx: int
    output: FrameOutput


@dataclass
class SelfSortingPolicy(MemoryPolicy):
    """MedSAM-2's self-sorting memory bank (see the module docstring).

    Besides ``bank`` it keeps the entries' unit-norm memory vectors, unit-norm image
    vectors (for resampling) and the memories' pairwise cosine similarities in fixed
    buffers of ``bank_size + 1`` slots: a new frame is written into the slot of the
    evicted one, so a frame costs matrix-vector products over the bank, never a copy of
    it or a K x K x D similarity matrix (``bench/memory_bank.py``).
    """

    confidence: bool = True
    dissimilarity: bool = True
    resampling: bool = True
    bank_size: int = 16
    confidence_threshold: float = 0.5
    seed: int = 0
    name: str = "self_sorting"
    bank: list[_BankEntry] = field(default_factory=list, init=False, repr=False)
    #: (candidates, samples) of every resampling draw since the policy was made or spawned:
    #: how far the random stream moved (``skip_draws``)
    draws: list[tuple[int, int]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.bank_size < 1:
            raise ValueError(f"bank_size must be >= 1, got {self.bank_size}")
        self._generator = torch.Generator().manual_seed(self.seed)
        self.reset()

    def reset(self) -> None:
        self.bank = []
        self._slots: list[int] = []  # buffer slot of each bank entry (bank order)
        self._mem: torch.Tensor | None = None  # (bank_size + 1, D) unit memory vectors
        self._img: torch.Tensor | None = None  # (bank_size + 1, D') unit image vectors
        self._gram: torch.Tensor | None = None  # (bank_size + 1,) ** 2 memory cosines
        # (features, unit vector) of the frame last queried: observe() of that frame reuses it
        self._query: tuple[torch.Tensor, torch.Tensor] | None = None

    def spawn(self) -> SelfSortingPolicy:
        new = replace(self)  # same settings, empty bank, its own generator ...
        new._generator.set_state(self._generator.get_state())  # ... where this one's stands
        return new

    def random_state(self) -> torch.Tensor | None:
        return self._generator.get_state() if self.resampling else None

    def set_random_state(self, state: torch.Tensor) -> None:
        self._generator.set_state(state)

    def expected_draws(self, pass_lengths: list[int], num_maskmem: int) -> list[tuple[int, int]]:
        if not self.resampling:
            return []
        # the bank is empty on a direction's first frame, then grows by one per frame
        return [(min(j, self.bank_size), num_maskmem - 1)
                for n in pass_lengths for j in range(1, n)]

    def observe(self, frame_idx: int, output: FrameOutput, image_feats: torch.Tensor) -> None:
        query, self._query = self._query, None
        if output.get("maskmem_features") is None:
            return
        if self.confidence:
            if float(output["iou_score"].detach().max()) < self.confidence_threshold:
                return  # gate: a low-confidence mask would poison later frames
        slot = min(set(range(self.bank_size + 1)) - set(self._slots))
        self.bank.append(_BankEntry(frame_idx, output))
        self._slots.append(slot)
        if self.resampling:
            img = query[1] if query is not None and query[0] is image_feats else _unit(image_feats)
            self._img = _put_row(self._img, slot, img, self.bank_size + 1)
        if self.dissimilarity:
            mem = _unit(output["maskmem_features"])
            self._mem = _put_row(self._mem, slot, mem, self.bank_size + 1)
            if self._gram is None:
                self._gram = mem.new_zeros(self.bank_size + 1, self.bank_size + 1)
            sims = self._mem @ mem  # free slots hold zeros or stale rows: never read
            self._gram[slot] = sims
            self._gram[:, slot] = sims
        n = len(self.bank)
        if n <= self.bank_size:
            return
        if self.dissimilarity:
            index = torch.tensor(self._slots, device=self._gram.device)
            gram = self._gram.index_select(0, index).index_select(1, index)
            keep = set(_top_k_rows(gram, self.bank_size).tolist())
        else:
            keep = set(range(n - self.bank_size, n))
        self.bank = [e for i, e in enumerate(self.bank) if i in keep]
        self._slots = [s for i, s in enumerate(self._slots) if i in keep]

    def select(self, query: MemoryQuery) -> list[tuple[int, FrameOutput]]:
        if not self.bank:
            return []
        n_slots = query.num_maskmem - 1
        # most recent (closest to the current frame in propagation order) last
        order = sorted(range(len(self.bank)),
                       key=lambda i: abs(query.frame_idx - self.bank[i].frame_idx), reverse=True)
        if self.resampling:
            image_vec = _unit(query.current_feats)
            self._query = (query.current_feats, image_vec)
            rows = torch.tensor([self._slots[i] for i in order], device=image_vec.device)
            sims = (self._img @ image_vec).index_select(0, rows)
            draws = resample_indices(sims, n_slots, self._generator)
            self.draws.append((len(order), n_slots))
            picked = sorted(draws.tolist())  # keep temporal order: newer -> larger t_pos
        else:
            picked = list(range(max(0, len(order) - n_slots), len(order)))
        # temporal position by recency rank among the picked entries
        ranks = {idx: r for r, idx in enumerate(sorted(set(picked)))}
        top = len(ranks)
        return [(n_slots - (top - 1 - ranks[i]), self.bank[order[i]].output) for i in picked]


def _put_row(buffer: torch.Tensor | None, slot: int, row: torch.Tensor, rows: int) -> torch.Tensor:
    """Write ``row`` into ``buffer[slot]`` (allocated as ``rows`` zero rows on first use)."""
    if buffer is None:
        buffer = row.new_zeros(rows, row.numel())
    buffer[slot] = row
    return buffer


def _unit(x: torch.Tensor) -> torch.Tensor:
    v = x.detach().flatten().float()
    return v / v.norm().clamp_min(1e-12)


def dissimilarity_top_k(vectors: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k rows with the largest summed (1 - cosine similarity) to the others.

    ``vectors`` are unit-norm rows; ties keep the earlier (older) entry.
    """
    return _top_k_rows(vectors @ vectors.T, k)


def _top_k_rows(sims: torch.Tensor, k: int) -> torch.Tensor:
    """``dissimilarity_top_k`` from the (n, n) cosine-similarity matrix."""
    scores = (1.0 - sims).sum(dim=1)  # the diagonal adds 0
    return torch.topk(scores, k=min(k, len(scores)), sorted=True, largest=True).indices


def resample_indices(sims: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Draw n indices with replacement, P(i) = softmax(sims)_i (the seed code's choice)."""
    probs = torch.softmax(sims.float(), dim=0)
    return torch.multinomial(probs.cpu(), n, replacement=True, generator=generator)


def skip_draws(state: torch.Tensor, draws: list[tuple[int, int]]) -> torch.Tensor:
    """The generator state after ``draws`` (``SelfSortingPolicy.draws``) from ``state``.

    How many numbers ``torch.multinomial`` takes from the stream depends on the draw's
    shape, not on the probabilities: the same draws over zeros move it as far.
    """
    generator = torch.Generator()
    generator.set_state(state)
    for candidates, samples in draws:
        resample_indices(torch.zeros(candidates), samples, generator)
    return generator.get_state()


def build_policy(cfg: dict | None, seed: int = 0) -> MemoryPolicy:
    """A policy from the model config's ``memory`` mapping (``policy`` selects the class)."""
    cfg = dict(cfg or {})
    name = cfg.pop("policy", "fifo")
    cfg.pop("num_maskmem", None)
    if name == "fifo":
        return FifoPolicy()
    if name == "self_sorting":
        known = {"confidence", "dissimilarity", "resampling", "bank_size", "confidence_threshold"}
        unknown = set(cfg) - known
        if unknown:
            raise ValueError(f"memory: unknown keys for self_sorting: {sorted(unknown)}")
        return SelfSortingPolicy(seed=seed, **cfg)
    raise ValueError(f"memory.policy: unknown policy '{name}' (known: fifo, self_sorting)")
