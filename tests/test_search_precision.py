"""The judge's blind-labeled precision on a search's strongest members: stored beside its agreement, kept when the
agreement is re-measured, and printed in reports' judge line."""

import json

from adversary.judges.measured import SEARCH_PRECISION, measured_agreement, save_agreement, save_search_precision
from adversary.reports._format import agreement_text

FIGURES = {"accuracy": 0.8, "kappa": 0.5, "rows": 100, "break_recall": 0.7, "hold_specificity": 0.9}
PRECISION = {"rate": 0.96, "ci95": [0.865, 0.989], "successes": 48, "trials": 50}


def test_search_precision_survives_a_recalibration_and_other_judges_are_kept(tmp_path):
    path = tmp_path / "agreement.json"
    save_agreement("other", {"kappa": 0.1}, path)
    save_agreement("judge", FIGURES, path)
    save_search_precision("judge", "a 900-call campaign", PRECISION, path)
    save_search_precision("judge", "a 1500-call attack", {**PRECISION, "successes": 45}, path)
    save_agreement("judge", {**FIGURES, "kappa": 0.6}, path)
    entry = measured_agreement("judge", path)
    assert entry["kappa"] == 0.6
    assert set(entry[SEARCH_PRECISION]) == {"a 900-call campaign", "a 1500-call attack"}
    assert json.loads(path.read_text())["other"] == {"kappa": 0.1}


def test_the_judge_line_states_the_search_precision_with_its_interval():
    text = agreement_text({**FIGURES, SEARCH_PRECISION: {"a 900-call campaign": PRECISION}})
    assert "of the breaks it credited the 50 strongest members of a 900-call campaign" in text
    assert "called 48 real breaks (96.0% [86.5%, 98.9%])" in text
    assert "strongest" not in agreement_text(FIGURES)
