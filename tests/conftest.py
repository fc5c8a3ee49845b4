"""Test settings: strict rank promotion and hypothesis profiles sized for a 2-core CI."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports Keras 3

import hypothesis
import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

hypothesis.settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
hypothesis.settings.register_profile("dev", max_examples=100, deadline=None)
hypothesis.settings.load_profile(os.environ.get("RNNJAX_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(params=[False, True], ids=["per-step-projection", "hoisted-projection"])
def projection(request, monkeypatch):
    """Runs a test under both input-projection strategies of ``rnnjax.rnn``."""
    monkeypatch.setattr("rnnjax._src.driver._hoist_input_projection", lambda: request.param)
    return request.param
