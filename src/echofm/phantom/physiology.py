"""Physiology of a phantom heart: the patient (rates, volumes, pathology, proportions), its
beats, the per-frame cardiac state (LV volume, valve openings), ED/ES frames, and the LV
dimensions that give each frame's volume exactly.

Volumes in mL, lengths in mm, times in seconds; per-frame arrays are ``[T]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


# --------------------------------------------------------------------------- patient


@dataclass
class Patient:
    """One synthetic heart: physiology, pathology and anatomical proportions.

    Volumes in mL, lengths in mm, rates in beats per minute, fractions in [0, 1].
    ``ef`` is the nominal ejection fraction in percent (per-beat values vary around it).
    """

    heart_rate: float
    rr_variability: float
    irregular: bool
    systolic_fraction: float
    atrial_kick: float
    edv: float
    ef: float
    lv_aspect: float
    base_narrowing: float
    wall_mm: float
    long_shortening: float
    rv_size: float
    la_size: float
    ra_size: float
    aortic_radius_mm: float
    as_severity: str = "none"
    aortic_regurgitation: bool = False
    lvh: bool = False
    sex: str = "F"
    age: int = 60
    volume_jitter: float = 0.03
    extra: dict = field(default_factory=dict)

    @property
    def esv(self) -> float:
        return self.edv * (1.0 - self.ef / 100.0)

    @property
    def reduced_ef(self) -> bool:
        return self.ef < 50.0

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- LV shape


def lv_profile(s: np.ndarray, base_narrowing: float) -> np.ndarray:
    """Half-width of the LV cavity, relative to its largest, at ``s`` in [0, 1] from base (0)
    to apex (1): an ellipsoid narrowed towards the mitral annulus."""
    s = np.asarray(s, dtype=np.float32)
    inside = np.maximum(np.float32(1.0) - s * s, np.float32(0.0))
    narrowing = np.float32(base_narrowing) * np.exp(np.maximum(s, np.float32(0.0)) * np.float32(-1.0 / 0.15))
    return np.sqrt(inside) * (np.float32(1.0) - narrowing)


def lv_shape_integrals(base_narrowing: float) -> tuple[float, float]:
    """``(I1, I2)``: integrals over s in [0, 1] of the profile and of its square.

    Cavity area = 2 W L I1 and volume of revolution (method of discs) = pi W^2 L I2.
    """
    s = (np.arange(4000, dtype=np.float64) + 0.5) / 4000
    g = lv_profile(s, base_narrowing).astype(np.float64)
    return float(g.mean()), float((g * g).mean())


# --------------------------------------------------------------------------- beats


@dataclass
class Beat:
    """One cardiac cycle: starts at ED (``start`` s), lasts ``rr`` s, systole ``systole`` s."""

    start: float
    rr: float
    systole: float
    edv: float
    esv: float
    next_edv: float

    @property
    def es_time(self) -> float:
        return self.start + self.systole


def plan_beats(patient: Patient, duration: float, fps: float, rng: np.random.Generator) -> list[Beat]:
    """Beats covering a clip ``[0, duration)``; the first beat starts at or before 0.

    When the clip is long enough, the start phase is drawn so that at least one whole
    systole (ED then ES) lies inside the clip.
    """
    mean_rr = 60.0 / patient.heart_rate
    n = int(np.ceil(duration / (mean_rr * 0.5))) + 4
    if patient.irregular:
        # Atrial-fibrillation-like: RR intervals vary widely and independently.
        rr = mean_rr * rng.uniform(0.65, 1.35, size=n)
    else:
        rr = mean_rr * np.clip(1.0 + patient.rr_variability * rng.standard_normal(n), 0.7, 1.3)
    rr = np.clip(rr, 60.0 / 170.0, 60.0 / 32.0)
    # Systole shortens less than diastole when the heart speeds up.
    systole = patient.systolic_fraction * mean_rr * (rr / mean_rr) ** 0.35
    systole = np.minimum(systole, 0.6 * rr)
    # Frank-Starling: a long preceding filling time gives a larger next EDV.
    prev_rr = np.concatenate([[mean_rr], rr[:-1]])
    edv = patient.edv * (1.0 + patient.volume_jitter * rng.standard_normal(n))
    edv *= 1.0 + (0.25 if patient.irregular else 0.1) * (prev_rr / mean_rr - 1.0)
    ef_beat = np.clip(patient.ef + 1.5 * rng.standard_normal(n), 5.0, 85.0)
    if patient.irregular:
        ef_beat = np.clip(ef_beat * (prev_rr / mean_rr) ** 0.3, 5.0, 85.0)
    esv = edv * (1.0 - ef_beat / 100.0)

    dt = 1.0 / fps
    u_min = 1.0 - (duration - dt - systole[1]) / rr[0]
    u = rng.uniform(max(0.0, u_min), 1.0) if u_min < 1.0 else rng.uniform(0.0, 1.0)
    starts = -u * rr[0] + np.concatenate([[0.0], np.cumsum(rr[:-1])])
    beats = []
    for k in range(n - 1):
        beats.append(Beat(float(starts[k]), float(rr[k]), float(systole[k]), float(edv[k]),
                          float(esv[k]), float(edv[k + 1])))
        if starts[k] > duration + rr[k]:
            break
    return beats


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def cardiac_state(patient: Patient, beats: list[Beat], times: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame cardiac state at ``times`` (s, ``[T]``).

    Returns ``[T]`` float arrays: ``volume`` (mL), ``contraction`` (0 at ED, 1 at ES of
    that beat), ``mitral_open`` and ``aortic_open`` in [0, 1], and ``beat`` (index).
    """
    starts = np.array([b.start for b in beats])
    k = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(beats) - 1)
    start = starts[k]
    rr = np.array([b.rr for b in beats])[k]
    sys_t = np.array([b.systole for b in beats])[k]
    edv = np.array([b.edv for b in beats])[k]
    esv = np.array([b.esv for b in beats])[k]
    next_edv = np.array([b.next_edv for b in beats])[k]
    t = times - start
    in_systole = t < sys_t
    phi = np.clip(t / sys_t, 0.0, 1.0)
    v_sys = edv - (edv - esv) * 0.5 * (1.0 - np.cos(np.pi * phi))

    # Diastole: early rapid filling (exponential) then the atrial kick.
    psi = np.clip((t - sys_t) / np.maximum(rr - sys_t, 1e-3), 0.0, 1.0)
    a = 0.0 if patient.irregular else patient.atrial_kick
    tau = 0.16
    early = (1.0 - np.exp(-psi / tau)) / (1.0 - np.exp(-1.0 / tau))
    fill = (1.0 - a) * early + a * _smoothstep((psi - 0.7) / 0.3)
    v_dia = esv + (next_edv - esv) * fill
    volume = np.where(in_systole, v_sys, v_dia)

    # Valves: mitral open while the LV fills (E wave, then A wave); aortic while it ejects.
    early_rate = np.exp(-psi / tau)
    kick = np.clip(1.0 - np.abs(psi - 0.85) / 0.15, 0.0, 1.0) if a > 0 else 0.0 * psi
    mitral = np.clip(np.maximum(1.8 * early_rate, 0.75 * kick), 0.0, 1.0) * (psi > 0.02)
    mitral = np.where(in_systole, 0.0, mitral)
    aortic = np.where(in_systole, np.clip(1.6 * np.sin(np.pi * phi), 0.0, 1.0), 0.0)
    contraction = np.clip((edv - volume) / np.maximum(edv - esv, 1e-6), 0.0, 1.0)
    contraction = np.where(in_systole, contraction, np.clip((next_edv - volume) / np.maximum(next_edv - esv, 1e-6), 0, 1))
    return {
        "volume": volume.astype(np.float64),
        "contraction": contraction.astype(np.float32),
        "mitral_open": mitral.astype(np.float32),
        "aortic_open": aortic.astype(np.float32),
        "beat": k,
    }


def key_frames(beats: list[Beat], volume: np.ndarray, fps: float) -> tuple[list[int], list[int]]:
    """ED and ES frame indices of every beat whose event falls inside the clip.

    Each event lies between two frames; the ED frame is the one of them with the larger
    LV volume and the ES frame the one with the smaller, so the label maps' LV area peaks
    exactly at the listed ED frames and dips at the listed ES frames.
    """
    num = len(volume)
    ed, es = [], []
    for b in beats:
        for when, out, pick in ((b.start, ed, np.argmax), (b.es_time, es, np.argmin)):
            f = when * fps
            if f < 0 or f > num - 1:
                continue
            cands = sorted({int(np.floor(f)), int(np.ceil(f))})
            out.append(cands[int(pick(volume[cands]))])
    return sorted(set(ed)), sorted(set(es))


# --------------------------------------------------------------------------- LV state


@dataclass
class LVGeometry:
    """Per-frame LV size: ``length``, ``width`` (largest half-width) and ``wall`` (mm), [T]."""

    length: np.ndarray
    width: np.ndarray
    wall: np.ndarray
    length_ed: float
    width_ed: float
    wall_ed: float


def lv_geometry(patient: Patient, volume_ml: np.ndarray) -> LVGeometry:
    """LV dimensions whose volume of revolution equals ``volume_ml`` exactly.

    The long axis shortens in proportion to the ejected fraction of the beat (longitudinal
    shortening) and the width follows from the volume; walls thicken as the cavity empties.
    """
    _, i2 = lv_shape_integrals(patient.base_narrowing)
    edv_mm3 = patient.edv * 1000.0
    width_ed = (edv_mm3 / (2.0 * np.pi * patient.lv_aspect * i2)) ** (1.0 / 3.0)
    length_ed = 2.0 * patient.lv_aspect * width_ed
    ejected = np.clip((patient.edv - volume_ml) / patient.edv, -0.3, 0.95)
    length = length_ed * (1.0 - patient.long_shortening * ejected / max(patient.ef / 100.0, 0.05)
                          * (patient.ef / 100.0))
    width = np.sqrt(volume_ml * 1000.0 / (np.pi * length * i2))
    wall = patient.wall_mm * (1.0 + 0.8 * np.clip(ejected, 0.0, None))
    return LVGeometry(length.astype(np.float32), width.astype(np.float32), wall.astype(np.float32),
                      float(length_ed), float(width_ed), float(patient.wall_mm))
