"""``python -m avalign models check``: call every role through tritonclient gRPC on one clip."""

from __future__ import annotations

import json
import time
from pathlib import Path

from avalign.errors import AvalignError

FRAME_SIDE = 160  # frames sent to the models are downscaled to this longest side
FRAME_RATE = 25.0  # and sampled at this rate at most


def load_clip(path: str | Path):
    """Decode a clip into what the models take: 16 kHz mono audio and sampled RGB frames."""
    from avalign.media.decode import decode_audio, decode_frames

    audio = decode_audio(path, sample_rate=16000, mono=True)
    video = decode_frames(path, sample_fps=FRAME_RATE, max_side=FRAME_SIDE)
    return audio.samples[0], video


def check_models(clip: str | Path, *, url: str | None = None) -> int:
    from avalign.serving.client import TritonClient
    from avalign.serving.launcher import TritonServer

    clip = Path(clip)
    if not clip.is_file():
        raise AvalignError(f"--clip {clip}: no such file")
    server = None
    if url is None:
        t0 = time.perf_counter()
        server = TritonServer().start()
        url = server.grpc_url
        print(f"local tritonserver ready in {time.perf_counter() - t0:.1f}s at {url}")
    try:
        client = TritonClient(url)
        audio, video = load_clip(clip)
        fps = float(video.fps or FRAME_RATE)
        print(f"clip {clip.name}: {audio.size / 16000:.2f}s audio, {video.frames.shape[0]} frames")
        rows = []

        def timed(name, fn):
            t = time.perf_counter()
            result = fn()
            rows.append((name, time.perf_counter() - t))
            return result

        da = timed("audio_describer", lambda: client.describe_audio(audio))
        dv = timed("visual_describer", lambda: client.describe_frames(video.frames, fps, video.times_s))
        emb = timed("text_embedder", lambda: client.embed_texts([da.text, dv.text]))
        evidence = {"heard": da.text, "seen": dv.text, "frame_times_s": video.times_s.tolist()}
        sc = timed("av_scorer", lambda: client.score(audio, video.frames, fps, evidence))
        print(f"\naudio_describer : {da.text}")
        print(f"                  tags={[t['label'] for t in da.evidence['tags']]} snr={da.evidence['snr_db']} dB")
        print(f"visual_describer: {dv.text}")
        print(f"                  tags={[t['label'] for t in dv.evidence['tags']]} faces={dv.evidence['face_fraction']}")
        print(f"text_embedder   : {emb.shape} float32, cosine(audio, visual)={float(emb[0] @ emb[1]):.3f}")
        print(f"av_scorer       : alignment={sc.alignment:.3f} sync={sc.sync:.3f}")
        print(f"                  {json.dumps(sc.detail)}")
        print("\nlatency per call:")
        for name, secs in rows:
            print(f"  {name:17s} {1000 * secs:8.1f} ms  (model version {client.model_version(name)})")
        return 0
    finally:
        if server is not None:
            server.stop()
