"""The use cases on their own, with fakes (no app, no HTTP): predict, batch, enrol, review, delete,
undo, sightings, explain, and the one PIL open per uploaded photo."""

from __future__ import annotations

import io
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from PIL import Image
from svc_fakes import FakeCatalog, FakeEmbedder, FakeGate, fake_settings
from svc_helpers import gps_photo, image_bytes

from whales_be_service.deps import Caller
from whales_be_service.errors import ServiceError
from whales_be_service.schemas import ReviewIn
from whales_be_service.uploads import BatchItem, BatchPlan, decode
from whales_be_service.use_cases.batch import PredictBatch
from whales_be_service.use_cases.delete import DeleteIndividual
from whales_be_service.use_cases.enrol import EnrolPhotos
from whales_be_service.use_cases.explain import ExplainMatch
from whales_be_service.use_cases.predict import PredictPhotos, Retention
from whales_be_service.use_cases.review import ReviewPrediction
from whales_be_service.use_cases.sightings import SightingHistory
from whales_be_service.use_cases.undo import UndoReview
from whales_identify.enroll import Enroller
from whales_identify.errors import NotFoundError
from whales_identify.identify import Identifier
from whales_identify.records.store import InMemoryStore, Sighting

BLUE, RED = (30, 60, 120), (220, 20, 20)


@dataclass
class Written:
    touched: bool = True


class FakeCatalogAccess:
    """The `CatalogAccess` port over one in-process catalog; counts writes."""

    def __init__(self, catalog: FakeCatalog, embedder: FakeEmbedder, gate: FakeGate):
        self.catalog, self.embedder, self.gate = catalog, embedder, gate
        self.writes = 0

    def current(self) -> Any:
        return self.catalog

    def loaded(self) -> Any:
        return self.catalog

    def identifier(self) -> Identifier:
        return Identifier(self.gate, self.embedder, self.catalog)

    @contextmanager
    def write(self, atomic: bool = True):
        self.writes += 1
        yield Written()

    def store_write(self, write):
        self.writes += 1
        result = write()
        self.catalog.load()  # the database changed under the memory: reload, as the service does
        return result


@dataclass
class Clock:
    purged_at: float = 0.0


@pytest.fixture
def world():
    settings = fake_settings()
    store = InMemoryStore()
    embedder, gate = FakeEmbedder(), FakeGate()
    catalog = FakeCatalog(store, embedder.model_id)
    access = FakeCatalogAccess(catalog, embedder, gate)
    predict = PredictPhotos(access.identifier, store, settings, Retention(store, settings, Clock()))
    enrol = EnrolPhotos(Enroller(embedder, gate), access, settings)
    return settings, store, access, predict, enrol


def _parts(**photos: bytes) -> list[tuple[str, io.BytesIO]]:
    return [(name, io.BytesIO(data)) for name, data in photos.items()]


def test_predict_stores_one_record_and_answers_with_the_exif_position(world):
    _, store, _, predict, _ = world
    out = predict("fluke.jpg", gps_photo(BLUE, 64.1, -21.9), top_k=3)
    record = store.get_prediction(out.prediction_id)
    assert record is not None and record.filename == "fluke.jpg" and not record.rejected
    assert out.sighting.latitude == pytest.approx(64.1, abs=1e-4) == record.sighting.latitude
    given = Sighting(latitude=10.0, longitude=20.0, observer="ann")  # the uploader's fields win
    out = predict("fluke.jpg", gps_photo(BLUE, 64.1, -21.9), given=given)
    assert (out.sighting.latitude, out.sighting.observer) == (10.0, "ann")
    assert store.get_prediction_image(out.prediction_id)  # kept for a later review


def test_predict_rejects_a_photo_without_a_whale_and_never_matches_it(world):
    _, store, _, predict, _ = world
    out = predict("red.jpg", image_bytes(RED))
    assert out.rejected and out.rejection_reason == "not_a_marine_mammal" and out.candidates == []
    assert store.get_prediction(out.prediction_id).rejected


def test_batch_sorts_every_item_into_results_or_errors(world):
    _, _, _, predict, _ = world
    plan = BatchPlan([BatchItem("a.jpg", lambda: image_bytes(BLUE)),
                      BatchItem("b.jpg", lambda: image_bytes(RED)),
                      BatchItem("c.txt", lambda: b"not a photo"),
                      BatchItem("__MACOSX/x", None, "skipped", "skipped: macOS metadata")])
    out = PredictBatch(predict, batch_size=2)(plan, top_k=2)
    assert [r.image_ind for r in out.results] == ["a.jpg", "b.jpg"]
    assert {e.image_ind: e.code for e in out.errors} == {"c.txt": "unsupported_media_type",
                                                        "__MACOSX/x": "skipped"}
    s = out.summary
    assert (s.images, s.accepted, s.rejected, s.failed, s.skipped) == (3, 1, 1, 1, 1)


def test_enrol_refuses_what_the_gate_rejects_and_conflicting_species(world):
    _, _, access, _, enrol = world
    out = enrol("hw_1", "Humpback Whale", _parts(good=image_bytes(BLUE, seed=1), red=image_bytes(RED),
                                                 bad=b"xx"))
    assert out.created and out.species == "humpback_whale"
    assert [e["image_ind"] for e in out.enrolled] == ["good"]
    assert {r.image_ind: r.code for r in out.refused} == {"bad": "unsupported_media_type",
                                                          "red": "not_a_marine_mammal"}
    assert access.writes == 1
    with pytest.raises(ServiceError) as err:
        enrol("hw_1", "orca", _parts(more=image_bytes(BLUE, seed=2)))
    assert err.value.status == 409
    nothing = enrol("hw_2", None, _parts(red=image_bytes(RED)))
    assert not nothing.created and nothing.enrolled == [] and access.writes == 1  # no empty write


def test_review_enrols_the_stored_photo_once(world):
    settings, store, access, predict, enrol = world
    review = ReviewPrediction(store, access, enrol, settings)
    out = predict("q.jpg", image_bytes(BLUE, seed=3))
    done = review(out.prediction_id, ReviewIn(decision="new_individual", individual_id="hw_9",
                                              species="humpback whale"), reviewer="ann")
    assert done.review_state == "new_individual" and len(done.enrolled_image_ids) == 1
    assert access.catalog.get_individual("hw_9").species == "humpback_whale"
    with pytest.raises(ServiceError) as err:
        review(out.prediction_id, ReviewIn(decision="confirm"))
    assert err.value.status == 409
    red = predict("r.jpg", image_bytes(RED))  # the reviewer decides: no gate on a review
    done = review(red.prediction_id, ReviewIn(decision="confirm", individual_id="hw_9"))
    assert done.review_state == "confirmed" and len(done.enrolled_image_ids) == 1
    with pytest.raises(ServiceError) as err:
        review("nope", ReviewIn(decision="not_cetacean"))
    assert err.value.status == 404


def test_delete_removes_an_individual_or_answers_404(world):
    _, _, access, _, enrol = world
    enrol("hw_1", None, _parts(a=image_bytes(BLUE, seed=1), b=image_bytes(BLUE, seed=2)))
    assert DeleteIndividual(access)("hw_1").removed_images == 2
    with pytest.raises(ServiceError) as err:
        DeleteIndividual(access)("hw_1")
    assert err.value.status == 404


def test_undo_sightings_and_explain_with_fakes(world):
    settings, store, access, predict, enrol = world
    out = predict("q.jpg", gps_photo(BLUE, 64.1, -21.9))
    body = ReviewIn(decision="new_individual", individual_id="hw_9", species="humpback whale")
    ReviewPrediction(store, access, enrol, settings)(out.prediction_id, body)
    history = SightingHistory(store, access, settings)
    species, rows = history("hw_9", Caller(True))
    assert species == "humpback_whale" and len(rows) == 1
    assert rows[0][1].sighting.latitude == pytest.approx(64.1, abs=1e-4)  # exact for a key holder
    later = predict("q2.jpg", image_bytes(BLUE, seed=3))
    with pytest.raises(ServiceError) as err:  # an unreviewed prediction's photo needs a key
        ExplainMatch(store, access, settings)(later.prediction_id, "hw_9", None, Caller(False))
    assert err.value.status == 401
    undo = UndoReview(store, access)
    done = undo(out.prediction_id, None, "ann")
    assert done.undone_state == "new_individual" and len(done.removed_image_ids) == 1
    assert access.catalog.get_individual("hw_9") is None  # this worker's memory reloaded
    with pytest.raises(ServiceError) as err:
        history("hw_9", Caller(True))
    assert err.value.status == 404
    with pytest.raises((ServiceError, NotFoundError)):
        undo("nope", None, "ann")


def test_an_upload_is_opened_by_pil_once(monkeypatch):
    opened = []
    real_open = Image.open

    def counting_open(*args: Any, **kwargs: Any) -> Image.Image:
        opened.append(1)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    item = decode("gps.jpg", gps_photo(BLUE, -25.29, 152.87), fake_settings())
    assert item.sighting.latitude == pytest.approx(-25.29, abs=1e-4)  # EXIF read from the same open
    assert item.photo.format == "JPEG" and item.image.mode == "RGB"
    assert len(opened) == 1
