"""WHALES_VOTE_INDEX_DIR / WHALES_VOTE_INDEX_CODES / WHALES_FEATURES_DIR reach the catalog the
service builds (issue 18): the vote index is saved in that folder and read back by the next start,
and the verification features are packed in theirs."""

from __future__ import annotations

import numpy as np
import pytest

from whales_be_service.settings import Settings
from whales_be_service.state import _catalog_class, _match_config
from whales_identify.records.store import CatalogImage, InMemoryStore

MODEL = "synthetic.scale"


def _store() -> InMemoryStore:
    """Six photos of three individuals with 30 random descriptors each."""
    rng = np.random.default_rng(0)
    store = InMemoryStore()
    store.add_catalog_images([CatalogImage(
        image_id=f"im{i}", individual_id=f"ind{i // 2}", species="s", model_id=MODEL,
        embedding=np.eye(4, dtype=np.float32)[i % 4],
        keypoints=rng.uniform(0, 99, (30, 2)).astype(np.float32),
        descriptors=rng.integers(0, 255, (30, 128), dtype=np.uint8)) for i in range(6)])
    return store


def test_vote_index_settings_reach_the_catalog(tmp_path):
    s = Settings(vote_index_dir=str(tmp_path / "vote"), vote_index_codes="PQ64x4fs",
                 features_dir=str(tmp_path / "features"))
    store = _store()
    catalog = _catalog_class(None, None, _match_config(s))(store, MODEL)
    assert catalog.config.ivf_codes == "PQ64x4fs" and catalog.config.vote_index_dir == str(tmp_path / "vote")
    catalog.load().warm_index()
    assert len(list((tmp_path / "vote").glob("vote-*.faiss"))) == 1
    assert len(list((tmp_path / "features").glob("feat-*.desc"))) == 1  # WHALES_FEATURES_DIR
    assert _match_config(Settings()).vote_index_dir == ""  # unset: nothing saved
    assert _match_config(Settings()).features_dir == ""


def test_vote_index_size_settings_reach_the_index(tmp_path, monkeypatch):
    """WHALES_VOTE_INDEX_KEYPOINTS / WHALES_VOTE_INDEX_MAX_LISTS: the operator's knobs for 50k+
    catalogs (the benchmark's `scale` configuration) reach the index build; unset, the library's."""
    monkeypatch.setenv("WHALES_VOTE_INDEX_KEYPOINTS", "16")
    monkeypatch.setenv("WHALES_VOTE_INDEX_MAX_LISTS", "2")
    monkeypatch.setenv("WHALES_VOTE_INDEX_DIR", str(tmp_path / "vote"))
    config = _match_config(Settings())
    assert (config.index_keypoints, config.ivf_max_lists) == (16, 2)
    default = _match_config(Settings(vote_index_dir=str(tmp_path / "vote"), vote_index_keypoints=None,
                                     vote_index_max_lists=None))
    assert (default.index_keypoints, default.ivf_max_lists) == (500, 0)
    from whales_identify.reid.matching import MatchConfig

    # unset codes are the library's (one source of truth), set ones are the operator's
    assert default.ivf_codes == MatchConfig().ivf_codes
    monkeypatch.setenv("WHALES_VOTE_INDEX_CODES", "SQ8")
    assert _match_config(Settings()).ivf_codes == "SQ8"
    monkeypatch.setenv("WHALES_VOTE_INDEX_CODES", " ")  # blank, as a compose file may leave it
    assert _match_config(Settings()).ivf_codes == MatchConfig().ivf_codes
    store = _store()
    for cfg in (config, default):  # the saved index is keyed by the descriptors kept per photo
        _catalog_class(None, None, cfg)(store, MODEL).load().warm_index()
    assert len(list((tmp_path / "vote").glob("vote-*.faiss"))) == 2


def test_a_reload_after_a_removal_masks_the_earlier_index(monkeypatch):
    """`sync_catalog` reloads the catalog after curation or another worker's change: the new
    catalog reuses the one it replaces (the removed photos masked), not a rebuild (minutes at 100k)."""
    from types import SimpleNamespace

    from whales_be_service.state import ServiceState, _load_catalog
    from whales_identify.reid.vote_index import FaissVoteIndex
    from whales_identify.reid.vote_masked import MaskedVoteIndex

    store = _store()
    factory = _catalog_class(None, None, _match_config(Settings()))
    state = ServiceState(settings=Settings(), pool=None, store=store,  # type: ignore[arg-type]
                         embedder=SimpleNamespace(model_id=MODEL))
    state.catalog = _load_catalog(factory, state)
    before = state.catalog._snapshot().vote_index()  # noqa: SLF001
    store.remove_catalog_image("im5", "tester")
    monkeypatch.setattr(FaissVoteIndex, "__init__", lambda *a, **k: pytest.fail("rebuilt"))
    reloaded = _load_catalog(factory, state)
    index = reloaded._snapshot().vote_index()  # noqa: SLF001
    assert isinstance(index, MaskedVoteIndex) and index.inner is before
    assert len(index) == 5 * 30
