"""`echofm report` writes a valid HTML page whose links all point at files that exist."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from echofm.cli import main


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href"):
                self.links.append(v)


def test_report_renders_and_links_existing_files(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "figs").mkdir(parents=True)
    rows = [{"step": i, "loss": 1.0 / (i + 1), "recon": 0.5 / (i + 1)} for i in range(20)]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{\"step\": 2")  # torn line
    (run / "metrics.json").write_text(json.dumps({"mae": 4.2, "per_class": {"a4c": 0.9}, "note": "<b>x</b>"}))
    (run / "config.json").write_text(json.dumps({"model": "echofm-tiny"}))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.imsave(run / "figs" / "overlay.png", np.random.rand(8, 8))
    assert main(["report", str(run)]) == 0
    page = Path(capsys.readouterr().out.strip())
    assert page == run / "report.html"
    text = page.read_text()
    parser = _Links()
    parser.feed(text)
    assert "img" in parser.tags and "table" in parser.tags
    assert "&lt;b&gt;x&lt;/b&gt;" in text  # values are escaped, not injected
    assert parser.links, "no links"
    for link in parser.links:
        assert (run / link).exists(), link
    assert (run / "report_curves.png").exists()
    assert "figs/overlay.png" in parser.links


def test_report_of_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
