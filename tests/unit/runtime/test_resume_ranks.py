# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Random states of a multi-process run: every rank's are saved, each rank gets its own back."""

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.trainer.states import TrainerFn

from anomalib_kd_ext.models.aand.perlin import BatchedPerlinGenerator
from anomalib_kd_ext.runtime import resume
from anomalib_kd_ext.runtime.resume import CHECKPOINT_KEY, capture_random_state, load_random_state

FITTING = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING))  # a trainer in the middle of a fit


class _Module(LightningModule):
    """A module with a submodule that keeps its own generator (as AAND's synthesis)."""

    def __init__(self) -> None:
        super().__init__()
        self.synthesis = BatchedPerlinGenerator()


def _state_of_rank(seed: int, module: _Module) -> dict:
    torch.manual_seed(seed)
    module.synthesis.seed(seed + 100)
    return capture_random_state(module)


@pytest.mark.parametrize(("rank", "world_size"), [(0, 2), (1, 2), (1, 3)])
def test_each_rank_gets_its_own_states_back(rank: int, world_size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """With as many processes as saved, rank r restores rank r's states; with another number, rank 0's."""
    module = _Module()
    states = [_state_of_rank(seed, module) for seed in (1, 2)]
    expected_rank = rank if world_size == len(states) else 0
    torch.manual_seed(99)
    module.synthesis.seed(99)
    monkeypatch.setattr(resume, "_world", lambda trainer: (rank, world_size))  # noqa: ARG005
    load_random_state(FITTING, module, {CHECKPOINT_KEY: {"per_rank": states}})
    assert torch.equal(torch.get_rng_state(), states[expected_rank]["torch"])
    restored = module.synthesis.generator.get_state()
    if world_size == len(states):
        assert torch.equal(restored, states[expected_rank]["modules"]["synthesis"])
    else:  # rank 0's stream, split by rank: not rank 0's, and not what another rank continues with
        assert not torch.equal(restored, states[0]["modules"]["synthesis"])
        other = _Module()
        other.synthesis.generator.set_state(states[0]["modules"]["synthesis"])
        monkeypatch.setattr(resume, "_world", lambda trainer: (rank + 1, world_size))  # noqa: ARG005
        load_random_state(FITTING, other, {CHECKPOINT_KEY: {"per_rank": states}})
        assert not torch.equal(other.synthesis.generator.get_state(), restored)
    assert module.synthesis.seeded


def test_single_process_checkpoints_of_before_still_resume() -> None:
    """A checkpoint that holds one state (no per-rank list) restores it."""
    module = _Module()
    state = _state_of_rank(4, module)
    torch.manual_seed(0)
    load_random_state(FITTING, module, {CHECKPOINT_KEY: state})
    assert torch.equal(torch.get_rng_state(), state["torch"])
