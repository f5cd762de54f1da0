"""Fixtures for test/46b (randomized smoothing): scipy 1.10's statistics on a grid (and a few exact
incomplete-beta values by mpmath), and the closed-form smoothed classifier of a linear binary model.
Run with /usr/bin/python3 (scipy, numpy, mpmath):
    /usr/bin/python3 scripts/make-smoothing-fixtures.py  →  test/fixtures/smoothing.json
"""
import json
import os

import mpmath as mp
import numpy as np
from scipy import special, stats

out = {}

# ln Γ and the regularised incomplete beta function I_x(a, b)
out['gammaln'] = [[x, float(special.gammaln(x))] for x in [0.1, 0.5, 1, 1.5, 2, 3.7, 9.99, 10, 12.5, 100, 1234.5, 1e5, 1e7]]
shapes = [0.5, 1, 2.5, 10, 100, 1e4, 1e5]
out['betainc'] = [[a, b, x, float(special.betainc(a, b, x))]
                  for a in shapes for b in shapes for x in [1e-4, 0.01, 0.3, 0.5, 0.7, 0.99, 0.9999]]

# exact values (mpmath, 50 digits) where scipy's own betainc strays beyond 1e-10 (up to 3e-10 at a = b = 1e5):
# for integer a, b, I_x(a, b) = P(Binomial(a + b − 1, x) ≥ a), summed term by term at the double x
mp.mp.dps = 50


def betainc_exact(a, b, x):
    N, xm = a + b - 1, mp.mpf(x)
    if a - 1 <= N - a + 1:  # sum the shorter side
        return float(1 - mp.fsum(mp.binomial(N, j) * xm ** j * (1 - xm) ** (N - j) for j in range(a)))
    return float(mp.fsum(mp.binomial(N, j) * xm ** j * (1 - xm) ** (N - j) for j in range(a, N + 1)))


out['betaincExact'] = [[a, b, x, betainc_exact(a, b, x)] for a, b, x in
                       [(10, 100000, 1e-4), (100000, 10, 0.9999), (100, 100000, 1e-3), (1000, 1000, 0.49), (20000, 20000, 0.5), (3, 7, 0.25)]]

# the Beta(a, b) quantile
out['betappf'] = [[q, a, b, float(stats.beta.ppf(q, a, b))]
                  for q in [1e-10, 1e-4, 0.001, 0.025, 0.5, 0.975, 0.9999] for a in shapes for b in shapes]

# the Clopper–Pearson lower bound as Cohen et al. take it: statsmodels' proportion_confint(k, n, alpha=2α,
# method='beta')[0] is beta.ppf(α, k, n − k + 1), and 0 for k = 0 (statsmodels is not installed here)
cp = []
for n in [1, 10, 100, 1000, 100000]:
    for k in sorted({0, 1, n // 2, (9 * n) // 10, n - 1, n}):
        for alpha in [0.001, 0.05]:
            cp.append([k, n, alpha, 0.0 if k == 0 else float(stats.beta.ppf(alpha, k, n - k + 1))])
out['clopperPearson'] = cp
# the closed form for k = n: Beta(n, 1) has CDF x^n, so the bound is alpha^(1/n), and a model that always
# returns one class is certified with radius sigma·Φ⁻¹(alpha^(1/n)): rows [n, alpha, scipy's bound, alpha^(1/n), Φ⁻¹(bound)]
out['allCorrect'] = [[n, alpha, float(stats.beta.ppf(alpha, n, 1)), alpha ** (1 / n), float(stats.norm.ppf(stats.beta.ppf(alpha, n, 1)))]
                     for n in [1, 100, 1000, 100000] for alpha in [0.001, 0.05]]

# Φ⁻¹
qs = [1e-300, 1e-100, 1e-20, 1e-10, 1e-5, 0.001, 0.02425, 0.075, 0.1, 0.3, 0.4999, 0.5, 0.5001, 0.575, 0.7, 0.9, 0.925, 0.97575, 0.999, 1 - 1e-5, 1 - 1e-10]
out['normppf'] = [[q, float(stats.norm.ppf(q))] for q in qs]

# the two-sided binomial test of p = 1/2 (PREDICT's test between the top two counts)
bt = []
for n in [1, 2, 7, 20, 100, 1001, 100000]:
    for k in sorted({0, 1, n // 3, n // 2, (n + 1) // 2, (2 * n) // 3, n - 1, n}):
        if 0 <= k <= n:
            bt.append([k, n, float(stats.binomtest(k, n, 0.5).pvalue)])
out['binomtest'] = bt

# a linear binary classifier on 3×2×2 pixels behind a normalisation: logits [0, w·((p − m)/s) + b];
# under N(0, σ²I) pixel noise class 1 has probability Φ(margin / (σ‖w/s‖)), margin = w·((x − m)/s) + b,
# and the smoothed classifier's exact certified radius is |margin| / ‖w/s‖ (the distance to the boundary)
rng = np.random.default_rng(46)
mean = [0.1, 0.2, 0.3]
std = [0.5, 0.25, 1.0]
w = np.round(rng.normal(size=12), 4)
x = np.round(rng.uniform(0.2, 0.8, size=12), 4)
s = np.repeat(std, 4)
m = np.repeat(mean, 4)
wp = w / s                                           # the weights in pixel space
bias = round(float(-(w @ ((x - m) / s)) + 0.6 * np.linalg.norm(wp) * 0.25), 4)  # margin ≈ 0.6σ at σ = 0.25
margin = float(w @ ((x - m) / s) + bias)
lin = {'mean': mean, 'std': std, 'w': w.tolist(), 'b': bias, 'x': x.tolist(), 'margin': margin, 'radius': abs(margin) / float(np.linalg.norm(wp)), 'cases': []}
for sigma in [0.25, 0.5]:
    pA = float(stats.norm.cdf(abs(margin) / (sigma * np.linalg.norm(wp))))
    for n in [2000, 20000] + ([100000] if sigma == 0.25 else []):
        # the count of the top class is Binomial(n, pA): its 1e-6 and 1 − 1e-6 quantiles
        lo, hi = stats.binom.ppf(1e-6, n, pA), stats.binom.isf(1e-6, n, pA)
        lin['cases'].append({'sigma': sigma, 'n': n, 'pA': pA, 'countLo': int(lo), 'countHi': int(hi), 'top': 1 if margin > 0 else 0})
out['linear'] = lin

path = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'smoothing.json')
with open(path, 'w') as f:
    json.dump(out, f, indent=None, separators=(',', ':'))
    f.write('\n')
print('wrote', path, {k: len(v) for k, v in out.items() if isinstance(v, list)})
