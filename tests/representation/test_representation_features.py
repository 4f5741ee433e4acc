"""The fixed front ends: log-mel matches librosa's filterbank, motion descriptors put a change on
the right 25 Hz step whatever the frame rate."""

from __future__ import annotations

import numpy as np

from avalign.representation import features as F


def test_mel_filterbank_equals_librosa():
    import librosa

    ref = librosa.filters.mel(sr=16000, n_fft=F.WIN, n_mels=F.N_MELS, fmin=50.0, fmax=7600.0, htk=True)
    assert np.allclose(F.mel_filterbank(), ref, atol=1e-7)


def test_log_mel_shape_and_an_onset_in_its_frame():
    x = np.zeros(3 * 16000, dtype=np.float32)
    x[16000:16160] = np.sin(np.arange(160) * 0.3)  # a 10 ms burst at t = 1.0 s
    mel = F.log_mel(x, 150)
    assert mel.shape == (150, F.N_MELS)
    energy = mel.max(axis=1)
    # frame k covers [20k, 20k + 40) ms: the burst at 1000 ms is in frames 49 and 50
    assert set(np.flatnonzero(energy > energy.min() + 5)) <= {48, 49, 50}


def test_motion_descriptor_marks_the_flash_frame_at_25_and_12_5_fps():
    frames = np.zeros((50, 72, 96, 3), dtype=np.uint8)
    frames[20:] = 200  # the picture brightens at frame 20 (0.8 s at 25 fps)
    d = F.motion_descriptors(frames, fps=25.0, n_steps=50)
    assert d.shape == (50, F.MOTION_DIM)
    assert np.flatnonzero(np.abs(d).sum(axis=1) > 0).tolist() == [20]
    half = frames[::2]  # 12.5 fps: the change lands on the grid step of its frame time
    d2 = F.motion_descriptors(half, fps=12.5, n_steps=50)
    assert np.flatnonzero(np.abs(d2).sum(axis=1) > 0).tolist() == [20]


def test_thumbnail_shape():
    frames = np.random.default_rng(0).integers(0, 255, (5, 120, 160, 3), dtype=np.uint8)
    assert F.thumbnail(frames).shape == (*F.THUMB, 3)
