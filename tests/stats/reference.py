#!/usr/bin/env python3
"""Reference values for smslink_core::stats, computed with SciPy, statsmodels, NumPy and mpmath.

Generates seeded A/B comparison cases (2 to 4 arms, n from 0 to 100,000, rates including 0, 1
and extremes, various confidence levels and mixture scales tau) and writes, for each case and
arm, the value every field of `ArmStats` (except `decision`) should have, to a JSON file that
core/tests/stats_reference.rs reads (SMSLINK_STATS_REFERENCE=path). The same file carries
"welch_cases" (two raw samples per case, revenue-like or not, stored as mean, sample variance
and size, with statsmodels' Welch test and interval on the raw data) and "mde_cases" (sizes,
pooled rate, confidence and power, with the minimum detectable difference solved in 40-digit
arithmetic with mpmath and cross-checked against statsmodels' NormalIndPower).

    python3 tests/stats/reference.py OUT.json [--cases 300] [--welch-cases 200] [--mde-cases 200]
        [--seed 20240611]

Conventions (the same as core/src/stats.rs documents): an arm with n = 0 has rate 0 and
interval (0, 1) and no comparison; comparative fields are None for the control; the z-test
p-value is 1 when the pooled rate is 0 or 1; chi-square leaves out arms with n = 0 and is None
with fewer than 2 arms left or a zero column; the relative lift needs s_c > 0 and its interval
s_i > 0 too; the mSPRT needs V > 0.
"""

import argparse
import json
import math
import random
import sys
import warnings
from fractions import Fraction

import mpmath
import numpy as np
from scipy import integrate, special
from scipy.stats import chi2_contingency, norm
from scipy.stats import ttest_ind_from_stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.weightstats import CompareMeans
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)


def wilson(s, n, alpha):
    if n == 0:
        return 0.0, 1.0
    lo, hi = proportion_confint(s, n, alpha=alpha, method="wilson")
    return float(lo), float(hi)


def newcombe(s1, n1, s0, n0, alpha):
    """Newcombe's method 10 from statsmodels' Wilson bounds."""
    p1, p0 = s1 / n1, s0 / n0
    l1, u1 = wilson(s1, n1, alpha)
    l0, u0 = wilson(s0, n0, alpha)
    d = float(Fraction(s1, n1) - Fraction(s0, n0))
    lo = d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    # Sanity check against statsmodels' own implementation of the same interval.
    lo2, hi2 = confint_proportions_2indep(s1, n1, s0, n0, method="newcomb", compare="diff", alpha=alpha)
    assert abs(lo - lo2) < 1e-12 and abs(hi - hi2) < 1e-12, (s1, n1, s0, n0, lo, lo2, hi, hi2)
    return lo, hi


def log_ratio_ci(s1, n1, s0, n0, alpha):
    z = norm.ppf(1 - alpha / 2)
    ln_rr = math.log((s1 * n0) / (s0 * n1))
    se = math.sqrt(1 / s1 - 1 / n1 + 1 / s0 - 1 / n0)
    lo, hi = math.expm1(ln_rr - z * se), math.expm1(ln_rr + z * se)
    # Sanity check against statsmodels' log (Katz) risk-ratio interval.
    lo2, hi2 = confint_proportions_2indep(s1, n1, s0, n0, method="log", compare="ratio", alpha=alpha)
    assert abs((lo + 1) / lo2 - 1) < 1e-10 and abs((hi + 1) / hi2 - 1) < 1e-10
    return lo, hi


def z_test(s1, n1, s0, n0):
    if n1 == 0 or n0 == 0:
        return None
    if s1 + s0 == 0 or s1 + s0 == n1 + n0:
        return 1.0
    _, p = proportions_ztest([s1, s0], [n1, n0], value=0, alternative="two-sided")
    return float(p)


def chi_square(arms):
    rows = [(s, n - s) for n, s in arms if n > 0]
    if len(rows) < 2 or sum(r[0] for r in rows) == 0 or sum(r[1] for r in rows) == 0:
        return None
    stat, p, dof, _ = chi2_contingency(np.array(rows, dtype=float), correction=False)
    assert dof == len(rows) - 1
    return float(stat), float(p)


def msprt(s1, n1, s0, n0, tau, alpha):
    if n1 == 0 or n0 == 0:
        return None
    p1, p0 = s1 / n1, s0 / n0
    v = p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0
    if v <= 0:
        return None
    theta = float(Fraction(s1, n1) - Fraction(s0, n0))
    t2 = tau * tau
    with np.errstate(over="ignore"):
        lam = np.sqrt(v / (v + t2)) * np.exp(t2 * theta**2 / (2 * v * (v + t2)))
    p = float(min(1.0, 1.0 / lam))
    r = float(np.sqrt(v * (v + t2) / t2 * (np.log((v + t2) / v) + 2 * np.log(1 / alpha))))
    return p, theta - r, theta + r


def beta_pdf(x, a, b):
    return math.exp(special.xlogy(a - 1, x) + special.xlog1py(b - 1, -x) - special.betaln(a, b))


QUANTILES = [1e-20, 1e-15, 1e-12, 1e-9, 1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.15, 0.3, 0.5]


def prob_best(arms):
    """P(arm i best) = integral of f_i * prod_{j != i} F_j, by scipy.integrate.quad on panels cut
    at quantiles of every posterior Beta(1 + s, 1 + n - s)."""
    params = [(1.0 + s, 1.0 + n - s) for n, s in arms]
    cuts = {0.0, 1.0}
    for a, b in params:
        for q in QUANTILES:
            cuts.add(float(special.betaincinv(a, b, q)))
            cuts.add(float(special.betainccinv(a, b, q)))
    cuts = sorted(c for c in cuts if 0.0 <= c <= 1.0)
    out = []
    for i, (ai, bi) in enumerate(params):
        others = [p for j, p in enumerate(params) if j != i]

        def g(x):
            v = beta_pdf(x, ai, bi)
            for a, b in others:
                v *= special.betainc(a, b, x)
            return v

        total = []
        for lo, hi in zip(cuts, cuts[1:]):
            if hi > lo:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", integrate.IntegrationWarning)
                    val, err = integrate.quad(g, lo, hi, epsabs=1e-15, epsrel=1e-13, limit=500)
                # QUADPACK may complain on panels a few ulps wide next to 0 or 1, where the
                # integrand is negligible; anywhere it matters, a warning is an error.
                if caught and abs(val) + err > 1e-16:
                    raise RuntimeError(f"quad failed on [{lo!r}, {hi!r}] for arms {arms}: {caught[0].message}")
                total.append(val)
        out.append(math.fsum(total))
    if len(arms) == 2:
        # Independent check of the quadrature: Evan Miller's closed form for two posteriors,
        # P(p_B > p_A) = sum_{k < a_B} B(a_A + k, b_A + b_B) / ((b_B + k) B(1 + k, b_B) B(a_A, b_A)),
        # in 30-digit arithmetic (mpmath), taking as B the arm with the fewer terms.
        ib = 0 if params[0][0] <= params[1][0] else 1
        (aa, ba), (ab, bb) = params[1 - ib], params[ib]
        if ab <= 300:
            with mpmath.workdps(30):
                closed = mpmath.fsum(
                    mpmath.beta(aa + k, ba + bb) / ((bb + k) * mpmath.beta(1 + k, bb) * mpmath.beta(aa, ba))
                    for k in range(int(ab))
                )
                closed = float(closed)
            assert abs(closed - out[ib]) <= 1e-10 * abs(closed) + 1e-14, (arms, closed, out[ib])
    return out


def gen_case(rng):
    k = rng.randint(2, 4)
    base = rng.choice([0.0, 1e-4, 1e-3, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 0.97, 0.999, 1.0])
    arms = []
    for _ in range(k):
        u = rng.random()
        if u < 0.05:
            n = 0
        elif u < 0.25:
            n = rng.randint(1, 100)
        elif u < 0.3:
            n = 100000
        else:
            n = int(round(10 ** rng.uniform(2, 5)))
        v = rng.random()
        if v < 0.06:
            s = 0
        elif v < 0.12:
            s = n
        elif v < 0.16:
            s = min(1, n)
        elif v < 0.2:
            s = max(n - 1, 0)
        else:
            rate = min(1.0, max(0.0, base * (1 + rng.uniform(-0.3, 0.3))))
            s = int(round(n * rate + rng.gauss(0, 1) * math.sqrt(max(n * rate * (1 - rate), 0.0))))
            s = min(max(s, 0), n)
        arms.append((n, s))
    control = rng.randrange(k)
    confidence = rng.choice([0.95, 0.95, 0.95, 0.8, 0.9, 0.99, 0.999])
    tau = rng.choice([0.02, 0.02, 0.02, 0.005, 0.01, 0.05, 0.1])
    return arms, control, confidence, tau


def expected(arms, control, confidence, tau):
    alpha = 1 - confidence
    chi = chi_square(arms)
    pb = prob_best(arms)
    n0, s0 = arms[control]
    rows = []
    for i, (n, s) in enumerate(arms):
        lo, hi = wilson(s, n, alpha)
        row = {
            "rate": s / n if n else 0.0,
            "ci_low": lo,
            "ci_high": hi,
            "lift": None,
            "lift_ci_low": None,
            "lift_ci_high": None,
            "rel_lift": None,
            "rel_lift_ci_low": None,
            "rel_lift_ci_high": None,
            "p_value": None,
            "chi2_p_value": None if chi is None else chi[1],
            "prob_best": pb[i],
            "always_valid_p": None,
            "cs_low": None,
            "cs_high": None,
        }
        if i != control:
            if n > 0 and n0 > 0:
                row["lift"] = float(Fraction(s, n) - Fraction(s0, n0))
                row["lift_ci_low"], row["lift_ci_high"] = newcombe(s, n, s0, n0, alpha)
            if n > 0 and s0 > 0:
                row["rel_lift"] = float(Fraction(s, n) / Fraction(s0, n0) - 1)
            if s > 0 and s0 > 0:
                row["rel_lift_ci_low"], row["rel_lift_ci_high"] = log_ratio_ci(s, n, s0, n0, alpha)
            row["p_value"] = z_test(s, n, s0, n0)
            m = msprt(s, n, s0, n0, tau, alpha)
            if m is not None:
                row["always_valid_p"], row["cs_low"], row["cs_high"] = m
        rows.append(row)
    return rows, chi


# --- Welch's test for a difference of means -------------------------------------------------

WELCH_FIELDS = ("difference", "ci_low", "ci_high", "p_value", "df")


def welch_expected(x1, x0, confidence):
    """statsmodels' Welch test and interval of mean(x1) - mean(x0) on the raw samples; None when
    a sample has fewer than 2 values or both are constant (the convention of stats::welch)."""
    if len(x1) < 2 or len(x0) < 2 or (np.ptp(x1) == 0 and np.ptp(x0) == 0):
        return None
    alpha = 1 - confidence
    cm = CompareMeans.from_data(x1, x0)
    lo, hi = cm.tconfint_diff(alpha=alpha, usevar="unequal")
    _, p, df = cm.ttest_ind(usevar="unequal")
    # Cross-check the p-value against SciPy from the summary statistics.
    _, p2 = ttest_ind_from_stats(
        np.mean(x1), np.std(x1, ddof=1), len(x1), np.mean(x0), np.std(x0, ddof=1), len(x0), equal_var=False
    )
    assert abs(p - p2) <= 1e-9 * abs(p2) + 1e-13, (len(x1), len(x0), p, p2)
    out = {
        "difference": float(cm.d1.mean - cm.d2.mean),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p_value": float(p),
        "df": float(df),
    }
    assert all(math.isfinite(v) for v in out.values()), out
    return out


def welch_sample(g, n, kind):
    """A sample of n values: revenue per recipient (mostly 0, some lognormal amounts, rarely a
    large order), a normal metric or small counts."""
    if kind == "revenue":
        buy = g.random(n) < g.choice([0.005, 0.02, 0.05, 0.1, 0.3])
        x = np.where(buy, g.lognormal(g.uniform(1, 4), g.uniform(0.3, 1.5), n), 0.0)
        big = g.random(n) < 0.002
        return np.where(big, g.uniform(500, 20000, n), x)
    if kind == "normal":
        return g.normal(g.uniform(-100, 100), 10 ** g.uniform(-2, 2), n)
    return g.poisson(g.uniform(0.1, 5), n).astype(float)


def gen_welch_case(g):
    def size():
        return int(round(10 ** g.uniform(math.log10(2), math.log10(5000))))

    kind = str(g.choice(["revenue", "revenue", "normal", "counts"]))
    x1, x0 = welch_sample(g, size(), kind), welch_sample(g, size(), kind)
    if kind == "revenue" and g.random() < 0.5:
        x1 = x1 * g.uniform(0.7, 1.5)  # a treatment that moves revenue
    return x1, x0, float(g.choice([0.8, 0.9, 0.95, 0.95, 0.99]))


def fixed_welch_cases(g):
    rev = welch_sample(g, 3000, "revenue")
    return [
        (np.array([1.0, 2.0]), np.array([3.0, 7.0]), 0.95),  # n = 2 on both sides
        (np.array([0.0, 40.0]), welch_sample(g, 4000, "revenue"), 0.9),
        (rev, rev[::-1].copy(), 0.95),  # equal means and variances
        (np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0]), 0.99),  # equal means, exactly
        (g.normal(10, 0.01, 50), g.normal(10.5, 300, 4000), 0.95),  # very unequal variances
        (g.normal(10, 1000, 5), g.normal(9, 0.001, 2000), 0.8),
        (np.zeros(1000), welch_sample(g, 1000, "revenue"), 0.95),  # one sample constant
        (np.full(20, 5.0), g.normal(5.5, 2, 30), 0.99),
        (g.poisson(2, 200).astype(float), np.full(2, 3.0), 0.9),
        (np.zeros(500), np.zeros(800), 0.95),  # both constant: None
        (np.full(10, 3.0), np.zeros(10), 0.95),
        (np.array([5.0]), g.normal(0, 1, 100), 0.95),  # n = 1: None
    ]


def welch_cases(seed, count):
    g = np.random.default_rng([seed, 1])
    fixed = fixed_welch_cases(g)
    cases = []

    def summary(x):
        var = float(np.var(x, ddof=1)) if len(x) > 1 else 0.0
        return {"mean": float(np.mean(x)), "var": var, "n": len(x)}

    for x1, x0, confidence in fixed + [gen_welch_case(g) for _ in range(max(count - len(fixed), 0))]:
        cases.append(
            {
                "x1": summary(x1),
                "x0": summary(x0),
                "confidence": confidence,
                "expected": welch_expected(x1, x0, confidence),
            }
        )
    return cases


# --- Minimum detectable effect of the two-proportion z-test ---------------------------------


def mde_expected(pooled, n1, n0, confidence, power):
    """delta = d * sqrt(P(1 - P)(1/n1 + 1/n0)) with d solving Phi(d - z) + Phi(-d - z) = power,
    z = Phi^-1(1 - alpha/2), in 40-digit arithmetic; None when an n is 0 or P is 0 or 1."""
    if n1 == 0 or n0 == 0 or not 0 < pooled < 1:
        return None
    with mpmath.workdps(40):
        conf, pw, p = mpmath.mpf(confidence), mpmath.mpf(power), mpmath.mpf(pooled)
        alpha = 1 - conf
        z = mpmath.sqrt(2) * mpmath.erfinv(1 - alpha)  # Phi^-1(1 - alpha/2)
        assert abs(mpmath.ncdf(z) - (1 - alpha / 2)) < mpmath.mpf(10) ** -35

        def g(d):
            return mpmath.ncdf(d - z) + mpmath.ncdf(-d - z) - pw

        d0 = z + mpmath.sqrt(2) * mpmath.erfinv(2 * pw - 1)  # the one-tailed solution
        d = mpmath.findroot(g, d0, tol=mpmath.mpf(10) ** -70)
        assert d > 0 and abs(g(d)) < mpmath.mpf(10) ** -35, (confidence, power, d, g(d))
        delta = float(d * mpmath.sqrt(p * (1 - p) * (mpmath.mpf(1) / n1 + mpmath.mpf(1) / n0)))
    # Cross-check against statsmodels: its effect size (in units of the standard deviation
    # sqrt(P(1 - P))) times sqrt(P(1 - P)), when its solver converges. solve_power's bracketing
    # solver stops at an absolute tolerance of 1e-5 on the effect size by default, too coarse for
    # the effects of large samples, so the tolerance is tightened to 1e-15 (start_bqexp holds
    # the solver's keyword arguments per unknown).
    ip = NormalIndPower()
    ip.start_bqexp["effect_size"] = {"xtol": 1e-15}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            es = ip.solve_power(
                effect_size=None, nobs1=n1, alpha=1 - confidence, power=power, ratio=n0 / n1, alternative="two-sided"
            )
        except Exception:  # noqa: BLE001 - a failed solve only skips the cross-check
            es = None
    es = None if es is None else float(np.asarray(es).reshape(-1)[0])
    if es is not None and math.isfinite(es) and not caught:
        sm = es * math.sqrt(pooled * (1 - pooled))
        rel = abs(sm - delta) / delta
        assert rel <= 1e-6, (pooled, n1, n0, confidence, power, delta, sm)
        MDE_CROSS_CHECKS.append(rel)
    return delta


MDE_CROSS_CHECKS = []  # relative differences from statsmodels, for the summary


def gen_mde_case(rng):
    def size():
        u = rng.random()
        if u < 0.05:
            return 1
        if u < 0.1:
            return 2_000_000
        return int(round(10 ** rng.uniform(0, math.log10(2_000_000))))

    n1 = size()
    n0 = n1 if rng.random() < 0.2 else size()
    u = rng.random()
    if u < 0.15:
        pooled = rng.choice([1e-4, 0.5, 0.001, 0.01, 0.05, 0.2, 0.9, 0.9999])
    elif u < 0.6:
        pooled = 10 ** rng.uniform(-4, math.log10(0.5))
    else:
        pooled = rng.uniform(1e-4, 1 - 1e-4)
    confidence = rng.choice([0.8, 0.9, 0.95, 0.95, 0.99, round(rng.uniform(0.8, 0.99), 4)])
    power = rng.choice([0.5, 0.8, 0.8, 0.9, 0.95, round(rng.uniform(0.5, 0.95), 4)])
    return pooled, n1, n0, confidence, power


def mde_cases(seed, count):
    rng = random.Random(seed + 2)
    fixed = [
        (0.1, 1000, 1000, 0.95, 0.8),
        (0.5, 1, 1, 0.8, 0.5),
        (1e-4, 2_000_000, 2_000_000, 0.99, 0.95),
        (0.5, 1, 2_000_000, 0.95, 0.9),
        (0.1, 0, 100, 0.95, 0.8),  # None edges
        (0.1, 100, 0, 0.95, 0.8),
        (0.0, 100, 100, 0.95, 0.8),
        (1.0, 100, 100, 0.95, 0.8),
    ]
    cases = []
    for pooled, n1, n0, confidence, power in fixed + [gen_mde_case(rng) for _ in range(max(count - len(fixed), 0))]:
        cases.append(
            {
                "pooled": pooled,
                "n1": n1,
                "n0": n0,
                "confidence": confidence,
                "power": power,
                "expected": mde_expected(pooled, n1, n0, confidence, power),
            }
        )
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--welch-cases", type=int, default=200)
    ap.add_argument("--mde-cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=20240611)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    cases = []
    # Fixed cases first: hand-picked edges, then the generated ones.
    fixed = [
        ([(100, 10), (100, 10)], 0, 0.95, 0.02),
        ([(0, 0), (0, 0)], 0, 0.95, 0.02),
        ([(100, 0), (200, 0)], 1, 0.95, 0.02),
        ([(100, 100), (200, 200), (50, 50)], 0, 0.95, 0.02),
        ([(100000, 5000), (100000, 5600), (100000, 4900), (100000, 5010)], 0, 0.95, 0.02),
        ([(100000, 0), (1, 1)], 0, 0.99, 0.05),
        ([(100000, 50000), (100000, 50400)], 1, 0.9, 0.01),
        ([(5, 0), (100000, 99999), (0, 0)], 2, 0.95, 0.02),
    ]
    generated = [gen_case(rng) for _ in range(max(args.cases - len(fixed), 0))]
    for arms, control, confidence, tau in fixed + generated:
        rows, chi = expected(arms, control, confidence, tau)
        cases.append(
            {
                "arms": [{"n": n, "successes": s} for n, s in arms],
                "control": control,
                "confidence": confidence,
                "tau": tau,
                "chi2_statistic": None if chi is None else chi[0],
                "expected": rows,
            }
        )
    welch = welch_cases(args.seed, args.welch_cases)
    mde = mde_cases(args.seed, args.mde_cases)
    doc = {"seed": args.seed, "cases": cases, "welch_cases": welch, "mde_cases": mde}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1, allow_nan=False)
    print(
        f"wrote {len(cases)} cases, {len(welch)} Welch cases and {len(mde)} MDE cases"
        f" ({len(MDE_CROSS_CHECKS)} within {max(MDE_CROSS_CHECKS, default=0):.1e} of statsmodels) to {args.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
