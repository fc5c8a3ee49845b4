"""Draws docs/assets/masking_reverse.png: what ``seq_lengths`` and ``reverse=True`` do to a batch.

Run from the repository root: ``python docs/scripts/masking_figure.py``. The picture is
committed; run this again only to change it.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, Rectangle

OUT = Path(__file__).resolve().parents[1] / "assets" / "masking_reverse.png"
LENGTHS = (6, 4, 2)  # one batch of three sequences, padded to 6 steps
TIME = 6
VALID, PAD, ZERO = "#cfe3f7", "#eeeeee", "#ffffff"


def grid(ax, title, cell_text, colours, arrows):
    """A batch as rows of time steps: ``cell_text[b][t]``, ``colours[b][t]``, and one arrow
    per row from ``arrows[b] = (first, last)`` step processed (``None``: no arrow)."""
    ax.set_title(title, fontsize=11, loc="left")
    for b in range(len(LENGTHS)):
        y = len(LENGTHS) - 1 - b
        for t in range(TIME):
            ax.add_patch(Rectangle((t, y), 0.94, 0.8, facecolor=colours[b][t], edgecolor="#555"))
            ax.text(t + 0.47, y + 0.4, cell_text[b][t], ha="center", va="center", fontsize=11)
        if arrows[b] is not None:
            first, last = arrows[b]
            lo, hi = (0.1, 0.84) if first <= last else (0.84, 0.1)
            ax.add_patch(
                FancyArrowPatch(
                    (first + lo, y + 0.9),
                    (last + hi, y + 0.9),
                    arrowstyle="-|>",
                    mutation_scale=10,
                    color="#c0392b",
                    connectionstyle="arc3,rad=0",
                )
            )
        ax.text(-0.15, y + 0.4, f"b={b}, len {LENGTHS[b]}", ha="right", va="center", fontsize=10)
    for t in range(TIME):
        ax.text(t + 0.47, -0.35, f"t={t}", ha="center", va="center", fontsize=10, color="#555")
    ax.set_xlim(-2.1, TIME + 0.1)
    ax.set_ylim(-0.7, len(LENGTHS) + 0.25)
    ax.axis("off")


def main():
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4))
    xs = [[f"x{t}" if t < n else "pad" for t in range(TIME)] for n in LENGTHS]
    colours_in = [[VALID if t < n else PAD for t in range(TIME)] for n in LENGTHS]
    grid(
        axes[0, 0],
        "xs [batch, time, features],\nseq_lengths = [6, 4, 2]",
        xs,
        colours_in,
        [None] * 3,
    )

    forward = [[f"y{t}" if t < n else "0" for t in range(TIME)] for n in LENGTHS]
    colours_out = [[VALID if t < n else ZERO for t in range(TIME)] for n in LENGTHS]
    grid(
        axes[0, 1],
        "rnn(..., seq_lengths): read t = 0 .. len-1;\npadding emits 0, carry kept",
        forward,
        colours_out,
        [(0, n - 1) for n in LENGTHS],
    )

    backward = [[f"y{t}" if t < n else "0" for t in range(TIME)] for n in LENGTHS]
    grid(
        axes[1, 0],
        "reverse=True: read t = len-1 .. 0;\ny_t stays at position t",
        backward,
        colours_out,
        [(n - 1, 0) for n in LENGTHS],
    )

    flipped = [
        [f"x{TIME - 1 - t}" if TIME - 1 - t < n else "pad" for t in range(TIME)] for n in LENGTHS
    ]
    colours_flip = [[VALID if TIME - 1 - t < n else PAD for t in range(TIME)] for n in LENGTHS]
    grid(
        axes[1, 1],
        "not the same: xs[:, ::-1]\nputs the padding first",
        flipped,
        colours_flip,
        [None] * 3,
    )

    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
