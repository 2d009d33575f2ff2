-- The review queue (issue 23): which /v1/predict-batch call made a prediction, indexes for the queue's filters and
-- sorts, and an audit row for every undone review decision.

-- The /v1/predict-batch call that made a prediction (NULL: a single photo, or made before this).
ALTER TABLE predictions ADD COLUMN batch_id TEXT;

-- GET /v1/predictions: keyset pages over (created_at, prediction_id), newest or oldest first, most
-- often by review state (the queue of unreviewed photos) or within one batch.
CREATE INDEX predictions_queue ON predictions (review_state, created_at, prediction_id);
CREATE INDEX predictions_batch ON predictions (batch_id, created_at, prediction_id);

-- Undo of a review: the decision that was undone, who had made it, who undid it (fingerprint of the
-- key, never the key) and when. The prediction row itself goes back to 'unreviewed'.
CREATE TABLE review_undos (
    prediction_id      TEXT NOT NULL REFERENCES predictions (prediction_id) ON DELETE CASCADE,
    undone_at          $timestamp NOT NULL,
    undone_by          TEXT,
    review_state       TEXT NOT NULL,
    reviewer_decision  TEXT,
    reviewed_by        TEXT,
    reviewed_at        $timestamp
);
CREATE INDEX review_undos_prediction ON review_undos (prediction_id, undone_at);

-- Catalog curation (issue 23 #2): who renamed an individual or removed one of its photos, and when.
CREATE TABLE catalog_audit (
    at             $timestamp NOT NULL,
    actor          TEXT,
    action         TEXT NOT NULL,          -- 'rename' or 'remove_image'
    individual_id  TEXT NOT NULL,
    detail         TEXT                    -- JSON: {"new_id"} or {"image_id", "filename", ...}
);
CREATE INDEX catalog_audit_individual ON catalog_audit (individual_id, at);
