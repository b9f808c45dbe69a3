"""The study's results as HTML: the one place a clip's summary, its curves and a study's
measurement table are written, for ``report.html`` and for the pages of ``echofm serve``.

``clip_facts(record)`` is a clip's summary as (label, text) rows; ``clip_section`` shows
them beside the clip's cine (``cine.mp4``, LV overlay blended in) and its curves
(``curves_svg``: LV area and the pixel cavity curve, ED and ES marked);
``measurements_table`` is a study's table with each value's spread. Both pages call
these, so they cannot drift apart.

Everything is made from ``study.json`` only, which holds no patient name, ID or birth
date, and shows only the preprocessed (sector-masked) frames, so no burned-in text
outside the ultrasound sector reaches it.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Callable, Optional

from echofm.files import atomic_write

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1150px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.clip{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start;border-top:1px solid #ddd;padding:.8em 0}
.facts td:first-child{color:#555;white-space:nowrap}.facts td,.facts{border:none;padding:1px 8px 1px 0}
.card{background:#fff4e5;border:1px solid #f0b060;padding:.6em;margin:1em 0}
video,img{image-rendering:pixelated;background:#000}"""

MEASUREMENT_LABELS = {"ef": "LV ejection fraction (segmentation, beat by beat)",
                      "ef_regressor": "LV ejection fraction (regressor)", "heart_rate": "Heart rate"}


def _fmt(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _beat_ef(by_beat: dict) -> str:
    """An EF read beat by beat (segmentation or regressor): mean, spread and each beat's
    value; one beat shows no spread; no whole beat shows the value with its note."""
    if by_beat.get("n_beats", 0) > 1:
        beats = ", ".join(f"{b['ef']:.1f}" for b in by_beat["beats"])
        return f"{_fmt(by_beat['ef_mean'])} % ± {_fmt(by_beat['ef_sd'])} (SD) over {by_beat['n_beats']} beats [{beats}]"
    if by_beat.get("n_beats") == 1:  # one beat has no spread to show
        return f"{_fmt(by_beat['ef_mean'])} % from 1 beat (no spread)"
    if by_beat.get("ef_mean") is not None:
        return f"{_fmt(by_beat['ef_mean'])} % ({by_beat.get('note', 'no whole beat')})"
    return f"– ({by_beat.get('note', 'no EF')})"


def clip_facts(record: dict) -> list[tuple[str, str]]:
    """One clip's summary as (label, plain text) rows, in the order shown."""
    view = record["view"]
    probs = sorted(view.get("probabilities", {}).items(), key=lambda kv: -kv[1])
    fps = f" at {record['fps']:.1f} fps" if record.get("fps") else ""
    series = record.get("series_number")
    facts = [("clip", f"{record['clip_id'][:12]}" + (f" (series {series})" if series is not None else "")),
             ("frames", f"{record['frames']}{fps}"),
             ("view", f"{view['label']} (p = {view['confidence']:.2f})"),
             ("view probabilities", ", ".join(f"{k} {v:.2f}" for k, v in probs[:4]))]
    phase = record.get("phase", {})
    if phase.get("heart_rate_bpm") is not None:
        cycle = _fmt(phase.get("cycle_frames"))
        facts.append(("heart rate", f"{phase['heart_rate_bpm']:.1f} bpm (cycle {cycle} frames)"))
    else:
        facts.append(("heart rate", "– (no whole cycle found)"))
    if record.get("lv"):
        facts.append(("EF (segmentation)", _beat_ef(record["lv"])))
    if record.get("ef_regressor_beats"):
        facts.append(("EF (regressor)", _beat_ef(record["ef_regressor_beats"])))
    elif record.get("ef_regressor") is not None:
        facts.append(("EF (regressor)", f"{_fmt(record['ef_regressor'])} %"))
    if "disease" in record:
        d = record["disease"]
        p = max(d["probabilities"].values()) if d.get("probabilities") else None
        facts.append((d["target"], f"{d['label']}" + (f" (p = {p:.2f})" if p is not None else "")))
    return facts


def _polyline(values: list[float], width: int, height: int, n: int) -> str:
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = width / max(n - 1, 1)
    return " ".join(f"{i * step:.1f},{height - 4 - (v - lo) / span * (height - 8):.1f}" for i, v in enumerate(values))


def curves_svg(record: dict, width: int = 420, height: int = 90) -> str:
    """Inline SVG of the clip's curves over its frames: the segmented LV area (ED red, ES
    blue dashed, per beat) and the pixel cavity curve of the phase step (its ED/ES ticks)."""
    n = int(record.get("frames") or 0)
    parts = []
    lv = record.get("lv") or {}
    area = lv.get("area_mm2") or lv.get("area_px")
    phase = record.get("phase", {})
    panels = []
    if area:
        marks = [(b["ed"], "#d62728", "") for b in lv.get("beats", [])] + \
                [(b["es"], "#1f77b4", "4 3") for b in lv.get("beats", [])]
        unit = "mm²" if lv.get("area_mm2") else "px"
        panels.append(("lv-area", f"LV area ({unit}); ED red, ES blue dashed", area, marks))
    if phase.get("cavity_curve"):
        marks = [(f, "#d62728", "") for f in phase.get("ed_frames", [])] + \
                [(f, "#1f77b4", "4 3") for f in phase.get("es_frames", [])]
        panels.append(("phase", "cardiac phase (pixel cavity curve); ED red, ES blue dashed",
                       phase["cavity_curve"], marks))
    for key, title, values, marks in panels:
        count = max(n, len(values))
        step = width / max(count - 1, 1)
        lines = "".join(f"<line x1='{f * step:.1f}' x2='{f * step:.1f}' y1='0' y2='{height}' stroke='{c}' "
                        f"stroke-dasharray='{d}' stroke-width='1'/>" for f, c, d in marks)
        parts.append(f"<figure class='curve' data-curve='{key}' style='margin:0 0 .4em 0'>"
                     f"<figcaption style='font-size:80%'>{html.escape(title)}</figcaption>"
                     f"<svg width='{width}' height='{height}' viewBox='0 0 {width} {height}' role='img' "
                     f"aria-label='{html.escape(title)}' style='background:#fafafa;border:1px solid #ddd'>{lines}"
                     f"<polyline fill='none' stroke='#333' stroke-width='1.3' "
                     f"points='{_polyline(values, width, height, count)}'/></svg></figure>")
    return "".join(parts)


def clip_section(record: dict, url: Callable[[str], str], video_size: int = 256) -> str:
    """One clip: its cine (or first frame), its facts and curves. ``url`` maps a path of
    ``record['files']`` (relative to the study output folder) to the link shown."""
    f = record.get("files", {})
    cid = html.escape(record["clip_id"])
    if "cine" in f:
        media = (f"<video src='{html.escape(url(f['cine']))}' width='{video_size}' height='{video_size}' "
                 f"controls autoplay muted loop playsinline preload='auto' data-clip='{cid}'></video>")
    else:
        media = f"<img src='{html.escape(url(f['first_frame']))}' width='{video_size}' alt='first frame'>"
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in clip_facts(record))
    links = []
    if "seg" in f:
        links.append(f"<a href='{html.escape(url(f['seg']))}' download>DICOM SEG</a>")
    facts = f"<table class='facts'>{rows}</table>" + (" ".join(links) and f"<p>{' '.join(links)}</p>")
    return (f"<div class='clip' id='clip-{cid}' data-clip='{cid}'><div>{media}</div><div>{facts}</div>"
            f"<div>{curves_svg(record)}</div></div>")


def measurements_table(m: dict) -> str:
    """A study's measurement table: value, spread (SD over clips), clips, method. Each row
    carries its key and exact values as data attributes, so a check can compare them."""
    rows = []
    for key, label in MEASUREMENT_LABELS.items():
        if key in m:
            x = m[key]
            rows.append(f"<tr data-key='{key}' data-value='{x['value']}' data-sd='{x['sd']}' "
                        f"data-n='{x['n_clips']}'><td>{label}</td><td>{_fmt(x['value'])} {html.escape(x['unit'])}</td>"
                        f"<td>± {_fmt(x['sd'])}</td><td>{x['n_clips']}</td><td>{html.escape(x['method'])}</td></tr>")
    if "disease" in m:
        d = m["disease"]
        p = max(d["probabilities"].values())
        rows.append(f"<tr data-key='disease' data-value='{html.escape(d['label'])}' data-n='{len(d['clips'])}'>"
                    f"<td>{html.escape(d['target'])}</td><td>{html.escape(d['label'])}</td><td>p = {p:.2f}</td>"
                    f"<td>{len(d['clips'])}</td><td>{html.escape(d['method'])}</td></tr>")
    views = ", ".join(f"{html.escape(k)}: {v}" for k, v in sorted(m.get("views", {}).items()))
    return ("<table class='measurements'><tr><th>measurement</th><th>value</th><th>spread (SD over clips)</th>"
            f"<th>clips</th><th>how</th></tr>{''.join(rows)}</table><p>Views found: {views or 'none'}</p>")


def study_sections(summary: dict, url: Callable[[str], str], sr_link: Optional[Callable[[str], str]] = None) -> str:
    """The body shared by report.html and the serve study page: the bundle card, then per
    study its table and its clips, then what failed and what was not analysed."""
    b = summary["bundle"]
    body = []
    if b.get("card"):
        body.append(f"<div class='card'>{html.escape(b['card'])}</div>")
    for s in summary["studies"]:
        sr = ""
        if s.get("sr"):
            sr = f"; DICOM SR: <a href='{html.escape(url(s['sr']))}' download>{html.escape(Path(s['sr']).name)}</a>"
        body.append(f"<h2>Study {html.escape(s['study_id'])}</h2><p>{s['clips_analysed']} of {s['clips_found']} "
                    f"cines analysed{sr}</p>")
        body.append(measurements_table(s["measurements"]))
        body.extend(clip_section(r, url) for r in s["clips"])
    if summary["failed"]:
        body.append("<h2>Failed</h2><table class='failed'><tr><th>file</th><th>reason</th></tr>" + "".join(
            f"<tr><td>{html.escape(x.get('source') or x['id'])}</td><td>{html.escape(x['reason'])}</td></tr>"
            for x in summary["failed"]) + "</table>")
    if summary["not_analysed"]:
        body.append("<h2>Not analysed</h2><table class='not-analysed'><tr><th>file</th><th>why</th></tr>" + "".join(
            f"<tr><td>{html.escape(x['file'])}</td><td>{html.escape(x['reason'])}</td></tr>"
            for x in summary["not_analysed"]) + "</table>")
    return "".join(body)


def render(summary: dict) -> str:
    b = summary["bundle"]
    head = (f"<h1>echofm study report</h1><p>echofm {html.escape(summary['echofm_version'])}, bundle "
            f"<b>{html.escape(str(b['name']))}</b> ({', '.join(map(html.escape, b['models']))})"
            f"{', de-identified outputs' if summary['deidentified'] else ''}.</p>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>echofm study report</title>"
            f"<style>{STYLE}</style></head><body>{head}{study_sections(summary, lambda p: p)}</body></html>")


def write_report(path: str | Path, summary: dict) -> Path:
    text = render(summary)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return Path(path)
