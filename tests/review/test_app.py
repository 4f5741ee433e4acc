"""The review app through FastAPI's test client, with an injected auth dependency.

The real Airflow dependency is exercised in test_plugin.py; here ``fake_auth`` answers 401 without
credentials and 403 for credentials that do not grant access, as Airflow's does.
"""

from __future__ import annotations

import re
import time
from urllib.parse import quote

import pytest

from tests.review.conftest import BIG, GOOD_TOKEN, OUTSIDE, PART, RUN, ids


def links(html: str, page: str) -> list[str]:
    return [h.replace("&amp;", "&") for h in re.findall(rf'(?:href|src)="({re.escape(page)}[^"]*)"', html)]


# -- auth ----------------------------------------------------------------------------------------

PROTECTED = [
    "/", f"/run?out=var/out&run={RUN}", f"/partition?out=var/out&run={RUN}&part={PART}",
    f"/api/clips?out=var/out&run={RUN}&part={PART}",
    "/clip?out=var/out&run={run}&part={part}&clip=clip-0000".format(run=RUN, part=PART),
    "/file/var/data/media/src-0.mp4", f"/audio/original?out=var/out&run={RUN}&part={PART}&clip=clip-0000",
    f"/plot/spectrogram.png?out=var/out&run={RUN}&part={PART}&clip=clip-0000",
    f"/plot/sync.png?out=var/out&run={RUN}&part={PART}&clip=clip-0000", "/static/review.css",
    "/file/var/escape.mp4",
]


@pytest.mark.parametrize("url", PROTECTED)
def test_every_route_needs_a_login(anonymous, url):
    assert anonymous.get(url).status_code == 401
    assert anonymous.get(url, headers={"authorization": "Bearer forged"}).status_code == 403
    assert anonymous.get(url, cookies={"_token": "forged"}).status_code == 403


def test_the_login_cookie_works_like_the_bearer_header(anonymous):
    assert anonymous.get("/", cookies={"_token": GOOD_TOKEN}).status_code == 200


def test_a_browser_without_login_gets_a_page_pointing_to_the_airflow_login(anonymous):
    r = anonymous.get("/", headers={"accept": "text/html"})
    assert r.status_code == 401
    assert 'href="../"' in r.text and "Log in to Airflow" in r.text


def test_docs_and_openapi_are_not_exposed(client, anonymous):
    for url in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(url).status_code == 404
        assert anonymous.get(url).status_code == 404


# -- pages ---------------------------------------------------------------------------------------

def test_index_lists_the_run_with_counts_and_relative_links(client):
    html = client.get("/").text
    assert RUN in html and "var/out" in html
    assert links(html, "run?") == [f"run?out=var%2Fout&run={RUN}"]
    assert f"partition?out=var%2Fout&run={RUN}&part={PART}" in links(html, "partition?")
    assert not re.search(r'(?:href|src)="/', html), "absolute paths break behind a proxy"


def test_run_page_shows_outcomes_gx_and_published(client):
    html = client.get("/run", params={"out": "var/out", "run": RUN}).text
    # part-00000: 8 clips = 4 improved, 2 kept, 2 quarantined; GX failed, Data Docs linked
    assert re.search(r'improved" title="improved">4<', html)
    assert "quarantined_share" in html and "failed" in html
    assert 'href="file/var/out/runs/run-1/part-00000/gx/data_docs/index.html"' in html
    assert "no MLflow run found" in html


def test_data_docs_are_served_sandboxed_with_their_relative_assets(client):
    r = client.get("/file/var/out/runs/run-1/part-00000/gx/data_docs/index.html")
    assert r.status_code == 200 and "data docs" in r.text
    assert r.headers["content-security-policy"].startswith("sandbox")
    assert client.get("/file/var/out/runs/run-1/part-00000/gx/data_docs/static/docs.css").status_code == 200


def test_clip_page_has_video_two_tracks_plots_and_cycles(client):
    html = client.get("/clip", params=ids("clip-0000")).text  # improved, with an aligned FLAC
    assert 'id="video" src="file/var/data/media/src-0.mp4" muted' in html
    original = links(html, "audio/original?")
    assert original and 'id="track-original"' in html
    aligned = "file/var/out/runs/run-1/part-00000/audio/clip-0000.flac"
    assert f'id="track-aligned" data-track="aligned" src="{aligned}"' in html
    assert len(links(html, "plot/spectrogram.png?")) == 2 and links(html, "plot/sync.png?")
    assert "The audio sounds like a click." in html and "The frames look like grey." in html
    assert "<code>time_shift</code>" in html and "+120 ms against the picture" in html
    assert "Kept original" not in html


def test_clip_page_gives_the_reason_for_kept_and_quarantined_clips(client):
    kept = client.get("/clip", params=ids("clip-0001")).text
    assert "Kept original:</strong> no_edit_planned: no rule fired" in kept
    assert "no edit kept: same as original" in kept
    quarantined = client.get("/clip", params=ids("clip-0003")).text
    assert "Quarantined:</strong> no_audio_stream: clip has no audio" in quarantined
    assert "plot/spectrogram.png" not in quarantined  # nothing to plot for an unscorable clip


def test_unknown_names_are_not_found(client):
    assert client.get("/clip", params=ids("clip-9999")).status_code == 404
    assert client.get("/clip", params={**ids(), "run": "../run-1"}).status_code == 404
    assert client.get("/partition", params={**ids(), "part": ".."}).status_code == 404
    assert client.get("/run", params={"out": "var/../var/out", "run": RUN}).status_code == 403
    assert client.get("/run", params={"out": "var/data", "run": RUN}).status_code == 404  # no runs/


# -- media: traversal and ranges -------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    "/file/var/..%2F..%2Foutside%2Fsecret.mp4",
    "/file/var/%2E%2E/outside/secret.mp4",
    "/file/var/data/..%2f..%2f..%2fetc%2fpasswd",
    "/file/var/%2Fetc%2Fpasswd",
    "/file/var//etc/passwd",
    "/file/var/escape.mp4",
    "/file/var/escape-dir/secret.mp4",
])
def test_traversal_is_refused(client, raw):
    r = client.get(raw)
    assert r.status_code in (403, 404), (raw, r.status_code)
    assert b"secret video bytes" not in r.content and b"root:" not in r.content


def test_traversal_through_the_raw_http_path(app, review_root):
    """Clients normalise ``../`` in URLs; send the raw path as a hostile client would."""
    import asyncio

    async def call(path: str) -> int:
        status = {}
        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "root_path": "",
                 "query_string": b"", "headers": [(b"authorization", f"Bearer {GOOD_TOKEN}".encode())],
                 "scheme": "http", "server": ("test", 80), "client": ("test", 1), "http_version": "1.1"}

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
        await app(scope, receive, send)
        return status["code"]

    assert asyncio.run(call("/file/var/../outside/secret.mp4")) == 403
    assert asyncio.run(call("/file/var/data/media/../../../outside/secret.mp4")) == 403
    assert asyncio.run(call(f"/file/var/{review_root.parent / 'outside' / 'secret.mp4'}")) == 403


def test_files_the_api_server_must_keep_are_not_served(client):
    assert client.get("/file/var/airflow/airflow.cfg").status_code == 404
    assert client.get("/file/var/airflow/simple_auth_manager_passwords.json.generated").status_code == 404
    assert client.get("/file/var/.hidden.mp4").status_code == 404
    assert client.get("/file/etc/passwd").status_code == 404


def test_range_requests_let_players_seek(client, review_root):
    url = "/file/var/data/media/src-0.mp4"
    size = (review_root / "data" / "media" / "src-0.mp4").stat().st_size
    full = client.get(url)
    assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes"
    assert full.headers["content-type"] == "video/mp4" and len(full.content) == size
    part = client.get(url, headers={"range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{size}"
    assert part.content == full.content[100:200]
    tail = client.get(url, headers={"range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == full.content[-50:]
    beyond = client.get(url, headers={"range": f"bytes={size + 10}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"


def test_original_audio_is_decoded_to_flac_with_ranges(client):
    url = "/audio/original?" + "&".join(f"{k}={quote(v)}" for k, v in ids("clip-0000").items())
    full = client.get(url)
    assert full.status_code == 200 and full.headers["content-type"] == "audio/flac"
    assert full.content[:4] == b"fLaC"
    part = client.get(url, headers={"range": "bytes=0-3"})
    assert part.status_code == 206 and part.content == b"fLaC"
    assert part.headers["content-range"] == f"bytes 0-3/{len(full.content)}"


def test_plots_are_pngs(client):
    for path, extra in (("/plot/spectrogram.png", {"which": "before"}), ("/plot/spectrogram.png", {"which": "after"}),
                        ("/plot/sync.png", {})):
        r = client.get(path, params={**ids("clip-0000"), **extra})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png" and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/plot/spectrogram.png", params={**ids(), "which": "sideways"}).status_code == 422


def test_media_of_a_source_outside_the_roots_is_refused(client):
    clip = ids("clip-0000", part=OUTSIDE)
    html = client.get("/clip", params=clip).text
    assert "lies outside the review roots" in html and 'id="video"' not in html
    assert client.get("/audio/original", params=clip).status_code == 403
    assert client.get("/plot/sync.png", params=clip).status_code == 403
    assert client.get("/plot/spectrogram.png", params=clip).status_code == 403


# -- the clip table on 1,000 clips ---------------------------------------------------------------------

def test_partition_of_1000_clips_is_paginated_server_side(client):
    params = {"out": "var/out", "run": RUN, "part": BIG}
    t0 = time.perf_counter()
    cold = client.get("/partition", params=params)
    cold_s = time.perf_counter() - t0
    warm_times = []
    for page in (2, 10, 20):
        t0 = time.perf_counter()
        r = client.get("/partition", params={**params, "page": page})
        warm_times.append(time.perf_counter() - t0)
        assert r.status_code == 200
    print(f"\n[review] 1,000-clip partition page: first {cold_s * 1000:.0f} ms (reads parquet), "
          f"next pages {min(warm_times) * 1000:.0f}-{max(warm_times) * 1000:.0f} ms")
    html = cold.text
    assert cold.status_code == 200
    assert "1000 clips · page 1 of 20" in html
    assert html.count('href="clip?') == 50  # only one page of rows is rendered
    nxt = re.search(r'rel="next" href="(partition\?[^"]+)"', html).group(1).replace("&amp;", "&")
    assert "page=2" in nxt and "part=big-00001" in nxt and "out=var%2Fout" in nxt


def test_clip_api_filters_sorts_and_pages(client):
    base = {"out": "var/out", "run": RUN, "part": BIG}
    r = client.get("/api/clips", params={**base, "outcome": "quarantined", "per_page": 100, "page": 3}).json()
    assert r["total"] == 250 and r["pages"] == 3 and len(r["rows"]) == 50
    assert {row["outcome"] for row in r["rows"]} == {"quarantined"}
    r = client.get("/api/clips", params={**base, "action": "spectral_gating"}).json()
    assert r["total"] == len([i for i in range(1000) if i % 4 in (0, 2) and i % 3 == 0])
    assert all("spectral_gating" in row["actions"].split(",") for row in r["rows"])
    r = client.get("/api/clips", params={**base, "action": "(none)"}).json()
    assert r["total"] == 500 and all(row["actions"] == "" for row in r["rows"])
    r = client.get("/api/clips", params={**base, "sort": "alignment_before", "order": "desc"}).json()
    values = [row["alignment_before"] for row in r["rows"]]
    assert values == sorted(values, reverse=True)
    gains = []
    for page in (1, 2):
        r = client.get("/api/clips", params={**base, "sort": "alignment_gain", "order": "desc", "per_page": 500,
                                             "page": page}).json()
        gains += [row["alignment_gain"] for row in r["rows"]]
    assert len(gains) == 1000
    known = [g for g in gains if g is not None]
    assert known == sorted(known, reverse=True) and gains[-1] is None  # missing scores sort last
    r = client.get("/api/clips", params={**base, "q": "clip-099"}).json()
    assert r["total"] == 10
    assert client.get("/api/clips", params={**base, "outcome": "bogus"}).status_code == 400
    r = client.get("/api/clips", params={**base, "per_page": 100000}).json()
    assert r["per_page"] == 500  # capped


def test_partition_page_filters_and_sort_links(client):
    html = client.get("/partition", params={"out": "var/out", "run": RUN, "part": BIG, "outcome": "kept_original",
                                            "sort": "seconds", "order": "desc"}).text
    assert "250 clips · page 1 of 5" in html
    assert 'class="sorted desc"' in html
    assert '<option value="kept_original" selected>' in html
    # the header link flips the order of the active column and keeps the filter
    assert 'href="partition?sort=seconds&amp;order=asc&amp;out=var%2Fout' in html and "outcome=kept_original" in html
