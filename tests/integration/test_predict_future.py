"""`tidecast predict` with the future exogenous values in a file: ``--future FILE`` and ``serving.future``.

One small project (hourly data, a LightGBM champion reading the known-in-future ``temperature``) is
trained once. Its data file holds readings only, so the horizon's temperature must come from a
file; a file that lacks the column or some of the horizon's rows is one line naming them, exit 2.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from serving_helpers import run_cli, train_champion

from tidecast.spec import Spec

HORIZON = 24


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Iterator[Spec]:
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TIDECAST_ENV", "TIDECAST_ADMIN_TOKEN"):
            mp.delenv(var, raising=False)
        root = tmp_path_factory.mktemp("predict-future") / "proj"
        yield train_champion(root, "lightgbm", days=21, template=mlflow_template)


@pytest.fixture(scope="module")
def weather(project: Spec) -> pd.DataFrame:
    """The next two days' temperature after the data's last reading (local wall-clock, like the data)."""
    raw = pd.read_csv(project.root / "data" / "power.csv")
    last = pd.Timestamp(raw["timestamp"].iloc[-1])
    times = pd.date_range(last + pd.Timedelta("1h"), periods=2 * HORIZON, freq="h")
    rng = np.random.default_rng(0)
    return pd.DataFrame({"timestamp": times.strftime("%Y-%m-%d %H:%M:%S"), "temperature": rng.normal(5, 2, len(times))})


def predict(project: Spec, *args: str) -> int:
    return run_cli("predict", "--model", "small", "--spec", str(project.root), "--no-log", *args)


def test_future_file_gives_the_horizon(
    project: Spec, weather: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    future, out = tmp_path / "weather.csv", tmp_path / "fc.csv"
    weather.to_csv(future, index=False)
    assert predict(project, "--future", str(future), "--output", str(out)) == 0, capsys.readouterr()
    forecast = pd.read_csv(out)
    assert len(forecast) == HORIZON and forecast["yhat"].notna().all()
    assert re.search(r"future exogenous values from \S*weather\.csv\n", capsys.readouterr().out)
    # the temperature is read: a much colder horizon changes the forecast
    weather.assign(temperature=weather["temperature"] - 25).to_csv(future, index=False)
    assert predict(project, "--future", str(future), "--output", str(out)) == 0
    assert not np.allclose(pd.read_csv(out)["yhat"], forecast["yhat"])


def test_without_future_values_it_says_where_to_give_them(project: Spec, capsys: pytest.CaptureFixture[str]) -> None:
    assert predict(project) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--future" in err and "temperature" in err, err


def test_serving_future_in_the_spec_is_the_default(
    project: Spec, weather: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_file = project.root / "tidecast.yaml"
    original = spec_file.read_text()
    weather.to_csv(project.root / "data" / "weather.csv", index=False)
    try:
        spec_file.write_text(original + "serving: {future: data/weather.csv}\n")
        assert predict(project) == 0, capsys.readouterr()
        assert re.search(r"future exogenous values from \S*data/weather\.csv\n", capsys.readouterr().out)
        spec_file.write_text(original + "serving: {future: data/nowhere.csv}\n")
        assert predict(project) == 2
        err = capsys.readouterr().err
        assert "serving.future" in err and "nowhere.csv: no such file" in err, err
    finally:
        spec_file.write_text(original)


@pytest.mark.parametrize(
    ("damage", "needles"),
    [
        ("no column", ["no column(s) temperature", "the file has timestamp, temp"]),
        ("rows missing", ["series 'series' lacks 5 of its 24 rows (temperature; UTC"]),
        ("empty values", ["series 'series' lacks 2 of its 24 rows (temperature;"]),
        ("too short", ["lacks 14 of its 24 rows"]),
        ("no file", ["--future", "no such file"]),
    ],
)
def test_a_bad_future_file_is_one_line_naming_what_is_missing(
    project: Spec,
    weather: pd.DataFrame,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: str,
    needles: list[str],
) -> None:
    future = tmp_path / "weather.csv"
    bad = weather.copy()
    if damage == "no column":
        bad = bad.rename(columns={"temperature": "temp"})
    elif damage == "rows missing":
        bad = bad.drop(index=range(3, 8))
    elif damage == "empty values":
        bad.loc[[0, 10], "temperature"] = np.nan
    elif damage == "too short":
        bad = bad.head(10)
    if damage != "no file":
        bad.to_csv(future, index=False)
    assert predict(project, "--future", str(future)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
