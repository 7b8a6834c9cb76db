"""The benchmark runner's contract: one line per figure in the documented format; --only picks one."""

from __future__ import annotations

import sys
import types

import pytest

from benchmarks import run as runner
from benchmarks.common import Figure, median_seconds


def test_figure_line_and_target():
    figure = Figure("generate_vs_hf", 1.62, "x", ">=", 1.5)
    assert figure.line() == "bench generate_vs_hf: 1.62 x (target >= 1.5)"
    assert figure.met
    assert not Figure("mask_redraw", 250.0, "ms", "<=", 200).met


def test_unknown_comparison_is_refused():
    with pytest.raises(ValueError, match="Figure.op"):
        Figure("x", 1.0, "x", "=>", 1.0)


def test_median_seconds_runs_warmup_and_repeats():
    calls = []
    assert median_seconds(lambda: calls.append(1), repeats=3, warmup=2) >= 0.0
    assert len(calls) == 5


def test_runner_prints_every_figure_of_the_chosen_module(monkeypatch, capsys):
    fake = types.ModuleType("benchmarks.bench_fake")
    fake.run = lambda: [Figure("fake_ratio", 2.0, "x", ">=", 1.0), Figure("fake_ms", 300.0, "ms", "<=", 200.0)]
    monkeypatch.setitem(sys.modules, "benchmarks.bench_fake", fake)
    monkeypatch.setattr(runner, "available", lambda: ["fake", "other"])
    assert runner.main(["--only", "fake"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "bench fake_ratio: 2 x (target >= 1)",
        "bench fake_ms: 300 ms (target <= 200)",
    ]
    assert "1 target(s) missed: fake_ms" in captured.err


def test_runner_refuses_an_unknown_benchmark(monkeypatch, capsys):
    monkeypatch.setattr(runner, "available", lambda: ["fake"])
    with pytest.raises(SystemExit):
        runner.main(["--only", "nope"])
    assert "unknown benchmark 'nope'; known: fake" in capsys.readouterr().err
