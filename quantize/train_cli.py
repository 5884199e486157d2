"""``bnnpose train``: the recipe from the command line, or a run continued with ``--resume``.

Usage: ``bnnpose train --epochs 4 --out out/train/run1`` or
``python -m bnnpose.quantize.train_cli --resume out/train/run1``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from bnnpose.host.common import BnnposeError, run_main
from bnnpose.models.blocks import SIGN_GRADIENTS
from bnnpose.models.registry import parse_arch
from bnnpose.quantize.losses import LOSSES
from bnnpose.quantize.train import run_history, train
from bnnpose.quantize.train_config import SESSION_FIELDS, TrainConfig


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="bnnpose train", description=__doc__.splitlines()[0])
    recipe = p.add_argument_group("recipe (fixed for a run; not allowed with --resume)")
    recipe.add_argument("--model", help=f"registry name (default: {d.model})")
    recipe.add_argument("--float", dest="binary", action="store_const", const=False,
                        help="train the float twin instead of the binary network")
    recipe.add_argument("--bits", type=int, help="stream width k, 0 for real-valued streams "
                        "that do not map to FINN (default: the model's)")
    recipe.add_argument("--channels", type=int, help="block width (default: the model's)")
    recipe.add_argument("--stem-channels", type=int,
                        help="width of the 8-bit stem (default: the model's)")
    recipe.add_argument("--pad-value", type=float, choices=(-1.0, 0.0),
                        help="border value of the binary convs' inputs (default: the model's)")
    recipe.add_argument("--end-bits", type=int, choices=(1, 2, 4, 8),
                        help="weight bits of the stem and head convs (default: the model's)")
    recipe.add_argument("--rsign", action="store_const", const=True,
                        help="learnable per-channel thresholds before every sign() (ReActNet's "
                        "RSign; FINN absorbs them into its thresholds)")
    recipe.add_argument("--arch", metavar="NAME=VALUE", action="append",
                        help="override a field of the model's architecture, e.g. depth=3, "
                        "widths=24x48x96, down_reads_stream=true (repeat for several; the "
                        "knobs `bnnpose dse --knob` sweeps)")
    recipe.add_argument("--data", help="synthetic (stick figures), mesh (mesh bodies), or a "
                        "labelled set as `bnnpose eval --data` takes it (coco:ANN.json, "
                        "mpii:FILE; with --images)")
    recipe.add_argument("--images", help="image folder of a real --data set")
    recipe.add_argument("--mix", metavar="SPEC", action="append",
                        help="a real set whose people all join the training samples "
                        "(repeat for several)")
    recipe.add_argument("--mix-images", metavar="DIR", action="append",
                        help="image folder of --mix (one per --mix, in order)")
    recipe.add_argument("--mix-repeat", type=int, metavar="K",
                        help=f"times each --mix person is seen per epoch (default: {d.mix_repeat})")
    recipe.add_argument("--n-train", type=int,
                        help=f"training samples, at most (default: {d.n_train})")
    recipe.add_argument("--n-val", type=int,
                        help=f"held-out samples, at least (default: {d.n_val})")
    recipe.add_argument("--epochs", type=int, help=f"default: {d.epochs}")
    recipe.add_argument("--batch-size", type=int, help=f"default: {d.batch_size}")
    recipe.add_argument("--lr", type=float, help=f"peak Adam learning rate (default: {d.lr})")
    recipe.add_argument("--weight-decay", type=float, help="Adam weight decay, never on the "
                        f"latent 1-bit weights (default: {d.weight_decay})")
    recipe.add_argument("--warmup-steps", type=int, help=f"default: {d.warmup_steps}")
    recipe.add_argument("--flip", type=float, help=f"flip probability (default: {d.flip})")
    recipe.add_argument("--rotate", type=float, metavar="DEG",
                        help=f"max random rotation of a crop (default: {d.rotate})")
    recipe.add_argument("--scale", type=float, metavar="S",
                        help=f"max random zoom change, 1 +- S (default: {d.scale})")
    recipe.add_argument("--sigma", type=float, help=f"target Gaussian sigma (default: {d.sigma})")
    recipe.add_argument("--head-init", type=float,
                        help=f"initial max |w| per head channel (default: {d.head_init:.4g})")
    recipe.add_argument("--seed", type=int, help=f"default: {d.seed}")
    recipe.add_argument("--init-from", metavar="CKPT",
                        help="initialise matching tensors from this checkpoint, e.g. the "
                             "float twin's best.pt")
    recipe.add_argument("--head-affine", action="store_const", const=True,
                        help="train a per-joint positive gain and bias on the heatmaps "
                             "(training only; stored as head_affine in the checkpoint)")
    recipe.add_argument("--distill-from", metavar="CKPT",
                        help="also regress the heatmaps of this checkpoint (e.g. the float twin)")
    recipe.add_argument("--loss", choices=tuple(LOSSES),
                        help=f"heatmap loss (default: {d.loss})")
    recipe.add_argument("--distill-weight", type=float,
                        help=f"weight of the distillation loss (default: {d.distill_weight})")
    recipe.add_argument("--distill-loss", choices=tuple(LOSSES),
                        help="loss against the teacher (default: --loss); softmax is the KL "
                        "divergence of the spatial softmaxes")
    recipe.add_argument("--feature-distill-weight", type=float, metavar="W",
                        help="weight of attention transfer from the --distill-from teacher at "
                        f"every block's output (default: {d.feature_distill_weight})")
    recipe.add_argument("--facing-weight", type=float, metavar="W",
                        help="weight of the training-only loss that asks whether each person "
                        f"faces the camera or turns away (default: {d.facing_weight})")
    recipe.add_argument("--sign-grad", choices=SIGN_GRADIENTS,
                        help="backward pass of sign(): clipped straight-through or Bi-Real's "
                        f"ApproxSign (default: {d.sign_grad})")
    recipe.add_argument("--float-weight-epochs", type=int, metavar="N",
                        help="two-stage training: the first N epochs keep the weights "
                        f"real-valued (default: {d.float_weight_epochs})")
    recipe.add_argument("--smplx-model", metavar="PATH",
                        help="your SMPL-X model (folder or .npz; not shipped): also train a "
                        "BiDRN's SMPL-X head by 2-D reprojection (needs bnnpose[smplx])")
    recipe.add_argument("--smplx-weight", type=float,
                        help=f"weight of the SMPL-X loss (default {d.smplx_weight})")
    session = p.add_argument_group("session")
    session.add_argument("--out", dest="out_dir", metavar="DIR",
                         help=f"run folder (default: {d.out_dir})")
    session.add_argument("--resume", metavar="RUN_DIR",
                         help="continue the run in RUN_DIR from its last.pt")
    session.add_argument("--cache-dir", metavar="DIR", help=f"default: {d.cache_dir}")
    session.add_argument("--num-threads", type=int,
                         help=f"torch threads (default: {d.num_threads})")
    session.add_argument("--render-workers", type=int, metavar="N",
                         help=f"processes rendering --data mesh (default: {d.render_workers})")
    session.add_argument("--device", choices=("cpu", "cuda", "auto"),
                         help=f"where to train (default: {d.device}); auto takes a GPU if "
                         "torch sees one")
    session.add_argument("--time-budget", dest="time_budget_s", type=float, metavar="S",
                         help="end the session before an epoch that would end after S seconds "
                         "(continue with --resume)")
    session.add_argument("--stop-after", type=int, metavar="N",
                         help="stop this session after N epochs (continue with --resume)")
    return p


def parse_given(argv: Sequence[str] | None) -> tuple[dict, str | None]:
    """The command line's given options as ``TrainConfig`` fields, and ``--resume``'s folder."""
    args = vars(build_parser().parse_args(argv))
    resume_dir = args.pop("resume")
    given = {k: v for k, v in args.items() if v is not None}
    for key in ("mix", "mix_images"):
        # One set stays a plain string: the recipe (and its digest) of a one-set run is
        # what it was before several sets could be mixed.
        if key in given and len(given[key]) == 1:
            given[key] = given[key][0]
    if "arch" in given:
        given["arch"] = parse_arch(given.get("model", TrainConfig.model), given["arch"])
    return given, resume_dir


def main(argv: Sequence[str] | None = None) -> int:
    """``bnnpose train`` entry point; returns the exit status."""
    given, resume_dir = parse_given(argv)
    if resume_dir is not None:
        recipe_opts = sorted(set(given) - set(SESSION_FIELDS))
        if recipe_opts:
            raise BnnposeError(
                f"--resume continues the stored recipe; drop: {', '.join(recipe_opts)}")
        if "out_dir" in given:
            raise BnnposeError("--resume trains in RUN_DIR; drop --out")
        stored = TrainConfig.load(Path(resume_dir) / "config.json")
        # A stored session limit ended the earlier session; it does not carry over.
        cfg = TrainConfig.from_dict({**stored.to_dict(), "stop_after": None, **given,
                                     "out_dir": resume_dir, "resume": True})
    else:
        cfg = replace(TrainConfig(), **given)
    out = train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        torch.distributed.destroy_process_group()
        return 0
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    history = run_history(out)
    best = max(history, key=lambda h: h["val_pck"])
    print(f"{out}: best val PCK@0.2 {best['val_pck']:.3f} (epoch {best['epoch']}), "
          f"mean pose {best['val_pck_mean_pose']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, None, "bnnpose train"))
