# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""AAND losses against values computed by hand."""

import math

import pytest
import torch

from anomalib_kd_ext.models.aand.loss import (
    AmplificationLoss,
    GateFocalLoss,
    HardKnowledgeDistillationLoss,
    sample_positions,
)


def _cos(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two vectors, in plain Python."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _vectors(feature: torch.Tensor) -> list[list[float]]:
    """(1, C, H, W) -> the C-vectors of the H*W positions, row-major."""
    return feature[0].flatten(1).T.tolist()


def test_hkd_by_hand(device: torch.device) -> None:
    """The HKD loss equals the hand-computed hard-position and global terms, or the global term alone."""
    # One level, batch 1, C=2, 2x2 positions, k_hard=2.
    teacher = torch.tensor([[[[1.0, 0.0], [1.0, 2.0]], [[0.0, 1.0], [1.0, 0.0]]]])
    student = torch.tensor([[[[1.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 1.0]]]])
    t, s = _vectors(teacher), _vectors(student)
    distances = sorted((1 - _cos(a, b) for a, b in zip(t, s, strict=True)), reverse=True)
    hard = (distances[0] + distances[1]) / 2
    global_term = 1 - _cos(teacher.flatten().tolist(), student.flatten().tolist())
    loss = HardKnowledgeDistillationLoss(k_hard=2)([teacher.to(device)], [student.to(device)])
    assert float(loss) == pytest.approx(hard + global_term, rel=1e-5)
    rd_only = HardKnowledgeDistillationLoss(k_hard=2, use_hard=False)([teacher], [student])
    assert float(rd_only) == pytest.approx(global_term, rel=1e-5)


def test_hkd_sums_levels_and_averages_batch() -> None:
    """The HKD loss sums over pyramid levels and averages over the images of the batch."""
    torch.manual_seed(0)
    levels_t = [torch.rand(3, 4, 4, 4), torch.rand(3, 8, 2, 2)]
    levels_s = [torch.rand(3, 4, 4, 4), torch.rand(3, 8, 2, 2)]
    loss_fn = HardKnowledgeDistillationLoss(k_hard=3)
    total = loss_fn(levels_t, levels_s)
    per_level = sum(float(loss_fn([t], [s])) for t, s in zip(levels_t, levels_s, strict=True))
    assert float(total) == pytest.approx(per_level, rel=1e-6)
    per_image = [
        float(loss_fn([t[i : i + 1]], [s[i : i + 1]])) for t, s in [(levels_t[0], levels_s[0])] for i in range(3)
    ]
    assert float(loss_fn(levels_t[:1], levels_s[:1])) == pytest.approx(sum(per_image) / 3, rel=1e-6)


def test_hkd_k_hard_larger_than_positions() -> None:
    """A k_hard above the number of positions, or not positive, raises ValueError."""
    with pytest.raises(ValueError, match="k_hard=10 exceeds the 4 positions"):
        HardKnowledgeDistillationLoss(k_hard=10)([torch.rand(1, 2, 2, 2)], [torch.rand(1, 2, 2, 2)])
    with pytest.raises(ValueError, match="positive"):
        HardKnowledgeDistillationLoss(k_hard=0)


def test_amplification_loss_by_hand(device: torch.device) -> None:
    """The amplification loss equals the hinge computed by hand over foreground normal positions."""
    # 2x2 positions, C=2: positions 0 and 1 normal, position 3 anomalous, position 2 background.
    features = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]], [[0.0, 1.0], [1.0, 1.0]]]])
    amplified = features.clone()
    amplified[0, :, 1, 1] = torch.tensor([1.0, -0.5])
    mask = torch.tensor([[[[False, False], [False, True]]]])
    foreground = torch.tensor([[[[True, True], [False, True]]]])
    f, fa = _vectors(features), _vectors(amplified)
    margin = 0.3
    expected = sum(max(0.0, _cos(f[n], fa[3]) - (_cos(f[n], f[3]) - margin)) for n in (0, 1)) / 2
    on_device = [[t.to(device)] for t in (features, amplified, mask, foreground)]
    loss = AmplificationLoss(margin=margin)(*on_device)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert expected > 0


def test_amplification_loss_zero_without_anomaly() -> None:
    """The amplification loss is zero when the masks hold no anomalous position."""
    features = torch.rand(2, 4, 4, 4, requires_grad=True)
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    assert float(AmplificationLoss()([features], [features * 2], [mask])) == 0.0


def test_amplification_loss_caps_samples() -> None:
    """With caps, the loss is the mean hinge over a capped subset: between the smallest and largest pair's hinge."""
    torch.manual_seed(0)
    features = torch.rand(1, 4, 8, 8)
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., :2, :] = True  # 16 anomalous, 48 normal positions
    loss_fn = AmplificationLoss(num_normal=5, num_anomalous=3, margin=0.5)
    flat, flat_adv = features[0].flatten(1).T, features.flip(1)[0].flatten(1).T
    normalise = torch.nn.functional.normalize
    normal, anomalous = flat[~mask.flatten()], mask.flatten()
    hinge = torch.relu(
        normalise(normal, dim=1) @ normalise(flat_adv[anomalous], dim=1).T
        - (normalise(normal, dim=1) @ normalise(flat[anomalous], dim=1).T - 0.5),
    )
    losses = torch.stack([loss_fn([features], [features.flip(1)], [mask]) for _ in range(50)])
    assert hinge.min() <= losses.min() <= losses.max() <= hinge.max()
    assert losses.unique().numel() > 1  # other subsets each time
    assert abs(float(losses.mean()) - float(hinge.mean())) < 3 * float(hinge.std())


def test_sampling_is_uniform_without_replacement() -> None:
    """Sampled positions are distinct members, as many as the cap allows, each member equally likely."""
    torch.manual_seed(0)
    members = torch.zeros(40, dtype=torch.bool)
    members[::4] = True  # 10 members
    counts = torch.zeros(40)
    for _ in range(2000):
        indices, valid = sample_positions(members, 4)
        chosen = indices[valid]
        assert chosen.numel() == 4
        assert chosen.unique().numel() == 4
        assert members[chosen].all()
        counts[chosen] += 1
    assert counts[~members].sum() == 0
    frequencies = counts[members] / 2000  # 0.4 each; binomial standard deviation 0.011
    assert (frequencies - 0.4).abs().max() < 0.05
    indices, valid = sample_positions(members, 30)  # fewer members than the cap
    assert indices.numel() == 30
    assert valid.sum() == 10


def test_focal_loss_by_hand(device: torch.device) -> None:
    """The gate focal loss equals the focal loss computed by hand."""
    gate = torch.tensor([[[[0.9, 0.2]]]], device=device)
    mask = torch.tensor([[[[1.0, 0.0]]]], device=device)
    alpha, gamma = 0.8, 2.0
    positive = -alpha * (1 - 0.9) ** gamma * math.log(0.9)
    negative = -(1 - alpha) * 0.2**gamma * math.log(1 - 0.2)
    loss = GateFocalLoss(alpha=alpha, gamma=gamma)([gate], [mask])
    assert float(loss) == pytest.approx((positive + negative) / 2, rel=1e-5)


def test_focal_loss_finite_at_saturated_gate() -> None:
    """The gate focal loss stays finite for gate values of exactly 0 and 1."""
    gate = torch.tensor([[[[0.0, 1.0]]]])
    mask = torch.tensor([[[[1.0, 0.0]]]])
    assert torch.isfinite(GateFocalLoss()([gate], [mask]))
