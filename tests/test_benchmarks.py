"""``benchmarks/run.py --quick`` end to end: its JSON, Markdown table and plot, never timings.

The quick run adds ``min_gru`` to the default kinds, so the parallel-in-time rows (parallel,
sequential, the identity-recurrence floor) and the peers' notes for it are checked too, at
the cost of a few seconds.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODES = ("forward", "forward+backward")
KINDS = ("lstm", "gru", "simple_rnn")  # the default --kinds
QUICK_KINDS = (*KINDS, "min_gru")


def expected_implementations():
    """The families that must run on any machine, plus the peers installed (or required)."""
    required = os.environ.get("RNNJAX_REQUIRE_PEERS") == "1"
    peers = {name for name in ("keras", "torch") if required or importlib.util.find_spec(name)}
    return {"rnnjax", "linen", "nnx"} | peers


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)]
    command += ["--kinds", ",".join(QUICK_KINDS)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out, result.stdout


def test_json_has_every_implementation_in_both_modes(quick_run):
    out, _ = quick_run
    report = json.loads((out / "results.json").read_text())
    ran = {impl for impl, count in report["implementations"].items() if count}
    assert expected_implementations() <= ran, report["notes"]
    assert {"rnnjax-sequential", "rnnjax-floor"} <= ran, report["notes"]
    assert "rnnjax-fused" not in ran  # fused_backward is the default path now: one rnnjax row
    has_mingru_pytorch = importlib.util.find_spec("minGRU_pytorch") is not None
    expected_kinds = {
        "rnnjax": set(QUICK_KINDS),
        "rnnjax-sequential": {"min_gru"},
        "rnnjax-floor": {"min_gru"},
        "cudnn": {"lstm"},
        "torch": set(QUICK_KINDS) if has_mingru_pytorch else set(KINDS),
    }
    for impl in ran:
        for mode in MODES:
            rows = [r for r in report["rows"] if r["impl"] == impl and r["mode"] == mode]
            kinds = {r["kind"] for r in rows}
            assert kinds == expected_kinds.get(impl, set(KINDS)), (impl, mode)
            for row in rows:
                assert row["median_ms"] > 0 and row["first_call_s"] > 0, row["name"]
                assert len(row["samples_s"]) == report["settings"]["repeats"]
    assert all(rate > 0 for rate in report["matmul_gflop_per_s"].values())
    assert report["environment"]["versions"]["rnnjax"]


def test_peers_without_min_cells_are_skipped_with_a_note(quick_run):
    out, _ = quick_run
    notes = json.loads((out / "results.json").read_text())["notes"]
    for impl in expected_implementations() - {"rnnjax", "torch"}:
        assert any(n.startswith(f"{impl} min_gru: skipped (Unavailable: ") for n in notes), impl
    if "torch" in expected_implementations() and not importlib.util.find_spec("minGRU_pytorch"):
        assert any("torch min_gru: skipped" in n and "mingru-pytorch" in n for n in notes)


def test_min_gru_table_has_sequential_floor_and_ratio_over_floor(quick_run):
    out, _ = quick_run
    table = (out / "table.md").read_text()
    assert "**MinGRU**" in table and "| rnnjax over floor |" in table
    for name in ("rnnjax MinGRU", "rnnjax MinGRU sequential", "MinGRU identity recurrence"):
        assert f"| {name} |" in table, name
    assert "fused_backward" not in table


def test_min_kinds_count_the_input_projection_only():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from _common import DEFAULT_KINDS, Case, flop
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    case = Case(2, 3, 5, 7)
    assert DEFAULT_KINDS == KINDS
    assert flop(case, "min_gru", "forward") == 2 * 2 * 3 * 5 * 2 * 7
    assert flop(case, "min_lstm", "forward+backward") == 3 * 2 * 2 * 3 * 5 * 3 * 7
    assert flop(case, "gru", "forward") == 2 * 2 * 3 * (5 + 7) * 3 * 7


def test_markdown_table_has_ratios_to_rnnjax(quick_run):
    out, stdout = quick_run
    table = (out / "table.md").read_text()
    assert "| vs rnnjax |" in table and "| % of matmul |" in table
    assert "| rnnjax LSTM |" in table and "| 1.00x |" in table
    assert "| vs rnnjax |" in stdout  # each case's table is printed as it finishes


def test_plot_is_a_png(quick_run):
    out, _ = quick_run
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_help_lists_the_options():
    command = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--help"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    for option in ("--quick", "--impls", "--shape", "--dtype", "--repeats", "--warmup", "--out"):
        assert option in result.stdout
    assert "min_gru,min_lstm" in result.stdout  # selectable, not in the default kinds
    assert "(default: lstm,gru,simple_rnn)" in " ".join(result.stdout.split())


def test_report_rewrites_table_and_plot_from_json(quick_run, tmp_path):
    out, _ = quick_run
    (tmp_path / "results.json").write_text((out / "results.json").read_text())
    command = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--report"]
    subprocess.run([*command, str(tmp_path / "results.json")], timeout=120, check=True)
    assert (tmp_path / "table.md").read_text() == (out / "table.md").read_text()
    assert (tmp_path / "plot.png").exists()


@pytest.mark.parametrize(("kind", "rows"), [("lstm", 7), ("min_gru", 4)])
def test_the_settings_benchmark_prints_one_row_per_setting(kind, rows):
    """``benchmarks/settings.py`` at a tiny shape: a table row per setting, the default's
    ratio 1.00, a memory column; never a time checked."""
    command = [sys.executable, str(ROOT / "benchmarks" / "settings.py"), "--kind", kind]
    command += ["--shape", "2,8,3,4", "--repeats", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")][1:]
    assert len(table) == rows and table[0].startswith("| default |")
    assert table[0].split("|")[3].strip() == "1.00"
    assert all(len(line.split("|")) == 6 for line in table)


def test_device_check_quick_runs_end_to_end_without_a_gpu(tmp_path):
    """``benchmarks/device_check.sh --quick`` starts and finishes here: every stage exits 0,
    the results land under ``$OUT/device_check``, and off a GPU no cuDNN row is timed."""
    script = ROOT / "benchmarks" / "device_check.sh"
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(script), "--quick"], capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    results = tmp_path / "device_check"
    summary = (results / "summary.txt").read_text()
    for stage in ("environment", "gpu_tests", "bench_quick"):
        assert f"=== {stage}: exit 0" in summary, summary
    report = json.loads((results / "quick" / "results.json").read_text())
    impls = {row["impl"] for row in report["rows"]}
    assert "rnnjax" in impls
    if report["environment"]["backend"] == "cpu":
        assert not impls & {"rnnjax-cudnn", "cudnn"}
        assert any(note.startswith("rnnjax-cudnn lstm: skipped") for note in report["notes"])
