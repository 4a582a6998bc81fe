"""``tidecast init NAME --data FILE_OR_URL``: read the data, profile it, plan the project and write it.

:func:`prepare` does everything but writing (the command shows the profile and the plan first);
:func:`write` then builds the project folder atomically (:func:`tidecast.templates.from_data.write_project`).
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tidecast.data.profile import Profile, profile_frame
from tidecast.data.sources import read_source, source_label
from tidecast.errors import DataError, TidecastError
from tidecast.spec import DataSpec
from tidecast.templates import project_name
from tidecast.templates.from_data import Plan, plan, render, write_project

URL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Prepared:
    """A project planned from data, not yet written."""

    name: Path
    """The project folder to create."""
    label: str
    """The data as messages name it."""
    profile: Profile
    plan: Plan
    text: str
    """The tidecast.yaml to write."""
    local: Path | None
    """The local data file or folder to copy into the project (None: a URL, read from where it is)."""
    spec_source: str
    """``data.source`` in the spec."""


def check_url(url: str) -> None:
    """An http(s) URL must answer within a few seconds (fsspec would wait minutes, then say 'no such file')."""
    if not url.lower().startswith(("http://", "https://")):
        return
    for method in ("HEAD", "GET"):  # a server may refuse HEAD (405, or 403 on a signed URL) yet serve GET
        request = urllib.request.Request(url, method=method, headers={"User-Agent": "tidecast-init"})
        try:
            with urllib.request.urlopen(request, timeout=URL_TIMEOUT_S):
                return
        except urllib.error.HTTPError as exc:
            if method == "GET":
                raise DataError(f"{source_label(url)}: the server answers HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DataError(f"{source_label(url)}: does not answer ({reason})") from None


def format_of(source: str) -> str:
    """``parquet``, ``json`` or ``csv``: the format the source's name (or a folder: Parquet) says."""
    name = source.split("?", 1)[0].lower()
    for suffix in (".gz", ".bz2", ".xz", ".zip", ".zst"):
        name = name.removesuffix(suffix)
    if name.endswith((".parquet", ".pq", ".parq")) or Path(name).is_dir():
        return "parquet"
    return "json" if name.endswith((".json", ".jsonl", ".ndjson")) else "csv"


def prepare(
    name: Path,
    data: str,
    *,
    time: str | None = None,
    target: str | None = None,
    series: str | None = None,
    horizon: str | None = None,
    frequency: str | None = None,
    force: bool = False,
) -> Prepared:
    """Read ``data`` (a file, a folder of Parquet files or a URL), profile it (``time``, ``target``,
    ``series`` and ``frequency`` override what is inferred) and plan a project named after ``name``."""
    project = project_name(name)
    if name.is_dir() and any(name.iterdir()) and not force:
        raise TidecastError(f"{name} exists and is not empty: choose another name, or use --force to write into it")
    is_url = "://" in data
    source = data if is_url else str(Path(data).expanduser().resolve())
    if is_url:
        check_url(source)
    label = source_label(source)
    raw = read_source(DataSpec(source=source, frequency="h"))
    profile = profile_frame(
        raw, time=time, target=target, series=series, frequency=frequency, label=label, data_format=format_of(source)
    )
    chosen = plan(profile, horizon=horizon, label=label)
    local = None if is_url else Path(source)
    spec_source = source if local is None else f"data/{local.name}"
    origin = source if local is None else f"{local}"
    text = render(profile, chosen, project=project, source=spec_source, origin=origin)
    return Prepared(name, label, profile, chosen, text, local, spec_source)


def write(prepared: Prepared, *, force: bool = False) -> Path:
    """Write the project: tidecast.yaml, a .gitignore and a copy of local data under data/. Returns its folder."""
    local, spec_source = prepared.local, prepared.spec_source

    def files(tmp: Path) -> None:
        if local is not None:
            (tmp / "data").mkdir()
            if local.is_dir():
                shutil.copytree(local, tmp / spec_source)
            else:
                shutil.copyfile(local, tmp / spec_source)
        (tmp / "tidecast.yaml").write_text(prepared.text, encoding="utf-8")
        (tmp / ".gitignore").write_text(".tidecast/\ntidecast.lock\n__pycache__/\n", encoding="utf-8")

    return write_project(prepared.name, files, force=force)
