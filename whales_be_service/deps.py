"""`Annotated` dependencies: routes read the state the lifespan built, never globals."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from whales_be_service import pipeline
from whales_be_service.api_keys import ApiKey, audit_name, key_fingerprint, parse_api_keys
from whales_be_service.catalog_import import ImportCatalog
from whales_be_service.errors import ServiceError
from whales_be_service.inference import InferencePool
from whales_be_service.ratelimit import CHARGED, RateLimiter
from whales_be_service.settings import Settings
from whales_be_service.state import ServiceState, catalog_sync_due, sync_catalog
from whales_be_service.use_cases.batch import PredictBatch
from whales_be_service.use_cases.delete import DeleteIndividual
from whales_be_service.use_cases.enrol import EnrolPhotos
from whales_be_service.use_cases.explain import ExplainMatch
from whales_be_service.use_cases.ports import CatalogAccess, CatalogView
from whales_be_service.use_cases.predict import PredictPhotos
from whales_be_service.use_cases.review import ReviewPrediction
from whales_be_service.use_cases.sightings import SightingHistory
from whales_be_service.use_cases.undo import UndoReview
from whales_identify.records.location_privacy import LocationPolicy, VisibleSighting, visible_sighting
from whales_identify.records.store import Sighting, Store


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.whales
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_ready_state(state: StateDep) -> ServiceState:
    """The state, or a 503 naming the component that is not up."""
    state.require_ready()
    return state


ReadyStateDep = Annotated[ServiceState, Depends(get_ready_state)]


async def get_pool(state: ReadyStateDep) -> InferencePool:
    """The bounded pool CPU-bound use cases run on (503 while the service is not ready)."""
    return state.pool


PoolDep = Annotated[InferencePool, Depends(get_pool)]


# ---- use cases: each gets exactly its collaborators (built per request; cheap) -----------------

async def get_predict_photos(state: ReadyStateDep) -> PredictPhotos:
    return pipeline.predict_photos(state)


PredictPhotosDep = Annotated[PredictPhotos, Depends(get_predict_photos)]


async def get_predict_batch(state: ReadyStateDep) -> PredictBatch:
    return pipeline.predict_batch_use_case(state)


PredictBatchDep = Annotated[PredictBatch, Depends(get_predict_batch)]


async def get_enrol_photos(state: ReadyStateDep) -> EnrolPhotos:
    return pipeline.enrol_photos(state)


EnrolPhotosDep = Annotated[EnrolPhotos, Depends(get_enrol_photos)]


async def get_review_prediction(state: ReadyStateDep) -> ReviewPrediction:
    return pipeline.review_prediction(state)


ReviewPredictionDep = Annotated[ReviewPrediction, Depends(get_review_prediction)]


async def get_delete_individual(state: ReadyStateDep) -> DeleteIndividual:
    return pipeline.delete_individual(state)


DeleteIndividualDep = Annotated[DeleteIndividual, Depends(get_delete_individual)]


async def get_import_catalog(state: ReadyStateDep) -> ImportCatalog:
    return ImportCatalog(state.store, pipeline.StateCatalog(state), pipeline.enrol_photos(state),
                         state.settings)


ImportCatalogDep = Annotated[ImportCatalog, Depends(get_import_catalog)]


async def get_undo_review(state: ReadyStateDep) -> UndoReview:
    return UndoReview(state.store, pipeline.StateCatalog(state))


UndoReviewDep = Annotated[UndoReview, Depends(get_undo_review)]


async def get_explain_match(state: ReadyStateDep) -> ExplainMatch:
    return ExplainMatch(state.store, pipeline.StateCatalog(state), state.settings)


ExplainMatchDep = Annotated[ExplainMatch, Depends(get_explain_match)]


async def get_sighting_history(state: ReadyStateDep) -> SightingHistory:
    return SightingHistory(state.store, pipeline.StateCatalog(state), state.settings)


SightingHistoryDep = Annotated[SightingHistory, Depends(get_sighting_history)]


async def get_catalog_access(state: ReadyStateDep) -> CatalogAccess:
    """This worker's catalog as the use cases see it (`use_cases.ports.CatalogAccess`), for routes
    that change the catalog in the database only (curation)."""
    return pipeline.StateCatalog(state)


CatalogAccessDep = Annotated[CatalogAccess, Depends(get_catalog_access)]


async def get_ready_store(state: ReadyStateDep) -> Store:
    """The store, or 503 until the whole service is ready (routes that answered 503 before then)."""
    store: Store = state.store
    return store


ReadyStoreDep = Annotated[Store, Depends(get_ready_store)]


def _component(state: ServiceState, name: str) -> Any:
    value = getattr(state, name)
    if value is None or state.components.get(name) != "ok":
        raise state.not_ready_error()
    return value


async def get_store(state: StateDep) -> Store:
    """The configured store (sink and catalog database), or 503 while it is not up."""
    store: Store = _component(state, "store")
    return store


StoreDep = Annotated[Store, Depends(get_store)]


async def get_catalog(state: StateDep) -> CatalogView:
    _component(state, "catalog")
    # Another worker may have enrolled or deleted: reload off the event loop when the database changed.
    # The due check is cheap and stays on the loop; the database look (and any reload) does not.
    # The catalog is read from the state afterwards, whichever thread reloaded it.
    if catalog_sync_due(state):
        await run_in_threadpool(sync_catalog, state)
    catalog: CatalogView = _component(state, "catalog")
    return catalog


CatalogDep = Annotated[CatalogView, Depends(get_catalog)]

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="Required by write endpoints; keys come from WHALES_API_KEYS.")


def _configured(settings: Settings, api_key: str) -> ApiKey:
    """The `WHALES_API_KEYS` entry `api_key` is (`name:key` or a bare key); 403 otherwise. Compared in
    constant time against every key."""
    if not settings.api_keys:
        raise ServiceError(403, "forbidden", "write endpoints are disabled: the server has no API keys "
                                             "configured (set WHALES_API_KEYS)")
    found = None
    for k in parse_api_keys(settings.api_keys):
        if hmac.compare_digest(api_key.encode(), k.key.encode()):
            found = k
    if found is None:
        raise ServiceError(403, "forbidden", "the API key is not valid")
    return found


def _check_key(settings: Settings, api_key: str) -> None:
    _configured(settings, api_key)


def reviewer_name(settings: Settings, api_key: str) -> str:
    """Who holds a valid key, for audit records: the name of its `name:key` entry, else its fingerprint."""
    return audit_name(_configured(settings, api_key))


def key_is_valid(settings: Settings, api_key: str | None) -> bool:
    """Whether `api_key` is a configured key (never raises; for answers that only add detail)."""
    try:
        _check_key(settings, api_key or "")
    except ServiceError:
        return False
    return bool(api_key)


def _unauthorized(what: str) -> ServiceError:
    return ServiceError(401, "unauthorized", f"{what} needs an API key in the X-API-Key header",
                        headers={"WWW-Authenticate": "APIKey"})


async def require_api_key(settings: SettingsDep,
                    api_key: Annotated[str | None, Security(api_key_header)] = None) -> str:
    """401 without `X-API-Key`, 403 with a key that is not configured."""
    if not api_key:
        raise _unauthorized("this endpoint")
    _check_key(settings, api_key)
    return api_key


@dataclass(frozen=True)
class Caller:
    """Who is reading: with a valid key (`authorised`, full precision) or the public."""

    authorised: bool
    key_fingerprint: str | None = None

    def sighting(self, sighting: Sighting, policy: LocationPolicy) -> VisibleSighting:
        """The sighting as this caller may see it (whales_identify.records.location_privacy)."""
        return visible_sighting(sighting, policy, self.authorised)


async def get_caller(settings: SettingsDep,
                     api_key: Annotated[str | None, Security(api_key_header)] = None) -> Caller:
    """For read routes: the key is optional (no key: the public view; a wrong key: 403), unless
    `WHALES_REQUIRE_KEY_FOR_READS` makes it required (401 without one)."""
    if not api_key:
        if settings.require_key_for_reads:
            raise _unauthorized("reading (WHALES_REQUIRE_KEY_FOR_READS is on)")
        return Caller(False)
    _check_key(settings, api_key)
    return Caller(True, key_fingerprint(api_key))


CallerDep = Annotated[Caller, Depends(get_caller)]


async def read_access(request: Request, settings: SettingsDep,
                      api_key: Annotated[str | None, Security(api_key_header)] = None) -> None:
    """On every rate-limited router: with `WHALES_REQUIRE_KEY_FOR_READS`, each GET needs a valid key
    (writes check their key themselves)."""
    if settings.require_key_for_reads and request.method in ("GET", "HEAD"):
        await get_caller(settings, api_key)
ApiKeyDep = Annotated[str, Depends(require_api_key)]


async def require_reviewer(settings: SettingsDep, api_key: ApiKeyDep) -> str:
    """For writes that are audited: the caller's name (`reviewed_by`, `undone_by`, `catalog_audit`)."""
    return reviewer_name(settings, api_key)


ReviewerDep = Annotated[str, Depends(require_reviewer)]


async def get_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.limiter
    return limiter


LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]


async def rate_limit(request: Request, limiter: LimiterDep) -> None:
    """Charge one hit per request (batches charge their extra images themselves); requests with a
    body were charged by the middleware already, before the body was read."""
    if getattr(request.state, CHARGED, False):
        return
    limiter.hit(request, 1, read_only=request.method in ("GET", "HEAD"))
