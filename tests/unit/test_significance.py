"""The Diebold-Mariano test (HLN correction) against hand-computed values and references."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tidecast.errors import BacktestError
from tidecast.evaluation.significance import compare, diebold_mariano, loss_series, pointwise_loss


def test_h1_by_hand() -> None:
    # d = [-1, -0.5, 0.5, -1, -1]: mean -0.6, gamma0 = 1.7 / 5 = 0.34,
    # DM = -0.6 / sqrt(0.34 / 5) = -2.30089, HLN factor sqrt((5 + 1 - 2) / 5) = sqrt(0.8)
    r = diebold_mariano([1.0, 2.0, 1.5, 0.5, 1.0], [2.0, 2.5, 1.0, 1.5, 2.0], h=1)
    assert r.dm_uncorrected == pytest.approx(-0.6 / math.sqrt(0.34 / 5), rel=1e-12)
    assert r.statistic == pytest.approx(-2.300894966542111 * math.sqrt(0.8), rel=1e-12)
    assert r.p_value == pytest.approx(stats.t(4).cdf(-2.0579830217101054), rel=1e-12)
    assert r.mean_difference == pytest.approx(-0.6)


def test_h1_equals_one_sample_t_test() -> None:
    # with h = 1 the HLN-corrected DM is exactly the one-sample t statistic of d
    rng = np.random.default_rng(3)
    a, b = rng.gamma(2.0, size=60), rng.gamma(2.2, size=60)
    r = diebold_mariano(a, b, h=1)
    ref = stats.ttest_1samp(a - b, 0.0, alternative="less")
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    two = diebold_mariano(a, b, h=1, alternative="two-sided")
    assert two.p_value == pytest.approx(stats.ttest_1samp(a - b, 0.0).pvalue, rel=1e-10)


def test_h_step_autocovariance_reference() -> None:
    # an independent computation of the textbook formulas (loops, no shared code)
    rng = np.random.default_rng(11)
    n, h = 40, 3
    d_noise = rng.normal(size=n + 2)
    a = np.abs(d_noise[2:] + 0.6 * d_noise[1:-1] + 0.3 * d_noise[:-2]) + 0.2
    b = np.abs(rng.normal(size=n)) + 0.5
    d = a - b
    dbar = sum(d) / n
    gam = [sum((d[t] - dbar) * (d[t - k] - dbar) for t in range(k, n)) / n for k in range(h)]
    v = gam[0] + 2 * sum(gam[1:])
    dm = dbar / math.sqrt(v / n)
    hln = dm * math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    r = diebold_mariano(a, b, h=h)
    assert r.statistic == pytest.approx(hln, rel=1e-10)
    assert r.p_value == pytest.approx(stats.t(n - 1).cdf(hln), rel=1e-10)
    assert not r.variance_fallback


def test_one_horizon_has_no_power() -> None:
    # n = h: the HLN factor (n + 1 - 2h + h(h-1)/n) is 0, whatever the losses: no evidence
    r = diebold_mariano(np.zeros(24), np.ones(24), h=24)
    assert r.statistic == 0.0 and r.p_value == pytest.approx(0.5)


def test_clearly_better_is_significant_and_equal_is_not() -> None:
    rng = np.random.default_rng(0)
    b = rng.gamma(2.0, size=200)
    better = diebold_mariano(b * 0.5, b, h=1)
    assert better.p_value < 1e-6 and better.statistic < 0
    same = diebold_mariano(b, b, h=4)
    assert same.statistic == 0.0 and same.p_value == pytest.approx(0.5)
    worse = diebold_mariano(b, b * 0.5, h=1)
    assert worse.p_value > 0.99


def test_bad_input() -> None:
    with pytest.raises(BacktestError, match="shape"):
        diebold_mariano([1.0, 2.0], [1.0])
    with pytest.raises(BacktestError, match="NaN"):
        diebold_mariano([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(BacktestError, match="at least 2"):
        diebold_mariano([1.0], [2.0])


def test_losses_match_the_metric() -> None:
    ds = pd.date_range("2024-01-01", periods=2, freq="h")
    fc = pd.DataFrame(
        {
            "unique_id": ["a", "a", "b", "b"],
            "ds": [*ds, *ds],
            "y": [2.0, 4.0, 10.0, 10.0],
            "yhat": [1.0, 5.0, 12.0, 10.0],
            "q0.1": [0.0, 4.0, 11.0, 9.0],
            "q0.9": [3.0, 6.0, 13.0, 11.0],
        }
    )
    assert pointwise_loss(fc, "rmse").tolist() == [1.0, 1.0, 4.0, 0.0]
    assert pointwise_loss(fc, "mae").tolist() == [1.0, 1.0, 2.0, 0.0]
    assert pointwise_loss(fc, "mape").tolist() == pytest.approx([0.5, 0.25, 0.2, 0.0])
    scales = pd.DataFrame({"unique_id": ["a", "b"], "scale": [0.5, 2.0]})
    assert pointwise_loss(fc, "mase", scales).tolist() == pytest.approx([2.0, 2.0, 1.0, 0.0])
    # pinball: mean over q0.1/q0.9; row 0: y=2, q0.1=0 -> 0.1*2=0.2; q0.9=3 -> (0.9-1)*(-1)=0.1
    assert pointwise_loss(fc, "pinball").iloc[0] == pytest.approx(0.15)
    per_time = loss_series(fc, "mae")  # averaged over the series at each timestamp
    assert per_time.tolist() == [1.5, 0.5]


def test_compare_on_common_timestamps() -> None:
    ds = pd.date_range("2024-01-01", periods=30, freq="h")
    rng = np.random.default_rng(5)
    y = rng.normal(size=30)
    good = pd.DataFrame({"unique_id": "s", "ds": ds, "y": y, "yhat": y + rng.normal(scale=0.1, size=30)})
    bad = pd.DataFrame({"unique_id": "s", "ds": ds, "y": y, "yhat": y + rng.normal(scale=1.0, size=30)})
    r = compare(good, bad, "mae", h=1)
    assert r.n == 30 and r.statistic < -3 and r.p_value < 0.01
