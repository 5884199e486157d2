"""Train a registered pose network: the training loop.

A run folder holds ``config.json`` (the :class:`TrainConfig`), ``metrics.jsonl`` (one line per
epoch), ``best.pt`` (highest validation PCK), ``last.pt`` (also optimizer, scheduler and RNG
state, for ``--resume``) and ``curves.png``. Checkpoints hold only tensors and primitive
containers, so ``torch.load(path, weights_only=True)`` reads them;
``models.checkpoint_io.load_checkpoint`` rebuilds the network. The recipe is
``train_config.py``, the data ``train_data.py``, the losses ``losses.py``, the command line
``train_cli.py``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bnnpose.host.codec import HeatmapCodec, mean_pose_baseline
from bnnpose.host.common import BnnposeError, atomic_writer, write_json
from bnnpose.host.skeleton import flip_permutation_of
from bnnpose.models.blocks import binary_weight_convs, set_sign_gradient
from bnnpose.models.checkpoint_io import load_checkpoint
from bnnpose.models.registry import model_joints
from bnnpose.quantize.crops import random_affines
from bnnpose.quantize.curves import plot_curves
from bnnpose.quantize.distributed import barrier, distributed, replicas_identical
from bnnpose.quantize.evaluate import evaluate
from bnnpose.quantize.facing import FacingProbe, facing_loss, facing_targets
from bnnpose.quantize.feature_distill import (
    BlockTaps, attention_transfer_loss, check_same_blocks,
)
from bnnpose.quantize.losses import LOSSES, teacher_heatmaps
from bnnpose.quantize.train_config import (
    TrainConfig, check_config, recipe_digest, resolve_device,
)
from bnnpose.quantize.train_data import make_batch, mix_digest, training_arrays
from bnnpose.quantize.train_model import HeadAffine, WithAffine, create_model

#: Keys of a model checkpoint (``best.pt`` and the shipped ones); ``last.pt`` adds RESUME_KEYS.
CHECKPOINT_KEYS = ("model", "config", "state_dict", "train_config", "metrics")
RESUME_KEYS = ("optimizer", "scheduler", "epoch", "torch_rng_state", "history")


def save_checkpoint(obj: dict, path: Path) -> None:
    """``torch.save`` through a temporary file: a killed run never leaves half a checkpoint."""
    with atomic_writer(path) as f:
        torch.save(obj, f)


def lr_schedule(warmup: int, total: int, restart: int = 0):
    """Multiplier of the peak learning rate at optimizer step ``s``: linear warmup, cosine;
    with ``restart`` > 0 a second warmup and cosine start at that step (two-stage training)."""

    def factor(step: int) -> float:
        start, end = (0, restart) if step < restart else (restart, total)
        step -= start
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, end - start - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def loss_label(cfg: TrainConfig) -> str:
    """The terms a run's training loss sums, for its curves."""
    terms = [cfg.loss]
    if cfg.distill_from is not None:
        terms.append(f"{cfg.distill_weight:g} x {cfg.teacher_loss} distillation")
    if cfg.feature_distill_weight:
        terms.append(f"{cfg.feature_distill_weight:g} x attention transfer")
    if cfg.smplx_model is not None:
        terms.append(f"{cfg.smplx_weight:g} x SMPL-X reprojection")
    if cfg.facing_weight:
        terms.append(f"{cfg.facing_weight:g} x facing")
    return " + ".join(terms)


def optimizer_groups(model: torch.nn.Module, others: list, weight_decay: float) -> list[dict]:
    """Adam parameter groups: ``weight_decay`` on everything but the latent weights of 1-bit
    convs, which only their sign uses (one group without decay)."""
    latent = {id(m.weight) for m in binary_weight_convs(model)}
    params = list(model.parameters()) + others
    if not weight_decay:
        return [{"params": params, "weight_decay": 0.0}]
    return [{"params": [p for p in params if id(p) not in latent],
             "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) in latent], "weight_decay": 0.0}]


def train(cfg: TrainConfig) -> Path:
    """Train (or with ``cfg.resume`` continue) a run in ``cfg.out_dir``; returns that folder.

    Under ``torchrun --nproc_per_node N`` every process takes 1/N of each batch and gradients
    are averaged (DistributedDataParallel), so the recipe and its batch size mean the same as
    in one process; rank 0 alone renders the data cache, evaluates and writes the run folder.
    """
    check_config(cfg)
    rank, world = distributed()
    if cfg.batch_size % world:
        raise BnnposeError(f"batch size {cfg.batch_size} does not split over {world} processes")
    if cfg.time_budget_s is not None and world > 1:
        # Each process would judge the clock on its own and could stop at another epoch.
        raise BnnposeError("--time-budget trains in one process")
    lead = rank == 0
    torch.set_num_threads(cfg.num_threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path, metrics_path = out / "last.pt", out / "best.pt", out / "metrics.jsonl"

    state = None
    if cfg.resume:
        if not last_path.is_file():
            raise BnnposeError(f"nothing to resume: {last_path} does not exist")
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        stored = TrainConfig.from_dict(state["train_config"]).recipe()
        if stored != cfg.recipe():
            changed = sorted(k for k in stored.keys() | cfg.recipe().keys()
                             if stored.get(k) != cfg.recipe().get(k))
            raise BnnposeError(f"cannot resume {out} with a different recipe: {', '.join(changed)}")
    elif lead:
        for stale in (last_path, best_path, metrics_path, out / "curves.png"):
            stale.unlink(missing_ok=True)
    if lead:
        cfg.save(out / "config.json")

    session_start = time.perf_counter()
    device = resolve_device(cfg.device)
    model, source = create_model(cfg)
    model.to(device)
    set_sign_gradient(model, cfg.sign_grad)
    latent_convs = binary_weight_convs(model)
    size = model.cfg.input_size
    codec = HeatmapCodec((size, size), (model.cfg.heatmap_size,) * 2, cfg.sigma)
    if not lead:  # the cache is written once, by rank 0, then read by all
        barrier(world)
    train_data, val_data = training_arrays(cfg, model.cfg)
    if lead:
        barrier(world)
    n_train = len(train_data[0])
    if n_train < cfg.batch_size:
        raise BnnposeError(f"{cfg.data}: {n_train} training samples, fewer than one batch "
                           f"of {cfg.batch_size}")
    # Over every known position (renders know joints outside the crop; real sets do not).
    mean_pose = mean_pose_baseline(train_data[1], np.isfinite(train_data[1]).all(axis=-1))

    steps_per_epoch = n_train // cfg.batch_size  # full batches only: BN needs the samples
    joints = model_joints(model.cfg)
    flip_perm = flip_permutation_of(joints)
    affine = HeadAffine(model.cfg.num_joints) if cfg.head_affine else None
    if affine is not None and source is not None and "head_affine" in source:
        affine.load_lists(source["head_affine"])
    if affine is not None:
        affine.to(device)
    teacher, teacher_gain = None, None
    distill_loss = cfg.teacher_loss
    if cfg.distill_from is not None:
        teacher, teacher_ckpt = load_checkpoint(cfg.distill_from)
        teacher.to(device)
        if "head_affine" in teacher_ckpt:  # the temperature the teacher was trained at
            teacher_gain = torch.tensor(teacher_ckpt["head_affine"]["gain"], device=device)
    taps = teacher_taps = None
    if cfg.feature_distill_weight:
        taps, teacher_taps = BlockTaps(model), BlockTaps(teacher)
        check_same_blocks(taps, teacher_taps)
    smplx_head = body_model = None
    if cfg.smplx_model is not None:
        from bnnpose.models import smplx_head as sx

        if world > 1 or device.type != "cpu":
            raise BnnposeError("the SMPL-X head trains in one process, on the CPU")
        body_model, body_joints = sx.load_body_model(cfg.smplx_model), sx.body_joint_names()
        smplx_head = sx.SMPLXHead(model)
        smplx_head.attach(model)
        if source is not None and "smplx_head" in source:
            smplx_head.load_state_dict(source["smplx_head"])
    probe = None
    if cfg.facing_weight:
        if world > 1:  # DistributedDataParallel would not keep the probes of the ranks equal
            raise BnnposeError("--facing-weight trains in one process")
        probe = FacingProbe(model).to(device)
        probe.attach(model)
        if source is not None and "facing_probe" in source:
            probe.load_state_dict(source["facing_probe"])
    others = [] if affine is None else list(affine.parameters())
    others += [] if smplx_head is None else list(smplx_head.parameters())
    others += [] if probe is None else list(probe.parameters())
    optimizer = torch.optim.Adam(optimizer_groups(model, others, cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_schedule(cfg.warmup_steps, steps_per_epoch * cfg.epochs,
                               steps_per_epoch * cfg.float_weight_epochs))
    history: list[dict] = []
    first_epoch = 1
    if state is not None:
        model.load_state_dict(state["state_dict"])
        if affine is not None:
            affine.load_lists(state["head_affine"])
        if smplx_head is not None:
            smplx_head.load_state_dict(state["smplx_head"])
        if probe is not None:
            probe.load_state_dict(state["facing_probe"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng_state"])
        history = list(state["history"])
        first_epoch = state["epoch"] + 1
    # Rewritten from the checkpoint, so epochs logged after it by an interrupted session go.
    if lead:
        metrics_path.write_text("".join(json.dumps(h) + "\n" for h in history))
    net = model if affine is None else WithAffine(model, affine)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net)
    best_pck = max((h["val_pck"] for h in history if h.get("stage", 2) == 2),
                   default=-math.inf)

    def checkpoint(metrics: dict) -> dict:
        ckpt = {"model": cfg.model, "config": model.cfg.to_dict(),
                # A plain dict drops the per-module _metadata, which Brevitas's deep module
                # trees make larger than the weights themselves; CPU tensors load anywhere.
                "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                "train_config": cfg.to_dict(),
                "metrics": metrics}
        if affine is not None:
            ckpt["head_affine"] = affine.to_lists()
        if smplx_head is not None:
            ckpt["smplx_head"] = dict(smplx_head.state_dict())
        if probe is not None:
            ckpt["facing_probe"] = {k: v.cpu() for k, v in probe.state_dict().items()}
        return ckpt

    last_epoch = cfg.epochs if cfg.stop_after is None else min(
        cfg.epochs, first_epoch - 1 + cfg.stop_after)
    epoch_times: list[float] = []
    for epoch in range(first_epoch, last_epoch + 1):
        started = time.perf_counter()
        if cfg.time_budget_s is not None and epoch_times:
            spent = started - session_start
            if spent + max(epoch_times) > cfg.time_budget_s:
                tqdm.write(f"time budget: {spent:.0f} s spent, an epoch takes up to "
                           f"{max(epoch_times):.0f} s, {cfg.time_budget_s:.0f} s allowed; "
                           f"stopped after epoch {epoch - 1} (continue with --resume)")
                break
        # Shuffling and flips depend on (seed, epoch) alone, so a resumed run sees the same.
        rng = np.random.default_rng([cfg.seed, epoch])
        order = rng.permutation(n_train)[: steps_per_epoch * cfg.batch_size]
        order = order.reshape(steps_per_epoch, cfg.batch_size)
        flips = rng.random(order.shape) < cfg.flip
        affines = random_affines(rng, order.size, size, cfg.rotate, cfg.scale)
        if affines is not None:
            affines = affines.reshape(*order.shape, 2, 3)
        # Two-stage training: real-valued weights (binary activations) in the first stage.
        first_stage = epoch <= cfg.float_weight_epochs
        for conv in latent_convs:
            conv.weight_quant.disable_quant = first_stage
        model.train()
        total_loss = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{cfg.epochs}", unit="step",
                   disable=not lead)
        for step in bar:
            # Sorted gathers are faster; BN ignores sample order. Rank r takes every world-th.
            idx = np.sort(order[step])[rank::world]
            inputs, target, weight, *kp = make_batch(
                *(a[idx] for a in train_data), flips[step][rank::world], codec,
                None if affines is None else affines[step][rank::world], flip_perm,
                with_keypoints=smplx_head is not None or probe is not None)
            if probe is not None:  # from the host's arrays, before the batch moves
                facing = [torch.from_numpy(t).to(device) for t in facing_targets(
                    kp[0].numpy(), weight.numpy(), joints)]
            inputs, target, weight = (t.to(device) for t in (inputs, target, weight))
            with taps.recording() if taps else contextlib.nullcontext():
                pred = net(inputs)
            # A stacked network returns every stack's heatmaps: each is supervised.
            preds = pred if isinstance(pred, list) else [pred]
            loss = sum(LOSSES[cfg.loss](p, target, weight) for p in preds)
            if teacher is not None:
                with teacher_taps.recording() if taps else contextlib.nullcontext():
                    soft = teacher_heatmaps(teacher, teacher_gain, inputs, distill_loss)
                loss = loss + cfg.distill_weight * sum(
                    LOSSES[distill_loss](p, soft, weight) for p in preds)
            if taps is not None:
                loss = loss + cfg.feature_distill_weight * attention_transfer_loss(
                    taps.take(), teacher_taps.take())
            if smplx_head is not None:
                loss = loss + cfg.smplx_weight * sx.reprojection_loss(
                    body_model, smplx_head(), kp[0], weight, size, joints, body_joints)
            if probe is not None:
                loss = loss + cfg.facing_weight * facing_loss(probe(), *facing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{total_loss / (step + 1):.5f}")
        bar.close()
        if world > 1:
            summed = torch.tensor(total_loss)
            torch.distributed.all_reduce(summed)
            total_loss = summed.item() / world
        if not lead:
            barrier(world)  # rank 0 evaluates and writes the run folder
            continue
        # PCK of the raw network output: the hardware runs the network without the affine.
        result = evaluate(model, *val_data, mean_pose, joints=joints)
        extra = {}
        if affine is not None:
            with_affine = evaluate(WithAffine(model, affine), *val_data, mean_pose,
                                   joints=joints)
            extra = {"val_pck_affine": with_affine["pck"], "head_affine": affine.to_lists()}
        metrics = {
            "epoch": epoch,
            "step": epoch * steps_per_epoch,
            "lr": scheduler.get_last_lr()[0],
            "train_loss": total_loss / steps_per_epoch,
            "val_pck": result["pck"],
            "val_pck_mean_pose": result["pck_mean_pose"],
            "val_per_joint": result["per_joint"],
            "val_instances": result["n_instances"],
            "world_size": world,
            "device": str(device),
            **({"stage": 1 if first_stage else 2} if cfg.float_weight_epochs else {}),
            **extra,
            "epoch_time_s": time.perf_counter() - started,
        }
        history.append(metrics)
        with metrics_path.open("a") as f:
            f.write(json.dumps(metrics) + "\n")
        tqdm.write(f"epoch {epoch}: loss {metrics['train_loss']:.5f}  val PCK@0.2 "
                   f"{metrics['val_pck']:.4f} (mean pose {metrics['val_pck_mean_pose']:.4f}"
                   + (f", with affine {extra['val_pck_affine']:.4f}" if extra else "")
                   + f")  {metrics['epoch_time_s']:.0f} s")
        # A first-stage network is not the one exported (its weights are not yet binary).
        if metrics["val_pck"] > best_pck and not first_stage:
            best_pck = metrics["val_pck"]
            save_checkpoint(checkpoint(metrics), best_path)
        save_checkpoint({**checkpoint(metrics), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "epoch": epoch,
                      "torch_rng_state": torch.get_rng_state(), "history": history}, last_path)
        plot_curves(history, out / "curves.png", loss_label(cfg))
        epoch_times.append(time.perf_counter() - started)
        barrier(world)
    if world > 1:
        identical = replicas_identical(net)
        if lead:
            write_json(out / "distributed.json", {"world_size": world,
                                                  "backend": torch.distributed.get_backend(),
                                                  "replicas_identical": identical})
        if not identical:
            raise BnnposeError("the processes ended with different weights")
    return out


def run_history(run_dir: str | os.PathLike) -> list[dict]:
    """The epochs a run folder's ``metrics.jsonl`` records, oldest first; [] before the first."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_key(cfg: TrainConfig, identity: dict | None = None) -> str:
    """The digest a finished run records: its recipe, the content of its mixed-in sets and
    ``identity`` (e.g. the renderer's code)."""
    mix = mix_digest(cfg)
    return recipe_digest({**cfg.recipe(), **(identity or {}), **({"mix": mix} if mix else {})})


def trained_run(cfg: TrainConfig, work: Path, label: str, identity: dict | None = None) -> Path:
    """The run folder of ``cfg`` under ``work``, named ``label-<key>`` by the digest of its
    recipe (and of ``identity``, e.g. the renderer's code), trained unless it holds the
    finished run with that key; an interrupted one resumes. Benches reuse runs this way."""
    key = run_key(cfg, identity)
    run_dir = Path(work) / f"{label}-{key[:10]}"
    marker = run_dir / "finished.json"
    if not (marker.is_file() and json.loads(marker.read_text()).get("key") == key):
        started = time.perf_counter()
        train(replace(cfg, out_dir=str(run_dir), resume=(run_dir / "last.pt").is_file()))
        write_json(marker, {"key": key, "session_wall_time_s": time.perf_counter() - started})
    return run_dir

