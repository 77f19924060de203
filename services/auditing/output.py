"""Writing auditing output to files: owner-only permissions, names without personal data.

Evidence packs, SAR exports and CTFs hold special category personal data, so
files are created readable by their owner only (0600) and named by pupil id,
never by name or UPN (file names end up in listings, logs and mail subjects).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from senflow.services.auditing import html
from senflow.services.auditing.pdf import Renderer

Doc = dict[str, Any]


def write_text(path: Path, text: str, private: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600 if private else 0o644
    )
    if private:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_TRUNC: fix it first
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return path


def write_json(path: Path, doc: Any, private: bool = True) -> Path:
    return write_text(
        path, json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n", private
    )


def write_pack(pack: Doc, out_dir: Path, renderer: Renderer | None) -> Doc:
    """``evidence-<pupil>.json`` and ``.html``, and ``.pdf`` when a renderer is found."""
    stem = f"evidence-{pack['pupil']['pupil_id']}"
    page = html.pack_html(pack)
    write_json(out_dir / f"{stem}.json", pack)
    write_text(out_dir / f"{stem}.html", page)
    files: Doc = {"html": f"{stem}.html", "json": f"{stem}.json", "pdf": None}
    if renderer is not None:
        write_pdf(renderer, page, out_dir / f"{stem}.pdf")
        files["pdf"] = f"{stem}.pdf"
    return files


def write_pdf(renderer: Renderer, page: str, path: Path) -> Path:
    """Render into a private temporary file beside ``path``, then rename it into place, so
    the PDF is never readable by others, not even while it is being written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".render-", suffix=".pdf", dir=path.parent)
    os.close(fd)  # mkstemp made it 0600; the renderer writes into it
    try:
        renderer.render(page, Path(name))
        os.chmod(name, 0o600)
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
    return path
