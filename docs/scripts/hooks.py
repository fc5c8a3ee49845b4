"""MkDocs hooks: pages and figures that live outside ``docs/`` join the site at build time.

``benchmarks/README.md`` (the benchmark harness's own page, with the latest table per device)
becomes the page ``guides/benchmarks.md``; its log of older tables and dated investigations,
``benchmarks/LOG.md``, the page ``guides/LOG.md`` beside it (so the README's link to
``LOG.md`` works unchanged); and its plot ``benchmarks/latest_cpu_plot.png`` the file
``guides/latest_cpu_plot.png``, so its relative image link works too and the tables are kept
in one place only. On the site, every section of the log but the newest table is folded (a
``<details>`` block under its title), so that the page opens short; the performance guide
shows a summary of the newest run.

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


def _benchmarks_page(name: str) -> str:
    """``benchmarks/<name>`` as a site page: the log's sections folded."""
    text = (BENCHMARKS / name).read_text(encoding="utf-8")
    if name == "LOG.md":  # its link to the README is, on the site, to guides/benchmarks.md
        text = _fold_older_sections(text).replace("](README.md)", "](benchmarks.md)")
    # Markdown inside <details> (the long per-row tables) is rendered with md_in_html.
    text = re.sub(r"<details>", '<details markdown="1">', text)
    # GitHub reads `a\|b` in a table cell as code "a|b"; Python-Markdown keeps the backslash.
    return re.sub(r"`([^`|]*\\\|[^`]*)`", _escaped_pipe_code, text)


def _fold_older_sections(text: str) -> str:
    """Each "### " section after the first under "## Older recorded tables", and each one
    under the "## " headings after it, as a folded ``<details>`` block under its title."""
    head, _, tail = text.partition("\n## Older recorded tables")
    if not tail:
        return text
    parts = re.split(r"^(### .*)$", tail, flags=re.M)
    out = [head, "\n## Older recorded tables", parts[0]]
    for index, (title, body) in enumerate(zip(parts[1::2], parts[2::2], strict=True)):
        if index == 0:
            out += [title, body]
            continue
        body, next_heading, rest = body.partition("\n## ")  # a "## " heading ends the section
        summary = title.removeprefix("### ")
        out.append(f"<details>\n<summary>{summary}</summary>\n{body}\n</details>\n")
        if next_heading:
            out += [next_heading, rest]
    return "".join(out)


def _escaped_pipe_code(match: re.Match[str]) -> str:
    code = match.group(1).replace("\\|", "&#124;").replace("<", "&lt;")
    return f"<code>{code}</code>"


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
    readme = _benchmarks_page("README.md")
    files.append(File.generated(config, "guides/benchmarks.md", content=readme))
    # README.md links its log as LOG.md: the same relative link on the site
    files.append(File.generated(config, "guides/LOG.md", content=_benchmarks_page("LOG.md")))
    files.append(
        File.generated(
            config,
            "guides/latest_cpu_plot.png",
            abs_src_path=str(BENCHMARKS / "latest_cpu_plot.png"),
        )
    )
    return files


def _registry_entries(what: str) -> str:
    """``::: rnnjax.<name>`` for every cell kind of the registry: its factory (``cells``) or
    its params type (``params``), so a new kind joins the API reference with no edit here."""
    from rnnjax._src.cells.registry import CELL_KINDS

    names: list[str] = []
    for kind in CELL_KINDS.values():
        name = kind.make.__name__ if what == "cells" else kind.params_type.__name__
        if name not in names:
            names.append(name)
    return "\n\n".join(f"::: rnnjax.{name}\n    options:\n      heading_level: 3" for name in names)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Fills ``<!-- registry: cells -->`` and ``<!-- registry: params -->`` markers."""
    return re.sub(
        r"<!-- registry: (cells|params) -->", lambda m: _registry_entries(m.group(1)), markdown
    )
