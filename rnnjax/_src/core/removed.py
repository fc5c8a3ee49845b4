"""Arguments removed from the public entry points, answered with what replaced them.

For one release a removed keyword is refused with a ``TypeError`` that names the entry point
the user called and says what to do instead, rather than Python's "unexpected keyword
argument".
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

REMOVED_ARGUMENTS = {
    "fused_backward": (
        "the fast backward pass is automatic (every cell with the gate_split capability gets"
        " it, in every mode of differentiation): drop the argument"
    ),
}


def refuse_removed(where: str, keywords: dict[str, Any]) -> None:
    """Raises a ``TypeError`` naming ``where`` if ``keywords`` holds a removed argument."""
    for name, replacement in REMOVED_ARGUMENTS.items():
        if name in keywords:
            raise TypeError(f"{where}: {name}= was removed; {replacement}")


def refuses_removed(where: str) -> Callable[[F], F]:
    """Decorates an entry point so a removed keyword gets :func:`refuse_removed`'s message.

    ``where`` names the entry point (``"rnnjax.rnn"``); in a constructor's, ``{cls}`` stands
    for the class being built (``"rnnjax.nnx.{cls}"`` names ``rnnjax.nnx.LSTM``).
    """

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if kwargs:
                cls = type(args[0]).__name__ if args and "{cls}" in where else ""
                refuse_removed(where.replace("{cls}", cls), kwargs)
            return function(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate
