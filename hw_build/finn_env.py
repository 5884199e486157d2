"""Prepare the process environment finn-plus expects, without touching ``$HOME``.

finn-plus reads its folders from environment variables and, at import time of its builder,
binds ``finn.xsi.SimEngine`` (Vivado's XSI simulator). Without Vivado that import raises, even
for flows that never simulate RTL. ``configure()`` must run before any ``finn.builder`` import:

* ``FINN_BUILD_DIR``, ``FINN_SETTINGS``, ``FINN_DEPS`` and friends point into the build folder;
* with ``XILINX_VIVADO`` unset, the XSI names are bound to a stand-in that raises
  ``ToolchainError`` if anything tries to simulate, and one line says so;
* with ``XILINX_VIVADO`` set, nothing of FINN's is replaced.
"""

from __future__ import annotations

import logging
import os
import sys
from importlib import resources
from pathlib import Path

from bnnpose.host.common import BnnposeError

log = logging.getLogger("bnnpose.hw_build")

_XSI_NAMES = ("SimEngine", "locate_glbl", "compile_sim_obj", "get_simkernel_so", "load_sim_obj",
              "reset_rtlsim", "close_rtlsim", "rtlsim_multi_io")
_announced = False


class ToolchainError(BnnposeError):
    """A step needs a Xilinx tool that is not installed."""


class _XsiUnavailable:
    """Stands in for finn_xsi when Vivado is absent; any use says what is missing."""

    def __init__(self, *args, **kwargs):
        raise ToolchainError("RTL simulation needs Vivado's XSI (set XILINX_VIVADO or use the "
                             "FINN Docker image)")

    def __call__(self, *args, **kwargs):  # pragma: no cover - same message for functions
        raise ToolchainError("RTL simulation needs Vivado's XSI")


def vivado_available() -> bool:
    return bool(os.environ.get("XILINX_VIVADO"))


def configure(build_dir: str | os.PathLike, workers: int | None = None) -> dict[str, str]:
    """Point finn-plus at folders under ``build_dir``; returns the variables it set."""
    global _announced
    build_dir = Path(build_dir).resolve()
    finn_tmp = build_dir / "finn_tmp"
    finn_tmp.mkdir(parents=True, exist_ok=True)
    finn_pkg = Path(str(resources.files("finn")))
    env = {
        "FINN_BUILD_DIR": str(finn_tmp),
        # A settings path that does not exist makes finn-plus derive settings from
        # FINN_BUILD_DIR instead of creating ~/.finn.
        "FINN_SETTINGS": str(build_dir / "finn_settings.yaml"),
        "FINN_DEPS": str(build_dir / "finn_deps"),
        "FINN_RTLLIB": str(finn_pkg / "finn-rtllib"),
        "FINN_CUSTOM_HLS": str(finn_pkg / "custom_hls"),
        "NUM_DEFAULT_WORKERS": str(workers or max(1, (os.cpu_count() or 1))),
    }
    for key, value in env.items():
        # A user's own RTL/HLS libraries and fetched dependencies (finn-hlslib, board files:
        # the Docker image provides them) win over the packaged copies and an empty folder;
        # so does an explicit worker count.
        if key in ("FINN_RTLLIB", "FINN_CUSTOM_HLS", "FINN_DEPS") or (
                key == "NUM_DEFAULT_WORKERS" and workers is None):
            env[key] = os.environ.setdefault(key, value)
        else:
            os.environ[key] = value
    # finn-plus builds its settings (FINN_BUILD_DIR among them) from the environment once per
    # process and keeps them; a second build in the same process (a resumed one, a bench's
    # next row) would write its generated code into the first build's folder, which the
    # atomic rename has moved away. Dropping them makes finn-plus read the variables above.
    import finn.util.settings

    finn.util.settings._SETTINGS = None
    if not vivado_available():
        import finn.xsi

        for name in _XSI_NAMES:
            setattr(finn.xsi, name, _XsiUnavailable)
        if not _announced:
            print("bnnpose: Vivado not found (XILINX_VIVADO unset): estimates, code generation "
                  "and Python simulation only", file=sys.stderr)
            _announced = True
    return env
