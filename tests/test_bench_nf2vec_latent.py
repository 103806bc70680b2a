"""The latent-path acceptance bench (bench/bench_nf2vec_latent.py): its set figures and its one-line refusals.

The tables themselves run on a trained latent family (minutes even on toy data), so they are checked by hand.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.bench_nf2vec_latent import _one_nna

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a[:, None] - b[None, :])


def test_one_nna_is_zero_for_interleaved_sets_and_one_for_separated_ones() -> None:
    points = np.arange(8, dtype=np.float64)
    fake, real = points[0::2], points[1::2]  # 0 2 4 6 vs 1 3 5 7: every nearest neighbour is of the other set
    assert _one_nna(_distance(fake, fake), _distance(fake, real), _distance(real, real)) == 0.0
    far = real + 100.0
    assert _one_nna(_distance(fake, fake), _distance(fake, far), _distance(far, far)) == 1.0


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    for extra, message in (
        (["--tables", "decoding,foo"], "error: unknown table(s) foo"),
        (["--held-out", "5"], "error: --held-out wants START:STOP"),
        ([], f"error: {tmp_path / 'latent.safetensors'}: cannot read file"),
    ):
        run = subprocess.run(
            [
                sys.executable,
                "bench/bench_nf2vec_latent.py",
                "--model",
                str(tmp_path),
                "--collection",
                str(tmp_path),
                "--shapes",
                str(tmp_path),
                *extra,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert run.returncode == 1 and len(lines) == 1 and lines[0].startswith(message), run.stderr
