"""The native kernels against the numpy reference on plans built here, shaped to reach every
path of the C code: specialised and generic kernel sizes and channel counts, channel counts
that are not whole blocks, pixel pairs with an odd row, dilation and strides, the byte (VNNI)
and float paths of integer convolutions, threshold tables, fused residual joins. The x86-64
baseline and AVX2 builds, and the ARM builds under qemu, run the same plans (cross_check)."""

from __future__ import annotations

import numpy as np
import pytest

from bnnpose.host.cpu_engine import Plan, Step, native_kernels
from bnnpose.hw_build import cross_check
from bnnpose.hw_build.cpu_plan import pack_weight_words

needs_cc = pytest.mark.skipif(native_kernels() is None, reason="no C compiler for the kernels")
RNG = np.random.default_rng(7)


def thresholds(channels: int, steps: int, lo: int, hi: int) -> np.ndarray:
    """Sorted integer thresholds per channel (``channels`` 1: one set for all)."""
    return np.sort(RNG.integers(lo, hi + 1, (channels, steps)), axis=1).astype(np.int32)


def window(kernel=(3, 3), stride=(1, 1), dilation=(1, 1), pads=(1, 1, 1, 1)) -> dict:
    return {"kernel": list(kernel), "stride": list(stride), "dilation": list(dilation),
            "pads": list(pads), "dense": False}


def xnor_conv(src: str, dst: str, c: int, mh: int, steps: int = 7, bipolar: bool = False,
              in_thr: bool = True, **win) -> Step:
    attrs = window(**win)
    kh, kw = attrs["kernel"]
    mw = kh * kw * c
    arrays = {"weight_words": pack_weight_words(RNG.integers(0, 2, (mw, mh)), kh, kw)}
    if in_thr:
        arrays["in_thresholds"] = RNG.integers(-2, 2, c).astype(np.int32)
    if steps:
        arrays["thresholds"] = thresholds(mh, steps, mw // 2 - 8, mw // 2 + 8)
    return Step("conv", [src], [dst], {**attrs, "mw": mw, "xnor": True, "k_bits": mw,
                                       "bipolar": bipolar, "act_val": 0 if bipolar else -4},
                arrays)


def int_conv(src: str, dst: str, c: int, mh: int, wmax: int = 100, steps: int = 0,
             **win) -> Step:
    attrs = window(**win)
    kh, kw = attrs["kernel"]
    weight = RNG.integers(-wmax, wmax + 1, (kh * kw * c, mh)).astype(np.int32)
    arrays = {"weight": weight}
    if steps:
        arrays["thresholds"] = thresholds(mh, steps, -3000, 3000)
    return Step("conv", [src], [dst], {**attrs, "mw": kh * kw * c, "xnor": False,
                                       "float_exact": True, "bipolar": False, "act_val": -4},
                arrays)


def threshold(src: str, dst: str, t: np.ndarray, bipolar: bool = False) -> Step:
    return Step("threshold", [src], [dst], {"bipolar": bipolar, "act_val": 0 if bipolar else -4},
                {"thresholds": t})


def plan_of(steps: list[Step], shape: tuple[int, ...], output: str) -> Plan:
    plan = Plan(steps, "x", output, shape, ())
    probe = plan.run(np.zeros(shape, np.int32), native=False)
    plan.output_shape = probe.shape
    return plan


def kitchen_sink() -> tuple[Plan, np.ndarray]:
    """3-bit frames [2, 8, 10, 24] through every op and path the stem does not take."""
    steps = [
        xnor_conv("x", "a", 24, 40),                                     # 40: 2.5 blocks
        xnor_conv("x", "b", 24, 8, kernel=(3, 3)),                       # a pixel pair
        xnor_conv("x", "c", 24, 16, steps=3, kernel=(1, 1), pads=(0, 0, 0, 0)),
        xnor_conv("x", "d", 24, 16, dilation=(2, 2), pads=(2, 2, 2, 2), in_thr=False),
        Step("concat", ["b", "c", "d"], ["cat"]),
        Step("binary", ["a", "cat"], ["s"], {"func": "Add"}),
        threshold("s", "r", thresholds(1, 7, -4, 4)),                   # fused, a table
        Step("maxpool", ["r"], ["p"], {**window((2, 2), (2, 2), pads=(0, 0, 0, 0)),
                                       "pad_value": 0}),
        Step("upsample", ["p"], ["u"], {"scale": [2, 2]}),
        Step("binary", ["r", "u"], ["ru"], {"func": "Add"}),            # read twice: not fused
        threshold("ru", "t", thresholds(40, 3, -6, 6)),                  # per channel
        threshold("ru", "tb", thresholds(1, 1, -20, 20), bipolar=True),
        Step("binary", ["ru"], ["m"], {"func": "Mul"},
             {"rhs": RNG.integers(-60, 61, (1, 1, 1, 40)).astype(np.int32)}),
        int_conv("r", "h", 40, 5, kernel=(1, 1), pads=(0, 0, 0, 0)),    # signed bytes path
        int_conv("r", "hw", 40, 7, wmax=300),                            # weights past int8
        int_conv("m", "hm", 40, 3, kernel=(1, 1), pads=(0, 0, 0, 0)),   # values past int8
        xnor_conv("x", "e", 24, 24, steps=1, bipolar=True, stride=(2, 2)),
        Step("upsample", ["e"], ["eu"], {"scale": [2, 2]}),
        xnor_conv("r", "f", 40, 8, steps=15, kernel=(3, 1), pads=(1, 0, 1, 0)),
        Step("concat", ["r", "u", "ru", "t", "tb", "m", "h", "hw", "hm", "eu", "f"], ["out"]),
    ]
    frames = RNG.integers(-4, 4, (2, 8, 10, 24)).astype(np.int32)
    frames[1, :2] = 3  # a saturated corner: sums at the top of every table and threshold
    return plan_of(steps, (1, 8, 10, 24), "out"), frames


def stem() -> tuple[Plan, np.ndarray]:
    """8-bit pixels into a strided 3x3 stem, then a strided binary conv, as a network begins."""
    steps = [int_conv("x", "s", 3, 24, wmax=127, steps=7, stride=(2, 2)),
             xnor_conv("s", "b", 24, 16, stride=(2, 2)),
             int_conv("b", "head", 16, 6, kernel=(1, 1), pads=(0, 0, 0, 0))]
    frames = RNG.integers(0, 256, (3, 33, 31, 3)).astype(np.int32)
    frames[2] = 255
    return plan_of(steps, (1, 33, 31, 3), "head"), frames


@needs_cc
@pytest.mark.parametrize("build", [kitchen_sink, stem])
def test_native_program_equals_the_numpy_path(build):
    plan, frames = build()
    np.testing.assert_array_equal(plan.run(frames, native=True), plan.run(frames, native=False))


@needs_cc
def test_residual_joins_fold_concat_add_and_threshold_into_one_instruction():
    plan, _ = kitchen_sink()
    kinds = [op for op, _, _ in plan.require_native().labels]
    assert kinds.count("concat+add+threshold") == 1
    assert kinds.count("Add") == 1 and kinds.count("concat") == 1  # the twice-read sum, the output
    assert kinds.count("threshold") == 2


@pytest.mark.parametrize("build", [kitchen_sink, stem])
@pytest.mark.parametrize("arch", list(cross_check.TARGETS))
def test_every_instruction_set_build_equals_the_numpy_path(build, arch, tmp_path):
    missing = cross_check.missing_tools(arch)
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    plan, frames = build()
    (row,) = cross_check.cross_check(plan, frames, [arch], tmp_path)
    assert row["bitexact"], row
