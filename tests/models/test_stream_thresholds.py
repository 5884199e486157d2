"""BatchNorm -> k-bit stream as integer thresholds: the same levels as BatchNorm and rounding
away from ties, ties rounding up, in every stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bnnpose.models.blocks import Stem, StreamRequant, stream_thresholds


def _levels_exact(bn: nn.BatchNorm2d, bits: int, y: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Levels of BatchNorm then round-half-up and clamp, and BatchNorm's output z, in float64,
    for y [N, C]."""
    a = bn.weight.detach().double().numpy() / np.sqrt(bn.running_var.double().numpy() + bn.eps)
    c = bn.bias.detach().double().numpy() - bn.running_mean.double().numpy() * a
    z = a[None] * y + c[None]
    return np.clip(np.floor(z + 0.5), -2 ** (bits - 1), 2 ** (bits - 1) - 1), z


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_thresholds_give_batchnorm_levels_on_the_grid(bits):
    torch.manual_seed(0)
    c = 12
    bn = nn.BatchNorm2d(c).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-40, 40)
        bn.running_var.uniform_(1, 400)
        bn.weight.uniform_(-2, 2)
        bn.weight[0] = 0.0  # a constant channel
        bn.bias.uniform_(-2, 2)
    step = 2.0 ** torch.randint(-9, -3, (c,)).float()
    n = np.arange(-4000, 4001, dtype=np.float64)
    y = n[:, None] * step.double().numpy()[None]
    sign, t = stream_thresholds(bn, bits, step)
    assert t.dtype == torch.float32 and t.shape == (c, 2 ** bits - 1)
    assert bool((t[:, 1:] >= t[:, :-1]).all())
    # Every threshold is a grid value, so it is exact in float32.
    assert torch.equal(t.double() / step.double()[:, None],
                       torch.round(t.double() / step.double()[:, None]))
    got = (sign.numpy()[None, :, None] * y[:, :, None] >= t.numpy()[None]).sum(-1) \
        - 2 ** (bits - 1)
    want, z = _levels_exact(bn, bits, y)
    np.testing.assert_array_equal(got, want)
    # Away from ties, PyTorch's BatchNorm and half-to-even rounding agree with them.
    with torch.no_grad():
        ref = torch.clamp(torch.round(bn(torch.from_numpy(y).float()[:, :, None, None])),
                          -2 ** (bits - 1), 2 ** (bits - 1) - 1)[:, :, 0, 0].numpy()
    far = np.abs(z - np.round(z - 0.5) - 0.5) > 1e-4
    assert far.mean() > 0.99
    np.testing.assert_array_equal(got[far], ref[far])


def test_eval_levels_round_ties_up_and_training_keeps_batchnorm():
    torch.manual_seed(0)
    stem = Stem(4, bits=3, binary=True, weight_bits=8)
    step = stem.conv.quant_weight().scale.flatten()
    with torch.no_grad():
        # z = y / (4 step) + 1/2: every fourth grid value sits exactly on a level boundary.
        stem.bn.eps = 0.0
        stem.bn.running_var.fill_(1.0)
        stem.bn.running_mean.zero_()
        stem.bn.weight.copy_(1.0 / (4 * step) * torch.tensor([1.0, -1.0, 1.0, -1.0]))
        stem.bn.bias.fill_(0.5)
    x = torch.randint(0, 256, (2, 3, 16, 16)).float()
    stem.eval()
    with torch.no_grad():
        y = stem.conv(torch.nn.functional.pad(x, (1, 1, 1, 1)))
        levels = stem(x)
        z = stem.bn(y)
        half_even = torch.clamp(torch.round(z), -4, 3)
    ties = (z - 0.5) == torch.floor(z - 0.5)
    assert int(ties.sum()) > 10  # the input meets ties
    assert torch.equal(levels[~ties], half_even[~ties])
    assert torch.equal(levels[ties], torch.clamp(z[ties] + 0.5, -4, 3))  # ties round up
    assert isinstance(stem, StreamRequant)
    stem.train()
    stem.bn.eps = 1e-5
    with torch.no_grad():
        assert torch.equal(stem(x), stem.quant(stem.bn(y)))  # BatchNorm of the batch
