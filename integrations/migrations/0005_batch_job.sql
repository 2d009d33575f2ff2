-- The `whales batch` job that made a prediction (NULL for /v1/predict and /v1/predict-batch), so
-- that one survey job's predictions are listed, exported or deleted together (docs/BATCH.md).
ALTER TABLE predictions ADD COLUMN job_id TEXT;
CREATE INDEX predictions_job ON predictions (job_id);
