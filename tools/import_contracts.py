"""A contract for import-linter: no private name (``_name``) is imported across a package.

A module may import another module's private names only when both sit in the same package
(``rnnjax._src.linear.time_sharded`` may use ``rnnjax._src.linear.recurrence._recurrence``);
anything a second package needs is public in the module that owns it. Used from
``pyproject.toml`` (``[tool.importlinter]``) and run by ``lint-imports``.
"""

from __future__ import annotations

import ast

import grimp
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def _private_names(line: str) -> list[str]:
    """The private names that the import statement ``line`` brings in."""
    try:
        tree = ast.parse(line.strip().rstrip("("))
    except SyntaxError:  # the first line of a parenthesised import: read its names loosely
        names = line.split(" import ", 1)[-1].replace("(", "").split(",")
        return [n.strip().split(" as ")[0] for n in names if n.strip().startswith("_")]
    return [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]


def _package(module: str) -> str:
    return module.rsplit(".", 1)[0]


class PrivateNamesContract(Contract):
    """Options: ``packages``, the packages whose modules are checked (importers and imported)."""

    type_name = "private_names"
    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        roots = tuple(self.packages)  # type: ignore[arg-type]
        inside = [m for m in graph.modules if m.startswith(roots)]
        violations = []
        for importer in sorted(inside):
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                if not imported.startswith(roots) or _package(imported) == _package(importer):
                    continue
                for detail in graph.get_import_details(importer=importer, imported=imported):
                    for name in _private_names(detail["line_contents"]):
                        violations.append(
                            f"{importer}:{detail['line_number']} imports {imported}.{name}"
                        )
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        from importlinter.application import output

        for violation in check.metadata["violations"]:
            output.print_error(f"- {violation}")
        output.new_line()
