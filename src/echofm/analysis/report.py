"""HTML reports: one self-describing page per run (curves, metrics, figures).

The page links files that live beside it (relative paths), so a run directory can be
copied or served as a whole. Nothing is fetched from the network: no scripts, no fonts.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Iterable, Optional

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.4} h1{font-size:1.6em} h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3} img{max-width:100%;border:1px solid #eee;margin:.3em 0} .fig{margin:1em 0}
.note{color:#555;font-size:.92em} code{background:#f5f5f5;padding:0 .2em}
"""

FIGURE_SUFFIXES = (".png", ".gif", ".jpg", ".jpeg", ".svg")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)) and len(value) > 12:
        return html.escape(f"[{len(value)} values]")
    if isinstance(value, dict):
        return html.escape(json.dumps(value)[:300])
    return html.escape(str(value))


def table(rows: Iterable[dict], columns: Optional[list[str]] = None) -> str:
    """An HTML table from dict rows (columns: the union of keys, in first-seen order)."""
    rows = list(rows)
    if not rows:
        return "<p class='note'>(none)</p>"
    if columns is None:
        columns = []
        for r in rows:
            columns += [k for k in r if k not in columns]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def key_values(values: dict) -> str:
    """A two-column table of a flat (or shallow) dict."""
    return table([{"name": k, "value": v} for k, v in values.items()], ["name", "value"])


class HtmlReport:
    """Builds one page: sections of text, tables and figures (paths relative to the page)."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str, note: bool = False) -> None:
        cls = " class='note'" if note else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def raw_table(self, rows: Iterable[dict], columns: Optional[list[str]] = None) -> None:
        self.parts.append(table(rows, columns))

    def values(self, values: dict) -> None:
        self.parts.append(key_values(values))

    def figure(self, relative_path: str, caption: str = "") -> None:
        src = html.escape(relative_path, quote=True)
        cap = f"<div class='note'>{html.escape(caption)}</div>" if caption else ""
        self.parts.append(f"<div class='fig'><a href='{src}'><img src='{src}' alt='{html.escape(caption or relative_path)}'></a>{cap}</div>")

    def link(self, relative_path: str, text: str) -> None:
        self.parts.append(f"<p><a href='{html.escape(relative_path, quote=True)}'>{html.escape(text)}</a></p>")

    def render(self) -> str:
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>"
                + "\n".join(self.parts) + "</body></html>")

    def write(self, path: str | Path) -> Path:
        from echofm.files import atomic_write

        path = Path(path)
        text = self.render()
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        return path


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines file; a torn last line (a run still writing) is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot_curves(rows: list[dict], out: Path, x_key: str = "step") -> Optional[Path]:
    """Plot every numeric series of metrics.jsonl rows against ``x_key`` into one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if x_key in r]
    keys = sorted({k for r in rows for k, v in r.items()
                   if k != x_key and isinstance(v, (int, float)) and not isinstance(v, bool)})
    if not rows or not keys:
        return None
    n = len(keys)
    cols = min(3, n)
    nrows = (n + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 2.8 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        pts = [(r[x_key], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.5)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel(x_key, fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def build_run_report(run: str | Path, title: Optional[str] = None) -> Path:
    """Write ``RUN/report.html`` from what the run directory holds.

    Reads (when present) the resolved config (``config.yaml``/``config.json``),
    ``metrics.jsonl`` (plotted to ``report_curves.png``), ``metrics.json`` and any other
    ``*.json`` summaries, and links every figure (PNG/GIF/JPEG/SVG) in the run directory
    and one level below.
    """
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: not a run directory")
    rep = HtmlReport(title or f"echofm run: {run.name}")
    for name in ("config.yaml", "config.json", "resolved_config.yaml"):
        cfg = run / name
        if cfg.exists():
            rep.heading("Configuration")
            rep.parts.append(f"<pre>{html.escape(cfg.read_text()[:20000])}</pre>")
            break
    metrics_log = run / "metrics.jsonl"
    if metrics_log.exists():
        rows = read_jsonl(metrics_log)
        rep.heading("Training curves")
        png = plot_curves(rows, run / "report_curves.png")
        if png:
            rep.figure(png.name, f"{len(rows)} logged points from metrics.jsonl")
        if rows:
            rep.paragraph("Last logged values:")
            rep.values({k: v for k, v in rows[-1].items() if not isinstance(v, (list, dict))})
    for js in sorted(run.glob("*.json")):
        if js.name in ("config.json",):
            continue
        try:
            data = json.loads(js.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        rep.heading(js.stem.replace("_", " ").capitalize())
        if isinstance(data, dict):
            flat = {k: v for k, v in data.items() if not isinstance(v, (list, dict))}
            nested = {k: v for k, v in data.items() if isinstance(v, dict)}
            if flat:
                rep.values(flat)
            for k, v in nested.items():
                rep.paragraph(k)
                rep.values(v)
            lists = {k: v for k, v in data.items() if isinstance(v, list) and v and isinstance(v[0], dict)}
            for k, v in lists.items():
                rep.paragraph(k)
                rep.raw_table(v[:200])
        rep.link(js.name, f"raw {js.name}")
    figures = sorted(p for p in list(run.glob("*")) + list(run.glob("*/*"))
                     if p.suffix.lower() in FIGURE_SUFFIXES and p.name != "report_curves.png")
    if figures:
        rep.heading("Figures")
        for fig in figures:
            rep.figure(fig.relative_to(run).as_posix(), fig.relative_to(run).as_posix())
    return rep.write(run / "report.html")
