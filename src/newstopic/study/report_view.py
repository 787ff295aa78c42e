"""Open a Snakemake report in a real headless Chromium: a screenshot (the README's) or the page as
the browser rendered it (what tests/test_report.py checks).

    python -m newstopic.study.report_view report.html --screenshot docs/report.png \\
        --click "2. Valid scores by topic" --click retrain --click "css:a[iconname=eye]"

Snakemake's report is one HTML file whose page is drawn by JavaScript (React), so its content
exists only in a browser. `--click` steps are done in the page, in order, once each can be
found: a text (the menu entries, the category and subcategory names) or `css:` and a selector
(the eye icon that opens a result). They run from a script added to a temporary copy of the
report; the report itself is not changed.

Needs Chromium (Debian: `apt-get install chromium`; `.ci/run` installs it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from newstopic.errors import ConfigError, run_main

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_CLICKER = """<script>
const __steps = %s; let __step = 0;
function __find(step) {
  if (step.startsWith("css:")) return [...document.querySelectorAll(step.slice(4))];
  return [...document.querySelectorAll("*")].filter(
    (e) => e.textContent.trim() === step && e.children.length <= 1);
}
function __next() {
  if (__step >= __steps.length) return;
  const found = __find(__steps[__step]);
  if (found.length) { found[found.length - 1].click(); __step++; setTimeout(__next, 400); }
  else setTimeout(__next, 200);
}
window.addEventListener("load", () => setTimeout(__next, 300));
</script>"""


def browser() -> str | None:
    """The path of an installed Chromium (or Chrome), or None."""
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def with_clicks(report: str | Path, out: str | Path, clicks: Sequence[str]) -> None:
    """A copy of `report` that does the `clicks` once the page has loaded."""
    html = Path(report).read_text(encoding="utf-8")
    at = html.rfind("</body>")
    if at < 0:
        raise ConfigError(f"{report}: not an HTML page (no </body>)")
    Path(out).write_text(html[:at] + _CLICKER % json.dumps(list(clicks)) + html[at:], encoding="utf-8")


def render(
    report: str | Path,
    *,
    clicks: Sequence[str] = (),
    screenshot: str | Path | None = None,
    size: tuple[int, int] = (1400, 900),
    wait_ms: int = 10_000,
) -> str:
    """Open `report` in headless Chromium, do the clicks, and return the rendered page (the DOM
    after JavaScript ran); with `screenshot`, also save a PNG of the window."""
    exe = browser()
    if exe is None:
        raise ConfigError(f"no Chromium found (looked for {', '.join(BROWSERS)}): apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        with_clicks(report, page, clicks)
        # --virtual-time-budget: run the page's timers (the clicks) before dumping or shooting.
        base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        base += [f"--virtual-time-budget={wait_ms}", f"--window-size={size[0]},{size[1]}"]
        base.append(f"--user-data-dir={tmp}/profile")
        url = page.resolve().as_uri()
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=300)
        if dom.returncode != 0:
            raise ConfigError(f"{exe} failed on {report}: {dom.stderr.strip().splitlines()[-1:]}")
        if screenshot:
            shot = Path(screenshot).resolve()
            run = subprocess.run(
                [*base, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=300
            )
            if run.returncode != 0 or not shot.is_file():
                raise ConfigError(f"{exe} wrote no screenshot {shot}: {run.stderr.strip().splitlines()[-1:]}")
        return dom.stdout


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report", help="the report, e.g. report.html (snakemake --report report.html)")
    p.add_argument("--screenshot", help="write a PNG of the browser window here")
    p.add_argument("--click", action="append", default=[], help="text or css:selector to click, in order")
    p.add_argument("--size", default="1400x900", help="window size WIDTHxHEIGHT (default 1400x900)")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    run_main(render, args.report, clicks=args.click, screenshot=args.screenshot, size=(width, height))


if __name__ == "__main__":
    main()
