"""One phantom clip with its exact ground truth: configuration, sampling and generation.

``generate_case(seed, config)`` is deterministic for a seed: the same seed gives the same
heart (patient), the same acquisition and the same pixels; a different seed gives a
different heart. Asking for another ``view`` with the same seed keeps the patient (as a
study holds several views of one heart) but re-draws the acquisition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np

from echofm.errors import EchoFMError
from echofm.io.clip import Clip
from echofm.labels import STRUCTURES, VIEWS
from echofm.phantom.config import PhantomConfig
from echofm.phantom import anatomy as A
from echofm.phantom import physiology as P
from echofm.phantom import imaging as I


@dataclass
class PhantomCase:
    """A generated clip and its ground truth.

    frames: uint8 ``[T, H, W]`` B-mode cine. labels: uint8 ``[T, H, W]`` (0 background,
    1 LV cavity, 2 LV myocardium, 3 LA, 4 RV cavity, 5 RA, 6 aorta; zero outside the
    sector). truth: JSON-ready dict (view, fps, heart_rate, ef, edv, esv, ed_frames,
    es_frames, lv_volume per frame, beats, disease labels, patient / scanner / layout
    parameters, pixel spacing, seed).
    """

    frames: np.ndarray
    labels: np.ndarray
    truth: dict
    _patient: P.Patient = field(repr=False, default=None)
    _layout: A.ViewLayout = field(repr=False, default=None)
    _sector: I.Sector = field(repr=False, default=None)
    _lv: P.LVGeometry = field(repr=False, default=None)
    _pose: np.ndarray = field(repr=False, default=None)

    @property
    def view(self) -> str:
        return self.truth["view"]

    @property
    def fps(self) -> float:
        return self.truth["fps"]

    @property
    def ef(self) -> float:
        return self.truth["ef"]

    @property
    def pixel_spacing(self) -> tuple[float, float]:
        return tuple(self.truth["pixel_spacing_mm"])

    def to_clip(self) -> Clip:
        """The frames as an ``echofm`` Clip (source_kind "phantom")."""
        return Clip(frames=self.frames, fps=self.fps, pixel_spacing=self.pixel_spacing,
                    source_kind="phantom", meta={"view": self.view})

    def lv_chords(self, frame: int, discs: int = 20) -> np.ndarray:
        """LV tracing of ``frame`` as EchoNet lays it out: float ``[discs + 1, 4]`` rows
        ``(x1, y1, x2, y2)`` in image pixels (column, row; pixel centres at integers).

        Row 0 is the long axis (apex to mitral-annulus centre); rows 1.. are chords
        perpendicular to it, evenly spaced from the apex (a point) to the annulus.
        """
        if self.view not in ("A4C", "A2C"):
            raise EchoFMError(f"LV tracing: view {self.view} has no apical long axis")
        out = A.lv_outline(self._layout, self._patient, float(self._lv.length[frame]),
                           float(self._lv.width[frame]), samples=discs)
        to_px = lambda pts: np.stack(self._to_pixels(frame, pts[..., 0], pts[..., 1]), axis=-1)
        axis = np.concatenate([to_px(out["apex"]), to_px(out["base"])])
        chords = np.concatenate([to_px(out["left"]), to_px(out["right"])], axis=1)
        return np.vstack([axis[None], chords])

    def _to_pixels(self, frame: int, hx, hy):
        rot, tx, ty, px, py = self._pose[frame]
        c, s = np.cos(rot), np.sin(rot)
        x = c * (hx - px) - s * (hy - py) + px + tx
        y = s * (hx - px) + c * (hy - py) + py + ty
        return self._sector.mm_to_pixel(np.asarray(x), np.asarray(y))


# --------------------------------------------------------------------------- sampling


def _draw(rng, lo_hi):
    lo, hi = lo_hi
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


def sample_patient(rng: np.random.Generator, config: PhantomConfig) -> P.Patient:
    """A random heart within ``config``'s ranges, with its pathology."""
    lo, hi = config.ef
    if lo < 50.0 < hi:
        ef = rng.uniform(lo, 50.0) if rng.random() < config.reduced_ef_fraction else rng.uniform(50.0, hi)
    else:
        ef = _draw(rng, config.ef)
    r = rng.random()
    as_severity = "none"
    if r < config.as_fraction:
        as_severity = ("mild", "moderate", "severe")[min(2, int(3 * r / max(config.as_fraction, 1e-9)))]
    ar = bool(rng.random() < config.ar_fraction)
    # Pressure overload thickens the wall: stenosis makes hypertrophy likelier.
    lvh_p = config.lvh_fraction * (1.0 + {"none": 0.0, "mild": 0.5, "moderate": 1.0, "severe": 1.5}[as_severity])
    lvh = bool(rng.random() < min(1.0, lvh_p))
    edv = _draw(rng, config.edv)
    edv *= 1.0 + 0.6 * max(0.0, 50.0 - ef) / 40.0  # remodelling: weak hearts dilate
    edv *= 1.25 if ar else 1.0                       # volume overload
    hr = _draw(rng, config.heart_rate)
    sys_frac = _draw(rng, config.systolic_fraction) + 0.0015 * (hr - 70.0)
    return P.Patient(
        heart_rate=hr,
        rr_variability=float(config.rr_variability),
        irregular=bool(rng.random() < config.irregular_fraction),
        systolic_fraction=float(np.clip(sys_frac, 0.2, 0.6)),
        atrial_kick=float(rng.uniform(0.15, 0.35)),
        edv=float(edv),
        ef=float(ef),
        lv_aspect=float(rng.uniform(1.45, 1.85)),
        base_narrowing=float(rng.uniform(0.18, 0.32)),
        wall_mm=float(rng.uniform(12.5, 17.0) if lvh else rng.uniform(7.0, 10.5)),
        long_shortening=float(rng.uniform(0.22, 0.3)),
        rv_size=float(rng.uniform(0.6, 0.85)),
        la_size=float(rng.uniform(0.85, 1.25) * (1.15 if ef < 40 else 1.0)),
        ra_size=float(rng.uniform(0.8, 1.15)),
        aortic_radius_mm=float(rng.uniform(10.0, 14.0)),
        as_severity=as_severity,
        aortic_regurgitation=ar,
        lvh=lvh,
        sex="F" if rng.random() < 0.5 else "M",
        age=int(rng.integers(20, 90)),
    )


def _pose_track(times: np.ndarray, config: PhantomConfig, rng: np.random.Generator) -> np.ndarray:
    """Per-frame rigid pose of the heart relative to the probe: ``[T, 3]`` (rad, mm, mm).

    Sum of a per-clip offset, a slow probe drift and respiratory motion.
    """
    rot = np.deg2rad(rng.uniform(-5.0, 5.0)) * np.ones_like(times)
    tx = rng.uniform(-4.0, 4.0) * np.ones_like(times)
    ty = rng.uniform(-4.0, 4.0) * np.ones_like(times)
    m = config.probe_motion
    for _ in range(2):
        w = 2 * np.pi * rng.uniform(0.05, 0.4)
        ph = rng.uniform(0, 2 * np.pi, size=3)
        rot += m * np.deg2rad(0.8) * np.sin(w * times + ph[0])
        tx += m * 1.2 * np.sin(w * times + ph[1])
        ty += m * 1.0 * np.sin(w * times + ph[2])
    b = config.breathing
    period = rng.uniform(3.0, 6.0)
    amp = b * rng.uniform(1.5, 5.0)
    direction = np.deg2rad(rng.uniform(-30.0, 30.0))
    breath = amp * 0.5 * (1.0 - np.cos(2 * np.pi * times / period + rng.uniform(0, 2 * np.pi)))
    tx += breath * np.sin(direction)
    ty += breath * np.cos(direction)
    return np.stack([rot, tx, ty], axis=1)


def _material_coords(layout: A.ViewLayout, lv: P.LVGeometry, x: np.ndarray, y: np.ndarray):
    """Where each heart-frame point ``[T, N]`` sat at end-diastole (approximately): the
    LV region is stretched back along and across its axis, fading to rigid far away."""
    col = lambda v: np.asarray(v, np.float32).reshape(-1, 1)
    L, Wt = col(lv.length), col(lv.width + lv.wall)
    if layout.view == "PSAX":
        cx, cy = layout.anchor
        px, py = x - cx, y - cy
        scale = (lv.width_ed + lv.wall_ed) / Wt
        w = np.exp(-(px * px + py * py) / (2.0 * (1.5 * Wt) ** 2))
        f = 1.0 + (scale - 1.0) * w
        return cx + px * f, cy + py * f
    dx, dy = A.lv_axis(layout)
    ax, ay = layout.anchor
    if layout.view == "PLAX":  # the base is the fixed end
        ax, ay, dx, dy = ax + lv.length_ed * dx, ay + lv.length_ed * dy, -dx, -dy
    px, py = x - ax, y - ay
    a = px * dx + py * dy
    v = px * dy - py * dx
    w = np.exp(-((a - 0.5 * L) / (0.9 * L)) ** 2 - (v / (1.6 * Wt)) ** 2)
    a_m = a * (1.0 + (lv.length_ed / L - 1.0) * w)
    v_m = v * (1.0 + ((lv.width_ed + lv.wall_ed) / Wt - 1.0) * w)
    return ax + a_m * dx + v_m * dy, ay + a_m * dy - v_m * dx


def case_seed(seed: int, index: int) -> int:
    """Seed of the ``index``-th case of a data set made with ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def generate_case(seed: int, config: Optional[PhantomConfig] = None, *, view: Optional[str] = None,
                  patient: Optional[P.Patient] = None) -> PhantomCase:
    """Generate one clip and its exact ground truth; deterministic for ``seed``.

    ``view`` overrides the view drawn from ``config.views``; ``patient`` overrides the
    heart drawn from the seed (e.g. to image one heart in several views).
    Returns a ``PhantomCase`` with frames and labels as uint8 ``[T, H, W]``.
    """
    config = (config or PhantomConfig()).validate()
    seed = int(seed)
    if patient is None:
        patient = sample_patient(np.random.default_rng([seed, 0]), config)
    if view is None:
        view = str(np.random.default_rng([seed, 1]).choice(list(config.views)))
    if view not in VIEWS:
        raise EchoFMError(f"phantom view {view!r}: unknown (choose from {', '.join(VIEWS)})")
    rng = np.random.default_rng([seed, 2, VIEWS.index(view)])

    T, fps, size = int(config.num_frames), float(config.fps), int(config.size)
    times = np.arange(T) / fps
    beats = P.plan_beats(patient, T / fps, fps, rng)
    state = P.cardiac_state(patient, beats, times)
    lv = P.lv_geometry(patient, state["volume"])
    layout = A.sample_layout(view, patient, lv, rng)
    scanner = I.sample_scanner(layout.depth_mm * config.depth_scale, rng, noise_scale=config.noise,
                               half_angle_deg=tuple(config.half_angle_deg), gain_db=tuple(config.gain_db))
    sector = I.make_sector(size, size, scanner)
    pose = _pose_track(times, config, rng)
    dx, dy = A.lv_axis(layout)
    if view == "PSAX":
        pivot = layout.anchor
    else:
        pivot = (layout.anchor[0] + 0.5 * lv.length_ed * dx, layout.anchor[1] + 0.5 * lv.length_ed * dy)
    pose_full = np.concatenate([pose, np.tile(np.asarray(pivot, np.float64), (T, 1))], axis=1)

    def to_heart(x, y):
        """Probe-frame points ``[N]`` -> heart-frame ``[T, N]`` through each frame's pose."""
        rot, tx, ty = (pose[:, i:i + 1] for i in range(3))
        c, s = np.cos(rot), np.sin(rot)
        qx, qy = x[None] - tx - pivot[0], y[None] - ty - pivot[1]
        return ((c * qx + s * qy + pivot[0]).astype(np.float32),
                (-s * qx + c * qy + pivot[1]).astype(np.float32))

    # Image: materials on the polar grid, scatterers at material coordinates.
    rr, tt = np.meshgrid(sector.r_mm, sector.theta, indexing="ij")
    hx, hy = to_heart((rr * np.sin(tt)).ravel(), (rr * np.cos(tt)).ravel())
    _, material = A.paint_view(layout, patient, lv, state, hx, hy)
    material[:, rr.ravel() < scanner.chest_wall_mm] = A.MAT_CHEST_WALL
    mx, my = _material_coords(layout, lv, hx, hy)
    R, B = rr.shape
    scatterers = I.ScattererField(sector, rng)
    samples = scatterers.sample(mx.reshape(T, R, B), my.reshape(T, R, B))
    polar = I.form_bmode(material.reshape(T, R, B), samples, sector, scanner, rng)
    frames = I.scan_convert(polar, sector)

    # Labels: the same geometry evaluated exactly at the output pixel centres.
    rows, cols = np.nonzero(sector.mask)
    px, py = sector.pixel_to_mm(rows.astype(np.float32), cols.astype(np.float32))
    lab, _ = A.paint_view(layout, patient, lv, state, *to_heart(px, py))
    labels = np.zeros((T, size, size), np.uint8)
    labels[:, rows, cols] = lab

    ed_frames, es_frames = P.key_frames(beats, state["volume"], fps)
    shown = [b for b in beats if b.start < T / fps and b.start + b.rr > 0]
    edv = float(np.mean([b.edv for b in shown]))
    esv = float(np.mean([b.esv for b in shown]))
    truth = {
        "seed": seed,
        "view": view,
        "fps": fps,
        "num_frames": T,
        "size": size,
        "heart_rate": float(60.0 / np.mean([b.rr for b in shown])),
        "ef": 100.0 * (edv - esv) / edv,
        "edv": edv,
        "esv": esv,
        "ed_frames": ed_frames,
        "es_frames": es_frames,
        "lv_volume": [float(v) for v in state["volume"]],
        "beats": [{"ed_time": b.start, "es_time": b.es_time, "rr": b.rr, "edv": b.edv, "esv": b.esv}
                  for b in shown],
        "disease": {
            "reduced_ef": bool(100.0 * (edv - esv) / edv < 50.0),
            "lvh": patient.lvh,
            "as_severity": patient.as_severity,
            "aortic_regurgitation": patient.aortic_regurgitation,
            "irregular_rhythm": patient.irregular,
        },
        "pixel_spacing_mm": [sector.pixel_mm, sector.pixel_mm],
        "sector": {"apex_row": sector.apex_row, "apex_col": (size - 1) / 2.0,
                   "depth_mm": sector.depth_mm, "half_angle_deg": float(np.rad2deg(sector.half_angle))},
        "labels": {str(k): v for k, v in STRUCTURES.items()},
        "params": {
            "patient": patient.to_dict(),
            "scanner": scanner.to_dict(),
            "layout": {"anchor": list(layout.anchor), "tilt_deg": layout.tilt_deg, "depth_mm": layout.depth_mm},
            "lv": {"length_ed_mm": lv.length_ed, "width_ed_mm": lv.width_ed, "wall_ed_mm": lv.wall_ed},
            "config": config.to_dict(),
        },
    }
    return PhantomCase(frames, labels, truth, patient, layout, sector, lv, pose_full)


def generate_cases(n: int, seed: int = 0, config: Optional[PhantomConfig] = None) -> Iterator[PhantomCase]:
    """``n`` cases for a data set made with ``seed`` (case i uses ``case_seed(seed, i)``)."""
    for i in range(int(n)):
        yield generate_case(case_seed(seed, i), config)
