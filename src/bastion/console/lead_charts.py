"""Charts for the leads' dashboard: pygal draws SVG on the server, this module makes it safe to inline.

pygal (LGPL, maintained by Kozea) renders charts as SVG in Python: no JavaScript build and nothing for the browser
to run. Its SVG is not ready for the console's Content-Security-Policy (``script-src 'self'; style-src 'self'``,
no inline script or style): every chart carries an inline ``<script>`` (its tooltip configuration), an inline
``<style>`` and a ``style`` attribute. :func:`render` therefore re-parses pygal's output and keeps only drawing
elements: no ``script``, ``style`` or ``foreignObject``, no event-handler or ``style`` attributes, no links, no
tooltip layer (it needs pygal's script). The colours and fonts pygal would have inlined are served once as a
stylesheet from the console itself (:func:`stylesheet`, ``/console/lead/charts.css``), scoped to
``.pygal-chart``. Each SVG is an image with an accessible name (``role="img"``, ``aria-labelledby`` its title and
description); pages show the same numbers in a table beside it.
"""

from __future__ import annotations

import itertools
import re
import sys
import xml.etree.ElementTree as ET
from functools import lru_cache
from typing import Any

import pygal
from pygal.style import Style

# pygal appends an old-style import hook to sys.meta_path for its map plugins (``pygal.maps.*``, unused here); every
# later import that reaches it raises ImportWarning (an error under the test suite's warning filter). Take it out.
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "PluginImportFixer"]

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)

# WCAG AA on white: every series colour has a contrast of at least 4.5:1 against the white plot background.
STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1a1a1a",
    foreground_strong="#1a1a1a",
    foreground_subtle="#6b6f76",
    opacity="1",
    opacity_hover="1",
    transition="none",
    font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    colors=("#0b4f9c", "#a4001d", "#2e6b30", "#6a1b9a", "#8a4b00", "#00606b", "#4a4a4a", "#b0005a"),
    title_font_size=18,
    label_font_size=13,
    major_label_font_size=13,
    legend_font_size=14,
    value_font_size=13,
)
_CONFIG: dict[str, Any] = {
    "style": STYLE,
    "js": [],
    "disable_xml_declaration": True,
    "explicit_size": False,
    "width": 760,
    "height": 340,
    "legend_at_bottom": True,
    "legend_at_bottom_columns": 4,
    "print_values": False,
    "show_y_guides": True,
    "truncate_label": 24,
    "margin": 12,
}
_ALLOWED = frozenset(
    {
        "svg",
        "g",
        "path",
        "rect",
        "circle",
        "ellipse",
        "line",
        "polyline",
        "polygon",
        "text",
        "tspan",
        "title",
        "desc",
        "defs",
        "clipPath",
        "use",
    }
)
_ids = itertools.count(1)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _clean(el: ET.Element) -> None:
    """Keep drawing elements and harmless attributes only (see the module docstring)."""
    for child in list(el):
        if not isinstance(child.tag, str) or _local(child.tag) not in _ALLOWED or "tooltip" in child.get("class", ""):
            el.remove(child)
            continue
        _clean(child)
    for name in list(el.attrib):
        local = _local(name).lower()
        value = el.attrib[name]
        if local.startswith("on") or local == "style" or (local == "href" and not value.startswith("#")):
            del el.attrib[name]


def render(chart: Any, *, title: str, description: str) -> str:
    """The chart as an inline ``<svg>`` safe under the console's CSP, with an accessible name."""
    chart.title = title
    root = ET.fromstring(chart.render(is_unicode=True))
    _clean(root)
    n = next(_ids)
    title_el = root.find(f"{{{SVG_NS}}}title")
    if title_el is None:
        title_el = ET.SubElement(root, f"{{{SVG_NS}}}title")
        title_el.text = title
    title_el.set("id", f"chart-title-{n}")
    desc = ET.Element(f"{{{SVG_NS}}}desc", {"id": f"chart-desc-{n}"})
    desc.text = description
    root.insert(list(root).index(title_el) + 1, desc)
    root.set("role", "img")
    root.set("aria-labelledby", f"chart-title-{n} chart-desc-{n}")
    root.set("id", f"chart-{n}")
    root.set("class", "pygal-chart")
    return ET.tostring(root, encoding="unicode", method="xml")


def bar(**options: Any) -> Any:
    return pygal.Bar(**{**_CONFIG, **options})


def stacked_bar(**options: Any) -> Any:
    return pygal.StackedBar(**{**_CONFIG, **options})


def horizontal_bar(**options: Any) -> Any:
    return pygal.HorizontalBar(**{**_CONFIG, **options})


@lru_cache(maxsize=1)
def stylesheet() -> str:
    """pygal's own CSS for :data:`STYLE` (base, colours and graph rules), scoped to ``.pygal-chart``."""
    chart = pygal.Bar(**{**_CONFIG, "css": ["file://style.css", "file://graph.css"]})
    for i in range(len(STYLE.colors)):
        chart.add(f"s{i}", [i + 1])
    root = ET.fromstring(chart.render(is_unicode=True))
    css = "\n".join(el.text or "" for el in root.iter(f"{{{SVG_NS}}}style"))  # unescaped (``>`` not ``&gt;``)
    css = re.sub(r"#chart-[0-9a-f-]+", ".pygal-chart", css)
    return css + "\n.pygal-chart{width:100%;height:auto;max-width:48rem}\n"


__all__ = ["bar", "horizontal_bar", "render", "stacked_bar", "stylesheet"]
