"""MkDocs hooks: pages and figures that live outside ``docs/`` join the site at build time.

``benchmarks/README.md`` (the benchmark harness's own page, with every recorded table) becomes
the page ``guides/benchmarks.md`` and its plot ``benchmarks/latest_cpu_plot.png`` the file
``guides/latest_cpu_plot.png`` beside it, so its relative image link works unchanged and the
tables are kept in one place only. The newest run's summary tables (the first section under
"Latest tables", down to its SimpleRNN table) also replace the marker
``<!-- latest-benchmark-tables -->`` in ``guides/performance.md``.

MathJax ships with the site, so that equations typeset with no network: its files come from
the ``django-static-mathjax`` package on PyPI (MathJax 3's own build, as plain files; it needs
no Django), installed by the ``docs`` extra, and are copied under ``assets/mathjax/``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"


def _benchmarks_page() -> str:
    text = (BENCHMARKS / "README.md").read_text(encoding="utf-8")
    # Markdown inside <details> (the long per-row tables) is rendered with md_in_html.
    text = re.sub(r"<details>", '<details markdown="1">', text)
    # GitHub reads `a\|b` in a table cell as code "a|b"; Python-Markdown keeps the backslash.
    return re.sub(r"`([^`|]*\\\|[^`]*)`", _escaped_pipe_code, text)


def _escaped_pipe_code(match: re.Match[str]) -> str:
    code = match.group(1).replace("\\|", "&#124;").replace("<", "&lt;")
    return f"<code>{code}</code>"


LATEST_MARKER = "<!-- latest-benchmark-tables -->"


def _latest_tables() -> str:
    """The newest run's section of benchmarks/README.md, down to its last summary table."""
    text = (BENCHMARKS / "README.md").read_text(encoding="utf-8")
    latest = text[text.index("\n## Latest tables") :]
    start = latest.index("\n### ") + 1
    end = latest.find("\n### ", start)
    lines = latest[start : end if end > 0 else None].split("\n")
    summaries = [i for i, line in enumerate(lines) if line.startswith("**SimpleRNN**")]
    if not summaries:
        raise ValueError(
            f"benchmarks/README.md: the first section under '## Latest tables' ({lines[0]!r})"
            " must be a full run that ends in a **SimpleRNN** summary table; put partial"
            " measurements under '## What the speed work measured'"
        )
    last = summaries[-1]
    while last < len(lines) and not lines[last].startswith("|"):
        last += 1
    while last < len(lines) and lines[last].startswith("|"):
        last += 1
    lines[0] = "## Latest tables: " + lines[0].removeprefix("### ")
    section = "\n".join(lines[:last])
    return re.sub(r"`([^`|]*\\\|[^`]*)`", _escaped_pipe_code, section)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Puts the newest benchmark tables into the performance guide."""
    if page.file.src_uri == "guides/performance.md":
        return markdown.replace(LATEST_MARKER, _latest_tables())
    return markdown


# The parts of MathJax's es5 build that tex-mml-chtml.js loads (the extensions, fonts, menu,
# accessibility), less the other combined builds.
MATHJAX_PARTS = ("tex-mml-chtml.js", "a11y", "adaptors", "input", "output/chtml", "sre", "ui")


def _mathjax_files(config: Any) -> list[File]:
    try:
        import mathjax  # the django-static-mathjax package: MathJax's files, no Django needed
    except ImportError as error:
        raise PluginError(
            "MathJax is not installed: pip install -e '.[docs]' (django-static-mathjax)"
        ) from error
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    paths = [es5 / part for part in MATHJAX_PARTS]
    sources = [p for path in paths for p in ([path] if path.is_file() else path.rglob("*"))]
    return [
        File.generated(
            config, f"assets/mathjax/{source.relative_to(es5).as_posix()}", abs_src_path=str(source)
        )
        for source in sources
        if source.is_file()
    ]


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    """Adds the benchmarks page and its plot, and MathJax, to the site's files."""
    for file in _mathjax_files(config):
        files.append(file)
    files.append(File.generated(config, "guides/benchmarks.md", content=_benchmarks_page()))
    files.append(
        File.generated(
            config,
            "guides/latest_cpu_plot.png",
            abs_src_path=str(BENCHMARKS / "latest_cpu_plot.png"),
        )
    )
    return files
