-- Which catalog photos each catalog generation touched (issue 18). A worker whose in-memory catalog
-- is at generation G, finding the database at G', reads the photos named by G+1..G' and applies
-- only them (an enrolment, a removal, a rename or a merge by another worker or replica) instead of
-- reading the whole catalog again (10-13 s at 100k photos). One row per generation, written in the
-- transaction that moves it (`integrations/_changes.py`); only the newest rows are kept, and a
-- missing row, or a NULL list (a write touching too many photos), means "read the whole catalog".
-- Generations before this table existed have no row: a worker that old reloads once.
CREATE TABLE catalog_changes (
    generation  BIGINT PRIMARY KEY,
    image_ids   TEXT                    -- JSON list of image ids; NULL: too many, reload
);
