"""The prediction store: every served or batch forecast, and the actuals when they arrive.

SQLite under the project's ``.tidecast/`` by default; any SQLAlchemy URL (Postgres...) through
``predictions.url`` in the spec. Monitoring joins the two tables to measure live accuracy;
reports and the dashboard read them.

>>> store = PredictionStore("sqlite://")                                  # doctest: +SKIP
>>> store.log_forecast(forecast, model_name="power", model_version="3", source="serve")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tidecast.errors import DataError, TrackingError
from tidecast.frames import ID, POINT, TARGET, TIME, quantile_of

_metadata = sa.MetaData()

predictions_table = sa.Table(
    "predictions",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.String(36), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime, nullable=False, index=True),
    sa.Column("model_name", sa.String(200), nullable=False, index=True),
    sa.Column("model_version", sa.String(40), nullable=False),
    sa.Column("alias", sa.String(60)),
    sa.Column("source", sa.String(40), nullable=False),
    sa.Column("unique_id", sa.String(200), nullable=False, index=True),
    sa.Column("ds", sa.DateTime, nullable=False, index=True),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("yhat", sa.Float, nullable=False),
    sa.Column("quantiles", sa.Text),  # JSON {"q0.1": value, ...}
)

actuals_table = sa.Table(
    "actuals",
    _metadata,
    sa.Column("unique_id", sa.String(200), primary_key=True),
    sa.Column("ds", sa.DateTime, primary_key=True),
    sa.Column("y", sa.Float, nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
)


_COLUMNS = (
    "batch_id", "created_at", "model_name", "model_version", "alias", "source", "unique_id", "ds", "step", "yhat",
    "quantiles",
)
_SQLITE_INSERT = f"INSERT INTO predictions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's storage format for DateTime on SQLite


def _quantile_json(values: np.ndarray, names: list[str]) -> list[str]:
    """One JSON object ``{"q0.1": v, ...}`` per row (what ``json.dumps`` writes, built faster)."""
    if not np.isfinite(values).all():
        return [json.dumps({c: float(v) for c, v in zip(names, row, strict=True)}) for row in values.tolist()]
    keys = [json.dumps(c) + ": " for c in names]
    return ["{" + ", ".join(k + repr(v) for k, v in zip(keys, row, strict=True)) + "}" for row in values.tolist()]


def default_url(state_dir: Path) -> str:
    """``sqlite:///<state_dir>/predictions.db``."""
    return f"sqlite:///{(Path(state_dir) / 'predictions.db').resolve()}"


def store_for(spec: Any) -> PredictionStore:
    """The prediction store a spec points at (``predictions.url`` or the embedded SQLite)."""
    url = spec.predictions.url or default_url(spec.state_dir)
    return PredictionStore(url)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Write-ahead log and ``synchronous=NORMAL`` on a SQLite file: a commit appends to the log without
    an fsync (a power cut can lose the last commits, never corrupt the file), and the monitor's reads
    do not block the server's writes. Both are SQLite's recommended settings for this kind of log."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


class PredictionStore:
    """Append-only forecasts and upserted actuals in two SQL tables (created on first use)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            connect_args = {"timeout": 30} if url.startswith("sqlite") else {}
            self.engine = sa.create_engine(url, connect_args=connect_args, future=True)
            if url.startswith("sqlite:///") and ":memory:" not in url:
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            _metadata.create_all(self.engine)
        except sa.exc.SQLAlchemyError as exc:
            raise TrackingError(f"prediction store {url}: cannot open: {str(exc).splitlines()[0]}") from None

    # -- writing ---------------------------------------------------------------------------------
    def log_forecast(
        self,
        forecast: pd.DataFrame,
        *,
        model_name: str,
        model_version: str,
        alias: str | None = None,
        source: str = "predict",
        batch_id: str | None = None,
    ) -> str:
        """Append a forecast frame (``unique_id, ds, yhat`` + ``q…`` columns); returns its batch id."""
        batch = batch_id or str(uuid.uuid4())
        self.log_forecasts([(forecast, model_name, str(model_version), alias, source, batch)])
        return batch

    def log_forecasts(self, items: list[tuple[pd.DataFrame, str, str, str | None, str, str]]) -> None:
        """Append several forecasts in one transaction: ``(frame, model_name, model_version, alias, source,
        batch_id)`` each (the serving log's writer, which takes a backlog at once)."""
        sqlite = self.engine.dialect.name == "sqlite"
        rows: list[Any] = []
        for frame, *meta in items:
            rows += self._rows(frame, tuple(meta), sqlite=sqlite)
        if not rows:
            return
        with self.engine.begin() as conn:
            if sqlite:
                # one executemany through the driver: SQLAlchemy's per-row parameter processing costs more
                # than the insert itself
                conn.exec_driver_sql(_SQLITE_INSERT, rows)
            else:
                conn.execute(predictions_table.insert(), rows)

    @staticmethod
    def _rows(forecast: pd.DataFrame, meta: tuple[Any, ...], *, sqlite: bool) -> list[Any]:
        """The table rows of one forecast: tuples for SQLite's driver (timestamps as the text SQLAlchemy's
        SQLite DateTime stores and compares), dicts for SQLAlchemy otherwise."""
        missing = [c for c in (TIME, POINT) if c not in forecast.columns]
        if missing:
            raise DataError(f"prediction store: the forecast lacks column(s) {', '.join(missing)}")
        model_name, model_version, alias, source, batch = meta
        frame = forecast.copy()
        if ID not in frame:
            frame[ID] = "series"
        frame = frame.sort_values([ID, TIME], kind="stable")
        qcols = [c for c in frame.columns if quantile_of(c) is not None]
        created = _now()
        ids = frame[ID].astype(str).tolist()
        steps = (frame.groupby(ID, sort=False).cumcount() + 1).tolist()
        yhat = frame[POINT].astype(float).tolist()
        quantiles = _quantile_json(frame[qcols].to_numpy(float), qcols) if qcols else [None] * len(frame)
        stamps = pd.DatetimeIndex(frame[TIME])
        if stamps.tz is not None:
            stamps = stamps.tz_convert("UTC").tz_localize(None)
        if sqlite:
            text = np.datetime_as_string(stamps.to_numpy().astype("datetime64[us]"), unit="us")
            ds = np.char.replace(text, "T", " ").tolist()
            head = (batch, created.strftime(_SQLITE_TIME), model_name, str(model_version), alias, source)
            return [(*head, *row) for row in zip(ids, ds, steps, yhat, quantiles, strict=True)]
        head = (batch, created, model_name, str(model_version), alias, source)
        return [
            dict(zip(_COLUMNS, (*head, *row), strict=True))
            for row in zip(ids, stamps.to_pydatetime().tolist(), steps, yhat, quantiles, strict=True)
        ]

    def log_actuals(self, actuals: pd.DataFrame) -> int:
        """Insert or update observed values (``unique_id``, ``ds``, ``y``); returns the row count."""
        frame = actuals.copy()
        if ID not in frame:
            frame[ID] = "series"
        frame = frame.dropna(subset=[TARGET])
        if not np.isfinite(frame[TARGET].to_numpy(float)).all():
            raise DataError("prediction store: actuals hold infinite values")
        received = _now()
        rows = [
            {"unique_id": str(u), "ds": pd.Timestamp(d).to_pydatetime(), "y": float(y), "received_at": received}
            for u, d, y in zip(frame[ID], frame[TIME], frame[TARGET], strict=True)
        ]
        if not rows:
            return 0
        with self.engine.begin() as conn:
            keys = {(r["unique_id"], r["ds"]) for r in rows}
            existing = set()
            for uid in {k[0] for k in keys}:
                found = conn.execute(
                    sa.select(actuals_table.c.ds).where(
                        actuals_table.c.unique_id == uid,
                        actuals_table.c.ds.in_([k[1] for k in keys if k[0] == uid]),
                    )
                )
                existing.update((uid, d) for (d,) in found)
            new = [r for r in rows if (r["unique_id"], r["ds"]) not in existing]
            old = [r for r in rows if (r["unique_id"], r["ds"]) in existing]
            if new:
                conn.execute(actuals_table.insert(), new)
            for r in old:
                conn.execute(
                    actuals_table.update()
                    .where(actuals_table.c.unique_id == r["unique_id"], actuals_table.c.ds == r["ds"])
                    .values(y=r["y"], received_at=r["received_at"])
                )
        return len(rows)

    # -- reading ---------------------------------------------------------------------------------
    def predictions(
        self,
        model_name: str | None = None,
        *,
        since: Any = None,
        until: Any = None,
        version: str | None = None,
        latest_only: bool = False,
    ) -> pd.DataFrame:
        """Logged forecasts (``ds`` between ``since`` and ``until``), quantiles expanded to columns.

        ``latest_only`` keeps, for each (series, timestamp), the most recently made forecast.
        """
        t = predictions_table
        query = sa.select(t)
        if model_name is not None:
            query = query.where(t.c.model_name == model_name)
        if version is not None:
            query = query.where(t.c.model_version == str(version))
        if since is not None:
            query = query.where(t.c.ds >= pd.Timestamp(since).to_pydatetime())
        if until is not None:
            query = query.where(t.c.ds <= pd.Timestamp(until).to_pydatetime())
        with self.engine.connect() as conn:
            frame = pd.read_sql(query.order_by(t.c.id), conn)
        if frame.empty:
            return frame
        frame[TIME] = pd.to_datetime(frame[TIME])
        frame["created_at"] = pd.to_datetime(frame["created_at"])
        if frame["quantiles"].notna().any():
            expanded = pd.DataFrame([json.loads(q) if q else {} for q in frame["quantiles"]], index=frame.index)
            frame = pd.concat([frame.drop(columns=["quantiles"]), expanded], axis=1)
        else:
            frame = frame.drop(columns=["quantiles"])
        if latest_only:
            frame = frame.sort_values("id").drop_duplicates([ID, TIME], keep="last")
        return frame.reset_index(drop=True)

    def actuals(self, *, since: Any = None, until: Any = None, unique_ids: list[str] | None = None) -> pd.DataFrame:
        """Observed values as ``unique_id, ds, y``."""
        t = actuals_table
        query = sa.select(t.c.unique_id, t.c.ds, t.c.y)
        if since is not None:
            query = query.where(t.c.ds >= pd.Timestamp(since).to_pydatetime())
        if until is not None:
            query = query.where(t.c.ds <= pd.Timestamp(until).to_pydatetime())
        if unique_ids:
            query = query.where(t.c.unique_id.in_([str(u) for u in unique_ids]))
        with self.engine.connect() as conn:
            frame = pd.read_sql(query.order_by(t.c.unique_id, t.c.ds), conn)
        frame[TIME] = pd.to_datetime(frame[TIME])
        return frame

    def joined(self, model_name: str | None = None, *, since: Any = None, until: Any = None) -> pd.DataFrame:
        """The latest forecast of each (series, timestamp) next to its actual, where one arrived."""
        preds = self.predictions(model_name, since=since, until=until, latest_only=True)
        if preds.empty:
            return preds
        acts = self.actuals(since=since, until=until)
        return preds.merge(acts, on=[ID, TIME], how="inner").sort_values([ID, TIME]).reset_index(drop=True)
