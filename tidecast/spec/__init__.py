"""The models of ``tidecast.yaml``: the single source of truth for a project's configuration.

Load a spec with :func:`load_spec`; it resolves relative paths against the spec's folder,
applies an environment's overrides (``envs: {dev: ..., prod: ...}``) and turns every
validation problem into a :class:`~tidecast.errors.SpecError` that names the file, the line
and the field, with a "did you mean" for typos.

The sections by theme: :mod:`~tidecast.spec.data` (data, target, clean, features),
:mod:`~tidecast.spec.forecast` (forecast, backtest, models, selection, hierarchy),
:mod:`~tidecast.spec.ensemble` (ensemble candidates), :mod:`~tidecast.spec.operations`
(tracking, registry, executor, predictions, serving, monitoring, schedule), the root
:class:`Spec` in :mod:`~tidecast.spec.root`, and the YAML loader in :mod:`~tidecast.spec.loader`.
The package imports nothing of tidecast but leaves (errors, durations, calendar, cron).

>>> spec = load_spec("examples/power/tidecast.yaml")      # doctest: +SKIP
>>> spec.forecast_steps()                                   # doctest: +SKIP
(288, 288)
"""

from __future__ import annotations

from tidecast.spec.data import (
    CalendarPart,
    CleanSpec,
    DataSpec,
    ExogenousColumn,
    FeatureSpec,
    FourierSpec,
    GapSpec,
    OutlierSpec,
    ResampleSpec,
    RollingSpec,
    TargetSpec,
)
from tidecast.spec.forecast import (
    BacktestSpec,
    CandidateSpec,
    ForecastSpec,
    HierarchySpec,
    ParamValue,
    RangeParam,
    ReconcileMethod,
    SearchSpec,
    SelectionSpec,
)
from tidecast.spec.loader import SPEC_FILENAME, _LineLoader, find_spec, json_schema, load_spec, parse_spec
from tidecast.spec.operations import (
    DriftSpec,
    ExecutorSpec,
    GateSpec,
    ModelDriftSpec,
    MonitoringSpec,
    PredictionStoreSpec,
    RegistrySpec,
    ScheduleSpec,
    ServingSpec,
    TrackingSpec,
)
from tidecast.spec.root import Spec

__all__ = [
    "SPEC_FILENAME",
    "BacktestSpec",
    "CalendarPart",
    "CandidateSpec",
    "CleanSpec",
    "DataSpec",
    "DriftSpec",
    "ExecutorSpec",
    "ExogenousColumn",
    "FeatureSpec",
    "ForecastSpec",
    "FourierSpec",
    "GapSpec",
    "GateSpec",
    "HierarchySpec",
    "ModelDriftSpec",
    "MonitoringSpec",
    "OutlierSpec",
    "ParamValue",
    "PredictionStoreSpec",
    "RangeParam",
    "ReconcileMethod",
    "RegistrySpec",
    "ResampleSpec",
    "RollingSpec",
    "ScheduleSpec",
    "SearchSpec",
    "SelectionSpec",
    "ServingSpec",
    "Spec",
    "TargetSpec",
    "TrackingSpec",
    "_LineLoader",
    "find_spec",
    "json_schema",
    "load_spec",
    "parse_spec",
]
