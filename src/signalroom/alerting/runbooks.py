"""Runbooks: Markdown files served at ``/runbooks/<name>`` and linked from every notification.

An alert names its runbook by a ``runbook_url`` or ``runbook`` annotation or label (seed 001
puts ``runbook: https://wiki.../runbooks/settings-sync-failure`` in the labels). A full
``http(s)://`` URL is used as it is; a bare name links to ``<base>/runbooks/<name>``. The
:class:`RunbookStage` writes the resolved link into the ``runbook_url`` annotation of every
alert it passes on, so the webhook payload, e-mail, PagerDuty details and Teams text all show
it (Slack's default text is empty, as in Alertmanager; its templates can use
``{{ .CommonAnnotations.runbook_url }}``).

Runbooks shipped with signalroom live in ``alerting/runbooks/``; configured directories are
searched first, so a team can replace a shipped runbook by giving its own file that name.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from signalroom.alerting.alerts import Alert

if TYPE_CHECKING:
    from signalroom.alerting.notify.context import FlushContext

__all__ = [
    "SHIPPED_RUNBOOKS",
    "Runbook",
    "RunbookLibrary",
    "RunbookStage",
    "render_markdown",
    "runbook_link",
]

SHIPPED_RUNBOOKS = Path(__file__).resolve().parent / "runbooks"
RUNBOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RUNBOOK_KEYS = ("runbook_url", "runbook")


@dataclass(frozen=True)
class Runbook:
    name: str
    title: str
    markdown: str
    path: Path


class RunbookLibrary:
    """``<name>.md`` files of the configured directories, then the shipped ones."""

    def __init__(self, dirs: Sequence[str | Path] = (), *, shipped: bool = True) -> None:
        self.dirs = [Path(d) for d in dirs] + ([SHIPPED_RUNBOOKS] if shipped else [])

    def get(self, name: str) -> Runbook | None:
        name = name.removesuffix(".md")
        if not RUNBOOK_NAME.match(name) or ".." in name:
            return None
        for directory in self.dirs:
            path = directory / f"{name}.md"
            if path.is_file():
                text = path.read_text(encoding="utf-8")
                return Runbook(name, _title(text, name), text, path)
        return None

    def names(self) -> list[str]:
        found: set[str] = set()
        for directory in self.dirs:
            if directory.is_dir():
                found.update(p.stem for p in directory.glob("*.md") if RUNBOOK_NAME.match(p.stem))
        return sorted(found)


def _title(text: str, default: str) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return default


def runbook_link(
    labels: Mapping[str, str], annotations: Mapping[str, str], base_url: str
) -> str | None:
    """The runbook link of an alert: annotations first, then labels; names become
    ``<base_url>/runbooks/<name>``."""
    for source in (annotations, labels):
        for key in RUNBOOK_KEYS:
            if key not in source:  # the usual case, checked per alert of every flush
                continue
            value = source[key].strip()
            if not value:
                continue
            if value.startswith(("http://", "https://")):
                return value
            name = value.removeprefix("/runbooks/").removesuffix(".md")
            if RUNBOOK_NAME.match(name):
                return f"{base_url.rstrip('/')}/runbooks/{name}"
    return None


class RunbookStage:
    """A notification stage that puts each alert's runbook link into ``runbook_url``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def exec(
        self, ctx: FlushContext, alerts: list[Alert]
    ) -> tuple[FlushContext, list[Alert]]:
        out: list[Alert] = []
        for alert in alerts:
            link = runbook_link(alert.labels, alert.annotations, self.base_url)
            if link is None or alert.annotations.get("runbook_url") == link:
                out.append(alert)
                continue
            copy = alert.copy()
            copy._fp = alert._fp
            copy.annotations["runbook_url"] = link
            out.append(copy)
        return ctx, out


# --- a small, safe Markdown renderer ------------------------------------------------------------
# Everything is HTML-escaped first; only the constructs below produce tags, and links keep
# only http(s), mailto and relative targets, so a runbook cannot inject script.

_INLINE_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_SAFE_HREF = re.compile(r"^(https?://|mailto:|/|#|\./|[A-Za-z0-9._-]+(/|$|#))", re.IGNORECASE)


def _inline(text: str) -> str:
    codes: list[str] = []

    def keep_code(m: re.Match[str]) -> str:
        codes.append(f"<code>{html.escape(m.group(1), quote=False)}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = _INLINE_CODE.sub(keep_code, text)
    text = html.escape(text, quote=True)

    def link(m: re.Match[str]) -> str:
        href = html.unescape(m.group(2))
        if not _SAFE_HREF.match(href):
            return m.group(1)
        return f'<a href="{html.escape(href, quote=True)}">{m.group(1)}</a>'

    text = _LINK.sub(link, text)
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    text = _ITALIC.sub(r"<em>\1</em>", text)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], text)


def render_markdown(text: str, title: str = "") -> str:
    """A complete HTML page for a Markdown document: headings, paragraphs, lists, code
    blocks, inline code, emphasis, links, horizontal rules."""
    out: list[str] = []
    para: list[str] = []
    list_kind: str | None = None
    lines = text.splitlines()
    i = 0

    def close_para() -> None:
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()

    def close_list() -> None:
        nonlocal list_kind
        if list_kind is not None:
            out.append(f"</{list_kind}>")
            list_kind = None

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            close_para()
            close_list()
            lang = stripped[3:].strip()
            body: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            cls = f' class="language-{html.escape(lang)}"' if re.fullmatch(r"[\w+-]+", lang) else ""
            out.append(f"<pre><code{cls}>" + html.escape("\n".join(body)) + "</code></pre>")
            i += 1
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        bullet = re.match(r"^[-*+]\s+(.*)$", stripped)
        ordered = re.match(r"^\d+[.)]\s+(.*)$", stripped)
        if not stripped:
            close_para()
            close_list()
        elif heading:
            close_para()
            close_list()
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2).rstrip('#').strip())}</h{level}>")
        elif re.fullmatch(r"(-{3,}|\*{3,}|_{3,})", stripped):
            close_para()
            close_list()
            out.append("<hr>")
        elif bullet or ordered:
            close_para()
            kind = "ul" if bullet else "ol"
            if list_kind != kind:
                close_list()
                out.append(f"<{kind}>")
                list_kind = kind
            item = bullet or ordered
            assert item is not None
            out.append(f"<li>{_inline(item.group(1))}</li>")
        elif list_kind is not None and line.startswith((" ", "\t")):
            # continuation of the previous list item
            out[-1] = out[-1].removesuffix("</li>") + " " + _inline(stripped) + "</li>"
        else:
            close_list()
            para.append(stripped)
        i += 1
    close_para()
    close_list()
    head = html.escape(title or "Runbook")
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{head}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;"
        "padding:0 1rem;line-height:1.5}pre{background:#f4f4f4;padding:.75rem;overflow:auto}"
        "code{font-family:ui-monospace,monospace}</style></head><body>\n"
        + "\n".join(out)
        + "\n</body></html>\n"
    )
