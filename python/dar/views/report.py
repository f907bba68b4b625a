"""A session as one self-contained HTML page: `dar report` writes it, `dar ui` serves it.

One template (``page/``) for both: the report embeds the session's model as JSON, the web
app's page fetches the same model from its JSON API, and one script renders either. The
file must open from an email attachment or a ticket, so everything is inline (no CDN, no
server), and a Content-Security-Policy forbids loading anything else.

The log's text is attacker-controlled. It reaches the page only as JSON inside a
``<script type="application/json">`` element, written so that no ``<``, ``>`` or ``&`` can
end that element, and the script shows it with ``textContent`` only.
"""

from __future__ import annotations

import html
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from dar.views.sessions import SessionView

_SLOT = re.compile(r"\{(title|mode|css|js|data)\}")


@cache
def _asset(name: str) -> str:
    return (resources.files("dar.views") / "page" / name).read_text("utf-8")


def script_json(value: Any) -> str:
    """JSON that is inert inside a ``<script>`` element: ``</script>``, ``<!--`` and the
    like cannot appear in it, because ``<``, ``>`` and ``&`` are written as escapes."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def page(title: str, mode: str, data: Any) -> str:
    """The page, with its slots filled in one pass (a value is never scanned for slots)."""
    values = {
        "title": html.escape(title),
        "mode": html.escape(mode),
        "css": _asset("page.css"),
        "js": _asset("page.js"),
        "data": script_json(data),
    }
    return _SLOT.sub(lambda m: values[m.group(1)], _asset("page.html"))


def report_html(view: SessionView) -> str:
    """The self-contained report of one session."""
    return page(f"dar: session {view.session_id}", "report", view.as_dict())
