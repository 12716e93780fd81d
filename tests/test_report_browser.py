"""The report opened in headless Chromium (Debian's `chromium`; .ci/run installs it): it loads without
console errors, every embedded image decodes, and every contents link lands on an element of the page."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from report_fixture import make_results

from lgvq.pipeline.report import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Appended to a copy of the report (the report itself has no script): after load, it writes what it
# found into the DOM, which --dump-dom prints.
CHECK = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);
  const links = [...document.querySelectorAll('nav a[href^="#"]')].map(a => a.getAttribute("href").slice(1));
  const dangling = links.filter(id => !document.getElementById(id));
  const out = document.createElement("pre");
  out.id = "report-check";
  out.textContent = JSON.stringify({images: imgs.length, broken, links: links.length, dangling,
                                    errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)")
def test_report_loads_in_headless_chromium_without_errors(tmp_path):
    cfg = make_results(tmp_path)
    html = build_report(cfg, tmp_path / "report.html").read_text()
    assert "<script" not in html
    page = tmp_path / "check.html"
    page.write_text(html.replace("</body>", CHECK + "</body>"))
    out = subprocess.run([CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
                          "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    found = re.search(r'<pre id="report-check">(.*?)</pre>', out.stdout, re.S)
    assert found, "the page did not finish loading: " + out.stderr[-3000:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["images"] > 10 and result["broken"] == [], result
    assert result["links"] > 10 and result["dangling"] == [], result
    assert result["errors"] == [], result
    # what the page logged to the console (Chromium prints it as CONSOLE lines at --v=0)
    console = [line for line in out.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console
