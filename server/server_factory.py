"""The ASGI app factory uvicorn imports in each worker process."""

from sessiongraph.app import create_app


def app():
    return create_app()
