"""``curves.png`` of a run folder: training loss and validation PCK per epoch."""

from __future__ import annotations

from pathlib import Path

from bnnpose.host.common import atomic_writer


def plot_curves(history: list[dict], path: Path, loss: str = "") -> None:
    """``loss`` names the terms the run minimised (the loss panel's title)."""
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax_loss, ax_pck = fig.subplots(1, 2)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="train loss", yscale="log")
    ax_loss.set_title(loss, fontsize=8)
    ax_pck.plot(epochs, [h["val_pck"] for h in history], marker="o", label="model")
    ax_pck.plot(epochs, [h["val_pck_mean_pose"] for h in history], ls="--", label="mean pose")
    ax_pck.set(xlabel="epoch", ylabel="val PCK@0.2", ylim=(0, 1))
    ax_pck.legend()
    with atomic_writer(path) as f:
        fig.savefig(f, format="png", dpi=100)
