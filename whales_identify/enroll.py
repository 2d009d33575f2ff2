"""`Enroller(embedder, gate)(catalog, images, individual_id, species)`: the one way photos enter the catalog.

The service (`POST /v1/individuals/{id}/images`, imports, reviews) and `whales catalog add` both
enrol through it, so both refuse the photos the gate rejects, and a rejected photo is not embedded
unless the gate shares the embedder's backbone pass (`whales_identify.identify.screen`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
from PIL import Image

from whales_identify.embed import Embedder
from whales_identify.gate import Gate, GateResult
from whales_identify.identify import Screening, screen
from whales_identify.records.store import CatalogImage, Sighting
from whales_identify.reid.local_features import LocalFeatures, extract

T = TypeVar("T")
R = TypeVar("R")


class CatalogWriter(Protocol):
    model_id: str

    def enroll(self, images: Sequence[Image.Image], embeddings: np.ndarray, individual_id: str,
               species: str, sightings: Sequence[Sighting] | None = None,
               filenames: Sequence[str] | None = None, source: str = "",
               local_features: Sequence[LocalFeatures] | None = None) -> list[CatalogImage]: ...


@dataclass
class Enrolment:
    """What an enrolment did: the catalog records added and the photos the gate refused (by index)."""

    added: list[CatalogImage] = field(default_factory=list)
    refused: list[tuple[int, GateResult]] = field(default_factory=list)


class Enroller:
    """Gates and embeds photos of one individual and adds the accepted ones to a catalog.

    Args:
        embedder: the catalog's embedding model (`catalog.model_id` must be its id).
        gate: refuses photos without a whale or dolphin; None enrols every photo (a reviewer's
            decision, or `--gate off`).
        threads: a several-photo enrolment is gated, embedded and its local features extracted on
            this many threads (ONNX Runtime and OpenCV release the GIL).
    """

    def __init__(self, embedder: Embedder, gate: Gate | None = None, threads: int = 1):
        self.embedder = embedder
        self.gate = gate
        self.threads = max(1, threads)

    def screen(self, images: Sequence[Image.Image], check_gate: bool = True) -> Screening:
        """Gate (when asked and a gate is set) and embed, without writing anything; several photos
        are screened in `threads` contiguous parts at once (the runtimes release the GIL)."""
        gate = self.gate if check_gate else None
        parts = self._parts(images)
        if len(parts) < 2:
            return screen(gate, self.embedder, images)
        return _joined(self._map(lambda ab: screen(gate, self.embedder, images[ab[0]:ab[1]]), parts),
                       gated=gate is not None)

    def features(self, catalog: Any, screened: Screening,
                 images: Sequence[Image.Image]) -> list[LocalFeatures] | None:
        """The local features of the photos `screened` accepted, as `catalog` extracts them, made
        before any write so that a caller's lock or transaction does not wait for them (None: the
        catalog matches without local features, or extracts its own)."""
        config = _local_config(catalog)
        if config is None or not screened.accepted:
            return None
        return self._map(lambda im: extract(im, config.local), [images[i] for i in screened.accepted])

    def prepare(self, catalog: Any, images: Sequence[Image.Image],
                check_gate: bool = True) -> tuple[Screening, list[LocalFeatures] | None]:
        """`screen` and `features` at once: on several threads, the photos' local features are
        extracted while they are gated and embedded, so that one photo uses two cores (a
        one-photo enrolment took the sum of both on one). The features of photos the gate refuses
        are dropped, and those not yet started are not extracted. Same results as the two steps."""
        config = _local_config(catalog)
        if config is None or self.threads < 2:
            screened = self.screen(images, check_gate)
            return screened, self.features(catalog, screened, images)
        gate = self.gate if check_gate else None
        for im in images:  # two threads read each photo: a lazily opened file must not load twice
            im.load()
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="whales-enrol")
        try:
            # the screening parts first: they decide which extractions are needed
            parts = [pool.submit(screen, gate, self.embedder, images[a:b]) for a, b in self._parts(images)]
            extractions = [pool.submit(extract, im, config.local) for im in images]
            screened = _joined([p.result() for p in parts], gated=gate is not None)
            keep = set(screened.accepted)
            for i, job in enumerate(extractions):
                if i not in keep:
                    job.cancel()
            local = [extractions[i].result() for i in screened.accepted]
        finally:  # what has not started is not run; a refused photo's running extraction is
            # not waited for (its result is dropped)
            pool.shutdown(wait=False, cancel_futures=True)
        return screened, local or None

    def _parts(self, images: Sequence[Image.Image]) -> list[tuple[int, int]]:
        """`images` as up to `threads` contiguous (start, stop) parts of near-equal length."""
        bounds = np.linspace(0, len(images), min(self.threads, len(images)) + 1).astype(int)
        return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`fn` over `items`, in order, on up to `threads` threads (on the caller's when one is
        enough)."""
        threads = min(self.threads, len(items))
        if threads < 2:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(threads, thread_name_prefix="whales-enrol") as pool:
            return list(pool.map(fn, items))

    def write(self, catalog: CatalogWriter, screened: Screening, images: Sequence[Image.Image],
              individual_id: str, species: str, *, sightings: Sequence[Sighting] | None = None,
              filenames: Sequence[str] | None = None, source: str = "",
              local_features: Sequence[LocalFeatures] | None = None) -> Enrolment:
        """Add the photos `screened` accepted to `catalog` (a caller's transaction may wrap this).
        `local_features`: `prepare(...)`'s (or `features(...)` of the same screening); else the
        catalog extracts them."""
        refused = [(i, g) for i, g in enumerate(screened.verdicts or []) if not g.is_cetacean]
        keep = screened.accepted
        if not keep:
            return Enrolment([], refused)
        embeddings = np.stack([np.asarray(screened.embeddings[i], np.float32) for i in keep])
        extra = {} if local_features is None else {"local_features": list(local_features)}
        added = catalog.enroll([images[i] for i in keep], embeddings, individual_id, species,
                               sightings=[sightings[i] for i in keep] if sightings else None,
                               filenames=[filenames[i] for i in keep] if filenames else None,
                               source=source, **extra)
        return Enrolment(list(added or []), refused)

    def __call__(self, catalog: CatalogWriter, images: Sequence[Image.Image], individual_id: str,
                 species: str, *, sightings: Sequence[Sighting] | None = None,
                 filenames: Sequence[str] | None = None, source: str = "",
                 check_gate: bool = True) -> Enrolment:
        """Screen then write: the photos the gate accepts are enrolled, the others refused.

        Args:
            catalog: where the photos go (`whales_identify.reid.catalog.Catalog`).
            images: RGB photos of one individual.
            individual_id / species: the labels.
            sightings / filenames: optional, one per image.
            source: where the photos come from (free text).
            check_gate: False enrols without asking the gate.

        Returns:
            The `Enrolment` (records added, refused indices with the gate's verdicts).
        """
        screened, local = self.prepare(catalog, images, check_gate)
        return self.write(catalog, screened, images, individual_id, species, sightings=sightings,
                          filenames=filenames, source=source, local_features=local)


def _local_config(catalog: Any) -> Any:
    """The catalog's matching config where it matches with local features, else None."""
    config = getattr(catalog, "config", None)
    return config if config is not None and getattr(config, "use_local", False) else None


def _joined(done: Sequence[Screening], gated: bool) -> Screening:
    """The screenings of consecutive parts of a batch as one."""
    return Screening([v for d in done for v in d.verdicts or []] if gated else None,
                     [e for d in done for e in d.embeddings],
                     sum(d.seconds_gate for d in done), sum(d.seconds_embed for d in done))


def describe_refusal(verdict: GateResult) -> str:
    """Why the gate refused a photo, in words (the service and the CLI say the same)."""
    return f"the gate scored {verdict.cetacean_score:.2f}: no whale or dolphin found"


__all__ = ["CatalogWriter", "Enroller", "Enrolment", "describe_refusal"]
