"""The HTML page of a text search: one row per hit with a strip of the frames the model saw.

Self-contained: the JPEG thumbnails are inlined as base64 ``data:`` URIs, so the page can be
mailed or opened anywhere without the videos or the index beside it.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

STYLE = """
body { font-family: sans-serif; margin: 1.5em; background: #fafafa; color: #222; }
h1 { font-size: 1.3em; } .meta { color: #666; font-size: 0.9em; }
.hit { display: flex; align-items: center; gap: 1em; margin: 0.6em 0; padding: 0.5em;
       background: #fff; border: 1px solid #ddd; border-radius: 6px; }
.rank { font-size: 1.4em; width: 2em; text-align: right; }
.info { width: 22em; overflow-wrap: anywhere; } .score { font-weight: bold; }
.strip img { height: 96px; margin-right: 2px; border: 1px solid #ccc; }
"""


def render_page(query: str, hits: list[dict], *, index: str, checkpoint: str, ranking: str) -> str:
    """``hits``: dicts with rank, score, key, source, frames (JPEG bytes) in rank order."""
    rows = []
    for hit in hits:
        imgs = "".join(f'<img alt="frame {i}" src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}">'
                       for i, jpeg in enumerate(hit.get("frames") or []))
        rows.append(
            f'<div class="hit"><div class="rank">{hit["rank"]}</div>'
            f'<div class="info"><div class="score">score {hit["score"]:.4f}</div>'
            f'<div>{html.escape(hit["key"])}</div><div class="meta">{html.escape(hit["source"])}</div></div>'
            f'<div class="strip">{imgs or "(no frames stored)"}</div></div>')
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(query)}</title>'
            f"<style>{STYLE}</style></head><body>\n"
            f"<h1>&ldquo;{html.escape(query)}&rdquo;</h1>\n"
            f'<p class="meta">{len(hits)} hits by {html.escape(ranking)}; index {html.escape(index)}; '
            f"checkpoint {html.escape(checkpoint)}</p>\n" + "\n".join(rows) + "\n</body></html>\n")


def write_page(path: str | Path, query: str, hits: list[dict], **info: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(query, hits, **info), encoding="utf-8")
    return path
