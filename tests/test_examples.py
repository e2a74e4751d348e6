"""The examples in examples/ run as a user runs them (a fresh process, from
another directory) and reach what their docstrings promise."""
import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def run(name, tmp_path, *args, needs=()):
    for module in needs:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"examples/{name} needs {module}")
    r = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def number(pattern, text):
    m = re.search(pattern, text)
    assert m, (pattern, text[-2000:])
    return float(m.group(1))


def test_numpy_training_beats_the_naive_forecast(tmp_path):
    out = run("numpy_training.py", tmp_path)
    mse, naive = number(r"test mse ([\d.]+)", out), number(r"forecast ([\d.]+)\)", out)
    assert mse < 0.5 * naive, out


def test_streaming_cell_matches_the_whole_sequence(tmp_path):
    out = run("streaming_cell.py", tmp_path, "--steps", "300")
    assert number(r"max \|difference\| ([\d.e+-]+)", out) < 1e-5
    assert "step at batch 1: median" in out


def test_bilstm_tagger_uses_the_right_context(tmp_path):
    out = run("bilstm_tagger.py", tmp_path, needs=("torch",))
    assert number(r"held-out entity F1 ([\d.]+)", out) >= 0.95, out
    assert number(r"clue comes after them: F1 ([\d.]+)", out) >= 0.9, out


def test_sensor_anomaly_flags_the_faults(tmp_path):
    out = run("sensor_anomaly.py", tmp_path, needs=("keras",))
    assert number(r"precision ([\d.]+)", out) >= 0.8, out
    assert number(r"recall ([\d.]+)", out) >= 0.8, out


def test_forecast_sunspots_beats_the_baselines(tmp_path):
    out = run("forecast_sunspots.py", tmp_path, "--plot", "plot.png",
              needs=("torch", "statsmodels"))
    lstm, ar = number(r"error: LSTM ([\d.]+)", out), number(r"AutoReg\(9\) ([\d.]+)", out)
    naive = number(r"last year's value ([\d.]+)", out)
    assert lstm < 0.75 * naive and lstm < 1.2 * ar, out
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "plot.png").stat().st_size > 10_000
