"""The shipped checkpoint and a mean pose, shared by the evaluation tests; a training recipe
that runs in seconds, shared by the training tests."""

from __future__ import annotations


import pytest

from bnnpose.quantize.evaluate import train_mean_pose
from bnnpose.models.checkpoint_io import load_checkpoint, shipped_checkpoint
from bnnpose.quantize.train_config import TrainConfig


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> TrainConfig:
    """64 stick-figure renders, 2 epochs of 4 steps, in a folder of the test module's own."""
    root = tmp_path_factory.mktemp("train")
    return TrainConfig(n_train=64, n_val=32, epochs=2, batch_size=16, warmup_steps=2,
                       out_dir=str(root / "full"), cache_dir=str(root / "cache"))


@pytest.fixture(scope="session")
def shipped():
    return load_checkpoint(shipped_checkpoint("bhg-tiny"))[0]


@pytest.fixture(scope="session")
def mean_pose():
    return train_mean_pose(64)
