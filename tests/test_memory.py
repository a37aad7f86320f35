"""The self-sorting memory bank on hand-built embeddings (paper Sec. 3.2)."""

import numpy as np
import pytest
import torch
from scipy import stats

from medsam2.model.memory import (
    FifoPolicy,
    MemoryQuery,
    SelfSortingPolicy,
    build_policy,
    dissimilarity_top_k,
    resample_indices,
    skip_draws,
)


def _out(vec, iou=0.9):
    return {"maskmem_features": torch.tensor(vec, dtype=torch.float32).view(1, -1, 1, 1),
            "iou_score": torch.tensor([iou])}


def _query(frame_idx, feats, num_maskmem=7, non_cond=None):
    return MemoryQuery(frame_idx, {"cond_frame_outputs": {}, "non_cond_frame_outputs":
                                   non_cond or {}}, {}, False, num_maskmem, 1,
                       torch.tensor(feats, dtype=torch.float32).view(-1, 1, 1))


def test_confidence_gate_rejects_low_iou_frames():
    policy = SelfSortingPolicy(confidence_threshold=0.6, resampling=False)
    policy.observe(1, _out([1, 0], iou=0.3), torch.ones(2))
    assert policy.bank == []
    policy.observe(2, _out([1, 0], iou=0.7), torch.ones(2))
    assert [e.frame_idx for e in policy.bank] == [2]
    ungated = SelfSortingPolicy(confidence=False)
    ungated.observe(1, _out([1, 0], iou=0.0), torch.ones(2))
    assert len(ungated.bank) == 1


def test_dissimilarity_keeps_the_most_mutually_dissimilar_set():
    vecs = torch.tensor([[1.0, 0, 0], [0.99, 0.01, 0], [0.98, 0.02, 0], [0, 1.0, 0], [0, 0, 1.0]])
    vecs = vecs / vecs.norm(dim=1, keepdim=True)
    keep = set(dissimilarity_top_k(vecs, 3).tolist())
    assert {3, 4} <= keep and len(keep & {0, 1, 2}) == 1
    # through the policy: the near-duplicates are evicted, the distinct frames stay
    policy = SelfSortingPolicy(bank_size=3, resampling=False)
    for i, v in enumerate(vecs.tolist()):
        policy.observe(i, _out(v), torch.ones(3))
    frames = [e.frame_idx for e in policy.bank]
    assert len(frames) == 3 and {3, 4} <= set(frames)


def test_without_dissimilarity_the_bank_is_a_fifo_of_accepted_frames():
    policy = SelfSortingPolicy(bank_size=2, dissimilarity=False, resampling=False)
    for i in range(5):
        policy.observe(i, _out([1.0, float(i)]), torch.ones(2))
    assert [e.frame_idx for e in policy.bank] == [3, 4]


def test_resampling_frequencies_follow_softmax_of_similarities():
    sims = torch.tensor([0.0, 1.0, 2.0, -1.0])
    gen = torch.Generator().manual_seed(0)
    draws = resample_indices(sims, 20000, gen)
    observed = np.bincount(draws.numpy(), minlength=4)
    expected = torch.softmax(sims.double(), 0).numpy() * 20000
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    # and a uniform distribution is clearly rejected
    assert stats.chisquare(observed, np.full(4, 5000)).pvalue < 1e-10


def test_resampling_is_seeded_and_prefers_similar_memories():
    def picks(seed):
        policy = SelfSortingPolicy(seed=seed, bank_size=4, confidence=False)
        for i, v in enumerate([[1.0, 0], [0, 1.0], [0.7, 0.7], [-1.0, 0]]):
            policy.observe(i, _out(v), torch.tensor(v))
        chosen = policy.select(_query(9, [1.0, 0], num_maskmem=41))
        return [next(e.frame_idx for e in policy.bank if e.output is o) for _, o in chosen]
    a = picks(0)
    assert a == picks(0)  # same seed, same draws
    assert a != picks(1)
    assert a.count(0) > a.count(3)  # the memory most similar to the current frame is drawn most


def test_selected_temporal_positions_are_valid_and_newest_last():
    policy = SelfSortingPolicy(resampling=False, confidence=False)
    for i in range(1, 10):
        policy.observe(i, _out([1.0, i]), torch.ones(2))
    chosen = policy.select(_query(10, [1.0, 1.0], num_maskmem=7))
    assert [t for t, _ in chosen] == [1, 2, 3, 4, 5, 6]
    assert chosen[-1][1] is policy.bank[-1].output  # frame 9 is the most recent


def test_fifo_takes_the_previous_frames_in_both_directions():
    outs = {i: {"i": i} for i in range(10)}
    fwd = FifoPolicy().select(_query(5, [1.0], num_maskmem=4, non_cond=outs))
    assert [(t, o["i"]) for t, o in fwd] == [(1, 2), (2, 3), (3, 4)]
    q = _query(5, [1.0], num_maskmem=4, non_cond=outs)
    q.track_in_reverse = True
    assert [o["i"] for _, o in FifoPolicy().select(q)] == [8, 7, 6]


def test_build_policy_from_config():
    assert isinstance(build_policy({"policy": "fifo"}), FifoPolicy)
    p = build_policy({"policy": "self_sorting", "resampling": False, "bank_size": 4})
    assert isinstance(p, SelfSortingPolicy) and not p.resampling and p.bank_size == 4
    with pytest.raises(ValueError, match="unknown policy 'lru'"):
        build_policy({"policy": "lru"})
    with pytest.raises(ValueError, match="unknown keys"):
        build_policy({"policy": "self_sorting", "topk": 3})


@pytest.mark.parametrize("draws", [[(4, 6)], [(1, 6), (3, 6), (6, 6)], [(5, 1), (2, 1)]])
def test_skip_draws_moves_the_stream_as_far_as_the_draws(draws):
    """Several objects share one stream: an object's start is found by skipping the
    draws of the objects before it, whatever their probabilities were."""
    gen = torch.Generator().manual_seed(3)
    start = gen.get_state()
    rng = np.random.default_rng(0)
    for candidates, samples in draws:
        resample_indices(torch.tensor(rng.normal(0, 3, candidates)), samples, gen)
    assert torch.equal(skip_draws(start, draws), gen.get_state())
    assert not torch.equal(skip_draws(start, draws[:-1]), gen.get_state())
