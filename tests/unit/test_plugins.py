"""Plugins: import paths, the worked example in examples/plugins, and their errors."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tidecast.errors import ModelError, PluginError
from tidecast.models import build_forecaster, load_object, needs_conformal
from tidecast.models.base import FitContext, Forecaster
from tidecast.models.regressors import SklearnModel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plugins"


def hourly(n: int = 24 * 10) -> pd.DataFrame:
    t = np.arange(n)
    frames = [
        pd.DataFrame({"unique_id": uid, "ds": pd.date_range("2024-05-01", periods=n, freq="h"),
                      "y": 10 * (i + 1) + 3 * np.sin(2 * np.pi * t / 24) + np.random.default_rng(i).normal(0, 0.3, n)})
        for i, uid in enumerate(("A", "B"))
    ]
    return pd.concat(frames, ignore_index=True)


CTX = FitContext(freq="h", horizon=24, input_window=48)


@pytest.fixture
def plugin_dir(tmp_path: Path):
    """A project folder with a plugin module; sys.path/sys.modules restored afterwards."""
    saved = list(sys.path)
    yield tmp_path
    sys.path[:] = saved
    for name in [m for m in sys.modules if m.startswith(("my_models", "bad_plugin", "plug_"))]:
        del sys.modules[name]


def test_example_forecaster_plugin(plugin_dir: Path) -> None:
    model = build_forecaster("median", "my_models:build", {"season_length": "1d", "seasons": 3},
                             freq="h", search_path=EXAMPLES)
    assert isinstance(model, Forecaster) and model.name == "median"
    assert model.get_params() == {"season_length": 24, "seasons": 3}
    assert not needs_conformal(model)
    df = hourly()
    fc = model.fit(df, CTX).predict(24, quantiles=(0.1, 0.9))
    assert list(fc.columns) == ["unique_id", "ds", "yhat", "q0.1", "q0.9"]
    assert len(fc) == 48 and (fc["q0.1"] <= fc["q0.9"]).all()
    recent = df.groupby("unique_id").head(24 * 5)
    fh = model.predict(24, history=recent)
    assert (fh.groupby("unique_id")["ds"].min() == pd.Timestamp("2024-05-06 00:00")).all()
    again = pickle.loads(pickle.dumps(model))
    pd.testing.assert_frame_equal(again.predict(24), model.predict(24))


def test_example_regressor_plugin(plugin_dir: Path) -> None:
    model = build_forecaster("ridge", "my_models:ridge", {"alpha": 0.5, "lags": [1, 2, "1d"]},
                             freq="h", search_path=EXAMPLES)
    assert isinstance(model, SklearnModel) and model.lags == [1, 2, 24]
    assert needs_conformal(model)
    fc = model.fit(hourly(), CTX).predict(24)
    assert len(fc) == 48 and fc["yhat"].notna().all()
    assert model.get_params()["alpha"] == 0.5


def test_fit_window_wraps_plugin_forecasters(plugin_dir: Path) -> None:
    model = build_forecaster("median", "my_models:build", {"season_length": 24}, freq="h",
                             search_path=EXAMPLES, fit_window="2d")
    assert model.get_params()["fit_window"] == 48
    assert len(model.fit(hourly(), CTX).predict(5)) == 10


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_such_module_xyz:build", "module 'no_such_module_xyz' not found"),
        ("my_models:biuld", "'my_models' has no attribute 'biuld' \\(did you mean 'build'\\?\\)"),
        ("my_models:SeasonalMedian.nope", "'my_models:SeasonalMedian' has no attribute 'nope'"),
        ("my_models:__doc__", "str object is not callable"),
        ("my_models", "not an import path"),
        ("my models:build", "not an import path"),
    ],
)
def test_load_object_errors(plugin_dir: Path, path: str, message: str) -> None:
    sys.path.insert(0, str(EXAMPLES))
    with pytest.raises(PluginError, match=message) as info:
        load_object(path, what="candidate 'c': kind")
    assert path in str(info.value)


def test_plugin_failing_on_import(plugin_dir: Path) -> None:
    (plugin_dir / "bad_plugin.py").write_text("import not_installed_pkg_q\n")
    (plugin_dir / "plug_raises.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PluginError, match="needs module 'not_installed_pkg_q', which is not installed"):
        build_forecaster("c", "bad_plugin:build", {}, freq="h", search_path=plugin_dir)
    with pytest.raises(PluginError, match="importing module 'plug_raises' failed: RuntimeError: boom"):
        build_forecaster("c", "plug_raises:build", {}, freq="h", search_path=plugin_dir)


def test_plugin_returning_junk_or_rejecting_params(plugin_dir: Path) -> None:
    (plugin_dir / "plug_junk.py").write_text("def build(**params):\n    return 42\n")
    with pytest.raises(PluginError, match="returned int, which is neither a forecaster"):
        build_forecaster("c", "plug_junk:build", {}, freq="h", search_path=plugin_dir)
    with pytest.raises(PluginError, match="calling 'my_models:build' with parameters \\['colour'\\] failed"):
        build_forecaster("c", "my_models:build", {"colour": 1}, freq="h", search_path=EXAMPLES)
    with pytest.raises(PluginError, match="are for regressors"):
        build_forecaster("c", "my_models:build", {"lags": [1]}, freq="h", search_path=EXAMPLES)
    assert issubclass(PluginError, ModelError)


def test_plugin_breaking_the_output_contract(plugin_dir: Path) -> None:
    (plugin_dir / "plug_bad_output.py").write_text(
        "import pandas as pd\n"
        "class M:\n"
        "    name = 'm'\n"
        "    def fit(self, df, ctx):\n        return self\n"
        "    def predict(self, h, *, history=None, X_future=None, quantiles=()):\n"
        "        return pd.DataFrame({'unique_id': ['A'], 'ds': [pd.Timestamp('2024-01-01')], 'forecast': [1.0]})\n"
        "def build():\n    return M()\n"
    )
    model = build_forecaster("c", "plug_bad_output:build", {}, freq="h", search_path=plugin_dir)
    assert model.get_params() == {}
    model.fit(hourly(), CTX)
    with pytest.raises(PluginError, match="lacks column\\(s\\) yhat"):
        model.predict(3)
