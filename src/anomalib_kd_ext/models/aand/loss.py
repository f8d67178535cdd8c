# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Losses of AAND.

Stage 1 (anomaly amplification) trains the RAA modules with

- :class:`GateFocalLoss` on the predicted gate against the synthetic mask, and
- :class:`AmplificationLoss`, which asks amplified anomalous features to be at least a margin less
  similar to normal features than the vanilla anomalous features are.

Stage 2 (normality distillation) trains the student with :class:`HardKnowledgeDistillationLoss`.

Example:
    >>> import torch
    >>> from anomalib_kd_ext.models.aand.loss import HardKnowledgeDistillationLoss
    >>> loss = HardKnowledgeDistillationLoss(k_hard=10)
    >>> t = [torch.rand(2, 8, 8, 8)]
    >>> float(loss(t, t)) < 1e-6
    True
"""

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from anomalib_kd_ext.models.components import EPS, cosine_distance

PROBABILITY_EPS = 1e-6


class GateFocalLoss(nn.Module):
    """Binary focal loss on probabilities, averaged over positions (and summed over levels).

    ``-alpha (1-w)^gamma y log w - (1-alpha) w^gamma (1-y) log(1-w)``

    Args:
        alpha (float): Weight of the anomaly class. Defaults to ``0.8``.
        gamma (float): Focusing exponent. Defaults to ``2``.
    """

    def __init__(self, alpha: float = 0.8, gamma: float = 2.0) -> None:
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, gates: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> torch.Tensor:
        """Sum over levels of the mean focal loss of gates (N, 1, H, W) against binary masks of the same shape."""
        total = gates[0].new_zeros((), dtype=torch.float32)
        for gate, mask in zip(gates, masks, strict=True):
            prob = gate.float().clamp(PROBABILITY_EPS, 1 - PROBABILITY_EPS)  # 1 - 1e-6 is 1 in half precision
            target = mask.to(prob.dtype)
            positive = -self.alpha * (1 - prob) ** self.gamma * target * torch.log(prob)
            negative = -(1 - self.alpha) * prob**self.gamma * (1 - target) * torch.log(1 - prob)
            total = total + (positive + negative).mean()
        return total


def _pairwise_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(P, C) x (Q, C) -> (P, Q) cosine similarities, in float32 (``EPS`` is 0 in half precision)."""
    return F.normalize(a.float(), dim=1, eps=EPS) @ F.normalize(b.float(), dim=1, eps=EPS).T


def sample_positions(members: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``count`` positions drawn uniformly without replacement among the ``True`` entries of ``members`` (P,).

    Returns ``min(count, P)`` indices and a mask of the valid ones (fewer members than ``count`` leave the rest
    invalid). Shapes do not depend on the data: no host read (``nonzero``) and the same work on every rank.
    """
    keys = torch.rand(members.shape[0], device=members.device)
    keys = torch.where(members, keys, -1.0)  # members draw in [0, 1), the others never win against them
    values, indices = keys.topk(min(count, members.shape[0]))
    return indices, values >= 0


class AmplificationLoss(nn.Module):
    """Amplification loss of stage 1.

    Per level, up to ``num_normal`` normal foreground positions ``n`` and up to ``num_anomalous``
    anomalous positions ``a`` are sampled across the batch, and

    ``loss = mean_{n,a} relu(cos(F_n, F_adv_a) - (cos(F_n, F_a) - margin))``.

    The loss of a level is zero when the batch has no anomalous (or no normal) position.

    Args:
        margin (float): Margin ``alpha`` by which amplification must lower the similarity. Defaults to ``0.3``.
        num_normal (int): Cap on sampled normal positions. Defaults to ``5000``.
        num_anomalous (int): Cap on sampled anomalous positions. Defaults to ``1000``.
    """

    def __init__(self, margin: float = 0.3, num_normal: int = 5000, num_anomalous: int = 1000) -> None:
        super().__init__()
        self.margin = margin
        self.num_normal = num_normal
        self.num_anomalous = num_anomalous

    def forward(
        self,
        features: Sequence[torch.Tensor],
        amplified: Sequence[torch.Tensor],
        anomaly_masks: Sequence[torch.Tensor],
        foreground_masks: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Compute the loss.

        Args:
            features: Vanilla teacher features ``F`` per level, (N, C, H, W).
            amplified: Amplified features ``F_adv`` per level, (N, C, H, W).
            anomaly_masks: Boolean anomaly masks per level, (N, 1, H, W).
            foreground_masks: Boolean foreground masks per level, (N, 1, H, W); normal positions are
                taken from the foreground only. ``None`` means the whole image.
        """
        total = features[0].new_zeros((), dtype=torch.float32)
        foregrounds = foreground_masks if foreground_masks is not None else [None] * len(features)
        for feature, feature_adv, mask, foreground in zip(features, amplified, anomaly_masks, foregrounds, strict=True):
            channels = feature.shape[1]
            flat = feature.permute(0, 2, 3, 1).reshape(-1, channels)
            flat_adv = feature_adv.permute(0, 2, 3, 1).reshape(-1, channels)
            anomalous = mask.reshape(-1).bool()
            normal = ~anomalous if foreground is None else ~anomalous & foreground.reshape(-1).bool()
            normal_idx, normal_valid = sample_positions(normal, self.num_normal)
            anomalous_idx, anomalous_valid = sample_positions(anomalous, self.num_anomalous)
            normal_features = flat[normal_idx]
            similarity = _pairwise_cosine(normal_features, flat[anomalous_idx])
            similarity_adv = _pairwise_cosine(normal_features, flat_adv[anomalous_idx])
            pairs = (normal_valid.unsqueeze(1) & anomalous_valid.unsqueeze(0)).float()
            hinge = F.relu(similarity_adv - (similarity - self.margin))
            # mean over the valid pairs; zero, with a graph, when the batch has no anomalous or normal position
            total = total + (hinge * pairs).sum() / pairs.sum().clamp_min(1)
        return total


class HardKnowledgeDistillationLoss(nn.Module):
    """Hard Knowledge Distillation (HKD) loss of stage 2.

    Per level, with ``d(p) = 1 - cos(F_adv(p), S(p))`` along channels, the mean over the batch of the
    mean of each image's ``k_hard`` largest ``d``, plus RD4AD's global term
    ``1 - cos(flatten(F_adv), flatten(S))`` averaged over the batch. Summed over levels.

    Args:
        k_hard (int): Hard positions per image ``K_h``. Defaults to ``10``.
        use_hard (bool): With ``False`` (ablation "HKD off") only RD4AD's global term remains. Defaults to ``True``.
    """

    def __init__(self, k_hard: int = 10, use_hard: bool = True) -> None:
        super().__init__()
        if k_hard < 1:
            msg = f"k_hard must be a positive number of positions, got {k_hard}."
            raise ValueError(msg)
        self.k_hard = k_hard
        self.use_hard = use_hard

    def forward(
        self,
        teacher_features: Sequence[torch.Tensor],
        student_features: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """Sum over levels; features are (N, C, H, W) lists, teacher (target) first."""
        total = teacher_features[0].new_zeros((), dtype=torch.float32)
        for teacher_level, student_level in zip(teacher_features, student_features, strict=True):
            teacher, student = teacher_level.float(), student_level.float()  # EPS is 0 in half precision
            batch_size = teacher.shape[0]
            if self.use_hard:
                distance = cosine_distance(teacher, student).flatten(1)  # (N, H * W)
                if self.k_hard > distance.shape[1]:
                    msg = (
                        f"k_hard={self.k_hard} exceeds the {distance.shape[1]} positions of a "
                        f"{tuple(teacher.shape[-2:])} feature map: lower k_hard or use a larger input size."
                    )
                    raise ValueError(msg)
                total = total + distance.topk(self.k_hard, dim=1).values.mean()
            global_similarity = F.cosine_similarity(
                teacher.reshape(batch_size, -1),
                student.reshape(batch_size, -1),
                dim=1,
                eps=EPS,
            )
            total = total + (1 - global_similarity).mean()
        return total
