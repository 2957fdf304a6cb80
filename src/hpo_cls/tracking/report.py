"""``hpo-cls report``: one self-contained HTML page per sweep, from MLflow data only.

Interactive Plotly figures (:mod:`hpo_cls.tracking.report_figures`) and a table of the top trials with
their MLflow links (to ``--ui-url``, default where ``hpo-cls ui`` serves) and the command that promotes them. plotly.js is inlined, so the page opens
without a network; every sweep logs it as ``report.html`` on its parent run.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hpo_cls.console import format_cell
from hpo_cls.outputs import atomic_write
from hpo_cls.tracking.report_data import SweepData, load_sweep_data
from hpo_cls.tracking.store import find_sweep
from hpo_cls.tracking.ui import is_local_store, run_url, runs_view_url, ui_base_url
from hpo_cls.tracking.uri import redact_uri

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = ["REPORT_ARTIFACT", "render_report", "write_report", "log_sweep_report"]

REPORT_ARTIFACT = "report.html"
TOP_TRIALS = 10

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1f272d; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .3rem; }
.meta { color: #5f7281; } code { background: #f3f5f7; padding: .1rem .3rem; border-radius: 3px; }
table { border-collapse: collapse; font-size: .85rem; width: 100%; table-layout: auto; }
th, td { padding: .25rem .45rem; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
th { border-bottom: 2px solid #ccc; font-size: .8rem; } tr:nth-child(even) td { background: #f7f9fa; }
td.param { max-width: 9rem; } .baseline { font-size: .75rem; background: #e8eef3; border-radius: 3px;
  padding: 0 .25rem; margin-left: .3rem; white-space: nowrap; }
.warn { color: #93320b; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status-completed { color: #277c43; } .status-early_stopped { color: #be501e; } .status-failed { color: #c82d4c; }
"""


def _e(value) -> str:
    return html.escape(str(value))


def _promote_command(data: SweepData, tracking_uri: str, top: int, early: bool) -> str:
    flags = " --include-early-stopped" if early else ""
    return (f"hpo-cls promote --top {top}{flags} --sweep {data.sweep.sweep_id} --experiment "
            f"{data.experiment} --tracking-uri {redact_uri(tracking_uri)}")


def _top_table(data: SweepData, tracking_uri: str, base: str) -> str:
    """The best trials, each with its MLflow link and the ``--top`` that promotes it (and those above)."""
    ranked = data.ranked()[:TOP_TRIALS]
    if not ranked:
        return "<p>No trial has a score yet.</p>"
    header = ["#", "trial", "status", "epochs", data.rule.best_metric, *data.searched, "promoted by"]
    rows, completed = [], 0
    for rank, trial in enumerate(ranked, 1):
        completed += trial.status == "completed"
        early = trial.status != "completed"
        top = rank if early else completed
        link = f'<a href="{_e(run_url(base, data.sweep.experiment_id, trial.run_id))}">{_e(trial.name)}</a>'
        if trial.baseline:
            link += '<span class="baseline" title="trial 0: the spec\'s fixed configuration">baseline</span>'
        cells = [f'<td class="num">{rank}</td>', f"<td>{link}</td>",
                 f'<td class="status-{_e(trial.status)}">{_e(trial.status)}</td>',
                 f'<td class="num">{trial.epochs_run}/{data.epochs}</td>', f'<td class="num">{trial.best:.4f}</td>',
                 *[f'<td class="param">{_e(format_cell(trial.params.get(n, "·")))}</td>' for n in data.searched],
                 f"<td><code>--top {top}{' --include-early-stopped' if early else ''}</code></td>"]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    # Long names break at their underscores, so many searched parameters still fit the page's width.
    head = "".join(f"<th>{_e(h).replace('_', '_<wbr>')}</th>" for h in header)
    best_k = min(3, sum(t.status == "completed" for t in data.ranked())) or 1
    command = _promote_command(data, tracking_uri, best_k, early=not any(t.status == "completed" for t in ranked))
    return (f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"<p>Retrain the best {best_k} to full budget, ensemble and register them:</p>"
            f"<pre><code>{_e(command)}</code></pre>")


def _header(data: SweepData, tracking_uri: str, base: str) -> str:
    sweep = data.sweep
    counts: dict[str, int] = {}
    for t in data.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    ranked = data.ranked()
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(sweep.start_time / 1000)) if sweep.start_time else "?"
    best = f"best {_e(data.metric)} ({data.mode}) <b>{ranked[0].best:.4f}</b> ({_e(ranked[0].name)})" if ranked else "no score yet"
    ui_hint = " (start it with <code>hpo-cls ui</code>)" if is_local_store(tracking_uri) else ""
    return (f"<h1>Sweep {_e(sweep.sweep_id)}</h1>"
            f'<p class="meta">spec {_e(sweep.name)} · started {_e(started)} · {len(data.trials)} trials ('
            + ", ".join(f"{n} {_e(s)}" for s, n in sorted(counts.items())) + f") · {best}</p>"
            f'<p class="meta">MLflow{ui_hint}: <a href="{_e(runs_view_url(base, sweep.experiment_id, sweep.sweep_id))}">'
            f'the sweep\'s runs</a> · <a href="{_e(run_url(base, sweep.experiment_id, sweep.run_id))}">its parent '
            f"run</a> · store <code>{_e(redact_uri(tracking_uri))}</code></p>")


def render_report(data: SweepData, tracking_uri: str, ui_url: str | None = None) -> str:
    """The whole page as one string (plotly.js inlined once, before the first figure); its MLflow links go
    to ``ui_url`` (default: where ``hpo-cls ui`` serves this store)."""
    from hpo_cls.tracking.report_figures import FIGURES, importance_warning

    base = (redact_uri(ui_url) if ui_url else ui_base_url(tracking_uri)).rstrip("/")  # a page is shared: no password
    parts = [_header(data, tracking_uri, base), "<h2>Top trials</h2>", _top_table(data, tracking_uri, base)]
    notes = {"param-importances": importance_warning(data)}
    for i, (element_id, heading, build) in enumerate(FIGURES):
        figure_html = build(data).to_html(full_html=False, include_plotlyjs=(i == 0), div_id=element_id,
                                          config={"displaylogo": False, "responsive": True})
        note = notes.get(element_id)
        parts += [f"<h2>{_e(heading)}</h2>", *([f'<p class="warn">⚠ Importances {_e(note)}.</p>'] if note else []),
                  figure_html]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>hpo-cls sweep '
            f"{_e(data.sweep.sweep_id)}</title><style>{_STYLE}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def write_report(client: MlflowClient, experiment: str, sweep: str | None, out: Path,
                 ui_url: str | None = None) -> tuple[Path, SweepData]:
    """Read the sweep (id or spec name; default the newest) from MLflow and write its report to ``out``."""
    data = load_sweep_data(client, find_sweep(client, experiment, sweep), experiment)
    page = render_report(data, client.tracking_uri, ui_url)
    with atomic_write(out) as f:  # a failed write leaves the old report whole
        f.write(page)
    return Path(out), data


def log_sweep_report(tracking_uri: str, experiment: str, sweep_id: str) -> None:
    """Write the sweep's report and log it as ``report.html`` on its parent run."""
    import tempfile

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        path, data = write_report(client, experiment, sweep_id, Path(tmp, REPORT_ARTIFACT))
        client.log_artifact(data.sweep.run_id, str(path))
