"""The transparency report as HTML: pygal charts (server-side SVG, no script: :mod:`.lead_charts`) and tables.

:func:`charts` gives the four charts (time to removal, proactive-detection share, volumes by source and by
jurisdiction) for the console page, which links the chart stylesheet; :func:`standalone` gives a self-contained
document (the stylesheet inlined, nothing external, no script) for ``bastion report transparency --format html`` and
the API, to publish as it is.
"""

from __future__ import annotations

from html import escape
from typing import Any

from bastion.console import lead_charts

SOURCE_LABELS = {
    "hash_match": "Hash match",
    "classifier": "Classifier",
    "human_review": "Human review",
    "removal_order": "Removal order",
}


def charts(document: dict[str, Any]) -> list[dict[str, str]]:
    c = document["charts"]
    out = []
    ttr = lead_charts.bar(show_legend=False, x_title="time from upload to removal", y_title="items")
    ttr.x_labels = [label for label, _ in c["time_to_removal"]["buckets"]]
    ttr.add("items", [n for _, n in c["time_to_removal"]["buckets"]])
    out.append(
        {
            "title": "Time to removal",
            "svg": lead_charts.render(
                ttr, title="Time to removal", description="Items removed or disabled, by time from upload to removal."
            ),
        }
    )
    share = c["proactive_share"]
    pro = lead_charts.horizontal_bar(show_legend=True)
    pro.add("found by Bastion (proactive)", [share["proactive"]])
    pro.add("other (reviews, orders)", [share["total"] - share["proactive"]])
    out.append(
        {
            "title": "Proactive detection",
            "svg": lead_charts.render(
                pro,
                title="Proactive detection",
                description=f"{share['proactive']} of {share['total']} restricted items "
                "were found by hash matching or classifiers.",
            ),
        }
    )
    src = lead_charts.bar(show_legend=False, y_title="items")
    src.x_labels = [SOURCE_LABELS[k] for k in c["by_source"]]
    src.add("items", list(c["by_source"].values()))
    out.append(
        {
            "title": "Volume by source",
            "svg": lead_charts.render(
                src, title="Volume by source", description="Items restricted, by how they were found."
            ),
        }
    )
    jur = lead_charts.horizontal_bar(show_legend=False)
    top = list(c["by_jurisdiction"].items())[:15]
    jur.x_labels = [k for k, _ in top] or ["none"]
    jur.add("items", [v for _, v in top] or [0])
    out.append(
        {
            "title": "Volume by jurisdiction",
            "svg": lead_charts.render(
                jur,
                title="Volume by jurisdiction",
                description="Items restricted, by the jurisdictions the platform reported for them (15 largest).",
            ),
        }
    )
    return out


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(
        f'<tr><th scope="row">{escape(str(k))}</th><td>{escape("" if v is None else str(v))}</td></tr>' for k, v in rows
    )
    return f"<table>{body}</table>"


def body(document: dict[str, Any]) -> str:
    """The report's content (headings, tables, charts) as an HTML fragment."""
    r, t = document["report"], document["tco_article_7"]
    parts = [
        f"<h1>Transparency report: {escape(r['organisation'])}</h1>",
        f"<p>Period {escape(r['from'])} to {escape(r['to'])}. {escape('; '.join(r['regulations']))}.</p>",
        "<h2>Measures taken (TCO Art. 7(3)(a))</h2><ul>",
        *[f"<li>{escape(m)}</li>" for m in t["measures"]],
        "</ul>",
        "<h2>Items removed or disabled</h2>",
        _table(
            [
                ("removed", t["items_removed"]),
                ("disabled", t["items_disabled"]),
                *[(SOURCE_LABELS[k], v) for k, v in t["items_by_source"].items()],
            ]
        ),
        "<h2>Removal orders</h2>",
        _table(
            [(k.replace("_", " "), v) for k, v in t["removal_orders"].items() if k != "not_acted_on_reasons"]
            + [(f"not acted on: {k}", v) for k, v in t["removal_orders"]["not_acted_on_reasons"].items()]
        ),
        "<h2>Complaints and reinstatements</h2>",
        _table(
            [(k.replace("_", " "), v) for k, v in t["complaints"].items() if k != "by_regime"]
            + [(f"complaints under {k.upper()}", v) for k, v in t["complaints"]["by_regime"].items()]
            + [(f"reinstated {k.replace('_', ' ')}", v) for k, v in t["reinstatements"].items()]
        ),
        "<h2>Charts</h2>",
    ]
    for chart in charts(document):
        parts.append(f"<figure>{chart['svg']}</figure>")
    parts.append(
        "<h2>DSA figures (Implementing Regulation (EU) 2024/2835)</h2><table><tr>"
        + "".join(f'<th scope="col">{c}</th>' for c in ("section", "figure", "member state", "value"))
        + "</tr>"
    )
    for row in document["dsa"]:
        parts.append(
            f"<tr><td>{escape(row['section'])}</td><td>{escape(row['field'])}</td>"
            f"<td>{escape(row['member_state'])}</td><td>{escape(str(row['value']))}</td></tr>"
        )
    parts.append("</table>")
    return "\n".join(parts)


def standalone(document: dict[str, Any]) -> str:
    """A self-contained HTML document: no script, no external resource."""
    css = (
        lead_charts.stylesheet() + "\nbody{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto}"
        "table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}"
    )
    title = f"Transparency report: {document['report']['organisation']}"
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{css}</style></head><body>{body(document)}</body></html>\n"
    )


__all__ = ["body", "charts", "standalone"]
