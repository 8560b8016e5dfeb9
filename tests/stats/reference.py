#!/usr/bin/env python3
"""Reference values for smslink_core::stats, computed with SciPy, statsmodels and NumPy.

Generates seeded A/B comparison cases (2 to 4 arms, n from 0 to 100,000, rates including 0, 1
and extremes, various confidence levels and mixture scales tau) and writes, for each case and
arm, the value every field of `ArmStats` (except `decision`) should have, to a JSON file that
core/tests/stats_reference.rs reads (SMSLINK_STATS_REFERENCE=path).

    python3 tests/stats/reference.py OUT.json [--cases 300] [--seed 20240611]

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--cases", type=int, default=300)
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
    with open(args.out, "w") as f:
        json.dump({"seed": args.seed, "cases": cases}, f, indent=1, allow_nan=False)
    print(f"wrote {len(cases)} cases to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
