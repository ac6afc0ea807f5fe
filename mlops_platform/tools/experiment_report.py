"""Write an experiment's decision report (Markdown and HTML with inline plots) to files.

    python -m mlops_platform.tools.experiment_report --url http://127.0.0.1:8080 --endpoint local-churn
    python -m mlops_platform.tools.experiment_report --json summary.json --out build/reports

The source is ``GET /v1/experiments/{endpoint}`` (``--url``: the API's base URL, e.g. ``make local``'s;
a deployed API needs its authorization, so save the JSON with your usual client and pass ``--json``).
Writes ``<out>/<experiment>.md`` and ``<out>/<experiment>.html`` (default ``build/experiment-reports``)
and prints their paths. Standard library only; the rendering is ``mlops_runtime.domain.experiment_report``.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops_platform.paths import REPO_ROOT, RUNTIME_ROOT

if str(RUNTIME_ROOT) not in sys.path:
    sys.path.append(str(RUNTIME_ROOT))

from mlops_runtime.domain.experiment_report import render_html, render_markdown  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "build" / "experiment-reports"


def fetch_summary(base_url: str, endpoint: str, timeout: float = 30) -> dict[str, Any]:
    """``GET /v1/experiments/{endpoint}`` from ``base_url`` (no proxy: a local server)."""
    url = f"{base_url.rstrip('/')}/v1/experiments/{urllib.parse.quote(endpoint, safe='')}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as answer:
        return json.loads(answer.read())


def write_report(summary: Mapping[str, Any], out: Path = DEFAULT_OUT) -> tuple[Path, Path]:
    """Write the Markdown and HTML reports of ``summary``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    name = str(summary.get("experiment") or summary.get("endpoint") or "experiment")
    markdown, page = out / f"{name}.md", out / f"{name}.html"
    markdown.write_text(render_markdown(summary), encoding="utf-8")
    page.write_text(render_html(summary), encoding="utf-8")
    return markdown, page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_platform.tools.experiment_report",
                                     description="An experiment's decision report as Markdown and HTML.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="base URL of the API (with --endpoint)")
    source.add_argument("--json", type=Path, help="a saved GET /v1/experiments/{endpoint} body")
    parser.add_argument("--endpoint", help="public endpoint name (with --url)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.url and not args.endpoint:
        parser.error("--url needs --endpoint")
    try:
        summary = fetch_summary(args.url, args.endpoint) if args.url else json.loads(args.json.read_text())
    except (OSError, ValueError) as error:
        print(f"experiment report: cannot read the summary: {error}", file=sys.stderr)
        return 2
    for path in write_report(summary, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
