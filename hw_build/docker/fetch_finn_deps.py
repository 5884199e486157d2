"""Fetch the FINN dependencies our boards need into one folder, while the Docker image is built.

    python hw_build/docker/fetch_finn_deps.py /opt/finn_deps

finn-plus fetches its HLS library, board files and simulation sources on first use (``finn deps
update``). A build in the container must not download anything, so the image runs this once, with
finn-plus's own definitions and pinned commits, and points ``FINN_DEPS`` at the result. Only the
entries a bnnpose board needs are kept: FINN's full list clones several board repositories of
hundreds of megabytes each for boards we do not target.

Runs before bnnpose is installed in the image, so it imports nothing of ours.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

#: Always needed: HLS includes of every HLS layer (finn-hlslib, and attention-hlslib, which
#: FINN's HLS templates put on the include path unconditionally) and the JSON library of the
#: finn_xsi RTL simulation build.
COMMON = ("finn-hlslib", "attention-hlslib", "nlohmann-json")

#: FINN dependency holding each board's Vivado board files; None: they ship with Vivado.
BOARD_FILES: dict[str, str | None] = {"pynq-z2": "pynq-z2", "zcu104": None}

KINDS = ("git_deps", "boardfile_deps", "direct_download_deps")


def wanted_names() -> list[str]:
    return [*COMMON, *(dep for dep in BOARD_FILES.values() if dep)]


def finn_definitions() -> Path:
    return Path(str(resources.files("finn.interface") / "external_dependencies.yaml"))


def subset(definitions: dict, names: list[str]) -> dict:
    """FINN's definitions restricted to ``names``, in the same layout."""
    out: dict[str, dict] = {kind: {} for kind in KINDS}
    for name in names:
        kind = next((k for k in KINDS if name in (definitions.get(k) or {})), None)
        if kind is None:
            raise KeyError(f"finn-plus defines no dependency named {name!r}")
        out[kind][name] = definitions[kind][name]
    return out


def main(argv: list[str] | None = None) -> int:
    import yaml
    from finn.interface.manage_deps import DependencyUpdater

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: fetch_finn_deps.py TARGET_DIR", file=sys.stderr)
        return 2
    target = Path(args[0]).absolute()
    try:
        wanted = subset(yaml.safe_load(finn_definitions().read_text()), wanted_names())
    except KeyError as e:
        print(f"fetch_finn_deps: error: {e.args[0]}", file=sys.stderr)
        return 2
    target.mkdir(parents=True, exist_ok=True)
    definitions = target / "external_dependencies.yaml"
    definitions.write_text(yaml.safe_dump(wanted, sort_keys=True))
    # Exits the process with status 1 if any dependency fails, which fails the image build.
    DependencyUpdater(target, definitions, git_timeout_s=600, non_interactive=True).update()
    return 0


if __name__ == "__main__":
    sys.exit(main())
