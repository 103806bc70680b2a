"""Structure-aware fuzzing of the mesh and shape loaders (a bounded, seeded run; bench/fuzz_loaders.py
runs the full figure): every malformed file is either loaded into a finite, bounded mesh / shape or
refused with a one-line NeuralShapesError, within 2 s of CPU time."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings

from tests.malformed_files import FORMATS, load_case, malformed_case, valid_file

CASES_PER_FORMAT = 60
SECONDS_PER_CASE = 2.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_malformed_files_are_loaded_or_refused_in_one_line(fmt):
    assert load_case(fmt, valid_file(fmt)) == "accepted"  # also loads lazy imports before cases are timed
    outcomes = []

    @seed(13)
    @settings(
        max_examples=CASES_PER_FORMAT,
        database=None,
        deadline=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(malformed_case((fmt,)))
    def check(case):
        _, description, data = case
        started = time.process_time()  # CPU time: wall time on a loaded shared machine says little
        outcomes.append(load_case(fmt, data))
        elapsed = time.process_time() - started
        assert elapsed < SECONDS_PER_CASE, f"{description}: {elapsed:.1f} s"

    check()
    assert len(outcomes) >= CASES_PER_FORMAT // 2 and "refused" in outcomes  # the generator really produces defects
