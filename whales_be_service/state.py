"""The service's runtime state, built once by the lifespan (in a background thread) and read by
dependencies. Each component reports `pending`, `ok`, or the error that stopped it and the fix."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from whales_be_service import metrics
from whales_be_service.errors import ServiceError
from whales_be_service.inference import InferencePool
from whales_be_service.settings import Settings

log = logging.getLogger("whales_be_service")

COMPONENTS = ("store", "embedder", "gate", "catalog", "identifier", "warmup")
MEMORY_URL = "memory://"
T = TypeVar("T")


@dataclass
class Overrides:
    """Prebuilt components injected by tests (`create_app(settings, store=..., gate=...)`)."""

    store: Any = None
    embedder: Any = None
    gate: Any = None
    catalog_factory: Callable[[Any, str], Any] | None = None


@dataclass
class ServiceState:
    settings: Settings
    pool: InferencePool
    store: Any = None
    embedder: Any = None
    gate: Any = None
    catalog: Any = None
    identifier: Any = None
    components: dict[str, str] = field(default_factory=lambda: {c: "pending" for c in COMPONENTS})
    started_at: float = field(default_factory=time.time)
    write_lock: threading.RLock = field(default_factory=threading.RLock)  # catalog writes and reloads
    catalog_factory: Any = None
    # The database's catalog generation that this worker's in-memory catalog reflects (None: unknown,
    # read the whole catalog at the next check). See `sync_catalog`.
    catalog_generation: int | None = None
    catalog_checked_at: float = 0.0
    purged_at: float = 0.0  # last retention purge (monotonic)

    @property
    def ready(self) -> bool:
        return all(v == "ok" for v in self.components.values())

    def not_ready_error(self, detailed: bool = False) -> ServiceError:
        """503 naming the components that are not up. The reasons (paths, database errors) are in
        the server log; only `detailed` answers (to a caller with a valid key) carry them too."""
        public = {k: v if detailed else public_component_status(v) for k, v in self.components.items()}
        broken = {k: v for k, v in public.items() if v != "ok"}
        pending = all(v == "pending" for v in broken.values())
        message = ("the service is starting: models are loading" if pending else
                   "the service is not ready: " + "; ".join(f"{k}: {v}" for k, v in broken.items()
                                                             if v != "pending")
                   + ("" if detailed else " (details in the server log, or ask /ready with X-API-Key)"))
        return ServiceError(503, "not_ready", message, {"components": public},
                            {"Retry-After": str(self.settings.retry_after_s)})

    def require_ready(self) -> None:
        if not self.ready:
            raise self.not_ready_error()


def public_component_status(status: str) -> str:
    """What a client may see of a component's status: `ok`, `pending`, `not built because ...`, or
    `failed (ErrorType)`; the message (which may hold paths or database errors) stays in the log."""
    if status in ("ok", "pending", "unavailable") or status.startswith("not built because"):
        return status
    return f"failed ({status.split(':', 1)[0]})"


def open_store_url(url: str) -> Any:
    """`memory://` is an explicit in-process store; every other URL goes to `integrations`."""
    if url.strip() == MEMORY_URL:
        from whales_identify.records.store import InMemoryStore

        return InMemoryStore()
    from integrations import open_store

    return open_store(url)


def warmup_image(size: tuple[int, int] = (320, 240)) -> Image.Image:
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, size[0], dtype=np.float32)[None, :, None]
    pixels = np.clip(gradient + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _step(state: ServiceState, name: str, fn: Callable[[], Any]) -> Any:
    try:
        value = fn()
    except Exception as exc:  # readiness reports the reason; the process keeps serving /health
        state.components[name] = f"{type(exc).__name__}: {exc}"
        log.error("component %s failed: %s", name, exc)
        return None
    state.components[name] = "ok"
    return value


def _skip(state: ServiceState, name: str, needs: str) -> None:
    state.components[name] = f"not built because {needs} failed"


def limit_native_threads(threads: int) -> None:
    """The process-wide native thread pools to `threads`: the pthreads builds of BLAS loaded by then
    (numpy's and OpenCV's, through threadpoolctl) and OpenCV's (local features). Idle
    pthreads-OpenBLAS threads spin: on 2 cores at 2k photos they burnt 0.26 CPU-s per request
    against ~0.16 s of work and held c4 / c1 at 1.4. OpenMP (faiss's vote search, and the OpenMP
    build of OpenBLAS inside faiss) keeps its default of all cores: its idle threads sleep after a
    short spin, and the vote search, most of a lone query at 100k photos, runs on both cores
    (100k served p95 0.32 s with it, 0.53 s on one thread; reports/benchmark_scale.json)."""
    import cv2
    from threadpoolctl import ThreadpoolController

    ThreadpoolController().select(user_api="blas", threading_layer="pthreads").limit(limits=threads)
    cv2.setNumThreads(threads)


def build_state(state: ServiceState, overrides: Overrides) -> None:
    """Build store, embedder, gate, catalog and identifier, then warm up with one inference."""
    s = state.settings
    if s.inference_threads:
        limit_native_threads(s.inference_threads)
    state.store = _step(state, "store",
                        lambda: _open_and_ping(overrides.store or open_store_url(s.database_url)))
    state.embedder = _step(state, "embedder", lambda: overrides.embedder or _create_embedder(s))
    if state.embedder is None:
        for name in ("gate", "catalog", "identifier", "warmup"):
            _skip(state, name, "embedder")
        return _finish(state)
    state.gate = _step(state, "gate", lambda: overrides.gate or _create_gate(s, state.embedder))
    if state.store is None:
        _skip(state, "catalog", "store")
    else:
        state.catalog_factory = (overrides.catalog_factory
                                 or _catalog_class(s.calibration, s.new_individual_target, _match_config(s)))
        state.catalog_generation = read_catalog_generation(state)  # before loading: never newer
        state.catalog_checked_at = time.monotonic()
        state.catalog = _step(state, "catalog", lambda: _load_catalog(state.catalog_factory, state))
    if state.gate is None or state.catalog is None:
        for name in ("identifier", "warmup"):
            _skip(state, name, "gate or catalog")
        return _finish(state)
    from whales_identify.identify import Identifier

    state.identifier = _step(state, "identifier",
                             lambda: Identifier(state.gate, state.embedder, state.catalog))
    if state.identifier is None:
        _skip(state, "warmup", "identifier")
    elif s.warmup:
        _step(state, "warmup", lambda: state.identifier([warmup_image()], top_k=1))
    else:
        state.components["warmup"] = "ok"
    _finish(state)


def _open_and_ping(store: Any) -> Any:
    store.ping()
    return store


def _create_embedder(s: Settings) -> Any:
    from whales_identify.embed import create_embedder
    from whales_identify.models.spec import register_model_specs

    if s.model_specs:  # WHALES_MODEL_SPECS: models registered by configuration
        log.info("registered from WHALES_MODEL_SPECS: %s", ", ".join(register_model_specs(s.model_specs)))

    embedder = create_embedder(s.embedding_model, s.models_dir, backend=s.inference_backend,
                               batch_size=s.batch_size, threads=s.inference_threads)
    log.info("embedding model %s runs on %s", embedder.model_id, embedder.backend)
    return embedder


def _create_gate(s: Settings, embedder: Any) -> Any:
    from whales_identify.gate import create_gate, load_gate_config

    if s.gate == "off":
        return create_gate("off")
    # The head's json carries its calibrated threshold and band (so a head swapped in through
    # WHALES_MODELS_DIR brings its own); WHALES_GATE_CONFIG and WHALES_GATE_THRESHOLD only override.
    config = load_gate_config(s.gate_config, s.gate) if s.gate_config else None
    return create_gate(s.gate, embedder=embedder, models_dir=s.models_dir, threshold=s.gate_threshold,
                       config=config, inference_backend=s.inference_backend, threads=s.inference_threads)


def _match_config(s: Settings) -> Any:
    from whales_identify.reid.catalog import MatchConfig

    # unset knobs keep the library's defaults (MatchConfig is their one source)
    optional = {"index_keypoints": s.vote_index_keypoints, "ivf_max_lists": s.vote_index_max_lists,
                "ivf_codes": s.vote_index_codes}
    return MatchConfig(vote_index_dir=s.vote_index_dir or "", features_dir=s.features_dir or "",
                       **{k: v for k, v in optional.items() if v is not None})


def _catalog_class(calibration: str | None = None, new_target: float | None = None,
                   config: Any = None) -> Callable[[Any, str], Any]:
    from whales_identify.reid.catalog import Catalog

    if calibration is None:
        return lambda store, model_id: Catalog(store, model_id, config=config,
                                               new_individual_target=new_target)

    def calibrated(store: Any, model_id: str) -> Any:
        from whales_identify.reid.calibrate import resolve_calibration

        try:
            cal = resolve_calibration(model_id, calibration)
        except ValueError as exc:
            raise ValueError(f"WHALES_CALIBRATION: {exc}") from exc
        return Catalog(store, model_id, config=config, calibration=cal, new_individual_target=new_target)

    return calibrated


def _load_catalog(factory: Callable[[Any, str], Any], state: ServiceState) -> Any:
    catalog = factory(state.store, state.embedder.model_id)
    catalog.load()
    reuse = getattr(catalog, "reuse_index_of", None)
    if callable(reuse) and state.catalog is not None and type(state.catalog) is type(catalog):
        reuse(state.catalog)  # a reload: photos removed since are masked, not the index rebuilt
    warm = getattr(catalog, "warm_index", None)
    if callable(warm):
        warm()  # the vote index is built at start-up, not by the first query
    return catalog


def read_catalog_generation(state: ServiceState) -> int | None:
    """The database's catalog generation (None: the store keeps none, e.g. a test fake)."""
    read = getattr(state.store, "catalog_generation", None)
    return int(read()) if callable(read) else None


def catalog_sync_due(state: ServiceState) -> bool:
    """Cheap: whether to look at the database now (always with `catalog_refresh_s` = 0)."""
    interval = state.settings.catalog_refresh_s
    return state.catalog is not None and (
        interval <= 0 or time.monotonic() - state.catalog_checked_at >= interval)


def sync_catalog(state: ServiceState) -> bool:
    """Bring the catalog in line with the database when their catalog generations differ.

    Called from worker threads (never the event loop) before every request that reads the catalog:
    one single-row read, so that a change acknowledged to a client by any worker or replica is
    visible to the next request here. The photos the change log names since the memory's
    generation are applied (`apply_catalog_changes`); where it cannot say, the whole catalog is read
    again. Returns whether anything was read.
    """
    if not catalog_sync_due(state):
        return False
    # The check counts from when the generation was read, and only once the memory matches it: a
    # request arriving while another thread reloads must wait for that reload, not answer from
    # the catalog it replaces (it was marked checked at the start of the reload, and a change
    # already acknowledged to a client could be missed by the next request).
    started = time.monotonic()
    generation = read_catalog_generation(state)
    if generation is None or generation == state.catalog_generation:
        state.catalog_checked_at = max(state.catalog_checked_at, started)
        return False
    from whales_identify.identify import Identifier

    with state.write_lock:
        started = time.monotonic()
        generation = read_catalog_generation(state)  # read before loading: memory is never older
        if generation == state.catalog_generation:
            return False  # another thread of this worker reloaded meanwhile
        applied = apply_catalog_changes(state)
        if applied is not None:
            state.catalog_generation, how = applied, "change_log"
        else:
            catalog = _load_catalog(state.catalog_factory, state)
            state.identifier = Identifier(state.gate, state.embedder, catalog)
            state.catalog, state.catalog_generation, how = catalog, generation, "reload"
        state.catalog_checked_at = started
    took = time.monotonic() - started
    log.info("catalog at generation %s by %s in %.2f s (changed by another worker or replica)",
             state.catalog_generation, how, took)
    metrics.record_catalog_sync(how, took)
    refresh_catalog_metrics(state)
    return True


def apply_catalog_changes(state: ServiceState) -> int | None:
    """Apply to the in-memory catalog only the photos changed since its generation (the store's
    change log, `integrations/_changes.py`); returns the generation it reflects now, or None where
    that cannot be done (generation unknown, no log, a log that does not reach back, a photo of
    another model): the caller reads the whole catalog. Holds `state.write_lock`."""
    changes = getattr(state.store, "catalog_changes", None)
    refresh = getattr(state.catalog, "refresh", None)
    if state.catalog_generation is None or not callable(changes) or not callable(refresh):
        return None
    generation, image_ids = changes(state.catalog_generation)
    if image_ids is None or not refresh(image_ids):  # read after the log: memory is never older
        return None
    return int(generation)


@dataclass
class CatalogWrite:
    """Handed to the body of `catalog_write`: `touched` is False while the block has not yet changed
    the in-memory catalog (a failed check then needs no reload)."""

    touched: bool = True


@contextmanager
def catalog_write(state: ServiceState, atomic: bool = True) -> Iterator[CatalogWrite]:
    """This worker writes the catalog (in memory and in the database) inside the block.

    Writes of this worker take turns; with `atomic`, every store call of the block is one database
    transaction. Afterwards the memory is marked current only when the database moved by exactly
    this one write since the memory was last in step; when another worker wrote meanwhile, the next
    request applies the change log since then (this write's photos again: a no-op); when the block
    failed after touching the memory, the next request reads the whole catalog.
    """
    with state.write_lock:
        before = state.catalog_generation
        transaction = getattr(state.store, "atomic", None)
        write = CatalogWrite()
        try:
            with transaction() if atomic and callable(transaction) else nullcontext():
                yield write
        except BaseException:
            if write.touched:
                state.catalog_generation = None  # memory may hold what the database rolled back
            raise
        after = read_catalog_generation(state)
        # another worker wrote meanwhile: the memory is `before` plus this write, and the next
        # request applies what the change log names since `before` (this write again: a no-op)
        state.catalog_generation = after if before is not None and after == before + 1 else before
    refresh_catalog_metrics(state)


def store_catalog_write(state: ServiceState, write: Callable[[], T]) -> T:
    """Run a catalog write made in the database only (one store transaction), then apply it to this
    worker's in-memory catalog (the photos it logged, else a reload); other workers do the same on
    their next request (the generation moved)."""
    with state.write_lock:
        result = write()  # a refused write (404, 409) rolled back and left the memory as it was
        state.catalog_checked_at = float("-inf")
        sync_catalog(state)
    refresh_catalog_metrics(state)
    return result


def _finish(state: ServiceState) -> None:
    if state.embedder is not None:
        cfg = getattr(state.embedder, "cfg", None)
        # the runtime that actually serves (onnx or torch: WHALES_INFERENCE_BACKEND=auto picks one)
        metrics.record_model("embedding", state.embedder.model_id,
                             str(getattr(state.embedder, "backend", "unknown")),
                             str(getattr(cfg, "sha256", "") or ""))
    if state.gate is not None:
        metrics.record_model("gate", str(getattr(state.gate, "version", "")),
                             str(getattr(state.gate, "backend", "")), str(getattr(state.gate, "version", "")))
    refresh_catalog_metrics(state)
    metrics.set_ready(state.ready)
    log.info("service state built: %s", state.components)


def refresh_catalog_metrics(state: ServiceState) -> None:
    if state.catalog is None:
        return
    try:
        stats = catalog_stats(state.catalog)
        metrics.record_catalog(int(stats["images"]), int(stats["individuals"]))
    except Exception:  # metrics never break a request
        log.warning("could not read catalog stats", exc_info=True)


def catalog_stats(catalog: Any) -> dict[str, Any]:
    stats = catalog.stats() if hasattr(catalog, "stats") else {}
    return dict(stats) if isinstance(stats, dict) else {}
