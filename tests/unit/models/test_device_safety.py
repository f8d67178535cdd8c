# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""What training on a GPU, under autocast and under DDP needs, shown on whatever device is there.

- no operation that ``torch.use_deterministic_algorithms(True)`` refuses on CUDA in a training step;
- no read of a device value on the host in a training step (run on the ``meta`` device, where any such read fails);
- losses in float32, finite in half precision, with a graph on every rank even when a batch has nothing to learn.
"""

from collections import Counter
from collections.abc import Callable

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from anomalib_kd_ext.models.aand.lightning_model import AAND
from anomalib_kd_ext.models.aand.loss import AmplificationLoss, GateFocalLoss
from anomalib_kd_ext.models.dskd.lightning_model import DSKD
from anomalib_kd_ext.models.dskd.loss import DualStudentLoss

# Operations that raise under torch.use_deterministic_algorithms(True) on CUDA (torch's documentation of it), by
# aten name. The backward ones are reached through autograd when their forward op sits in a graph with gradients.
CUDA_NONDETERMINISTIC = {
    "histc",
    "bincount",
    "median",
    "kthvalue",
    "put_",
    "nll_loss2d_forward",
    "max_unpool2d",
    "max_unpool3d",
    "avg_pool3d_backward",
    "adaptive_avg_pool2d_backward",
    "_adaptive_avg_pool2d_backward",
    "adaptive_avg_pool3d_backward",
    "_adaptive_avg_pool3d_backward",
    "adaptive_max_pool2d_backward",
    "fractional_max_pool2d_backward",
    "fractional_max_pool3d_backward",
    "upsample_linear1d_backward",
    "upsample_bilinear2d_backward",
    "upsample_bicubic2d_backward",
    "upsample_trilinear3d_backward",
    "reflection_pad1d_backward",
    "reflection_pad2d_backward",
    "reflection_pad3d_backward",
    "replication_pad1d_backward",
    "replication_pad2d_backward",
    "replication_pad3d_backward",
    "grid_sampler_2d_backward",
    "embedding_bag",
}
# Operations that read a device value on the host (a synchronisation on a GPU).
HOST_READS = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2", "is_nonzero"}


class _RecordOps(TorchDispatchMode):
    """Count the aten operations dispatched (forward and backward); ``device_ops`` those with a device tensor.

    The synthesis draws its random numbers on the host and groups images by host-side indices: those operations
    run on CPU tensors and read nothing back from the device.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.device_ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204, PLW3201
        name = func._schema.name.removeprefix("aten::")  # noqa: SLF001
        self.ops[name] += 1
        tensors = [a for a in [*args, *(kwargs or {}).values()] if isinstance(a, torch.Tensor)]
        if any(tensor.device.type != "cpu" for tensor in tensors):
            self.device_ops[name] += 1
        return func(*args, **(kwargs or {}))


def _aand(resnet18: dict) -> AAND:
    return AAND(**resnet18, amplification_epochs=1, distillation_epochs=1, evaluator=False, visualizer=False)


def _aand_stage1(model: AAND, images: torch.Tensor) -> torch.Tensor:
    return model.amplification_losses(images)[0]


def _aand_stage2(model: AAND, images: torch.Tensor) -> torch.Tensor:
    return model.loss(*model.model(images))


def _dskd(model: DSKD, images: torch.Tensor) -> torch.Tensor:
    return model.loss(model.model(images))["loss"]


STEPS: dict[str, tuple[Callable, Callable]] = {
    "AAND-amplification": (_aand, _aand_stage1),
    "AAND-distillation": (_aand, _aand_stage2),
    "DSKD": (lambda resnet18: DSKD(**resnet18, evaluator=False, visualizer=False), _dskd),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_training_step_has_no_op_refused_by_deterministic_cuda(step: str, resnet18: dict, device: torch.device) -> None:
    """Forward and backward of a training step use no operation that deterministic CUDA training refuses."""
    build, run = STEPS[step]
    model = build(resnet18).to(device).train()
    if step.startswith("AAND"):
        model.synthesizer.use_rule(model.synthesizer.rule._replace(mode="auto"))  # Otsu's rule: Folder's default
    images = torch.rand(2, 3, 64, 64, device=device)
    with _RecordOps() as recorder:
        run(model, images).backward()
    refused = sorted(set(recorder.ops) & CUDA_NONDETERMINISTIC)
    assert not refused, f"{step}: {refused} raise under deterministic CUDA training"
    assert recorder.ops["convolution_backward"] > 0  # the recorder saw the backward pass


@pytest.mark.parametrize("step", list(STEPS))
def test_training_step_reads_nothing_back_from_the_device(step: str, resnet18: dict) -> None:
    """A training step runs on the meta device, where any read of a device value on the host fails."""
    build, run = STEPS[step]
    model = build(resnet18).to("meta").train()
    if step.startswith("AAND"):
        model.synthesizer.use_rule(model.synthesizer.rule._replace(mode="auto"))
    images = torch.empty(2, 3, 64, 64, device="meta")
    with _RecordOps() as recorder:
        loss = run(model, images)
        loss.backward()
    assert loss.device.type == "meta"
    assert not set(recorder.device_ops) & HOST_READS
    assert recorder.device_ops["convolution_backward"] > 0


@pytest.mark.parametrize("model_class", [AAND, DSKD])
def test_meta_forward(model_class: type, resnet18: dict) -> None:
    """Both torch models predict shapes on the meta device (the map tail needs no autocast query that fails there)."""
    model = model_class(**resnet18, evaluator=False, visualizer=False).model.to("meta").eval()
    prediction = model(torch.empty(2, 3, 64, 64, device="meta"))
    assert prediction.anomaly_map.shape == (2, 1, 64, 64)
    assert prediction.pred_score.shape == (2, 1)
    assert prediction.anomaly_map.dtype == torch.float32


def test_batch_without_anomalies_still_backpropagates(device: torch.device) -> None:
    """No anomalous position: the amplification loss is 0 and still has a graph, so every DDP rank runs backward."""
    features = [torch.rand(2, 8, 4, 4, device=device)]
    amplified = [features[0].clone().requires_grad_()]
    masks = [torch.zeros(2, 1, 4, 4, dtype=torch.bool, device=device)]
    loss = AmplificationLoss()(features, amplified, masks)
    assert loss.requires_grad
    assert float(loss) == 0.0
    loss.backward()
    assert amplified[0].grad is not None
    assert torch.equal(amplified[0].grad, torch.zeros_like(amplified[0].grad))


def test_amplification_loss_equals_the_mean_over_sampled_pairs(device: torch.device) -> None:
    """With fewer positions than the caps every position is taken: the loss is the mean hinge over all pairs."""
    generator = torch.Generator().manual_seed(0)
    feature = torch.rand(1, 4, 3, 3, generator=generator).to(device)
    feature_adv = torch.rand(1, 4, 3, 3, generator=generator).to(device)
    mask = torch.zeros(1, 1, 3, 3, dtype=torch.bool, device=device)
    mask[0, 0, 1, 1] = mask[0, 0, 0, 2] = True
    flat, flat_adv = feature[0].flatten(1).T, feature_adv[0].flatten(1).T
    anomalous, normal = mask.flatten(), ~mask.flatten()
    normalise = torch.nn.functional.normalize
    similarity = normalise(flat[normal], dim=1) @ normalise(flat[anomalous], dim=1).T
    similarity_adv = normalise(flat[normal], dim=1) @ normalise(flat_adv[anomalous], dim=1).T
    expected = torch.relu(similarity_adv - (similarity - 0.3)).mean()
    torch.testing.assert_close(AmplificationLoss()([feature], [feature_adv], [mask]), expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_losses_are_float32_and_finite_in_half_precision(dtype: torch.dtype, device: torch.device) -> None:
    """Gates of exactly 0 and 1 and zero feature vectors in half precision give finite float32 losses."""
    gates = [torch.tensor([0.0, 1.0, 0.5, 1.0], dtype=dtype, device=device).view(1, 1, 2, 2)]
    masks = [torch.tensor([1.0, 0.0, 1.0, 1.0], device=device).view(1, 1, 2, 2)]
    focal = GateFocalLoss()(gates, masks)
    assert focal.dtype == torch.float32
    assert torch.isfinite(focal)
    zeros = [torch.zeros(1, 4, 2, 2, dtype=dtype, device=device)]
    features = type("Features", (), {"teacher": zeros, "encoder_student": zeros, "decoder_student": zeros})()
    matching = DualStudentLoss()(features)["loss"]
    assert matching.dtype == torch.float32
    assert torch.isfinite(matching)
