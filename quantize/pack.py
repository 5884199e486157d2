"""``bnnpose pack``: a recipe's training crops packed to travel (``--data packed:DIR``).

A machine with a GPU may have neither the renderer's libraries (anny, moderngl, EGL) nor the
footage's frames, and what can be sent to it is limited in size. ``pack`` runs a recipe's data
stage here (renders and crops of the mixed-in sets' people, from the same caches a run uses)
and writes the resulting crops, JPEG-compressed, with their labels and a manifest of the recipe
they came from (the format: ``quantize/packed.py``).

A run on ``packed:DIR`` names the pack in its ``config.json``; the pack's manifest says where
the crops came from. JPEG changes
pixels by a few levels, so a packed run trains on nearly, not exactly, the crops a run here
would: at the default quality 90, 2.6 levels on average on mesh crops. ``bhg-c64-z2``'s recipe
(8,000 mesh renders, 256 held out, 754 footage people) packs into 43.2 MiB at quality 90 and
31.8 MiB at 80.

    bnnpose pack --model bhg-c64-z2 --data mesh --n-train 8000 --n-val 256 \\
        --mix coco:out/realset/vtest-train/annotations.json \\
        --mix-images out/realset/vtest-train/images --out pack/c64
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from bnnpose.host.common import BnnposeError, run_main
from bnnpose.quantize import packed
from bnnpose.quantize.train_config import RENDERED, TrainConfig, check_config
from bnnpose.quantize.train_data import data_arrays, mix_digest, mixed_arrays, renderer_digest
from bnnpose.quantize.train_model import create_model

DEFAULT_QUALITY = 90


def pack(cfg: TrainConfig, out: Path, quality: int = DEFAULT_QUALITY) -> dict:
    """Write ``cfg``'s data (renders or a real set, and its ``mix`` people) to ``out``;
    returns the manifest."""
    packed.check_quality(quality)  # before minutes of rendering
    if cfg.data.startswith(packed.PREFIX):
        raise BnnposeError(f"{cfg.data} is packed already")
    check_config(cfg)
    model_cfg = create_model(replace(cfg, init_from=None))[0].cfg
    mixed = mixed_arrays(cfg, model_cfg)
    train, val = data_arrays(cfg, model_cfg)
    about = {"recipe": {k: getattr(cfg, k) for k in ("model", "data", "images", "mix",
                                                     "mix_images", "n_train", "n_val", "arch")},
             "renderer_digest": renderer_digest(cfg.data) if cfg.data in RENDERED else None,
             "mix_digest": mix_digest(cfg)}
    return packed.write(out, {"train": train, "val": val, "mixed": mixed}, model_cfg, quality,
                        about)


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv, "bnnpose pack")


def _main(argv: list[str]) -> int:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="bnnpose pack", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=d.model, help="registry name (default: %(default)s)")
    p.add_argument("--data", default=d.data, help="synthetic, mesh, or a labelled set as "
                   "`bnnpose train --data` takes it (default: %(default)s)")
    p.add_argument("--images", help="image folder of a real --data set")
    p.add_argument("--mix", metavar="SPEC", action="append",
                   help="a real set whose people join the training samples (repeatable)")
    p.add_argument("--mix-images", metavar="DIR", action="append",
                   help="image folder of --mix (one per --mix, in order)")
    p.add_argument("--n-train", type=int, default=d.n_train)
    p.add_argument("--n-val", type=int, default=d.n_val)
    p.add_argument("--quality", type=int, default=DEFAULT_QUALITY,
                   help="JPEG quality, 1-100 (default: %(default)s)")
    p.add_argument("--cache-dir", default=d.cache_dir)
    p.add_argument("--render-workers", type=int, default=d.render_workers)
    p.add_argument("--out", type=Path, required=True, help="folder to write the pack to")
    a = p.parse_args(argv)
    cfg = replace(d, model=a.model, data=a.data, images=a.images, mix=a.mix,
                  mix_images=a.mix_images, n_train=a.n_train, n_val=a.n_val,
                  cache_dir=a.cache_dir, render_workers=a.render_workers)
    manifest = pack(cfg, a.out, a.quality)
    c = manifest["counts"]
    print(f"{a.out}: {c['train']} training, {c['val']} held-out and {c['mixed']} mixed-in "
          f"crops, {manifest['bytes'] / 2**20:.1f} MiB (JPEG quality {a.quality})")
    return 0
