"""The FastAPI app. `create_app(settings)` wires routers; nothing else lives here."""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.auth import TokenCache
from service.errors import install_error_handlers
from service.middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from service.migrate import prepare_embedded
from service.routes import cycles as cycle_routes
from service.routes import (
    export,
    health,
    images,
    leases,
    model,
    pages,
    projects,
    quality,
    queue,
    regions,
    review,
    revisions,
    tokens,
)
from service.routes import oracle as oracle_routes
from service.routes import tags as tag_routes
from service.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prepare_embedded(app.state.settings)  # embedded mode: migrate at start
        # What start-up made (modules, mappers, compiled schemas) lives as long as the process: keep it
        # out of the collector, whose full passes over it stalled requests by ~120 ms under load. Once
        # per process (tests build many apps in one).
        if gc.get_freeze_count() == 0:
            gc.collect()
            gc.freeze()
        yield

    docs = settings.api_docs
    app = FastAPI(title="s4al", version="0.1.0", lifespan=lifespan,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None)
    app.state.settings = settings
    app.state.token_cache = TokenCache(settings.token_cache_seconds)
    app.include_router(health.router)
    app.include_router(projects.router)
    app.include_router(images.router)
    app.include_router(tokens.router)
    app.include_router(cycle_routes.router)
    app.include_router(oracle_routes.router)
    app.include_router(tag_routes.router)
    for module in (queue, leases, regions, revisions, export, model, review, quality, pages):
        app.include_router(module.router)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    app.add_middleware(SecurityHeadersMiddleware)  # outermost: its headers reach every response
    return app
