"""The documentation site: the API reference covers every public name, and the guides' code runs.

- Every name in the ``__all__`` of the five public modules (read at run time, so names added
  later are covered) has a docstring of its own and an entry in the built API reference.
- The built site loads nothing from other hosts (no script, stylesheet or font from a CDN):
  MathJax ships with it, so its maths typesets with no network.
- Every ```python block of every guide page (docs/guides/*.md) runs: one namespace per page,
  blocks in order, as a reader pastes them. A block preceded by the line
  ``<!-- docs-test: skip -->`` is left out (for code that needs what CI lacks, e.g. a
  dataset); keep those rare. The blocks carry their own ``assert`` lines.
"""

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from tests.peers import import_peer

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PUBLIC_MODULES = ("rnnjax", "rnnjax.nnx", "rnnjax.linen", "rnnjax.interop", "rnnjax.training")
SKIP_MARKER = "<!-- docs-test: skip -->"
PEERS = ("torch", "keras")  # optional: a page that needs a missing one is skipped


def python_blocks(page: Path) -> list[str]:
    """The page's ```python blocks, in order, less those marked to skip; each padded with
    newlines so that a traceback gives the line of the page."""
    text = page.read_text()
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S):
        preceding = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if preceding.strip() != SKIP_MARKER:
            blocks.append("\n" * text[: match.start(1)].count("\n") + match.group(1))
    return blocks


GUIDES = sorted(page for page in (DOCS / "guides").glob("*.md") if python_blocks(page))


def public_names():
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            yield module_name, name, getattr(module, name)


def own_docstring(obj) -> str:
    """The docstring written for ``obj``, not one Python made up (a NamedTuple's
    ``LSTMState(h, c)``) or inherited."""
    doc = obj.__doc__ if inspect.isclass(obj) or callable(obj) else None
    if inspect.isclass(obj) and doc is not None and "__doc__" not in vars(obj):
        return ""  # inherited
    if doc and inspect.isclass(obj) and re.fullmatch(rf"{obj.__name__}\(.*\)", doc.strip()):
        return ""  # collections.namedtuple's default
    return inspect.cleandoc(doc or "")


@pytest.mark.parametrize(
    "module_name, name", [(m, n) for m, n, _ in public_names()], ids=lambda x: str(x)
)
def test_public_name_has_a_docstring(module_name, name):
    obj = getattr(importlib.import_module(module_name), name)
    assert own_docstring(obj), f"{module_name}.{name} has no docstring of its own"


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    """``mkdocs build --strict`` into a temporary folder, or the site that .ci/run has just
    built that way (``RNNJAX_DOCS_SITE``)."""
    prebuilt = os.environ.get("RNNJAX_DOCS_SITE")
    if prebuilt and (Path(prebuilt) / "index.html").is_file():
        return Path(prebuilt)
    import_peer("mkdocs")  # installed by the docs extra; required under RNNJAX_REQUIRE_PEERS=1
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return site


def test_every_public_name_is_in_the_api_reference(built_site):
    pages = {
        module_name: (built_site / "api" / page / "index.html").read_text()
        for module_name, page in zip(
            PUBLIC_MODULES, ("rnnjax", "nnx", "linen", "interop", "training"), strict=True
        )
    }
    missing = [
        f"{module_name}.{name}"
        for module_name, name, _ in public_names()
        if f'id="{module_name}.{name}"' not in pages[module_name]
    ]
    assert not missing, f"not in the API reference: {missing}"


# A <script src>, or a <link> that the browser fetches to show the page, on another host.
EXTERNAL_RESOURCE = re.compile(
    r"<script\b[^>]*\bsrc=\"((?:https?:)?//[^\"]*)\""
    r"|<link\b(?=[^>]*\brel=\"(?:stylesheet|preload|preconnect|modulepreload|icon)\")"
    r"[^>]*\bhref=\"((?:https?:)?//[^\"]*)\""
)


def test_no_page_loads_a_script_or_stylesheet_from_another_host(built_site):
    external = {
        str(page.relative_to(built_site)): found
        for page in built_site.rglob("*.html")
        if (found := [a or b for a, b in EXTERNAL_RESOURCE.findall(page.read_text())])
    }
    assert not external, f"pages that need the network: {external}"
    mathjax = built_site / "assets" / "mathjax"
    assert (mathjax / "tex-mml-chtml.js").stat().st_size > 500_000
    assert list((mathjax / "output" / "chtml" / "fonts" / "woff-v2").glob("MathJax_Main-*.woff"))
    page = (built_site / "tutorials" / "from_scratch" / "index.html").read_text()
    assert 'src="../../assets/mathjax/tex-mml-chtml.js"' in page and "arithmatex" in page


def test_the_external_resource_pattern_finds_scripts_and_stylesheets():
    html = (
        '<script src="https://cdn.example/mathjax.js"></script><script src="a.js"></script>'
        '<link rel="stylesheet" href="//fonts.example/css"><link rel="canonical" href="https://x">'
    )
    assert [a or b for a, b in EXTERNAL_RESOURCE.findall(html)] == [
        "https://cdn.example/mathjax.js",
        "//fonts.example/css",
    ]


def test_python_blocks_keep_order_and_page_lines_and_honour_the_skip_marker(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# t\n\n```python\na = 1\n```\n\n"
        f"{SKIP_MARKER}\n```python\nraise SystemExit\n```\n\n"
        "```text\nnot python\n```\n\n```python\nb = a + 1\n```\n"
    )
    first, second = python_blocks(page)
    assert first == "\n" * 3 + "a = 1\n" and second.lstrip("\n") == "b = a + 1\n"
    assert second.count("\n") == 17  # line 17 of the page is line 17 of the block


def test_the_guides_have_code_to_run():
    assert len(GUIDES) >= 8


@pytest.mark.parametrize("page", GUIDES, ids=lambda page: page.name)
def test_guide_code_runs(page):
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    # user code, which may broadcast as NumPy does
    with jax.numpy_rank_promotion("allow"):
        for code in python_blocks(page):
            try:
                exec(compile(code, str(page), "exec"), namespace)
            except ModuleNotFoundError as error:
                if error.name not in PEERS:
                    raise
                import_peer(error.name)  # a peer the page needs: skip, or fail when required
                raise


MODULE_PAGES = ("nnx", "linen")


def _text(html: str) -> str:
    """The text a reader sees (tags dropped, spaces collapsed)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


@pytest.mark.parametrize("page", MODULE_PAGES)
def test_each_attribute_and_parameter_line_names_one_thing(built_site, page):
    """A line ``a, b: ...`` of a Google-style section renders as a name and a made-up type
    (``a, ((b)) - ...``): each attribute and parameter gets its own line."""
    html = (built_site / "api" / page / "index.html").read_text()
    items = re.findall(r'<li class="doc-section-item field-body">(.*?)</li>', html, re.S)
    assert items, f"no attribute or parameter lines found in api/{page}"
    # the name, where the line has one (a Returns line has only a type)
    names = [_text(item.split("</b>", 1)[0]) if "</b>" in item else "" for item in items]
    bad = [
        _text(item)[:80]
        for item, name in zip(items, names, strict=True)
        if "((" in _text(item) or "," in name
    ]
    assert not bad, f"api/{page}: attribute or parameter lines naming several things: {bad}"


@pytest.mark.parametrize("page", MODULE_PAGES)
def test_every_module_call_has_a_parameter_list(built_site, page):
    html = (built_site / "api" / page / "index.html").read_text()
    calls = list(re.finditer(rf'id="(rnnjax\.{page}\.\w+\.__call__)"', html))
    assert len(calls) >= 20, f"api/{page}: {len(calls)} __call__ entries"
    missing = []
    for call in calls:
        # from its own heading (<h3 id=... class="doc doc-heading">) to the next one
        entry = html[call.end() :].split('class="doc doc-heading"', 2)[1]
        if "Parameters:" not in _text(entry):
            missing.append(call.group(1))
    assert not missing, f"__call__ entries without a parameter list: {missing}"


def test_the_from_flax_guide_is_one_click_from_the_home_page_and_the_interop_guide(built_site):
    """A Flax user finds the guide from the home page, not only in the sidebar (whose links
    are on every page): a link in the page's own content, and one in the interop guide."""
    for page, href in (
        ("index.html", "guides/from_flax/"),
        ("guides/interop/index.html", "../from_flax/"),
    ):
        html = (built_site / page).read_text()
        content = html[html.index('<article class="md-content__inner') :]
        assert re.search(rf'<a href="{re.escape(href)}(#[^"]*)?">', content), page


def test_export_recipe_is_run_and_checks_the_server_never_imports_rnnjax():
    """docs/guides/export.md runs above (test_guide_code_runs[export.md]): its server, a
    fresh interpreter, asserts that neither rnnjax nor flax is in its ``sys.modules``."""
    page = DOCS / "guides" / "export.md"
    assert page in GUIDES
    code = "".join(python_blocks(page))
    assert '"rnnjax" not in sys.modules and "flax" not in sys.modules' in code
    assert 'PLATFORMS = ("cpu", "cuda", "tpu")' in code and "served.returncode == 0" in code
