"""Project templates for ``tidecast init``: a commented spec, a data sample, a plugin model, a Makefile,
a README and a test of the project's own.

>>> result = scaffold(Path("demo2"), template="power")          # doctest: +SKIP
>>> sorted(p.name for p in result.files)[:3]                     # doctest: +SKIP
['.gitignore', 'Makefile', 'README.md']

The data samples are generated (deterministically) rather than shipped, so the package stays small.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tidecast.datasets import make_power
from tidecast.errors import TidecastError

HERE = Path(__file__).resolve().parent
COMMON = HERE / "common"


def _power_sample() -> pd.DataFrame:
    return make_power(days=90, seed=11, freq="1h")


def _retail_sample(stores: int = 4, days: int = 730, seed: int = 5) -> pd.DataFrame:
    """Daily unit sales of a few stores: weekly pattern, yearly season, trend, promotions, US holidays closed."""
    import holidays

    rng = np.random.default_rng(seed)
    dates = pd.date_range("2023-01-01", periods=days, freq="D")
    closed = dates.isin(
        pd.DatetimeIndex([pd.Timestamp(d) for d in holidays.country_holidays("US", years=range(2023, 2026))])
    )
    weekday = np.array([0.85, 0.8, 0.85, 0.95, 1.2, 1.45, 1.1])[dates.weekday]
    yearly = 1 + 0.15 * np.sin(2 * np.pi * (dates.dayofyear.to_numpy() - 80) / 365.25)
    frames = []
    for k in range(stores):
        level = 120 + 60 * k
        trend = 1 + 0.0004 * np.arange(days) * (1 + k % 2)
        promo = (rng.random(days) < 0.08).astype(int)
        promo = np.maximum(promo, np.roll(promo, 1))  # promotions last two days
        mean = level * weekday * yearly * trend * (1 + 0.35 * promo) * np.where(closed, 0.35, 1.0)
        units = rng.poisson(mean).astype(float)
        frames.append(
            pd.DataFrame(
                {"date": dates.strftime("%Y-%m-%d"), "store": f"store_{k + 1}", "units": units, "promo": promo}
            )
        )
    return pd.concat(frames, ignore_index=True)


def _weekly_retail_sample(products: int = 4, weeks: int = 140, seed: int = 8) -> pd.DataFrame:
    """Weekly unit sales (weeks ending on Sunday) of a few products: a yearly season peaking before
    Christmas, a trend, and one slow seller that sells nothing most weeks."""
    rng = np.random.default_rng(seed)
    weeks_ = pd.date_range("2022-01-02", periods=weeks, freq="W-SUN")
    yearly = 1 + 0.3 * np.exp(-(((weeks_.isocalendar().week.to_numpy(dtype=np.int64) - 50) % 52) ** 2) / 18.0)
    frames = []
    for k in range(products):
        if k == products - 1:  # the slow seller: intermittent demand
            units = (rng.random(weeks) < 0.3) * rng.poisson(3, weeks)
        else:
            level = 200 + 150 * k
            units = rng.poisson(level * yearly * (1 + 0.002 * np.arange(weeks)))
        frames.append(pd.DataFrame({"week": weeks_.strftime("%Y-%m-%d"), "product": f"product_{k + 1}",
                                    "units": units.astype(float)}))
    return pd.concat(frames, ignore_index=True)


def _emissions_sample(years: int = 12, seed: int = 4) -> pd.DataFrame:
    """A site's monthly CO2 emissions (tonnes): heating in winter, a slow decline, noise; one month missing."""
    rng = np.random.default_rng(seed)
    months = pd.date_range("2012-01-01", periods=12 * years, freq="MS")
    season = 1 + 0.25 * np.cos(2 * np.pi * (months.month.to_numpy() - 1) / 12)
    tonnes = 1200 * season * (1 - 0.002 * np.arange(len(months))) + rng.normal(0, 25, len(months))
    frame = pd.DataFrame({"month": months.strftime("%b %Y"), "tonnes": tonnes.round(1)})
    return frame.drop(index=[70]).reset_index(drop=True)  # a month never reported: a gap the cleaning fills


def _minimal_sample(days: int = 60, seed: int = 2) -> pd.DataFrame:
    """One clean hourly series: a daily and a weekly cycle with noise."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2024-03-01", periods=days * 24, freq="h")
    hour, weekday = stamps.hour.to_numpy(), stamps.weekday.to_numpy()
    value = 100 + 25 * np.sin(2 * np.pi * (hour - 6) / 24) - 15 * (weekday >= 5) + rng.normal(0, 4, len(stamps))
    return pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": value.round(2)})


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    data_file: str
    data_note: str
    sample: Callable[[], pd.DataFrame]


TEMPLATES: dict[str, Template] = {
    "power": Template(
        "power",
        "Forecast a building's electricity demand (kW) for the next 24 hours from hourly meter readings and the "
        "temperature forecast.",
        "data/power.csv",
        "90 days of hourly readings of one customer (`timestamp` in local Paris time, `power_kw`, `temperature`), "
        "with the gaps, duplicates and spikes real meters produce",
        _power_sample,
    ),
    "retail": Template(
        "retail",
        "Forecast daily unit sales of each store two weeks ahead, with the planned promotions.",
        "data/sales.csv",
        "two years of daily sales of four stores (`date`, `store`, `units`, `promo`)",
        _retail_sample,
    ),
    "retail-weekly": Template(
        "retail-weekly",
        "Forecast weekly unit sales of each product eight weeks ahead.",
        "data/weekly_sales.csv",
        "140 weeks of sales of four products, one a slow seller (`week` ending on Sunday, `product`, `units`)",
        _weekly_retail_sample,
    ),
    "emissions-monthly": Template(
        "emissions-monthly",
        "Forecast a site's monthly CO2 emissions a year ahead.",
        "data/emissions.csv",
        "twelve years of monthly emissions of one site (`month` written 'Jan 2012', `tonnes`), one month missing",
        _emissions_sample,
    ),
    "minimal": Template(
        "minimal",
        "The smallest useful project: one hourly series, the next 24 hours.",
        "data/series.csv",
        "60 days of one hourly series (`timestamp` in UTC, `value`)",
        _minimal_sample,
    ),
}


@dataclass
class Scaffold:
    """What :func:`scaffold` wrote."""

    path: Path
    template: str
    project: str
    files: list[Path] = field(default_factory=list)


def project_name(folder: Path) -> str:
    """The project name for a folder: its name, checked against the spec's rule."""
    name = folder.resolve().name
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise TidecastError(
            f"'{name}' cannot name a project: use letters, digits, '-', '_' and '.' only (e.g. tidecast init my-project)"
        )
    return name


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def scaffold(target: str | Path, *, template: str = "power", force: bool = False) -> Scaffold:
    """Create a project folder from ``template``; ``cd target && tidecast run`` works at once.

    Refuses (:class:`TidecastError`) a folder that exists and is not empty unless ``force``; with
    ``force`` the template's files are written over whatever is there (other files are kept).
    """
    if template not in TEMPLATES:
        raise TidecastError(f"unknown template '{template}' (use one of: {', '.join(TEMPLATES)})")
    folder = Path(target)
    project = project_name(folder)
    if folder.exists() and not folder.is_dir():
        raise TidecastError(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise TidecastError(f"{folder} exists and is not empty: choose another name, or use --force to write into it")
    spec_ = TEMPLATES[template]
    values = {
        "project": project,
        "template": template,
        "description": spec_.description,
        "data_file": spec_.data_file,
        "data_note": spec_.data_note,
    }
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write_text(relative: str, text: str) -> None:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)

    write_text("tidecast.yaml", _fill((HERE / template / "tidecast.yaml").read_text(encoding="utf-8"), values))
    write_text("README.md", _fill((COMMON / "README.md").read_text(encoding="utf-8"), values))
    write_text("Makefile", _fill((COMMON / "Makefile").read_text(encoding="utf-8"), values))
    write_text(".gitignore", (COMMON / "gitignore").read_text(encoding="utf-8"))
    for relative in ("custom_models.py", "tests/test_project.py"):
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(COMMON / relative, path)
        written.append(path)
    data_path = folder / spec_.data_file
    data_path.parent.mkdir(parents=True, exist_ok=True)
    spec_.sample().to_csv(data_path, index=False)
    written.append(data_path)
    return Scaffold(path=folder, template=template, project=project, files=written)


__all__ = ["TEMPLATES", "Scaffold", "Template", "project_name", "scaffold"]
