"""Importing the optional peers: a skip normally, a failure under RNNJAX_REQUIRE_PEERS=1."""

import importlib
import os

import pytest


def import_peer(name):
    """``import name``; when it is missing, a skip naming it (at module level too), or the
    ImportError itself under RNNJAX_REQUIRE_PEERS=1."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("RNNJAX_REQUIRE_PEERS") == "1":
            raise
        pytest.skip(
            f"{name} is not installed; RNNJAX_REQUIRE_PEERS=1 makes this fail",
            allow_module_level=True,
        )
