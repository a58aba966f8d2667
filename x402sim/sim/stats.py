"""The statistics of a sweep: the mean of a metric over runs, with its confidence interval.

Rules: for the values that are not None (and finite; booleans count as 0/1): n, mean, sample
standard deviation and the 95% confidence interval of the mean, mean +- t(0.975, n-1) s / sqrt(n).
The t quantile is computed exactly (the closed form of the Student t distribution for whole
degrees of freedom, inverted by bisection) up to 1000 degrees of freedom and by its
Cornish-Fisher expansion beyond. Pure functions of their arguments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

CONFIDENCE = 0.95
EXACT_T_MAX_DF = 1000


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite real number (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _t_central(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with ``df`` degrees of freedom (closed form for whole ``df``)."""
    theta = math.atan(t / math.sqrt(df))
    sin, cos = math.sin(theta), math.cos(theta)
    if df % 2:
        if df == 1:
            return 2 / math.pi * theta
        term = total = cos
        for j in range(1, (df - 1) // 2):
            term *= 2 * j / (2 * j + 1) * cos * cos
            total += term
        return 2 / math.pi * (theta + sin * total)
    term = total = 1.0
    for j in range(1, df // 2):
        term *= (2 * j - 1) / (2 * j) * cos * cos
        total += term
    return sin * total


def _normal_quantile(p: float) -> float:
    low, high = -40.0, 40.0
    for _ in range(200):
        mid = (low + high) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _t_expansion(df: int, confidence: float) -> float:
    z = _normal_quantile((1 + confidence) / 2)
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def _t_exact(df: int, confidence: float) -> float:
    low, high = 0.0, 1.0
    while _t_central(high, df) < confidence:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if _t_central(mid, df) < confidence:
            low = mid
        else:
            high = mid
        if high - low < 1e-13 * high:
            break
    return (low + high) / 2


@lru_cache(maxsize=4096)
def t_critical(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided critical value of Student's t: P(|T| < t) = ``confidence``."""
    if df < 1:
        raise ValueError("a t critical value needs at least one degree of freedom")
    if not 0 < confidence < 1:
        raise ValueError("confidence is a probability strictly between 0 and 1")
    return _t_exact(df, confidence) if df <= EXACT_T_MAX_DF else _t_expansion(df, confidence)


def describe(values: Sequence[float | int | bool | None], confidence: float = CONFIDENCE) -> dict:
    """n, mean, sample std and the confidence interval of the mean of the values that are not None
    (std and interval are None below two values)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(xs)
    if not n:
        return {"n": 0, "mean": None, "std": None, "ci95": None}
    mean = math.fsum(xs) / n
    if n < 2:
        return {"n": 1, "mean": mean, "std": None, "ci95": None}
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_critical(n - 1, confidence) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci95": [mean - half, mean + half]}
