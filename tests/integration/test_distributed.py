# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Lightning DDP with two CPU processes (gloo) trains AAND (both stages) and DSKD (both students).

Each run is a child process of ``ddp_fit.py``: Lightning's DDP launcher starts the script again for rank 1, which
cannot be done from inside pytest.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from anomalib_kd_ext.models.aand.synthesis import synthesis_seed

SCRIPT = Path(__file__).with_name("ddp_fit.py")
TESTS = Path(__file__).parents[1]  # on the script's PYTHONPATH for the shared `helpers` module
# Per-process statistics: without SyncBatchNorm each process keeps its own batch-norm running mean and variance.
PER_PROCESS = ("running_mean", "running_var", "num_batches_tracked")


def _fit(name: str, devices: int, dataset: Path, out: Path) -> dict:
    out.mkdir(parents=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(  # noqa: S603  # this interpreter running the test's own ddp_fit.py
        [sys.executable, str(SCRIPT), name, str(devices), str(dataset), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    seeds = [json.loads(path.read_text()) for path in sorted(out.glob("synthesis*.json"))]
    losses = json.loads((out / "losses.json").read_text())
    return {"losses": losses, "ranks": sorted(out.glob("rank*.pt")), "seeds": seeds}


# DDP settings and metric syncing are the runtime layer's, shared by both models: AAND (two stages, the gate
# metrics) runs by default, DSKD with ``-m slow``.
@pytest.mark.parametrize(
    ("name", "loss"),
    [("AAND", "train_hkd_loss"), pytest.param("DSKD", "train_loss_epoch", marks=pytest.mark.slow)],
)
def test_ddp_two_processes_match_one(name: str, loss: str, tiny_dataset: Path, tmp_path: Path) -> None:
    """DDP on two CPU processes: both ranks end with the same weights and the last loss of one process."""
    two = _fit(name, 2, tiny_dataset, tmp_path / "ddp")
    one = _fit(name, 1, tiny_dataset, tmp_path / "single")

    # Both ranks finished and hold the same trained weights (gradients were all-reduced in every step).
    assert len(two["ranks"]) == 2
    rank0, rank1 = (torch.load(path, weights_only=True) for path in two["ranks"])
    differ = [key for key in rank0 if not torch.equal(rank0[key], rank1[key])]
    assert all(key.endswith(PER_PROCESS) for key in differ), differ

    # Same global batch, same epochs: the last epoch's loss matches one process within 5 % (the two samplers
    # shuffle differently, and batch norm sees half batches).
    final_two, final_one = two["losses"][-1][loss], one["losses"][-1][loss]
    if name == "AAND":  # each rank draws its own synthetic anomalies, from the run's seed (3)
        assert two["seeds"] == [synthesis_seed(3, 0), synthesis_seed(3, 1)]
        assert one["seeds"] == [synthesis_seed(3, 0)]
    assert torch.isfinite(torch.tensor(final_two))
    assert final_two == pytest.approx(final_one, rel=0.05)
