"""Charts for the HTML report, drawn with matplotlib and embedded inline as base64 PNG data URIs.

PNG keeps the report one self-contained file that opens offline; no text from model output is drawn
into a chart except category labels (styles, turns, scenario ids), which matplotlib renders as pixels.
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

BREAK_COLOUR = "#c0392b"
HOLD_COLOUR = "#2e86c1"


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _error_bars(rates: list[tuple[float, list[float]]]) -> tuple[list[float], list[float]]:
    """Distances from each rate to its interval ends, in percent; never negative (Wilson ends can round past
    a rate of exactly 0 or 1)."""
    return ([max(0.0, 100 * (rate - ci[0])) for rate, ci in rates], [max(0.0, 100 * (ci[1] - rate)) for rate, ci in rates])


def rate_bars(title: str, groups: dict[str, dict]) -> str | None:
    """Horizontal bars of break rate per group with Wilson 95% error bars."""
    entries = [(str(k), v) for k, v in groups.items() if v.get("trials")]
    if not entries:
        return None
    labels = [k if len(k) <= 40 else k[:39] + "…" for k, _ in entries]
    rates = [100 * v["rate"] for _, v in entries]
    low, high = _error_bars([(v["rate"], v["ci95"]) for _, v in entries])
    figure, axes = plt.subplots(figsize=(6.4, 0.6 + 0.32 * len(entries)))
    positions = list(range(len(entries)))[::-1]
    axes.barh(positions, rates, xerr=[low, high], color=BREAK_COLOUR, alpha=0.8, capsize=3)
    axes.set_yticks(positions, labels)
    axes.set_xlim(0, 100)
    axes.set_xlabel("break rate (%), Wilson 95% interval")
    axes.set_title(title)
    axes.grid(axis="x", alpha=0.3)
    return _png(figure)


def search_progress(generations: list[dict]) -> str | None:
    """Best and mean elite break rate (posterior means, as the live progress shows them; campaigns stored before
    the mean posterior mean was kept show the raw mean of search trials), archive size and QD score over target calls."""
    rows = [g for g in generations if g.get("calls") is not None]
    if len(rows) < 2:
        return None
    calls = [g["calls"] for g in rows]
    figure, (rates, sizes) = plt.subplots(1, 2, figsize=(10, 3.4))
    mean = (("mean_posterior_mean", "mean (posterior mean)") if any(g.get("mean_posterior_mean") is not None for g in rows)
            else ("mean_break_rate", "mean (search trials, selection-biased)"))
    for key, label, style in (("best_posterior_mean", "best (posterior mean)", "-"), (*mean, "--")):
        values = [None if g.get(key) is None else 100 * g[key] for g in rows]
        rates.plot(calls, values, style, label=label, color=BREAK_COLOUR)
    rates.set_ylim(0, 100)
    rates.set_xlabel("target calls")
    rates.set_ylabel("archive break rate (%)")
    rates.legend(loc="lower right")
    rates.grid(alpha=0.3)
    sizes.plot(calls, [g.get("archive_size") for g in rows], label="archive size (elites)", color="#555")
    sizes.plot(calls, [g.get("members") for g in rows], ":", label="members", color="#555")
    qd = sizes.twinx()
    qd.plot(calls, [g.get("qd_score") for g in rows], label="QD score", color=HOLD_COLOUR)
    qd.set_ylabel("QD score (sum of elite posterior means)")
    sizes.set_xlabel("target calls")
    sizes.legend(loc="upper left")
    sizes.grid(alpha=0.3)
    figure.suptitle("Search progress")
    return _png(figure)


def archive_map(points: list[dict]) -> str | None:
    """The archive's embeddings in 2-D (PCA), coloured by break rate; seeds hollow, elites outlined."""
    if len(points) < 2:
        return None
    figure, axes = plt.subplots(figsize=(6.4, 5))
    evolved = [p for p in points if not p["seed"]]
    seeds = [p for p in points if p["seed"]]
    scatter = None
    if evolved:
        scatter = axes.scatter([p["x"] for p in evolved], [p["y"] for p in evolved], c=[100 * p["break_rate"] for p in evolved],
                               cmap="RdYlBu_r", vmin=0, vmax=100, s=[60 if p["elite"] else 18 for p in evolved],
                               edgecolors=["black" if p["elite"] else "none" for p in evolved], label="evolved")
    if seeds:
        scatter = axes.scatter([p["x"] for p in seeds], [p["y"] for p in seeds], c=[100 * p["break_rate"] for p in seeds],
                               cmap="RdYlBu_r", vmin=0, vmax=100, marker="s", s=28, label="seeds")
    figure.colorbar(scatter, ax=axes, label="break rate (%)")
    axes.set_xlabel("principal component 1")
    axes.set_ylabel("principal component 2")
    axes.set_title("Archive in embedding space (PCA); large outlined = elites")
    axes.legend(loc="best")
    return _png(figure)


def comparison_bars(names: list[str], rates: list[float | None], cis: list[list[float] | None], title: str) -> str | None:
    """Break rate of several runs side by side."""
    entries = [(n, r, c) for n, r, c in zip(names, rates, cis) if r is not None]
    if len(entries) < 2:
        return None
    figure, axes = plt.subplots(figsize=(6.4, 0.8 + 0.4 * len(entries)))
    positions = list(range(len(entries)))[::-1]
    axes.barh(positions, [100 * r for _, r, _ in entries], xerr=list(_error_bars([(r, c) for _, r, c in entries])),
              color=BREAK_COLOUR, alpha=0.8, capsize=3)
    axes.set_yticks(positions, [n for n, _, _ in entries])
    axes.set_xlim(0, 100)
    axes.set_xlabel("break rate (%), Wilson 95% interval")
    axes.set_title(title)
    return _png(figure)
