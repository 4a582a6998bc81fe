"""Issue 18 items 4 and 5 through the real CLI: an ensemble candidate that is ranked, registered,
explained and served; a significance gate that keeps a better-but-not-significantly-better winner
as challenger, with the Diebold-Mariano statistic and p-value in the reason; a held-out stretch of
several horizons; and the bad input of both (one line naming the field, exit code 2)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.e2e.cli import assert_clean_failure, tidecast

pytestmark = pytest.mark.slow

MODELS = [
    {"name": "snaive", "kind": "seasonal_naive", "params": {"season_length": "1d"}},
    {"name": "snaive_week", "kind": "seasonal_naive", "params": {"season_length": "7d"}},
    {"name": "avg", "kind": "window_average", "params": {"window_size": 24}},
    {"name": "ens", "kind": "ensemble", "params": {"members": ["snaive", "snaive_week", "avg"], "max_iterations": 25}},
]


def _project(root: Path, *, days: int = 50, **overrides: object) -> Path:
    from tidecast.datasets import make_power

    (root / "data").mkdir(parents=True, exist_ok=True)
    make_power(days=days, seed=3, freq="1h").to_csv(root / "data" / "power.csv", index=False)
    spec = {
        "project": "small",
        "data": {
            "source": "data/power.csv",
            "time_column": "timestamp",
            "target_column": "power_kw",
            "frequency": "1h",
            "timezone": "Europe/Paris",
        },
        "clean": {"gaps": {"method": "interpolate", "max_gap": "6h"}},
        "forecast": {"input_window": "8d", "horizon": "24h", "quantiles": [0.1, 0.9]},
        "backtest": {"folds": 8},
        "selection": {"metric": "rmse"},
        "models": MODELS,
        **overrides,
    }
    (root / "tidecast.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


def _edit(project: Path, **changes: object) -> None:
    spec = yaml.safe_load((project / "tidecast.yaml").read_text())
    for dotted, value in changes.items():
        node = spec
        *path, last = dotted.split("__")
        for key in path:
            node = node.setdefault(key, {})
        node[last] = value
    (project / "tidecast.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def test_ensemble_wins_registers_is_served_and_the_gate_weighs_evidence(tmp_path: Path) -> None:
    project = _project(tmp_path / "small")
    run = tidecast("run", cwd=project, timeout=600)
    assert run.returncode == 0, run.stderr + run.stdout
    out = " ".join(run.stdout.split())
    # ranked like any model, and the winner here: greedy weights over the three members
    assert "winner: ens (ensemble)" in out, out
    assert re.search(r"ensemble ens \((snaive|snaive_week|avg) \d+%", out), out
    assert re.search(r"better on \d of 8 folds \(fold 0 with equal weights\), \d+ of 24 horizon steps", out), out
    assert "registry: small v1 → champion" in out, out
    held = re.search(r"held-out last 24 steps: RMSE ([\d.]+) vs snaive ([\d.]+)", out)
    assert held and float(held.group(1)) < float(held.group(2)), out
    # explained: the weights are in the run report
    report = (project / ".tidecast" / "reports" / "latest.html").read_text()
    assert "weights (greedy selection over every backtest fold)" in report
    assert "fold 0 scored with equal weights" in report

    # served: one pyfunc holding its fitted members; the forecast is the weighted mean of theirs
    pred = tidecast("predict", "--model", "small", "--version", "1", "--output", "fc.csv", cwd=project)
    assert pred.returncode == 0, pred.stderr + pred.stdout
    fc = pd.read_csv(project / "fc.csv")
    assert len(fc) == 24 and np.isfinite(fc[["yhat", "q0.1", "q0.9"]].to_numpy()).all()
    assert (fc["q0.1"] <= fc["yhat"]).all() and (fc["yhat"] <= fc["q0.9"]).all()

    # the same winner, better than the baseline on the held-out day, but one horizon is no evidence:
    # with registry.gate.significance it stays challenger, the DM statistic and p-value in the reason
    _edit(project, registry__gate__significance=0.05)
    again = tidecast("run", cwd=project, timeout=600)
    assert again.returncode == 0, again.stderr + again.stdout
    line = " ".join(again.stdout.split())
    assert "registry: small v2 → challenger" in line, line
    found = re.search(
        r"Diebold-Mariano vs baseline snaive on 24 held-out steps \(squared loss, h=24\): "
        r"statistic ([+-][\d.]+), p-value ([\d.]+) >= significance 0.05",
        line,
    )
    assert found, line
    assert float(found.group(2)) >= 0.05
    assert "Diebold-Mariano vs champion v1" in line, line
    assert "lengthen backtest.holdout" in line, line


def test_holdout_of_several_horizons(tmp_path: Path) -> None:
    models = [m for m in MODELS if m["name"] in ("snaive", "avg")]
    project = _project(
        tmp_path / "small",
        days=30,
        models=models,
        backtest={"folds": 2, "holdout": "3d"},
        registry={"gate": {"significance": 0.05}},
    )
    run = tidecast("run", "--until", "track", cwd=project, timeout=600)
    assert run.returncode == 0, run.stderr + run.stdout
    out = " ".join(run.stdout.split())
    assert "held-out last 72 steps: RMSE" in out, out
    assert "registry: small v1" in out, out
    # the winner is the baseline: no test against itself, and no champion yet: the gate passes
    assert "winner: snaive (seasonal_naive)" in out and "→ champion" in out, out


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        ({"backtest__holdout": "40d"}, ("backtest.holdout", "longer than the data allows")),
        ({"registry__gate__significance": 1.5}, ("registry.gate.significance",)),
        (
            {"models": [*MODELS[:3], {"name": "ens", "kind": "ensemble", "params": {"members": ["snaive", "arima"]}}]},
            ("models[3] (ens).params.members", "no candidate named 'arima'"),
        ),
        (
            {
                "models": [
                    {"name": "far", "kind": "seasonal_naive", "params": {"season_length": "29d"}},
                    *MODELS[:1],
                    {"name": "ens", "kind": "ensemble", "params": {"members": ["far", "snaive"]}},
                ]
            },
            ("params.members", "member 'far' failed its backtest"),
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_field(change: dict, needles: tuple[str, ...], tmp_path: Path) -> None:
    project = _project(tmp_path / "small", days=30, backtest={"folds": 2})
    _edit(project, **change)
    result = tidecast("run", "--until", "select", cwd=project, timeout=600)
    if "member 'far' failed its backtest" not in needles:  # refused before any step
        assert_clean_failure(result, project, *needles)
        return
    # a member that fails is known only after the backtests: the data steps stay cached
    assert result.returncode == 2, result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]  # after the steps' lines
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
