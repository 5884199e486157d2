"""bnnpose pack: a recipe's crops packed here, trained on from the pack alone."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from bnnpose.host.common import BnnposeError
from bnnpose.models.registry import build_model
from bnnpose.quantize import pack, packed
from bnnpose.quantize.train import train
from bnnpose.quantize.train_data import training_arrays
from test_eval import SEEDS, write_coco


@pytest.fixture(scope="module")
def recipe(tiny, tmp_path_factory):
    """``tiny``'s stick figures plus the people of a toy COCO set, mixed in twice."""
    root = tmp_path_factory.mktemp("packed")
    ann, images, _ = write_coco(root / "toy-train", SEEDS[:6])
    return replace(tiny, mix=f"coco:{ann}", mix_images=str(images), mix_repeat=2,
                   out_dir=str(root / "run"))


@pytest.fixture(scope="module")
def pack_dir(recipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("pack") / "p"
    assert pack.main(["--data", "synthetic", "--n-train", "64", "--n-val", "32",
                        "--mix", recipe.mix, "--mix-images", recipe.mix_images,
                        "--cache-dir", recipe.cache_dir, "--out", str(out)]) == 0
    return out


def test_pack_holds_the_recipes_crops_and_labels(recipe, pack_dir):
    manifest = json.loads((pack_dir / packed.MANIFEST).read_text())
    net_cfg = build_model("bhg-tiny").cfg
    train_here, val_here = training_arrays(recipe, net_cfg)
    (train, val), mixed = packed.load(pack_dir, net_cfg, 64, 32)
    assert manifest["counts"] == {"train": 64, "val": 32, "mixed": len(mixed[0])}
    assert manifest["bytes"] == (pack_dir / packed.DATA).stat().st_size
    # The run's own arrays: renders, then the mixed-in people mix_repeat times.
    for here, there in zip(train_here, [np.concatenate([a, m, m]) for a, m in zip(train, mixed)]):
        assert here.shape == there.shape
    for k in (1, 2):  # labels travel exactly, pixels through JPEG
        np.testing.assert_array_equal(train_here[k][:64], train[k])
        np.testing.assert_array_equal(val_here[k], val[k])
    # Quality 90 with 4:2:0 chroma: stick figures' hard colour edges suffer most (4.4 levels
    # on average when written; mesh crops 2.6).
    diff = np.abs(train_here[0][:64].astype(int) - train[0].astype(int))
    assert diff.mean() < 6 and np.median(diff) <= 2


def test_a_run_trains_from_the_pack_alone(recipe, pack_dir, tmp_path):
    copy = tmp_path / "moved"  # no cache, no renderer, no footage needed beside it
    shutil.copytree(pack_dir, copy)
    cfg = replace(recipe, data=f"packed:{copy}", mix=None, mix_images=None, epochs=1,
                  cache_dir=str(tmp_path / "empty-cache"), out_dir=str(tmp_path / "run"))
    out = train(cfg)
    assert json.loads((out / "config.json").read_text())["data"] == f"packed:{copy}"
    assert (out / "best.pt").is_file() and not (tmp_path / "empty-cache").exists()


@pytest.mark.parametrize("change, says", [
    ({"mix": "coco:x.json"}, "a pack holds its own crops and mixed-in people"),
    ({"model": "face-bhg-z2"}, "was packed for bhg-tiny (128x128, 16 joints)"),
    ({"data": "packed:/nonexistent"}, "not a readable pack: /nonexistent"),
])
def test_bad_packed_runs_are_one_line(recipe, pack_dir, tmp_path, change, says):
    cfg = replace(recipe, **{"data": f"packed:{pack_dir}", "mix": None, "mix_images": None,
                             "out_dir": str(tmp_path / "run"), **change})
    with pytest.raises(BnnposeError, match=says.replace("(", r"\(").replace(")", r"\)")):
        train(cfg)


def test_bad_pack_requests_are_one_line(pack_dir, capsys):
    assert pack.main(["--quality", "0", "--out", str(pack_dir.parent / "q")]) == 2
    assert pack.main(["--data", f"packed:{pack_dir}", "--out", str(pack_dir.parent / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "JPEG quality must be in 1..100" in err[0]
    assert "is packed already" in err[1]
