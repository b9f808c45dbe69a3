"""What a phantom data set holds: ``PhantomConfig`` (sizes, rates, views, physiology and
pathology ranges) and the views each export layout draws by default.

Light on purpose (no numpy): ``echofm synth --help`` shows these defaults without loading
the generator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from echofm.errors import EchoFMError
from echofm.labels import VIEWS

# Views a layout draws when none are asked for: EchoNet-Dynamic is apical 4-chamber only,
# CAMUS has a 2- and a 4-chamber view per patient; the others draw every view.
FORMAT_VIEWS = {"echonet": ("A4C",), "camus": ("A2C", "A4C")}


@dataclass
class PhantomConfig:
    """What to generate; ranges are ``(low, high)`` and drawn uniformly per clip.

    size: output frames are ``size x size`` pixels. num_frames, fps: clip length and rate.
    views: views to draw from (A4C, A2C, PLAX, PSAX). heart_rate: bpm (40-150 in practice).
    ef: ejection fraction in percent (10-80). reduced_ef_fraction: share of hearts with
    EF < 50 when ``ef`` straddles 50. edv: end-diastolic volume in mL before remodelling.
    systolic_fraction: systole / RR at 70 bpm. rr_variability: beat-to-beat RR spread
    (relative SD). irregular_fraction: share with an irregular (AF-like) rhythm.
    lvh_fraction: share with LV hypertrophy. as_fraction: share with aortic stenosis
    (mild/moderate/severe equally). ar_fraction: share with aortic regurgitation.
    probe_motion, breathing, noise: scales of probe drift, respiratory motion and receive
    noise (0 turns motion off). gain_db: overall receive gain range (dB). depth_scale:
    imaging depth relative to the view's own (above 1 the heart fills less of the image).
    half_angle_deg: range of half the sector opening (degrees).
    """

    size: int = 112
    num_frames: int = 48
    fps: float = 30.0
    views: Sequence[str] = VIEWS
    heart_rate: tuple[float, float] = (50.0, 110.0)
    ef: tuple[float, float] = (15.0, 75.0)
    reduced_ef_fraction: float = 0.35
    edv: tuple[float, float] = (80.0, 160.0)
    systolic_fraction: tuple[float, float] = (0.30, 0.42)
    rr_variability: float = 0.04
    irregular_fraction: float = 0.1
    lvh_fraction: float = 0.2
    as_fraction: float = 0.3
    ar_fraction: float = 0.1
    probe_motion: float = 1.0
    breathing: float = 1.0
    noise: float = 1.0
    gain_db: tuple[float, float] = (-4.0, 4.0)
    depth_scale: float = 1.0
    half_angle_deg: tuple[float, float] = (36.0, 45.0)

    def validate(self) -> "PhantomConfig":
        """Raise ``EchoFMError`` naming the field and the reason when a setting is unusable."""
        def bad(name, why):
            raise EchoFMError(f"phantom config {name}={getattr(self, name)!r}: {why}")

        if not 32 <= int(self.size) <= 1024:
            bad("size", "must be between 32 and 1024 pixels")
        if int(self.num_frames) < 1:
            bad("num_frames", "must be at least 1")
        if not 1.0 <= float(self.fps) <= 500.0:
            bad("fps", "must be between 1 and 500")
        views = [self.views] if isinstance(self.views, str) else list(self.views)
        if not views or any(v not in VIEWS for v in views):
            bad("views", f"each must be one of {', '.join(VIEWS)}")
        for name, lo, hi in (("heart_rate", 30.0, 200.0), ("ef", 5.0, 90.0), ("edv", 20.0, 400.0),
                             ("systolic_fraction", 0.15, 0.6), ("gain_db", -30.0, 30.0),
                             ("half_angle_deg", 10.0, 60.0)):
            low, high = getattr(self, name)
            if not lo <= low <= high <= hi:
                bad(name, f"needs {lo} <= low <= high <= {hi}")
        for name in ("reduced_ef_fraction", "irregular_fraction", "lvh_fraction", "as_fraction", "ar_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                bad(name, "must be a fraction in [0, 1]")
        for name in ("rr_variability", "probe_motion", "breathing", "noise"):
            if getattr(self, name) < 0:
                bad(name, "must not be negative")
        if not 0.5 <= float(self.depth_scale) <= 2.0:
            bad("depth_scale", "must be between 0.5 and 2")
        self.views = tuple(views)
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["views"] = list(self.views)
        return d


# Named variations of the default phantom. ``shifted`` is a held-out domain for
# generalisation checks: other gain, imaging depth, noise, sector width, heart rate and EF
# range than the default, each outside or at the edge of the default's range.
PRESETS: dict[str, dict] = {
    "default": {},
    "shifted": dict(gain_db=(4.0, 10.0), depth_scale=1.25, noise=2.5, half_angle_deg=(28.0, 34.0),
                    heart_rate=(100.0, 140.0), ef=(25.0, 65.0)),
}


def phantom_preset(name: str, **overrides) -> PhantomConfig:
    """The named preset (``PRESETS``) with ``overrides`` (other ``PhantomConfig`` fields) applied."""
    if name not in PRESETS:
        raise EchoFMError(f"phantom preset {name!r}: unknown (choose from {', '.join(PRESETS)})")
    return PhantomConfig(**{**PRESETS[name], **overrides}).validate()


def default_views(fmt: str) -> tuple[str, ...]:
    """The views the layout ``fmt`` draws when none are asked for."""
    return tuple(FORMAT_VIEWS.get(fmt, PhantomConfig().views))
