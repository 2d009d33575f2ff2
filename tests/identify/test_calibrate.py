"""Calibration maps, JSON round trip and fusion arithmetic (hand-written numbers)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from whales_identify.models.entries import DEFAULT_REID_MODEL
from whales_identify.reid.calibrate import (
    Calibration,
    FusionWeights,
    ProbabilityMap,
    expected_calibration_error,
    fit_isotonic,
    fit_platt,
    load_calibration,
    resolve_calibration,
    save_calibration,
)


def test_fusion_is_the_documented_formula():
    w = FusionWeights(1.0, 0.5, 2.0)
    got = w.fuse(np.array([0.5]), np.array([math.e - 1]), np.array([0.0]))
    assert np.allclose(got, [0.5 + 0.5 * 1.0 + 0.0])


def test_isotonic_is_monotone_and_bounded():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    correct = np.array([0, 0, 1, 0, 1, 1])
    pm = fit_isotonic(scores, correct)
    p = pm(np.linspace(-1, 2, 50))
    assert np.all(np.diff(p) >= -1e-12)
    assert p.min() >= 0 and p.max() <= 1
    assert pm(0.0) == 0.0 and pm(1.0) == 1.0


def test_platt_orders_scores_and_handles_one_class():
    pm = fit_platt(np.array([0.0, 0.1, 0.9, 1.0]), np.array([0, 0, 1, 1]))
    assert pm(1.0) > 0.5 > pm(0.0)
    flat = fit_platt(np.array([0.1, 0.2]), np.array([1, 1]))
    assert abs(float(flat(-5.0)) - float(flat(5.0))) < 1e-9


def test_ece_of_perfect_and_of_overconfident():
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([1, 0])) == 0.0
    assert abs(expected_calibration_error(np.array([0.9, 0.9]), np.array([0, 0])) - 0.9) < 1e-9


def test_json_round_trip(tmp_path):
    cal = Calibration(model_id="m.x", weights=FusionWeights(1.0, 0.1, 0.4), new_individual_threshold=1.5,
                      probability=ProbabilityMap("isotonic", (0.0, 1.0), (0.1, 0.9)),
                      provenance={"manifest_sha256": "abc"}, fitted=True)
    path = tmp_path / "cal.json"
    save_calibration(cal, path)
    assert "pickle" not in path.read_text()
    assert load_calibration(path) == cal
    unfitted = Calibration()
    save_calibration(unfitted, path)
    assert load_calibration(path).new_individual_threshold == -math.inf


def test_packaged_default_loads():
    cal = resolve_calibration(DEFAULT_REID_MODEL)
    assert isinstance(cal, Calibration) and cal.model_id == DEFAULT_REID_MODEL and cal.fitted
    # a model without a packaged calibration gets the default; a user's file is checked
    assert resolve_calibration("fake.model") == load_calibration(
        Path(__file__).parents[2] / "whales_identify" / "calibration" / "reid_default.json")


def test_a_users_calibration_is_checked_against_the_model(tmp_path):
    path = tmp_path / "mine.json"
    save_calibration(Calibration(model_id="m.x", fitted=True), path)
    assert resolve_calibration("m.x", path).fitted
    with pytest.raises(ValueError, match="fitted for m.x, not m.y"):
        resolve_calibration("m.y", path)
    with pytest.raises(ValueError, match="cannot read"):
        resolve_calibration("m.x", tmp_path / "missing.json")


def test_inlier_evidence_is_the_margin_over_the_runner_up():
    from whales_identify.reid.calibrate import distinctive

    assert distinctive(np.array([4.0, 5.0, 3.0, 5.0])).tolist() == [0, 0, 0, 0]  # noise: a tie
    assert distinctive(np.array([4.0, 30.0, 3.0])).tolist() == [0, 26, 0]
    assert distinctive(np.array([])).tolist() == []
    w = FusionWeights(1.0, 0.0, 0.2)
    cos = np.array([0.7, 0.5, 0.5])
    # 5 vs 4 inliers is noise: the global ranking stands (raw counts would have flipped it)
    assert w.fuse(cos, np.zeros(3), np.array([0.0, 5.0, 4.0])).argmax() == 0
    assert (cos + 0.2 * np.log1p([0.0, 5.0, 4.0])).argmax() == 1
    assert w.fuse(cos, np.zeros(3), np.array([0.0, 40.0, 4.0])).argmax() == 1
