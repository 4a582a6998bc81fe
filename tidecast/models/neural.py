"""A multi-output MLP in torch (``kind: mlp``): the input window in, the whole horizon out.

Inputs of one sample (forecast origin ``t``, window ``W = ctx.input_window``, horizon
``H = ctx.horizon``):

* the last ``W`` readings, scaled by the window's own mean and standard deviation (so one
  network serves series of any level and scale; forecasts are scaled back the same way);
* the time features of ``ctx.features`` (calendar parts, Fourier terms, computed from ``ds`` by
  :func:`tidecast.data.features.add_time_features`, standardised with training statistics) at
  the first forecast step, plus their mean over the horizon (this summarises the horizon's
  calendar: with a fixed frequency the calendar of every step follows from the first one, and
  the mean carries holidays inside the horizon);
* the known-future exogenous columns for all ``H`` steps, standardised with training statistics
  (past-only exogenous columns are not used).

The network is ``hidden`` ReLU layers with dropout, plus a linear skip from the scaled window to
the outputs. Training samples are sliding windows over each series' history, every ``stride``
steps (default: the smallest stride giving at most ``max_samples`` samples), most recent origin
always included; the last ``val_fraction`` of each series' origins (chronologically) validates
for early stopping (stop after ``patience`` epochs without a relative improvement of
``min_delta``; the best weights are kept). Adam, ``loss`` ``huber`` (default), ``mse`` or
``mae`` on the scaled targets. Seeded with ``ctx.seed``: the same data and seed give the same
weights on the same machine and device.

``device``: ``cuda`` when available else ``cpu`` (override with the parameter); prediction runs
on the CPU. Pickles hold the weights as bytes and the configuration; the torch module is rebuilt
lazily after unpickling. No native intervals: use conformal quantiles.
"""

from __future__ import annotations

import importlib.util
import io
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view as swv

from tidecast.data.features import time_feature_columns
from tidecast.errors import ModelError
from tidecast.frames import ID, POINT, TARGET, TIME, future_grid, series_bounds, tail_per_series
from tidecast.models._frames import check_frame, check_quantiles, history_arrays, no_intervals
from tidecast.models._time import add_time
from tidecast.models.base import FitContext


def _torch(name: str) -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ModelError(f"candidate '{name}' needs torch: pip install 'tidecast[neural]'") from exc
    return torch


def _scale(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = windows.mean(axis=1)
    sd = windows.std(axis=1)
    sd = np.maximum(sd, np.maximum(1e-3 * np.abs(mu), 1e-8))
    return mu, sd


def _build_module(torch: Any, n_in: int, n_window: int, n_out: int, hidden: Sequence[int], dropout: float) -> Any:
    nn = torch.nn

    class _Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[Any] = []
            width = n_in
            for size in hidden:
                layers += [nn.Linear(width, int(size)), nn.ReLU()]
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
                width = int(size)
            layers.append(nn.Linear(width, n_out))
            self.mlp = nn.Sequential(*layers)
            self.skip = nn.Linear(n_window, n_out)

        def forward(self, x: Any) -> Any:
            return self.mlp(x) + self.skip(x[:, :n_window])

    return _Net()


class MLPForecaster:
    """Multi-output MLP over the scaled input window (see the module docstring)."""

    native_intervals: ClassVar[bool] = False
    kind: ClassVar[str] = "mlp"
    #: How long a backtest's fits take, and a forecast's recursion, relative to the other kinds (higher:
    #: longer; measured on examples/power): the order in which work runs side by side, longest first.
    fit_cost: ClassVar[int] = 7
    forecast_cost: ClassVar[int] = 1
    #: a global model: fit on all series at once
    per_series: ClassVar[bool] = False
    #: the libraries it computes with beside numpy and pandas (the step cache keys record their versions)
    libraries: ClassVar[tuple[str, ...]] = ("torch",)

    def __init__(
        self,
        *,
        name: str | None = None,
        fit_window: int | None = None,
        hidden: Sequence[int] = (256, 256),
        epochs: int = 50,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int = 5,
        dropout: float = 0.1,
        stride: int | None = None,
        max_samples: int = 20_000,
        val_fraction: float = 0.1,
        loss: str = "huber",
        min_delta: float = 1e-3,
        device: str | None = None,
    ) -> None:
        self.name = name or self.kind
        if importlib.util.find_spec("torch") is None:
            raise ModelError(f"candidate '{self.name}' needs torch: pip install 'tidecast[neural]'")
        self.fit_window = fit_window
        if isinstance(hidden, int):
            hidden = [hidden]
        self.hidden = [int(v) for v in hidden]
        self.epochs, self.batch_size, self.lr = int(epochs), int(batch_size), float(lr)
        self.weight_decay, self.patience, self.dropout = float(weight_decay), int(patience), float(dropout)
        self.stride, self.max_samples, self.val_fraction = stride, int(max_samples), float(val_fraction)
        self.loss, self.device, self.min_delta = loss, device, float(min_delta)
        checks = [
            (all(v >= 1 for v in self.hidden), "hidden must be positive layer sizes"),
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.lr > 0, "lr must be positive"),
            (self.patience >= 1, "patience must be at least 1"),
            (0 <= self.dropout < 1, "dropout must lie in [0, 1)"),
            (stride is None or int(stride) >= 1, "stride must be at least 1"),
            (self.max_samples >= 1, "max_samples must be at least 1"),
            (0 <= self.val_fraction < 1, "val_fraction must lie in [0, 1)"),
            (loss in ("huber", "mse", "mae"), "loss must be 'huber', 'mse' or 'mae'"),
            (self.min_delta >= 0, "min_delta must not be negative"),
            (device is None or str(device).split(":")[0] in ("cpu", "cuda", "mps"), "device must be cpu, cuda or mps"),
        ]
        for ok, message in checks:
            if not ok:
                raise ModelError(f"candidate '{self.name}': {message}")
        self._state: bytes | None = None
        self._module: Any = None
        self._config: dict[str, Any] = {}
        self._ctx: FitContext | None = None
        self._tail: pd.DataFrame | None = None
        self._exog: list[str] = []
        self._time: list[str] = []
        self._xm = np.zeros(0)
        self._xs = np.ones(0)
        self._tm = np.zeros(0)
        self._ts = np.ones(0)
        self.history_: dict[str, list[float]] = {}

    def get_params(self) -> dict[str, Any]:
        return {
            "hidden": list(self.hidden), "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
            "weight_decay": self.weight_decay, "patience": self.patience, "dropout": self.dropout,
            "stride": self.stride, "max_samples": self.max_samples, "val_fraction": self.val_fraction,
            "loss": self.loss, "min_delta": self.min_delta, "device": self.device, "fit_window": self.fit_window,
        }

    # -- pickling: weights as bytes, module rebuilt on demand -------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_module"] = None
        state.pop("_time_cache", None)  # a cache, rebuilt on demand
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- features ----------------------------------------------------------------------------------
    def _inputs(self, y_win: np.ndarray, t_first: np.ndarray, t_mean: np.ndarray, x_fut: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Network inputs for windows ``y_win`` (n, W); returns (inputs, mu, sd)."""
        mu, sd = _scale(y_win)
        parts = [(y_win - mu[:, None]) / sd[:, None]]
        if t_first.shape[1]:
            parts += [t_first, t_mean]
        if x_fut.shape[1]:
            parts.append(x_fut)
        return np.concatenate(parts, axis=1).astype(np.float32), mu, sd

    def _series_arrays(self, g: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = g[TARGET].to_numpy(float)
        T = ((g[self._time].to_numpy(float) - self._tm) / self._ts) if self._time else np.zeros((len(g), 0))
        X = ((g[self._exog].to_numpy(float) - self._xm) / self._xs) if self._exog else np.zeros((len(g), 0))
        return y, T, X

    # -- fit ---------------------------------------------------------------------------------------
    def fit(self, df: pd.DataFrame, ctx: FitContext) -> MLPForecaster:
        torch = _torch(self.name)
        W, H = int(ctx.input_window), int(ctx.horizon)
        data = check_frame(df, self.name)
        self._exog = [c for c in ctx.exog_future if c in data.columns]
        data = tail_per_series(data[[ID, TIME, TARGET, *self._exog]], self.fit_window)
        if data[TARGET].isna().any() or (self._exog and data[self._exog].isna().any().any()):
            raise ModelError(f"candidate '{self.name}': the training data has missing values")
        data, self._time = add_time(data, ctx.features, timezone=ctx.timezone, freq=ctx.freq, name=self.name)
        tv = data[self._time].to_numpy(float) if self._time else np.zeros((len(data), 0))
        self._tm, self._ts = tv.mean(axis=0), np.where(tv.std(axis=0) > 0, tv.std(axis=0), 1.0)
        if self._exog:
            xv = data[self._exog].to_numpy(float)
            self._xm, self._xs = xv.mean(axis=0), np.where(xv.std(axis=0) > 0, xv.std(axis=0), 1.0)
        else:
            self._xm, self._xs = np.zeros(0), np.ones(0)

        groups = [(str(uid), self._series_arrays(g)) for uid, g in data.groupby(ID, sort=False)]
        counts = {uid: max(0, len(y) - W - H + 1) for uid, (y, _, _) in groups}
        total = sum(counts.values())
        if total == 0:
            longest = max(len(y) for _, (y, _, _) in groups)
            raise ModelError(
                f"candidate '{self.name}': needs at least input window + horizon = {W + H} readings "
                f"of a series to train, the longest has {longest}"
            )
        stride = int(self.stride) if self.stride else max(1, math.ceil(total / self.max_samples))
        train_parts: list[tuple[np.ndarray, np.ndarray]] = []
        val_parts: list[tuple[np.ndarray, np.ndarray]] = []
        for _uid, (y, T, X) in groups:
            n = len(y)
            if n < W + H:
                continue
            origins = np.arange(n - H, W - 1, -stride)[::-1]  # index of the first forecast step
            n_val = round(len(origins) * self.val_fraction) if len(origins) >= 10 else 0
            xs, ys = self._samples(y, T, X, origins, W, H)
            cut = len(origins) - n_val
            train_parts.append((xs[:cut], ys[:cut]))
            if n_val:
                val_parts.append((xs[cut:], ys[cut:]))
        x_train = np.concatenate([p[0] for p in train_parts])
        y_train = np.concatenate([p[1] for p in train_parts])
        x_val = np.concatenate([p[0] for p in val_parts]) if val_parts else None
        y_val = np.concatenate([p[1] for p in val_parts]) if val_parts else None

        self._config = {"n_in": int(x_train.shape[1]), "n_window": W, "n_out": H,
                        "hidden": list(self.hidden), "dropout": self.dropout}
        self._ctx = ctx
        threads = torch.get_num_threads()
        if ctx.threads is not None:  # a parallel backtest's share of the cores (see tidecast.evaluation.backtest.fold_threads)
            torch.set_num_threads(max(1, int(ctx.threads)))
        try:
            self._train(torch, ctx.seed, x_train, y_train, x_val, y_val)
        finally:
            torch.set_num_threads(threads)
        self._tail = tail_per_series(data[[ID, TIME, TARGET]], W)
        return self

    def _samples(self, y: np.ndarray, T: np.ndarray, X: np.ndarray, origins: np.ndarray, W: int, H: int) -> tuple[np.ndarray, np.ndarray]:
        y_win = swv(y, W)[origins - W]
        targets = swv(y, H)[origins]
        if T.shape[1]:
            t_first = T[origins]
            csum = np.concatenate([np.zeros((1, T.shape[1])), np.cumsum(T, axis=0)])
            t_mean = (csum[origins + H] - csum[origins]) / H
        else:
            t_first = t_mean = np.zeros((len(origins), 0))
        # exogenous: (n, n_x * H), each column's H future values in turn
        x_fut = swv(X, H, axis=0)[origins].reshape(len(origins), -1) if X.shape[1] else np.zeros((len(origins), 0))
        inputs, mu, sd = self._inputs(y_win, t_first, t_mean, x_fut)
        return inputs, ((targets - mu[:, None]) / sd[:, None]).astype(np.float32)

    def _train(self, torch: Any, seed: int, x_train: np.ndarray, y_train: np.ndarray,
               x_val: np.ndarray | None, y_val: np.ndarray | None) -> None:
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"candidate '{self.name}': device '{device}' asked for, but torch sees no CUDA GPU")
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        module = _build_module(torch, **self._config).to(device)
        opt = torch.optim.Adam(module.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_fn = {"huber": torch.nn.HuberLoss(), "mse": torch.nn.MSELoss(), "mae": torch.nn.L1Loss()}[self.loss]
        xt = torch.from_numpy(x_train).to(device)
        yt = torch.from_numpy(y_train).to(device)
        xv = torch.from_numpy(x_val).to(device) if x_val is not None else None
        yv = torch.from_numpy(y_val).to(device) if y_val is not None else None
        best, best_state, bad = math.inf, None, 0
        self.history_ = {"train_loss": [], "val_loss": []}
        n = len(xt)
        for _epoch in range(self.epochs):
            module.train()
            perm = torch.randperm(n, generator=gen).to(device)
            # one gather per epoch, then contiguous batches: the same batches in the same order as
            # indexing each batch (identical weights), without a gather per step
            xs, ys = xt[perm], yt[perm]
            total = 0.0
            for start in range(0, n, self.batch_size):
                xb, yb = xs[start : start + self.batch_size], ys[start : start + self.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(module(xb), yb)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(xb)
            self.history_["train_loss"].append(total / n)
            module.eval()
            with torch.inference_mode():
                score = float(loss_fn(module(xv), yv)) if xv is not None else total / n
            self.history_["val_loss"].append(score)
            if score < best - self.min_delta * abs(best if math.isfinite(best) else score):
                best, bad = score, 0
                best_state = {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}
            else:
                bad += 1
                if bad >= self.patience:
                    break
        if best_state is None:  # pragma: no cover - non-finite losses
            best_state = {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}
        buf = io.BytesIO()
        torch.save(best_state, buf)
        self._state = buf.getvalue()
        self._module = None

    def _net(self) -> Any:
        torch = _torch(self.name)
        if self._module is None:
            module = _build_module(torch, **self._config)
            module.load_state_dict(torch.load(io.BytesIO(self._state), map_location="cpu", weights_only=True))
            module.eval()
            self._module = module
        return self._module

    # -- predict -----------------------------------------------------------------------------------
    def predict(
        self,
        h: int,
        *,
        history: pd.DataFrame | None = None,
        X_future: pd.DataFrame | None = None,
        quantiles: Sequence[float] = (),
    ) -> pd.DataFrame:
        if self._state is None or self._ctx is None or self._tail is None:
            raise ModelError(f"candidate '{self.name}': predict called before fit")
        no_intervals(self.name, check_quantiles(quantiles, self.name))
        ctx = self._ctx
        W, H = int(ctx.input_window), int(ctx.horizon)
        if h > H:
            raise ModelError(f"candidate '{self.name}': trained for a horizon of {H} steps, asked for {h}")
        # numpy from here on: a forecast is a few hundred microseconds of work around the network's pass
        ids, times, y_all = history_arrays(self._tail if history is None else history, self.name)
        starts, stops = series_bounds(ids)
        uids = [str(ids[i]) for i in starts]
        short = np.flatnonzero(stops - starts < W)
        if len(short):
            i = int(short[0])
            raise ModelError(
                f"candidate '{self.name}': needs at least {W} readings of history, got {int(stops[i] - starts[i])}"
                + (f" for series '{uids[i]}'" if len(uids) > 1 else "")
            )
        windows = np.stack([y_all[stop - W : stop] for stop in stops])
        holes = np.flatnonzero(np.isnan(windows).any(axis=1))
        if len(holes):
            raise ModelError(f"candidate '{self.name}': the history of series '{uids[int(holes[0])]}' has missing values")
        n = len(uids)
        fut = future_grid(times[stops - 1], H, ctx.freq)  # features need the whole trained horizon
        if self._time:
            T = self._time_inputs(times[stops - 1], H)  # (n, H, k), standardised
            t_first, t_mean = T[:, 0, :], T.mean(axis=1)
        else:
            t_first = t_mean = np.zeros((n, 0))
        if self._exog:
            X = (self._future_exog(uids, fut, X_future, h) - self._xm) / self._xs  # (n, H, e)
            x_fut = X.transpose(0, 2, 1).reshape(n, -1)  # like _flatten_like_train, series by series
        else:
            x_fut = np.zeros((n, 0))
        inputs, mu, sd = self._inputs(windows, t_first, t_mean, x_fut)
        torch = _torch(self.name)
        with torch.no_grad():
            out = self._net()(torch.from_numpy(inputs)).numpy().astype(float)
        out = out[:, :h] * sd[:, None] + mu[:, None]
        keep = (np.arange(H) < h)[None, :].repeat(n, axis=0).reshape(-1)
        return pd.DataFrame({ID: np.repeat(np.array(uids, dtype=object), h), TIME: fut[keep], POINT: out.reshape(-1)})

    def _time_inputs(self, ends: pd.DatetimeIndex, H: int) -> np.ndarray:
        """Standardised time features of the ``H`` steps after each of ``ends``: ``(n, H, k)``.

        Computed once per distinct end (many series usually end together) and kept for the next
        calls (serving forecasts from the same end until the next reading arrives)."""
        ctx = self._ctx
        assert ctx is not None
        cache: dict[int, np.ndarray] = self.__dict__.setdefault("_time_cache", {})
        ends = ends.as_unit("ns")
        keys = ends.asi8  # UTC instants
        todo = sorted({int(k) for k in keys if int(k) not in cache})
        if todo:
            fresh = pd.DatetimeIndex(np.array(todo, dtype=np.int64).view("datetime64[ns]"))
            if ends.tz is not None:
                fresh = fresh.tz_localize("UTC").tz_convert(ends.tz)
            fut = future_grid(fresh, H, ctx.freq)
            ds = fut.tz_convert("UTC").tz_localize(None) if fut.tz is not None else fut
            columns = time_feature_columns(ds, ctx.features, timezone=ctx.timezone, freq=ctx.freq)
            T = (np.column_stack([columns[c] for c in self._time]).astype(float) - self._tm) / self._ts
            if len(cache) + len(todo) > 1024:
                cache.clear()
            for key, block in zip(todo, T.reshape(len(todo), H, -1), strict=True):
                block.setflags(write=False)
                cache[key] = block
        return np.stack([cache[int(k)] for k in keys])

    def _future_exog(self, uids: list[str], fut: pd.DatetimeIndex, X_future: pd.DataFrame | None, h: int) -> np.ndarray:
        """The exogenous values at the ``H`` future steps of each series, ``(n, H, e)``; steps after
        ``h`` reuse the last given value (they only feed the network, which was trained on ``H``)."""
        if X_future is None:
            raise ModelError(
                f"candidate '{self.name}': X_future with column(s) {', '.join(self._exog)} is needed for the forecast horizon"
            )
        missing = [c for c in self._exog if c not in X_future.columns]
        if missing:
            raise ModelError(f"candidate '{self.name}': X_future lacks column(s) {', '.join(missing)}")
        n, e = len(uids), len(self._exog)
        H = len(fut) // max(n, 1)
        fut_ns = fut.asi8.reshape(n, H)
        column = X_future[TIME]
        stamps = column if pd.api.types.is_datetime64_any_dtype(column) else pd.to_datetime(column)
        xf_ns = pd.DatetimeIndex(stamps).as_unit("ns").asi8
        values = np.column_stack([X_future[c].to_numpy(float) for c in self._exog])
        xf_ids = X_future[ID].to_numpy()
        if xf_ids.dtype != object or pd.api.types.infer_dtype(xf_ids, skipna=False) != "string":
            xf_ids = X_future[ID].astype(str).to_numpy()
        # the usual request holds one series: a comparison instead of a hash table
        series = np.where(xf_ids == uids[0], 0, -1) if n == 1 else pd.Index(uids).get_indexer(xf_ids)
        grid = np.full((n, H, e), np.nan)
        rows = np.flatnonzero(series >= 0)
        rows = rows[np.argsort(series[rows], kind="stable")]
        for chunk in np.split(rows, np.flatnonzero(np.diff(series[rows])) + 1) if len(rows) else []:
            i = series[chunk[0]]
            pos = np.searchsorted(fut_ns[i], xf_ns[chunk])
            hit = pos < H
            hit[hit] = fut_ns[i, pos[hit]] == xf_ns[chunk[hit]]
            pos, chunk = pos[hit], chunk[hit]
            last = len(pos) - 1 - np.unique(pos[::-1], return_index=True)[1]  # duplicates: the last row wins
            grid[i, pos[last]] = values[chunk[last]]
        head = np.isnan(grid[:, :h]).any(axis=2)
        if head.any():
            i, k = np.argwhere(head)[0]
            raise ModelError(
                f"candidate '{self.name}': X_future has no value for {', '.join(self._exog)} at "
                f"{fut[i * H + k]} of series '{uids[i]}'"
            )
        filled = np.where(np.isnan(grid), 0, np.arange(H)[None, :, None])
        np.maximum.accumulate(filled, axis=1, out=filled)
        return np.take_along_axis(grid, filled, axis=1)


def _flatten_like_train(X: np.ndarray) -> np.ndarray:
    """(H, n_x) -> the layout of ``sliding_window_view(X, H, axis=0)[i].reshape(-1)`` in training."""
    return X.T.reshape(-1)
