"""The package surface: submodules that load on first use, without importing the peers."""

import subprocess
import sys

import pytest

import rnnjax


def test_public_names_are_exported():
    for name in rnnjax.__all__:
        assert getattr(rnnjax, name) is not None, name
    assert {"interop", "nnx", "linen", "training"} <= set(dir(rnnjax))
    with pytest.raises(AttributeError, match="module 'rnnjax' has no attribute 'nope'"):
        rnnjax.nope  # noqa: B018


def test_submodules_load_on_first_attribute_access_without_the_peers():
    code = (
        "import sys, rnnjax\n"
        "assert 'rnnjax.interop' not in sys.modules\n"
        "convert = rnnjax.interop.from_torch\n"
        "assert rnnjax.nnx.LSTM and rnnjax.linen.GRU and rnnjax.training.fit\n"
        "print(sorted(m for m in ('torch', 'keras') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
