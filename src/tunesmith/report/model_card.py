"""MODEL_CARD.md for a finished run: base, data, hyperparameters, base-vs-tuned results."""

from __future__ import annotations

from pathlib import Path

from tunesmith.config import Config
from tunesmith.eval.headline import headline_metrics, headline_rows, strongest_name, trivial_warning
from tunesmith.report.html import eval_rows, forgetting_rows, task_lines


def _fmt(x: float) -> str:
    return f"{x:.4f}" if abs(x) < 1000 else f"{x:.1f}"


def _headline(base_eval: dict, tuned_eval: dict) -> str:
    """Tuned, the strongest base, the other baselines and the trivial baseline; a sentence when tuned does not
    beat the trivial baseline."""
    metrics = headline_metrics(tuned_eval)
    lines = ["| model | role | " + " | ".join(metrics) + " | how |", "|---|---|" + "---|" * len(metrics) + "---|"]
    for row in headline_rows(base_eval, tuned_eval):
        name = f"**{row.name}**" if row.role in ("tuned", "strongest base") else row.name
        values = " | ".join(f"{row.metrics[m]:.4f}" if m in row.metrics else "" for m in metrics)
        lines.append(f"| {name} | {row.role} | {values} | {row.method} |")
    warning = trivial_warning(tuned_eval)
    return ("\n**Note: " + warning + ".**\n\n" if warning else "\n") + "\n".join(lines) + "\n"


def _preference(tuned_eval: dict) -> str:
    """The preference methods' proof of gain: base vs tuned preference accuracy with its interval, answer lengths."""
    gain = tuned_eval.get("preference")
    if not gain:
        return ""
    what = gain.get("what", "preference accuracy")
    how_base = gain.get("base_method", "the chosen answer likelier per token than the rejected one")
    how_tuned = gain.get("tuned_method", how_base)
    how = how_base if how_base == how_tuned else f"base: {how_base}; tuned: {how_tuned}"
    text = (
        f"\n## Preference ({tuned_eval['metrics']['rows']} held-out rows)\n\n{what[0].upper()}{what[1:]} ({how}): "
        f"base {gain['base']:.3f}, tuned {gain['tuned']:.3f}, change "
        f"{gain['diff']:+.3f} [{gain['low']:+.3f}, {gain['high']:+.3f}] (paired bootstrap, 95%).\n"
    )
    ranking = tuned_eval.get("reward_ranking")
    if ranking:
        text += (
            f"Ranking accuracy (base: {ranking['base_method']}; tuned: {ranking['tuned_method']}): base "
            f"{ranking['base']:.3f}, tuned {ranking['tuned']:.3f}, change {ranking['diff']:+.3f} "
            f"[{ranking['low']:+.3f}, {ranking['high']:+.3f}] (paired bootstrap, 95%).\n"
        )
    judged = tuned_eval.get("win_rate")
    if judged:
        text += (
            f"Judged by the reward model `{judged['judge']}` on {judged['rows']} held-out prompts, the tuned model's "
            f"answer scores above the base's in {judged['win_rate']:.3f} of them [{judged['low']:.3f}, "
            f"{judged['high']:.3f}] (95%; ties count half).\n"
        )
    lengths = tuned_eval.get("lengths") or {}
    if lengths.get("base") is not None and lengths.get("tuned") is not None:
        text += f"Generated answers: {lengths['base']:.1f} words (base), {lengths['tuned']:.1f} words (tuned).\n"
    return text


def _ranks(manifest: dict) -> str:
    """How many processes shared each step, for a data-parallel run (training/distributed.py)."""
    spread = manifest.get("distributed")
    if not spread:
        return ""
    return f", data-parallel on {spread['ranks']} ranks ({spread['mode']}; each step's examples split between them)"


def _reused(base_eval: dict) -> str:
    reused = base_eval.get("reused")
    if not reused:
        return ""
    return (
        f"The base's numbers were read back from an earlier run's identical evaluation (cache key `{reused['key']}`: "
        "the same base, rows, settings and tunesmith code; `eval.reuse_base: false` scores it again).\n\n"
    )


def model_card(cfg: Config, manifest: dict, base_eval: dict, tuned_eval: dict, params: dict) -> str:
    b, t = base_eval["metrics"], tuned_eval["metrics"]
    rows = "\n".join(
        f"| {name} | {_fmt(b[key])} | {_fmt(t[key])} | {_fmt(t[key] - b[key])} |" for key, name in eval_rows(tuned_eval)
    )
    if base_eval.get("general") and tuned_eval.get("general"):
        rows += "".join(
            f"\n| forgetting: {name} | {b_} | {t_} | {d_} {ci} |"
            for name, b_, t_, d_, ci, _ in forgetting_rows(base_eval, tuned_eval)
        )
    data = "\n".join(f"| `{d['path']}` | {d['bytes']} | `{d['sha256'][:16]}…` |" for d in manifest["data"])
    a, tr = cfg.adapter, cfg.train
    adapter = (
        f"LoRA r={a.r}, alpha={a.alpha}, dropout={a.dropout}, targets={a.target_modules}"
        if a.method == "lora"
        else "full fine-tuning"
    )
    task_rows = ""
    for metric, d in tuned_eval.get("comparison", {}).items():
        task_rows += (
            f"| {metric} | {d['base']:.4f} | {d['tuned']:.4f} | {d['diff']:+.4f} | "
            f"[{d['low']:+.4f}, {d['high']:+.4f}] |\n"
        )
    task = (
        f"\n## Task: {tuned_eval['task']['task']} ({len(tuned_eval['task']['references'])} held-out rows)\n"
        + _headline(base_eval, tuned_eval)
        + f"\nTuned vs the strongest base ({strongest_name(base_eval)}):\n\n"
        "| metric | strongest base | tuned | change | 95% interval (paired bootstrap) |\n|---|---|---|---|---|\n"
        + task_rows
        if task_rows
        else ""
    )
    if task:
        notes = [f"- base: {line}" for line in task_lines(base_eval["task"])]
        notes += [f"- tuned: {line}" for line in task_lines(tuned_eval["task"])]
        task += "\n".join(notes) + ("\n" if notes else "")
    if tuned_eval.get("task_method"):  # the tuned model's task answers came another way than the base's (a head)
        strongest = (base_eval.get("baselines") or {}).get(base_eval.get("strongest") or "", {}).get("method")
        task += f"\nTuned = {tuned_eval.get('task_method')}; base = {strongest or base_eval.get('task_method')}.\n"
    task += _preference(tuned_eval)
    samples = ""
    for s_base, s_tuned in zip(base_eval.get("samples", []), tuned_eval.get("samples", []), strict=False):
        samples += f"\n**Prompt:** {s_base['prompt']}\n\n- base: {s_base['answer']}\n- tuned: {s_tuned['answer']}\n"
    parent = manifest.get("parent")
    lineage = (
        f"\nIt continues the finished run `{parent['run']}` (config sha256 `{parent['config_sha256'][:16]}…`); that "
        "run's held-out rows are scored as `parent: …` datasets (retention).\n"
        if parent
        else ""
    )
    replay = cfg.data.replay
    if replay.fraction:
        adapter += f"; replay {replay.fraction:.0%} of each epoch ({replay.source})"
    return f"""# Model card: {Path(cfg.output.dir).name}

Fine-tuned from **{manifest["base_model"]["name"]}** with tunesmith {manifest["packages"].get("tunesmith")}.
{lineage}The `final/` folder loads with transformers{" + peft" if a.method == "lora" else ""} alone.

## Evaluation (held-out rows, {t["rows"]} rows / {t["tokens"]} trained tokens)
{_reused(base_eval)}| metric | base | tuned | change |
|---|---|---|---|
{rows}
{task}
## Training
- Method: {adapter}
- Parameters: {params["total"]:,} total, {params["trainable"]:,} trainable
- Steps: {params["steps"]} (batch {tr.batch_size} = {tr.micro_batch_size} x {tr.grad_accum} accumulation), \
lr {tr.lr} {tr.schedule}, warmup {tr.warmup_ratio}, weight decay {tr.weight_decay}, seed {tr.seed}
- Max length: {cfg.data.max_length} tokens; train rows: {params["train_rows"]}, eval rows: {params["eval_rows"]}
- Train time: {params["train_seconds"]:.0f} s{_ranks(manifest)}

## Data
| file | bytes | sha256 |
|---|---|---|
{data}

## Side-by-side samples (greedy decoding)
{samples or "(none)"}
## Reproduce
`config.yaml` and `manifest.json` beside this card hold the resolved config, hashes of data, tokenizer and chat
template, package versions, seed and git sha.
"""
