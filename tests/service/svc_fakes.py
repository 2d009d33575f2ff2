"""Fast fakes for service tests: a 16-d colour embedder, a gate that rejects red photos, and a tiny
catalog over a real `Store` (the real `whales_identify.reid.catalog.Catalog` is used where it exists)."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from whales_be_service.settings import Settings
from whales_identify.embed import l2_normalize
from whales_identify.gate import GateResult
from whales_identify.records.store import CatalogImage, Sighting
from whales_identify.results import Candidate, MatchResult


class FakeEmbedder:
    """16 numbers per image: the 2x2 thumbnail's RGB values plus the means."""

    model_id = "fake.colour16"
    dim = 16
    cfg = SimpleNamespace(sha256=None, model_id=model_id)

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        out = []
        for im in images:
            small = np.asarray(im.convert("RGB").resize((2, 2)), np.float32).reshape(-1) / 255.0
            means = np.asarray(im.convert("RGB"), np.float32).reshape(-1, 3).mean(0) / 255.0
            out.append(np.concatenate([small, means, [1.0]]))
        return np.asarray(out, np.float32).reshape(len(images), self.dim)

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        return l2_normalize(self.features(images))


class FakeGate:
    """Rejects photos whose mean colour is strongly red; everything else is a 'cetacean'."""

    backend = "fake"
    version = "fake-1"

    def __call__(self, images: Sequence[Image.Image], features: np.ndarray | None = None) -> list[GateResult]:
        out = []
        for im in images:
            r, g, b = np.asarray(im.convert("RGB"), np.float32).reshape(-1, 3).mean(0)
            red = r > 150 and g < 80 and b < 80
            score = 0.05 if red else 0.95
            out.append(GateResult(not red, score, "reject" if red else "accept", self.backend, self.version))
        return out


@dataclass
class Summary:
    individual_id: str
    species: str
    n_images: int
    image_ids: list[str] = field(default_factory=list)
    last_seen: Any = None  # the fields of whales_identify.reid.catalog.IndividualSummary


class FakeCatalog:
    """Nearest-neighbour over the store's catalog images (cosine); new individual below 0.98."""

    def __init__(self, store: Any, model_id: str):
        self.store = store
        self.model_id = model_id
        self.images: list[CatalogImage] = []

    def load(self) -> None:
        self.images = self.store.list_catalog_images(model_id=self.model_id)

    def __len__(self) -> int:
        return len(self.images)

    def identify(self, image: Image.Image, embedding: np.ndarray, top_k: int) -> MatchResult:
        if not self.images:
            return MatchResult([], None, True, 0.0, "unknown", 0.0)
        best: dict[str, tuple[float, CatalogImage]] = {}
        for ref in self.images:
            score = float(np.dot(ref.embedding, embedding))
            if ref.individual_id not in best or score > best[ref.individual_id][0]:
                best[ref.individual_id] = (score, ref)
        ranked = sorted(best.values(), key=lambda t: -t[0])[:top_k]
        cands = [Candidate(r.individual_id, r.species, s, max(0.0, min(1.0, s)), r.image_id)
                 for s, r in ranked]
        top = cands[0]
        known = top.score >= 0.98
        return MatchResult(cands, top.individual_id if known else None, not known, top.probability,
                           top.species, top.probability)

    def enroll(self, images: Sequence[Image.Image], embeddings: np.ndarray, individual_id: str, species: str,
               sightings: Sequence[Sighting] | None = None, filenames: Sequence[str] | None = None,
               source: str = "") -> list[CatalogImage]:
        added = []
        for i, (im, emb) in enumerate(zip(images, embeddings, strict=True)):
            thumb = im.copy()
            thumb.thumbnail((64, 64))
            buf = io.BytesIO()
            thumb.save(buf, "JPEG")
            added.append(CatalogImage(
                image_id=f"img_{uuid.uuid4().hex[:10]}", individual_id=individual_id, species=species,
                model_id=self.model_id, embedding=np.asarray(emb, np.float32), thumbnail=buf.getvalue(),
                filename=filenames[i] if filenames else "", source=source,
                sighting=sightings[i] if sightings else Sighting()))
        self.store.add_catalog_images(added)
        self.images.extend(added)
        return added

    def remove_individual(self, individual_id: str) -> int:
        n = self.store.remove_individual(individual_id)
        self.images = [im for im in self.images if im.individual_id != individual_id]
        return n

    def remove_image(self, image_id: str, actor: str | None = None) -> tuple[str, int]:
        result = self.store.remove_catalog_image(image_id, actor)
        self.images = [im for im in self.images if im.image_id != image_id]
        return result

    def list_individuals(self, species: str | None = None) -> list[Summary]:
        groups: dict[str, Summary] = {}
        for im in self.images:
            s = groups.setdefault(im.individual_id, Summary(im.individual_id, im.species, 0))
            s.n_images += 1
            s.image_ids.append(im.image_id)
        return [s for s in groups.values() if species is None or s.species == species]

    def get_individual(self, individual_id: str) -> Summary | None:
        return next((s for s in self.list_individuals() if s.individual_id == individual_id), None)

    def stats(self) -> dict[str, Any]:
        return {"images": len(self.images), "individuals": len(self.list_individuals()),
                "model_id": self.model_id}


API_KEY = "test-key-1"


def fake_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = dict(database_url="memory://", api_keys=[API_KEY], rate_limit="1000/minute",
                                  frontend_dir=None, warmup=True)
    values.update(overrides)
    return Settings(**values)


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError(f"not ready: {client.get('/ready').json()}")
