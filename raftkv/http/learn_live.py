"""The learning page's live source (to be filled): the merged step traces of every member."""

from __future__ import annotations

from aiohttp import web

__all__ = ["add_routes"]


def add_routes(app: web.Application) -> None:
    """Add the live-cluster routes of /ui/learn."""
