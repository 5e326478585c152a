"""Student t quantiles, the paired t interval and Holm's correction against published values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bioprune.report.stats import betainc, holm, paired, t_cdf, t_quantile


@pytest.mark.parametrize(
    "df, q975, q995",
    # two-sided 95% and 99% critical values of Student's t (any printed t table, e.g. Fisher & Yates)
    [(1, 12.706, 63.657), (2, 4.303, 9.925), (3, 3.182, 5.841), (4, 2.776, 4.604), (9, 2.262, 3.250),
     (10, 2.228, 3.169), (30, 2.042, 2.750), (120, 1.980, 2.617)],
)  # fmt: skip
def test_t_quantile_matches_the_table(df, q975, q995):
    assert t_quantile(0.975, df) == pytest.approx(q975, abs=5e-4)
    assert t_quantile(0.995, df) == pytest.approx(q995, abs=5e-4)
    assert t_quantile(0.025, df) == pytest.approx(-q975, abs=5e-4)


def test_t_tends_to_the_normal_and_inverts_its_cdf():
    assert t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)
    for df in (1, 3, 17):
        for p in (0.6, 0.9, 0.999):
            assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-10)
    # df 1 is the Cauchy distribution: F(t) = 1/2 + atan(t)/pi
    assert t_cdf(0.7, 1) == pytest.approx(0.5 + math.atan(0.7) / math.pi, abs=1e-12)


def test_betainc_known_values():
    assert betainc(1, 1, 0.3) == pytest.approx(0.3)  # uniform
    assert betainc(2, 3, 0.4) == pytest.approx(0.5248, abs=1e-12)  # 1 - sum of binomial terms
    assert betainc(0.5, 0.5, 0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        betainc(1, 1, 1.5)


def test_paired_t_reproduces_students_sleep_data():
    # Cushny & Peebles' sleep data (Student 1908): extra hours of sleep, drug 2 minus drug 1, 10 patients.
    # R: t.test(extra ~ group, sleep, paired = TRUE) gives t = -4.0621, df = 9, p = 0.002833,
    # 95% CI -2.4598858 -0.7001142 (group 1 minus group 2).
    d = [1.2, 2.4, 1.3, 1.3, 0.0, 1.0, 1.8, 0.8, 4.6, 1.4]
    r = paired(d)
    assert r.n == 10 and r.has_interval
    assert r.mean == pytest.approx(1.58)
    assert r.lo == pytest.approx(0.7001142, abs=1e-6)
    assert r.hi == pytest.approx(2.4598858, abs=1e-6)
    assert r.p == pytest.approx(0.002833, abs=1e-6)
    # the sign flips with the order of the pair, the interval with it
    rev = paired([-x for x in d])
    assert (rev.lo, rev.hi) == pytest.approx((-r.hi, -r.lo))


def test_paired_with_one_seed_has_no_interval_and_nan_seeds_are_left_out():
    one = paired([0.3])
    assert one.n == 1 and one.mean == 0.3 and not one.has_interval and math.isnan(one.p)
    two = paired([0.1, np.nan, 0.3])
    assert two.n == 2 and two.mean == pytest.approx(0.2)
    # n = 2: t_{0.975, 1} = 12.706 times the standard error 0.1 / sqrt(2) * sqrt(2) = 0.1
    assert two.hi - two.mean == pytest.approx(12.7062047 * 0.1, abs=1e-6)
    assert paired([]).n == 0
    same = paired([0.25, 0.25, 0.25])  # no spread: a zero-width interval, p = 0
    assert same.lo == same.hi == 0.25 and same.p == 0.0


def test_holm_matches_worked_examples():
    # Holm (1979) as on Wikipedia's page: p = 0.01, 0.04, 0.03, 0.005 at alpha 0.05 rejects H1 and H4 only
    adj = holm([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert list(adj < 0.05) == [True, False, False, True]
    # R: p.adjust(c(0.01, 0.02, 0.03, 0.04, 0.05), "holm") = 0.05 0.08 0.09 0.09 0.09
    assert holm([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    # NaN (no test) neither counts towards m nor gets a value; adjusted values are capped at 1
    out = holm([0.02, np.nan, 0.6])
    assert out[0] == pytest.approx(0.04) and math.isnan(out[1]) and out[2] == pytest.approx(0.6)
    assert holm([0.7, 0.8])[1] == 1.0
