"""B-mode image formation of a phantom: scatterers, PSF, envelope, log compression, scan conversion.

The model follows a scanner's chain on a polar grid (depth samples x beams):
tissue-dependent random scatterers (complex amplitudes, sparse where density is low) that
are carried by the tissue (sampled at each point's *material* coordinates) and partly
re-drawn every frame, convolved with a separable point spread function (axial pulse x
lateral beam), attenuated with depth, plus receive noise, then time-gain compensated,
envelope-detected, log-compressed to a dynamic range and scan-converted into a fan-shaped
sector on a Cartesian grid. Everything is vectorised over frames.

Array layouts: polar arrays are ``[T, R, B]`` (frames, depth samples, beams); output frames
are uint8 ``[T, H, W]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from echofm.phantom import anatomy as A

# Scatterer strength (amplitude), density (fraction of cells holding a scatterer) and
# frame-to-frame coherence of each material (blood speckle flickers, tissue persists).
_STRENGTH = np.array([0.08, 0.45, 0.004, 0.42, 1.8, 1.4, 3.0, 0.8], np.float32)
_DENSITY = np.array([0.55, 0.9, 0.25, 1.0, 1.0, 1.0, 1.0, 0.7], np.float32)
_COHERENCE = np.array([0.92, 0.95, 0.25, 0.93, 0.95, 0.85, 0.9, 0.97], np.float32)


@dataclass
class Scanner:
    """Acquisition settings of one clip (drawn per clip; all are recorded in the truth).

    depth_mm: imaging depth; half_angle_deg: half the sector opening; axial_psf /
    lateral_psf: PSF standard deviations in polar samples / beams; attenuation_db_mm:
    two-way attenuation; tgc_compensation: fraction of it the TGC restores;
    noise: receive-noise amplitude; gain_db: overall gain; dynamic_range_db: log-compression
    range; clutter: near-field haze strength; dropout: depth of a lateral drop-out;
    dropout_angle_deg: where it is; chest_wall_mm: thickness of the bright chest wall.
    """

    depth_mm: float
    half_angle_deg: float
    axial_psf: float
    lateral_psf: float
    attenuation_db_mm: float
    tgc_compensation: float
    noise: float
    gain_db: float
    dynamic_range_db: float
    clutter: float
    dropout: float
    dropout_angle_deg: float
    chest_wall_mm: float

    def to_dict(self) -> dict:
        return asdict(self)


def sample_scanner(depth_mm: float, rng: np.random.Generator, noise_scale: float = 1.0,
                   half_angle_deg: tuple[float, float] = (36.0, 45.0),
                   gain_db: tuple[float, float] = (-4.0, 4.0)) -> Scanner:
    """Random acquisition settings around a required imaging depth; ``half_angle_deg`` and
    ``gain_db`` are the ranges those two are drawn from (the draws keep their order, so the
    defaults reproduce earlier phantoms exactly)."""
    return Scanner(
        depth_mm=float(depth_mm),
        half_angle_deg=float(rng.uniform(*half_angle_deg)),
        axial_psf=float(rng.uniform(0.7, 1.1)),
        lateral_psf=float(rng.uniform(1.0, 1.7)),
        attenuation_db_mm=float(rng.uniform(0.05, 0.09)),
        tgc_compensation=float(rng.uniform(0.75, 1.0)),
        noise=float(rng.uniform(0.002, 0.01) * noise_scale),
        gain_db=float(rng.uniform(*gain_db)),
        dynamic_range_db=float(rng.uniform(42.0, 55.0)),
        clutter=float(rng.uniform(0.02, 0.25)),
        dropout=float(rng.uniform(0.0, 0.6)),
        dropout_angle_deg=float(rng.uniform(-40.0, 40.0)),
        chest_wall_mm=float(rng.uniform(4.0, 12.0)),
    )


@dataclass
class Sector:
    """Geometry of the fan in the output image and of the polar grid behind it.

    The probe sits at pixel ``(apex_row, width / 2)`` (row, column of pixel-centre
    coordinates); pixels are square, ``pixel_mm`` wide. ``r_mm``/``theta`` are the
    polar sample positions ``[R]`` / ``[B]``; ``mask`` is the uint8 ``[H, W]`` sector.
    """

    height: int
    width: int
    pixel_mm: float
    apex_row: float
    depth_mm: float
    half_angle: float
    r_mm: np.ndarray
    theta: np.ndarray
    map_x: np.ndarray
    map_y: np.ndarray
    mask: np.ndarray

    def pixel_to_mm(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image pixel coordinates (pixel centres at integers) to probe-frame mm (x, y)."""
        return (cols - (self.width - 1) / 2.0) * self.pixel_mm, (rows - self.apex_row) * self.pixel_mm

    def mm_to_pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probe-frame mm to image ``(col, row)`` pixel coordinates (pixel centres at integers)."""
        return x / self.pixel_mm + (self.width - 1) / 2.0, y / self.pixel_mm + self.apex_row


def make_sector(height: int, width: int, scanner: Scanner) -> Sector:
    """Fan geometry that fits ``scanner.depth_mm`` into an ``height x width`` image."""
    half = np.deg2rad(scanner.half_angle_deg)
    apex_row = 0.02 * height
    radius_px = min(height - 1.0 - apex_row, (width / 2.0) / np.sin(half) * 1.08)
    pixel_mm = scanner.depth_mm / radius_px
    n_r = int(round(1.4 * radius_px))
    n_b = int(round(1.05 * 2 * half * radius_px))
    r_mm = (np.arange(n_r, dtype=np.float32) + 0.5) * (scanner.depth_mm / n_r)
    theta = (-half + (np.arange(n_b, dtype=np.float32) + 0.5) * (2 * half / n_b)).astype(np.float32)

    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    x = (cols - (width - 1) / 2.0) * pixel_mm
    y = (rows - apex_row) * pixel_mm
    r = np.hypot(x, y)
    th = np.arctan2(x, y)
    inside = (y >= 0) & (r <= scanner.depth_mm) & (np.abs(th) <= half)
    map_y = np.where(inside, r / (scanner.depth_mm / n_r) - 0.5, -10.0).astype(np.float32)
    map_x = np.where(inside, (th + half) / (2 * half / n_b) - 0.5, -10.0).astype(np.float32)
    return Sector(height, width, float(pixel_mm), float(apex_row), scanner.depth_mm, float(half),
                  r_mm, theta, map_x, map_y, inside.astype(np.uint8))


class ScattererField:
    """Random scatterers fixed to the tissue, on a grid in heart-frame mm.

    Channels: real and imaginary amplitude (complex Gaussian), a uniform draw deciding
    where sparse tissue has a scatterer, and a smooth texture that modulates the
    background body. Sampled by bilinear interpolation at material coordinates.
    """

    def __init__(self, sector: Sector, rng: np.random.Generator, margin_mm: float = 30.0):
        spacing = 0.6 * float(sector.r_mm[1] - sector.r_mm[0])
        extent_x = sector.depth_mm * np.sin(sector.half_angle) + margin_mm
        self.x0, self.y0 = -extent_x, -margin_mm
        self.spacing = spacing
        nx = int(np.ceil(2 * extent_x / spacing)) + 1
        ny = int(np.ceil((sector.depth_mm + 2 * margin_mm) / spacing)) + 1
        grid = np.empty((ny, nx, 4), np.float32)
        grid[..., :2] = rng.standard_normal((ny, nx, 2), dtype=np.float32) * np.float32(np.sqrt(0.5))
        grid[..., 2] = rng.random((ny, nx), dtype=np.float32)
        coarse = rng.standard_normal((10, 10)).astype(np.float32)
        grid[..., 3] = cv2.resize(coarse, (nx, ny), interpolation=cv2.INTER_CUBIC)
        self.grid = grid

    def sample(self, xm: np.ndarray, ym: np.ndarray) -> np.ndarray:
        """Field at material points ``xm, ym`` (``[T, R, B]`` mm) -> ``[T, R, B, 4]``."""
        out = np.empty(xm.shape + (4,), np.float32)
        for t in range(xm.shape[0]):
            mx = ((xm[t] - self.x0) / self.spacing).astype(np.float32)
            my = ((ym[t] - self.y0) / self.spacing).astype(np.float32)
            out[t] = cv2.remap(self.grid, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return out


def _gaussian_kernel(sigma: float) -> np.ndarray:
    half = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    return (k / np.sqrt((k * k).sum())).astype(np.float32)


def form_bmode(material: np.ndarray, field_samples: np.ndarray, sector: Sector, scanner: Scanner,
               rng: np.random.Generator) -> np.ndarray:
    """Grey levels in [0, 255] on the polar grid, float32 ``[T, R, B]``.

    ``material``: uint8 ``[T, R, B]`` material codes; ``field_samples``: ``[T, R, B, 4]``
    scatterer field at each sample's material coordinates (see ``ScattererField``).
    """
    T, R, B = material.shape
    r = sector.r_mm.reshape(1, R, 1)
    strength = _STRENGTH[material]
    density = _DENSITY[material]
    coherence = _COHERENCE[material]
    body = material == A.MAT_BODY
    texture = field_samples[..., 3]
    strength = np.where(body, strength * np.clip(1.0 + 0.7 * texture, 0.1, 2.5), strength)
    strength = strength + np.float32(scanner.clutter) * np.exp(-r / 25.0).astype(np.float32)
    present = (field_samples[..., 2] < density).astype(np.float32) / np.sqrt(density)

    # Scatterers move with the tissue; a part (1 - coherence) is drawn afresh every frame.
    fresh = rng.standard_normal((T, R, B, 2), dtype=np.float32) * np.float32(np.sqrt(0.5))
    keep = coherence[..., None]
    amp = (keep * field_samples[..., :2] + np.sqrt(1.0 - keep * keep) * fresh)
    amp *= (strength * present)[..., None]

    # Separable PSF: Gaussian pulse envelope along depth, Gaussian beam across beams.
    ky = _gaussian_kernel(scanner.axial_psf)
    kx = _gaussian_kernel(scanner.lateral_psf)
    rf = amp.reshape(T * R, B, 2)
    rf = cv2.sepFilter2D(rf, -1, kx, ky, borderType=cv2.BORDER_REFLECT).reshape(T, R, B, 2)

    atten = np.power(10.0, -scanner.attenuation_db_mm * r / 20.0).astype(np.float32)
    theta = sector.theta.reshape(1, 1, B)
    beam_gain = 1.0 - scanner.dropout * np.exp(-0.5 * ((theta - np.deg2rad(scanner.dropout_angle_deg)) / 0.12) ** 2)
    edge = np.clip((sector.half_angle - np.abs(theta)) / (0.06 * sector.half_angle), 0.0, 1.0)
    rf *= (atten * beam_gain * (0.3 + 0.7 * edge)).astype(np.float32)[..., None]
    rf += rng.standard_normal(rf.shape, dtype=np.float32) * np.float32(scanner.noise * np.sqrt(0.5))

    envelope = np.sqrt(rf[..., 0] ** 2 + rf[..., 1] ** 2)
    tgc = np.power(10.0, scanner.tgc_compensation * scanner.attenuation_db_mm * r / 20.0).astype(np.float32)
    envelope *= tgc
    db = 20.0 * np.log10(envelope + 1e-6)
    # Reference level: bright tissue near the top of the histogram sits near white.
    ref = float(np.percentile(db[:, ::3, ::3], 99.5)) + scanner.gain_db + 1.0
    grey = (db - (ref - scanner.dynamic_range_db)) * (255.0 / scanner.dynamic_range_db)
    return np.clip(grey, 0.0, 255.0).astype(np.float32)


def scan_convert(polar: np.ndarray, sector: Sector) -> np.ndarray:
    """Polar grey levels ``[T, R, B]`` -> uint8 ``[T, H, W]`` fan image (black outside)."""
    out = np.empty((polar.shape[0], sector.height, sector.width), np.uint8)
    for t in range(polar.shape[0]):
        img = cv2.remap(polar[t], sector.map_x, sector.map_y, cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        out[t] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    out *= sector.mask[None]
    return out
