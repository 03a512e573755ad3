"""The hostile-input sweep (tests/hostile_sweep.py) as pytest tests: each case must be right.

A right outcome is a value its oracle accepts, or a ValueError/TypeError naming the argument.
"""

import pytest

from hostile_sweep import CLEAR, OK, cases, classify

MODULES = ("numerics", "distributions", "losses", "gp", "epi", "data", "nn")

CASES = cases(MODULES)


def test_every_listed_module_has_cases():
    assert {case.module for case in CASES} == set(MODULES)
    assert len({case.key for case in CASES}) == len(CASES), "case names must be unique"


@pytest.mark.parametrize("case", CASES, ids=[case.key for case in CASES])
def test_hostile_input_gets_a_right_answer_or_a_clear_error(case):
    outcome, detail = classify(case)
    assert outcome in (OK, CLEAR), f"{outcome}: {detail}"
