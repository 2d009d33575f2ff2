"""WHALES_NEW_INDIVIDUAL_TARGET reaches the catalog the service builds (with and without
WHALES_CALIBRATION)."""

from __future__ import annotations

import pytest

from whales_be_service.settings import Settings
from whales_be_service.state import _catalog_class
from whales_identify.records.store import InMemoryStore
from whales_identify.reid.calibrate import Calibration, save_calibration
from whales_identify.reid.fusion import NewIndividualModel


def test_setting_is_read_and_bounded(monkeypatch):
    monkeypatch.setenv("WHALES_NEW_INDIVIDUAL_TARGET", "0.3")
    assert Settings().new_individual_target == 0.3
    monkeypatch.setenv("WHALES_NEW_INDIVIDUAL_TARGET", "1.5")
    with pytest.raises(ValueError):
        Settings()


def test_target_overrides_the_calibration(tmp_path):
    model = "efficientnet_lite0.imagenet"
    assert _catalog_class(None, 0.3)(InMemoryStore(), model).calibration.new_probability_target == 0.3
    path = tmp_path / "cal.json"
    save_calibration(Calibration(model_id=model, new_model=NewIndividualModel(), fitted=True), path)
    cal = _catalog_class(str(path), 0.7)(InMemoryStore(), model).calibration
    assert cal.new_probability_target == 0.7 and cal.open_set_rule == "probability"
    assert _catalog_class(str(path), None)(InMemoryStore(), model).calibration.new_probability_target == 0.5


def test_a_target_without_a_p_new_model_is_said_at_start(caplog):
    # the packaged calibrations have no P(new) model yet: the operator is told the target does nothing
    model = "efficientnet_lite0.imagenet"
    with caplog.at_level("WARNING", logger="whales_identify.reid.catalog"):
        _catalog_class(None, 0.3)(InMemoryStore(), model)
    assert any("has no effect" in r.getMessage() and model in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="whales_identify.reid.catalog"):
        _catalog_class(None, None)(InMemoryStore(), model)
    assert not caplog.records
