-- Catalog curation, part 2 (issue 23): merging two individuals and renaming one retire an id. The
-- retired id stays resolvable: one row per retired id, naming the id that carries its photos now
-- (a chain a -> b -> c is collapsed on write, so one look-up always answers). The history itself
-- (who, when, how many photos and predictions moved) is in catalog_audit (0006).
CREATE TABLE individual_aliases (
    alias_id       TEXT PRIMARY KEY,       -- the retired id
    individual_id  TEXT NOT NULL,          -- where its photos are now
    action         TEXT NOT NULL,          -- 'merge' or 'rename'
    at             $timestamp NOT NULL,
    actor          TEXT                    -- the reviewer's name, or the key's fingerprint
);
CREATE INDEX individual_aliases_target ON individual_aliases (individual_id);
