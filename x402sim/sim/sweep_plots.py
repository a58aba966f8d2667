"""Plots of a sweep: a metric's mean against a numeric grid key with its 95% band, and the
break-even price per request against gas price.

Rules:

* Every function reads a ``SweepResult`` (its per-combination statistics) and recomputes nothing
  but the break-even crossings; they return a ``matplotlib.figure.Figure`` on the Agg canvas (or
  draw into the ``ax`` given, e.g. from a notebook's pyplot), never touching pyplot's state.
* One line per combination of the other grid keys; a band where a point has a confidence
  interval (two runs or more). The x axis is logarithmic when every value is positive and they
  span two decades or more; the break-even plot is log-log whenever its values are positive.
* ``break_even_crossings``: for each line, the gas price at which the break-even price equals each
  of the scenario's request prices, interpolated linearly between the two grid points around it
  (exact while the gas a settlement uses does not change: its cost is gas x gas price plus a part,
  the rollup's L1 data fee, that does not depend on it); None when the line does not cross the
  price inside the grid, with ``range_usd`` saying on which side it stays.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .stats import is_number
from .toml_text import toml_literal

DPI = 100
BREAK_EVEN = "break_even_price_usd"


def _figure() -> Figure:
    fig = Figure(figsize=(8, 5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _axes(ax):
    if ax is None:
        fig = _figure()
        return fig, fig.add_subplot()
    return ax.figure, ax


def _literal(value: Any) -> str:
    return value if isinstance(value, str) else toml_literal(value)


def numeric_keys(result) -> list[str]:
    """The grid keys whose values are all numbers, with two values or more."""
    return [k for k, vs in result.grid.items() if len(vs) > 1 and all(is_number(v) for v in vs)]


def lines(result, key: str, metric: str) -> dict[tuple, list[tuple[float, dict]]]:
    """{other parameters: [(value of ``key``, statistics of ``metric``), ...] sorted by value}."""
    out: dict[tuple, list[tuple[float, dict]]] = {}
    for s in result.stats:
        params = s["parameters"]
        other = tuple(
            (k, v if isinstance(v, int | float | str) else _literal(v))
            for k, v in params.items()
            if k != key and len(result.grid[k]) > 1
        )
        out.setdefault(other, []).append((float(params[key]), s["metrics"][metric]))
    return {other: sorted(points, key=lambda p: p[0]) for other, points in out.items()}


def _label(other: tuple) -> str:
    return ", ".join(f"{k}={_literal(v)}" for k, v in other)


def _draw(ax, points: list[tuple[float, dict]], label: str | None, **style) -> bool:
    shown = [(x, d) for x, d in points if d["mean"] is not None]
    if not shown:
        return False
    xs = [x for x, _ in shown]
    means = [d["mean"] for _, d in shown]
    (line,) = ax.plot(xs, means, marker="o", label=label, **style)
    lows = [d["ci95"][0] if d["ci95"] else d["mean"] for _, d in shown]
    highs = [d["ci95"][1] if d["ci95"] else d["mean"] for _, d in shown]
    ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.2, linewidth=0)
    return True


def _log_x(ax, values: list[float]) -> None:
    if values and min(values) > 0 and max(values) / min(values) >= 100:
        ax.set_xscale("log")


def _runs_text(result) -> str:
    return f"{result.runs} run{'s' if result.runs != 1 else ''} per point"


def plot_metric(result, metric: str, key: str, ax=None) -> Figure:
    """``metric``'s mean against the numeric grid key ``key``, with a shaded 95% band."""
    fig, ax = _axes(ax)
    drawn = False
    for other, points in lines(result, key, metric).items():
        drawn |= _draw(ax, points, _label(other) or None)
    if not drawn:
        ax.text(0.5, 0.5, f"no values of {metric}", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    _log_x(ax, [float(v) for v in result.grid[key]])
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    ax.set_title(f"{result.scenario}: {metric} (mean and 95% interval, {_runs_text(result)})")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return fig


def _interpolate(x0: float, y0: float, x1: float, y1: float, y: float) -> float:
    return x0 + (y - y0) * (x1 - x0) / (y1 - y0)


def break_even_crossings(result, gas_key: str | None = None) -> list[dict]:
    """For each combination of the other grid keys: {"parameters", "crossings": {price: gas}}."""
    gas_key = gas_key or result.gas_key
    if gas_key is None:
        return []
    out = []
    for other, points in lines(result, gas_key, BREAK_EVEN).items():
        known = [(x, d["mean"]) for x, d in points if d["mean"] is not None]
        crossings: dict[str, float | None] = {}
        for price in result.prices_usd:
            at = None
            for (x0, y0), (x1, y1) in itertools.pairwise(known):
                if y0 == price:
                    at = x0
                elif (y0 - price) * (y1 - price) < 0 or y1 == price:
                    at = _interpolate(x0, y0, x1, y1, price)
                if at is not None:
                    break
            crossings[f"{price:g}"] = at
        means = [y for _, y in known]
        span = [min(means), max(means)] if means else None
        out.append({"parameters": dict(other), "crossings": crossings, "range_usd": span})
    return out


def plot_break_even(result, gas_key: str | None = None, ax=None) -> Figure:
    """The break-even price per request (settlement gas per paid request) against the gas price
    ``gas_key`` (default: ``result.gas_key``), with the scenario's prices as reference lines."""
    gas_key = gas_key or result.gas_key
    if gas_key is None:
        raise ValueError("the grid has no numeric gas price key (a key ending in _gwei)")
    fig, ax = _axes(ax)
    values = []
    for other, points in lines(result, gas_key, BREAK_EVEN).items():
        _draw(ax, points, _label(other) or "break-even price (simulated)")
        values += [d["mean"] for _, d in points if d["mean"] is not None]
        values += [v for _, d in points if d["ci95"] for v in d["ci95"]]
    xs = [float(v) for v in result.grid[gas_key]]
    for price in result.prices_usd:
        ax.axhline(price, color="grey", linestyle="--", linewidth=1)
        ax.annotate(
            f"price ${price:g}",
            (1, price),
            xycoords=("axes fraction", "data"),
            ha="right",
            va="bottom",
            color="grey",
            fontsize=9,
        )
    for line in break_even_crossings(result, gas_key):
        for price, gas in line["crossings"].items():
            if gas is not None:
                ax.plot([gas], [float(price)], marker="x", color="black", markersize=9)
                ax.annotate(f" {gas:.3g} gwei", (gas, float(price)), fontsize=8, va="top")
    if xs and min(xs) > 0:
        ax.set_xscale("log")
    if values and min(values + result.prices_usd) > 0:
        ax.set_yscale("log")
    ax.set_xlabel(f"gas price: {gas_key}")
    ax.set_ylabel("break-even price per request (USD)\n= settlement gas / paid requests")
    ax.set_title(f"{result.scenario}: where a request stops paying for its settlement ({_runs_text(result)})")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def write_plots(result, folder: Path, metrics: list[str]) -> list[str]:
    """Write ``<metric>-vs-<key>.png`` for each numeric grid key and ``break_even.png`` (with a gas
    price key) into ``folder``; return the file names."""
    names = []
    for key in numeric_keys(result):
        for metric in metrics:
            if not any(s["metrics"][metric]["mean"] is not None for s in result.stats):
                continue
            name = f"{metric}-vs-{key}.png"
            plot_metric(result, metric, key).savefig(folder / name, dpi=DPI)
            names.append(name)
    if result.gas_key is not None and any(s["metrics"][BREAK_EVEN]["mean"] is not None for s in result.stats):
        plot_break_even(result).savefig(folder / "break_even.png", dpi=DPI)
        names.append("break_even.png")
    return names
