"""`screen` (gate first unless the gate shares the embedder's pass), `Identifier` on top of it, and the
one `Enroller` used by the service and `whales catalog add`. Counting fakes, no model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from PIL import Image

from whales_identify.enroll import Enroller
from whales_identify.gate import GateResult
from whales_identify.identify import Identifier, screen
from whales_identify.records.store import InMemoryStore, Sighting
from whales_identify.reid.catalog import Catalog

RED, BLUE = (220, 20, 20), (30, 60, 120)


class CountingEmbedder:
    """8-d features from the mean colour; counts the photos it embeds."""

    model_id = "test.counting"
    dim = 8
    cfg = SimpleNamespace(model_id=model_id)

    def __init__(self) -> None:
        self.embedded = 0

    def features(self, images):
        self.embedded += len(images)
        means = [np.asarray(im, np.float32).reshape(-1, 3).mean(0) / 255 for im in images]
        return np.asarray([np.concatenate([m, m, [1.0, 0.5]]) for m in means], np.float32).reshape(-1, 8)

    def __call__(self, images):
        f = self.features(images)
        return f / np.linalg.norm(f, axis=1, keepdims=True)


class RedGate:
    """Rejects red photos; `feature_model_id` makes it share the embedder's pass when asked."""

    backend, version = "test", "test-1"

    def __init__(self, feature_model_id: str | None = None):
        if feature_model_id:
            self.feature_model_id = feature_model_id
        self.given_features: list[bool] = []

    def __call__(self, images, features=None):
        self.given_features.append(features is not None)
        out = []
        for im in images:
            r, g, b = np.asarray(im, np.float32).reshape(-1, 3).mean(0)
            ok = not (r > 150 and g < 80)
            out.append(GateResult(ok, 0.9 if ok else 0.1, "accept" if ok else "reject", self.backend,
                                  self.version))
        return out


def _photos(*colours):
    return [Image.new("RGB", (40, 30), c) for c in colours]


def test_a_gate_on_its_own_features_runs_first_and_rejected_photos_are_not_embedded():
    embedder, gate = CountingEmbedder(), RedGate()
    screened = screen(gate, embedder, _photos(RED, BLUE, RED))
    assert embedder.embedded == 1 and gate.given_features == [False]
    assert screened.accepted == [1]
    assert screened.embeddings[0] is None and screened.embeddings[2] is None
    np.testing.assert_allclose(np.linalg.norm(screened.embeddings[1]), 1.0, rtol=1e-6)


def test_a_gate_that_shares_the_backbone_gets_its_features_from_one_pass():
    embedder = CountingEmbedder()
    gate = RedGate(feature_model_id=embedder.model_id)
    screened = screen(gate, embedder, _photos(RED, BLUE))
    assert embedder.embedded == 2 and gate.given_features == [True]
    assert screened.accepted == [1] and all(e is not None for e in screened.embeddings)


def test_identifier_answers_a_rejected_photo_without_embedding_or_matching_it():
    embedder, gate = CountingEmbedder(), RedGate()
    catalog = Catalog(InMemoryStore(), embedder.model_id)
    catalog.enroll(_photos(BLUE), embedder(_photos(BLUE)), "hw_1", "humpback_whale")
    embedder.embedded = 0
    rejected, accepted = Identifier(gate, embedder, catalog)(_photos(RED, BLUE), top_k=1)
    assert embedder.embedded == 1
    assert rejected.rejected and rejected.embedding is None and "embed" not in rejected.timings
    assert not accepted.rejected and accepted.candidates[0].individual_id == "hw_1"
    assert "embed" in accepted.timings and "match" in accepted.timings


def test_enroller_refuses_what_the_gate_rejects_and_enrols_the_rest():
    embedder, gate = CountingEmbedder(), RedGate()
    catalog = Catalog(InMemoryStore(), embedder.model_id)
    done = Enroller(embedder, gate)(catalog, _photos(BLUE, RED), "hw_1", "humpback_whale",
                                    sightings=[Sighting(latitude=1.0, longitude=2.0), Sighting()],
                                    filenames=["a.jpg", "b.jpg"], source="cli")
    assert [im.filename for im in done.added] == ["a.jpg"] and done.added[0].sighting.latitude == 1.0
    assert [(i, g.is_cetacean) for i, g in done.refused] == [(1, False)]
    assert embedder.embedded == 1 and len(catalog.store.list_catalog_images()) == 1
    unchecked = Enroller(embedder, gate)(catalog, _photos(RED), "hw_1", "humpback_whale", check_gate=False)
    assert len(unchecked.added) == 1 and unchecked.refused == []
    assert len(Enroller(embedder, None)(catalog, _photos(RED), "hw_2", "orca").added) == 1


def test_whales_catalog_add_refuses_what_the_gate_rejects(tmp_path):
    """The CLI enrols through the same Enroller: with the packaged gate a plain wall photo is refused
    (and nothing is added), with --gate off it is added."""
    from typer.testing import CliRunner

    from whales_cli import app

    photo = tmp_path / "wall.png"
    Image.new("RGB", (320, 240), (200, 190, 170)).save(photo)
    db = f"sqlite:///{tmp_path / 'w.db'}"
    args = ["catalog", "add", str(photo), "--individual", "hw_1", "--species", "humpback_whale", "--db", db]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1 and "refused" in refused.output and "no photo was added" in refused.output
    added = CliRunner().invoke(app, [*args, "--gate", "off"])
    assert added.exit_code == 0 and "added 1 photo(s)" in added.output


def test_whales_catalog_import_refuses_what_the_gate_rejects(tmp_path):
    """`whales catalog import` enrols through the same Enroller: with the packaged gate a plain wall
    photo is a skipped not_cetacean row (nothing imported: exit 1), with --gate off it is imported."""
    from typer.testing import CliRunner

    from whales_cli import app

    Image.new("RGB", (320, 240), (200, 190, 170)).save(tmp_path / "wall.png")
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("filename,individual_id,species\nwall.png,hw_1,humpback_whale\n")
    db = f"sqlite:///{tmp_path / 'w.db'}"
    args = ["catalog", "import", str(sheet), "--root", str(tmp_path), "--db", db]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1, refused.output
    assert "line 2" in refused.output and "gate refused" in refused.output
    assert "1 not_cetacean" in refused.output
    added = CliRunner().invoke(app, [*args, "--gate", "off"])
    assert added.exit_code == 0 and "imported 1 photo(s)" in added.output, added.output


def _textured(seed: int) -> Image.Image:
    """A photo with corners and blobs, so that SIFT finds keypoints."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
    return Image.fromarray(base).resize((192, 192), Image.NEAREST)


def test_features_are_extracted_before_the_write_on_several_threads():
    """`Enroller.features` (what the service runs before its write lock) gives, on 3 threads, the
    features the catalog would extract itself, in the photos' order; the write stores exactly them."""
    from whales_identify.reid.local_features import extract

    photos = [_textured(s) for s in range(5)] + [Image.new("RGB", (64, 64), RED)]  # the red one is refused
    enroller = Enroller(CountingEmbedder(), RedGate(), threads=3)
    catalog = Catalog(InMemoryStore(), CountingEmbedder.model_id)
    screened = enroller.screen(photos)
    assert screened.accepted == [0, 1, 2, 3, 4]
    local = enroller.features(catalog, screened, photos)
    expected = [extract(p, catalog.config.local) for p in photos[:5]]
    assert all(len(e.descriptors) > 10 for e in expected)
    for got, want in zip(local, expected, strict=True):
        assert np.array_equal(got.descriptors, want.descriptors)
        assert np.array_equal(got.keypoints, want.keypoints)
    done = enroller.write(catalog, screened, photos, "w1", "right_whale", local_features=local)
    assert [len(r.descriptors) for r in done.added] == [len(e.descriptors) for e in expected]
    assert len(done.refused) == 1
    stored = {r.image_id: r for r in catalog.store.list_catalog_images()}
    for rec, want in zip(done.added, expected, strict=True):
        assert np.array_equal(stored[rec.image_id].descriptors, want.descriptors)


def test_features_of_a_catalog_without_local_matching_are_none():
    from dataclasses import replace

    enroller = Enroller(CountingEmbedder(), None, threads=2)
    catalog = Catalog(InMemoryStore(), CountingEmbedder.model_id)
    catalog.config = replace(catalog.config, use_local=False)
    photos = [_textured(1)]
    assert enroller.features(catalog, enroller.screen(photos), photos) is None
    assert enroller.features(SimpleNamespace(model_id="x"), enroller.screen(photos), photos) is None


def test_screening_on_several_threads_equals_one():
    """`Enroller(threads=3).screen` splits the photos into parts screened at once: the same verdicts
    and embeddings, in order, as one screening (a refused photo has none)."""
    colours = (BLUE, RED, (20, 200, 40), BLUE, RED, (90, 90, 90), BLUE)
    photos = [Image.new("RGB", (32, 32), c) for c in colours]
    one = Enroller(CountingEmbedder(), RedGate(), threads=1).screen(photos)
    many = Enroller(CountingEmbedder(), RedGate(), threads=3).screen(photos)
    assert [v.is_cetacean for v in many.verdicts] == [v.is_cetacean for v in one.verdicts]
    assert many.accepted == one.accepted == [0, 2, 3, 5, 6]
    for a, b in zip(one.embeddings, many.embeddings, strict=True):
        assert (a is None and b is None) or np.allclose(a, b)
    ungated = Enroller(CountingEmbedder(), RedGate(), threads=3).screen(photos, check_gate=False)
    assert ungated.verdicts is None and len(ungated.accepted) == 7


def test_prepare_extracts_while_screening_and_gives_the_two_steps_results(monkeypatch):
    """`Enroller.prepare` (the service's enrolment) extracts local features on a second thread while
    the photos are gated and embedded, so one photo uses two cores; its results equal `screen` then
    `features`, and a refused photo's features are dropped."""
    import threading

    from whales_identify import enroll

    started = threading.Event()
    real_extract = enroll.extract

    def extract(image, config):
        started.set()
        return real_extract(image, config)

    class WaitingEmbedder(CountingEmbedder):
        """Records whether an extraction had begun while it was embedding."""

        def __init__(self) -> None:
            super().__init__()
            self.overlapped: list[bool] = []

        def features(self, images):
            self.overlapped.append(started.wait(timeout=10))
            return super().features(images)

    monkeypatch.setattr(enroll, "extract", extract)
    catalog = Catalog(InMemoryStore(), CountingEmbedder.model_id)
    one = [_textured(7)]
    waiting = WaitingEmbedder()
    screened, local = Enroller(waiting, RedGate(), threads=2).prepare(catalog, one)
    assert waiting.overlapped == [True] and screened.accepted == [0]
    assert np.array_equal(local[0].descriptors, real_extract(one[0], catalog.config.local).descriptors)

    photos = [_textured(s) for s in range(4)] + [Image.new("RGB", (64, 64), RED), _textured(9)]
    for threads in (1, 2, 3):
        enroller = Enroller(CountingEmbedder(), RedGate(), threads=threads)
        screened, local = enroller.prepare(catalog, photos)
        two_steps = enroller.screen(photos)
        assert screened.accepted == two_steps.accepted == [0, 1, 2, 3, 5]
        for a, b in zip(screened.embeddings, two_steps.embeddings, strict=True):
            assert (a is None and b is None) or np.allclose(a, b)
        want = enroller.features(catalog, two_steps, photos)
        assert [x.descriptors.tobytes() for x in local] == [x.descriptors.tobytes() for x in want]
    refused_only = Enroller(CountingEmbedder(), RedGate(), threads=2).prepare(
        catalog, [Image.new("RGB", (64, 64), RED)])
    assert refused_only[0].accepted == [] and refused_only[1] is None


def test_prepare_drops_a_refused_photos_extraction_error_and_raises_an_accepted_ones(monkeypatch):
    import pytest

    from whales_identify import enroll

    real_extract = enroll.extract

    def extract(image, config):
        if image.getpixel((0, 0)) == RED:
            raise ValueError("unreadable")
        return real_extract(image, config)

    monkeypatch.setattr(enroll, "extract", extract)
    catalog = Catalog(InMemoryStore(), CountingEmbedder.model_id)
    photos = [_textured(1), Image.new("RGB", (64, 64), RED)]
    screened, local = Enroller(CountingEmbedder(), RedGate(), threads=2).prepare(catalog, photos)
    assert screened.accepted == [0] and len(local) == 1  # the red photo is refused: its error is moot
    with pytest.raises(ValueError, match="unreadable"):  # enrolled without the gate: it must raise
        Enroller(CountingEmbedder(), RedGate(), threads=2).prepare(catalog, photos, check_gate=False)
