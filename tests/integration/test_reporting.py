"""Reports, explainability, the dashboard and ``tidecast init``, tested as a person would use them.

One project is scaffolded with ``tidecast init`` and trained with ``tidecast run`` (real
subprocesses, in the project folder); the tests then read its run report in a headless browser,
build the client report (HTML and PDF), serve the dashboard to Chromium and watch it refresh.

Browser tests need Debian's ``chromium`` and ``chromium-driver`` (and ``pdftoppm`` from
``poppler-utils`` for the PDF pages); without them they are skipped, unless
``TIDECAST_REQUIRE_BROWSER=1`` (CI) makes that a failure. Screenshots and rendered pages go to
``$TIDECAST_TEST_ARTIFACTS`` (default ``build/test-artifacts/``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from serving_helpers import run_cli as cli

from tidecast.frames import ID, TARGET, TIME
from tidecast.spec import Spec, load_spec

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TIDECAST_TEST_ARTIFACTS") or REPO / "build" / "test-artifacts")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
TIDECAST = [sys.executable, "-m", "tidecast.cli"]


def tidecast(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TIDECAST_ENV")
    }
    env.update(
        {
            "COLUMNS": "200",
            "NO_COLOR": "1",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        }
    )
    return subprocess.run([*TIDECAST, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)


def need_browser() -> None:
    if CHROMIUM and CHROMEDRIVER:
        try:
            import selenium  # noqa: F401
        except ImportError:
            pass
        else:
            return
    message = "needs chromium, chromium-driver and selenium (apt-get install -y chromium chromium-driver)"
    if os.environ.get("TIDECAST_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):  # offline: no CDN can answer
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


CHART_STATE = """
return [...document.querySelectorAll('.js-plotly-plot')].map(d => ({
  id: d.id || (d.parentElement && d.parentElement.id) || '',
  chart: (d.closest('[data-chart]') || {dataset: {}}).dataset.chart || '',
  traces: (d._fullData || []).length,
  points: (d._fullData || []).reduce((n, t) => n + ((t.x && t.x.length) || (t.y && t.y.length) || 0), 0),
  drawn: !!d.querySelector('svg.main-svg'),
  xmax: (d._fullData || []).map(t => (t.x && t.x.length) ? t.x[t.x.length - 1] : null).filter(v => v !== null).sort().pop() || null,
}));
"""


def external_resources(html: str) -> list[str]:
    """Scripts, styles and images the page would fetch (script bodies are not parsed as markup)."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            for name, value in attrs:
                if name in ("src", "href") and value and not value.startswith(("data:", "#")):
                    found.append(f"<{tag} {name}={value}>")

    Parser().feed(html)
    return found


def severe_console_errors(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def full_page_screenshot(driver: Any, path: Path, width: int = 1400) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    height = int(
        driver.execute_script("return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)")
    )
    driver.set_window_size(width, min(max(height, 600) + 200, 16000))
    time.sleep(0.5)
    driver.save_screenshot(str(path))
    return path


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Iterator[Spec]:
    """``tidecast init demo`` then ``cd demo && tidecast run``: a trained project with its run report."""
    base = tmp_path_factory.mktemp("reporting")
    made = tidecast("init", "demo", "--template", "power", cwd=base)
    assert made.returncode == 0, made.stderr
    root = base / "demo"
    (root / ".tidecast").mkdir()
    shutil.copy(mlflow_template, root / ".tidecast" / "mlflow.db")  # a migrated store: saves seconds
    ran = tidecast("run", cwd=root)
    assert ran.returncode == 0, ran.stderr[-3000:] + ran.stdout[-3000:]
    assert "registry: demo v1 → champion" in ran.stdout, ran.stdout
    from tidecast.pipeline.runner import parallel_steps

    if parallel_steps() >= 2:  # track and explain ran side by side, and the run's output says so
        assert "track and explain ran side by side" in " ".join(ran.stdout.split()), ran.stdout[-2000:]
        assert "beside track" in ran.stderr and "beside explain" in ran.stderr, ran.stderr[-2000:]
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TIDECAST_ENV", "TIDECAST_ADMIN_TOKEN"):
            mp.delenv(var, raising=False)
        yield load_spec(root)


def _lock_output(spec: Spec, step: str) -> Path:
    from tidecast.pipeline.lock import LockFile

    record = LockFile(spec.root / "tidecast.lock").records[step]
    return spec.root / record.outputs


def report_info(spec: Spec) -> dict[str, Any]:
    return json.loads((_lock_output(spec, "report") / "artifacts" / "report.json").read_text())


def backfill(spec: Spec, *, days: int = 7) -> dict[str, Any]:
    """What serving would have logged: the champion's daily 24 h forecasts over the last ``days`` days
    and one beyond the data, plus the actuals."""
    import mlflow
    import numpy as np

    from tidecast.data.partitions import PartitionedFrame
    from tidecast.serving.store import store_for
    from tidecast.tracking.store import active_uris

    frame = PartitionedFrame(_lock_output(spec, "clean") / "output.parts").to_pandas([ID, TIME, TARGET, "temperature"])
    with active_uris(spec):
        model = mlflow.pyfunc.load_model(f"models:/{spec.model_name}@champion")
    card = model.unwrap_python_model().card
    window, horizon = int(card["input_window"]), int(card["horizon"])
    step = pd.Timedelta(hours=1)
    end = frame[TIME].max()
    db = store_for(spec)
    batches = []
    for day in range(days, -1, -1):
        origin = end - pd.Timedelta(days=day)
        history = frame[frame[TIME] <= origin].tail(window)
        future = frame[(frame[TIME] > origin) & (frame[TIME] <= origin + horizon * step)].copy()
        if future.empty:  # beyond the data: yesterday's temperatures as the weather forecast
            future = history.tail(horizon).copy()
            future[TIME] = future[TIME] + horizon * step
        future[TARGET] = np.nan
        forecast = model.predict(
            pd.concat([history, future], ignore_index=True), params={"horizon": horizon, "quantiles": [0.1, 0.9]}
        )
        batches.append(
            db.log_forecast(forecast, model_name=spec.model_name, model_version="1", alias="champion", source="test")
        )
    db.log_actuals(frame[frame[TIME] > end - pd.Timedelta(days=days)][[ID, TIME, TARGET]])
    return {"batches": batches, "end": end, "frame": frame}


# ------------------------------------------------------------------------------- the run report
def test_run_writes_a_self_contained_report_logged_to_mlflow(project: Spec) -> None:
    from mlflow import MlflowClient

    info = report_info(project)
    assert info["warnings"] == []
    assert info["sections"] == [
        "summary",
        "data",
        "leaderboard",
        "backtest",
        "horizon",
        "residuals",
        "coverage",
        "explain",
    ]
    html = Path(info["html"]).read_text(encoding="utf-8")
    assert external_resources(html) == []  # opens offline: plotly.js is inline
    for marker in (
        'data-chart="series-recent"',
        'data-chart="leaderboard"',
        'data-chart="backtest-folds"',
        'data-chart="error-by-step"',
        'data-chart="residuals"',
        'data-chart="coverage"',
        'data-chart="permutation-importance"',
        'data-chart="shap-summary"',
        'data-chart="shap-dependence"',
    ):
        assert marker in html, marker
    assert "SHAP: lightgbm" in html
    assert {
        "leaderboard.png",
        "error_by_step.png",
        "residuals.png",
        "coverage.png",
        "permutation_importance.png",
        "shap_summary_lightgbm.png",
        "cleaning.png",
    } <= set(info["plots"])
    uri = f"sqlite:///{project.state_dir / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    logged = {f.path for f in client.list_artifacts(info["run_id"], "report")}
    assert {"report/report.html", "report/plots"} <= logged
    pngs = {f.path for f in client.list_artifacts(info["run_id"], "report/plots")}
    assert "report/plots/shap_summary_lightgbm.png" in pngs
    assert client.get_run(info["run_id"]).data.tags["tidecast.report"] == "report/report.html"


def test_run_report_renders_every_chart_in_a_browser(project: Spec) -> None:
    need_browser()
    info = report_info(project)
    driver = browser()
    try:
        driver.get(Path(info["html"]).as_uri())
        deadline = time.monotonic() + 60
        while True:
            charts = driver.execute_script(CHART_STATE)
            if (len(charts) == info["charts"] and all(c["drawn"] for c in charts)) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(charts) == info["charts"] >= 15
        empty = [c for c in charts if not (c["drawn"] and c["traces"] and c["points"])]
        assert empty == []
        assert severe_console_errors(driver) == []
        errors = driver.execute_script("return document.querySelectorAll('[data-error]').length")
        assert errors == 0
        full_page_screenshot(driver, ARTIFACTS / "run-report.png")
    finally:
        driver.quit()


def test_permutation_importance_and_shap_are_logged_as_tables(project: Spec) -> None:
    info = report_info(project)
    folder = Path(info["folder"])
    perm = pd.read_csv(folder / "explain" / "permutation_importance.csv")
    assert set(perm["group"]) == {"lags", "calendar", "exogenous"}
    lightgbm = perm[perm["candidate"] == "lightgbm"].set_index("group")["importance"]
    assert lightgbm["lags"] > 0.05  # scrambling the history hurts a model built on lags
    naive = (
        perm[perm["candidate"] == "seasonal_naive"].set_index("group")["importance"]
        if "seasonal_naive" in set(perm["candidate"])
        else None
    )
    if naive is not None:
        assert abs(naive["calendar"]) < 1e-9 and abs(naive["exogenous"]) < 1e-9  # it ignores both
    shap = pd.read_csv(folder / "explain" / "shap_importance_lightgbm.csv")
    assert {"feature", "group", "mean_abs_shap"} <= set(shap.columns) and (shap["mean_abs_shap"] >= 0).all()
    assert shap["feature"].iloc[0].startswith("lag")


# ----------------------------------------------------------------------------- the client report
def test_report_without_predictions_says_so(project: Spec, capsys: pytest.CaptureFixture[str]) -> None:
    out = project.root / "empty.html"
    assert cli("report", "--spec", str(project.root), "--output", str(out)) == 0
    html = out.read_text(encoding="utf-8")
    assert "No forecasts of model &#x27;demo&#x27; are in the prediction store yet" in html
    assert "No drift checks yet" in html and "v1" in html


def test_unknown_model_or_alias_is_one_line_and_exit_2(project: Spec, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("report", "--spec", str(project.root), "--model", "nope") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no registered model named 'nope'" in err[0]
    assert cli("report", "--spec", str(project.root), "--alias", "gold") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no alias 'gold'" in err[0] and "champion → v1" in err[0]
    assert cli("report", "--spec", str(project.root), "--format", "docx") == 2


@pytest.fixture(scope="module")
def served(project: Spec) -> dict[str, Any]:
    return backfill(project)


def test_client_report_html_and_pdf(project: Spec, served: dict[str, Any]) -> None:
    html_path = project.root / "weekly.html"
    pdf_path = project.root / "weekly.pdf"
    assert (
        cli("report", "--spec", str(project.root), "--model", "demo", "--period", "7d", "--output", str(html_path)) == 0
    )
    assert cli("report", "--spec", str(project.root), "--format", "pdf", "--output", str(pdf_path)) == 0
    html = html_path.read_text(encoding="utf-8")
    for section in ("summary", "last-week", "accuracy", "misses", "drift", "model", "next-week"):
        assert f'id="{section}"' in html
    assert html.count('data-chart="forecast-vs-actual"') == 1 and 'data-chart="forecast-ahead"' in html
    assert 'data-chart="daily-error"' in html and "data-empty" in html  # the drift section says there are no checks
    assert "Largest misses" in html and "ratio to backtest" in html
    assert pdf_path.read_bytes().startswith(b"%PDF")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(pdf_path, ARTIFACTS / "client-report.pdf")
    shutil.copy(html_path, ARTIFACTS / "client-report.html")
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        need_browser()  # the CI set-up that installs chromium installs poppler-utils too
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    for old in ARTIFACTS.glob("client-report-*.png"):
        old.unlink()
    pages = subprocess.run(
        [pdftoppm, "-r", "40", "-png", str(pdf_path), str(ARTIFACTS / "client-report")],
        capture_output=True,
        timeout=120,
    )
    assert pages.returncode == 0, pages.stderr
    images = sorted(ARTIFACTS.glob("client-report-*.png"))
    assert len(images) >= 2  # summary and charts, then tables, the model and the forecast ahead
    import numpy as np
    from PIL import Image

    def chart_pixels(path: Path) -> int:
        """Pixels of the forecast's blues (line and interval): a drawn chart has hundreds, a page of text none."""
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
        return int(((rgb[..., 2] - rgb[..., 0] > 35) & (rgb[..., 2] > 150)).sum())

    assert chart_pixels(images[0]) > 1000  # the forecast against the actuals, on the first page
    assert chart_pixels(images[-1]) > 300  # the forecast ahead, on the last


# ---------------------------------------------------------------------------------- the dashboard
def test_dashboard_loads_has_data_and_refreshes(project: Spec, served: dict[str, Any]) -> None:
    need_browser()
    from tidecast.reporting.dashboard import DashboardServer, create_app
    from tidecast.serving.store import store_for

    server = DashboardServer(create_app(project, refresh=2.0), port=0).start()
    driver = browser()
    try:
        driver.get(server.url)

        def state() -> dict[str, Any]:
            return {
                "charts": {c["id"]: c for c in driver.execute_script(CHART_STATE)},
                "batch": driver.execute_script(
                    "const e = document.getElementById('updated-text'); return e ? e.dataset.batch : null"
                ),
            }

        def wait(condition: Any, seconds: float = 90) -> dict[str, Any]:
            deadline = time.monotonic() + seconds
            while True:
                now = state()
                if condition(now) or time.monotonic() > deadline:
                    return now
                time.sleep(0.3)

        first = wait(
            lambda s: s["batch"] == served["batches"][-1] and s["charts"].get("forecast-graph", {}).get("points")
        )
        assert first["batch"] == served["batches"][-1], (first, severe_console_errors(driver))
        for graph in ("forecast-graph", "accuracy-graph"):
            assert first["charts"][graph]["drawn"] and first["charts"][graph]["points"] > 0, graph
        # read in one script: the page re-renders these every refresh (a held element would go stale)
        text = driver.execute_script(
            "const t = id => (document.getElementById(id) || {}).innerText || '';"
            "return {serving: t('kpi-serving'), drift: t('kpi-drift'), registry: t('registry-table'), runs: t('runs-table')};"
        )
        assert "v1" in text["serving"] and "no checks" in text["drift"], text
        assert "champion" in text["registry"] and "promoted" in text["runs"], text
        assert severe_console_errors(driver) == []
        full_page_screenshot(driver, ARTIFACTS / "dashboard.png")

        # a new forecast is stored: the next refresh shows it
        latest = store_for(project).predictions(project.model_name)
        newest = latest[latest["batch_id"] == served["batches"][-1]][[ID, TIME, "yhat", "q0.1", "q0.9"]].copy()
        newest[TIME] = newest[TIME] + pd.Timedelta(hours=6)
        batch = store_for(project).log_forecast(
            newest, model_name=project.model_name, model_version="1", alias="champion"
        )
        expected_end = newest[TIME].max()

        def refreshed(s: dict[str, Any]) -> bool:  # the header and the chart re-render separately
            xmax = s["charts"].get("forecast-graph", {}).get("xmax")
            return s["batch"] == batch and xmax is not None and pd.Timestamp(xmax) == expected_end

        after = wait(refreshed)
        assert after["batch"] == batch, (after, severe_console_errors(driver))
        assert pd.Timestamp(after["charts"]["forecast-graph"]["xmax"]) == expected_end
        assert severe_console_errors(driver) == []
        full_page_screenshot(driver, ARTIFACTS / "dashboard-refreshed.png")
    finally:
        driver.quit()
        server.stop()


def test_dashboard_has_no_write_action_without_the_admin_token(project: Spec, monkeypatch: pytest.MonkeyPatch) -> None:
    from tidecast.reporting.dashboard import check_token

    monkeypatch.delenv("TIDECAST_ADMIN_TOKEN", raising=False)
    assert "disabled" in str(check_token(project, "anything"))
    monkeypatch.setenv("TIDECAST_ADMIN_TOKEN", "s3cret")
    assert "wrong or missing" in str(check_token(project, None))
    assert "wrong or missing" in str(check_token(project, "guess"))
    assert check_token(project, "s3cret") is None


# --------------------------------------------------------------------------------------- init
def test_the_scaffolded_projects_own_test_passes(project: Spec) -> None:
    """The project's ``tests/test_project.py`` (what ``make test`` runs there), called in this process:
    a pytest subprocess would cost seconds of imports for the same check."""
    import importlib.util

    file = project.root / "tests" / "test_project.py"
    module_spec = importlib.util.spec_from_file_location("scaffolded_test_project", file)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    tests = [getattr(module, name) for name in dir(module) if name.startswith("test_")]
    assert len(tests) == 2
    for test in tests:
        test()


def test_init_refuses_a_non_empty_folder_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    target = str(tmp_path / "taken")
    assert cli("init", target) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty" in err[0] and "--force" in err[0]
    assert not (tmp_path / "taken" / "tidecast.yaml").exists()
    assert cli("init", target, "--template", "minimal", "--force") == 0
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    assert load_spec(tmp_path / "taken").project == "taken"
    assert cli("init", str(tmp_path / "other"), "--template", "weather") == 2
    assert "unknown template 'weather'" in capsys.readouterr().err
