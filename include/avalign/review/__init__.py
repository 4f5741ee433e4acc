"""Review UI: see and hear what the agent did to each clip (a plain FastAPI app, no Airflow).

``plugins/av_review.py`` mounts :func:`avalign.review.app.create_app` inside the Airflow API
server and passes Airflow's auth check as the app's dependency; this package never imports
Airflow itself.
"""

from __future__ import annotations

__all__ = ["create_app", "ReviewConfig"]


def __getattr__(name: str):
    # Lazy: importing avalign.review (e.g. from the plugin in every Airflow process) stays cheap.
    if name == "create_app":
        from avalign.review.app import create_app

        return create_app
    if name == "ReviewConfig":
        from avalign.review.config import ReviewConfig

        return ReviewConfig
    raise AttributeError(name)
