#!/usr/bin/env python3
"""Bjontegaard delta rate (BD-rate) in plain Python: no numpy, no scipy.

BD-rate is the average difference in bitrate between two rate-quality curves at equal quality,
as a percentage of the anchor's rate: -10 % means the test needs 10 % fewer bits than the anchor
for the same picture; +100 % means twice the bits. Each curve is ln(rate) as a function of
quality, interpolated through its points; both are integrated over the quality range the two
curves share, and BD-rate = exp(mean difference) - 1 (G. Bjontegaard, VCEG-M33, 2001).

Two interpolations:
- "pchip" (the default and what compare_ffmpeg.py reports): piecewise cubic Hermite
  interpolation with Fritsch-Carlson slopes and the three-point, shape-preserving end slopes, as
  in the JCT-VC / JVET common-test-conditions sheets (JCTVC-L1100, JVET-T2010). It never
  overshoots between points, so a curve that bends does not produce a wild figure.
- "cubic": the classic VCEG-M33 least-squares cubic polynomial over the points (with 4 points it
  passes through all of them).
Rates are in any unit (the same for both curves); the logarithm is natural, so the result does
not depend on the unit.

`python3 benches/bdrate.py --self-test` checks both against analytic cases (curves shifted by a
known rate factor give exactly that factor; a log-linear and a cubic curve) and against a
published data set (the RD points in the FAU-LMS `bjontegaard` package's README, measured with
libx265) whose PCHIP BD-rate that package, which matches the JVET Excel sheet, gives; it takes
milliseconds and needs nothing but Python 3.
"""
import math
import sys


def _prepare(rates, quality):
    """(quality, ln rate) pairs sorted by quality; refuses what cannot make a curve."""
    if len(rates) != len(quality):
        raise ValueError(f"{len(rates)} rates but {len(quality)} quality values; give one quality per rate")
    if len(rates) < 2:
        raise ValueError(f"{len(rates)} points; a curve needs at least 2 (4 is the usual)")
    for r, q in zip(rates, quality):
        if not (r > 0 and math.isfinite(r)):
            raise ValueError(f"rate {r} is not a positive finite number")
        if not math.isfinite(q):
            raise ValueError(f"quality {q} is not finite (PSNR of identical pictures? cap it first)")
    pts = sorted(zip(quality, (math.log(r) for r in rates)))
    for (a, _), (b, _) in zip(pts, pts[1:]):
        if a == b:
            raise ValueError(f"two points share quality {a}; a curve needs distinct quality values")
    return [p[0] for p in pts], [p[1] for p in pts]


def _pchip_slopes(x, y):
    """Fritsch-Carlson slopes at each point (shape preserving; the ends by the 3-point formula)."""
    n = len(x)
    h = [x[i + 1] - x[i] for i in range(n - 1)]
    delta = [(y[i + 1] - y[i]) / h[i] for i in range(n - 1)]
    if n == 2:
        return [delta[0], delta[0]]
    d = [0.0] * n
    for k in range(1, n - 1):
        if delta[k - 1] * delta[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])
    d[0] = _pchip_end(h[0], h[1], delta[0], delta[1])
    d[-1] = _pchip_end(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _pchip_end(h1, h2, del1, del2):
    d = ((2 * h1 + h2) * del1 - h1 * del2) / (h1 + h2)
    if d * del1 < 0:
        return 0.0
    if del1 * del2 < 0 and abs(d) > abs(3 * del1):
        return 3 * del1
    return d


def _pchip_integral(x, y, lo, hi):
    """Integral over [lo, hi] (inside [x[0], x[-1]]) of the PCHIP through (x, y)."""
    d = _pchip_slopes(x, y)
    total = 0.0
    for k in range(len(x) - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if a >= b:
            continue
        h = x[k + 1] - x[k]
        delta = (y[k + 1] - y[k]) / h
        c2 = (3 * delta - 2 * d[k] - d[k + 1]) / h
        c3 = (d[k] - 2 * delta + d[k + 1]) / (h * h)

        def prim(t, k=k, c2=c2, c3=c3):
            return y[k] * t + d[k] * t * t / 2 + c2 * t ** 3 / 3 + c3 * t ** 4 / 4

        total += prim(b - x[k]) - prim(a - x[k])
    return total


def _solve(a, b):
    """Solves a x = b (small, dense) by Gaussian elimination with partial pivoting."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        if abs(m[p][c]) < 1e-300:
            raise ValueError("the cubic fit is singular (fewer than 4 distinct quality values?)")
        m[c], m[p] = m[p], m[c]
        for r in range(c + 1, n):
            f = m[r][c] / m[c][c]
            for j in range(c, n + 1):
                m[r][j] -= f * m[c][j]
    out = [0.0] * n
    for r in range(n - 1, -1, -1):
        out[r] = (m[r][n] - sum(m[r][j] * out[j] for j in range(r + 1, n))) / m[r][r]
    return out


def _cubic_integral(x, y, lo, hi):
    """Integral over [lo, hi] of the least-squares cubic through (x, y) (VCEG-M33)."""
    deg = min(3, len(x) - 1)
    x0 = sum(x) / len(x)  # centred, for conditioning
    t = [xi - x0 for xi in x]
    ata = [[sum(ti ** (i + j) for ti in t) for j in range(deg + 1)] for i in range(deg + 1)]
    aty = [sum(yi * ti ** i for ti, yi in zip(t, y)) for i in range(deg + 1)]
    c = _solve(ata, aty)

    def prim(u):
        return sum(ci * u ** (i + 1) / (i + 1) for i, ci in enumerate(c))

    return prim(hi - x0) - prim(lo - x0)


METHODS = {"pchip": _pchip_integral, "cubic": _cubic_integral}


def bd_rate(anchor_rates, anchor_quality, test_rates, test_quality, method="pchip"):
    """BD-rate of the test against the anchor, in percent (negative: the test saves bits)."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}; use one of {sorted(METHODS)}")
    xa, ya = _prepare(anchor_rates, anchor_quality)
    xt, yt = _prepare(test_rates, test_quality)
    lo, hi = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    if lo >= hi:
        raise ValueError(
            f"the curves share no quality range (anchor {xa[0]:.3f}..{xa[-1]:.3f}, test {xt[0]:.3f}..{xt[-1]:.3f}); "
            "pick bitrates that bring them closer")
    integrate = METHODS[method]
    mean = (integrate(xt, yt, lo, hi) - integrate(xa, ya, lo, hi)) / (hi - lo)
    return (math.exp(mean) - 1) * 100


def overlap(anchor_quality, test_quality):
    """Share of the union of the two quality ranges that both cover (0..1); below ~0.5 a BD-rate
    is an extrapolation in all but name."""
    a0, a1, t0, t1 = min(anchor_quality), max(anchor_quality), min(test_quality), max(test_quality)
    union = max(a1, t1) - min(a0, t0)
    return max(0.0, min(a1, t1) - max(a0, t0)) / union if union > 0 else 0.0


def ssim_db(ssim):
    """SSIM as -10 log10(1 - SSIM): the scale on which SSIM curves are near-linear in log-rate."""
    return -10 * math.log10(max(1e-10, 1 - ssim))


# The RD points of the FAU-LMS `bjontegaard` package's README (libx265 at two presets, kbps /
# PSNR dB), and the BD-rates that package (1.3.0; its PCHIP matches the JVET Excel sheet to 10
# decimals) gives for them, and numpy's polyfit/polyint over natural-log rate (the VCEG-M33 fit).
PUBLISHED = {
    "anchor": ([9487.76, 4593.60, 2486.44, 1358.24], [40.037, 38.615, 36.845, 34.851]),
    "test": ([9787.80, 4469.00, 2451.52, 1356.24], [40.121, 38.651, 36.970, 34.987]),
}
PUBLISHED_PCHIP = -4.417485350589045
PUBLISHED_CUBIC = -4.420462706245121


def self_test():
    failures = []

    def check(name, got, want, tol):
        ok = abs(got - want) <= tol
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {got:.6f} (want {want:.6f} +- {tol})")
        if not ok:
            failures.append(name)

    q = [34.0, 36.5, 39.0, 41.5]
    r = [800.0, 1400.0, 2600.0, 5000.0]
    for method in METHODS:
        # The same curve at 1.25x the rate: exactly +25 %; and at 0.5x: -50 %.
        check(f"{method}: rate x1.25", bd_rate(r, q, [x * 1.25 for x in r], q, method), 25.0, 1e-9)
        check(f"{method}: rate x0.5", bd_rate(r, q, [x * 0.5 for x in r], q, method), -50.0, 1e-9)
        # Quality linear in ln(rate), test sampled at other rates: Q = 30 + 4 ln(R / R0), the test
        # with R0 0.8x the anchor's: -20 % exactly (both interpolations reproduce a line).
        ar = [600.0, 1100.0, 2300.0, 4700.0]
        tr = [500.0, 1000.0, 1900.0, 3900.0]
        aq = [30 + 4 * math.log(x / 1000) for x in ar]
        tq = [30 + 4 * math.log(x / 800) for x in tr]
        check(f"{method}: log-linear, other sample points", bd_rate(ar, aq, tr, tq, method), -20.0, 1e-9)
        # Identical curves: 0.
        check(f"{method}: identical", bd_rate(r, q, r, q, method), 0.0, 1e-12)
    # ln R a cubic of Q: the cubic fit is exact, PCHIP close. Test = anchor + 0.3 in ln R, so
    # exp(0.3) - 1 = 34.986 %; sampled at different qualities.
    f = lambda x: 6 + 0.5 * (x - 35) - 0.02 * (x - 35) ** 2 + 0.004 * (x - 35) ** 3  # noqa: E731
    aq, tq = [32.0, 35.0, 38.0, 41.0], [32.5, 35.5, 38.5, 41.5]
    ar = [math.exp(f(x)) for x in aq]
    tr = [math.exp(f(x) + 0.3) for x in tq]
    want = (math.exp(0.3) - 1) * 100
    check("cubic: ln R cubic in Q, other qualities", bd_rate(ar, aq, tr, tq, "cubic"), want, 1e-8)
    check("pchip: ln R cubic in Q, other qualities", bd_rate(ar, aq, tr, tq, "pchip"), want, 0.5)
    # The published example.
    (ar, aq), (tr, tq) = PUBLISHED["anchor"], PUBLISHED["test"]
    check("pchip: FAU-LMS/bjontegaard README data", bd_rate(ar, aq, tr, tq, "pchip"), PUBLISHED_PCHIP, 1e-9)
    check("cubic: FAU-LMS/bjontegaard README data", bd_rate(ar, aq, tr, tq, "cubic"), PUBLISHED_CUBIC, 1e-9)
    # Refusals say what to do.
    for bad, args in [("no overlap", (r, q, r, [x + 20 for x in q])), ("length", (r, q[:3], r, q))]:
        try:
            bd_rate(*args)
            failures.append(f"refuses {bad}")
            print(f"FAIL refuses {bad}")
        except ValueError as e:
            print(f"ok   refuses {bad}: {e}")
    check("ssim_db(0.99)", ssim_db(0.99), 20.0, 1e-9)
    check("overlap, half", overlap([0, 2], [1, 3]), 1 / 3, 1e-12)
    print(f"{len(failures) == 0 and 'all passed' or 'FAILED: ' + ', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    print(__doc__)
    print("usage: python3 benches/bdrate.py --self-test")
    sys.exit(2)
