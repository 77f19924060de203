"""PDF from the printable HTML, where a renderer is found on this machine; never required.

Tried in order: WeasyPrint (a Python package using the system's Pango; install
it with ``pip install 'senflow[pdf]'``), then a headless Chromium or Chrome on
the PATH (``--print-to-pdf``). If neither is there, no PDF is written and the
caller says so; the HTML prints to PDF from any browser. ``SENFLOW_PDF=off``
turns PDF output off.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@dataclass(frozen=True)
class Renderer:
    name: str
    render: Callable[[str, Path], None]  # (html text, pdf path)


def _weasyprint() -> Renderer | None:
    try:
        import weasyprint  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except (ImportError, OSError):  # OSError: the package is there but Pango is not
        return None
    # WeasyPrint warns about CSS it does not support; those lines carry no pupil data,
    # but keep them out of the logs all the same.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)

    def render(html: str, pdf: Path) -> None:
        weasyprint.HTML(string=html).write_pdf(str(pdf))

    return Renderer(f"weasyprint {weasyprint.__version__}", render)


def _browser() -> Renderer | None:
    exe = next((p for p in map(shutil.which, _BROWSERS) if p), None)
    if exe is None:
        return None

    def render(html: str, pdf: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            page = Path(tmp) / "page.html"
            page.write_text(html, "utf-8")
            subprocess.run(
                [
                    exe,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    f"--user-data-dir={tmp}/profile",
                    "--no-pdf-header-footer",
                    f"--print-to-pdf={pdf}",
                    page.as_uri(),
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )

    return Renderer(Path(exe).name, render)


def find_renderer() -> Renderer | None:
    if os.environ.get("SENFLOW_PDF", "").lower() in ("off", "0", "no", "false"):
        return None
    return _weasyprint() or _browser()


NO_RENDERER = (
    "no PDF renderer found (pip install 'senflow[pdf]' for WeasyPrint, or put Chromium on "
    "the PATH); the HTML prints to PDF from any browser"
)
