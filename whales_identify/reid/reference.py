"""`reference_records`: the catalog records of new photos of one individual (what
`Catalog.enroll` stores): their local features, a JPEG thumbnail and the pixels' hash; and
`with_model`, a record re-embedded by another model."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from PIL import Image

from whales_identify.images import make_thumbnail, pixels_sha256
from whales_identify.records.store import CatalogImage, Sighting
from whales_identify.reid.local_features import LocalFeatures, extract, feature_frame
from whales_identify.reid.matching import MatchConfig


def reference_records(images: Sequence[Image.Image], embeddings: np.ndarray, individual_id: str,
                      species: str, model_id: str, config: MatchConfig, *,
                      sightings: Sequence[Sighting] | None = None,
                      filenames: Sequence[str] | None = None, source: str = "",
                      local_features: Sequence[LocalFeatures] | None = None) -> list[CatalogImage]:
    """One record per photo, with a new random id (`Catalog.enroll` documents the arguments);
    local features are extracted here unless given, none when `config` uses none."""
    embeddings = np.asarray(embeddings, np.float32).reshape(len(images), -1)
    records = []
    for i, image in enumerate(images):
        lf = local_features[i] if local_features is not None else (
            extract(image, config.local) if config.use_local else None)
        records.append(CatalogImage(
            image_id=uuid.uuid4().hex, individual_id=individual_id, species=species,
            model_id=model_id, embedding=embeddings[i],
            keypoints=lf.keypoints if lf is not None else None,
            descriptors=lf.descriptors if lf is not None else None,
            thumbnail=make_thumbnail(image, config.thumbnail_side),
            image_sha256=pixels_sha256(image),
            filename=filenames[i] if filenames else "", source=source,
            sighting=sightings[i] if sightings else Sighting(),
            feature_size=feature_frame(image.size, config.local) if lf is not None else None))
    return records


def with_model(image: CatalogImage, model_id: str, embedding: np.ndarray) -> CatalogImage:
    """A copy of a record re-embedded by another model (used by `whales catalog reindex`)."""
    return replace(image, model_id=model_id, embedding=np.asarray(embedding, np.float32))
