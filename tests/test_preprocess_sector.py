"""Sector detection on real scans: overlays blank, the fan kept."""

import numpy as np

from echofm.io import read_clip
from echofm.preprocess.sector import apply_sector, detect_sector

# (y0, y1, x0, x1) boxes of burned-in overlays, found by looking at the images.
DEID_OVERLAYS = {
    "settings text": (40, 280, 5, 95),
    "ECG trace": (562, 595, 50, 240),
    "colour bar": (55, 305, 745, 800),
    "heart rate": (560, 590, 730, 800),
}
STILL_OVERLAYS = {
    "measurement text": (20, 120, 5, 340),
    "settings text": (130, 250, 5, 95),
    "ECG trace": (695, 750, 55, 380),
    "probe icon": (410, 500, 5, 100),
}


def _overlays_blank_fan_kept(clip, overlays, fan_box):
    sector = detect_sector(clip.frames, clip.region)
    masked = apply_sector(clip.frames, sector.mask)
    for name, (y0, y1, x0, x1) in overlays.items():
        assert clip.frames[:, y0:y1, x0:x1].max() > 150, f"{name}: no overlay there to remove"
        assert masked[:, y0:y1, x0:x1].max() == 0, f"{name} survived masking"
    y0, y1, x0, x1 = fan_box
    np.testing.assert_array_equal(masked[:, y0:y1, x0:x1], clip.frames[:, y0:y1, x0:x1])
    return sector


def test_deid_cine_overlays_blanked_fan_kept(deid_cine):
    clip = read_clip(deid_cine)
    sector = _overlays_blank_fan_kept(clip, DEID_OVERLAYS, fan_box=(300, 500, 250, 600))
    # The green ECG trace sweeps across the bottom; only where it is drawn over the
    # fan's lower edge (a few pixels) can it survive.
    def green(frames):
        f = frames[:, 530:, :400].astype(int)
        return (f[..., 1] - f[..., 0] > 60) & (f[..., 1] - f[..., 2] > 60)
    kept = green(apply_sector(clip.frames, sector.mask)).sum()
    assert green(clip.frames).sum() > 10_000 and kept < 0.005 * green(clip.frames).sum()
    assert sector.method == "motion"
    assert 0.25 < sector.mask.mean() < 0.5  # a fan, not the whole screen


def test_still_overlays_blanked_fan_kept(lossless_still):
    clip = read_clip(lossless_still)
    sector = _overlays_blank_fan_kept(clip, STILL_OVERLAYS, fan_box=(300, 550, 380, 650))
    assert sector.method == "intensity"


def test_dim_fan_edges_kept_and_text_removed(color3d_cine):
    clip = read_clip(color3d_cine)
    sector = detect_sector(clip.frames, clip.region)
    # The faint lateral far field of the fan belongs to the sector ...
    assert sector.mask[300, 110] and sector.mask[300, 480]
    # ... the green/gray text in the corners does not.
    for y, x in [(15, 40), (40, 30), (45, 620), (405, 580), (465, 300)]:
        assert not sector.mask[y, x]


def test_static_image_without_signal_keeps_everything():
    frames = np.zeros((4, 50, 60), np.uint8)
    sector = detect_sector(frames)
    assert sector.method == "full" and sector.mask.all()
