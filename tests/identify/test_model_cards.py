"""Model cards: one per built-in model, numbers equal to the reports they cite, docs/MODELS.md in sync."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
from typer.testing import CliRunner

from whales_cli import app
from whales_identify.models import DEFAULT_REID_MODEL, get_pretrained_cfg
from whales_identify.models.cards import CARDS, trained_card
from whales_identify.models.entries import builtin_entries

ROOT = Path(__file__).resolve().parents[2]


def _at(doc: dict, key: str) -> float:
    """The value at a dotted key; a summary's own keys may hold a dot ("open_set.new_recall")."""
    parts = key.split(".")
    while parts:
        n = next(n for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in doc)
        doc, parts = doc[".".join(parts[:n])], parts[n:]
    return float(doc)  # type: ignore[arg-type]


def test_every_builtin_model_has_a_card_and_every_card_a_model():
    ids = {cfg.model_id for cfg, _ in builtin_entries()}
    assert ids == set(CARDS)
    for cfg, _ in builtin_entries():
        assert cfg.card is CARDS[cfg.model_id]
        assert cfg.card.intended_use and cfg.card.training_data and cfg.card.limits and cfg.license


@pytest.mark.parametrize("model_id", sorted(m for m, c in CARDS.items() if c.results))
def test_measured_results_equal_the_report_they_cite(model_id):
    for r in CARDS[model_id].results:
        report = json.loads((ROOT / r.report).read_text())
        assert _at(report, r.key) == pytest.approx(r.value, abs=5e-4), (r.metric, r.report, r.key)
        if "crossfit" in r.report or "full" in r.report:
            assert report["model_id"] in (model_id, "efficientnet_lite0.imagenet")


def test_default_model_card_says_what_it_is_for():
    card = get_pretrained_cfg(DEFAULT_REID_MODEL).card
    assert card is not None and "right whale" in card.intended_use and "local-feature" in card.intended_use
    happywhale = {r.key: r.value for r in card.results}["repeated.per_source.happywhale.mean_se.top1.mean"]
    assert happywhale < 0.1 and "0.06" in card.limits


def test_models_md_is_generated_from_the_registry():
    render = runpy.run_path(str(ROOT / "scripts" / "gen_model_docs.py"))["render"]
    assert (ROOT / "docs" / "MODELS.md").read_text() == render(), \
        "docs/MODELS.md is stale: .venv/bin/python scripts/gen_model_docs.py > docs/MODELS.md"


def test_models_show_prints_the_card_and_list_carries_intended_use():
    run = CliRunner().invoke
    res = run(app, ["models", "show", DEFAULT_REID_MODEL])
    assert res.exit_code == 0, res.output
    assert "Intended use:" in res.stdout and "reports/metrics_crossfit_full.json" in res.stdout
    doc = json.loads(run(app, ["models", "show", DEFAULT_REID_MODEL, "--json"]).stdout)
    assert doc["card"]["results"][0]["report"] == "reports/metrics_crossfit_full.json"
    rows = {r["id"]: r for r in json.loads(run(app, ["models", "list", "--json"]).stdout)}
    assert "right whale" in rows[DEFAULT_REID_MODEL]["intended_use"]
    res = run(app, ["models", "show", "nope.model"])
    assert res.exit_code == 1 and "unknown model" in res.output


def test_a_model_trained_here_gets_a_card_naming_its_data():
    card = trained_card({"model_id": "efficientnet_lite0.mine", "n_images": 40, "n_individuals": 7,
                         "train": {"sources": ["my_fins"], "base_model": "efficientnet_lite0.imagenet"}})
    assert "40 photos of 7 individuals (my_fins)" in card.training_data
    assert "whales evaluate --model efficientnet_lite0.mine" in card.limits and card.results == ()
