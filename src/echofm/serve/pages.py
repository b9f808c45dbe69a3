"""The HTML pages of `echofm serve`: the list of studies with the upload form, a job's
progress, a study's results and the login form.

A study page is built from the study's ``study.json`` by the same renderers as
``report.html`` (``echofm.study.report``: each clip's facts, cine and curves, the
measurement table), so the two never disagree. Titles and URLs carry only the random
study ID; no server path appears anywhere.
"""

from __future__ import annotations

import html
import json
import time
from typing import Optional

from echofm.study.report import STYLE, study_sections

_EXTRA_STYLE = """nav a{margin-right:1em}.error{color:#b00020}.status-failed{color:#b00020}
.status-done{color:#1b5e20}progress{width:320px}td.num{text-align:right}"""


def page(title: str, body: str, script: str = "") -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<style>{STYLE}{_EXTRA_STYLE}</style></head><body>"
            f"<nav><a href='/'>Studies</a><a href='/#upload'>Upload</a></nav>{body}"
            f"{'<script>' + script + '</script>' if script else ''}</body></html>")


def public(row: dict) -> dict:
    """A study's index row as the API shows it: no paths, only the random ID."""
    return {"id": row["id"], "status": row["status"], "kind": row["kind"], "bytes": row["bytes"],
            "created": row["created"], "started": row["started"], "finished": row["finished"],
            "done": row["done"], "total": row["total"], "message": row["message"], "attempts": row["attempts"],
            "summary": row["summary"], "job_url": f"/jobs/{row['id']}", "study_url": f"/studies/{row['id']}"}


def _when(t: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "–"


def _num(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


_UPLOAD_SCRIPT = """
document.getElementById('upload-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const out = document.getElementById('upload-result');
  const file = document.getElementById('file').files[0];
  if (!file) { out.textContent = 'choose a file first'; return; }
  const body = new FormData();
  body.append('file', file);
  out.className = ''; out.removeAttribute('data-status'); out.textContent = 'uploading ' + file.size + ' bytes ...';
  try {
    const answer = await fetch('/api/studies', {method: 'POST', body: body});
    let reply = {};
    try { reply = await answer.json(); } catch (e) { reply = {detail: answer.statusText}; }
    out.dataset.status = answer.status;
    if (answer.ok) { out.textContent = 'queued'; window.location.href = reply.job_url; }
    else { out.className = 'error'; out.textContent = 'Refused (' + answer.status + '): ' + reply.detail; }
  } catch (err) {
    out.dataset.status = 'network'; out.className = 'error'; out.textContent = 'The upload failed: ' + err;
  }
});
"""


def index_page(rows: list[dict], max_upload_mb: float, max_files: int) -> str:
    lines = []
    for r in rows:
        s = r["summary"] or {}
        progress = f"{r['done']}/{r['total']}" if r["total"] else ""
        link = f"/studies/{r['id']}" if r["status"] == "done" else f"/jobs/{r['id']}"
        lines.append(f"<tr data-study='{r['id']}' data-status='{r['status']}'><td><a href='{link}'>{r['id']}</a></td>"
                     f"<td>{_when(r['created'])}</td><td class='status-{r['status']}'>{r['status']} {progress}</td>"
                     f"<td class='num'>{s.get('clips', '')}</td><td class='num'>{_num(s.get('ef'))}</td>"
                     f"<td class='num'>{_num(s.get('heart_rate'))}</td><td>{html.escape(r['message'])}</td></tr>")
    table = ("<table id='studies'><tr><th>study</th><th>uploaded</th><th>status</th><th>clips</th><th>EF %</th>"
             f"<th>HR bpm</th><th>note</th></tr>{''.join(lines)}</table>" if lines else "<p>No studies yet.</p>")
    form = (f"<h2 id='upload'>Upload</h2><form id='upload-form'><input type='file' id='file' name='file'> "
            f"<button type='submit' id='send'>Analyse</button></form><p id='upload-result'></p>"
            f"<p>One DICOM cine, an MP4 or AVI video, or a ZIP of a study export (at most {max_upload_mb:g} MB, "
            f"{max_files} files in a ZIP). Files are judged by their content, not their name.</p>")
    return page("echofm studies", f"<h1>echofm studies</h1>{table}{form}", _UPLOAD_SCRIPT)


def job_page(row: dict) -> str:
    sid = row["id"]
    script = f"""
const api = '/api/studies/{sid}';
async function poll() {{
  let reply;
  try {{ reply = await (await fetch(api)).json(); }} catch (e) {{ setTimeout(poll, 1000); return; }}
  const bar = document.getElementById('bar');
  document.getElementById('status').textContent = reply.status;
  document.getElementById('status').className = 'status-' + reply.status;
  document.getElementById('message').textContent = reply.message;
  if (reply.total) {{ bar.max = reply.total; bar.value = reply.done; }} else {{ bar.removeAttribute('value'); }}
  document.getElementById('counts').textContent = reply.total ? reply.done + ' of ' + reply.total + ' clips' : '';
  if (reply.status === 'done') {{ window.location.href = reply.study_url; return; }}
  if (reply.status === 'failed') {{ bar.value = 0; return; }}
  setTimeout(poll, 500);
}}
poll();
"""
    body = (f"<h1>Study {sid}</h1><p>Status: <b id='status' class='status-{row['status']}'>{row['status']}</b> "
            f"<span id='counts'></span></p><progress id='bar'></progress><p id='message'>"
            f"{html.escape(row['message'])}</p><p>Uploaded {_when(row['created'])}. This page follows the analysis "
            f"and opens the results when they are ready.</p>")
    return page(f"echofm job {sid}", body, script)


def study_page(row: dict, summary: dict) -> str:
    sid = row["id"]
    base = f"/studies/{sid}/files/"
    b = summary["bundle"]
    downloads = [f"<a href='{base}study.json' download='study.json' id='download-json'>study.json</a>",
                 f"<a href='{base}report.html'>report.html</a>"]
    downloads += [f"<a href='{base}{html.escape(s['sr'])}' download>SR of study {html.escape(s['study_id'])}</a>"
                  for s in summary["studies"] if s.get("sr")]
    head = (f"<h1>Study {sid}</h1><p>Analysed {_when(row['finished'])} with bundle <b>{html.escape(str(b['name']))}"
            f"</b> ({', '.join(map(html.escape, b['models']))}), echofm {html.escape(summary['echofm_version'])}. "
            f"Downloads: {' · '.join(downloads)}. Each clip's DICOM SEG is linked beside it.</p>")
    return page(f"echofm study {sid}", head + study_sections(summary, lambda p: base + p))


def message_page(title: str, text: str) -> str:
    return page(title, f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>")


def login_page(message: str = "") -> str:
    note = f"<p class='error'>{html.escape(message)}</p>" if message else ""
    return page("echofm sign in", f"<h1>Sign in</h1>{note}<form method='post' action='/login'>"
                                  "<input type='password' name='token' placeholder='token' autocomplete='off'> "
                                  "<button type='submit'>Sign in</button></form>")


def as_json(data) -> str:
    return json.dumps(data, indent=1)
