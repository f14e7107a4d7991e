"""What a resume may change: bookkeeping yes, anything that changes the numbers (train.threads included) no.

pytest tests/unit/test_resume_identity.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tunesmith.config import Config, build_config
from tunesmith.rundir import MARKER, RunDirError, config_changes, write_json, write_text


def _config(tmp_path: Path, **train: object) -> Config:
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"prompt": "hi", "completion": "there"}) + "\n", encoding="utf-8")
    return build_config(
        {"data": {"train": [{"path": str(data)}]}, "train": {"threads": 2, **train}, "output": {"dir": str(tmp_path)}}
    )


def test_changed_threads_refuse_a_resume(tmp_path: Path) -> None:
    from tunesmith.recipes.train import run_training

    run = tmp_path / "run"
    saved = _config(tmp_path)
    saved.output.dir = str(run)
    # A started run: marker, config.yaml and manifest.json, as _start_run_dir leaves them.
    write_json(run / MARKER, {"tunesmith": "test"})
    write_text(run / "config.yaml", saved.to_yaml())
    write_json(run / "manifest.json", {})
    saved_dict = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))

    # The thread count decides how sums are split, so gradient bits differ: the same run cannot continue with it.
    more_threads = _config(tmp_path, threads=4)
    more_threads.output.dir = str(run)
    assert config_changes(saved_dict, more_threads) == ["train.threads"]
    with pytest.raises(RunDirError, match=r"--resume: the config differs .* in train\.threads"):
        run_training(more_threads, resume=True, log=lambda *_: None)

    # Bookkeeping stays free.
    assert config_changes(saved_dict, _config(tmp_path, save_every=7, log_every=3)) == []
