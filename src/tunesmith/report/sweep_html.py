"""DIR/sweep.html: the search at a glance, drawn by Optuna's own plots (rendered to inline SVG, so the page stays
self-contained and script-free like every other report): optimisation history, parameter importances, parallel
coordinates, the Pareto front of a two-objective search; then the winner's test score, the best config as YAML to
copy, and every trial with its state and a link to its run report.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from tunesmith.report.html import CSS, Raw, cards, h, table
from tunesmith.rundir import write_text


def _svg(draw) -> str:
    """One Optuna matplotlib plot as inline SVG; a plot Optuna cannot draw yet (too few trials) is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental on every call
            axes = draw()
    except (ValueError, RuntimeError, ZeroDivisionError):
        plt.close("all")
        return ""
    figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
    figure.set_size_inches(7.0, 3.8)
    figure.tight_layout()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    plt.close("all")
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    start, end = text.find("<metadata>"), text.find("</metadata>")
    return text[:start] + text[end + len("</metadata>") :] if 0 <= start < end else text


def plots(study, names: list[str]) -> list[tuple[str, str]]:
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    out: list[tuple[str, str]] = []
    if len(names) > 1:
        out.append(("Pareto front (validation)", _svg(lambda: ovm.plot_pareto_front(study, target_names=names))))
        target = {"target": lambda t: t.values[0], "target_name": names[0]}
    else:
        out.append(("Optimisation history (validation)", _svg(lambda: ovm.plot_optimization_history(study))))
        target = {"target_name": names[0]}
    if len(complete) >= 2:
        out.append(("Parameter importances (fANOVA)", _svg(lambda: ovm.plot_param_importances(study, **target))))
        out.append(("Parallel coordinates", _svg(lambda: ovm.plot_parallel_coordinate(study, **target))))
    return [(title, svg) for title, svg in out if svg]


def _param(value: object) -> object:
    return f"{value:.4g}" if isinstance(value, float) else value


def _value(values: list[float] | None) -> str:
    return ", ".join(f"{v:.4f}" for v in values) if values else ""


def write_sweep_report(folder: Path, summary: dict, study) -> Path:
    names = summary["objective"]
    best, test = summary["best"], summary["test"]
    sections = [
        "<h1>Sweep</h1>",
        f'<div class="meta">{h(summary["split"]["trials"])} for every trial; {h(summary["split"]["winner"])} for '
        "the winner alone. The validation numbers chose the winner; only the test numbers say how good it is.</div>",
        cards(
            [
                (str(summary["trials_run"]), "trials", ""),
                (str(summary["finished"]), "finished", ""),
                (str(summary["pruned"]), "pruned", ""),
                (str(summary["failed"]), "failed", "warn" if summary["failed"] else ""),
                (f"{summary['seconds'] / 60:.1f} min", "wall time", ""),
            ]
        ),
        "<h2>Winner</h2>",
        f"<p>Trial {best['trial']} (validation: {h(_value(list(best['validation'].values())))} "
        f"{h(' / '.join(names))}), trained again and scored once on the test split: "
        f'<a href="winner/report.html">its run report</a>.</p>',
    ]
    comparison = test.get("comparison") or {}
    if comparison:
        rows = [
            (
                metric,
                f"{c['base']:.4f}",
                f"{c['tuned']:.4f}",
                f"{c['diff']:+.4f}",
                f"[{c['low']:+.4f}, {c['high']:+.4f}]",
            )
            for metric, c in comparison.items()
        ]
        sections.append(
            f"<h3>Test split: winner vs the strongest base ({h(test.get('comparison_base') or '')}), paired 95% "
            "interval</h3>" + table(["metric", "base", "winner", "change", "95% interval"], rows, numeric=(1, 2, 3, 4))
        )
    else:
        sections.append(f"<p>Test-split held-out loss: {test['metrics']['loss']:.4f}</p>")
    trivial = test.get("versus_trivial")
    if trivial and not trivial.get("beats"):
        sections.append(f'<div class="banner bad">{h(trivial["message"])}</div>')
    sections.append("<h3>Best config (copy it)</h3><pre>" + h(best["config"]) + "</pre>")
    sections.append("<h2>Search</h2>")
    sections += [f"<h3>{h(title)}</h3>{svg}" for title, svg in plots(study, names)]
    keys = sorted({k for t in summary["trials"] for k in t["params"]})
    rows = []
    for t in summary["trials"]:
        link = Raw(f'<a href="{h(t["run_dir"])}/report.html">{h(t["run_dir"])}</a>') if t["state"] == "complete" else ""
        note = t["reason"] or (f"pruned at step {t['pruned_at']}" if t["pruned_at"] else "")
        if t["retry_of"] is not None:
            note = f"retry of trial {t['retry_of']} " + note
        params = [_param(t["params"].get(k, "")) for k in keys]
        rows.append([t["number"], t["state"], _value(t["values"]), *params, t["seconds"] or "", note, link])
    header = ["trial", "state", " / ".join(names), *keys, "seconds", "note", "run"]
    sections.append("<h3>Trials</h3>" + table(header, rows, numeric=(0, 2)))
    body = "\n".join(sections)
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{h(folder.name)} · tunesmith sweep'
        f"</title><style>{CSS}</style></head><body><main>{body}"
        "<footer>Written by tunesmith from the study (study.db) and the trial run folders.</footer>"
        "</main></body></html>"
    )
    path = folder / "sweep.html"
    write_text(path, page)
    return path
