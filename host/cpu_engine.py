"""Bit-packed XNOR-popcount execution of an overlay's folded FINN graph on a CPU.

The software path beside the accelerator, as BNN-PYNQ offered one: the same integers the
hardware computes, from numpy alone, so it runs on a board's ARM cores as well as on a PC.

A :class:`Plan` is compiled once from ``model_hw.onnx`` on a build host
(``hw_build.cpu_plan.compile_plan``, which needs onnx) and saved as ``cpu_plan.npz`` beside it;
loading and running a plan, all this module does, needs only numpy. Compilation maps FINN's
streaming nodes back onto the layers they implement, because folding (PE/SIMD) and the stream
plumbing change the schedule, not the arithmetic:

* ``[FMPadding] -> ConvolutionInputGenerator -> MVAU`` is one convolution. With
  ``binaryXnorMode`` the activations are packed 8 channels per byte and the window's bytes
  into 64-bit words; the weights are packed the same way at compile time, and the dot product
  is ``K - popcount(a ^ w)`` matches, which is what FINN's MVAU thresholds.
* ``[FMPadding] -> depthwise ConvolutionInputGenerator -> Pool(MaxPool)`` is a max-pool.
* Thresholding, ElementwiseAdd, StreamingConcat, UpsampleNearestNeighbour keep their meaning;
  DuplicateStreams, FIFOs and width converters move no values and become aliases.

Every other op is refused at compile time with its name, never executed approximately.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bnnpose.host.common import BnnposeError, atomic_writer

PLAN_FILE = "cpu_plan.npz"
#: The cpu backend's engines: the C kernels, or the numpy reference path.
ENGINES = ("native", "numpy")
#: Bumped whenever the meaning of a step changes, so a stale plan is refused, not misread.
PLAN_FORMAT = 1

#: Nodes that only move or copy a stream.
ALIASES = ("DuplicateStreams", "StreamingFIFO", "StreamingDataWidthConverter")

#: FINN keeps accumulators integer; float32 products are exact while every partial sum stays
#: below 2**24, which is when the BLAS path is taken.
FLOAT_EXACT = 2**24


@dataclass
class Step:
    """One operation of a plan: ``outputs = OPS[op](inputs, attrs, arrays)``."""

    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Plan:
    """A compiled graph: steps in execution order over named NHWC integer tensors."""

    steps: list[Step]
    input_name: str
    output_name: str
    input_shape: tuple[int, ...]  #: normal NHWC shape for batch 1
    output_shape: tuple[int, ...]
    source_sha256: str = ""  #: sha256 of the model_hw.onnx it was compiled from

    def run(self, x: np.ndarray, native: bool = True) -> np.ndarray:
        """Normal-shaped integer input ``[N, H, W, C]`` -> normal-shaped output, float32.

        Args:
            native: run the whole plan in the compiled C program (a one-line error when it
                cannot be built here); ``False`` is the numpy reference path.
        """
        x = np.asarray(x)
        if tuple(x.shape[1:]) != self.input_shape[1:]:
            raise BnnposeError(f"cpu engine: input {list(x.shape)} does not match "
                               f"[N, {', '.join(map(str, self.input_shape[1:]))}]")
        if native:
            program = self.require_native()
            out = np.empty((len(x), *program.out_shape), np.float32)
            for xi, yi in zip(x, out):
                program.run(xi, yi)
            return out
        env = {self.input_name: np.ascontiguousarray(x, dtype=np.int32)}
        for step in self.steps:
            results = OPS[step.op]([env[i] for i in step.inputs], step.attrs, step.arrays)
            env.update(zip(step.outputs, results))
        return env[self.output_name].astype(np.float32)

    def require_native(self) -> _NativeProgram:
        """The native program, built at first call, or one line saying why there is none and
        what to do."""
        program = self._program()
        if program is None:
            raise BnnposeError(f"cpu engine: no native program ({self._native_error}); "
                               "--engine numpy runs the numpy reference path instead")
        return program

    def profile(self, frame: np.ndarray, iters: int = 20) -> list[dict]:
        """Time per native instruction on one frame ``[H, W, C]``: op, output tensor and
        shape, seconds (median of ``iters``), in program order."""
        program = self.require_native()
        seconds = program.profile(np.asarray(frame, np.int32), iters)
        return [{"op": op, "output": name, "shape": list(shape), "seconds": t}
                for (op, name, shape), t in zip(program.labels, seconds, strict=True)]

    def native_image(self) -> bytes:
        """The native program as a plan image for ``xnor_main.c``, which runs it without
        Python (for builds for other CPUs, checked under an emulator)."""
        try:
            return _NativeProgram(self, None).image()
        except _NotNative as e:
            raise BnnposeError(f"cpu engine: no native program ({e})") from None

    def _program(self) -> _NativeProgram | None:
        if not hasattr(self, "_native"):
            self._native, self._native_error = None, ""
            lib = native_kernels()
            if lib is None:
                self._native_error = _NATIVE_ERROR[0]
            else:
                try:
                    self._native = _NativeProgram(self, lib)
                except _NotNative as e:
                    self._native_error = str(e)
        return self._native

    def save(self, path: str | os.PathLike) -> None:
        """Write the plan as one ``.npz`` (a JSON header plus the arrays), atomically.

        The same plan always gives the same bytes: ``np.savez`` stamps every member with the
        time of writing, so the archive is written here with a fixed stamp instead, and a
        rebuilt overlay is byte-identical to the one it replaces.
        """
        header = {
            "format": PLAN_FORMAT, "input_name": self.input_name, "output_name": self.output_name,
            "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
            "source_sha256": self.source_sha256,
            "steps": [{"op": s.op, "inputs": s.inputs, "outputs": s.outputs, "attrs": s.attrs,
                       "arrays": sorted(s.arrays)} for s in self.steps],
        }
        arrays = {f"{i}/{k}": v for i, s in enumerate(self.steps) for k, v in s.arrays.items()}
        members = {"header": np.array(json.dumps(header)), **arrays}
        with atomic_writer(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
            for name, value in members.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with archive.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Plan:
        """Read a plan written by :meth:`save`; one-line error for anything else."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                header = json.loads(str(npz["header"]))
                if header.get("format") != PLAN_FORMAT:
                    raise BnnposeError(f"{path}: plan format {header.get('format')} is not "
                                       f"{PLAN_FORMAT}; recompile it from model_hw.onnx")
                steps = [Step(s["op"], s["inputs"], s["outputs"], s["attrs"],
                              {k: npz[f"{i}/{k}"] for k in s["arrays"]})
                         for i, s in enumerate(header["steps"])]
        except BnnposeError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BnnposeError(f"not a cpu engine plan: {path} ({e})") from None
        unknown = sorted({s.op for s in steps} - set(OPS))
        if unknown:
            raise BnnposeError(f"{path}: unknown steps {', '.join(unknown)}")
        return cls(steps, header["input_name"], header["output_name"],
                   tuple(header["input_shape"]), tuple(header["output_shape"]),
                   header.get("source_sha256", ""))


# --------------------------------------------------------------------------- operations


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits of each element of a uint64 array."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(words)
    # numpy 1.x, as on older PYNQ images: a byte table.
    b = _BYTE_POPCOUNT[words.view(np.uint8)].reshape(*words.shape, 8)
    return b.sum(axis=-1, dtype=np.uint8)


_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _window_slices(x: np.ndarray, kernel: list[int], stride: list[int], dilation: list[int],
                   pads: list[int], pad_value: int = 0) -> list[np.ndarray]:
    """NHWC ``x`` -> one strided ``[N, OH, OW, C]`` view per kernel tap, in (kh, kw) order."""
    if any(pads):
        top, left, bottom, right = pads
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)),
                   constant_values=pad_value)
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    oh = (x.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (x.shape[2] - (kw - 1) * dw - 1) // sw + 1
    return [x[:, i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw]
            for i in range(kh) for j in range(kw)]


def _im2col(x: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    """``[N, OH, OW, KH*KW*C]`` patches in FINN's (kh, kw, c) order.

    One strided copy per tap: far cheaper than gathering a window view when C is small.
    """
    taps = _window_slices(x, attrs["kernel"], attrs["stride"], attrs["dilation"], attrs["pads"])
    return taps[0] if len(taps) == 1 else np.concatenate(taps, axis=-1)


def _threshold(acc: np.ndarray, arrays: dict[str, np.ndarray], attrs: dict[str, Any]
               ) -> np.ndarray:
    thresholds = arrays["thresholds"]  # [C or 1, steps], integer: acc >= ceil(t) <=> acc >= t
    # One full-array comparison per step: numpy reduces a short last axis slowly.
    y = (acc >= thresholds[:, 0]).astype(np.int32)
    for k in range(1, thresholds.shape[1]):
        y += acc >= thresholds[:, k]
    if attrs["bipolar"]:
        return 2 * y - 1
    return y + attrs["act_val"] if attrs["act_val"] else y


def _op_conv(inputs, attrs, arrays):
    (x,) = inputs
    if attrs["dense"]:
        # Rows of MW features, however the stream is shaped (a 1x1 conv, or the flattened
        # input of a fully connected layer), as FINN's MVAU reads them.
        rows = x.reshape(-1, 1, 1, attrs["mw"])
        y = _op_conv([rows], {**attrs, "dense": False}, arrays)[0]
        return [y.reshape(x.shape[0], *attrs["out_shape"][1:])]
    if attrs["xnor"]:
        bits = x >= arrays["in_thresholds"] if "in_thresholds" in arrays else x
        # Channels -> bits, 8 per byte: pad bits are 0 in both operands and so never mismatch.
        packed = np.packbits(bits.astype(np.uint8, copy=False), axis=-1, bitorder="little")
        cols = _im2col(packed, attrs)
        n, oh, ow, nbytes = cols.shape
        words = arrays["weight_words"]  # [MH, W] uint64
        cols = cols.reshape(n * oh * ow, nbytes)
        if nbytes != words.shape[1] * 8:
            cols = np.pad(cols, ((0, 0), (0, words.shape[1] * 8 - nbytes)))
        cols = np.ascontiguousarray(cols).view(np.uint64)
        # Word by word: [P, MH] per step beats one [P, MH, W] array reduced over a short axis.
        mismatches = _popcount(cols[:, 0, None] ^ words[:, 0]).astype(np.int32)
        for w in range(1, words.shape[1]):
            mismatches += _popcount(cols[:, w, None] ^ words[:, w])
        acc = attrs["k_bits"] - mismatches
    else:
        cols = _im2col(x, attrs)
        n, oh, ow, k = cols.shape
        cols = cols.reshape(n * oh * ow, k)
        weight = arrays["weight"]
        if attrs["float_exact"]:
            acc = (cols.astype(np.float32) @ weight.astype(np.float32)).astype(np.int32)
        else:
            acc = cols.astype(np.int64) @ weight.astype(np.int64)
    if "thresholds" in arrays:
        acc = _threshold(acc, arrays, attrs)
    return [acc.reshape(n, oh, ow, -1)]


def _op_threshold(inputs, attrs, arrays):
    return [_threshold(inputs[0], arrays, attrs)]


def _op_maxpool(inputs, attrs, arrays):
    (x,) = inputs
    taps = _window_slices(x, attrs["kernel"], attrs["stride"], [1, 1], attrs["pads"],
                          pad_value=attrs["pad_value"])
    out = taps[0].copy()
    for tap in taps[1:]:
        np.maximum(out, tap, out=out)
    return [out]


def _op_binary(inputs, attrs, arrays):
    lhs = inputs[0] if "lhs" not in arrays else arrays["lhs"]
    rhs = inputs[-1] if "rhs" not in arrays else arrays["rhs"]
    return [_BINARY_UFUNCS[attrs["func"]](lhs, rhs).astype(np.int32)]


_BINARY_UFUNCS = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}


def _op_concat(inputs, attrs, arrays):
    return [np.concatenate(inputs, axis=-1)]


def _op_upsample(inputs, attrs, arrays):
    sh, sw = attrs["scale"]
    return [inputs[0].repeat(sh, axis=1).repeat(sw, axis=2)]


def _op_alias(inputs, attrs, arrays):
    return [inputs[0]] * attrs["n_outputs"]


OPS: dict[str, Callable[..., list[np.ndarray]]] = {
    "conv": _op_conv, "threshold": _op_threshold, "maxpool": _op_maxpool,
    "binary": _op_binary, "concat": _op_concat, "upsample": _op_upsample, "alias": _op_alias,
}


# --------------------------------------------------------------------------- native kernels

_KERNEL_SOURCE = Path(__file__).with_name("xnor_kernels.c")
_NATIVE_ERROR = ["not tried"]


def _cache_dir() -> Path:
    root = os.environ.get("BNNPOSE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bnnpose")
    return Path(root)


def _compiler_identity(cc: str) -> str | None:
    """The first line of ``cc --version``; None when it does not run."""
    try:
        result = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.splitlines()
    return lines[0] if result.returncode == 0 and lines else None


def _first_error(stderr: str) -> str:
    """A compiler's first error line (its warnings and notes left out), shortened."""
    lines = [ln for ln in stderr.splitlines() if "error" in ln] or stderr.splitlines() or [""]
    return " ".join(lines[0].split())[:200]


#: Compiler options tried in order: tuned for this machine's CPU (the library is built on, and
#: cached for, the machine that runs it), then portable where a compiler lacks -march=native.
_FLAG_SETS = (("-O3", "-march=native"), ("-O3",))


@functools.cache
def native_kernels() -> ctypes.CDLL | None:
    """The C kernels, compiled once per source, compiler, machine and Python into the cache
    folder (``$BNNPOSE_CACHE_DIR``, default ``~/.cache/bnnpose``); ``None`` without a working
    C compiler (``_NATIVE_ERROR`` says why)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        _NATIVE_ERROR[0] = "no C compiler (cc) on PATH"
        return None
    identity = _compiler_identity(cc)
    if identity is None:
        _NATIVE_ERROR[0] = f"the C compiler {cc} does not run"
        return None
    source = _KERNEL_SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, cc.encode(), identity.encode(),
                                      platform.machine().encode(), sys.version.encode()]))
    lib_path = _cache_dir() / f"xnor_kernels-{key.hexdigest()[:16]}.so"
    if not lib_path.is_file():
        lib_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=lib_path.parent)
        os.close(fd)
        try:
            for flags in _FLAG_SETS:
                result = subprocess.run([cc, *flags, "-shared", "-fPIC", "-o", tmp,
                                         str(_KERNEL_SOURCE)], capture_output=True, text=True)
                if result.returncode == 0:
                    break
            else:
                _NATIVE_ERROR[0] = f"{cc} failed: {_first_error(result.stderr)}"
                return None
            os.replace(tmp, lib_path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    try:
        lib = ctypes.CDLL(str(lib_path))
    except OSError as e:
        _NATIVE_ERROR[0] = f"cannot load {lib_path.name}: {e}"
        return None
    lib.run_program.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    lib.run_program.restype = ctypes.c_int
    return lib


class _NotNative(Exception):
    """A plan step the C program does not implement (the numpy path still runs it)."""


#: Opcodes and record size of run_program() in xnor_kernels.c.
_OPCODES = {"xnor": 1, "int": 2, "threshold": 3, "Add": 4, "Sub": 5, "Mul": 6, "concat": 7,
            "upsample": 8, "maxpool": 9, "residual": 10}
_RECORD = 32
#: Version of the plan image ``xnor_main.c`` reads; bumped when the parameters' layout changes.
IMAGE_VERSION = 2


#: Output channels per block of the C kernels (BLOCK in xnor_kernels.c).
_BLOCK = 16


def _blocked(a: np.ndarray, pair: bool = False) -> np.ndarray:
    """``[..., C]`` -> ``[..., C rounded up to _BLOCK]``, zero-filled: the kernels read whole
    blocks of channels. ``pair``: a binary conv of ``_BLOCK / 2`` channels, which computes two
    pixels per block, one with each copy of its weights and thresholds."""
    if pair:
        return np.concatenate([a, a], axis=-1)
    pad = -a.shape[-1] % _BLOCK
    return np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, pad)]) if pad else a


def _steps_by_channel(thresholds: np.ndarray, channels: int, pair: bool = False
                      ) -> np.ndarray:
    """``[C or 1, steps]`` -> ``[steps, C]`` in blocks: the C loops run over contiguous
    channels."""
    return _blocked(np.broadcast_to(thresholds, (channels, thresholds.shape[1])).T, pair)


def _byte_weights(weight: np.ndarray, kernel: list[int], channels: int) -> np.ndarray | None:
    """An integer conv's ``[KH*KW*C, MH]`` weights as ``[KH][G][MH in blocks][4]`` int8 for
    the kernels' VNNI path, ``G = ceil(KW * C / 4)`` four-byte groups along a kernel row,
    zero past ``KW * C``; None when a weight is outside int8."""
    if weight.size == 0 or weight.min() < -128 or weight.max() > 127:
        return None
    kh, kw = kernel
    row = kw * channels
    rows = np.pad(weight.reshape(kh, row, -1), ((0, 0), (0, -row % 4), (0, 0)))
    groups = _blocked(rows.reshape(kh, -1, 4, rows.shape[-1]))  # [kh, G, 4, MH in blocks]
    return np.ascontiguousarray(groups.transpose(0, 1, 3, 2), dtype=np.int8)


def _tap_words(words: np.ndarray, taps: int, channels: int) -> np.ndarray:
    """Weight rows packed as whole windows (``[MH, W]`` uint64: each tap's channel bytes one
    after another) -> ``[taps * nch, MH]`` 32-bit words in blocks, ``nch = ceil(C / 32)``
    words per tap with unused bits 0, as the C kernel packs a window's pixels."""
    mh, cb, nch = words.shape[0], -(-channels // 8), -(-channels // 32)
    per_tap = words.view(np.uint8).reshape(mh, -1)[:, : taps * cb].reshape(mh, taps, cb)
    tap_bytes = np.zeros((mh, taps, 4 * nch), np.uint8)
    tap_bytes[:, :, :cb] = per_tap
    tap_words = tap_bytes.view("<u4").reshape(mh, taps * nch).astype(np.uint32)
    return _blocked(np.ascontiguousarray(tap_words.T), 2 * mh == _BLOCK)


#: Most streams a residual join's concat may have: what its record has room for.
_MAX_PARTS = (_RECORD - 12) // 2


def _table(thresholds: np.ndarray, bipolar: bool, act_val: int) -> tuple[np.ndarray, int] | None:
    """Thresholds shared by every channel (``[1, steps]``) spanning less than 16 as the
    outputs for the sums ``lo .. lo + 15``, ``lo`` one below the lowest threshold (the C
    kernels clamp a sum into that range and look it up); None otherwise."""
    if thresholds.shape[0] != 1 or np.ptp(thresholds) > 14:
        return None
    lo = int(thresholds.min()) - 1
    counts = (thresholds[0][None, :] <= np.arange(lo, lo + 16)[:, None]).sum(1)
    return (2 * counts - 1 if bipolar else counts + act_val).astype(np.int32), lo


@dataclass
class _Join:
    """``threshold(addend + concat(parts))`` found in a plan: one residual instruction."""

    add: int  #: index of the Add step
    concat: int | None  #: index of the Concat step (None: the other operand itself)
    addend: str
    parts: list[str]


def _residual_joins(plan: Plan, shapes: dict[str, tuple[int, ...]]) -> dict[int, _Join]:
    """Thresholded residual adds, by the index of their threshold step: an Add of two
    same-shaped streams whose sum only the threshold reads, one operand possibly a Concat
    only the Add reads. Only single-use results are folded in, so no other step misses
    a tensor."""
    root = {}
    for step in plan.steps:
        if step.op == "alias":
            for name in step.outputs:
                root[name] = root.get(step.inputs[0], step.inputs[0])
    uses: dict[str, int] = {plan.output_name: 1}
    for step in plan.steps:
        if step.op != "alias":
            for name in step.inputs:
                uses[root.get(name, name)] = uses.get(root.get(name, name), 0) + 1
    producer = {out: i for i, st in enumerate(plan.steps) for out in st.outputs}
    joins = {}
    for i, step in enumerate(plan.steps):
        add_i = producer.get(step.inputs[0]) if step.op == "threshold" else None
        if add_i is None:
            continue
        add = plan.steps[add_i]
        if (add.op != "binary" or add.attrs["func"] != "Add" or add.arrays
                or uses[add.outputs[0]] != 1 or len({shapes[n] for n in add.inputs}) != 1):
            continue
        join = _Join(add_i, None, add.inputs[0], [add.inputs[1]])
        for k, name in enumerate(add.inputs):
            cat_i = producer.get(name)
            if (cat_i is not None and plan.steps[cat_i].op == "concat" and uses[name] == 1
                    and len(plan.steps[cat_i].inputs) <= _MAX_PARTS):
                join = _Join(add_i, cat_i, add.inputs[1 - k], plan.steps[cat_i].inputs)
                break
        joins[i] = join
    return joins


class _NativeProgram:
    """A plan as one C call per frame: instruction records over preallocated int32 buffers.

    Tensor shapes come from one run of the numpy path, so they are by construction the ones
    the reference computes; every tensor gets its own buffer (a frame of bhg-tiny needs about
    1 MB), and an alias is the buffer of its source.
    """

    def __init__(self, plan: Plan, lib: ctypes.CDLL | None) -> None:
        shapes: dict[str, tuple[int, ...]] = {}
        env = {plan.input_name: np.zeros(plan.input_shape, np.int32)}
        shapes[plan.input_name] = plan.input_shape
        for step in plan.steps:
            results = OPS[step.op]([env[i] for i in step.inputs], step.attrs, step.arrays)
            for name, value in zip(step.outputs, results):
                env[name], shapes[name] = value, value.shape
        buffer_of: dict[str, int] = {}
        self._buffers: list[np.ndarray] = []
        self._params: list[np.ndarray] = []

        def buf(name: str) -> int:
            if name not in buffer_of:
                buffer_of[name] = len(self._buffers)
                self._buffers.append(np.zeros(int(np.prod(shapes[name])), np.int32))
            return buffer_of[name]

        def par(a: np.ndarray | None, dtype) -> int:
            if a is None:
                return -1
            self._params.append(np.ascontiguousarray(a, dtype=dtype))
            return len(self._params) - 1

        def table(t: np.ndarray, attrs: dict[str, Any]) -> list[int]:
            """A threshold's table parameter and its ``lo`` (-1, 0: none)."""
            found = _table(t, attrs["bipolar"], attrs["act_val"])
            return [-1, 0] if found is None else [par(found[0], np.int32), found[1]]

        records, self.labels = [], []
        self._in = buf(plan.input_name)
        joins = _residual_joins(plan, shapes)
        folded = {j.add for j in joins.values()} | {j.concat for j in joins.values()}
        for i, step in enumerate(plan.steps):
            a, arr = step.attrs, step.arrays
            if i in folded:
                continue
            if step.op == "alias":
                for name in step.outputs:
                    buffer_of[name] = buf(step.inputs[0])
                continue
            src, dst = step.inputs[0], step.outputs[0]
            r = [0] * _RECORD
            if step.op == "conv":
                if a["dense"]:
                    # Rows of MW features as one image row of 1x1 windows: the kernels then
                    # take PIXELS of them at a time.
                    mh, c = shapes[dst][-1], a["mw"]
                    h, w = oh, ow = 1, int(np.prod(shapes[src])) // c
                else:
                    _, oh, ow, mh = shapes[dst]
                    _, h, w, c = shapes[src]
                thr = arr.get("thresholds")
                if not a["xnor"] and not a["float_exact"]:
                    raise _NotNative(f"{dst}: accumulator beyond float32's exact integers")
                r[:23] = [_OPCODES["xnor" if a["xnor"] else "int"], buf(src), buf(dst), h, w, c,
                          oh, ow, *a["kernel"], *a["stride"], *a["dilation"], a["pads"][0],
                          a["pads"][1], mh, 0, a["k_bits"] if a["xnor"] else 0,
                          0 if thr is None else thr.shape[1], 0, int(a.get("bipolar", 0)),
                          int(a.get("act_val", 0))]
                r[23] = (par(_tap_words(arr["weight_words"], a["kernel"][0] * a["kernel"][1], c),
                             np.uint32) if a["xnor"]
                         else par(_blocked(arr["weight"]), np.float32))
                r[24] = par(arr.get("in_thresholds"), np.int32)
                r[26] = -1 if a["xnor"] or a["dilation"][1] != 1 else par(
                    _byte_weights(arr["weight"], a["kernel"], c), np.int8)
                pair = a["xnor"] and 2 * mh == _BLOCK
                r[25] = -1 if thr is None else par(_steps_by_channel(thr, mh, pair), np.int32)
            elif i in joins:
                t, c, join = arr["thresholds"], shapes[src][-1], joins[i]
                r[:12] = [_OPCODES["residual"], buf(dst), int(np.prod(shapes[dst])) // c, c,
                          t.shape[1], int(a["bipolar"]), int(a["act_val"]),
                          par(_steps_by_channel(t, c), np.int32), buf(join.addend),
                          len(join.parts), *table(t, a)]
                for q, name in enumerate(join.parts):
                    r[12 + 2 * q], r[13 + 2 * q] = buf(name), shapes[name][-1]
            elif step.op == "threshold":
                t = arr["thresholds"]
                c = shapes[src][-1]
                r[:12] = [_OPCODES["threshold"], buf(src), buf(dst),
                          int(np.prod(shapes[src])) // c, c, t.shape[1], 0,
                          int(a["bipolar"]), int(a["act_val"]),
                          par(_steps_by_channel(t, c), np.int32), *table(t, a)]
            elif step.op == "binary":
                size = int(np.prod(shapes[dst]))
                operands, streams = [], iter(step.inputs)
                for side in ("lhs", "rhs"):
                    if side in arr:
                        const = np.asarray(arr[side]).reshape(-1)
                        tail = [d for d in np.shape(arr[side])]
                        while tail and tail[0] == 1:
                            tail.pop(0)
                        if tuple(tail) != tuple(shapes[dst][len(shapes[dst]) - len(tail):]):
                            raise _NotNative(f"{dst}: {a['func']} broadcasts {np.shape(arr[side])}")
                        operands += [par(const, np.int32), 1, len(const)]
                    else:
                        name = next(streams)
                        if shapes[name] != shapes[dst]:
                            raise _NotNative(f"{dst}: {a['func']} broadcasts {shapes[name]}")
                        operands += [buf(name), 0, size]
                r[:9] = [_OPCODES[a["func"]], operands[0], operands[3], buf(dst), size,
                         operands[1], operands[2], operands[4], operands[5]]
            elif step.op == "concat":
                if len(step.inputs) > (_RECORD - 4) // 2:
                    raise _NotNative(f"{dst}: concat of {len(step.inputs)} streams")
                pixels = int(np.prod(shapes[dst])) // shapes[dst][-1]
                r[:4] = [_OPCODES["concat"], buf(dst), pixels, len(step.inputs)]
                for q, name in enumerate(step.inputs):
                    r[4 + 2 * q], r[5 + 2 * q] = buf(name), shapes[name][-1]
            elif step.op == "upsample":
                _, h, w, c = shapes[src]
                r[:8] = [_OPCODES["upsample"], buf(src), buf(dst), h, w, c, *a["scale"]]
            elif step.op == "maxpool":
                _, h, w, c = shapes[src]
                _, oh, ow, _ = shapes[dst]
                r[:15] = [_OPCODES["maxpool"], buf(src), buf(dst), h, w, c, oh, ow,
                          *a["kernel"], *a["stride"], a["pads"][0], a["pads"][1],
                          a["pad_value"]]
            else:
                raise _NotNative(f"step {step.op}")
            records.append(r)
            kind = ("xnor conv" if a["xnor"] else "int conv") if step.op == "conv" else (
                a["func"] if step.op == "binary" else step.op)
            if i in joins:
                kind = ("concat+" if joins[i].concat is not None else "") + "add+threshold"
            self.labels.append((kind, dst, tuple(shapes[dst])))
        self._out = buffer_of[plan.output_name]
        self.out_shape = shapes[plan.output_name][1:]
        self._prog = np.ascontiguousarray(records, dtype=np.int32)
        self._buf_ptrs = np.array([b.ctypes.data for b in self._buffers], dtype=np.uintp)
        self._par_ptrs = np.array([p.ctypes.data for p in self._params] or [0], dtype=np.uintp)
        # The call's arguments once: reading .ctypes.data costs about a microsecond each time.
        self._call = (self._prog.ctypes.data, len(self._prog), self._buf_ptrs.ctypes.data,
                      self._par_ptrs.ctypes.data)
        self._lib = lib

    def profile(self, frame: np.ndarray, iters: int = 20) -> list[float]:
        """Seconds of every instruction alone (median of ``iters`` calls), after one whole
        run has filled the buffers; ``labels`` names them. Each call adds the ctypes call's
        own microsecond or so."""
        import statistics
        import time

        self.run(frame)
        record = self._prog.strides[0]
        times = []
        for k in range(len(self._prog)):
            ptr = self._prog.ctypes.data + k * record
            samples = []
            for _ in range(iters):
                t = time.perf_counter()
                self._lib.run_program(ptr, 1, *self._call[2:])
                samples.append(time.perf_counter() - t)
            times.append(statistics.median(samples))
        return times

    def image(self) -> bytes:
        """The program, its buffers' lengths and its parameters in ``xnor_main.c``'s format."""
        head = np.array([IMAGE_VERSION, len(self._prog), len(self._buffers), len(self._params),
                         self._in, self._out], "<i4")
        parts = [b"BNNP", head.tobytes(), self._prog.astype("<i4").tobytes(),
                 np.array([b.size for b in self._buffers], "<i4").tobytes()]
        for p in self._params:
            parts += [np.array([p.itemsize, p.size], "<i4").tobytes(),
                      p.astype(p.dtype.newbyteorder("<")).tobytes()]
        return b"".join(parts)

    def run(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """One frame ``[H, W, C]`` -> its output ``[...]``: into ``out`` (converted to its
        dtype) when given, else a fresh int32 array."""
        self._buffers[self._in][:] = frame.reshape(-1)
        status = self._lib.run_program(*self._call)
        if status != 0:
            raise MemoryError(f"cpu engine: native program failed (status {status})")
        result = self._buffers[self._out].reshape(self.out_shape)
        if out is None:
            return result.copy()
        out[...] = result
        return out
