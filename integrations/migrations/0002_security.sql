-- Security and multi-worker correctness (issue 19).

-- The catalog generation: every transaction that changes catalog_images adds one, in the same
-- transaction. A worker compares it (one indexed single-row read) with the generation its
-- in-memory catalog reflects before each request that reads the catalog, and reloads when they
-- differ, so a change acknowledged to one client is seen by the next request on any worker.
CREATE TABLE catalog_generation (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    generation  BIGINT NOT NULL
);
INSERT INTO catalog_generation (id, generation) VALUES (1, 0);

-- Who reviewed: a fingerprint of the reviewer's API key ("sha256:" + 16 hex digits), never the key.
ALTER TABLE predictions ADD COLUMN reviewed_by TEXT;

-- Retention purges delete unreviewed predictions (and their photos) by age.
CREATE INDEX predictions_review_age ON predictions (review_state, created_at);
