"""Which cells a vendor kernel computes exactly: the marks that let a backend recognise a cell.

A cell family marks the cells whose equations a vendor kernel implements (the plain LSTM's
``mark_kernel(cell, "lstm")``: cuDNN's LSTM), and a driver asks :func:`kernel_of`; so the
scan drivers recognise a plain LSTM without importing the LSTM family. The mark is on the
cell's functions other than ``step`` (which :func:`~rnnjax._src.cells.kit.cell_factory`
wraps with its checks, and which the fast paths never call): a derived cell (recurrent
dropout, a compute dtype) or a user's cell built from other functions carries no mark.
"""

from __future__ import annotations

from typing import Any

from rnnjax._src.core.contract import Cell

_MARKS: dict[tuple[Any, ...], str] = {}


def _key(cell: Cell) -> tuple[Any, ...]:
    return tuple(value for name, value in zip(cell._fields, cell, strict=True) if name != "step")


def mark_kernel(cell: Cell, name: str) -> Cell:
    """Marks ``cell`` as the one a vendor kernel named ``name`` computes; returns ``cell``."""
    _MARKS[_key(cell)] = name
    return cell


def kernel_of(cell: Cell) -> str | None:
    """The vendor kernel ``cell`` was marked for (``"lstm"``), or ``None``."""
    try:
        return _MARKS.get(_key(cell))
    except TypeError:  # a cell holding something unhashable: a user's, never marked
        return None
