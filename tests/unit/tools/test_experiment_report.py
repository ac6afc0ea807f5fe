"""The report tool writes the Markdown and HTML decision report from a saved summary."""

from __future__ import annotations

import json

from mlops_platform.tools import experiment_report
from mlops_runtime.domain.experiments import ArmStats
from mlops_runtime.domain.sequential_test import SequentialTest


def summary() -> dict:
    decision = SequentialTest(min_effect=0.01).decide(
        [ArmStats("champion", 200_000, 10_000), ArmStats("challenger", 200_000, 10_100)], champion="champion", looks=9)
    look = {"at": 1_796_000_000, "winner_statistic": decision.winner_statistic,
            "equivalence_statistic": decision.equivalence_statistic,
            "arms": {a.arm: [a.invocations, a.reward_sum, a.lower, a.upper] for a in decision.arms}}
    return {"endpoint": "churn", "experiment": "churn-exp", "round": 2, "arms": [
        {"arm": "champion", "weight": 1.0, "invocations": 200_000}, {"arm": "challenger", "weight": 0.0, "invocations": 200_000}],
        "decision": {**decision.to_dict(), "winner": None, "kept_arm": "champion", "decided_at": 1_796_000_000},
        "looks": [look, look]}


def test_writes_markdown_and_html_from_a_saved_summary(tmp_path, capsys):
    saved = tmp_path / "summary.json"
    saved.write_text(json.dumps(summary()))
    assert experiment_report.main(["--json", str(saved), "--out", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "churn-exp.md").read_text()
    page = (tmp_path / "out" / "churn-exp.html").read_text()
    assert "**No meaningful difference.**" in markdown and "| looks taken | 9 |" in markdown
    assert "round 2" in page and page.count("<svg") == 2 and "<script" not in page
    assert capsys.readouterr().out.split() == [str(tmp_path / "out" / "churn-exp.md"), str(tmp_path / "out" / "churn-exp.html")]


def test_an_unreadable_summary_is_one_line_and_exit_2(tmp_path, capsys):
    assert experiment_report.main(["--json", str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.startswith("experiment report: cannot read the summary")
