"""PNG figures. matplotlib is optional (`pip install -e ".[plots]"`): without it every function
here says so once on stderr and returns False, and the caller's other outputs are still written."""
from __future__ import annotations

import sys
from pathlib import Path

from xlmr.atomic import write_atomic


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend; None, with a hint, when it is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[plots]'); no PNG is written", file=sys.stderr)
        return None
    return plt


def save_figure(plt, fig, path: Path) -> None:
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)


def plot_confusion(path: Path, m, tags) -> bool:
    """A (tags x tags) matrix normalised over each gold row, with the values written in the cells."""
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(tags)), tags, rotation=45)
    ax.set_yticks(range(len(tags)), tags)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i in range(len(tags)):
        for j in range(len(tags)):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if m[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax)
    ax.set_title("normalised confusion matrix (rows sum to 1)")
    save_figure(plt, fig, path)
    return True


def plot_learning_curve(path: Path, sizes, f1s, zero_shot: float | None) -> bool:
    """F1 on fr test against the number of French training sentences, with the zero-shot
    de -> fr F1 as a dashed line."""
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sizes, f1s, "o-", label="fine-tuned on fr")
    if zero_shot is not None:
        ax.axhline(zero_shot, linestyle="--", color="gray", label=f"zero-shot from de ({zero_shot:.3f})")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()  # the log axis would label 3x10^2 and friends between the sizes
    ax.set_xlabel("French training sentences")
    ax.set_ylabel("F1 on fr test")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    save_figure(plt, fig, path)
    return True


def plot_language_bars(path: Path, rows: list[dict], mean_f1: float) -> bool:
    """F1 per language as bars sorted high to low, the training languages in another colour,
    the mean as a dashed line."""
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(max(6, 0.32 * len(rows) + 1.5), 4))
    colours = ["tab:orange" if r["trained_on"] else "tab:blue" for r in rows]
    ax.bar(range(len(rows)), [r["f1"] for r in rows], color=colours)
    ax.set_xticks(range(len(rows)), [r["lang"] for r in rows], rotation=90)
    ax.axhline(mean_f1, linestyle="--", color="gray")
    ax.set_ylim(0, 1)
    ax.set_ylabel("test F1")
    ax.set_xlabel("language (sorted by F1)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("tab:orange", "tab:blue")]
    ax.legend(handles + [plt.Line2D([0], [0], linestyle="--", color="gray")],
              ["trained on", "zero-shot", f"mean {mean_f1:.3f}"], loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    save_figure(plt, fig, path)
    return True
