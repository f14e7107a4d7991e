"""Class 2 (part): output folders. Nothing tunesmith did not write may be deleted, whatever `output.dir` and
`output.overwrite` say; an output that cannot be written is one clear line.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

from common import Fixtures, Proc, Verdict, cli, fail, judge, lost, snapshot, tiny_config, user_error, write_yaml

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


def _user_files(folder: Path) -> None:
    """A folder of someone's own work."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.md").write_text("my thesis notes\n", encoding="utf-8")
    (folder / "results.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (folder / "src").mkdir(exist_ok=True)
    (folder / "src" / "main.py").write_text("print('hi')\n", encoding="utf-8")


def _nothing_lost(proc: Proc, guarded: Path, before: dict[str, bytes], codes: tuple[int, ...] = (2,)) -> Verdict:
    gone = lost(before, guarded)
    if gone:
        return fail(f"exit {proc.rc}; lost or changed {len(gone)} file(s) it did not write: {', '.join(gone[:3])}")
    return judge(proc, codes)


def _overwrite(
    where: Callable[[Fixtures, Path], tuple[Path, Path, Path, str]], base: str | None = None
) -> Callable[[Fixtures, Path], Verdict]:
    """Train with output.overwrite=true into a dangerous folder. `where` lays out the files and returns
    (folder to guard, cwd, data file, output.dir)."""

    def run(fx: Fixtures, work: Path) -> Verdict:
        guarded, cwd, data, out = where(fx, work)
        cfg = tiny_config(fx, data, Path(out))
        cfg["output"] = {"dir": out, "overwrite": True}
        if base is not None:
            cfg["model"]["base"] = base
        config = write_yaml(cwd / "c.yaml", cfg)
        before = snapshot(guarded)
        return _nothing_lost(cli("train", config, cwd=cwd), guarded, before)

    return run


def _user_folder(fx: Fixtures, work: Path) -> tuple[Path, Path, Path, str]:
    _user_files(work / "mine")
    return work / "mine", work, fx.chat, str(work / "mine")


def _dot(fx: Fixtures, work: Path) -> tuple[Path, Path, Path, str]:
    _user_files(work)
    data = Path(shutil.copy(fx.chat, work / "chat.jsonl"))
    return work, work, data, "."


def _config_folder(fx: Fixtures, work: Path) -> tuple[Path, Path, Path, str]:
    _user_files(work / "project")
    return work / "project", work / "project", fx.chat, str(work / "project")


def _data_folder(fx: Fixtures, work: Path) -> tuple[Path, Path, Path, str]:
    (work / "data").mkdir()
    data = Path(shutil.copy(fx.chat, work / "data" / "chat.jsonl"))
    return work / "data", work, data, str(work / "data")


def _parent(fx: Fixtures, work: Path) -> tuple[Path, Path, Path, str]:
    _user_files(work)
    (work / "sub").mkdir()
    return work, work / "sub", fx.chat, ".."


def _finished_run(fx: Fixtures, work: Path) -> Path:
    run = work / "run"
    shutil.copytree(fx.lora_run, run)
    return run


def _rerun_with_bad_data(fx: Fixtures, work: Path) -> Verdict:
    """Overwriting a finished run with a config whose data is missing: the old run must survive."""
    run = _finished_run(fx, work)
    cfg = tiny_config(fx, work / "missing.jsonl", run)
    cfg["output"]["overwrite"] = True
    before = snapshot(run)
    return _nothing_lost(cli("train", write_yaml(work / "c.yaml", cfg), cwd=work), run, before)


def _rerun(fx: Fixtures, work: Path) -> Verdict:
    """The control: overwriting a finished run with a good config replaces it."""
    run = _finished_run(fx, work)
    cfg = tiny_config(fx, fx.chat, run)
    cfg["output"]["overwrite"] = True
    return judge(cli("train", write_yaml(work / "c.yaml", cfg), cwd=work), (0,))


def _exists_no_overwrite(fx: Fixtures, work: Path) -> Verdict:
    run = _finished_run(fx, work)
    before = snapshot(run)
    proc = cli("train", write_yaml(work / "c.yaml", tiny_config(fx, fx.chat, run)), cwd=work)
    return _nothing_lost(proc, run, before)


def _output_is_file(fx: Fixtures, work: Path) -> Verdict:
    (work / "out").write_text("precious\n", encoding="utf-8")
    before = snapshot(work)
    proc = cli("train", write_yaml(work / "c.yaml", tiny_config(fx, fx.chat, work / "out")), cwd=work)
    return _nothing_lost(proc, work, before)


def _output_under_file(fx: Fixtures, work: Path) -> Verdict:
    (work / "out").write_text("precious\n", encoding="utf-8")
    proc = cli("train", write_yaml(work / "c.yaml", tiny_config(fx, fx.chat, work / "out" / "run")), cwd=work)
    return user_error(proc, "out")


def _read_only_output(fx: Fixtures, work: Path) -> Verdict:
    """A folder the user may not write to (root may write anywhere, so the run is made as user nobody)."""
    (work / "ro").mkdir()
    config = write_yaml(work / "c.yaml", tiny_config(fx, fx.chat, work / "ro" / "run"))
    if os.geteuid() == 0:
        for folder in (work, *work.parents[:-1]):
            folder.chmod(folder.stat().st_mode | 0o005)
        (work / "ro").chmod(0o555)
        proc = cli("train", config, cwd=work, prefix=NOBODY, env={"HOME": str(work / "ro")})
    else:
        (work / "ro").chmod(0o555)
        proc = cli("train", config, cwd=work)
    return user_error(proc, "ro")


def _quickstart(fx: Fixtures, work: Path) -> Verdict:
    """quickstart replaces its --out folder: never one that holds the user's files."""
    _user_files(work / "mine")
    before = snapshot(work / "mine")
    proc = cli("quickstart", "--out", work / "mine", "train.max_steps=1", "eval.general=false", cwd=work, timeout=900)
    return _nothing_lost(proc, work / "mine", before, codes=(2,))


def _redact_in_place(fx: Fixtures, work: Path) -> Verdict:
    data = Path(shutil.copy(fx.chat, work / "chat.jsonl"))
    before = snapshot(work)
    return _nothing_lost(cli("data", "redact", data, data, cwd=work), work, before)


def _audit_out_is_file(fx: Fixtures, work: Path) -> Verdict:
    (work / "report").write_text("keep me\n", encoding="utf-8")
    before = snapshot(work)
    proc = cli("data", "audit", fx.chat, "--model", fx.model, "--out", work / "report", cwd=work)
    return _nothing_lost(proc, work, before)


def _out_is_dir(*verb: str) -> Callable[[Fixtures, Path], Verdict]:
    def run(fx: Fixtures, work: Path) -> Verdict:
        (work / "taken").mkdir()
        args = [a.format(model=fx.model, head=fx.head_run, chat=fx.chat) for a in verb]
        return user_error(cli(*args, "--out", work / "taken", cwd=work), "taken")

    return run


def _port_in_use(fx: Fixtures, work: Path) -> Verdict:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = cli("serve", "--port", port, "--workers", "0", "--runs-dir", work / "runs", cwd=work)
    return user_error(proc, str(port))


OUTPUT_CASES: dict[str, Callable[[Fixtures, Path], Verdict]] = {
    "overwrite a folder of user files": _overwrite(_user_folder),
    "overwrite user files, mistyped model.base": _overwrite(_user_folder, base="smollm2-135m-instruc"),
    "overwrite output.dir=. (config and data inside)": _overwrite(_dot),
    "overwrite the folder holding the config": _overwrite(_config_folder),
    "overwrite the folder holding the data": _overwrite(_data_folder),
    "overwrite output.dir=.. (an ancestor of cwd)": _overwrite(_parent),
    "overwrite a run, data missing: old run kept": _rerun_with_bad_data,
    "overwrite a finished run (control: works)": _rerun,
    "existing run without overwrite": _exists_no_overwrite,
    "output dir is a file": _output_is_file,
    "output dir below a file": _output_under_file,
    "output dir read-only": _read_only_output,
    "quickstart --out a folder of user files": _quickstart,
    "data redact IN onto itself": _redact_in_place,
    "data audit --out is a file": _audit_out_is_file,
    "eval --out is a directory": _out_is_dir("eval", "{model}", "--data", "{chat}"),
    "predict --out is a directory": _out_is_dir("predict", "{head}", "--text", "hello"),
    "serve on a port in use": _port_in_use,
}
