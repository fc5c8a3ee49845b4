"""Loads every page of the built site in headless Chromium and checks that it renders.

Not part of CI (it needs a browser). Usage, from the repository root after ``mkdocs build``::

    apt-get install -y chromium                 # Debian's package
    python docs/scripts/check_site.py [--mathjax DIR] [--screenshots OUT_DIR] [PAGE ...]

For each page (all of ``site/`` by default, or the given paths such as ``guides/cells/``) it
serves a copy of ``site/`` on 127.0.0.1, loads the page headless, waits for MathJax, and
reads back from the DOM: the number of code blocks, tables and images, which images failed
to load, the number of maths elements (``.arithmatex``) and of typeset ones
(``mjx-container``), and MathJax errors. A page fails when an image did not load, when maths
was left untypeset or when MathJax reported an error. ``--screenshots`` also saves a
full-length PNG of each page to look at.

The site loads MathJax from a CDN in the reader's browser. Where this machine has no network,
``--mathjax DIR`` points at a local MathJax 3 ``es5`` folder (``npm install mathjax@3``) and
the copy of the site served for the check loads it from there instead; nothing else changes.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CDN = re.compile(r"https://cdn\.jsdelivr\.net/npm/mathjax@3/es5/tex-mml-chtml\.js")

# Runs in the page once it has loaded; writes what it found into the DOM for --dump-dom.
PROBE = """
<script>
window.addEventListener("load", async () => {
  const report = {};
  try {
    if (window.MathJax && MathJax.startup) {
      await MathJax.startup.promise;
      if (MathJax.typesetPromise) await MathJax.typesetPromise();
    }
  } catch (e) { report.mathjax_exception = String(e); }
  const article = document.querySelector("article") || document.body;
  const images = [...article.querySelectorAll("img")];
  report.code_blocks = article.querySelectorAll("pre > code").length;
  report.tables = article.querySelectorAll("table").length;
  report.images = images.length;
  report.broken_images = images.filter(i => !(i.complete && i.naturalWidth > 0))
    .map(i => i.getAttribute("src"));
  report.maths = article.querySelectorAll(".arithmatex").length;
  report.typeset = [...article.querySelectorAll(".arithmatex")]
    .filter(e => e.querySelector("mjx-container")).length;
  report.math_errors = article.querySelectorAll("mjx-merror").length;
  report.mathjax_loaded = !!(window.MathJax && MathJax.version);
  const pre = document.createElement("pre");
  pre.id = "site-check";
  pre.textContent = JSON.stringify(report);
  document.body.appendChild(pre);
});
</script>
"""


def prepare(site: Path, mathjax: Path | None) -> Path:
    """A copy of the site with the probe (and, if given, a local MathJax) in every page."""
    copy = Path(tempfile.mkdtemp(prefix="site-check-")) / "site"
    shutil.copytree(site, copy)
    if mathjax is not None:
        shutil.copytree(mathjax, copy / "_mathjax")
    for page in copy.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        if mathjax is not None:
            html = CDN.sub("/_mathjax/tex-mml-chtml.js", html)
        page.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    return copy


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def chromium(*args: str) -> str:
    command = [
        shutil.which("chromium") or "chromium",
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=20000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120).stdout


def check(url: str) -> dict:
    dom = chromium("--dump-dom", url)
    found = re.search(r'<pre id="site-check">(.*?)</pre>', dom, re.S)
    if not found:
        return {"error": "no report: the page did not finish loading"}
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def problems(report: dict) -> list[str]:
    out = []
    if "error" in report or "mathjax_exception" in report:
        out.append(report.get("error") or report["mathjax_exception"])
    if report.get("broken_images"):
        out.append(f"images not loaded: {report['broken_images']}")
    if report.get("maths") and report.get("typeset") != report.get("maths"):
        out.append(f"maths typeset {report.get('typeset')} of {report['maths']}")
    if report.get("math_errors"):
        out.append(f"{report['math_errors']} MathJax errors")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", help="paths under site/, e.g. guides/cells/")
    parser.add_argument("--site", type=Path, default=ROOT / "site")
    parser.add_argument("--mathjax", type=Path, help="a local MathJax 3 es5 folder")
    parser.add_argument("--screenshots", type=Path, help="save a PNG of each page here")
    parser.add_argument("--height", type=int, default=1800, help="screenshot height, pixels")
    args = parser.parse_args()

    copy = prepare(args.site, args.mathjax)
    server, base = serve(copy)
    pages = args.pages or sorted(
        str(p.parent.relative_to(copy)) + "/"
        for p in copy.rglob("index.html")
        if "_mathjax" not in p.parts and "search" not in p.parts
    )
    failed = 0
    try:
        for page in pages:
            page = "" if page in ("./", ".") else page
            report = check(f"{base}/{page}")
            issues = problems(report)
            failed += bool(issues)
            print(f"{'FAIL' if issues else 'ok  '} /{page} {json.dumps(report)}")
            for issue in issues:
                print(f"     {issue}")
            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                name = (page.strip("/").replace("/", "_") or "index") + ".png"
                chromium(
                    f"--screenshot={args.screenshots / name}",
                    f"--window-size=1280,{args.height}",
                    f"{base}/{page}",
                )
    finally:
        server.shutdown()
        shutil.rmtree(copy.parent)
    print(f"{len(pages) - failed} of {len(pages)} pages render")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
