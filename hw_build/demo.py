"""``make demo``: the shipped binary hourglass from checkpoint to simulated PYNQ-Z2 accelerator.

    bnnpose demo [--model NAME] [--out out/demo] [--board pynq-z2] [--fps 1000] [--n-eval 512]

1. export the shipped checkpoint ``models/checkpoints/NAME.pt`` (default: the PYNQ-Z2's
   default network) to QONNX with 16 golden vectors;
2. compile it with ``hw_build/make_bitstream.py`` (FINN; bitstream only where Vivado is);
3. package ``overlays/<board>/NAME/``;
4. push the golden inputs through the host's packed-byte path into the simulated accelerator;
5. score PCK@0.2 on held-out renders of the kind the network was trained on (mesh bodies or
   stick figures) beside the mean-pose baseline, and run the host pipeline on renders and a
   real photograph (scikit-image's ``astronaut``; unlabelled, so it is shown, not scored).

Writes ``OUT/summary.json``, ``OUT/keypoints.png`` and prints a summary table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bnnpose.host.common import BnnposeError, sha256_file, write_json
from bnnpose.hw_build.config import DEFAULT_FPS
from bnnpose.models.checkpoint_io import DEFAULT_MODEL, load_checkpoint, shipped_checkpoint

REPO = Path(__file__).resolve().parents[1]


#: Training renders whose mean pose is the baseline: enough for a stable mean, few enough that
#: a fresh machine renders them in seconds.
N_MEAN_POSE = 512


def score_renders(checkpoint: Path, n_eval: int) -> dict:
    """PCK@0.2 of the network and of the training mean pose on held-out renders of the kind
    the checkpoint was trained on: mesh bodies, or stick figures."""
    from dataclasses import replace

    from bnnpose.quantize.evaluate import evaluate
    from bnnpose.quantize.train_config import TrainConfig
    from bnnpose.quantize.train_data import rendered_arrays

    model, ckpt = load_checkpoint(checkpoint)
    tc = TrainConfig.from_dict(ckpt["train_config"])
    # Training's own renders, cut to N_MEAN_POSE training and n_eval held-out samples.
    tc = replace(tc, n_train=min(tc.n_train, N_MEAN_POSE), n_val=n_eval,
                 cache_dir=str(REPO / "out" / "cache" / "synthetic"))
    train_kp = rendered_arrays(tc, False, model.cfg)[1]
    images, kp, vis = rendered_arrays(tc, True, model.cfg)
    res = evaluate(model, images, kp, vis, train_kp)
    res["pck_flip_test"] = evaluate(model, images, kp, vis, train_kp, flip_test=True)["pck"]
    res["n_images"] = n_eval
    res["renders"] = "mesh bodies" if tc.data == "mesh" else "stick figures"
    res["images"] = images[:7]
    return res


def real_photo() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _reusable(path: Path, **expected) -> dict | None:
    """The JSON at ``path`` if it records exactly the ``expected`` inputs, else None.

    ``config_fps`` is looked up as ``config["fps"]``; a stage whose inputs did not change is not
    run again, so a second ``make demo`` takes seconds for export and build.
    """
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    for key, value in expected.items():
        got = data.get("config", {}).get("fps") if key == "config_fps" else data.get(key)
        if got != value:
            return None
    return data


def run(out: Path, board: str, fps: float, n_eval: int, force: bool = False,
        model_name: str = DEFAULT_MODEL) -> dict:
    from bnnpose.host.draw import keypoints_grid
    from bnnpose.host.pipeline import PosePipeline
    from bnnpose.hw_build.config import BuildConfig
    from bnnpose.hw_build.make_bitstream import build, summary_line
    from bnnpose.hw_build.overlay import check_host, package_overlay
    from bnnpose.hw_build.sim import SimBackend
    from bnnpose.quantize.export import export

    t0 = time.perf_counter()
    ckpt = shipped_checkpoint(model_name)
    out.mkdir(parents=True, exist_ok=True)
    info = _reusable(out / "export" / "export.json", checkpoint_sha256=sha256_file(ckpt))
    if info is None or force:
        print(f"[1/5] export {ckpt.name} -> {out / 'export'}")
        info = export(ckpt, out / "export", n_golden=16)
    else:
        print(f"[1/5] export: {out / 'export'} is up to date")
    model = out / "export" / "model.onnx"
    report = _reusable(out / "build" / "report.json", model_sha256=sha256_file(model),
                       board=board, config_fps=fps)
    if report is None or force:
        print(f"[2/5] FINN build for {board} -> {out / 'build'}")
        report = build(BuildConfig(model=model, board=board, out=out / "build", fps=fps))
    else:
        print(f"[2/5] FINN build: {out / 'build'} is up to date")
    print("      " + summary_line(report))
    overlay = REPO / "overlays" / board / model_name
    print(f"[3/5] overlay -> {overlay}")
    package_overlay(out / "build", overlay, model_name, joints=info["output"]["joints"])
    print("[4/5] golden vectors through the host's packed-byte path (simulated accelerator, "
          "cpu engine)")
    host_sim = check_host(overlay, out / "export", "sim")
    host_cpu = check_host(overlay, out / "export", "cpu")
    print(f"[5/5] PCK on {n_eval} held-out renders; host pipeline on renders + a photo")
    scores = score_renders(ckpt, n_eval)
    backend = SimBackend(overlay)  # loads and parses model_hw.onnx once
    pipe = PosePipeline(backend, backend.host_cfg)
    shown = [*scores.pop("images"), real_photo()]
    preds = [pipe.predict(img) for img in shown]
    keypoints_grid(shown, [p["keypoints"] for p in preds], [p["scores"] for p in preds],
                   path=out / "keypoints.png", cols=4)
    acc_ms = float(np.mean([p["latency_ms"]["accelerator"] for p in preds]))
    summary = {
        "model": info["name"], "board": board,
        "params": _params(ckpt),
        "pck": round(scores["pck"], 4), "pck_mean_pose": round(scores["pck_mean_pose"], 4),
        "pck_flip_test": round(scores["pck_flip_test"], 4),
        "pck_images": scores["n_images"], "pck_instances": scores["n_instances"],
        "pck_renders": scores["renders"],
        "pck_note": "held-out renders of the kind the network was trained on (pck_renders), "
                    "PCK@0.2 of the torso diagonal; computed with "
                    "the torch network, which every stage below reproduces bit for bit; "
                    "pck_flip_test averages each crop's heatmaps with its mirror's, as "
                    "`bnnpose run --flip-test` does with two accelerator passes",
        "bitexact": {"torch_vs_qonnx": info["bitexact"]["torch_vs_qonnx"],
                     **report["bitexact"], "host_sim": host_sim["bitexact"],
                     "host_cpu": host_cpu["bitexact"]},
        "bitexact_inputs": host_sim["n_inputs"],
        "unmapped_nodes": report["unmapped_nodes"], "host_ops": [o["what"] for o in
                                                                 report["host_ops"]],
        "estimate": report["estimate"], "xnor_mac_share": report["xnor_mac_share"],
        "macs_by_bitwidth": report["macs_by_bitwidth"],
        "sim_ms_per_frame": round(acc_ms, 1),
        "cpu_ms_per_frame": round(1e3 * host_cpu["seconds_per_frame"], 2),
        "real_photo": "scikit-image astronaut (unlabelled: shown in keypoints.png, not scored)",
        "overlay": str(overlay.relative_to(REPO)), "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(out / "summary.json", summary)
    _print_table(summary)
    return summary


def _params(ckpt_path: Path) -> int:
    import torch

    sd = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
    return int(sum(v.numel() for k, v in sd.items() if k.endswith(("weight", "bias"))))


def _print_table(s: dict) -> None:
    e = s["estimate"]
    rows = [
        ("model", s["model"]), ("board", s["board"]), ("parameters", f"{s['params']:,}"),
        (f"PCK@0.2 (held-out {s['pck_renders']})", f"{s['pck']:.3f}"),
        ("PCK@0.2 with flip-test (2 passes)", f"{s['pck_flip_test']:.3f}"),
        ("PCK@0.2 mean-pose baseline", f"{s['pck_mean_pose']:.3f}"),
        ("bit-exact stages", ", ".join(f"{k}={'yes' if v else 'NO'}"
                                       for k, v in s["bitexact"].items())),
        ("unmapped nodes", str(len(s["unmapped_nodes"]))),
        ("XNOR MAC share", f"{s['xnor_mac_share']:.3f}"),
        ("est. FPS", f"{e['fps']:.0f} @ {e['clock_mhz']:g} MHz"),
        ("est. LUT", f"{e['lut']} / {e['board']['lut']} ({100 * e['lut_share']:.1f}%)"),
        ("est. BRAM18", f"{e['bram18']} / {e['board']['bram18']} ({100 * e['bram_share']:.1f}%)"),
        ("fits board limits", str(e["fits"])),
        ("demo time", f"{s['seconds']:.0f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bnnpose demo", description=__doc__.split("\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME",
                   help="shipped network (models/checkpoints/NAME.pt; default %(default)s)")
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.add_argument("--board", default="pynq-z2")
    p.add_argument("--fps", type=float, default=DEFAULT_FPS)
    p.add_argument("--n-eval", type=int, default=512,
                   help="held-out renders to score (default 512)")
    p.add_argument("--force", action="store_true", help="redo export and build even if current")
    a = p.parse_args(argv)
    if a.n_eval < 1:
        raise BnnposeError(f"--n-eval must be positive, got {a.n_eval}")
    run(a.out, a.board, a.fps, a.n_eval, a.force, a.model)
    return 0
