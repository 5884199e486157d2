#!/usr/bin/env bash
# Entry point of the bnnpose FINN image: load the mounted Xilinx tools' environment, then run
# the command. Inputs (all optional):
#   VIVADO_PATH            Vivado folder holding settings64.sh, e.g. /tools/Xilinx/Vivado/2024.2
#   XILINX_TOOLS_DIR       install root (FINN_XILINX_PATH is accepted too), with
#   FINN_XILINX_VERSION    the version; Vivado is then <root>/Vivado/<ver> (up to 2024.2) or
#                          <root>/<ver>/Vivado (2025.1 on)
#   HLS_PATH               Vitis HLS folder; by default found next to Vivado the same way
# Without any of them the command runs without Vivado (estimates and code generation only).
set -euo pipefail

fail() {
    echo "bnnpose-entrypoint: error: $*" >&2
    exit 2
}

# Prints the first of <root>/<tool>/<ver> and <root>/<ver>/<tool> that has a settings64.sh.
tool_dir() {
    local tool=$1 dir
    for dir in "$root/$tool/$version" "$root/$version/$tool"; do
        if [ -f "$dir/settings64.sh" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

# Run as an arbitrary host uid (docker run -u), HOME may be "/" or missing; Vivado writes
# journals and ~/.Xilinx there.
if [ -z "${HOME:-}" ] || [ "$HOME" = / ] || ! mkdir -p "$HOME" 2>/dev/null || [ ! -w "$HOME" ]; then
    export HOME=${TMPDIR:-/tmp}/bnnpose-home
    mkdir -p "$HOME"
fi

root=${XILINX_TOOLS_DIR:-${FINN_XILINX_PATH:-}}
version=${FINN_XILINX_VERSION:-}
vivado=${VIVADO_PATH:-}
if [ -z "$vivado" ] && [ -n "$root" ]; then
    [ -n "$version" ] || fail "XILINX_TOOLS_DIR=$root is set but FINN_XILINX_VERSION is not"
    vivado=$(tool_dir Vivado) || fail "no Vivado $version under $root: neither" \
        "$root/Vivado/$version/settings64.sh nor $root/$version/Vivado/settings64.sh exists"
fi

if [ -n "$vivado" ]; then
    [ -f "$vivado/settings64.sh" ] || fail "$vivado/settings64.sh not found"
    hls=${HLS_PATH:-}
    if [ -z "$hls" ] && [ -n "$root" ]; then
        # Vitis HLS is its own tree up to 2024.1 and part of Vitis from 2024.2 on.
        hls=$(tool_dir Vitis_HLS || tool_dir Vitis || true)
    fi
    # Xilinx's settings scripts read unset variables.
    set +u
    # shellcheck disable=SC1091
    source "$vivado/settings64.sh"
    if [ -n "$hls" ]; then
        # shellcheck disable=SC1091
        source "$hls/settings64.sh"
    fi
    set -u
    export XILINX_VIVADO=${XILINX_VIVADO:-$vivado}
    # What finn-plus's own launcher sets and make_bitstream.py does not: the loader path for the
    # in-process XSim kernel (read once at process start), and no per-user Tcl store, which a
    # read-only install mount cannot hold.
    ld_paths=/lib/x86_64-linux-gnu:$XILINX_VIVADO/lib/lnx64.o
    if [ -n "${XILINX_HLS:-}" ]; then
        ld_paths=$ld_paths:$XILINX_HLS/lnx64/tools/fpo_v7_1
    fi
    export LD_LIBRARY_PATH=$ld_paths${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export XILINX_LOCAL_USER_DATA=${XILINX_LOCAL_USER_DATA:-no}
    # finn-plus compiles its XSim binding (xsi.so) next to its sources on first use; the
    # installed copy is read-only for a non-root user, so build from a copy under HOME, one
    # per finn-plus version (finn-plus itself rebuilds it when the Vivado version changes).
    if [ -z "${FINN_XSI:-}" ]; then
        xsi_src=$(python -c 'import importlib.util as u
print(u.find_spec("finn_xsi").submodule_search_locations[0])')
        finn_version=$(python -c 'import importlib.metadata as m; print(m.version("finn-plus"))')
        export FINN_XSI=$HOME/.cache/bnnpose/finn_xsi-$finn_version
        if [ ! -d "$FINN_XSI" ]; then
            mkdir -p "$(dirname "$FINN_XSI")"
            cp -r "$xsi_src" "$FINN_XSI"
        fi
    fi
    echo "bnnpose: Vivado at $XILINX_VIVADO${XILINX_HLS:+, Vitis HLS at $XILINX_HLS}" >&2
else
    echo "bnnpose: no Xilinx tools mounted: estimates and code generation only" >&2
fi

exec "$@"
