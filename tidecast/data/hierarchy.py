"""Series that add up (``hierarchy:`` in the spec): the structure, its checks, and the aggregates.

The data's series are the *bottom* series (meters); each names its parent at every level in a
column (``feeder``, ``substation``), and a ``total`` node sums everything. Aggregate nodes are
series like any other, with the parent's name as their id (``F1``, ``S1``, ``total``), so node names
must be unique across levels.

* at ingest, :func:`ingest_hierarchy` checks the structure (every series has exactly one parent per
  level, levels nest: a feeder lies in one substation) and, when the data carries aggregate rows
  of its own (rows whose series id is a node name), that they equal the sum of their children
  within ``hierarchy.tolerance``; it returns the bottom series only;
* after cleaning, :func:`add_aggregates` builds every aggregate node from the clean bottom series
  with ``hierarchicalforecast.utils.aggregate`` (the target summed, numeric extra columns averaged),
  so the training data adds up exactly by construction.

>>> h = Hierarchy(levels=("feeder",), total="total", parents={"m1": ("F1",), "m2": ("F1",)})
>>> h.nodes
['total', 'F1', 'm1', 'm2']
>>> h.summing_matrix().astype(int).tolist()
[[1, 1], [1, 1], [1, 0], [0, 1]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from tidecast.data.long_format import to_long
from tidecast.errors import DataError, ModelError
from tidecast.frames import ID, TARGET, TIME

__all__ = ["Hierarchy", "add_aggregates", "aggregate_frame", "check_sums", "ingest_hierarchy"]

BOTTOM = "bottom"
"""The level name of the bottom series in :attr:`Hierarchy.tags` (the data's series)."""

_TOTAL_COLUMN = "__tidecast_total"


def _names(values: pd.Series) -> pd.Series:
    """Node names as strings (``None`` where missing); ``1`` and ``1.0`` both name node ``'1'``."""
    def one(value: Any) -> str | None:
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value is pd.NaT:
            return None
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        text = str(value).strip()
        return text or None

    return pd.Series([one(v) for v in values.to_numpy()], index=values.index, dtype=object)


@dataclass(frozen=True)
class Hierarchy:
    """The structure: ``levels`` (finest first, as in the spec), the ``total`` node's id, and each
    bottom series' parent at every level (``parents[series] = (feeder, substation)``)."""

    levels: tuple[str, ...]
    total: str
    parents: dict[str, tuple[str, ...]]
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_frame(cls, frame: pd.DataFrame, levels: Sequence[str], total: str) -> Hierarchy:
        """The structure of a long frame carrying the level columns (bottom rows, and aggregate rows
        whose id is a node name, which are skipped). Assumes :func:`ingest_hierarchy`'s checks passed."""
        levels = tuple(levels)
        missing = [c for c in levels if c not in frame.columns]
        if missing:
            raise DataError(f"hierarchy.levels: the data has no column(s) {', '.join(missing)}")
        first = frame.drop_duplicates(ID)
        named = {level: _names(first[level]) for level in levels}
        node_names = {total, *(n for s in named.values() for n in s.dropna())}
        ids = first[ID].astype(str)
        bottom = ~ids.isin(node_names).to_numpy()
        parents = {
            uid: tuple(str(named[level].iloc[i]) for level in levels)
            for i, uid in enumerate(ids)
            if bottom[i]
        }
        if not parents:
            raise DataError("hierarchy: no bottom series (every series id is the name of a node)")
        return cls(levels, total, dict(sorted(parents.items())))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (for the model card)."""
        return {"levels": list(self.levels), "total": self.total, "parents": {k: list(v) for k, v in self.parents.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hierarchy:
        return cls(tuple(data["levels"]), str(data["total"]), {k: tuple(v) for k, v in data["parents"].items()})

    def __getstate__(self) -> dict[str, Any]:  # pickles without the derived caches
        return {"levels": self.levels, "total": self.total, "parents": self.parents}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_cache", {})

    # -- derived -----------------------------------------------------------------------------
    @property
    def bottom(self) -> list[str]:
        return list(self.parents)

    @property
    def tags(self) -> dict[str, list[str]]:
        """Level name -> its nodes, top (``total``) to bottom, each sorted."""
        if "tags" not in self._cache:
            tags: dict[str, list[str]] = {"total": [self.total]}
            for i in range(len(self.levels) - 1, -1, -1):
                tags[self.levels[i]] = sorted({p[i] for p in self.parents.values()})
            tags[BOTTOM] = self.bottom
            self._cache["tags"] = tags
        return self._cache["tags"]

    @property
    def nodes(self) -> list[str]:
        """Every node, aggregates first (top down), bottom series last: the rows of :meth:`summing_matrix`."""
        return [n for level in self.tags.values() for n in level]

    @property
    def level_of(self) -> dict[str, str]:
        if "level_of" not in self._cache:
            self._cache["level_of"] = {n: level for level, names in self.tags.items() for n in names}
        return self._cache["level_of"]

    @property
    def aggregates(self) -> list[str]:
        return self.nodes[: len(self.nodes) - len(self.parents)]

    def ancestors(self, uid: str) -> tuple[str, ...]:
        """The nodes above bottom series ``uid``, finest first, ``total`` last."""
        return (*self.parents[uid], self.total)

    def node_levels(self, node: str) -> dict[str, str | None]:
        """The level columns of an aggregate node's rows: its own name at its level, its parents'
        above it, nothing below."""
        level = self.level_of[node]
        if level == "total":
            return dict.fromkeys(self.levels)
        at = self.levels.index(level)
        child = next(p for p in self.parents.values() if p[at] == node)
        return {name: (child[i] if i >= at else None) for i, name in enumerate(self.levels)}

    def summing_matrix(self) -> np.ndarray:
        """``S`` (nodes x bottom series): row ``i`` says which bottom series node ``i`` sums."""
        if "S" not in self._cache:
            row = {n: i for i, n in enumerate(self.nodes)}
            S = np.zeros((len(row), len(self.parents)), dtype=np.float64)
            for j, uid in enumerate(self.parents):
                S[row[uid], j] = 1.0
                for node in self.ancestors(uid):
                    S[row[node], j] = 1.0
            self._cache["S"] = S
        return self._cache["S"]

    # -- frames --------------------------------------------------------------------------------
    def bottom_rows(self, frame: pd.DataFrame, *, require_all: bool = True, what: str = "data") -> pd.DataFrame:
        """The rows of ``frame`` that belong to bottom series (aggregate rows dropped); with
        ``require_all``, a :class:`ModelError` names the bottom series that are absent."""
        ids = frame[ID].astype(str)
        rows = frame[ids.isin(set(self.parents)).to_numpy()]
        if require_all:
            absent = sorted(set(self.parents) - set(ids[ids.isin(set(self.parents))]))
            if absent:
                shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
                raise ModelError(
                    f"hierarchy: the {what} lacks {len(absent)} of the {len(self.parents)} bottom series ({shown}); "
                    "a reconciled model needs every bottom series (aggregates are summed from them)"
                )
        return rows

    def expand(self, frame: pd.DataFrame, *, what: str = "data") -> pd.DataFrame:
        """``frame``'s bottom series plus every aggregate node summed from them (a frame without
        ``y``, such as future exogenous rows, gets the mean of its numeric columns only)."""
        bottom = self.bottom_rows(frame, what=what)
        return pd.concat([bottom, aggregate_frame(bottom, self)], ignore_index=True).sort_values(
            [ID, TIME], kind="stable", ignore_index=True
        )


# ----------------------------------------------------------------------------------- aggregating
def aggregate_frame(bottom: pd.DataFrame, hierarchy: Hierarchy) -> pd.DataFrame:
    """The aggregate nodes' rows built from ``bottom`` (long format) with
    ``hierarchicalforecast.utils.aggregate``: ``y`` summed over the children present at each time,
    numeric extra columns averaged, level columns set (the node's own name and its parents'),
    other columns kept where every child agrees. The columns and dtypes are ``bottom``'s."""
    from hierarchicalforecast.utils import aggregate

    levels = list(hierarchy.levels)
    has_y = TARGET in bottom.columns
    extras = [c for c in bottom.columns if c not in (ID, TIME, TARGET, *levels)]
    numeric = [c for c in extras if pd.api.types.is_numeric_dtype(bottom[c]) and not pd.api.types.is_bool_dtype(bottom[c])]
    flags = [c for c in extras if pd.api.types.is_bool_dtype(bottom[c])]
    ids = bottom[ID].astype(str)
    work = pd.DataFrame({
        TIME: bottom[TIME].to_numpy(),
        TARGET: bottom[TARGET].to_numpy(dtype=float) if has_y else 0.0,
        _TOTAL_COLUMN: hierarchy.total,
    })
    for i, level in enumerate(levels):
        work[level] = ids.map(lambda u, i=i: hierarchy.parents[u][i]).to_numpy()
    for c in [*numeric, *flags]:
        work[c] = bottom[c].to_numpy(dtype=float)
    if has_y and work[TARGET].isna().any():
        work[TARGET] = work[TARGET].fillna(0.0)  # a missing reading adds nothing (cleaned data has none)
    spec = [[_TOTAL_COLUMN, *reversed(levels[i:])] for i in range(len(levels), -1, -1)]
    exog = {c: "mean" for c in [*numeric, *flags]}
    if exog and work[list(exog)].isna().any().any():
        work[list(exog)] = work[list(exog)].fillna(work.groupby(TIME)[list(exog)].transform("mean")).fillna(0.0)
    Y, _, _ = aggregate(work, spec, exog_vars=exog or None)
    Y = pd.DataFrame(Y)
    # aggregate ids are paths 'total/S1/F1': map each back to its node's own name
    path_of: dict[str, str] = {}
    for p in hierarchy.parents.values():
        for i in range(len(levels), -1, -1):
            path_of["/".join([hierarchy.total, *reversed(p[i:])])] = p[i] if i < len(levels) else hierarchy.total
    out = pd.DataFrame({ID: Y["unique_id"].map(path_of).to_numpy(), TIME: Y[TIME].to_numpy()})
    if out[ID].isna().any():  # pragma: no cover - aggregate() changed its id format
        raise DataError("hierarchy: hierarchicalforecast.utils.aggregate returned ids it does not document")
    if has_y:
        out[TARGET] = Y[TARGET].to_numpy(dtype=float)
    for c in numeric:
        values = Y[f"{c}_mean"].to_numpy(dtype=float)
        if pd.api.types.is_integer_dtype(bottom[c]) and np.allclose(values, np.round(values)):
            out[c] = np.round(values).astype(bottom[c].dtype)
        else:
            out[c] = values.astype(bottom[c].dtype if pd.api.types.is_float_dtype(bottom[c]) else float)
    for c in flags:
        out[c] = Y[f"{c}_mean"].to_numpy(dtype=float) >= 0.5
    level_values = {node: hierarchy.node_levels(node) for node in hierarchy.aggregates}
    for level in levels:
        out[level] = out[ID].map(lambda n, level=level: level_values[n][level])
    others = [c for c in extras if c not in numeric and c not in flags]
    if others:
        out = out.join(_shared_values(bottom, others, hierarchy), on=ID)
    out[ID] = out[ID].astype(bottom[ID].dtype if bottom[ID].dtype != "category" else object)
    out = out.sort_values([ID, TIME], kind="stable", ignore_index=True)
    return out[[c for c in bottom.columns if c in out.columns]]


def _shared_values(bottom: pd.DataFrame, columns: list[str], hierarchy: Hierarchy) -> pd.DataFrame:
    """For each aggregate node, the value of each (non-numeric) column its children all share, else None."""
    first = bottom.drop_duplicates(ID).assign(**{ID: lambda f: f[ID].astype(str)}).set_index(ID)[columns]
    rows = {}
    for node in hierarchy.aggregates:
        level = hierarchy.level_of[node]
        if level == "total":
            kids = list(first.index)
        else:
            at = hierarchy.levels.index(level)
            kids = [u for u, p in hierarchy.parents.items() if p[at] == node and u in first.index]
        part = first.loc[kids]
        rows[node] = {c: (part[c].iloc[0] if part[c].nunique(dropna=False) == 1 else None) for c in columns}
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis(ID)


def add_aggregates(frame: pd.DataFrame, levels: Sequence[str], total: str) -> pd.DataFrame:
    """The clean bottom series plus every aggregate node, summed from them (the clean step's output
    with a hierarchy). Aggregate rows already in ``frame`` are replaced."""
    hierarchy = Hierarchy.from_frame(frame, levels, total)
    bottom = hierarchy.bottom_rows(frame, require_all=False)
    return pd.concat([bottom, aggregate_frame(bottom, hierarchy)], ignore_index=True).sort_values(
        [ID, TIME], kind="stable", ignore_index=True
    )


# ---------------------------------------------------------------------------------------- ingest
def _fail(label: str, message: str) -> DataError:
    return DataError(f"{label}: hierarchy: {message}")


def _check_structure(raw: pd.DataFrame, series_column: str, levels: list[str], total: str, label: str) -> set[str]:
    """Check the level columns of the raw rows; returns every node name."""
    named = {level: _names(raw[level]) for level in levels}
    seen: dict[str, str] = {total: "total"}
    for level in levels:
        for name in pd.unique(named[level].dropna()):
            other = seen.setdefault(str(name), level)
            if other != level:
                raise _fail(
                    label,
                    f"'{name}' names both a {other} and a {level} node; node names must be unique across levels",
                )
    nodes = set(seen)
    ids = _names(raw[series_column])
    bottom = ~ids.isin(nodes).to_numpy() & ids.notna().to_numpy()
    if not bottom.any():
        raise _fail(label, "no bottom series: every series id is the name of a node")
    bottom_ids = ids[bottom]
    for level in levels:
        values = named[level][bottom]
        absent = values.isna().to_numpy()
        if absent.any():
            raise _fail(label, f"series '{bottom_ids[absent].iloc[0]}' has no {level} (column '{level}' is empty)")
        counts = values.groupby(bottom_ids.to_numpy()).nunique()
        several = counts[counts > 1]
        if len(several):
            uid = several.index[0]
            found = sorted(pd.unique(values[(bottom_ids == uid).to_numpy()]))
            raise _fail(label, f"series '{uid}' has several {level}s ({', '.join(found)}); a series has exactly one")
    for child, parent in pairwise(levels):
        pairs = pd.DataFrame({"c": named[child][bottom].to_numpy(), "p": named[parent][bottom].to_numpy(),
                              "u": bottom_ids.to_numpy()})
        counts = pairs.groupby("c")["p"].nunique()
        several = counts[counts > 1]
        if len(several):
            node = several.index[0]
            rows = pairs[pairs["c"] == node].drop_duplicates("p")
            said = ", ".join(f"series '{u}' says {p}" for u, p in zip(rows["u"], rows["p"], strict=True))
            raise _fail(label, f"{child} '{node}' lies in several {parent}s ({said}); the levels must nest")
    childless = sorted(nodes - {total} - {str(n) for level in levels for n in named[level][bottom].dropna()})
    if childless:
        raise _fail(label, f"node '{childless[0]}' has rows but no series under it")
    return nodes


def check_sums(bottom: pd.DataFrame, provided: pd.DataFrame, hierarchy: Hierarchy, tolerance: float, label: str) -> int:
    """Check the data's own aggregate rows (``provided``) against the sum of their children in
    ``bottom``, at the times every child has a reading; raises :class:`DataError` naming the level,
    the node, the first time it is off and both values ("levels do not add up"). Returns the number
    of values checked."""
    b = bottom.groupby([bottom[ID].astype(str), TIME])[TARGET].mean().dropna().reset_index()
    p = provided.groupby([provided[ID].astype(str), TIME])[TARGET].mean().dropna().reset_index()
    expected = []
    for i, level in enumerate([*hierarchy.levels, "total"]):
        node = b[ID].map(lambda u, i=i: hierarchy.ancestors(u)[i])
        sums = b.groupby([node.rename("node"), b[TIME]])[TARGET].agg(["sum", "count"]).reset_index()
        size = pd.Series(list(hierarchy.parents)).map(lambda u, i=i: hierarchy.ancestors(u)[i]).value_counts()
        sums = sums[sums["count"].to_numpy() == sums["node"].map(size).to_numpy()]
        expected.append(sums.assign(level=level))
    table = pd.concat(expected, ignore_index=True)
    joined = p.merge(table, left_on=[ID, TIME], right_on=["node", TIME], how="inner")
    if joined.empty:
        return 0
    off = np.abs(joined[TARGET] - joined["sum"]) > tolerance * np.abs(joined["sum"]) + 1e-9
    if off.any():
        bad = joined[off.to_numpy()].sort_values([TIME, "level"], kind="stable").iloc[0]
        children = int(bad["count"])
        raise _fail(
            label,
            f"levels do not add up: {bad['level']} '{bad[ID]}' at {bad[TIME]} is {bad[TARGET]:.6g} but its "
            f"{children} series sum to {bad['sum']:.6g} (tolerance {tolerance:g} relative; "
            f"{int(off.sum())} of {len(joined)} values off)",
        )
    return len(joined)


def ingest_hierarchy(raw: pd.DataFrame, data: Any, target: Any, hierarchy: Any, *, source_name: str) -> pd.DataFrame:
    """The ingest step with a hierarchy: check the level columns and the structure on the raw rows,
    bring them to the long format (the level columns carried along), check the data's own aggregate
    rows add up, and return the bottom series only (aggregates are rebuilt after cleaning)."""
    label = source_name
    levels = list(hierarchy.levels)
    raw = raw.reset_index(drop=True)
    raw.columns = [str(c).lstrip("\ufeff") for c in raw.columns]
    missing = [c for c in levels if c not in raw.columns]
    if missing:
        raise DataError(
            f"{label}: hierarchy.levels: no column '{missing[0]}' in the data (columns: {', '.join(map(str, raw.columns))})"
        )
    series_column = data.series_column
    if series_column in raw.columns:
        nodes = _check_structure(raw, series_column, levels, hierarchy.total, label)
    else:
        nodes = set()  # to_long reports the missing series column
    carried = data.model_copy(update={"static_columns": [*data.static_columns, *levels]})
    frame = to_long(raw, carried, target, source_name=source_name)
    for level in levels:
        frame[level] = _names(frame[level])
    ids = frame[ID].astype(str)
    is_node = ids.isin(nodes).to_numpy()
    bottom = frame[~is_node].reset_index(drop=True)
    structure = Hierarchy.from_frame(bottom, levels, hierarchy.total)
    if is_node.any():
        check_sums(bottom, frame[is_node], structure, hierarchy.tolerance, label)
    ends = bottom.groupby(ID, observed=True)[TIME].max()
    if ends.nunique() > 1:
        last = ends.max()
        early = ends[ends < last].sort_values(kind="stable")
        raise _fail(
            label,
            f"series '{early.index[0]}' ends at {early.iloc[0]}, the latest at {last}; every series of a hierarchy "
            f"must end at the same time ({len(early)} end earlier)",
        )
    return bottom
