"""The catalog change log (issue 18): every catalog write names the photos it touched, so another
worker applies those instead of reading the whole catalog again; where the log cannot say (pruned,
too large, another database) it answers None and the worker reads everything, as before."""

from __future__ import annotations

from integrations import _changes
from integrations.base import open_store
from tests.integrations.test_curation_store import photo, prediction


def _since(store, generation: int) -> set[str] | None:
    now, ids = store.catalog_changes(generation)
    assert now == store.catalog_generation()
    return None if ids is None else set(ids)


def test_each_catalog_write_logs_the_photos_it_touched(store_url):
    store = open_store(store_url)
    try:
        g0 = store.catalog_generation()
        assert store.catalog_changes(g0) == (g0, [])
        store.add_catalog_images([photo("a1", "hw_a"), photo("a2", "hw_a"), photo("b1", "hw_b"),
                                  photo("c1", "hw_c"), photo("c2", "hw_c")])
        steps = []

        def step(write, *want: str) -> None:
            before = store.catalog_generation()
            write()
            assert store.catalog_generation() == before + 1  # one write, one step
            assert _since(store, before) == set(want)
            steps.append(set(want))

        step(lambda: store.rename_individual("hw_b", "hw_b2", "Ana"), "b1")
        step(lambda: store.merge_individuals("hw_c", "hw_a", "Ana"), "a1", "a2", "c1", "c2")  # target too
        step(lambda: store.move_catalog_image("c2", "hw_new", create=True, actor="Ana"), "c2")
        step(lambda: store.remove_catalog_image("a2", "Ana"), "a2")
        step(lambda: store.remove_individual("hw_new"), "c2")
        step(lambda: store.remove_individual("nobody"))  # a step that touched nothing
        store.add_catalog_images([photo("r1", "hw_r", source="review:p1")])
        store.save_prediction(prediction("p1", 1, None, ["hw_a"]))
        store.save_review("p1", "confirmed", {"decision": "new", "individual_id": "hw_r",
                                              "enrolled_image_ids": ["r1"]}, reviewed_by="Ana")
        step(lambda: store.undo_review("p1", undone_by="Ana"), "r1")
        assert _since(store, g0 + 1) == set().union(*steps)  # every step since, once each
        assert _since(store, g0) == set().union(*steps) | {"a1", "a2", "b1", "c1", "c2"}
        assert _since(store, store.catalog_generation() + 5) is None  # a newer memory: another database
    finally:
        store.close()


def test_a_log_that_does_not_reach_back_or_names_too_many_says_none(store_url, monkeypatch):
    store = open_store(store_url)
    try:
        monkeypatch.setattr(_changes, "KEPT_GENERATIONS", 3)
        g0 = store.catalog_generation()
        for i in range(5):
            store.add_catalog_images([photo(f"p{i}", "hw_p")])
        assert _since(store, g0 + 2) == {"p2", "p3", "p4"}
        assert _since(store, g0 + 1) is None  # generation g0 + 2 was pruned
        monkeypatch.setattr(_changes, "MAX_LOGGED_IDS", 2)
        now = store.catalog_generation()
        store.add_catalog_images([photo(f"q{i}", "hw_q") for i in range(3)])  # logged as "too many"
        assert _since(store, now) is None
        store.add_catalog_images([photo("s1", "hw_s")])
        assert _since(store, now + 1) == {"s1"}
    finally:
        store.close()


def test_a_database_from_before_the_log_reloads_once(tmp_path):
    """Generations moved before migration 0008 have no row: a worker that old reads everything."""
    store = open_store(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        store.add_catalog_images([photo("a1", "hw_a")])
        with store._write() as cur:  # noqa: SLF001 (as a database migrated with generations behind it)
            cur.execute("DELETE FROM catalog_changes")
            cur.execute("UPDATE catalog_generation SET generation = generation + 7")
        now = store.catalog_generation()
        assert _since(store, now - 8) is None
        store.add_catalog_images([photo("a2", "hw_a")])
        assert _since(store, now) == {"a2"}
    finally:
        store.close()


def test_a_generation_set_back_by_hand_does_not_block_writes(store_url):
    """Rows past a generation lowered by hand would collide with the next write's row: they go."""
    store = open_store(store_url)
    try:
        for i in range(3):
            store.add_catalog_images([photo(f"a{i}", "hw_a")])
        now = store.catalog_generation()
        with store._write() as cur:  # noqa: SLF001 (an operator's manual reset)
            cur.execute("UPDATE catalog_generation SET generation = generation - 2")
        store.add_catalog_images([photo("b1", "hw_b")])  # writes the row at now - 1 again
        assert store.catalog_generation() == now - 1
        assert _since(store, now - 2) == {"b1"}
        assert _since(store, now) is None  # a worker from the lost future reads everything
    finally:
        store.close()
