"""The suite collects, and its peer tests skip with a named reason, without torch or Keras;
under RNNJAX_REQUIRE_PEERS=1 a missing peer fails instead.

Both peers are made missing in a child pytest by a plugin that sets
``sys.modules["torch"] = sys.modules["keras"] = None`` (``import torch`` then raises
ImportError, as when it is not installed).
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = 'import sys\nsys.modules["torch"] = None\nsys.modules["keras"] = None\n'
KERAS_TEST = "tests/test_padding.py::test_strings_pad_with_dtype_object_as_keras"


def _pytest_without_peers(tmp_path, *args, require=False):
    (tmp_path / "without_peers.py").write_text(PLUGIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    env["RNNJAX_REQUIRE_PEERS"] = "1" if require else "0"
    command = [sys.executable, "-m", "pytest", "-p", "without_peers", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*command, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_suite_collects_and_peer_tests_skip_by_name_without_torch_or_keras(tmp_path):
    # Collect everything (tests and doctests), run one Keras test: it skips, naming Keras.
    run = _pytest_without_peers(tmp_path, "-rs", "tests", "rnnjax", "-k", KERAS_TEST.split("::")[1])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "SKIPPED" in run.stdout and "keras is not installed" in run.stdout
    assert "1 skipped" in run.stdout


def test_a_missing_peer_fails_under_require_peers(tmp_path):
    run = _pytest_without_peers(tmp_path, "--tb=short", KERAS_TEST, require=True)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    # the fixture that imports Keras raises: an error in the test's setup, never a skip
    assert "1 error" in run.stdout and "import of keras halted" in run.stdout
    assert "skipped" not in run.stdout
