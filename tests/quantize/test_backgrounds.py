"""The background library: licensed sources, no people, one-line errors for broken files."""

from __future__ import annotations

import json
import shutil

import pytest

from bnnpose.host.common import BnnposeError
from bnnpose.quantize import backgrounds


@pytest.fixture(scope="module")
def library_dir():
    folder = backgrounds.library_dir()
    if not (folder / "manifest.json").is_file():
        backgrounds.build(folder)  # make test builds it first; a bare pytest run does here
    return folder


def test_sources_keep_no_picture_they_exclude_nor_a_reserved_one():
    reserved = {"messi5.jpg", "lena.jpg", "basketball1.png", "basketball2.png"}
    for source in backgrounds.SOURCES:
        assert source.licence and source.version and source.files, source.name
        assert not set(source.files) & set(source.excluded), source.name
        assert not set(source.files) & reserved, source.name


def test_library_matches_its_manifest(library_dir):
    manifest = json.loads((library_dir / "manifest.json").read_text())
    assert len(manifest["files"]) == sum(len(s.files) for s in backgrounds.SOURCES)
    assert {s["name"] for s in manifest["sources"]} == {s.name for s in backgrounds.SOURCES}
    assert all(s["licence"] for s in manifest["sources"])
    backgrounds.library.cache_clear()
    pictures = backgrounds.library()
    assert len(pictures) == len(manifest["files"])
    assert all(max(p.shape[:2]) <= backgrounds.MAX_SIDE and p.shape[2] == 3 for p in pictures)


def test_corrupt_or_missing_library_is_one_line(library_dir, tmp_path, monkeypatch):
    broken = tmp_path / "lib"
    shutil.copytree(library_dir, broken)
    victim = broken / "tuxpaint" / "cliff.jpg"
    victim.write_bytes(b"not a jpeg")
    monkeypatch.setenv("BNNPOSE_BACKGROUNDS", str(broken))
    backgrounds.library.cache_clear()
    with pytest.raises(BnnposeError, match="cannot decode image .*cliff.jpg") as info:
        backgrounds.library()
    assert "\n" not in str(info.value)
    monkeypatch.setenv("BNNPOSE_BACKGROUNDS", str(tmp_path / "none"))
    backgrounds.library.cache_clear()
    with pytest.raises(BnnposeError, match="no background library .*make backgrounds"):
        backgrounds.library()
    backgrounds.library.cache_clear()
