"""Heart anatomy of a phantom: the views, painted as shapes whose sizes follow the cardiac
state (the patient, beats and volume curves are ``physiology``'s).

Everything here is analytic geometry in millimetres in the *heart frame*: the image plane
of a canonical probe at the origin, x lateral (to the right of the screen), y depth (down).
A view is a painter's list of shapes (chambers, walls, valves) whose sizes follow the
per-frame cardiac state; it answers, for arrays of points, which label (ground truth) and
which material (what scatters ultrasound, used by ``imaging``) lies there.

Array layout: point arrays ``x, y`` are float32 ``[T, N]`` (frames x points); per-frame
state arrays are ``[T]`` and are broadcast as ``[T, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Ground-truth label values painted into the label maps (names in echofm.labels).
from echofm.labels import AORTA, LEFT_ATRIUM, LV_CAVITY, LV_MYOCARDIUM, RIGHT_ATRIUM, RV_CAVITY, VIEWS
from echofm.phantom.physiology import LVGeometry, Patient, lv_profile

# Materials: what the imaging model turns into scatterer strength, density and coherence.
MAT_BODY, MAT_HEART_TISSUE, MAT_BLOOD, MAT_MYOCARDIUM, MAT_PERICARDIUM, MAT_VALVE, \
    MAT_CALCIFIED, MAT_CHEST_WALL = range(8)
NUM_MATERIALS = 8

# Aortic valve by stenosis grade: largest opening (fraction of a normal opening),
# leaflet thickness (mm) and whether it is calcified (bright).
_AS_OPENING = {"none": 1.0, "mild": 0.6, "moderate": 0.4, "severe": 0.22}
_AS_THICKNESS = {"none": 1.2, "mild": 2.2, "moderate": 3.0, "severe": 3.8}


# --------------------------------------------------------------------------- shapes


def _rot(angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    a = np.deg2rad(angle_deg)
    return np.array([np.sin(a), np.cos(a)]), np.array([np.cos(a), -np.sin(a)])


def _f32(*values):
    """Parameters as float32 so that float32 point arrays are never promoted to float64."""
    return [np.asarray(v, dtype=np.float32) for v in values]


class Painter:
    """Paints labels and materials in order: later shapes cover earlier ones."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y
        self.labels = np.zeros(x.shape, np.uint8)
        self.material = np.full(x.shape, MAT_BODY, np.uint8)

    def paint(self, mask: np.ndarray, material: int, label: int | None = None) -> None:
        np.copyto(self.material, np.uint8(material), where=mask)
        if label is not None:
            np.copyto(self.labels, np.uint8(label), where=mask)

    # Shapes. Parameters are scalars or [T, 1] arrays (per frame).
    def bullet(self, apex_x, apex_y, dx, dy, length, width, beta, margin=0.0, base_cut=True):
        """LV-like cavity: apex at (apex_x, apex_y), axis (dx, dy) towards the base.

        Half-width at distance ``a`` from the apex is ``width * lv_profile((L - a) / L)``;
        ``margin`` grows it outward (for walls) while keeping the base plane.
        """
        apex_x, apex_y, dx, dy, length, width, margin = _f32(apex_x, apex_y, dx, dy, length, width, margin)
        px, py = self.x - apex_x, self.y - apex_y
        a = px * dx + py * dy
        v = px * dy - py * dx
        big_l = length + margin
        s = (length - a) / big_l
        half = (width + margin) * lv_profile(s, beta)
        inside = (np.abs(v) <= half) & (a >= -margin)
        if base_cut:
            inside &= a <= length
        return inside

    def ellipse(self, cx, cy, ra, rb, angle_deg=0.0, margin=0.0):
        c, s = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
        cx, cy, ra, rb, margin, c, s = _f32(cx, cy, ra, rb, margin, c, s)
        px, py = self.x - cx, self.y - cy
        u = (px * c + py * s) / (ra + margin)
        w = (-px * s + py * c) / (rb + margin)
        return u * u + w * w <= 1.0

    def capsule(self, x0, y0, x1, y1, radius):
        x0, y0, x1, y1, radius = _f32(x0, y0, x1, y1, radius)
        vx, vy = x1 - x0, y1 - y0
        length2 = vx * vx + vy * vy + 1e-9
        t = np.clip(((self.x - x0) * vx + (self.y - y0) * vy) / length2, 0.0, 1.0)
        ex, ey = self.x - (x0 + t * vx), self.y - (y0 + t * vy)
        return ex * ex + ey * ey <= radius * radius

    def halfplane(self, px, py, nx, ny):
        """Points on the side of the line through (px, py) that the normal (nx, ny) points to."""
        px, py, nx, ny = _f32(px, py, nx, ny)
        return (self.x - px) * nx + (self.y - py) * ny >= 0


def _col(v) -> np.ndarray:
    return np.asarray(v, dtype=np.float32).reshape(-1, 1)


def _leaflet(p: Painter, hx, hy, closed_deg, open_deg, opening, length, thick, material):
    """A valve leaflet hinged at (hx, hy), swinging from ``closed_deg`` to ``open_deg``
    (image angles: 0 = +x, 90 = +y) as ``opening`` goes 0 -> 1."""
    ang = np.deg2rad(closed_deg + (open_deg - closed_deg) * opening)
    tx, ty = hx + length * np.cos(ang), hy + length * np.sin(ang)
    p.paint(p.capsule(hx, hy, tx, ty, thick / 2.0), material)


def _angle(dx, dy) -> float:
    return float(np.rad2deg(np.arctan2(dy, dx)))


# --------------------------------------------------------------------------- views


@dataclass
class ViewLayout:
    """Where the heart sits in a view (heart frame, mm); drawn per clip.

    ``anchor``: LV apex for apical and PLAX views, LV centre for PSAX. ``tilt_deg``: angle
    of the LV long axis from the depth direction (apical) or from +x (PLAX).
    """

    view: str
    anchor: tuple[float, float]
    tilt_deg: float
    depth_mm: float
    extra: dict = field(default_factory=dict)


def sample_layout(view: str, patient: Patient, lv: LVGeometry, rng: np.random.Generator) -> ViewLayout:
    """Random but plausible placement of the heart in ``view`` and the imaging depth that fits it."""
    L, W = lv.length_ed, lv.width_ed
    if view in ("A4C", "A2C"):
        apex_depth = rng.uniform(18.0, 40.0)
        x = rng.uniform(2.0, 10.0) if view == "A4C" else rng.uniform(-5.0, 5.0)
        tilt = rng.uniform(4.0, 14.0) if view == "A4C" else rng.uniform(-8.0, 8.0)
        la_len = 2.0 * 20.0 * patient.la_size
        depth = (apex_depth + L + la_len + 8.0) * rng.uniform(1.0, 1.12)
        return ViewLayout(view, (x, apex_depth), tilt, depth)
    if view == "PLAX":
        centre_depth = rng.uniform(70.0, 95.0) * (W / 26.0) ** 0.3
        tilt = rng.uniform(-8.0, 6.0)
        base_x = rng.uniform(5.0, 25.0)
        dx, dy = np.cos(np.deg2rad(tilt)), np.sin(np.deg2rad(tilt))
        apex = (base_x - L * dx, centre_depth - L * dy)
        depth = (centre_depth + W + lv.wall_ed + 35.0) * rng.uniform(1.0, 1.15)
        return ViewLayout(view, apex, tilt, depth)
    if view == "PSAX":
        centre = (rng.uniform(-8.0, 8.0), rng.uniform(70.0, 95.0))
        depth = (centre[1] + W + lv.wall_ed + 30.0) * rng.uniform(1.0, 1.15)
        return ViewLayout(view, centre, rng.uniform(-15.0, 15.0), depth)
    raise ValueError(f"view {view!r}: unknown (choose from {', '.join(VIEWS)})")


def paint_view(layout: ViewLayout, patient: Patient, lv: LVGeometry, state: dict,
               x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and materials at heart-frame points ``x, y`` (float32 ``[T, N]``).

    ``lv`` and ``state`` hold per-frame ``[T]`` arrays. Returns uint8 ``[T, N]`` arrays
    ``(labels, material)``.
    """
    painter = Painter(x, y)
    if layout.view == "PSAX":
        _paint_psax(painter, layout, patient, lv, state)
    elif layout.view == "PLAX":
        _paint_plax(painter, layout, patient, lv, state)
    else:
        _paint_apical(painter, layout, patient, lv, state, four_chamber=layout.view == "A4C")
    return painter.labels, painter.material


def lv_axis(layout: ViewLayout) -> tuple[float, float]:
    """Unit vector of the LV long axis from apex to base in the heart frame."""
    if layout.view == "PLAX":
        a = np.deg2rad(layout.tilt_deg)
        return float(np.cos(a)), float(np.sin(a))
    a = np.deg2rad(layout.tilt_deg)
    return float(np.sin(a)), float(np.cos(a))


def lv_outline(layout: ViewLayout, patient: Patient, length: float, width: float,
               samples: int = 20) -> dict[str, np.ndarray]:
    """LV cavity as disc chords (heart frame, mm) for one frame: ``apex``, ``base`` centre,
    ``left``/``right`` chord ends ``[samples, 2]`` from apex (0) to base (samples-1)."""
    ax, ay = layout.anchor
    dx, dy = lv_axis(layout)
    a = np.linspace(0.0, length, samples)
    half = width * lv_profile((length - a) / length, patient.base_narrowing)
    cx, cy = ax + a * dx, ay + a * dy
    nx, ny = dy, -dx
    return {
        "apex": np.array([ax, ay]),
        "base": np.array([ax + length * dx, ay + length * dy]),
        "left": np.stack([cx + half * nx, cy + half * ny], axis=1),
        "right": np.stack([cx - half * nx, cy - half * ny], axis=1),
    }


def _paint_apical(p: Painter, layout: ViewLayout, patient: Patient, lv: LVGeometry, state: dict,
                  four_chamber: bool) -> None:
    ax, ay = layout.anchor
    dx, dy = lv_axis(layout)
    nx, ny = dy, -dx  # lateral normal: points to screen-right for a vertical axis
    L, W, h = _col(lv.length), _col(lv.width), _col(lv.wall)
    beta = patient.base_narrowing
    c = _col(state["contraction"])
    bx, by = ax + L * dx, ay + L * dy  # mitral annulus centre (moves towards the apex)
    annulus = W * (1.0 - beta)

    # Atria sit beyond the base plane; they fill while the ventricles empty.
    la_r = 20.0 * patient.la_size * (1.0 + 0.12 * c)
    la_cx, la_cy = bx + dx * la_r * 0.95, by + dy * la_r * 0.95
    la_lat = 0.0 if not four_chamber else 0.15 * la_r
    la_cx, la_cy = la_cx + la_lat * nx, la_cy + la_lat * ny
    la_rb = np.maximum(la_r * 0.9, annulus * 1.05)

    if four_chamber:
        # RV: shorter and narrower, on screen-left of the LV, sharing the septum.
        rv_w = W * patient.rv_size
        rv_l = L * 0.82
        rv_wall = 3.5
        rv_shift = W + h + rv_w * 0.92 + 1.0
        rax, ray = ax - nx * rv_shift + dx * (L - rv_l), ay - ny * rv_shift + dy * (L - rv_l)
        rbx, rby = rax + rv_l * dx, ray + rv_l * dy
        ra_r = 18.0 * patient.ra_size * (1.0 + 0.1 * c)
        ra_cx, ra_cy = rbx + dx * ra_r * 0.95 - nx * 2.0, rby + dy * ra_r * 0.95 - ny * 2.0

    # Heart tissue envelope and pericardium (bright rim) around the ventricles.
    p.paint(p.bullet(ax, ay, dx, dy, L, W, beta, margin=h + 7.0, base_cut=False), MAT_HEART_TISSUE)
    p.paint(p.ellipse(la_cx, la_cy, la_r, la_rb, _angle(dx, dy), margin=5.0), MAT_HEART_TISSUE)
    if four_chamber:
        p.paint(p.bullet(rax, ray, dx, dy, rv_l, rv_w, beta, margin=rv_wall + 6.0, base_cut=False),
                MAT_HEART_TISSUE)
        p.paint(p.ellipse(ra_cx, ra_cy, ra_r, ra_r * 0.95, 0.0, margin=5.0), MAT_HEART_TISSUE)
        p.paint(p.bullet(rax, ray, dx, dy, rv_l, rv_w, beta, margin=rv_wall + 2.5), MAT_PERICARDIUM)
    p.paint(p.bullet(ax, ay, dx, dy, L, W, beta, margin=h + 2.5), MAT_PERICARDIUM)

    behind_base = p.halfplane(bx, by, dx, dy)
    p.paint(p.ellipse(la_cx, la_cy, la_r, la_rb, _angle(dx, dy)) & behind_base, MAT_BLOOD, LEFT_ATRIUM)
    if four_chamber:
        behind_rv = p.halfplane(rbx, rby, dx, dy)
        p.paint(p.ellipse(ra_cx, ra_cy, ra_r, ra_r * 0.95, 0.0) & behind_rv, MAT_BLOOD, RIGHT_ATRIUM)
        p.paint(p.bullet(rax, ray, dx, dy, rv_l, rv_w, beta, margin=rv_wall), MAT_MYOCARDIUM)
        p.paint(p.bullet(rax, ray, dx, dy, rv_l, rv_w, beta), MAT_BLOOD, RV_CAVITY)
    p.paint(p.bullet(ax, ay, dx, dy, L, W, beta, margin=h), MAT_MYOCARDIUM, LV_MYOCARDIUM)
    p.paint(p.bullet(ax, ay, dx, dy, L, W, beta), MAT_BLOOD, LV_CAVITY)

    # Mitral leaflets hinged at the annulus; they open towards the apex.
    mo = _col(state["mitral_open"])
    axis_deg = _angle(dx, dy)
    for side, frac in ((+1.0, 0.55), (-1.0, 0.45)):
        hx, hy = bx + side * annulus * nx, by + side * annulus * ny
        inward = _angle(-side * nx + 0.15 * dx, -side * ny + 0.15 * dy)
        opened = axis_deg + 180.0 + side * 12.0
        _leaflet(p, hx, hy, inward, _unwrap(inward, opened), mo, 2.0 * annulus * frac, 1.6, MAT_VALVE)
    if four_chamber:
        rv_ann = rv_w * (1.0 - beta)
        for side, frac in ((+1.0, 0.5), (-1.0, 0.5)):
            hx, hy = rbx + side * rv_ann * nx, rby + side * rv_ann * ny
            inward = _angle(-side * nx + 0.15 * dx, -side * ny + 0.15 * dy)
            opened = axis_deg + 180.0 - side * 10.0
            _leaflet(p, hx, hy, inward, _unwrap(inward, opened), mo, 2.0 * rv_ann * frac, 1.4, MAT_VALVE)


def _unwrap(ref: float, angle):
    """``angle`` shifted by multiples of 360 to lie within 180 degrees of ``ref``."""
    return ref + ((np.asarray(angle) - ref + 180.0) % 360.0) - 180.0


def _aortic_valve(p: Painter, patient: Patient, state: dict, qx, qy, ex, ey, radius) -> None:
    """Two aortic cusps at the annulus (qx, qy) of an aorta running along (ex, ey)."""
    grade = patient.as_severity
    opening = _col(state["aortic_open"]) * _AS_OPENING[grade]
    thick = _AS_THICKNESS[grade]
    material = MAT_VALVE if grade == "none" else MAT_CALCIFIED
    nx, ny = -ey, ex
    along = _angle(ex, ey)
    # Regurgitant valves do not coapt: the cusps stop short of the centre.
    reach = 0.82 if patient.aortic_regurgitation else 1.05
    for side in (+1.0, -1.0):
        hx, hy = qx + side * radius * nx, qy + side * radius * ny
        inward = _angle(-side * nx - 0.2 * ex, -side * ny - 0.2 * ey)
        opened = along + side * 8.0
        _leaflet(p, hx, hy, inward, _unwrap(inward, opened), opening, radius * reach, thick, material)


def _paint_plax(p: Painter, layout: ViewLayout, patient: Patient, lv: LVGeometry, state: dict) -> None:
    ax, ay = layout.anchor
    dx, dy = lv_axis(layout)
    nx, ny = -dy, dx  # points deeper (posterior)
    L, W, h = _col(lv.length), _col(lv.width), _col(lv.wall)
    beta = patient.base_narrowing
    c = _col(state["contraction"])
    # In PLAX the base is fixed (mitral-aortic junction); the apex end moves.
    base_x = ax + lv.length_ed * dx
    base_y = ay + lv.length_ed * dy
    apx, apy = base_x - L * dx, base_y - L * dy
    annulus = W * (1.0 - beta)
    r_ao = patient.aortic_radius_mm
    # Aortic root: continues the septum (anterior), heading right and slightly up.
    ea = np.deg2rad(_angle(dx, dy) - 12.0)
    ex, ey = float(np.cos(ea)), float(np.sin(ea))
    qx, qy = base_x - nx * (annulus - r_ao * 0.9) + dx * 3.0, base_y - ny * (annulus - r_ao * 0.9) + dy * 3.0
    la_r = 19.0 * patient.la_size * (1.0 + 0.12 * c)
    la_cx = base_x + dx * la_r * 0.9 + nx * (annulus * 0.55)
    la_cy = base_y + dy * la_r * 0.9 + ny * (annulus * 0.55)
    # RV: band in front of (shallower than) the septum.
    rv_thick = 12.0 + 10.0 * patient.rv_size
    rv_cx, rv_cy = base_x - dx * lv.length_ed * 0.45 - nx * (W + h + rv_thick * 0.55), \
        base_y - dy * lv.length_ed * 0.45 - ny * (W + h + rv_thick * 0.55)

    p.paint(p.ellipse(rv_cx, rv_cy, lv.length_ed * 0.75, rv_thick * 0.5, _angle(dx, dy), margin=5.0),
            MAT_HEART_TISSUE)
    p.paint(p.bullet(apx, apy, dx, dy, L, W, beta, margin=h + 6.0, base_cut=False), MAT_HEART_TISSUE)
    p.paint(p.ellipse(la_cx, la_cy, la_r, la_r * 0.95, 0.0, margin=5.0), MAT_HEART_TISSUE)
    p.paint(p.capsule(qx, qy, qx + ex * 90.0, qy + ey * 90.0, r_ao + 3.5), MAT_HEART_TISSUE)
    # Bright posterior pericardium behind the LV and LA.
    post = p.bullet(apx, apy, dx, dy, L, W, beta, margin=h + 3.0, base_cut=False) | \
        p.ellipse(la_cx, la_cy, la_r, la_r * 0.95, 0.0, margin=3.5)
    p.paint(post & p.halfplane(apx, apy, nx, ny), MAT_PERICARDIUM)
    p.paint(p.ellipse(rv_cx, rv_cy, lv.length_ed * 0.75, rv_thick * 0.5, _angle(dx, dy), margin=3.0)
            & p.halfplane(rv_cx, rv_cy, -nx, -ny), MAT_MYOCARDIUM)
    p.paint(p.ellipse(rv_cx, rv_cy, lv.length_ed * 0.75, rv_thick * 0.5 * (1.0 - 0.15 * c), _angle(dx, dy)),
            MAT_BLOOD, RV_CAVITY)
    p.paint(p.ellipse(la_cx, la_cy, la_r, la_r * 0.95, 0.0) & p.halfplane(base_x, base_y, dx, dy),
            MAT_BLOOD, LEFT_ATRIUM)
    p.paint(p.capsule(qx, qy, qx + ex * 90.0, qy + ey * 90.0, r_ao) & p.halfplane(qx, qy, ex, ey),
            MAT_BLOOD, AORTA)
    p.paint(p.bullet(apx, apy, dx, dy, L, W, beta, margin=h), MAT_MYOCARDIUM, LV_MYOCARDIUM)
    p.paint(p.bullet(apx, apy, dx, dy, L, W, beta), MAT_BLOOD, LV_CAVITY)
    # LV outflow tract: blood between the cavity and the aortic annulus.
    p.paint(p.capsule(qx - ex * 8.0, qy - ey * 8.0, qx, qy, r_ao * 0.85) & ~p.halfplane(qx, qy, ex, ey),
            MAT_BLOOD, LV_CAVITY)

    _aortic_valve(p, patient, state, qx, qy, ex, ey, r_ao)
    mo = _col(state["mitral_open"])
    axis_deg = _angle(dx, dy)
    for side, frac in ((-1.0, 0.6), (+1.0, 0.42)):  # anterior (towards the aorta), posterior
        hx, hy = base_x + side * annulus * nx, base_y + side * annulus * ny
        inward = _angle(-side * nx + 0.15 * dx, -side * ny + 0.15 * dy)
        opened = axis_deg + 180.0 - side * 15.0
        _leaflet(p, hx, hy, inward, _unwrap(inward, opened), mo, 2.0 * annulus * frac, 1.6, MAT_VALVE)


def _paint_psax(p: Painter, layout: ViewLayout, patient: Patient, lv: LVGeometry, state: dict) -> None:
    cx, cy = layout.anchor
    # Mid-papillary level: the cross-section halfway between base and apex.
    r = _col(lv.width) * float(lv_profile(np.array([0.45]), patient.base_narrowing)[0])
    h = _col(lv.wall)
    c = _col(state["contraction"])
    rot = np.deg2rad(layout.tilt_deg)
    # RV crescent wraps the LV on the anterior (up) and screen-left side.
    ang = np.deg2rad(-125.0) + rot
    r_ed = lv.width_ed * float(lv_profile(np.array([0.45]), patient.base_narrowing)[0])
    rv_r = r_ed * (1.25 + 0.5 * patient.rv_size) * (1.0 - 0.12 * c)
    rvx, rvy = cx + np.cos(ang) * r_ed * 0.8, cy + np.sin(ang) * r_ed * 0.8
    p.paint(p.ellipse(rvx, rvy, rv_r * 1.15, rv_r * 0.85, np.rad2deg(ang) + 90.0, margin=7.0), MAT_HEART_TISSUE)
    p.paint(p.ellipse(cx, cy, r, r, 0.0, margin=h + 7.0), MAT_HEART_TISSUE)
    p.paint(p.ellipse(cx, cy, r, r, 0.0, margin=h + 2.5), MAT_PERICARDIUM)
    p.paint(p.ellipse(rvx, rvy, rv_r * 1.15, rv_r * 0.85, np.rad2deg(ang) + 90.0, margin=3.0), MAT_MYOCARDIUM)
    p.paint(p.ellipse(rvx, rvy, rv_r * 1.15, rv_r * 0.85, np.rad2deg(ang) + 90.0), MAT_BLOOD, RV_CAVITY)
    p.paint(p.ellipse(cx, cy, r, r, 0.0, margin=h), MAT_MYOCARDIUM, LV_MYOCARDIUM)
    p.paint(p.ellipse(cx, cy, r, r, 0.0), MAT_BLOOD, LV_CAVITY)
    # Papillary muscles: myocardium-bright inside the cavity (labelled cavity, as is usual).
    for deg in (50.0, 140.0):
        a = np.deg2rad(deg) + rot
        p.paint(p.ellipse(cx + np.cos(a) * r * 0.68, cy + np.sin(a) * r * 0.68, r * 0.2, r * 0.16, deg),
                MAT_MYOCARDIUM)
