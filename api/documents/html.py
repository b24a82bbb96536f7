"""The invoice as a branded HTML page (jinja2, autoescaped)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.documents.view import InvoiceView

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent.parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def render_html(view: InvoiceView) -> str:
    return TEMPLATES.get_template("invoice.html").render(view=view)
