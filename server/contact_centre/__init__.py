"""Contact centre: dashboard pages, the live event stream, CRM webhook subscriptions and figures."""
from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Add the contact-centre routers and the dashboard's static files to the app."""
    from server.contact_centre import router, stream, subscriptions, web

    app.include_router(router.router)
    app.include_router(stream.router)
    app.include_router(subscriptions.router)
    web.mount(app)


async def shutdown() -> None:
    """Close this process's LISTEN connection."""
    from server.contact_centre.stream import HUB

    await HUB.stop()
