"""``rapport eval``: the configured encoder on a folder of concept folders, no database."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests import factories
from tests.app.processes import rapport_env, run_cli

SUBJECTS = ("dog", "cat", "backpack", "clock")


def test_eval_writes_the_report_and_plots_and_says_random_weights_are_meaningless(
    tmp_path: Path,
) -> None:
    dataset = tmp_path / "dataset"
    for subject in SUBJECTS:
        shutil.copytree(factories.DATASET / subject, dataset / subject)
    out = tmp_path / "out"
    data = tmp_path / "data"
    args = ["eval", str(dataset), "--out", str(out), "--regions", "grid", "--collages", "3"]

    result = run_cli(args, rapport_env(data))

    assert result.returncode == 0, result.stderr
    assert "RANDOM WEIGHTS: these figures are meaningless" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["meaningless"] is True
    assert report["model_id"] == "rapport-test-tiny:none"
    assert report["concepts"] == len(SUBJECTS)
    assert report["queries"] == sum(factories.photo_count(s) - 3 for s in SUBJECTS)
    assert report["regions"]["kind"] == "grid" and report["collage"]["collages"] == 3
    # The open-set protocol in the same run: one point per size that leaves a subject
    # unregistered (1 and half of the four); random weights mark nothing present.
    assert [p["concepts"] for p in report["open_set"]] == [1, 2]
    assert all(p["found"] == 0.0 and p["rejected"] == 1.0 for p in report["open_set"])
    assert "open set (a user with N concepts" in result.stdout
    for name in ("scores.png", "precision_recall.png", "open_set.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
        assert f"wrote {out}/{name}" in result.stdout
    assert (out / "table.txt").read_text() in result.stdout
    # The decision rule is reported beside the threshold, and flags the setup too.
    assert "decision rule: balanced accuracy" in result.stdout
    assert f"{len(SUBJECTS)} of {len(SUBJECTS)} concepts do not stand out" in result.stdout
    assert report["rule_unseparable"] == sorted(SUBJECTS)
    assert report["collage"]["rule_present_accepted_rate"] == 0.0
    assert not data.exists(), "eval needs no database or data folder"


def test_eval_without_matplotlib_prints_its_table_and_a_correct_hint(tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    for subject in SUBJECTS[:2]:
        shutil.copytree(factories.DATASET / subject, dataset / subject)
    # A matplotlib that cannot be imported, ahead of the installed one.
    hidden = tmp_path / "hidden"
    (hidden / "matplotlib").mkdir(parents=True)
    (hidden / "matplotlib" / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = rapport_env(tmp_path / "data")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hidden), env.get("PYTHONPATH")]))
    out = tmp_path / "out"

    result = run_cli(["eval", str(dataset), "--out", str(out), "--collages", "0"], env)

    assert result.returncode == 0, result.stderr
    assert (out / "table.txt").read_text() in result.stdout
    report = json.loads((out / "report.json").read_text())
    # The service's aggregation unless told otherwise.
    assert report["aggregation"] == "winner" and "aggregation winner" in result.stdout
    assert not list(out.glob("*.png")) and "png" not in result.stdout
    assert "pip install matplotlib" in result.stderr and "rapport[eval]" not in result.stderr

    told = run_cli(
        ["eval", str(dataset), "--out", str(out), "--collages", "0"],
        env | {"RAPPORT_REGION_AGGREGATION": "best"},
    )
    assert (
        told.returncode == 0
        and json.loads((out / "report.json").read_text())["aggregation"] == "best"
    )


def test_eval_help_shows_every_default(tmp_path: Path) -> None:
    result = run_cli(["eval", "--help"], rapport_env(tmp_path))
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "[default: RAPPORT_REGIONS" in text and "[default: RAPPORT_REGION_ENCODING" in text
    assert "[default: RAPPORT_REGION_AGGREGATION" in text
