"""The spec loader: validation, line numbers, did-you-mean, env overrides, path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidecast.durations import to_steps
from tidecast.errors import SpecError
from tidecast.spec import json_schema, load_spec

BASE = """\
project: demo
data:
  source: data/x.csv
  frequency: 5min
forecast:
  input_window: 24h
  horizon: 24h
models:
  - {name: snaive, kind: seasonal_naive}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tidecast.yaml"
    path.write_text(text)
    return path


def test_valid_spec_resolves_paths_and_steps(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE))
    assert spec.forecast_steps() == (288, 288)
    assert spec.data.source == str((tmp_path / "data/x.csv").resolve())
    assert spec.model_name == "demo"
    assert spec.state_dir == tmp_path.resolve() / ".tidecast"


def test_loading_a_folder_finds_the_spec(tmp_path: Path) -> None:
    write(tmp_path, BASE)
    assert load_spec(tmp_path).project == "demo"


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "nope.yaml")


def test_typo_names_line_field_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("  horizon: 24h", "  horizn: 24h"))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert f"{path}:7" in message
    assert "forecast.horizn" in message
    assert "did you mean 'horizon'" in message


def test_typo_inside_a_candidate_names_the_candidate(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("{name: snaive, kind: seasonal_naive}", "{name: snaive, knd: seasonal_naive}"))
    with pytest.raises(SpecError, match=r"models\[snaive\]\.knd: unknown key \(did you mean 'kind'\?\)"):
        load_spec(path)


def test_bad_value_names_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "backtest:\n  folds: many\n")
    with pytest.raises(SpecError, match=r":11: backtest\.folds"):
        load_spec(path)


def test_bad_duration_and_frequency(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"forecast\.horizon: '7m' is not a whole number of 5min steps"):
        load_spec(write(tmp_path, BASE.replace("horizon: 24h", "horizon: 7m")))
    with pytest.raises(SpecError, match=r"data\.frequency: '5 minutes please' is not a pandas frequency"):
        load_spec(write(tmp_path, BASE.replace("frequency: 5min", "frequency: 5 minutes please")))


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"tidecast.yaml:\d+: not valid YAML"):
        load_spec(write(tmp_path, BASE + "models: [unclosed\n"))


def test_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="must be a mapping"):
        load_spec(write(tmp_path, "- just\n- a list\n"))


def test_duplicate_candidate_names(tmp_path: Path) -> None:
    text = BASE + "  - {name: snaive, kind: naive}\n"
    with pytest.raises(SpecError, match="repeated: snaive"):
        load_spec(write(tmp_path, text))


def test_env_overrides_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = BASE + "envs:\n  prod:\n    data: {source: /srv/prod.parquet}\n    registry: {model_name: demo-prod}\n"
    path = write(tmp_path, text)
    assert load_spec(path).data.source.endswith("data/x.csv")
    prod = load_spec(path, env="prod")
    assert prod.data.source == "/srv/prod.parquet"
    assert prod.data.frequency == "5min"  # untouched keys survive the merge
    assert prod.model_name == "demo-prod"
    monkeypatch.setenv("TIDECAST_ENV", "prod")
    assert load_spec(path).model_name == "demo-prod"
    with pytest.raises(SpecError, match="no environment 'qa'"):
        load_spec(path, env="qa")


def test_fingerprint_changes_with_content(tmp_path: Path) -> None:
    a = load_spec(write(tmp_path, BASE)).fingerprint()
    b = load_spec(write(tmp_path, BASE.replace("24h\n  horizon", "12h\n  horizon"))).fingerprint()
    assert a != b


def test_json_schema_lists_sections() -> None:
    schema = json_schema()
    assert {"project", "data", "forecast", "models"} <= set(schema["properties"])
    assert "root" not in schema["properties"]


@pytest.mark.parametrize(
    ("value", "freq", "steps"),
    [("24h", "5min", 288), (12, "5min", 12), ("7d", "h", 168), ("2w", "D", 14), ("90min", "15min", 6), ("3", "h", 3)],
)
def test_to_steps(value: object, freq: str, steps: int) -> None:
    assert to_steps(value, freq) == steps  # type: ignore[arg-type]


def test_to_steps_rejects_fractions_and_garbage() -> None:
    with pytest.raises(SpecError):
        to_steps("7min", "5min")
    with pytest.raises(SpecError):
        to_steps("soon", "5min")


@pytest.mark.parametrize(
    ("frequency", "window", "horizon", "steps"),
    [
        ("W", "104 weeks", "8 weeks", (104, 8)),
        ("W-MON", "1 year", "14d", None),  # a year is no whole number of weeks
        ("B", "60 business days", "2w", (60, 10)),
        ("C:US", 20, "5d", (20, 5)),
        ("MS", "3 years", "12 months", (36, 12)),
        ("ME", "2 quarters", "1.5 years", (6, 18)),
        ("QS", "4 years", "2 quarters", (16, 2)),
        ("QE-MAR", "12 months", "1 year", (4, 4)),
        ("YS", "20 years", "1 year", (20, 1)),
    ],
)
def test_calendar_frequencies_take_calendar_durations(
    tmp_path: Path, frequency: str, window: object, horizon: str, steps: tuple[int, int] | None
) -> None:
    text = BASE.replace("5min", f"'{frequency}'").replace("input_window: 24h", f"input_window: {window}")
    text = text.replace("horizon: 24h", f"horizon: {horizon}")
    if steps is None:
        with pytest.raises(SpecError, match=r"forecast\.input_window: '1 year' does not fit weekly \(W-MON\) data"):
            load_spec(write(tmp_path, text))
        return
    spec = load_spec(write(tmp_path, text))
    assert spec.forecast_steps() == steps


def test_calendar_frequency_errors_name_the_field(tmp_path: Path) -> None:
    monthly = BASE.replace("5min", "MS").replace("input_window: 24h", "input_window: 24")
    with pytest.raises(SpecError, match=r"forecast\.horizon: '90 minutes' does not fit monthly \(MS\) data: write months"):
        load_spec(write(tmp_path, monthly.replace("horizon: 24h", "horizon: 90 minutes")))
    with pytest.raises(SpecError, match=r"forecast\.horizon: '10 days' does not fit monthly"):
        load_spec(write(tmp_path, monthly.replace("horizon: 24h", "horizon: 10 days")))
    with pytest.raises(SpecError, match=r"forecast\.horizon: '1 month' is not a whole number of YS steps"):
        load_spec(write(tmp_path, monthly.replace("MS", "YS").replace("horizon: 24h", "horizon: 1 month")))
    with pytest.raises(SpecError, match=r"data\.frequency: unknown holiday country 'XX'"):
        load_spec(write(tmp_path, monthly.replace("MS", "'C:XX'").replace("horizon: 24h", "horizon: 2")))
    with pytest.raises(SpecError, match=r"forecast\.horizon: months have no fixed length"):
        load_spec(write(tmp_path, BASE.replace("horizon: 24h", "horizon: 1 month")))


def test_calendar_frequency_gets_natural_defaults_and_keeps_set_values(tmp_path: Path) -> None:
    monthly = BASE.replace("5min", "MS").replace("input_window: 24h", "input_window: 24").replace("horizon: 24h", "horizon: 12")
    spec = load_spec(write(tmp_path, monthly))
    assert spec.clean.gaps.max_gap == 3  # '1h' does not fit monthly data: a quarter
    assert spec.monitoring.data_drift.window == 12 and spec.monitoring.data_drift.reference_window == 48
    assert spec.features.calendar == ["month", "days_in_month", "trading_days"]
    spec = load_spec(write(tmp_path, monthly + "clean: {gaps: {max_gap: 2 months}}\nfeatures: {calendar: [quarter]}\n"))
    assert spec.clean.gaps.max_gap == "2 months" and spec.features.calendar == ["quarter"]
    fixed = load_spec(write(tmp_path, BASE))  # fixed frequencies: the defaults as they were
    assert fixed.clean.gaps.max_gap == "1h" and fixed.features.calendar == []
    assert to_steps("2 years", "QS") == 8 and to_steps("8 weeks", "W-SUN") == 8 and to_steps("21d", "W") == 3
