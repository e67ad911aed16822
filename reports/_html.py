"""The self-contained HTML report: one file, inline CSS and PNG charts, no scripts, everything escaped.

Rendered with jinja2 with autoescaping on, so model and distractor text (which may contain markup such
as `<script>`) always shows as text.
"""

from __future__ import annotations

from datetime import datetime, timezone

from jinja2 import Environment, StrictUndefined

from adversary import __version__
from adversary.reports import _charts
from adversary.reports._collect import RunReport
from adversary.reports._format import agreement_text, corrected_rate, interval, pct

TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>adversary robustness report: {{ title }}</title>
<style>
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1100px; padding: 1.5em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.5em; } .muted { color: #666; } .small { font-size: .85em; }
table { border-collapse: collapse; margin: .6em 0; } th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.headline { display: flex; flex-wrap: wrap; gap: 1em; margin: 1em 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .7em 1em; min-width: 12em; }
.card .value { font-size: 1.8em; font-weight: 600; } .card .label { color: #666; font-size: .85em; }
.chart { max-width: 100%; height: auto; display: block; margin: .5em 0; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
pre.text { white-space: pre-wrap; word-break: break-word; background: #fafafa; border: 1px solid #eee; padding: .4em .6em; margin: .2em 0; font: 13px/1.4 ui-monospace, monospace; }
.reply { border-left: 3px solid #c0392b; }
</style>
</head>
<body>
<h1>adversary robustness report</h1>
<p class="muted">{{ title }} · generated {{ generated }} by adversary {{ version }}</p>

{% if runs|length > 1 %}
<h2>Comparison</h2>
<table>
<tr><th>run</th><th>kind</th><th>target</th><th>break rate</th><th>95% CI</th><th>trials</th><th>over-refusal</th><th>OS</th><th>judge</th></tr>
{% for row in comparison %}
<tr><td>{{ row.run }}</td><td>{{ row.kind }}</td><td>{{ row.target }}</td><td class="num">{{ row.break_rate }}</td><td class="num">{{ row.ci }}</td>
<td class="num">{{ row.trials }}</td><td class="num">{{ row.over_refusal }}</td><td class="num">{{ row.os }}</td><td>{{ row.judge }}</td></tr>
{% endfor %}
</table>
{% if comparison_chart %}<img class="chart" alt="break rate per run" src="{{ comparison_chart }}">{% endif %}
{% endif %}

{% for run in runs %}
<h2>{{ run.name }} <span class="muted small">({{ run.kind }})</span></h2>
<div class="headline">
{% for card in run.cards %}<div class="card"><div class="value">{{ card.value }}</div><div class="label">{{ card.label }}</div></div>{% endfor %}
</div>
<p class="small">Judge: <code>{{ run.judge }}</code> · measured agreement with human labels: {{ run.agreement }}.
Break = the judge says the reply left the system prompt's scope; break rate = breaks / valid trials with a Wilson 95% interval;
failed calls are neither breaks nor holds. Judge-corrected = the Rogan-Gladen estimate (p + specificity - 1) / (sensitivity +
specificity - 1) from the judge's measured agreement, clipped to [0, 1]; its 95% interval carries both the sampling
of the trials and the uncertainty of the judge's sensitivity and specificity (Monte Carlo over their Beta posteriors).</p>

<h3>Targets</h3>
<table>
<tr><th>target</th><th>break rate</th><th>95% CI</th><th>judge-corrected</th><th>valid trials</th><th>over-refusal</th><th>AR_ID</th><th>RR_OOD</th><th>OS</th><th>failed calls</th></tr>
{% for t in run.targets %}
<tr><td><code>{{ t.name }}</code></td><td class="num">{{ t.break_rate }}</td><td class="num">{{ t.ci }}</td><td class="num">{{ t.corrected }}</td><td class="num">{{ t.trials }}</td>
<td class="num">{{ t.over_refusal }}</td><td class="num">{{ t.ar_id }}</td><td class="num">{{ t.rr_ood }}</td><td class="num">{{ t.os }}</td><td class="num">{{ t.errors }}</td></tr>
{% endfor %}
</table>

{% if run.search %}
<h3>Search</h3>
<table>
<tr><th>seed break rate</th><td class="num">{{ run.search.seed }}</td><td class="small muted">first trials every seed gets</td></tr>
<tr><th>archive break rate</th><td class="num">{{ run.search.archive }}</td><td class="small muted">fresh confirmation trials of the evolved elites</td></tr>
<tr><th>evolved members</th><td class="num">{{ run.search.evolved_first }}</td><td class="small muted">first trials every evolved member gets, as for the seeds: what the mutations produce</td></tr>
<tr><th>archive</th><td class="num">{{ run.search.archive_size }} elites of {{ run.search.members }} members</td><td class="small muted">fittest breaking member of each embedding cluster</td></tr>
<tr><th>breaking clusters</th><td class="num">{{ run.search.clusters }}</td><td class="small muted">evolved / seeds / without a breaking seed</td></tr>
<tr><th>mutations</th><td class="num">{{ run.search.mutations }}</td><td class="small muted">usable = admitted to the archive</td></tr>
<tr><th>stopped</th><td>{{ run.search.stop_reason }}</td><td></td></tr>
</table>
{% if run.progress_chart %}<img class="chart" alt="search progress" src="{{ run.progress_chart }}">{% endif %}
{% if run.map_chart %}<img class="chart" alt="archive map" src="{{ run.map_chart }}">{% endif %}
{% endif %}

{% for t in run.targets %}
<h3>Break rate by style, insertion turn and scenario: <code>{{ t.name }}</code></h3>
<div class="charts">
{% for chart in t.charts %}<img class="chart" alt="{{ chart.alt }}" src="{{ chart.src }}">{% endfor %}
</div>
{% endfor %}

{% if run.transfer %}
<h3>Transfer between targets</h3>
<p class="small">Row A, column B: of the distractors that break A (more breaks than holds), the share that also break B.</p>
<table>
<tr><th></th>{% for name in run.transfer.names %}<th><code>{{ name }}</code></th>{% endfor %}</tr>
{% for row in run.transfer.rows %}<tr><th><code>{{ row.name }}</code></th>{% for cell in row.cells %}<td class="num">{{ cell }}</td>{% endfor %}</tr>{% endfor %}
</table>
{% endif %}

{% if run.diversity %}
<h3>Diversity</h3>
<table>
<tr><th>set</th><th>texts</th><th>mean pairwise cosine distance</th><th>Self-BLEU</th><th>clusters</th></tr>
{% for row in run.diversity %}<tr><td>{{ row.name }}</td><td class="num">{{ row.count }}</td><td class="num">{{ row.distance }}</td><td class="num">{{ row.self_bleu }}</td><td class="num">{{ row.clusters }}</td></tr>{% endfor %}
</table>
<p class="small muted">{{ run.diversity_definitions }}</p>
{% endif %}

<h3>Hardest distractors</h3>
<table>
<tr><th>#</th><th style="width:38%">distractor</th><th>break rate</th><th style="width:48%">an off-scope reply per target</th></tr>
{% for h in run.hardest %}
<tr><td class="num">{{ loop.index }}</td>
<td>{% if h.bridge %}<div class="small muted">bridge turn:</div><pre class="text">{{ h.bridge }}</pre><div class="small muted">then:</div>{% endif %}
<pre class="text">{{ h.text }}</pre><div class="small muted">{{ h.style }} · {{ h.scenario }}</div></td>
<td class="num">{{ h.rate }}<br><span class="small muted">{{ h.ci }} ({{ h.breaks }}/{{ h.trials }})</span></td>
<td>{% for target, reply in h.replies %}<div class="small"><code>{{ target }}</code></div><pre class="text reply">{{ reply }}</pre>{% else %}<span class="muted">no break recorded</span>{% endfor %}</td></tr>
{% endfor %}
</table>

<h3>Cost</h3>
<table>
<tr><th>target calls</th><td class="num">{{ run.cost.calls }}</td></tr>
<tr><th>failed calls</th><td class="num">{{ run.cost.errors }}</td></tr>
<tr><th>tokens in / out</th><td class="num">{{ run.cost.tokens }}</td></tr>
<tr><th>cost</th><td class="num">{{ run.cost.usd }}</td></tr>
<tr><th>wall time</th><td class="num">{{ run.cost.wall }}</td></tr>
<tr><th>time in target calls</th><td class="num">{{ run.cost.model }}</td></tr>
</table>
{% endfor %}
</body>
</html>
"""

_ENVIRONMENT = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _target_rows(report: RunReport) -> list[dict]:
    rows = []
    agreement = report.metrics.get("judge", {}).get("measured_agreement")
    for name, t in report.metrics.get("targets", {}).items():
        ote = t.get("offtopiceval", {})
        charts = []
        for key, label in (("by_style", "style"), ("by_insertion_turn", "insertion turn (after bot turn)"), ("by_scenario", "scenario")):
            src = _charts.rate_bars(f"by {label}", t.get(key, {}))
            if src:
                charts.append({"alt": f"break rate by {label}", "src": src})
        rows.append({
            "name": name, "break_rate": pct(t.get("break_rate")), "ci": interval(t.get("ci95")), "trials": t.get("trials"),
            "corrected": corrected_rate(t, agreement),
            "over_refusal": "–" if t.get("over_refusal") is None else f"{pct(t['over_refusal'])} {interval(t.get('over_refusal_ci95'))}",
            "ar_id": pct(ote.get("AR_ID")), "rr_ood": pct(ote.get("RR_OOD")), "os": pct(ote.get("OS")),
            "errors": sum(t.get("errors", {}).values()), "charts": charts,
        })
    return rows


def _pooled_cell(entry: dict | None) -> str:
    if not entry or entry.get("break_rate") is None:
        return "–"
    return f"{pct(entry['break_rate'])} {interval(entry['ci95'])} ({entry['breaks']}/{entry['trials']})"


def _run_view(report: RunReport) -> dict:
    m = report.metrics
    targets = _target_rows(report)
    judge = m.get("judge", {})
    agreement = judge.get("measured_agreement")
    view = {
        "name": report.name, "kind": report.kind, "targets": targets, "judge": judge.get("name"),
        "agreement": agreement_text(agreement),
        "cards": [{"value": t["break_rate"], "label": f"break rate · {t['name']}"} for t in targets]
        + [{"value": t["over_refusal"].split(" ")[0], "label": f"over-refusal · {t['name']}"} for t in targets],
        "search": None, "progress_chart": None, "map_chart": None, "transfer": None, "diversity": [],
        "diversity_definitions": "",
    }
    if report.kind == "run":
        clusters = m.get("breaking_clusters", {})
        mutations = m.get("mutations", {})
        view["search"] = {
            "seed": _pooled_cell(m.get("seed_break_rate")), "archive": _pooled_cell(m.get("archive_break_rate")),
            "evolved_first": _pooled_cell(m.get("evolved_first_trials_break_rate")),
            "archive_size": m.get("archive_size"), "members": m.get("members"),
            "clusters": f"{clusters.get('evolved', '–')} / {clusters.get('seeds', '–')} / {clusters.get('without_seeds', '–')}",
            "mutations": f"{mutations.get('usable', 0)} usable of {mutations.get('calls', 0)} ({pct(mutations.get('usable_fraction'))})",
            "stop_reason": m.get("stop_reason"),
        }
        view["cards"].insert(0, {"value": _pooled_cell(m.get("archive_break_rate")).split(" ")[0], "label": "archive break rate"})
        view["progress_chart"] = _charts.search_progress(m.get("generations", []))
        view["map_chart"] = _charts.archive_map(report.archive_map)
    if report.transfer:
        names = list(report.transfer)
        view["transfer"] = {"names": names, "rows": [{"name": a, "cells": [pct(report.transfer[a][b]) for b in names]} for a in names]}
    for name, d in report.diversity.items():
        if name == "definitions":
            view["diversity_definitions"] = "; ".join(f"{k}: {v}" for k, v in d.items())
            continue
        view["diversity"].append({"name": name, "count": d["count"], "distance": _num(d["mean_pairwise_cosine_distance"]),
                                  "self_bleu": _num(d["self_bleu"]), "clusters": d["clusters"]})
    view["hardest"] = [
        {**h, "rate": pct(h["break_rate"]), "ci": interval(h["ci95"]), "replies": sorted(h["replies"].items())}
        for h in report.hardest
    ]
    totals = report.totals
    cost = m.get("cost_usd")
    view["cost"] = {
        "calls": totals["calls"], "errors": totals["errors"],
        "tokens": f"{totals['prompt_tokens']:,} / {totals['completion_tokens']:,}",
        "usd": "–" if cost is None else f"${cost:.4f}", "wall": f"{m.get('total_wall_seconds', m.get('wall_seconds', 0)):.0f} s",
        "model": f"{totals['model_seconds']:.0f} s",
    }
    return view


def _comparison(reports: list[RunReport]) -> tuple[list[dict], str | None]:
    rows, names, rates, cis = [], [], [], []
    for report in reports:
        for target, t in report.metrics.get("targets", {}).items():
            rows.append({"run": report.name, "kind": report.kind, "target": target, "break_rate": pct(t.get("break_rate")),
                         "ci": interval(t.get("ci95")), "trials": t.get("trials"), "over_refusal": pct(t.get("over_refusal")),
                         "os": pct(t.get("offtopiceval", {}).get("OS")), "judge": report.metrics.get("judge", {}).get("name")})
            names.append(f"{report.name} · {target}")
            rates.append(t.get("break_rate"))
            cis.append(t.get("ci95"))
    return rows, _charts.comparison_bars(names, rates, cis, "break rate per run and target")


def render_html(reports: list[RunReport]) -> str:
    """The HTML report of one or more runs (several runs get a side-by-side comparison first)."""
    comparison, comparison_chart = _comparison(reports) if len(reports) > 1 else ([], None)
    return _ENVIRONMENT.from_string(TEMPLATE).render(
        title=", ".join(r.name for r in reports), generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__, runs=[_run_view(r) for r in reports], comparison=comparison, comparison_chart=comparison_chart,
    )
