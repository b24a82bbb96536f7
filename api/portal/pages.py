"""How the portal's pages are rendered: jinja2 (autoescaped), the issuer's branding, and the
headers every page carries.

No script runs on a page: charts are SVG drawn on the server, forms post plainly. The content
security policy allows the page's own stylesheet and one inline style block (the issuer's
colours, under a per-response nonce), images from the page or the issuer's logo, and forms to
the portal only; pages are never framed and never sent as a referrer (a sign-in link carries a
token in its address).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from api.access.guard import Caller
from api.access.principals import Principal
from api.portal.guard import session_of
from billing.catalog import Catalog, Customer, Issuer
from billing.money import round_exact, round_money
from meterline.exceptions import Unauthenticated

PREFIX = "/portal"
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent.parent / "templates" / "portal"),
    autoescape=True,
    undefined=StrictUndefined,
)
STYLESHEET = Path(__file__).resolve().parent.parent / "static" / "portal.css"


def money(amount: Decimal, currency: str) -> str:
    """Money for people: rounded once to the currency's minor unit, grouped by thousands."""
    return f"{round_money(amount, currency):,f}"


def quantity(value: Decimal | Fraction) -> str:
    """A quantity for people: at most 4 places (rounded once from an exact ``Fraction``),
    grouped by thousands."""
    return f"{round_exact(value, Decimal('0.0001')).normalize():,f}"


TEMPLATES.filters["money"] = money
TEMPLATES.filters["quantity"] = quantity


@dataclass(frozen=True)
class Brand:
    """The issuer whose portal it is: a customer's seller (the provider, or its partner); for a
    partner, the provider."""

    issuer: Issuer
    text_colour: str
    """Black or white, whichever reads better on the issuer's colour (WCAG contrast)."""

    @property
    def logo(self) -> str | None:
        """The issuer's logo if it is carried in its ``data:`` URI: nothing is fetched elsewhere."""
        logo = self.issuer.branding.logo_url
        return logo if logo and logo.startswith("data:image/") else None

    @classmethod
    def of(cls, catalog: Catalog, principal: Principal | None) -> Brand:
        issuer = catalog.provider
        party = catalog.party(principal.party_id) if principal is not None and principal.party_id else None
        if isinstance(party, Customer):
            issuer = catalog.seller_of(party)
        return cls(issuer, _readable_on(issuer.branding.colour))


def _readable_on(hex_colour: str) -> str:
    """#ffffff or #111111: the one of higher contrast against ``hex_colour`` (WCAG 2 formula)."""

    def linear(channel: int) -> float:
        value = channel / 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    luminance = 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)
    dark = 0.0056  # the luminance of #111111
    return "#ffffff" if (1.05) / (luminance + 0.05) >= (luminance + 0.05) / (dark + 0.05) else "#111111"


def render(
    request: Request, template: str, brand: Brand, status: int = 200, form_targets: tuple[str, ...] = (), **context: Any
) -> HTMLResponse:
    """``form_targets``: the origins beside this one that the page's forms may lead to (a
    payment form's redirect to the gateway's page)."""
    nonce = secrets.token_urlsafe(16)
    body = TEMPLATES.get_template(template).render(brand=brand, nonce=nonce, prefix=PREFIX, **context)
    return HTMLResponse(body, status_code=status, headers=security_headers(nonce, form_targets))


def security_headers(nonce: str | None = None, form_targets: tuple[str, ...] = ()) -> dict[str, str]:
    style = f"'self' 'nonce-{nonce}'" if nonce else "'self'"
    forms = " ".join(("'self'", *form_targets))
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src {style}; img-src 'self' data:; form-action {forms}; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    }


def is_portal(request: Request) -> bool:
    return request.url.path == PREFIX or request.url.path.startswith(f"{PREFIX}/")


def error_page(
    request: Request, catalog: Catalog | None, status: int, detail: str, retry_after: str | None = None
) -> Response:
    """A refusal as a page, branded for whoever is signed in: signing in again when the session
    is missing or no longer valid."""
    retry = {"Retry-After": retry_after} if retry_after else {}
    if status == 401 and request.method == "GET":
        return RedirectResponse(f"{PREFIX}/sign-in", status_code=303, headers=security_headers() | retry)
    if catalog is None:
        return HTMLResponse(detail, status_code=status, headers=security_headers() | retry)
    brand = Brand.of(catalog, _signed_in(request))
    answer = render(request, "error.html", brand, status=status, status_code=status, detail=detail, signed_in=False)
    answer.headers.update(retry)  # the page's own headers stay: its policy names its style's nonce
    return answer


def _signed_in(request: Request) -> Principal | None:
    """Who the request is from, if a page's guard found out or its session cookie holds."""
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is not None:
        return caller.principal
    try:
        return session_of(request, datetime.now(UTC))[1]
    except Unauthenticated:
        return None
