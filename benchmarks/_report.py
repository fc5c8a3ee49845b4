"""The Markdown tables and the PNG plot, from result rows; imports no JAX."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import IMPLS, KINDS, MODES, TITLES, Case, Row, family


def case_of(row: Row) -> Case:
    return Case(**row["case"])


def sort_rows(rows: list[Row], grid: list[Case]) -> list[Row]:
    """Grid order, then mode, cell kind, and implementation (rnnjax first)."""
    names = list(dict.fromkeys(row["name"] for row in rows))
    return sorted(
        rows,
        key=lambda row: (
            grid.index(case_of(row)) if case_of(row) in grid else len(grid),
            MODES.index(row["mode"]),
            KINDS.index(row["kind"]),
            IMPLS.index(family(row["impl"])),
            names.index(row["name"]),
        ),
    )


def reference(rows: list[Row], row: Row) -> Row | None:
    """The rnnjax row with the same case, mode and kind, if it ran."""
    for other in rows:
        if other["impl"] == "rnnjax" and all(
            other[field] == row[field] for field in ("case", "mode", "kind")
        ):
            return other
    return None


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _ratio(rows: list[Row], row: Row) -> str:
    rnnjax_row = reference(rows, row)
    return f"{row['median_ms'] / rnnjax_row['median_ms']:.2f}x" if rnnjax_row else "-"


def full_table(rows: list[Row]) -> str:
    """Every row: median ms, tokens/s, ratio to rnnjax, GFLOP/s and % of matmul, memory."""
    lines = [
        "| B, T, I, H, dtype | mode | implementation | median ms | tokens/s | vs rnnjax"
        " | GFLOP/s | % of matmul | peak MiB | first call s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        peak = "-" if row["peak_bytes"] is None else f"{row['peak_bytes'] / 2**20:,.1f}"
        percent = row.get("percent_of_matmul")
        lines.append(
            f"| {case_of(row).label} | {row['mode']} | {row['name']} | {_ms(row['median_ms'])}"
            f" | {row['tokens_per_s']:,.0f} | {_ratio(rows, row)} | {row['gflop_per_s']:.1f}"
            f" | {'-' if percent is None else f'{percent:.1f}'} | {peak}"
            f" | {row['first_call_s']:.2f} |"
        )
    return "\n".join(lines)


def summary_tables(rows: list[Row]) -> str:
    """Per cell kind: rnnjax's median ms and each peer's median over it, case by case.

    A kind with a floor row (``rnnjax-floor``: the min cells with the recurrence replaced by
    the identity) gets one more column, rnnjax's median over the floor's: what the
    recurrence costs on top of the rest of the model (1.00x would be free).
    """
    sections = []
    for kind in KINDS:
        kind_rows = [row for row in rows if row["kind"] == kind]
        names = list(dict.fromkeys(row["name"] for row in kind_rows if row["impl"] != "rnnjax"))
        if not kind_rows:
            continue
        has_floor = any(row["impl"] == "rnnjax-floor" for row in kind_rows)
        floor_column = ["rnnjax over floor"] if has_floor else []
        lines = [
            f"**{TITLES[kind]}**: rnnjax's median, and each peer's median over it"
            " (above 1: rnnjax is faster)",
            "",
            "| B, T, I, H, dtype | mode | rnnjax ms | " + " | ".join(names + floor_column) + " |",
            "|---|---|---:|" + "---:|" * (len(names) + len(floor_column)),
        ]
        keys = list(dict.fromkeys((case_of(row), row["mode"]) for row in kind_rows))
        for case, mode in keys:
            here = {r["name"]: r for r in kind_rows if case_of(r) == case and r["mode"] == mode}
            rnnjax_row = next((r for r in here.values() if r["impl"] == "rnnjax"), None)
            cells = [_ms(rnnjax_row["median_ms"]) if rnnjax_row else "-"]
            cells += [_ratio(rows, here[name]) if name in here else "-" for name in names]
            if has_floor:
                floor = next((r for r in here.values() if r["impl"] == "rnnjax-floor"), None)
                ratio = rnnjax_row and floor and rnnjax_row["median_ms"] / floor["median_ms"]
                cells.append(f"{ratio:.2f}x" if ratio else "-")
            lines.append(f"| {case.label} | {mode} | " + " | ".join(cells) + " |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


def plot(rows: list[Row], path: Path, title: str) -> None:
    """Median ms per implementation per case (log scale): a panel per mode and cell kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [kind for kind in KINDS if any(row["kind"] == kind for row in rows)]
    labels = list(dict.fromkeys(case_of(row).label for row in rows))
    palette = plt.get_cmap("tab20").colors
    figure, axes = plt.subplots(
        len(MODES),
        len(kinds),
        figsize=(max(5.0, 1.3 * len(labels)) * len(kinds), 4.2 * len(MODES)),
        squeeze=False,
    )
    for row_axes, mode in zip(axes, MODES, strict=True):
        for axis, kind in zip(row_axes, kinds, strict=True):
            here = [row for row in rows if row["mode"] == mode and row["kind"] == kind]
            names = list(dict.fromkeys(row["name"] for row in here))
            families = {row["name"]: family(row["impl"]) for row in here}
            width = 0.8 / len(names)
            for index, name in enumerate(names):
                mine = [row for row in here if row["name"] == name]
                same_family = [n for n in names if families[n] == families[name]]
                shade = same_family.index(name)
                color = palette[2 * IMPLS.index(families[name]) + shade % 2]
                axis.bar(
                    [
                        labels.index(case_of(r).label) + (index - (len(names) - 1) / 2) * width
                        for r in mine
                    ],
                    [r["median_ms"] for r in mine],
                    width,
                    label=name,
                    color=color,
                    hatch="//" if shade >= 2 else None,  # a third of a family (rnnjax's floor)
                )
            axis.set_yscale("log")
            low, high = axis.get_ylim()
            axis.set_ylim(low, high * (high / low) ** 0.4)  # headroom for the legend
            axis.set_xticks(range(len(labels)), labels, rotation=25, ha="right", fontsize=8)
            axis.set_title(f"{TITLES[kind]}, {mode}")
            axis.set_ylabel("median ms (log scale)")
            axis.legend(fontsize=7, ncols=2, loc="upper left")
            axis.grid(axis="y", alpha=0.3)
            axis.set_axisbelow(True)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def heading(report: dict[str, Any]) -> str:
    """Two lines: the device and its matmul rate; the versions."""
    environment = report["environment"]
    rates = ", ".join(f"{d} {r:,.0f}" for d, r in report["matmul_gflop_per_s"].items())
    versions = ", ".join(f"{k} {v}" for k, v in environment["versions"].items() if k != "python")
    device = environment["device"]
    if environment["backend"] == "cpu":
        device = f"{environment['host']['cpu']} ({environment['host']['cpu_count']} cores)"
    return f"{device}; matmul 2048³ GFLOP/s: {rates}\n{versions}"


def markdown(report: dict[str, Any]) -> str:
    """The heading, the settings, the notes, the per-cell summaries and the full table."""
    settings = report["settings"]
    host = report["environment"]["host"]
    lines = [
        heading(report).replace("\n", "; "),
        "",
        f"Medians of {settings['repeats']} timed calls after {settings['warmup']} warm-up calls;"
        f" {settings['wall_s'] / 60:.1f} minutes in all.",
    ]
    if host.get("load_average"):
        lines[-1] += (
            f" Host load average (1, 5, 15 min): {host['load_average']} before,"
            f" {host.get('load_average_after')} after."
        )
    if report["notes"]:
        lines += ["", *(f"- {note}" for note in report["notes"])]
    lines += ["", summary_tables(report["rows"]), "", full_table(report["rows"])]
    return "\n".join(lines)


def write_reports(report: dict[str, Any], out: Path) -> None:
    """``table.md`` and ``plot.png`` in ``out``, from a report as ``results.json`` holds it."""
    (out / "table.md").write_text(markdown(report) + "\n")
    plot(report["rows"], out / "plot.png", title=heading(report))
