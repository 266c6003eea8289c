"""Comparison tables and the self-contained HTML report of ``recloop compare``.

The report holds, for models evaluated on one split: the metrics table with 95%
confidence intervals, paired tests against the best model, three plots (metric
bars with intervals, popularity bias of the recommendations, accuracy by how active
the user is), fairness across users (accuracy by user group with intervals and a test
of the gap, each model's calibration error) and, when given, the data quality checks of
``recloop data check``. Plots are PNGs embedded as base64, so the file travels alone.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recloop.evaluate.evaluator import EvaluationResult

MAIN_METRICS = ("ndcg", "hr", "recall", "precision", "mrr", "map")


def comparison_table(results: dict[str, EvaluationResult], fit_seconds: dict[str, float] | None = None,
                     columns: Sequence[str] | None = None) -> str:
    """A fixed-width text table: one row per model, one column per metric."""
    if not results:
        return "(no results)"
    first = next(iter(results.values()))
    summary = first.summary()
    if columns is None:
        k = 10 if 10 in first.config.k else first.config.k[0]
        columns = [f"{m}@{k}" for m in MAIN_METRICS if f"{m}@{k}" in summary]
        columns += [c for c in (f"coverage@{k}", f"novelty@{k}", f"popularity@{k}") if c in summary]
    header = ["model", *columns] + (["fit s", "eval s"] if fit_seconds else [])
    rows = []
    for label, result in results.items():
        values = result.summary()
        row = [label] + [_fmt(values.get(c)) for c in columns]
        if fit_seconds:
            row += [f"{fit_seconds.get(label, float('nan')):.1f}", f"{result.seconds:.1f}"]
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"({_users_note(results)})"] if any(r.sampled for r in results.values()) else []
    return "\n".join(lines)


def _users_note(results: dict[str, EvaluationResult]) -> str:
    """Who the metrics are over: one note if every model saw the same users, else one per model."""
    notes = {label: result.users_note() for label, result in results.items()}
    if len(set(notes.values())) == 1:
        return f"evaluated {next(iter(notes.values()))}"
    return "; ".join(f"{label} evaluated {note}" for label, note in notes.items())


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"


def write_html_report(path: Path, title: str, results: dict[str, EvaluationResult],
                      fit_seconds: dict[str, float], item_counts: np.ndarray, dataset_info: dict,
                      config_text: str = "", provenance: dict | None = None,
                      data_quality: dict | None = None) -> Path:
    """Write the comparison report to ``path``; ``provenance`` (recloop version, commit,
    date, machine: :func:`recloop.utils.provenance`, taken now when not given) closes it.
    ``data_quality``: :meth:`recloop.data.quality.DataReport.to_dict`, shown as a section."""
    import matplotlib

    from recloop.utils import provenance as current_provenance

    matplotlib.use("Agg")
    first = next(iter(results.values()))
    k = 10 if 10 in first.config.k else first.config.k[0]
    metrics = [f"{m}@{k}" for m in MAIN_METRICS if f"{m}@{k}" in first.per_user]
    best = max(results, key=lambda label: results[label].summary().get(f"ndcg@{k}", 0.0))
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Data</h2>", _dict_table(dataset_info),
        "<h2>Metrics</h2>", _metrics_table(results, fit_seconds),
        f"<h2>Paired tests against the best model ({html.escape(best)}) on NDCG@{k}</h2>",
        _paired_table(results, best, f"ndcg@{k}"),
        "<h2>Accuracy with 95% confidence intervals</h2>", _img(_metric_bars(results, metrics)),
        "<h2>Popularity bias</h2>",
        ("<p>Share of each model's recommendations by item popularity decile (decile 1 holds the most "
         "popular tenth of the catalog), with the average popularity of the recommended items.</p>"),
        _img(_popularity_plot(results, item_counts, k)),
        "<h2>Accuracy by user activity</h2>",
        "<p>NDCG by how many interactions the user had before the test period (quintile buckets).</p>",
        _img(_activity_plot(results, f"ndcg@{k}")),
        *_fairness_section(results, k),
    ]
    if data_quality:
        parts += ["<h2>Data quality</h2>", _quality_table(data_quality)]
    if config_text:
        parts += ["<h2>Configuration</h2>", f"<pre>{html.escape(config_text)}</pre>"]
    parts += ["<h2>Provenance</h2>", _dict_table(provenance if provenance is not None else current_provenance())]
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}")
    document = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path


def _dict_table(info: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_cell(v))}</td></tr>" for k, v in info.items())
    return f"<table>{rows}</table>"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in value.items())
    return str(value)


def _metrics_table(results: dict[str, EvaluationResult], fit_seconds: dict[str, float]) -> str:
    """Metrics as rows and models as columns: the table stays readable with many metrics."""
    first = next(iter(results.values()))
    names = list(first.summary())
    head = "".join(f"<th>{html.escape(label)}</th>" for label in ["metric", *results])
    body = []
    for name in names:
        cells = []
        for result in results.values():
            value = result.summary().get(name, float("nan"))
            if name in result.per_user:
                cells.append(f"{value:.4f} <small>±{result.interval(name).half_width:.4f}</small>")
            else:
                cells.append(f"{value:.4f}")
        body.append(f"<tr><td>{html.escape(name)}</td>{''.join(f'<td>{c}</td>' for c in cells)}</tr>")
    for name, values in (("fit seconds", [fit_seconds.get(label, float("nan")) for label in results]),
                         ("evaluation seconds", [r.seconds for r in results.values()])):
        body.append(f"<tr><td>{name}</td>{''.join(f'<td>{v:.1f}</td>' for v in values)}</tr>")
    return (f"<table><tr>{head}</tr>{''.join(body)}</table><p><small>± is the half-width of the 95% confidence "
            f"interval over users; {html.escape(_users_note(results))}.</small></p>")


def _paired_table(results: dict[str, EvaluationResult], best: str, metric: str) -> str:
    rows = []
    for label, result in results.items():
        if label == best or metric not in result.per_user:
            continue
        test = results[best].compare(result, metric)
        d = test.difference
        rows.append(f"<tr><td>{html.escape(best)} vs {html.escape(label)}</td><td>{d.mean:+.4f}</td>"
                    f"<td>{d.low:+.4f} .. {d.high:+.4f}</td><td>{test.t_pvalue:.2g}</td>"
                    f"<td>{test.wilcoxon_pvalue:.2g}</td></tr>")
    head = "<tr><th>pair</th><th>mean difference</th><th>95% CI</th><th>paired t p</th><th>Wilcoxon p</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>" if rows else "<p>(one model only)</p>"


def _img(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return f"<img alt='plot' src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"


def _metric_bars(results: dict[str, EvaluationResult], metrics: list[str]):
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(results)
    x = np.arange(len(metrics))
    for i, (label, result) in enumerate(results.items()):
        intervals = [result.interval(m) for m in metrics]
        means = [iv.mean for iv in intervals]
        errors = [iv.half_width for iv in intervals]
        ax.bar(x + i * width, means, width, yerr=errors, capsize=3, label=label)
    ax.set_xticks(x + width * (len(results) - 1) / 2, metrics)
    ax.set_ylabel("mean over test users")
    ax.legend(fontsize="small")
    return figure


def _popularity_plot(results: dict[str, EvaluationResult], item_counts: np.ndarray, k: int):
    import matplotlib.pyplot as plt

    order = np.argsort(-item_counts, kind="stable")
    decile = np.empty(len(item_counts), dtype=np.int64)
    decile[order] = np.arange(len(item_counts)) * 10 // max(1, len(item_counts))
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, result in results.items():
        lists = result.recommendations[:, :k]
        shown = lists[lists >= 0]
        share = np.bincount(decile[shown], minlength=10) / max(1, len(shown))
        left.plot(np.arange(1, 11), share, marker="o", label=label)
    left.set_xlabel("item popularity decile (1 = most popular)")
    left.set_ylabel(f"share of top-{k} recommendations")
    left.legend(fontsize="small")
    labels = list(results)
    arp = [results[label].summary().get(f"popularity@{k}", np.nan) for label in labels]
    right.barh(labels, arp)
    right.axvline(item_counts.mean(), color="gray", linestyle="--", label="catalog mean")
    right.set_xlabel("average popularity of recommended items (users)")
    right.legend(fontsize="small")
    return figure


def _activity_plot(results: dict[str, EvaluationResult], metric: str):
    import matplotlib.pyplot as plt

    first = next(iter(results.values()))
    edges = np.unique(np.quantile(first.history_lengths, np.linspace(0, 1, 6)))
    figure, ax = plt.subplots(figsize=(10, 4))
    n_buckets = max(1, len(edges) - 1)
    width = 0.8 / len(results)
    for i, (label, result) in enumerate(results.items()):
        bucket = np.clip(np.searchsorted(edges, result.history_lengths, side="right") - 1, 0, n_buckets - 1)
        values = result.per_user[metric]
        means = [values[bucket == b].mean() if (bucket == b).any() else 0.0 for b in range(n_buckets)]
        ax.bar(np.arange(n_buckets) + i * width, means, width, label=label)
    names = [f"{int(edges[b])}-{int(edges[b + 1])}" for b in range(n_buckets)]
    ax.set_xticks(np.arange(n_buckets) + width * (len(results) - 1) / 2, names)
    ax.set_xlabel("interactions before the test period")
    ax.set_ylabel(metric)
    ax.legend(fontsize="small")
    return figure


def _fairness_section(results: dict[str, EvaluationResult], k: int) -> list[str]:
    """Accuracy by user group (``extra["user_groups"]``) and calibration error."""
    parts = ["<h2>Fairness across users</h2>"]
    calibration = f"calibration@{k}"
    if any(calibration in r.per_user for r in results.values()):
        rows = "".join(f"<tr><td>{html.escape(label)}</td><td>{r.interval(calibration).mean:.4f} "
                       f"<small>±{r.interval(calibration).half_width:.4f}</small></td></tr>"
                       for label, r in results.items() if calibration in r.per_user)
        note = ("<p>Calibration error: KL divergence of each user's historical genre mix from the genre mix "
                f"of the top-{k} list (Steck, RecSys 2018; 0 = the list matches the history), mean over test "
                "users with its 95% interval.</p>")
        parts += [note, f"<table><tr><th>model</th><th>{calibration}</th></tr>{rows}</table>"]
    groups = {label: r.extra.get("user_groups") for label, r in results.items() if r.extra.get("user_groups")}
    if not groups:
        return parts
    first = next(iter(groups.values()))
    metric = next(iter(first.values()))["metric"]
    parts.append(f"<p>{html.escape(metric)} by user group: mean, 95% interval and users per group. The gap is "
                 "the best minus the worst group (groups of at least "
                 f"{next(iter(first.values()))['min_size']} users), tested with Welch's t and Mann-Whitney U; "
                 "Kruskal-Wallis tests all those groups at once.</p>")
    for attribute in first:
        labels = list(groups)
        head = "".join(f"<th>{html.escape(label)}</th>" for label in ["group", "users", *labels])
        body = []
        for position, row in enumerate(first[attribute]["groups"]):
            cells = []
            for label in labels:
                group = groups[label].get(attribute, {}).get("groups", [])
                entry = group[position] if position < len(group) else None
                cells.append("-" if entry is None else
                             f"{entry['mean']:.4f} <small>[{entry['ci95'][0]:.3f}, {entry['ci95'][1]:.3f}]</small>")
            body.append(f"<tr><td>{html.escape(row['group'])}</td><td>{row['n']}</td>"
                        + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        gaps = []
        for label in labels:
            entry = groups[label].get(attribute, {})
            gap = entry.get("gap")
            gaps.append("-" if gap is None else
                        f"{html.escape(gap['best'])} - {html.escape(gap['worst'])} = {gap['difference']:+.4f} "
                        f"[{gap['ci95'][0]:+.3f}, {gap['ci95'][1]:+.3f}]; Welch p {gap['welch_p']:.2g}, "
                        f"MW p {gap['mannwhitney_p']:.2g}; Kruskal p {entry.get('kruskal_p', float('nan')):.2g}")
        body.append("<tr><td>gap</td><td></td>" + "".join(f"<td style='text-align:left'>{g}</td>" for g in gaps)
                    + "</tr>")
        parts += [f"<h3>by {html.escape(attribute)}</h3>", f"<table><tr>{head}</tr>{''.join(body)}</table>"]
    return parts


def _quality_table(report: dict) -> str:
    rows = []
    for name, check in report["checks"].items():
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{check['count']:,}</td><td>{check['total']:,} "
                    f"{html.escape(check['unit'])}</td><td>{check['share']:.2%}</td><td>{check['status']}</td>"
                    f"<td style='text-align:left'>{html.escape(check['detail'])}</td></tr>")
    head = "<tr><th>check</th><th>count</th><th>of</th><th>share</th><th>status</th><th>detail</th></tr>"
    drops = report.get("filters_drop")
    note = ("" if not drops else "<p>[data.filters] dropped: "
            + html.escape(", ".join(f"{k} {v:,} rows" for k, v in drops.items())) + "</p>")
    return (f"<p><code>recloop data check</code> on {html.escape(str(report['dataset']))} as evaluated (after any "
            "[data.filters] and preprocessing; <code>recloop data check CONFIG</code> checks the raw log).</p>"
            f"<table>{head}{''.join(rows)}</table>{note}")
