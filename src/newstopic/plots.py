"""The report's pictures, drawn by matplotlib with the Agg backend.

Why matplotlib/Agg: it is the plotting library already in every scientific Python install
(scikit-learn's own plots use it), Agg writes PNG files without a display or a browser (cluster
nodes, CI), and a PNG is what Snakemake's report embeds as is. An interactive library (plotly,
altair) would put megabytes of JavaScript in each figure for little gain on a few lines and a
7 x 7 matrix.

Topic names are Korean: a font with Hangul glyphs is looked for (Nanum, Noto CJK, ...; Debian:
`apt-get install fonts-nanum`). Without one the plots label topics by id, never with empty
boxes, and say so in the rule's log.

Every function writes one PNG atomically and returns nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display anywhere the rules run

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from newstopic.atomic import atomic_path  # noqa: E402

log = logging.getLogger("newstopic")

# Fonts with Hangul, most common first (Debian fonts-nanum, fonts-noto-cjk, fonts-unfonts-core).
HANGUL_FONTS = (
    "NanumGothic",
    "NanumBarunGothic",
    "Noto Sans CJK KR",
    "Noto Sans KR",
    "UnDotum",
    "Malgun Gothic",
)


@cache
def hangul_font() -> str | None:
    """The family name of an installed font with Hangul glyphs, or None."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    found = next((name for name in HANGUL_FONTS if name in installed), None)
    if found is None:
        # matplotlib caches its font list once: a font installed after that is added here.
        for path in font_manager.findSystemFonts():
            if any(key in Path(path).name for key in ("Nanum", "NotoSansCJK", "NotoSansKR", "UnDotum")):
                font_manager.fontManager.addfont(path)
        installed = {f.name for f in font_manager.fontManager.ttflist}
        found = next((name for name in HANGUL_FONTS if name in installed), None)
    if found is None:
        log.warning(
            "no font with Hangul glyphs found (apt-get install fonts-nanum): plots label topics by id"
        )
    return found


def topic_labels(names: Sequence[str] | None, n: int) -> list[str]:
    """Axis labels of the topics: `0 IT과학` when names and a Hangul font exist, else ids."""
    if names and (hangul_font() or all(name.isascii() for name in names)):
        return [f"{i} {name}" for i, name in enumerate(names)]
    return [str(i) for i in range(n)]


def _figure(ncols: int = 1, width: float = 6.0, height: float = 4.5) -> tuple[Any, Any]:
    font = hangul_font()
    if font:
        plt.rcParams["font.family"] = [font, "DejaVu Sans"]
    plt.rcParams["axes.unicode_minus"] = False  # Hangul fonts lack the Unicode minus sign
    return plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)


def _save(fig: Any, path: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def confusion_matrix(matrix: np.ndarray, names: Sequence[str] | None, path: str | Path, title: str) -> None:
    """Rows: true topic, columns: predicted; colour = share of the true topic's rows, the
    number in each cell = rows."""
    n = matrix.shape[0]
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig, axes = _figure(width=7.0, height=6.0)
    ax = axes[0, 0]
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    labels = topic_labels(names, n)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted topic")
    ax.set_ylabel("true topic")
    for i in range(n):
        for j in range(n):
            color = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", color=color, fontsize=9)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true topic's rows")
    _save(fig, path)


def mlm_loss(
    steps: Sequence[int], losses: Sequence[float], epochs: Sequence[Mapping[str, Any]], path: str | Path
) -> None:
    """MLM training loss by optimizer step (the log's running means) with each epoch's mean."""
    fig, axes = _figure(width=8.0, height=4.5)
    ax = axes[0, 0]
    if steps:
        ax.plot(steps, losses, lw=1, label="training loss (mean since the previous log line)")
    ends = [(h["step"], h["train_loss"]) for h in epochs if h.get("train_loss") is not None]
    if ends:
        ax.plot(*zip(*ends, strict=True), "o", label="epoch mean")
    if not steps and not ends:
        ax.text(0.5, 0.5, "no loss recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("masked-LM loss")
    ax.set_title("MLM pretraining")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def training_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path) -> None:
    """For each classifier stage (finetune, retrain, folds...): training and valid loss, and
    valid accuracy, by epoch."""
    fig, axes = _figure(ncols=2, width=6.0, height=4.5)
    loss_ax, acc_ax = axes[0]
    for i, (stage, history) in enumerate(histories.items()):
        color = f"C{i}"
        epochs = [h["epoch"] for h in history]
        loss_ax.plot(
            epochs, [h.get("train_loss") for h in history], "-o", color=color, label=f"{stage} train"
        )
        # A fold model is scored on its own held-out fold (fold_*), never on the valid split.
        held_out = "fold" if "fold_accuracy" in (history[0] if history else {}) else "valid"
        loss_ax.plot(
            epochs,
            [h.get(f"{held_out}_loss") for h in history],
            "--s",
            color=color,
            label=f"{stage} {held_out}",
        )
        acc_ax.plot(epochs, [h.get(f"{held_out}_accuracy") for h in history], "-o", color=color, label=stage)
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="held-out accuracy", title="valid accuracy (fold models: their fold)")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole (folds' too)
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)


def pseudo_labels(
    kept_per_topic: Sequence[int],
    confidence: np.ndarray,
    kept_confidence: np.ndarray,
    threshold: float,
    names: Sequence[str] | None,
    path: str | Path,
) -> None:
    """Rows kept per topic, and the histogram of the teachers' confidence (the averaged
    probability of the chosen topic) on every test row, the kept rows and the threshold."""
    fig, axes = _figure(ncols=2, width=6.0, height=4.5)
    bars, hist = axes[0]
    n = len(kept_per_topic)
    bars.bar(range(n), kept_per_topic, color="C0")
    bars.set_xticks(range(n), topic_labels(names, n), rotation=45, ha="right")
    bars.set(ylabel="pseudo-labelled rows", title="rows kept per topic")
    bins = np.linspace(0, 1, 41)
    hist.hist(confidence, bins=bins, color="0.7", label="every test row")
    hist.hist(kept_confidence, bins=bins, color="C0", alpha=0.8, label="kept")
    hist.axvline(threshold, color="C3", ls="--", label=f"threshold {threshold:g}")
    hist.set(
        xlabel="teachers' confidence (probability of the chosen topic)", ylabel="rows", title="confidence"
    )
    hist.legend()
    _save(fig, path)
