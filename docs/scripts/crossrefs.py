"""A Griffe extension that turns rnnjax's reST-flavoured docstrings into mkdocstrings Markdown.

The docstrings are Google style (read as such by mkdocstrings) but use a few reStructuredText
constructs that Python's ``help()`` and IDEs show well and Markdown does not know:

- ``:class:`~rnnjax.Cell```, ``:func:`rnnjax.rnn``` and the other Sphinx roles become
  cross-references (``[`Cell`][rnnjax.Cell]``) when the target is a documented public name,
  and plain code otherwise (private modules, arguments), so ``mkdocs build --strict`` never
  meets a cross-reference it cannot resolve;
- doctests outside a section are fenced as code (Markdown would read ``>>>`` as a quote);
- ``Example:`` (an admonition to Google-style parsers) becomes ``Examples:``, so the
  doctests render as code; an argument list wrapped over two lines (``a, b,`` then
  ``c: text``) is joined into one item;
- ``.. math::`` blocks become ``$$ ... $$`` display maths and ``:math:`x``` inline maths,
  rendered by ``pymdownx.arithmatex`` and MathJax.

Names are resolved against the ``__all__`` of the five public modules, read from the loaded
package, so a name added to an ``__all__`` is linked with no list to maintain here.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

PUBLIC_MODULES = ("rnnjax", "rnnjax.nnx", "rnnjax.linen", "rnnjax.interop", "rnnjax.training")
ROLE = re.compile(r":(?:py:)?(class|func|meth|attr|mod|data|obj|exc):`(~?)([\w.]+)(?:\(\))?`")
INLINE_MATH = re.compile(r":math:`([^`]+)`")
MATH_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<rest>.*)$")
EXAMPLE_HEADER = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.M)
SECTION = re.compile(r"^(?P<indent>[ \t]*)(Args|Arguments|Attributes|Raises):[ \t]*$")
NAMES_LINE = re.compile(r"^\w+(?:, \w+)*,$")  # "a, b," : a list of names that goes on
ITEM = re.compile(r"^\*{0,2}\w+(?:, \*{0,2}\w+)*(?: \([^)]*\))?:(?:\s|$)")  # "name:", "a, b (int):"


def _documented(package: griffe.Module) -> dict[str, set[str]]:
    """Each public module's path and the names its ``__all__`` lists."""
    documented: dict[str, set[str]] = {}
    for path in PUBLIC_MODULES:
        module = package if path == "rnnjax" else package[path.removeprefix("rnnjax.")]
        exports = module.exports or ()
        documented[path] = {name if isinstance(name, str) else name.name for name in exports}
    return documented


def _home(obj: griffe.Object, documented: dict[str, set[str]]) -> list[str]:
    """Public modules to resolve a bare name in, nearest first."""
    order = []
    path = obj.path
    while "." in path:
        path = path.rsplit(".", 1)[0]
        if path in documented and path not in order:
            order.append(path)
    order += [m for m in PUBLIC_MODULES if m not in order]
    return order


def _resolve(target: str, obj: griffe.Object, documented: dict[str, set[str]]) -> str | None:
    """The documented path a role's target names, or None."""
    if target in documented:
        return target  # a public module
    if "." in target:
        module, name = target.rsplit(".", 1)
        if module in documented and name in documented[module]:
            return target
        # rnnjax.LSTM.load_params-style targets and private paths: not resolved
        return None
    for module in _home(obj, documented):
        if target in documented[module]:
            return f"{module}.{target}"
    return None


def _roles(text: str, obj: griffe.Object, documented: dict[str, set[str]]) -> str:
    def replace(match: re.Match[str]) -> str:
        _, tilde, target = match.groups()
        shown = target.rsplit(".", 1)[-1] if tilde else target
        path = _resolve(target, obj, documented)
        return f"[`{shown}`][{path}]" if path else f"`{shown}`"

    return ROLE.sub(replace, text)


def _math(text: str) -> str:
    text = INLINE_MATH.sub(lambda m: f"\\({m.group(1)}\\)", text)
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = MATH_DIRECTIVE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent = match["indent"]
        body = [match["rest"].strip()] if match["rest"].strip() else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > len(indent)):
            if lines[i].strip():
                body.append(lines[i].strip())
            elif body and i + 1 < len(lines) and _indent(lines[i + 1]) <= len(indent):
                break
            i += 1
        tex = "\n".join(body)
        if "\\\\" in tex:  # several lines: Sphinx wraps them the same way
            tex = f"\\begin{{gathered}}\n{tex}\n\\end{{gathered}}"
        out += ["", f"{indent}$$", *(f"{indent}{line}" for line in tex.split("\n")), f"{indent}$$"]
        out.append("")
    return "\n".join(out)


def _doctests(text: str) -> str:
    """Fences doctests that stand outside a section (a module's description, say), which
    Markdown would read as a block quote; those inside ``Examples:`` mkdocstrings renders."""
    lines = text.split("\n")
    out: list[str] = []
    inside = False
    for line in lines:
        if not inside and line.startswith(">>>"):
            out.append("```pycon")
            inside = True
        elif inside and not line.strip():
            out.append("```")
            inside = False
        out.append(line)
    if inside:
        out.append("```")
    return "\n".join(out)


def _rewrite(text: str, obj: griffe.Object, documented: dict[str, set[str]]) -> str:
    text = _doctests(EXAMPLE_HEADER.sub(r"\g<indent>Examples:", text))
    text = _items(text)
    return _roles(_math(text), obj, documented)


def _items(text: str) -> str:
    """In Args-like sections, joins an item whose names wrap over lines ("a, b," then "c: x")
    and indents lines that continue an item at the item's own indentation."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        header = SECTION.match(lines[i])
        out.append(lines[i])
        i += 1
        if not header:
            continue
        start = i
        while i < len(lines) and (
            not lines[i].strip() or _indent(lines[i]) > len(header["indent"])
        ):
            i += 1
        body = lines[start:i]
        filled = [line for line in body if line.strip()]
        if not filled:
            out += body
            continue
        item_indent = min(_indent(line) for line in filled)
        merged: list[str] = []
        for line in body:
            previous = merged[-1].strip() if merged else ""
            if merged and _indent(line) == item_indent and NAMES_LINE.match(previous):
                merged[-1] = merged[-1].rstrip() + " " + line.strip()
            else:
                merged.append(line)
        for line in merged:
            stripped = line.strip()
            if stripped and _indent(line) == item_indent and not ITEM.match(stripped):
                line = " " * (item_indent + 2) + stripped  # continues the item above
            out.append(line)
    return "\n".join(out)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


class RnnjaxDocstrings(griffe.Extension):
    """Rewrites every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "rnnjax":
            return
        documented = _documented(pkg)
        seen: set[int] = set()

        def visit(obj: griffe.Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj.docstring.value, obj, documented)
            for member in obj.members.values():
                if not member.is_alias:
                    visit(member)  # type: ignore[arg-type]

        visit(pkg)
