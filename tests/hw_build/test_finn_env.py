"""The FINN environment: folders inside the build dir, an XSI stand-in only without Vivado."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import json, os, sys
from bnnpose.hw_build import finn_env
env = finn_env.configure(sys.argv[1])
finn_env.configure(sys.argv[1])  # a second call must not repeat the notice
import finn.xsi
try:
    import finn.builder.build_dataflow_steps  # binds finn.xsi.SimEngine at import time
    error = None
except Exception as e:
    error = f"{type(e).__name__}: {e}"
print(json.dumps({"env": env, "import_error": error,
                  "standin": finn.xsi.__dict__.get("SimEngine") is finn_env._XsiUnavailable}))
"""


def probe(tmp_path, **extra_env):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINN_", "XILINX_"))}
    env.update(HOME=str(home), **extra_env)
    r = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "build")], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import json

    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr, home


def test_without_vivado_everything_lives_in_the_build_dir(tmp_path):
    out, err, home = probe(tmp_path)
    build = str(tmp_path / "build")
    for key in ("FINN_BUILD_DIR", "FINN_SETTINGS", "FINN_DEPS"):
        assert out["env"][key].startswith(build)
    assert os.path.isdir(out["env"]["FINN_BUILD_DIR"])
    assert list(home.iterdir()) == []
    assert out["standin"] is True and out["import_error"] is None
    assert err.count("Vivado not found") == 1


def test_with_vivado_nothing_is_replaced(tmp_path):
    # A fake install: FINN's own XSI loader runs (and, finding no XSI there, says so itself).
    out, err, _ = probe(tmp_path, XILINX_VIVADO=str(tmp_path / "Vivado" / "2024.2"))
    assert out["standin"] is False
    assert "XSI" in out["import_error"] and "finn deps" in out["import_error"]
    assert "Vivado not found" not in err


def test_standin_names_the_missing_tool(tmp_path):
    import pytest

    from bnnpose.hw_build import finn_env

    with pytest.raises(finn_env.ToolchainError, match="Vivado"):
        finn_env._XsiUnavailable()


def test_fetched_dependencies_and_worker_count_of_the_user_win(tmp_path):
    deps = tmp_path / "deps"
    out, _, _ = probe(tmp_path, FINN_DEPS=str(deps), NUM_DEFAULT_WORKERS="7")
    assert out["env"]["FINN_DEPS"] == str(deps)
    assert out["env"]["NUM_DEFAULT_WORKERS"] == "7"
    assert out["env"]["FINN_BUILD_DIR"].startswith(str(tmp_path / "build"))
