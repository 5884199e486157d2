"""quantize/footage.py's unpacking of footage from downloaded wheels and sdists (archives made
here; nothing is downloaded)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

from bnnpose.quantize import footage


def make_wheel(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("Pkg/Demo/demo.mp4", b"video")
        z.writestr("Pkg/Demo/other.txt", b"x")
        z.writestr("pkg-1.0.dist-info/licenses/LICENSE", b"BSD")
    return path


def make_sdist(path: Path, evil: bool = False) -> Path:
    with tarfile.open(path, "w:gz") as t:
        members = [("pkg-1.0/assets/MOT/a/gt.txt", b"1"), ("pkg-1.0/assets/MOT/b.jpg", b"2"),
                   ("pkg-1.0/LICENSE", b"AGPL")]
        if evil:
            members.append(("pkg-1.0/assets/MOT/../../x", b"!"))
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def test_extracts_members_by_base_name_and_folders_as_trees(tmp_path):
    whl = make_wheel(tmp_path / "pkg-1.0-py3-none-any.whl")
    out = tmp_path / "footage" / "pkg"
    footage.extract(whl, ["Pkg/Demo/demo.mp4", "pkg-1.0.dist-info/licenses/LICENSE"], out)
    assert sorted(p.name for p in out.iterdir()) == ["LICENSE", "demo.mp4"]
    assert (out / "demo.mp4").read_bytes() == b"video"
    sdist = make_sdist(tmp_path / "pkg-1.0.tar.gz")
    assert footage.main([str(sdist), "pkg-1.0/assets/MOT/", "pkg-1.0/LICENSE",
                         "--out", str(out)]) == 0
    # The folder is replaced whole: the wheel's files are gone.
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == \
        ["LICENSE", "a/gt.txt", "b.jpg"]


def test_extraction_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    whl = make_wheel(tmp_path / "pkg.whl")
    out = tmp_path / "out"
    assert footage.main([str(whl), "Pkg/Demo/absent.mp4", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == \
        "footage.py: error: pkg.whl has no Pkg/Demo/absent.mp4"
    assert footage.main([str(whl), "Nothing/", "--out", str(out)]) == 2
    assert "has no folder Nothing/" in capsys.readouterr().err
    assert footage.main([str(tmp_path / "absent.whl"), "x", "--out", str(out)]) == 2
    assert "archive not found" in capsys.readouterr().err
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    assert footage.main([str(tmp_path / "junk.tar.gz"), "x", "--out", str(out)]) == 2
    assert "cannot read" in capsys.readouterr().err
    evil = make_sdist(tmp_path / "evil.tar.gz", evil=True)
    assert footage.main([str(evil), "pkg-1.0/assets/MOT/", "--out", str(out)]) == 2
    assert "unsafe path" in capsys.readouterr().err
    assert not out.exists()
