"""The roles on real sockets: ASGI services (Starlette + uvicorn) and httpx clients."""

from .client import AsyncPayingClient, FacilitatorClient, PayingClient
from .facilitator_app import facilitator_app
from .routes_file import RoutesConfig, RoutesFileError, load_routes
from .runner import ServiceError, Services
from .server_app import resource_server_app

__all__ = [
    "AsyncPayingClient",
    "FacilitatorClient",
    "PayingClient",
    "RoutesConfig",
    "RoutesFileError",
    "ServiceError",
    "Services",
    "facilitator_app",
    "load_routes",
    "resource_server_app",
]
