"""Overlay folders and the backends that run them: a PYNQ board or the bit-packed CPU engine
here; FINN simulation (``hw_build.sim.SimBackend``) joins them on a build host.

Every backend takes and returns the packed uint8 buffers the board's DMA moves, so the host's
pack/unpack code is exercised identically whichever one runs the network.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from bnnpose.host.common import BnnposeError, sha256_file
from bnnpose.host.cpu_engine import ENGINES, PLAN_FILE, Plan
from bnnpose.host.packing import (
    TensorSpec, check_packed, input_spec, output_spec, to_normal, to_packed,
)

IO_SHAPE_FILE = "io_shape.json"
HOST_FILE = "host.json"
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model_hw.onnx"

#: Suffixes of build products that must be covered by the manifest when present, because the
#: hardware or its simulation is only meaningful for the exact files the build produced.
CHECKED_SUFFIXES = (".onnx", ".bit", ".hwh", ".npz")


@dataclass(frozen=True)
class HostConfig:
    """What the host does around the accelerator (``host.json`` of an overlay)."""

    input_size: tuple[int, int]  #: (width, height) of the network input, as HeatmapCodec
    heatmap_size: tuple[int, int]  #: (width, height) of the heatmaps
    output_scale: np.ndarray  #: [J] or [1] float32; heatmap = int_out * scale + bias
    output_bias: np.ndarray  #: [J] or [1] float32
    joints: tuple[str, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = HOST_FILE) -> HostConfig:
        """Validate a host.json dict; errors are one line naming ``source``."""
        if not isinstance(d, Mapping):
            raise BnnposeError(f"{source}: expected a JSON object")
        missing = [k for k in ("input_size", "heatmap_size", "output_scale", "output_bias",
                               "joints") if k not in d]
        if missing:
            raise BnnposeError(f"{source}: missing {', '.join(missing)}")
        for key in ("input_layout", "output_layout"):
            # Only NHWC exists in FINN's streaming output; other layouts would need a transpose
            # the overlay contract does not describe.
            if d.get(key, "NHWC") != "NHWC":
                raise BnnposeError(f"{source}: {key} {d[key]!r} is not supported (only NHWC)")
        try:
            input_size = _pair(d["input_size"])
            heatmap_size = _pair(d["heatmap_size"])
            joints = tuple(str(j) for j in d["joints"])
            scale = np.atleast_1d(np.asarray(d["output_scale"], dtype=np.float32))
            bias = np.atleast_1d(np.asarray(d["output_bias"], dtype=np.float32))
        except (TypeError, ValueError) as e:
            raise BnnposeError(f"{source}: malformed entry ({e})") from None
        for name, v in (("output_scale", scale), ("output_bias", bias)):
            if v.ndim != 1 or len(v) not in (1, len(joints)) or not np.isfinite(v).all():
                raise BnnposeError(
                    f"{source}: {name} must be one finite float or one per joint ({len(joints)})"
                )
        return cls(input_size, heatmap_size, scale, bias, joints)

    def check_io(self, ispec: TensorSpec, ospec: TensorSpec, source: str = "overlay") -> None:
        """Fail unless the accelerator's tensors are what this config describes."""
        want_in = (1, self.input_size[1], self.input_size[0], 3)
        want_out = (1, self.heatmap_size[1], self.heatmap_size[0], len(self.joints))
        if ispec.normal != want_in:
            raise BnnposeError(
                f"{source}: accelerator input {list(ispec.normal)} is not the NHWC RGB "
                f"{list(want_in)} host.json describes"
            )
        if ispec.dtype.name != "UINT8":
            raise BnnposeError(f"{source}: accelerator input is {ispec.dtype.name}, host sends "
                               "UINT8 pixels")
        if ospec.normal != want_out:
            raise BnnposeError(
                f"{source}: accelerator output {list(ospec.normal)} is not the NHWC heatmap "
                f"{list(want_out)} host.json describes"
            )


def _pair(v: Sequence[Any]) -> tuple[int, int]:
    a, b = (int(x) for x in v)
    if a <= 0 or b <= 0:
        raise ValueError(f"sizes must be positive, got {list(v)}")
    return a, b


@dataclass(frozen=True)
class Overlay:
    """A validated overlay folder (``overlays/<board>/<model>/``)."""

    path: Path
    io_shape: dict[str, Any]
    host: HostConfig
    manifest: dict[str, Any]
    model_hw: Path | None  #: model_hw.onnx, when the folder has it
    bitfile: Path | None  #: the one ``*.bit``, when Vivado built it
    cpu_plan: Path | None = None  #: cpu_plan.npz for the cpu backend, when packaged


def load_overlay(overlay_dir: str | os.PathLike) -> Overlay:
    """Read and validate an overlay folder.

    Checks that io_shape.json, host.json and manifest.json exist and parse, that io_shape and
    host.json agree, and that every file the manifest lists is present with the listed sha256
    (and that no .onnx/.bit/.hwh escapes the manifest). Every failure is a one-line
    BnnposeError naming the folder and the cause.
    """
    path = Path(overlay_dir)
    if not path.is_dir():
        raise BnnposeError(f"overlay folder not found: {path}")
    io_shape, host_raw, manifest = (_read_json(path, f) for f in
                                    (IO_SHAPE_FILE, HOST_FILE, MANIFEST_FILE))
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise BnnposeError(f"{path / MANIFEST_FILE}: no 'files' table of sha256 sums")
    for rel, digest in files.items():
        f = path / rel
        if not f.is_file():
            raise BnnposeError(f"overlay {path}: {rel} is listed in {MANIFEST_FILE} but missing")
        if sha256_file(f) != digest:
            raise BnnposeError(
                f"overlay {path}: {rel} does not match its sha256 in {MANIFEST_FILE} "
                "(edited or half-copied; rebuild or copy the whole folder again)"
            )
    for f in sorted(path.iterdir()):
        if f.suffix in CHECKED_SUFFIXES and f.name not in files:
            raise BnnposeError(f"overlay {path}: {f.name} is not listed in {MANIFEST_FILE}")
    if not isinstance(io_shape, dict):
        raise BnnposeError(f"{path / IO_SHAPE_FILE}: expected a JSON object")
    host = HostConfig.from_dict(host_raw, source=str(path / HOST_FILE))
    host.check_io(input_spec(io_shape), output_spec(io_shape), source=f"overlay {path}")
    bitfiles = sorted(path.glob("*.bit"))
    if len(bitfiles) > 1:
        names = ", ".join(b.name for b in bitfiles)
        raise BnnposeError(f"overlay {path}: several bitfiles ({names}); keep one")
    model = path / MODEL_FILE
    plan = path / PLAN_FILE
    return Overlay(
        path=path, io_shape=io_shape, host=host, manifest=manifest,
        model_hw=model if model.is_file() else None,
        bitfile=bitfiles[0] if bitfiles else None,
        cpu_plan=plan if plan.is_file() else None,
    )


def _read_json(folder: Path, name: str) -> Any:
    f = folder / name
    if not f.is_file():
        raise BnnposeError(f"overlay {folder} has no {name} (the build stage writes it)")
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise BnnposeError(f"{f}: not valid JSON (line {e.lineno}: {e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BnnposeError(f"cannot read {f}: {e}") from None


@runtime_checkable
class Backend(Protocol):
    """Runs the accelerator on packed DMA buffers."""

    @property
    def io_shape(self) -> Mapping[str, Any]:
        """The FINN driver io_shape dict (io_shape.json)."""
        ...

    def execute_packed(self, ibuf_packed: np.ndarray) -> np.ndarray:
        """uint8 ``[N, *ishape_packed[1:]]`` -> uint8 ``[N, *oshape_packed[1:]]``."""
        ...


class OverlayBackend:
    """What every backend reads from its validated overlay folder."""

    overlay: Overlay

    def __init__(self, overlay_dir: str | os.PathLike) -> None:
        self.overlay = load_overlay(overlay_dir)

    @property
    def io_shape(self) -> Mapping[str, Any]:
        return self.overlay.io_shape

    @property
    def host_cfg(self) -> HostConfig:
        return self.overlay.host


class CpuBackend(OverlayBackend):
    """Runs the overlay's graph in the bit-packed XNOR-popcount engine (numpy, optionally C).

    Reads the overlay's ``cpu_plan.npz`` (numpy is all a board needs for it). The plan must
    come from the very ``model_hw.onnx`` the manifest lists, and its tensors must be the ones
    io_shape.json names.
    """

    def __init__(self, overlay_dir: str | os.PathLike, engine: str = "native") -> None:
        """Args:
            engine: ``native``, the C kernels (compiled here at first use; without a C
                compiler, or when they fail to build, a one-line error); ``numpy``, the
                numpy reference path, which needs nothing else and is many times slower.
        """
        if engine not in ENGINES:
            raise BnnposeError(f"cpu engine {engine!r} is not one of {', '.join(ENGINES)}")
        super().__init__(overlay_dir)
        ov = self.overlay
        if ov.cpu_plan is not None:
            self.plan = Plan.load(ov.cpu_plan)
        elif ov.model_hw is not None:
            # The plan is compiled from the graph by hw_build (it needs onnx, a board has none).
            raise BnnposeError(f"overlay {ov.path} has no {PLAN_FILE}: package it again "
                               "(hw_build.overlay.package_overlay compiles the plan)")
        else:
            raise BnnposeError(f"overlay {ov.path} has neither {PLAN_FILE} nor {MODEL_FILE}")
        # A deployed overlay leaves the graph behind but keeps its checksum.
        listed = ov.manifest["files"].get(MODEL_FILE) or ov.manifest.get("model_hw_sha256")
        if listed is not None and self.plan.source_sha256 != listed:
            raise BnnposeError(f"overlay {ov.path}: {PLAN_FILE} was compiled from another "
                               f"{MODEL_FILE} than the manifest lists; rebuild the overlay")
        self._ispec = input_spec(ov.io_shape)
        self._ospec = output_spec(ov.io_shape)
        for what, got, want in (("input", self.plan.input_shape, self._ispec.normal),
                                ("output", self.plan.output_shape, self._ospec.normal)):
            if tuple(got) != tuple(want):
                raise BnnposeError(f"overlay {ov.path}: the cpu plan's {what} {list(got)} is "
                                   f"not io_shape.json's {list(want)}")
        self.native = engine == "native"
        if self.native:
            self.plan.require_native()

    def execute_packed(self, ibuf_packed: np.ndarray) -> np.ndarray:
        """uint8 ``[N, *ishape_packed[1:]]`` -> uint8 ``[N, *oshape_packed[1:]]``."""
        y = self.plan.run(to_normal(ibuf_packed, self._ispec), native=self.native)
        return to_packed(y, self._ospec)


class PynqBackend(OverlayBackend):
    """Runs the overlay's bitstream through finn-plus-driver's ``FINNDMAOverlay`` on a board."""

    def __init__(self, overlay_dir: str | os.PathLike, download: bool = True) -> None:
        """Validate the folder, then program the FPGA (``download=False`` reuses a loaded one).

        The driver's platform is the board's FINN shell, which the overlay's manifest records
        (``platform``); overlays packaged before it was recorded were all ``zynq-iodma``.
        """
        super().__init__(overlay_dir)
        bit = self.overlay.bitfile
        if bit is None:
            raise BnnposeError(
                f"overlay {self.overlay.path} has no bitfile (*.bit); it was built without Vivado"
            )
        if not bit.with_suffix(".hwh").is_file():
            raise BnnposeError(f"overlay {self.overlay.path}: {bit.name} has no "
                               f"{bit.with_suffix('.hwh').name} next to it (pynq needs both)")
        try:
            import pynq  # noqa: F401  (imported only to give a clear message when missing)
        except ImportError:
            raise BnnposeError("the pynq backend needs the pynq package (a PYNQ board image)") \
                from None
        try:
            from finn_plus_driver.overlays.dma import FINNDMAOverlay
        except ImportError as e:
            raise BnnposeError(f"the pynq backend needs finn-plus-driver: {e}") from None
        self._ispec = input_spec(self.overlay.io_shape)
        self._ospec = output_spec(self.overlay.io_shape)
        self._driver = FINNDMAOverlay(
            bitfile_name=str(bit),
            platform=self.overlay.manifest.get("platform", "zynq-iodma"),
            io_shape_dict=_driver_io_shape(self.overlay.io_shape),
            batch_size=1,
            download=download,
            runtime_weight_dir=str(self.overlay.path / "runtime_weights"),
        )
        self._obuf: np.ndarray | None = None  # reused while the batch size stays

    def execute_packed(self, ibuf_packed: np.ndarray) -> np.ndarray:
        """uint8 ``[N, *ishape_packed[1:]]`` -> uint8 ``[N, *oshape_packed[1:]]``."""
        ibuf_packed = check_packed(ibuf_packed, self._ispec)
        n = ibuf_packed.shape[0]
        if self._driver.batch_size != n:
            # The setter reallocates the contiguous DMA buffers; only pay for it on a change.
            self._driver.batch_size = n
        self._driver.copy_input_data_to_device(ibuf_packed)
        self._driver.execute_on_buffers()
        if self._obuf is None or self._obuf.shape[0] != n:
            self._obuf = np.empty(self._ospec.packed_shape(n), dtype=np.uint8)
        self._driver.copy_output_data_from_device(self._obuf)
        return self._obuf.copy()


def _driver_io_shape(io_shape: Mapping[str, Any]) -> dict[str, Any]:
    # The driver converts the dtype strings in place and looks DMAs up as "idma_names" /
    # "odma_names"; older io_shape files call them input_dma_name / output_dma_name.
    d = copy.deepcopy(dict(io_shape))
    for new, old in (("idma_names", "input_dma_name"), ("odma_names", "output_dma_name")):
        if new not in d and old in d:
            d[new] = list(d[old])
    return d


#: ``bnnpose run --backend NAME``: NAME -> ``factory(overlay_dir, engine) -> Backend``, the
#: ones a board has (``engine``: the cpu backend's, one of ENGINES).
BACKENDS: dict[str, Callable[[str, str], Backend]] = {
    "pynq": lambda overlay, engine: PynqBackend(overlay),
    "cpu": lambda overlay, engine: CpuBackend(overlay, engine),
}

#: Entry-point group through which an installed package adds backends of the same signature:
#: bnnpose's own build side adds FINN's simulation (``sim``, see pyproject.toml). A board's
#: deploy folder is not installed, so it has the two above.
BACKEND_ENTRY_POINTS = "bnnpose.backends"


def _installed_backends() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=BACKEND_ENTRY_POINTS)
            if ep.name not in BACKENDS}


def backend_names() -> tuple[str, ...]:
    """Every backend this machine offers: the board's, then the installed ones."""
    return (*BACKENDS, *_installed_backends())


def make_backend(name: str, overlay: str | os.PathLike, engine: str = "native") -> Backend:
    """The backend ``name`` on an overlay folder (``engine``: the cpu backend's, ENGINES)."""
    if name in BACKENDS:
        return BACKENDS[name](str(overlay), engine)
    installed = _installed_backends()
    if name not in installed:
        raise BnnposeError(f"backend {name!r} is not available here; known: "
                           f"{', '.join(backend_names())}")
    try:
        factory = installed[name].load()
    except ImportError as e:
        raise BnnposeError(f"the {name} backend needs what a build host installs: {e}") from None
    return factory(str(overlay), engine)
