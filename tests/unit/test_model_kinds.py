"""Whether a kind fits per series, and what explain shows of it, are read from the model classes."""

from __future__ import annotations

import pytest

from tidecast.models.registry import BUILTINS, fits_per_series, kind_property

PER_SERIES = {"naive", "seasonal_naive", "window_average", "autoets", "autoarima", "autotheta", "mstl",
              "croston", "adida", "imapa", "tsb"}


@pytest.mark.parametrize("kind", sorted(BUILTINS))
def test_every_builtin_says_whether_it_fits_per_series(kind: str) -> None:
    assert isinstance(BUILTINS[kind].per_series, bool)  # type: ignore[attr-defined]
    assert fits_per_series(kind) is (kind in PER_SERIES)


def test_plugins_and_unknown_kinds_are_global_models() -> None:
    assert fits_per_series("my_pkg.models:build") is False
    assert fits_per_series("ensemble") is False


def test_explain_traits_come_from_the_classes() -> None:
    assert {k for k in BUILTINS if kind_property(k, "components")} == {"autoets", "autoarima", "autotheta", "mstl"}
    assert {k for k in BUILTINS if kind_property(k, "shap")} == {"lightgbm", "sklearn"}
    assert kind_property("pkg.mod:fn", "shap") is False


def test_the_libraries_of_each_kind_come_from_the_classes() -> None:
    assert kind_property("autoets", "libraries", ()) == ("statsforecast",)
    assert kind_property("croston", "libraries", ()) == ("statsforecast",)
    assert kind_property("seasonal_naive", "libraries", ()) == ()
    assert kind_property("lightgbm", "libraries", ()) == ("lightgbm", "mlforecast", "scikit-learn")
    assert kind_property("sklearn", "libraries", ()) == ("mlforecast", "scikit-learn")
    assert kind_property("mlp", "libraries", ()) == ("torch",)
    assert kind_property("pkg.mod:fn", "libraries", ()) == ()
