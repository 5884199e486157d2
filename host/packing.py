"""Fold/pack/unpack/unfold between numpy tensors and the byte layout of the accelerator DMA.

The layout is the one finn-plus's PYNQ driver uses (``FINNDMAOverlay.pack_input`` /
``unpack_output``): the innermost folded dimension is bit-packed with both the SIMD order and
the byte order reversed. The actual bit work is delegated to ``finn_plus_driver.packing`` on a
board, or to ``finn.util.data_packing`` on a build host, so the host never carries its own
copy of the bit layout that could drift from the one FINN generated the hardware for.

Shapes come from an ``io_shape`` dict (``io_shape.json`` of an overlay), which stores them for
batch 1; every function here takes the batch size from the array it is given instead.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from bnnpose.host.common import BnnposeError

if TYPE_CHECKING:
    from qonnx.core.datatype import BaseDataType

#: Keys of an io_shape dict that every accelerator has, in the order they are checked.
IO_SHAPE_KEYS = (
    "idt", "odt", "ishape_normal", "ishape_folded", "ishape_packed",
    "oshape_normal", "oshape_folded", "oshape_packed",
)


@functools.cache
def packing_module() -> ModuleType:
    """The module that implements FINN's ``finnpy_to_packed_bytearray`` and its inverse."""
    # The driver's copy is preferred because it is what a board has; the compiler's copy is
    # the same code (finn-plus keeps them in sync) and is what a build host has.
    try:
        from finn_plus_driver import packing
    except ImportError:
        try:
            from finn.util import data_packing as packing
        except ImportError as e:
            raise BnnposeError(
                f"packing needs finn-plus-driver (on a board) or finn-plus (on a build host): {e}"
            ) from None
    return packing


def datatype(name: str) -> BaseDataType:
    """The qonnx DataType for ``"DataType['INT5']"`` (io_shape.json spelling) or ``"INT5"``."""
    packing_module()  # fails with the install hint before qonnx's own ImportError could
    from qonnx.core.datatype import DataType

    inner = name[name.find("[") + 1 : name.rfind("]")] if "[" in name else name
    try:
        return DataType[inner.strip("'\" ")]
    except (KeyError, ValueError):  # qonnx parses "INT<n>" with int() before its KeyError
        raise BnnposeError(f"io_shape: unknown FINN datatype {name!r}") from None


@dataclass(frozen=True)
class TensorSpec:
    """One accelerator input or output as the DMA sees it (shapes for batch 1)."""

    dtype: Any  # qonnx BaseDataType; Any so this module imports without qonnx
    normal: tuple[int, ...]
    folded: tuple[int, ...]
    packed: tuple[int, ...]

    def packed_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, *self.packed[1:])


def input_spec(io_shape: Mapping[str, Any], ind: int = 0) -> TensorSpec:
    """The ``ind``-th accelerator input described by ``io_shape``."""
    return _spec(io_shape, "i", ind)


def output_spec(io_shape: Mapping[str, Any], ind: int = 0) -> TensorSpec:
    """The ``ind``-th accelerator output described by ``io_shape``."""
    return _spec(io_shape, "o", ind)


def _spec(io_shape: Mapping[str, Any], side: str, ind: int) -> TensorSpec:
    missing = [k for k in IO_SHAPE_KEYS if k not in io_shape]
    if missing:
        raise BnnposeError(f"io_shape: missing {', '.join(missing)}")
    what = "input" if side == "i" else "output"
    try:
        dt = datatype(io_shape[f"{side}dt"][ind])
        normal, folded, packed = (
            tuple(int(d) for d in io_shape[f"{side}shape_{kind}"][ind])
            for kind in ("normal", "folded", "packed")
        )
    except (IndexError, TypeError, ValueError):
        raise BnnposeError(f"io_shape: no well-formed {what} {ind}") from None
    # A mismatch here means io_shape.json was edited or belongs to another build; catching it
    # now beats a reshape error deep inside packing.
    if int(np.prod(normal)) != int(np.prod(folded)):
        raise BnnposeError(f"io_shape: {what} {ind} normal {normal} and folded {folded} differ")
    want_bytes = -(-folded[-1] * dt.bitwidth() // 8)
    if packed != (*folded[:-1], want_bytes):
        raise BnnposeError(
            f"io_shape: {what} {ind} packed shape {packed} does not fit folded {folded} of "
            f"{dt.name} (expected {(*folded[:-1], want_bytes)})"
        )
    return TensorSpec(dtype=dt, normal=normal, folded=folded, packed=packed)


def fold(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Normal tensor ``[N, *normal[1:]]`` -> folded ``[N, *folded[1:]]`` (a view when possible)."""
    if tuple(x.shape[1:]) != spec.normal[1:]:
        raise BnnposeError(
            f"tensor shape {tuple(x.shape)} does not match the accelerator's "
            f"[N, {', '.join(map(str, spec.normal[1:]))}]"
        )
    return x.reshape(x.shape[0], *spec.folded[1:])


def unfold(x_folded: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Folded tensor ``[N, *folded[1:]]`` -> normal ``[N, *normal[1:]]``."""
    return x_folded.reshape(x_folded.shape[0], *spec.normal[1:])


def pack(x_folded: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Folded tensor of ``spec.dtype`` values -> packed uint8 ``[N, *packed[1:]]``.

    Any numeric container works; whole-byte integer types in their native numpy container
    (uint8 images for UINT8) take FINN's copy-free path, so the result may share memory with
    ``x_folded``.
    """
    dt = spec.dtype
    x = np.asarray(x_folded)
    _check_values(x, dt)
    if dt.is_integer() and dt.bitwidth() % 8 == 0 and dt.name != "BIPOLAR":
        x = x.astype(dt.to_numpy_dt(), copy=False)
    buf = packing_module().finnpy_to_packed_bytearray(
        x, dt, reverse_inner=True, reverse_endian=True
    )
    return np.ascontiguousarray(buf)


def unpack(buf: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Packed uint8 ``[N, *packed[1:]]`` -> folded float32 ``[N, *folded[1:]]``."""
    # FINN's fast 8/16-bit path reinterprets the bytes with .view(), which needs contiguity.
    buf = np.ascontiguousarray(check_packed(buf, spec))
    return packing_module().packed_bytearray_to_finnpy(
        buf, spec.dtype, (buf.shape[0], *spec.folded[1:]),
        reverse_inner=True, reverse_endian=True,
    ).astype(np.float32, copy=False)


def check_packed(buf: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Fail with a one-line BnnposeError unless ``buf`` is uint8 ``[N, *packed[1:]]``."""
    buf = np.asarray(buf)
    if buf.dtype != np.uint8 or tuple(buf.shape[1:]) != spec.packed[1:]:
        raise BnnposeError(
            f"packed buffer {buf.dtype}{list(buf.shape)} does not match the accelerator's "
            f"uint8[N, {', '.join(map(str, spec.packed[1:]))}]"
        )
    return buf


def to_packed(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Normal tensor ``[N, *normal[1:]]`` -> packed uint8 ``[N, *packed[1:]]`` (fold + pack)."""
    return pack(fold(x, spec), spec)


def to_normal(buf: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Packed uint8 ``[N, *packed[1:]]`` -> normal float32 ``[N, *normal[1:]]`` (unpack+unfold)."""
    return unfold(unpack(buf, spec), spec)


def _check_values(x: np.ndarray, dt: BaseDataType) -> None:
    # FINN only asserts on bad values (and not at all on its fast paths), which would wrap
    # silently into the wrong bit pattern; one range check is cheap next to packing.
    if not dt.is_integer():
        return
    if x.dtype.kind in "iu" and dt.name != "BIPOLAR":
        info = np.iinfo(x.dtype)
        if info.min >= dt.min() and info.max <= dt.max():
            return
    if x.size and not np.all(dt.allowed(x)):
        raise BnnposeError(
            f"values in [{x.min()}, {x.max()}] are not all {dt.name} "
            f"(integers in [{dt.min()}, {dt.max()}])"
        )
