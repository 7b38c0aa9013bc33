"""The ASGI application: wires settings, engine, the request pipeline and transports together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import Lifespan

from tolk_models import DEMO_DIR
from tolk_server.adapters.echo import EchoEngine
from tolk_server.app.lifecycle import exit_process, renew_leases, watch_engine, watch_store
from tolk_server.config import Settings
from tolk_server.engine.interface import Engine
from tolk_server.models.profiles import Profile, resolve_profile
from tolk_server.models.routing import ModelSet, ServedModel
from tolk_server.ops.metrics import Metrics
from tolk_server.pipeline.admission import Admission
from tolk_server.pipeline.cache import ResultCache
from tolk_server.pipeline.gate import Gate
from tolk_server.pipeline.generation import Generator
from tolk_server.pipeline.planning import Planner
from tolk_server.pipeline.submit import Pipeline
from tolk_server.security.auth import Authenticator
from tolk_server.security.headers import SecurityHeaders
from tolk_server.security.http_guard import HttpGuard, allow_form_bodies, shape_errors
from tolk_server.security.keystore import KeyStore
from tolk_server.security.origin import OriginGuard
from tolk_server.state import ServerState, SpeechInput
from tolk_server.stores.factory import open_store
from tolk_server.stores.health import StoreHealth
from tolk_server.text.glossary import GlossaryStore
from tolk_server.transports.compat import errors as compat_errors
from tolk_server.transports.compat import router as compat_router
from tolk_server.transports.http import router
from tolk_server.transports.ws import stream_endpoint

log = logging.getLogger("tolk")
STATIC_DIR = Path(__file__).parents[1] / "static"
# The JS client, from its one source file: package data in a wheel (`tolk_server/jsclient`,
# mapped from clients/js in pyproject), clients/js/index.js in a source tree.
_WHEEL_JS = Path(__file__).parents[1] / "jsclient" / "index.js"
JS_CLIENT = _WHEEL_JS if _WHEEL_JS.is_file() else Path(__file__).parents[3] / "clients/js/index.js"


def model_path(settings: Settings) -> str:
    return settings.model or str(DEMO_DIR)


def translation_share(settings: Settings) -> Settings:
    """With Whisper on vLLM, the GPU memory left to the translation engine(s)."""
    if settings.asr_backend != "vllm":
        return settings
    rest = settings.gpu_memory_utilization - settings.asr_gpu_memory_utilization
    if rest < 0.05:
        raise ValueError("gpu_memory_utilization must exceed asr_gpu_memory_utilization")
    return settings.model_copy(update={"gpu_memory_utilization": rest})


def build_engine(settings: Settings) -> Engine:
    if settings.engine in ("echo", "fake"):
        return EchoEngine(token_delay_s=settings.fake_token_delay_ms / 1000)
    from tolk_server.adapters.vllm import VllmEngine

    return VllmEngine(settings, model_path(settings))


def build_models(settings: Settings) -> ModelSet:
    """`[[models]]` / `--model NAME=PATH`: one engine each, with its share of the cache;
    `url` (`NAME=ws://…`): another tolk server, through the SDK; `NAME=openai+http://…/v1`:
    an OpenAI-compatible vLLM server, with the model's own profile."""
    n = sum(spec.url is None for spec in settings.models)
    served = []
    remotes = []
    for spec in settings.models:
        if spec.openai:
            from tolk_server.adapters.openai import OpenAIEngine, openai_profile

            served.append(ServedModel(
                spec.name, OpenAIEngine.from_spec(spec, settings.priority_scheduling),
                openai_profile(spec, settings.profile), spec.max_inflight))
            continue
        if spec.url is not None:
            remotes.append(spec)
            continue
        assert spec.path is not None
        share = settings.model_copy(update={
            "model": spec.path, "profile": spec.profile,
            "kv_cache_gib": spec.kv_cache_gib or max(1, (settings.kv_cache_gib or 2) // n),
            "gpu_memory_utilization": (spec.gpu_memory_utilization
                                       or settings.gpu_memory_utilization / n)})
        served.append(ServedModel(spec.name, build_engine(share),
                                  resolve_profile(spec.path, spec.profile), spec.max_inflight))
    if remotes:
        from tolk_server.adapters.remote import RemoteEngine, remote_profile

        local = {c for m in served for c in m.profile.languages}
        for spec in remotes:
            served.append(ServedModel(spec.name, RemoteEngine.from_spec(spec),
                                      remote_profile(spec.languages or local),
                                      spec.max_inflight))
    order = [spec.name for spec in settings.models]  # as declared
    served.sort(key=lambda m: order.index(m.name))
    return ModelSet(served, settings.routes)


def serve_models(settings: Settings, engine: Engine | None = None,
                 profile: Profile | None = None) -> ModelSet:
    """The models to serve: `[[models]]`, else the one engine (given, or built from settings)."""
    if settings.models and engine is None:
        return build_models(translation_share(settings))
    profile = profile or resolve_profile(model_path(settings), settings.profile)
    return ModelSet.single(engine or build_engine(translation_share(settings)), profile)


def build_state(settings: Settings, models: ModelSet) -> ServerState:
    """The gate, the request pipeline and what the transports share, for `models`."""
    engine, profile = models.primary.engine, models.primary.profile
    metrics = Metrics()
    store = open_store(settings.store, key_file=settings.key_file,
                       glossary_file=settings.glossary_file)
    health = StoreHealth(store, settings.store_failure,
                         on_error=lambda op: metrics.store_errors.labels(op).inc(),
                         on_state=metrics.store_up.set)
    keys = KeyStore(store.keys, health)
    gate = Gate(settings, Authenticator(settings.api_keys, keys), models)
    admission = Admission(settings, models, metrics, store.usage, health)
    pipeline = Pipeline(
        Planner(engine, profile, settings, glossaries=GlossaryStore(store.glossaries, health),
                models=models),
        admission,
        Generator(engine, metrics, ResultCache(settings.cache_entries),
                  staged=settings.staged_submission),
        metrics,
        gate,
    )
    return ServerState(
        settings=settings, engine=engine, pipeline=pipeline, gate=gate, admission=admission,
        models=models, metrics=metrics,
        model_name=profile.name if settings.engine == "vllm" else settings.engine,
        store=store, store_health=health, audio=_audio_service(settings),
    )


def _lifespan(state: ServerState, owns_engine: bool) -> Lifespan[FastAPI]:
    """Start the engines (and the recogniser) with the app, and stop the ones it built."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(_start_engine(state))
        watchdog = asyncio.create_task(watch_engine(state))
        keepers = [asyncio.create_task(renew_leases(state)),
                   asyncio.create_task(watch_store(state))]
        try:
            yield
        finally:
            loader.cancel()
            watchdog.cancel()
            for task in keepers:
                task.cancel()
            state.pipeline.close()  # its markup workers
            if owns_engine:
                for m in state.models.default:
                    await m.engine.shutdown()
            if state.audio is not None:  # its engine, if it has one
                await state.audio.shutdown()
            state.store.close()

    return lifespan


def create_app(
    settings: Settings | None = None,
    engine: Engine | None = None,
    profile: Profile | None = None,
    models: ModelSet | None = None,
) -> FastAPI:
    settings = settings or Settings()
    owns_engine = engine is None and models is None
    state = build_state(settings, models or serve_models(settings, engine, profile))
    app = FastAPI(
        title="tolk",
        version="0.1.0",
        description=(
            "Real-time translation server. WebSocket protocol v1 at /v1/stream; "
            "`POST /v1/translate` over HTTP. Drop-in LibreTranslate (`/translate`, `/detect`, "
            "`/languages`) and DeepL v2 (`/v2/...`) APIs on the same keys and models."
        ),
        docs_url=None,
        openapi_url=None,  # served by transports.http (behind a key, unless --public-docs)
        redoc_url=None,
        lifespan=_lifespan(state, owns_engine),
    )
    # The bundled Swagger UI (4.x, swagger-ui-bundle) renders OpenAPI 3.0 only: it refuses a
    # 3.1 document outright ("does not specify a valid version field").
    app.openapi_version = "3.0.3"
    app.state.tolk = state
    _guard(app, settings)
    app.include_router(router)
    app.include_router(compat_router)
    app.add_api_websocket_route("/v1/stream", stream_endpoint)
    _mount_static(app)
    return app


FORM_BODY_PATHS = ("/translate", "/detect", "/v2/")


def _guard(app: FastAPI, settings: Settings) -> None:
    """Body limits and origin checks for every route (the last added runs first)."""
    app.state.form_body_paths = []
    # The LibreTranslate and DeepL routes take url-encoded forms, as those APIs do.
    allow_form_bodies(app, *FORM_BODY_PATHS)
    app.state.error_shapes = []  # their refusals in those APIs' own error shapes
    shape_errors(app, compat_errors.libretranslate_body, *compat_errors.LT_PATHS)
    shape_errors(app, compat_errors.deepl_body, *compat_errors.DEEPL_PATHS)
    app.add_middleware(HttpGuard, max_body_bytes=settings.max_body_bytes,
                       body_timeout_s=settings.body_timeout_s,
                       form_paths=app.state.form_body_paths,
                       error_shapes=app.state.error_shapes)
    app.add_middleware(OriginGuard, settings=settings)
    app.add_middleware(SecurityHeaders)  # on every answer, refusals included


def _audio_service(settings: Settings) -> SpeechInput | None:
    """Speech input, when the `audio` extra is installed and not switched off."""
    if settings.asr_backend == "off":
        return None
    try:
        from tolk_server.audio.service import AudioService
    except ImportError:  # pragma: no cover - a server installed without the `audio` extra
        log.info("speech input off: install tolk[audio]")
        return None
    if settings.asr_backend == "vllm" and settings.asr_model:
        from tolk_server.adapters.vllm_transcriber import VllmWhisper  # started with the engine

        return AudioService(settings, transcriber=VllmWhisper(settings, settings.asr_model))
    return AudioService(settings)


async def _start_engine(state: ServerState) -> None:
    try:
        for m in state.models.default:  # one after another: each takes its share
            if not m.engine.ready:
                await m.engine.start()
        if state.audio is not None:  # the recogniser's engine, if it has one
            await state.audio.start()
        await asyncio.to_thread(state.pipeline.prepare)
        state.engine_ready.set()
        log.info("engine ready: %s", state.model_name)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # the server is useless without its engine: exit non-zero
        state.startup_error = exc
        state.fatal_error = f"the engine failed to start: {exc}"
        log.exception("engine failed to start")
        exit_process(state)


def _mount_static(app: FastAPI) -> None:
    try:
        import swagger_ui_bundle

        app.mount(
            "/_static/swagger",
            StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
            name="swagger",
        )
    except ImportError:  # pragma: no cover - docs assets are optional
        pass
    if JS_CLIENT.is_file():

        async def js_client() -> FileResponse:
            return FileResponse(JS_CLIENT, media_type="text/javascript")

        app.add_api_route("/tolk-client.js", js_client, include_in_schema=False)
    if (STATIC_DIR / "index.html").is_file():
        app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
