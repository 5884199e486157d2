"""Run the notebooks in notebooks/ in a kernel of this interpreter, nothing registered globally."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from bnnpose.models.checkpoint_io import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
#: The overlay `make demo` builds, which the notebooks open by default.
OVERLAY = REPO / "overlays" / "pynq-z2" / DEFAULT_MODEL
KERNEL = "bnnpose-test"


@pytest.fixture
def execute_notebook(tmp_path_factory, monkeypatch):
    """``execute_notebook(name, cwd, **env) -> executed NotebookNode``.

    The kernel is this interpreter's ipykernel, started from a kernel spec in a temporary folder;
    ``env`` (``BNNPOSE_NB_BACKEND="sim"``, ...) reaches the kernel through its environment. A cell
    that raises fails the test with the cell's traceback.
    """
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    jupyter = tmp_path_factory.mktemp("jupyter")
    spec = jupyter / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "bnnpose tests", "language": "python"}))
    # Connection files, IPython's profile and history stay out of $HOME.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(jupyter / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(jupyter / "ipython"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws the plots
    for key in [k for k in os.environ if k.startswith("BNNPOSE_")]:
        monkeypatch.delenv(key)

    def run(name: str, cwd: Path, timeout: int = 300, **env: str):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        # Unix sockets in the temporary folder: nothing listens on a network port.
        km = KernelManager(kernel_name=KERNEL, transport="ipc", ip=str(jupyter / "kernel"),
                           kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec.parent)]))
        NotebookClient(nb, km=km, timeout=timeout,
                       resources={"metadata": {"path": str(cwd)}}).execute()
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
        assert not errors, errors
        return nb

    return run


@pytest.fixture(scope="session")
def built_overlay() -> Path:
    if not (OVERLAY / "model_hw.onnx").is_file():
        pytest.skip("no built overlay yet (make demo builds it)")
    return OVERLAY
