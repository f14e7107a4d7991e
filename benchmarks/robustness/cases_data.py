"""Class 1, data files: every whole-file problem against every verb that reads data, and pathological rows against
the verbs that check, preview, audit and train them (issue 12 items 2, 3 and 7).

    python benchmarks/robustness/run.py --only data
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from common import Case, Fixtures, Proc, Verdict, clean, cli, fail, judge, tiny_config, user_error, write_yaml
from data_files import FILE_PROBLEMS, ROW_PROBLEMS, FileProblem, RowProblem, write_row_problem

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
Verb = Callable[[Fixtures, Path, Path, dict], Proc]


def _config(fx: Fixtures, data: Path, work: Path, **overrides: object) -> Path:
    cfg = tiny_config(fx, data, work / "run")
    cfg["data"].update(overrides)
    cfg["audit"] = {"allow": ["leakage"]}
    return write_yaml(work / "config.yaml", cfg)


VERBS: dict[str, Verb] = {
    "data check": lambda fx, f, w, kw: cli("data", "check", f, cwd=w, **kw),
    "data audit": lambda fx, f, w, kw: cli("data", "audit", f, "--model", fx.model, "--out", w / "audit", cwd=w, **kw),
    "data redact": lambda fx, f, w, kw: cli("data", "redact", f, w / "clean.jsonl", cwd=w, **kw),
    "data preview": lambda fx, f, w, kw: cli("data", "preview", _config(fx, f, w), "-n", "3", cwd=w, **kw),
    "train": lambda fx, f, w, kw: cli("train", _config(fx, f, w), cwd=w, **kw),
    "plan": lambda fx, f, w, kw: cli("plan", _config(fx, f, w), "--steps", "1", cwd=w, **kw),
    "eval --data": lambda fx, f, w, kw: cli("eval", fx.model, "--data", f, "--out", w / "e.json", cwd=w, **kw),
    "predict --file": lambda fx, f, w, kw: cli(
        "predict", fx.head_run, "--file", f, "--out", w / "p.jsonl", cwd=w, **kw
    ),
}
# Codes a verb may end with on a file that is readable but whose rows are wrong ("either"), and on a good file.
EITHER = {"data check": (1, 2), "data audit": (1, 2), "data redact": (1, 2), "predict --file": (1, 2),
          "data preview": (0, 2)}  # fmt: skip
ACCEPT = {"plan": (0, 1)}  # plan exits 1 when it has warnings


def _run_as_nobody(work: Path) -> dict:
    """Root reads any file, so permission denied is reproduced by running the verb as user nobody."""
    for folder in (work, *work.parents):
        if folder == Path("/"):
            break
        folder.chmod(folder.stat().st_mode | 0o005)
    work.chmod(0o777)
    return {"prefix": NOBODY, "env": {"HOME": str(work)}}


def file_case(fx: Fixtures, problem: FileProblem, verb: str) -> Callable[[Path], Verdict]:
    def run(work: Path) -> Verdict:
        rows = [json.loads(line) for line in fx.toy.read_text().splitlines()] if verb == "predict --file" else [
            json.loads(line) for line in fx.chat.read_text().splitlines()
        ]  # fmt: skip
        path = problem.make(work, rows)
        kw = _run_as_nobody(work) if problem.root_only_skip and os.geteuid() == 0 else {}
        proc = VERBS[verb](fx, path, work, kw)
        if problem.level == "accept":
            return judge(proc, ACCEPT.get(verb, (0,)))
        if problem.level == "either":
            return judge(proc, EITHER.get(verb, (2,)))
        return user_error(proc, path.name)

    return run


def _row_mark(path: Path) -> re.Pattern:
    return re.compile(rf"{re.escape(path.name)}:3\b")


def _trained_text(preview: str, line: int) -> str | None:
    """The trained spans ([[...]] without colour) of one row's section of `data preview`, or None if not shown."""
    sections = re.split(r"\n.*?rows\.jsonl:(\d+) \(", preview)
    for number, body in zip(sections[1::2], sections[2::2], strict=False):
        if int(number) == line:
            return "".join(re.findall(r"\[\[(.*?)\]\]", body, flags=re.DOTALL))
    return None


def _special(fx: Fixtures, problem: RowProblem, path: Path, work: Path, verb: str) -> Verdict:
    """Special-token text in an answer: rejected as a row error everywhere, or the whole answer and its
    end-of-turn token are trained (shown by `data preview`), never cut short."""
    check = cli("data", "check", path, cwd=work)
    base = judge(check, (0, 1))
    if not base.clean:
        return base
    rejected = check.rc == 1 and _row_mark(path).search(check.text)
    if verb == "data check":
        return clean(f"row error: {base.why}") if rejected else clean("accepted by data check (see preview/train)")
    if verb == "data preview":
        proc = cli("data", "preview", _config(fx, path, work), "-n", "3", cwd=work)
        verdict = judge(proc, (0, 2))
        if not verdict.clean or rejected:
            return verdict
        answer = json.loads(problem.line)["messages"][-1]["content"]
        trained = _trained_text(proc.out, 3)
        if trained is None:
            return fail("data check accepts the row but data preview does not show it")
        if answer not in trained or not trained.rstrip().endswith("<|im_end|>"):
            return fail(f"trained span cut short: {trained.strip()[:80]!r} of answer {answer!r} + <|im_end|>")
        return clean("whole answer and <|im_end|> trained")
    return _train_agrees(fx, path, work, rejected=bool(rejected))


def _train_agrees(fx: Fixtures, path: Path, work: Path, rejected: bool) -> Verdict:
    """A row that passes data check trains; a row data check refuses stops training naming it."""
    proc = cli("train", _config(fx, path, work), cwd=work)
    if rejected:
        return judge(proc, (2,), [_row_mark(path)])
    verdict = judge(proc, (0,))
    return verdict if verdict.clean else fail(f"data check passed the file, but train: {verdict.why}")


def row_case(fx: Fixtures, problem: RowProblem, verb: str) -> Callable[[Path], Verdict]:
    def run(work: Path) -> Verdict:
        chat = [json.loads(line) for line in fx.chat.read_text().splitlines()]
        path = write_row_problem(work, problem, chat)
        mark = _row_mark(path)
        if verb == "train, data.skip_invalid=true":
            return judge(cli("train", _config(fx, path, work, skip_invalid=True), cwd=work), (0,))
        if problem.level == "special":
            return _special(fx, problem, path, work, verb)
        if verb == "data audit":
            return judge(cli("data", "audit", path, "--model", fx.model, "--out", work / "a", cwd=work), (0, 1, 2))
        if verb == "data preview":
            return judge(cli("data", "preview", _config(fx, path, work), "-n", "4", cwd=work), (0, 2))
        if verb == "train" and problem.level == "bad":
            return judge(cli("train", _config(fx, path, work), cwd=work), (2,), [mark])
        check = cli("data", "check", path, cwd=work)
        if problem.level == "bad":
            verdict = judge(check, (1,), [mark])
        elif problem.level == "warn" and check.rc == 0:
            verdict = judge(check, (0,), [re.compile(problem.word, re.IGNORECASE)])
        else:
            verdict = judge(check, (0, 1), [mark] if check.rc == 1 else [])
        if verb == "data check" or not verdict.clean:
            return verdict
        return _train_agrees(fx, path, work, rejected=check.rc == 1)

    return run


ROW_VERBS = ("data check", "train", "train, data.skip_invalid=true", "data audit", "data preview")


def cases(fx: Fixtures) -> list[Case]:
    out = [
        Case("data", f"{problem.name} / {verb}", file_case(fx, problem, verb))
        for problem in FILE_PROBLEMS
        for verb in VERBS
    ]
    out += [
        Case("data", f"row: {problem.name} / {verb}", row_case(fx, problem, verb))
        for problem in ROW_PROBLEMS
        for verb in ROW_VERBS
    ]
    return out
