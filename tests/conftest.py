"""Test settings: strict rank promotion and hypothesis profiles sized for a 2-core CI."""

import os
import re

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports Keras 3

import hypothesis
import jax
import pytest

hypothesis.settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
hypothesis.settings.register_profile("dev", max_examples=100, deadline=None)
hypothesis.settings.load_profile(os.environ.get("RNNJAX_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
    """rnnjax never relies on implicit rank promotion; the tests hold it to that (doctests
    outside tests/ run with JAX's default, as a user's code does)."""
    with jax.numpy_rank_promotion("raise"):
        yield


@pytest.fixture(params=[False, True], ids=["per-step-projection", "hoisted-projection"])
def hoist_projection(request):
    """Both input-projection paths of ``rnnjax.rnn``: its ``hoist_projection`` argument."""
    return request.param


def pytest_collection_modifyitems(config, items):
    """The input-projection paths do not apply to cells without the projection capability
    (minGRU, minLSTM, LRU, RG-LRU; ``hoist_projection=True`` is an error for them): run them
    once, not once per path."""
    from tests.cells_under_test import CASES

    unprojected = [case.name for case in CASES if case.cell.projection is None]
    pattern = re.compile(r"[-\[](" + "|".join(map(re.escape, unprojected)) + r")\]")
    items[:] = [
        item
        for item in items
        if not ("hoisted-projection" in item.nodeid and pattern.search(item.nodeid))
    ]


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "gpu: needs a CUDA GPU (cuDNN); skipped elsewhere, failed under RNNJAX_REQUIRE_GPU=1",
    )


@pytest.fixture(autouse=True)
def _gpu_only(request):
    """The one place a ``gpu``-marked test is skipped: where JAX has no CUDA GPU. A GPU is a
    device, not an optional peer, so RNNJAX_REQUIRE_PEERS leaves this skip alone; on a
    device run (benchmarks/device_check.sh) RNNJAX_REQUIRE_GPU=1 turns it into a failure."""
    if request.node.get_closest_marker("gpu") is None:
        return
    from rnnjax._src.scan.cudnn import cuda_refusal

    reason = cuda_refusal()
    if reason is None:
        return
    if os.environ.get("RNNJAX_REQUIRE_GPU") == "1":
        pytest.fail(f"RNNJAX_REQUIRE_GPU=1 but {reason}")
    pytest.skip(f"needs a CUDA GPU: {reason}")
