"""The study report as one HTML page: per study, the measurement table with its spread;
per clip, its first frame, view, overlay and LV area curve with ED/ES.

It is made from ``study.json`` only, which holds no patient name, ID or birth date, and
shows only the preprocessed (sector-masked) frames, so no burned-in text outside the
ultrasound sector reaches it.
"""

from __future__ import annotations

import html
from pathlib import Path

from echofm.files import atomic_write

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.clip{display:flex;gap:1em;align-items:flex-start;border-top:1px solid #ddd;padding:.8em 0}
.card{background:#fff4e5;border:1px solid #f0b060;padding:.6em;margin:1em 0}
img{image-rendering:pixelated}"""


def _fmt(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _measurements(m: dict) -> str:
    rows = []
    labels = {"ef": "LV ejection fraction (segmentation, beat by beat)", "ef_regressor": "LV ejection fraction (regressor)",
              "heart_rate": "Heart rate"}
    for key, label in labels.items():
        if key in m:
            x = m[key]
            rows.append(f"<tr><td>{label}</td><td>{_fmt(x['value'])} {html.escape(x['unit'])}</td>"
                        f"<td>± {_fmt(x['sd'])}</td><td>{x['n_clips']}</td><td>{html.escape(x['method'])}</td></tr>")
    if "disease" in m:
        d = m["disease"]
        p = max(d["probabilities"].values())
        rows.append(f"<tr><td>{html.escape(d['target'])}</td><td>{html.escape(d['label'])}</td><td>p = {p:.2f}</td>"
                    f"<td>{len(d['clips'])}</td><td>{html.escape(d['method'])}</td></tr>")
    views = ", ".join(f"{html.escape(k)}: {v}" for k, v in sorted(m.get("views", {}).items()))
    return ("<table><tr><th>measurement</th><th>value</th><th>spread (SD over clips)</th><th>clips</th>"
            f"<th>how</th></tr>{''.join(rows)}</table><p>Views found: {views or 'none'}</p>")


def _clip(r: dict) -> str:
    f = r.get("files", {})
    view = r["view"]
    parts = [f"<div class='clip'><div><img src='{html.escape(f['first_frame'])}' width='128' alt='first frame'></div>"]
    if "overlay" in f:
        parts.append(f"<div><img src='{html.escape(f['overlay'])}' width='160' alt='LV overlay'></div>")
    info = [f"<b>clip {html.escape(r['clip_id'])}</b> (series {r.get('series_number') or '?'}), {r['frames']} frames",
            f"view <b>{html.escape(view['label'])}</b> (p = {view['confidence']:.2f})",
            f"heart rate {_fmt(r['phase']['heart_rate_bpm'])} bpm"]
    lv = r.get("lv")
    if lv:
        beats = ", ".join(f"{b['ef']:.1f}" for b in lv["beats"]) or "none whole"
        info.append(f"EF {_fmt(lv['ef_mean'])} % ± {_fmt(lv['ef_sd'])} over {lv['n_beats']} beat(s) [{beats}]")
    if r.get("ef_regressor") is not None:
        info.append(f"EF (regressor) {_fmt(r['ef_regressor'])} %")
    if "disease" in r:
        info.append(f"{html.escape(r['disease']['target'])}: {html.escape(str(r['disease']['label']))}")
    if "seg" in f:
        info.append(f"DICOM SEG: <code>{html.escape(f['seg'])}</code>")
    parts.append("<div>" + "<br>".join(info) + "</div>")
    if "area_curve" in f:
        parts.append(f"<div><img src='{html.escape(f['area_curve'])}' width='400' alt='LV area curve'></div>")
    parts.append("</div>")
    return "".join(parts)


def render(summary: dict) -> str:
    b = summary["bundle"]
    body = [f"<h1>echofm study report</h1><p>echofm {html.escape(summary['echofm_version'])}, bundle "
            f"<b>{html.escape(str(b['name']))}</b> ({', '.join(map(html.escape, b['models']))})"
            f"{', de-identified outputs' if summary['deidentified'] else ''}.</p>"]
    if b.get("card"):
        body.append(f"<div class='card'>{html.escape(b['card'])}</div>")
    for s in summary["studies"]:
        body.append(f"<h2>Study {html.escape(s['study_id'])}</h2><p>{s['clips_analysed']} of {s['clips_found']} "
                    f"cines analysed{'; DICOM SR: <code>' + html.escape(s['sr']) + '</code>' if s.get('sr') else ''}</p>")
        body.append(_measurements(s["measurements"]))
        body.extend(_clip(r) for r in s["clips"])
    if summary["failed"]:
        body.append("<h2>Failed</h2><table><tr><th>file</th><th>reason</th></tr>" + "".join(
            f"<tr><td>{html.escape(x.get('source') or x['id'])}</td><td>{html.escape(x['reason'])}</td></tr>"
            for x in summary["failed"])
            + "</table>")
    if summary["not_analysed"]:
        body.append("<h2>Not analysed</h2><table><tr><th>file</th><th>why</th></tr>" + "".join(
            f"<tr><td>{html.escape(x['file'])}</td><td>{html.escape(x['reason'])}</td></tr>"
            for x in summary["not_analysed"]) + "</table>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>echofm study report</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>")


def write_report(path: str | Path, summary: dict) -> Path:
    text = render(summary)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return Path(path)
