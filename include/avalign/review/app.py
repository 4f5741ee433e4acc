"""The review app: runs and partitions, a clip table, one clip's media, plots and trace.

``create_app(config, auth=...)`` builds a plain FastAPI app. ``auth`` is a FastAPI dependency
applied to every route (pages, media, plots, static files): the Airflow plugin passes Airflow's
own auth-manager check, tests pass their own. The OpenAPI and docs routes are switched off, since
FastAPI would add them without the app's dependencies.

Every URL the pages emit is relative (``partition?...``, ``file/<root>/<path>``,
``static/review.css``) and every page lives at the app's top level, so the app works under any
mount prefix and behind a reverse proxy.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from avalign.errors import ClipError
from avalign.review.catalog import OUTCOMES, SORTABLE, Catalog, ClipQuery, check_name, query_clips
from avalign.review.config import ReviewConfig
from avalign.review.links import MlflowLinks, page_url
from avalign.review.media import cache_key, cached_file, decoded_audio_flac, media_type
from avalign.review.paths import PathRefused, locate, resolve_location

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_FILES = {"review.css": "text/css; charset=utf-8", "review.js": "text/javascript; charset=utf-8"}
_SANDBOXED = {".html", ".svg"}  # served with a CSP sandbox: never scripts in the API server's origin


def _templates():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(PACKAGE_DIR / "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.globals.update(url=page_url, file_url=file_url, fmt=fmt, fmt_ms=fmt_ms, outcomes=OUTCOMES,
                       when=when, to_json=lambda v: json.dumps(v, indent=1, sort_keys=True, default=str))
    return env


def file_url(location: str | None) -> str | None:
    return None if location is None else "file/" + quote(location)


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_ms(value: Any) -> str:
    return "cannot tell" if value is None else f"{value:+.0f} ms"


def when(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def create_app(config: ReviewConfig | None = None, *, auth: Callable[..., Any],
               title: str = "AV Alignment") -> FastAPI:
    """The review app; ``auth`` (a FastAPI dependency) guards every route."""
    config = config or ReviewConfig.from_env()
    catalog = Catalog(config)
    mlflow = MlflowLinks(config.mlflow_tracking_uri, config.mlflow_ui_url)
    templates = _templates()
    app = FastAPI(title=title, dependencies=[Depends(auth)], docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.review_config = config
    app.state.catalog = catalog

    def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = templates.get_template(name).render(title=title, **context)
        return HTMLResponse(html, status_code=status)

    # -- errors -------------------------------------------------------------------------------

    @app.exception_handler(PathRefused)
    async def _refused(request: Request, exc: PathRefused) -> Response:
        return _error(request, exc.status, str(exc))

    @app.exception_handler(ClipError)
    async def _clip_error(request: Request, exc: ClipError) -> Response:
        return _error(request, 422, f"{exc.reason}: {exc}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    def _error(request: Request, status: int, detail: str, headers: dict | None = None) -> Response:
        if _wants_html(request):
            response: Response = render("error.html", status=status, status_code=status, detail=detail)
        else:
            response = JSONResponse({"detail": detail}, status_code=status)
        for key, value in (headers or {}).items():
            response.headers[key] = value
        return response

    # -- helpers ------------------------------------------------------------------------------

    def served(path_or_uri: str | None) -> Path:
        """A path from a results row or trace, served only when it lies under a root."""
        loc = locate(config.roots, path_or_uri)
        if loc is None:
            raise PathRefused(403, "the file lies outside the review roots (AVALIGN_REVIEW_ROOTS)")
        return resolve_location(config.roots, loc)

    def clip_context(out: str, run: str, part: str, clip: str) -> tuple[Path, dict[str, Any]]:
        part_dir = catalog.partition_dir(out, run, part)
        return part_dir, catalog.clip_row(part_dir, check_name(clip, "clip"))

    def aligned_audio(row: dict[str, Any]) -> Path | None:
        """The kept edit's audio (FLAC), or None when the clip was left untouched."""
        return served(row["audio_uri"]) if row.get("audio_uri") else None

    # -- pages --------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def index(all: bool = False) -> HTMLResponse:  # noqa: A002 - the query parameter's name
        outputs = []
        for output in catalog.outputs():
            runs = catalog.runs(output.path)
            shown = runs if all else runs[:20]
            rows = []
            for run_id, mtime in shown:
                parts = catalog.summaries(output.location, run_id)
                totals = {o: sum(p.counts.get(o, 0) for p in parts) for o in OUTCOMES}
                rows.append({"run": run_id, "mtime": mtime, "partitions": parts, "totals": totals,
                             "clips": sum(p.n_clips for p in parts),
                             "gx_passed": sum(1 for p in parts if p.gx and p.gx["success"]),
                             "published": sum(1 for p in parts if p.published)})
            outputs.append({"out": output.location, "runs": rows, "hidden": len(runs) - len(shown)})
        return render("index.html", outputs=outputs, roots=config.roots)

    @app.get("/run", response_class=HTMLResponse)
    def run_page(out: str, run: str) -> HTMLResponse:
        parts = catalog.summaries(out, run)
        links = mlflow.links(run)
        return render("run.html", out=out, run=run, partitions=parts, mlflow=links)

    @app.get("/partition", response_class=HTMLResponse)
    def partition_page(out: str, run: str, part: str, outcome: str | None = None,
                       action: str | None = None, q: str | None = None, sort: str = "clip_id",
                       order: str = "asc", page: int = Query(1, ge=1),
                       per_page: int | None = Query(None, ge=1)) -> HTMLResponse:
        part_dir = catalog.partition_dir(out, run, part)
        query = _clip_query(outcome, action, q, sort, order, page, per_page)
        result = query_clips(catalog.results(part_dir), query)
        n, counts = catalog.counts(part_dir)
        published = catalog.published(catalog.output_dir(out)).get(part) == run
        return render("partition.html", out=out, run=run, part=part, n_clips=n, counts=counts,
                      gx=catalog.gx(part_dir), published=published, mlflow=mlflow.links(run).get(part),
                      result=result, query=query, sortable=SORTABLE,
                      results_file=locate(config.roots, part_dir / "results.parquet"))

    @app.get("/api/clips")
    def clips_api(out: str, run: str, part: str, outcome: str | None = None, action: str | None = None,
                  q: str | None = None, sort: str = "clip_id", order: str = "asc",
                  page: int = Query(1, ge=1), per_page: int | None = Query(None, ge=1)) -> dict[str, Any]:
        part_dir = catalog.partition_dir(out, run, part)
        query = _clip_query(outcome, action, q, sort, order, page, per_page)
        result = query_clips(catalog.results(part_dir), query)
        return {"total": result.total, "page": result.page, "pages": result.pages,
                "per_page": query.per_page, "actions": result.actions, "rows": result.rows}

    def _clip_query(outcome, action, q, sort, order, page, per_page) -> ClipQuery:
        if outcome and outcome not in OUTCOMES:
            raise HTTPException(400, f"outcome must be one of {', '.join(OUTCOMES)}")
        per_page = min(per_page or config.page_size, config.max_page_size)
        return ClipQuery(outcome=outcome or None, action=action or None, q=q or None,
                         sort=sort if sort in SORTABLE else "clip_id",
                         order="desc" if order == "desc" else "asc", page=page, per_page=per_page)

    @app.get("/clip", response_class=HTMLResponse)
    def clip_page(out: str, run: str, part: str, clip: str) -> HTMLResponse:
        part_dir, row = clip_context(out, run, part, clip)
        trace = catalog.trace(part_dir, clip, row) or {}
        ids = dict(out=out, run=run, part=part, clip=clip)
        source_loc = locate(config.roots, row.get("source_uri"))
        aligned_loc = locate(config.roots, row.get("audio_uri")) if row.get("audio_uri") else None
        prev_id, next_id = catalog.neighbours(part_dir, clip)
        return render(
            "clip.html", row=row, trace=trace, ids=ids, scores=trace.get("scores") or {},
            cycles=trace.get("cycles") or [], source_file=file_url(source_loc),
            original_audio=page_url("audio/original", **ids) if source_loc else None,
            aligned_audio=file_url(aligned_loc) if aligned_loc else (
                page_url("audio/original", **ids) if source_loc else None),
            aligned_is_original=aligned_loc is None,
            trace_file=file_url(locate(config.roots, row.get("trace_uri"))),
            output_file=file_url(locate(config.roots, row.get("output_uri"))),
            prev_id=prev_id, next_id=next_id,
        )

    # -- media and plots ----------------------------------------------------------------------

    @app.get("/file/{location:path}")
    def file(location: str) -> FileResponse:
        path = resolve_location(config.roots, location)
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=60"}
        if path.suffix.lower() in _SANDBOXED:
            headers["Content-Security-Policy"] = "sandbox allow-scripts allow-popups"
        return FileResponse(path, media_type=media_type(path), headers=headers)

    @app.get("/audio/original")
    def original_audio(out: str, run: str, part: str, clip: str) -> FileResponse:
        _, row = clip_context(out, run, part, clip)
        flac = decoded_audio_flac(served(row.get("source_uri")), config.cache_dir)
        return FileResponse(flac, media_type="audio/flac", headers={"Cache-Control": "private, max-age=60"})

    @app.get("/plot/spectrogram.png")
    def spectrogram(out: str, run: str, part: str, clip: str,
                    which: str = Query("before", pattern="^(before|after)$")) -> FileResponse:
        from avalign.review import plots

        _, row = clip_context(out, run, part, clip)
        source, aligned = served(row.get("source_uri")), aligned_audio(row)
        inputs = [source] + ([aligned] if aligned else [])

        def produce(path: Path) -> None:
            before = plots.load_audio(source, config.plot_max_seconds)
            after = plots.load_audio(aligned, config.plot_max_seconds) if aligned else before
            label = "original audio" if which == "before" else (
                "aligned audio" if aligned else "aligned audio (= original: no edit kept)")
            path.write_bytes(plots.spectrogram_png(before, after, which, f"{clip}: {label}"))

        key = cache_key(f"spectrogram-{which}", inputs, config.plot_max_seconds)
        return FileResponse(cached_file(config.cache_dir, key, ".png", produce), media_type="image/png")

    @app.get("/plot/sync.png")
    def sync_plot(out: str, run: str, part: str, clip: str) -> FileResponse:
        from avalign.review import plots

        part_dir, row = clip_context(out, run, part, clip)
        trace = catalog.trace(part_dir, clip, row) or {}
        source, aligned = served(row.get("source_uri")), aligned_audio(row)
        cfg = trace.get("config") or {}
        ev = trace.get("evidence") or {}
        speech_and_face = ((ev.get("audio") or {}).get("speech_s", 0) >= 1.0
                           and (ev.get("visual") or {}).get("face_fraction", 0) >= 0.5)
        band = (300.0, 3000.0) if speech_and_face else None
        frame_rate, frame_side = float(cfg.get("frame_rate", 25.0)), int(cfg.get("frame_side", 160))
        inputs = [source] + ([aligned] if aligned else [])

        def produce(path: Path) -> None:
            before = plots.load_audio(source, config.plot_max_seconds)
            after = plots.load_audio(aligned, config.plot_max_seconds) if aligned else before
            grid = plots.motion_grid(source, frame_rate=frame_rate, frame_side=frame_side,
                                     duration_s=before.size / plots.RATE)
            scores = trace.get("scores") or {}
            traced = ((scores.get("before") or {}).get("offset_ms"), (scores.get("after") or {}).get("offset_ms"))
            png = plots.sync_png(plots.sync_curves(before, grid, band), plots.sync_curves(after, grid, band),
                                 title=f"{clip}: audio onsets vs motion energy", traced=traced)
            path.write_bytes(png)

        key = cache_key("sync", inputs, config.plot_max_seconds, frame_rate, frame_side, band)
        return FileResponse(cached_file(config.cache_dir, key, ".png", produce), media_type="image/png")

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise PathRefused(404, "no such asset")
        return Response((PACKAGE_DIR / "static" / name).read_bytes(), media_type=STATIC_FILES[name])

    return app
