"""Packing must reproduce finn's driver byte layout exactly and round-trip losslessly."""

from __future__ import annotations

import numpy as np
import pytest

from bnnpose.host.common import BnnposeError
from bnnpose.host.packing import (
    datatype, input_spec, output_spec, pack, to_normal, to_packed, unpack,
)

dp = pytest.importorskip("finn.util.data_packing")
DataType = pytest.importorskip("qonnx.core.datatype").DataType

RNG = np.random.default_rng(0)


def io_shape_for(dt_name: str, normal: tuple[int, ...], fold: int) -> dict:
    """An io_shape whose packed shapes come from finn's own packer, as make_driver does."""
    dt = DataType[dt_name]
    folded = (*normal[:-1], normal[-1] // fold, fold)
    dummy = dp.finnpy_to_packed_bytearray(
        np.zeros(folded, np.float32) + (1 if dt_name == "BIPOLAR" else 0), dt,
        reverse_inner=True, reverse_endian=True,
    )
    shape = {"idt": [f"DataType['{dt_name}']"], "odt": [f"DataType['{dt_name}']"]}
    for side in "io":
        shape[f"{side}shape_normal"] = [list(normal)]
        shape[f"{side}shape_folded"] = [list(folded)]
        shape[f"{side}shape_packed"] = [list(dummy.shape)]
    return shape


def random_values(dt_name: str, shape: tuple[int, ...]) -> np.ndarray:
    dt = DataType[dt_name]
    if dt_name == "BIPOLAR":
        return RNG.choice([-1.0, 1.0], size=shape).astype(np.float32)
    return RNG.integers(dt.min(), dt.max() + 1, size=shape).astype(np.float32)


def hexstring_reference(x_folded: np.ndarray, dt) -> np.ndarray:
    """FINN's original bit-by-bit packer (hex strings), independent of the vectorised paths."""
    bits = x_folded.shape[-1] * dt.bitwidth()
    width = -(-bits // 8) * 8
    hexes = dp.pack_innermost_dim_as_hex_string(x_folded, dt, width, reverse_inner=True)
    rows = [dp.hexstring2npbytearray(str(h))[::-1] for h in hexes.reshape(-1)]
    return np.stack(rows).reshape(*x_folded.shape[:-1], width // 8)


def test_uint8_image_roundtrip_and_finn_bytes(io_shape):
    spec = input_spec(io_shape)
    img = RNG.integers(0, 256, size=(1, 128, 128, 3), dtype=np.uint8)
    buf = to_packed(img, spec)
    assert buf.dtype == np.uint8 and buf.shape == tuple(io_shape["ishape_packed"][0])
    finn = dp.finnpy_to_packed_bytearray(
        img.reshape(spec.folded).astype(np.float32), DataType["UINT8"],
        reverse_inner=True, reverse_endian=True,
    )
    np.testing.assert_array_equal(buf, finn)
    # A float container of the same values must give the same bytes as the uint8 fast path.
    np.testing.assert_array_equal(to_packed(img.astype(np.float32), spec), buf)
    back = to_normal(buf, spec)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, img)


@pytest.mark.parametrize(
    "dt_name, normal, fold",
    [
        ("INT5", (1, 32, 32, 16), 4),
        ("INT5", (1, 32, 32, 16), 16),
        ("INT2", (1, 8, 8, 16), 8),
        ("INT3", (1, 8, 8, 12), 3),
        ("INT4", (1, 8, 8, 16), 2),
        ("INT7", (1, 8, 8, 16), 16),
        ("INT8", (1, 8, 8, 16), 4),
        ("INT12", (1, 4, 4, 6), 3),
        ("INT16", (1, 4, 4, 8), 8),
        ("UINT4", (1, 8, 8, 8), 8),
        ("BIPOLAR", (1, 8, 8, 16), 16),
    ],
)
def test_intk_matches_finn_and_roundtrips(dt_name, normal, fold):
    io_shape = io_shape_for(dt_name, normal, fold)
    spec = output_spec(io_shape)
    for batch in (1, 3):
        y = random_values(dt_name, (batch, *normal[1:]))
        buf = to_packed(y, spec)
        assert buf.shape == (batch, *spec.packed[1:]) and buf.dtype == np.uint8
        finn = dp.finnpy_to_packed_bytearray(
            y.reshape(batch, *spec.folded[1:]), DataType[dt_name],
            reverse_inner=True, reverse_endian=True,
        )
        np.testing.assert_array_equal(buf, finn)
        np.testing.assert_array_equal(to_normal(buf, spec), y)
    # The bit-by-bit reference is slow, and every packed word is independent: two rows suffice.
    y_folded = y.reshape(batch, *spec.folded[1:])[:, :2]
    np.testing.assert_array_equal(
        pack(y_folded, spec), hexstring_reference(y_folded, DataType[dt_name])
    )


def test_unpack_matches_finn_on_arbitrary_bytes(io_shape):
    spec = output_spec(io_shape)
    buf = RNG.integers(0, 256, size=(2, *spec.packed[1:]), dtype=np.uint8)
    # Padding bits are the top 4 bits of each 20-bit word; clear them like the hardware does.
    buf[..., -1] &= 0x0F
    ours = unpack(buf, spec)
    finn = dp.packed_bytearray_to_finnpy(
        buf, DataType["INT5"], (2, *spec.folded[1:]), reverse_inner=True, reverse_endian=True
    )
    np.testing.assert_array_equal(ours, finn)
    np.testing.assert_array_equal(to_packed(to_normal(buf, spec), spec), buf)


@pytest.mark.parametrize("bad", [16.0, -17.0, 2.5])
def test_out_of_range_values_are_rejected(bad, io_shape):
    spec = output_spec(io_shape)
    y = np.zeros((1, 32, 32, 16), np.float32)
    y[0, 3, 4, 5] = bad
    with pytest.raises(BnnposeError, match="INT5"):
        to_packed(y, spec)


def test_shape_mismatches_are_one_line_errors(io_shape):
    spec = input_spec(io_shape)
    with pytest.raises(BnnposeError, match=r"\[N, 128, 128, 3\]"):
        to_packed(np.zeros((1, 64, 64, 3), np.uint8), spec)
    with pytest.raises(BnnposeError, match="uint8"):
        to_normal(np.zeros((1, 128, 128, 1, 3), np.int16), spec)


def test_bad_io_shape_is_reported(io_shape):
    with pytest.raises(BnnposeError, match="missing odt"):
        output_spec({k: v for k, v in io_shape.items() if k != "odt"})
    wrong = {**io_shape, "oshape_packed": [[1, 32, 32, 4, 4]]}
    with pytest.raises(BnnposeError, match="packed shape"):
        output_spec(wrong)
    with pytest.raises(BnnposeError, match="unknown FINN datatype"):
        datatype("DataType['INT99X']")
    assert datatype("DataType['INT5']") == datatype("INT5") == DataType["INT5"]
