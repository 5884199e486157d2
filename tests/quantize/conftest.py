"""The shipped checkpoint and a mean pose, shared by the evaluation tests."""

from __future__ import annotations


import pytest

from bnnpose.quantize.evaluate import train_mean_pose
from bnnpose.models.checkpoint_io import load_checkpoint, shipped_checkpoint


@pytest.fixture(scope="session")
def shipped():
    return load_checkpoint(shipped_checkpoint("bhg-tiny"))[0]


@pytest.fixture(scope="session")
def mean_pose():
    return train_mean_pose(64)
