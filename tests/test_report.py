"""Report figures/tables from finished outputs (unit tests), and ``snakemake --report`` opened in a headless browser.

The end-to-end part builds ``report.html`` over the session's demo run (``demo`` in conftest) and loads it in
Chromium's headless shell (``chromium-headless-shell`` from apt, installed when missing and possible): the page
must load without a JavaScript error and its data must contain the summary table. Skipped with the reason where no headless
browser can be had.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from mmgenrec.io import InputError
from mmgenrec.report.figures import category_figures, resource_table, summary_table
from smkrun import smk



def _write(path: Path, obj) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return str(path)


def test_category_figures(tmp_path):
    metrics = {"ours": _write(tmp_path / "ours.json", {"HR@10": 0.43}),
               "popularity": _write(tmp_path / "pop.json", {"HR@10": 0.15})}
    stats = _write(tmp_path / "stats.json", {
        "n_items": 10, "collision_policy": "nearest_free",
        "collisions_before": {"collision_rate": 0.2}, "collisions_after": {"collision_rate": 0.0},
        "per_level": [{"level": 0, "utilisation": 0.5}, {"level": 1, "utilisation": 1.0}],
        "history": [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0}]})
    logs = {"ours": _write(tmp_path / "train_log.json", {"curve": [{"step": 10, "loss": 5.0}, {"step": 20, "loss": 3.0}]})}
    out = [tmp_path / f"fig{i}.png" for i in range(3)]
    category_figures("cat", metrics, stats, logs, *map(str, out))
    for path in out:
        with Image.open(path) as im:
            assert im.format == "PNG" and im.width > 200 and im.height > 100
    with pytest.raises(InputError, match=r"pop\.json: missing field 'HR@10'"):
        _write(tmp_path / "pop.json", {"HR@5": 0.1})
        category_figures("cat", metrics, stats, logs, *map(str, out))


def test_category_figures_for_imported_or_no_ids(tmp_path):
    metrics = {"tiger": _write(tmp_path / "t.json", {"HR@10": 0.1})}
    imported = _write(tmp_path / "imported.json", {"imported": True, "n_items": 6, "collision_rate": 0.25,
                                                   "used_codes": [3, 4], "codebook_size_seen": [4, 8]})
    for stats in (imported, None):
        out = [tmp_path / f"{stats is None}{i}.png" for i in range(3)]
        category_figures("cat", metrics, stats, {}, *map(str, out))
        with Image.open(out[1]) as im:
            assert im.format == "PNG" and im.width > 200
    with pytest.raises(InputError, match=r"imported\.json: missing field 'used_codes'"):
        category_figures("cat", metrics, _write(tmp_path / "imported.json", {"imported": True, "collision_rate": 0,
                                                                            "codebook_size_seen": [4]}),
                         {}, *map(str, out))


def test_summary_table(tmp_path):
    csv = tmp_path / "summary.csv"
    pd.DataFrame([("c1", "ours", "HR@10", 0.43456), ("c1", "popularity", "HR@10", 0.1),
                  ("c1", "ours", "NDCG@10", 0.25)], columns=["category", "method", "metric", "value"]).to_csv(csv)
    wide = summary_table(str(csv), str(tmp_path / "s.html"))
    assert wide.loc[("c1", "ours"), "HR@10"] == pytest.approx(0.43456)
    html = (tmp_path / "s.html").read_text()
    assert 'id="summary"' in html and "0.4346" in html and "popularity" in html
    pd.DataFrame({"cat": ["x"]}).to_csv(csv)
    with pytest.raises(InputError, match="summary.csv: missing columns"):
        summary_table(str(csv), str(tmp_path / "s.html"))


def test_resource_table_gpu_hours(tmp_path):
    files = []
    for rule, job, seconds, rss in (("finetune", "a", 5400.0, 900), ("finetune", "b", 1800.0, 950),
                                    ("prepare", "a", 30.0, 40)):
        path = tmp_path / rule / f"{job}.tsv"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0\t{rss}\n")
        files.append(str(path))
    table = resource_table(files, {"finetune": 2}, *(str(tmp_path / n) for n in ("r.csv", "r.html", "r.png")))
    row = table.set_index("rule").loc["finetune"]
    assert (row.jobs, row.seconds_total, row.max_rss_mb, row.gpu_hours) == (2, 7200.0, 950, 4.0)
    assert table.set_index("rule").loc["prepare", "gpu_hours"] == 0
    assert "4.0000 GPU-hours" in (tmp_path / "r.html").read_text()
    bad = tmp_path / "bad" / "x.tsv"
    bad.parent.mkdir()
    bad.write_text("a\tb\n1\t2\n")
    with pytest.raises(InputError, match="x.tsv: not a Snakemake benchmark file"):
        resource_table([str(bad)], {}, *(str(tmp_path / n) for n in ("r.csv", "r.html", "r.png")))


# ---------------------------------------------------------------- end to end: snakemake --report + headless browser

def browser() -> str:
    for name in ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    for path in ("/usr/lib/chromium/chromium-headless-shell", "/usr/lib/chromium/headless_shell"):
        if os.access(path, os.X_OK):
            return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no headless Chromium and it cannot be installed here (needs root and apt-get)")
    proc = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium-headless-shell"],
                          capture_output=True, text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if proc.returncode != 0 or not shutil.which("chromium-headless-shell"):
        pytest.skip(f"apt-get install chromium-headless-shell failed: {proc.stderr[-300:]}")
    return shutil.which("chromium-headless-shell")


@pytest.fixture(scope="module")
def report(demo, tmp_path_factory):
    """``snakemake --report`` over the session's finished demo run (``demo`` in conftest)."""
    html = tmp_path_factory.mktemp("report") / "report.html"
    smk(demo.workdir, "--report", str(html), config=demo.config)
    return demo.workdir, html


@pytest.mark.slow
def test_report_has_summary_figures_and_resources(report):
    work, page = report
    html = page.read_text()
    # results are embedded as data: URIs; the summary table is one of them
    embedded = [base64.b64decode(m) for m in re.findall(r"data:text/html;charset=utf8;(?:filename=[^;\"]*;)?base64,([A-Za-z0-9+/=]+)", html)]
    summary = [blob.decode() for blob in embedded if b'id="summary"' in blob]
    assert summary, "summary table not embedded in the report"
    metrics = json.loads((work / "results/demo_music/ours/seqrec_metrics.json").read_text())
    assert f"{metrics['HR@10']:.4f}" in summary[0]
    for name in ("hr_at_10.png", "collisions.png", "training_curves.png", "resources.html"):
        assert name in html, name
    resources = pd.read_csv(work / "results/report/resources.csv").set_index("rule")
    assert {"embed", "quantize", "finetune", "evaluate_ours"} <= set(resources.index)
    assert resources.loc["finetune", "seconds_total"] > 0


@pytest.mark.slow
def test_report_opens_in_headless_browser_without_errors(report):
    exe = browser()
    proc = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                           "--virtual-time-budget=10000", "--dump-dom", report[1].as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    errors = [line for line in console if re.search(r"Uncaught|Error|error", line)]
    assert not errors, "\n".join(errors)
    app = proc.stdout.partition('<div id="app">')[2]  # what the report's JavaScript app rendered
    assert "How to read this report" in app  # the workflow description (workflow/report/workflow.rst)
    assert "1. Summary" in app and "2. Per category" in app and "3. Compute" in app  # the result categories
