"""Bad input through the real CLI: one clear line, exit code 2, nothing written to cache or lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_project
from tests.e2e.cli import assert_clean_failure, tidecast


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "p", days=20)


def test_yaml_typo(project: Path) -> None:
    spec = project / "tidecast.yaml"
    spec.write_text(spec.read_text().replace("horizon: 24h", "horizn: 24h"))
    assert_clean_failure(tidecast("run", cwd=project), project, "forecast.horizn", "did you mean 'horizon'")


def test_missing_file(project: Path) -> None:
    (project / "data" / "power.csv").unlink()
    assert_clean_failure(tidecast("run", cwd=project), project, "power.csv")


def test_garbage_csv(project: Path) -> None:
    (project / "data" / "power.csv").write_bytes(b"\x00\xff\xfe garbage \x00\x01" * 50)
    assert_clean_failure(tidecast("run", cwd=project), project, "power.csv")


def test_missing_target_column(project: Path) -> None:
    spec = project / "tidecast.yaml"
    spec.write_text(spec.read_text().replace("target_column: power_kw", "target_column: power"))
    assert_clean_failure(tidecast("run", cwd=project), project, "power")


def _set_cell(csv: Path, line: int, column: int, value: str) -> None:
    """Overwrite one cell of the CSV (``line`` counts from 0, the header included)."""
    lines = csv.read_text().splitlines()
    parts = lines[line].split(",")
    parts[column] = value
    lines[line] = ",".join(parts)
    csv.write_text("\n".join(lines) + "\n")


def test_non_numeric_target(project: Path) -> None:
    _set_cell(project / "data" / "power.csv", 10, 1, "lots")
    assert_clean_failure(tidecast("run", cwd=project), project, "line 11", "lots")


def test_unparseable_timestamp(project: Path) -> None:
    _set_cell(project / "data" / "power.csv", 5, 0, "not-a-date")
    assert_clean_failure(tidecast("run", cwd=project), project, "line 6", "not-a-date")


def test_frequency_contradiction(project: Path) -> None:
    spec = project / "tidecast.yaml"
    spec.write_text(spec.read_text().replace("frequency: 1h", "frequency: 1D").replace("24h", "2d"))
    assert_clean_failure(tidecast("run", cwd=project), project, "frequency")


def test_history_too_short(tmp_path: Path) -> None:
    project = make_project(tmp_path / "short", days=2)
    assert_clean_failure(tidecast("run", cwd=project), project, "history")


def test_unknown_model_kind(project: Path) -> None:
    spec = project / "tidecast.yaml"
    spec.write_text(spec.read_text().replace("kind: lightgbm", "kind: lightgmb"))
    assert_clean_failure(tidecast("run", cwd=project), project, "lightgbm", "lightgmb")


def test_help_has_examples(tmp_path: Path) -> None:
    for command in ("run", "status", "dag", "schema"):
        result = tidecast(command, "--help", cwd=tmp_path)
        assert result.returncode == 0
        assert "Example" in result.stdout
