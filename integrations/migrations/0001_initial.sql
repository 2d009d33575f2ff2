-- Predictions, the photos behind them, and the catalog of known individuals.
-- One file for both dialects: $timestamp, $blob, $real and $bool are replaced per dialect
-- (SQLite: TEXT holding UTC ISO 8601 with microseconds, BLOB, REAL, INTEGER 0/1;
--  PostgreSQL: TIMESTAMPTZ, BYTEA, DOUBLE PRECISION, BOOLEAN).

CREATE TABLE predictions (
    prediction_id      TEXT PRIMARY KEY,
    created_at         $timestamp NOT NULL,
    image_sha256       TEXT NOT NULL,
    filename           TEXT NOT NULL,
    rejected           $bool NOT NULL,
    rejection_reason   TEXT,
    cetacean_score     $real NOT NULL,
    gate_backend       TEXT NOT NULL,
    gate_version       TEXT NOT NULL,
    species            TEXT,
    individual_id      TEXT,
    is_new_individual  $bool,
    probability        $real,
    candidates         TEXT NOT NULL,          -- JSON list of {individual_id, species, score, ...}
    model_version      TEXT NOT NULL,
    observed_at        $timestamp,             -- sighting: EXIF or upload form
    latitude           $real CHECK (latitude BETWEEN -90 AND 90),
    longitude          $real CHECK (longitude BETWEEN -180 AND 180),
    location           TEXT,
    observer           TEXT,
    review_state       TEXT NOT NULL DEFAULT 'unreviewed'
                       CHECK (review_state IN ('unreviewed', 'confirmed', 'new_individual', 'not_cetacean')),
    reviewer_decision  TEXT,                   -- JSON object
    reviewed_at        $timestamp
);
CREATE INDEX predictions_created_at ON predictions (created_at, prediction_id);
CREATE INDEX predictions_individual ON predictions (individual_id);

-- The query photo (JPEG), kept so that a reviewer can enrol it into the catalog.
CREATE TABLE prediction_images (
    prediction_id  TEXT PRIMARY KEY REFERENCES predictions (prediction_id) ON DELETE CASCADE,
    jpeg           $blob NOT NULL
);

-- Arrays are raw bytes plus numpy dtype (e.g. '<f4') and shape (JSON list, e.g. '[512]').
CREATE TABLE catalog_images (
    image_id           TEXT PRIMARY KEY,
    individual_id      TEXT NOT NULL,
    species            TEXT NOT NULL,
    model_id           TEXT NOT NULL,
    embedding          $blob NOT NULL,
    embedding_dtype    TEXT NOT NULL,
    embedding_shape    TEXT NOT NULL,
    keypoints          $blob,
    keypoints_dtype    TEXT,
    keypoints_shape    TEXT,
    descriptors        $blob,
    descriptors_dtype  TEXT,
    descriptors_shape  TEXT,
    thumbnail          $blob,
    image_sha256       TEXT NOT NULL DEFAULT '',
    filename           TEXT NOT NULL DEFAULT '',
    source             TEXT NOT NULL DEFAULT '',
    observed_at        $timestamp,
    latitude           $real CHECK (latitude BETWEEN -90 AND 90),
    longitude          $real CHECK (longitude BETWEEN -180 AND 180),
    location           TEXT,
    observer           TEXT,
    created_at         $timestamp NOT NULL
);
CREATE INDEX catalog_images_individual ON catalog_images (individual_id);
CREATE INDEX catalog_images_model ON catalog_images (model_id, created_at, image_id);
