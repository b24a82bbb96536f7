"""Webhook URLs are parsed and allow-listed; messages are signed as Standard Webhooks verify them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from api.webhooks import allowed_hosts, backoff, checked_url, new_secret, signed_headers
from meterline.exceptions import InvalidQuery
from storage.alert_store import EndpointRow

ALLOWED = allowed_hosts("hooks.example.com, *.partner.example, 127.0.0.1:8080, relay.example:*, [fd00::7]:9443")


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("https://hooks.example.com/in?x=1", "https://hooks.example.com/in?x=1"),
        ("https://HOOKS.example.com", "https://hooks.example.com/"),
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:8080/cb"),
        ("https://eu.partner.example/a", "https://eu.partner.example/a"),
        ("https://relay.example:9443/in", "https://relay.example:9443/in"),
        ("http://hooks.example.com:80/", "http://hooks.example.com:80/"),
        ("https://[FD00::7]:9443/in", "https://[fd00::7]:9443/in"),
    ],
)
def test_an_allowed_url_is_stored_as_rebuilt_from_its_parts(url, stored):
    assert checked_url(url, ALLOWED) == stored


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pw@hooks.example.com/",
        "https://hooks.example.com@169.254.169.254/",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost/",
        "http://[::1]/",
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
        "https://partner.example/",  # the wildcard covers subdomains only
        "https://hooks.example.com.evil.net/",
        "https://hooks.example.com:99999/",
        "https://hooks.example.com/#frag",
        "not a url",
        "",
        "http://127.0.0.1:9000/",  # a port the setting does not list
        "https://hooks.example.com:8443/",  # no port listed: only the scheme's own
        "http://127.0.0.1:0/",
        "https://[fd00::7]/",  # the entry names port 9443 only
        "https://[fd00::8]:9443/",
        "https://hooks.example.com/a b",
        "https://hooks.example.com/\x00",
        "https://hooks.example.com/\u202e",
    ],
)
def test_a_url_outside_the_allowed_hosts_or_with_credentials_is_refused(url):
    with pytest.raises(InvalidQuery):
        checked_url(url, ALLOWED)


def test_no_host_is_allowed_by_default():
    with pytest.raises(InvalidQuery, match="METERLINE_WEBHOOK_ALLOWED_HOSTS"):
        checked_url("https://hooks.example.com/", allowed_hosts(""))


def endpoint(*secrets: tuple[str, datetime | None]) -> EndpointRow:
    made = datetime(2026, 1, 1, tzinfo=UTC)
    return EndpointRow(
        "e-1", "acme", "https://hooks.example.com/", [s for s, _ in secrets], [u for _, u in secrets], False, "k", made
    )


def test_a_message_verifies_with_the_endpoint_secret_and_not_another():
    # The verifier refuses a timestamp five minutes from its own clock, so sign at the test's now.
    now = datetime.now(UTC)
    secret = new_secret()
    body = b'{"type": "credit.alert"}'
    headers = signed_headers(endpoint((secret, None)), "r-1.cust-1.1", body, now)
    assert Webhook(secret).verify(body, headers) == {"type": "credit.alert"}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)


def test_during_a_rotation_both_secrets_sign_and_after_it_only_the_new_one():
    now = datetime.now(UTC)
    old, new = new_secret(), new_secret()
    rotating = endpoint((old, now + timedelta(hours=1)), (new, None))
    body = b"{}"
    headers = signed_headers(rotating, "m", body, now)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)
    later = signed_headers(rotating, "m", body, now + timedelta(hours=2))
    assert len(later["webhook-signature"].split(" ")) == 1


def test_retries_back_off_and_are_capped():
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 8, 20)] == [1, 2, 4, 128, 300]
