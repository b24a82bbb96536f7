"""Every portal page declares who may see it: ``SignedIn(permission)`` (a session of a customer
or a partner whose credential still holds, and its role allows it), or ``SigningIn()``.

A form posted to a signed-in page carries its session's CSRF secret, checked here before the
page runs: a page cannot forget it. What a visitor sees is its caller's scope, as through the
API; another tenant's customer, invoice or line does not exist for it (404).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from fastapi import Request

from api.access import sessions
from api.access.guard import Authenticator, Caller, Policy, admit, media_type_of
from api.access.principals import Permission, Principal, Role
from api.services import services_of
from billing.catalog import Catalog
from meterline.exceptions import Forbidden, InvalidQuery, Unauthenticated, UnsupportedMediaType

FORM = "application/x-www-form-urlencoded"
LONGEST_FORM_BYTES = 4096
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Visitor:
    caller: Caller
    session: sessions.Session
    catalog: Catalog
    form: dict[str, str] = field(default_factory=dict)
    """A posted form's fields (its CSRF secret checked)."""

    def of_customer(self, customer_id: str) -> Caller:
        """The caller as it sees one of its customers alone; another's is ``UnknownCustomer``."""
        return Caller(self.caller.principal, self.caller.scope.only_customer(customer_id))

    @property
    def party_id(self) -> str:
        return self.caller.principal.party_id or ""

    @property
    def is_partner(self) -> bool:
        return self.caller.principal.role is Role.PARTNER


class SignedIn(Policy):
    """A page's policy: a valid session whose principal holds ``permission``."""

    def __init__(self, permission: Permission) -> None:
        self.permission = self.required = permission

    async def __call__(self, request: Request) -> Visitor:
        session, principal = session_of(request, datetime.now(UTC))
        caller = admit(request, principal)
        form = await posted_form(request, session.csrf) if request.method == "POST" else {}
        if not principal.may(self.required):
            raise Forbidden(f"{principal.credential} may not {self.required.value.replace('_', ' ')}")
        return Visitor(caller, session, services_of(request).catalog_admin.catalog, form)


def session_of(request: Request, now: datetime) -> tuple[sessions.Session, Principal]:
    """The request's session and who it is, its credential checked again now; ``Unauthenticated``
    without one that holds."""
    authenticator: Authenticator = services_of(request).authenticator
    session = sessions.verify(request.cookies.get(sessions.SESSION_COOKIE, ""), authenticator.session_key, now)
    if session is None:
        raise Unauthenticated("sign in to see this page")
    return session, authenticator.session_principal(session, now)


class SigningIn(Policy):
    """A page's policy: anyone (the sign-in pages); its forms are tied to the sign-in cookie."""

    permission = None

    async def __call__(self) -> None:
        return None


async def posted_form(request: Request, csrf: str) -> dict[str, str]:
    """The fields of a form posted from one of the portal's pages, or a clear refusal."""
    media_type = media_type_of(request)
    if media_type != FORM:
        raise UnsupportedMediaType(f"post the page's form ({FORM}), not {media_type or 'an untyped body'}")
    body = await request.body()
    if len(body) > LONGEST_FORM_BYTES:
        raise InvalidQuery(f"a form holds at most {LONGEST_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False, max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidQuery(f"the form is not readable: {error}") from error
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    if not sessions.form_matches(fields.get(CSRF_FIELD), csrf):
        raise Forbidden("this form is out of date or did not come from the portal: open the page again and resend")
    return fields
