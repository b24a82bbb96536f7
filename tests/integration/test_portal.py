"""The client portal over HTTP: signing in with a customer's or partner's key or read token,
the session cookie and its CSRF secret, and each tenant seeing only its own pages."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.access.guard import route_policies
from api.app import create_app
from meterline.brokers import ApacheKafkaBroker, Broker
from meterline.settings import Settings
from schemas.events import encode_batch
from tests.factories import catalog_document, stripe_event, stripe_webhook, vm_sample
from tests.integration.gateways import WEBHOOK_SECRET, gateway_settings
from tests.integration.harness import System, system_with_catalog, wait_for

pytestmark = pytest.mark.integration
OCTOBER = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
HOUR_OF_ONE_VCPU = {"interval_s": 3600, "vcpu": 1, "ram_mb": 1024, "disks": [], "net_tx_bytes": 0}


@pytest.fixture(scope="module")
def portal(broker: Broker, stripe_mock: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """Direct and Resold (North's customer) used an hour each of one VM in October; the month
    is closed and issued. Acme takes cards through stripe-mock. The portal reads storage only:
    one broker is enough."""
    if isinstance(broker, ApacheKafkaBroker):
        pytest.skip("the portal reads what is stored; the Tansu run covers it")
    document = catalog_document()
    document["provider"]["payment"] = {"gateways": ["acme-stripe"]}
    running = system_with_catalog(
        broker,
        tmp_path_factory.mktemp("portal"),
        document,
        METERLINE_PAYMENTS_GATEWAYS=json.dumps(gateway_settings("acme-stripe", stripe_mock)),
    )
    running.start_all()
    events = [
        vm_sample("vm-d", customer_id="direct", at=OCTOBER, **HOUR_OF_ONE_VCPU),
        vm_sample("vm-r", customer_id="resold", at=OCTOBER, **HOUR_OF_ONE_VCPU),
    ]
    pushed = running.http.post("/v1/events", content=encode_batch(events))
    assert pushed.status_code == 202 and not pushed.json()["rejected"], pushed.text
    wait_for(lambda: _stored(running, "direct") and _stored(running, "resold"), what="the usage")
    assert running.http.post("/v1/periods/2026-10/close", timeout=60).status_code == 200
    assert running.http.post("/v1/periods/2026-10/issue", timeout=60).status_code == 200
    yield running
    running.stop_all()


def _stored(system: System, customer_id: str) -> bool:
    rows = system.usage(customer_id, **{"from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"})["rows"]
    return bool(rows)


def key_for(system: System, role: str, party_id: str) -> tuple[str, str]:
    made = system.http.post("/v1/keys", json={"name": f"{party_id} portal", "role": role, "party_id": party_id})
    assert made.status_code == 201, made.text
    return made.json()["key"], made.json()["key_id"]


def browser(system: System) -> httpx.Client:
    return httpx.Client(base_url=system.url, timeout=30, follow_redirects=False)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no form with a CSRF secret"
    return found.group(1)


def sign_in(system: System, credential: str) -> httpx.Client:
    client = browser(system)
    form = client.get("/portal/sign-in")
    answer = client.post("/portal/sign-in", data={"csrf": csrf_of(form.text), "credential": credential})
    assert answer.status_code == 303 and answer.headers["location"] == "/portal/", answer.text
    return client


def test_a_customer_signs_in_with_its_key_and_sees_only_its_own_pages(portal: System):
    direct_key, direct_key_id = key_for(portal, "customer", "direct")
    direct = sign_in(portal, direct_key)
    cookie = next(v for k, v in direct.cookies.jar._cookies.items())  # noqa: SLF001 - inspect flags
    session_cookie = cookie["/portal"]["meterline_session"]
    assert session_cookie.has_nonstandard_attr("HttpOnly") and session_cookie.path == "/portal"
    assert session_cookie.get_nonstandard_attr("SameSite").lower() == "strict"
    assert not session_cookie.secure, "over plain HTTP the cookie cannot be Secure; over TLS it is"

    home = direct.get("/portal/")
    assert home.status_code == 303 and home.headers["location"] == "/portal/customers/direct"
    audited = portal.http.get("/v1/audit", params={"key_id": direct_key_id}).json()
    assert [(row["method"], row["route"], row["status"]) for row in audited] == [("POST", "/portal/sign-in", 303)]
    for page in (
        "/portal/customers/direct",
        "/portal/customers/direct/usage?from=2026-10-01&to=2026-10-31",
        "/portal/invoices",
        "/portal/invoices/2026-10.acme.direct",
        "/portal/credit/direct",
    ):
        answer = direct.get(page)
        assert answer.status_code == 200, (page, answer.text[:300])
        assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert "Direct SAS" in direct.get("/portal/invoices").text
    assert "Resold GmbH" not in direct.get("/portal/invoices").text
    for others in (
        "/portal/customers/resold",
        "/portal/customers/resold/usage",
        "/portal/customers/resold/usage.csv",
        "/portal/invoices/2026-10.north.resold",
        "/portal/invoices/2026-10.acme.north",
        "/portal/invoices/2026-10.north.resold/lines/1",
        "/portal/invoices/2026-10.acme.north/pdf",
        "/portal/credit/resold",
        "/portal/credit/north",
        "/portal/customers/no-such-one",
    ):
        assert direct.get(others).status_code == 404, others
    for absurd in ("from=2026-10-31&to=2026-10-01", "from=2026-01-01&to=9999-12-31", "from=2299-01-01"):
        for page in ("/portal/customers/direct/usage", "/portal/customers/direct/usage.csv"):
            assert direct.get(f"{page}?{absurd}").status_code == 422, (page, absurd)  # 9999-12-31 was a 500

    portal.http.delete(f"/v1/keys/{direct_key_id}")
    time.sleep(0.2)
    ended = direct.get("/portal/customers/direct")
    assert ended.status_code == 303 and ended.headers["location"] == "/portal/sign-in", (
        "a revoked key ends its sessions"
    )


def test_a_partner_sees_each_of_its_customers_and_its_own_invoice_but_no_one_elses(portal: System):
    north = sign_in(portal, key_for(portal, "partner", "north")[0])
    home = north.get("/portal/")
    assert home.status_code == 200 and "Resold GmbH" in home.text and "Direct SAS" not in home.text
    assert north.get("/portal/customers/resold").status_code == 200
    listed = north.get("/portal/invoices").text
    assert "2026-10.north.resold" in listed and "2026-10.acme.north" in listed and "2026-10.acme.direct" not in listed
    assert north.get("/portal/invoices/2026-10.acme.north/pdf").headers["content-type"] == "application/pdf"
    assert north.get("/portal/customers/direct").status_code == 404
    assert north.get("/portal/invoices/2026-10.acme.direct").status_code == 404


def test_only_a_customers_or_partners_credential_signs_in_and_every_form_needs_its_secret(portal: System):
    anonymous = browser(portal)
    assert anonymous.get("/portal/customers/direct").headers["location"] == "/portal/sign-in"
    form = anonymous.get("/portal/sign-in")
    secret = csrf_of(form.text)
    for refused in (portal.env["METERLINE_ADMIN_KEY"], "mlk_000000000000_guess", "", "mlt_x.y"):
        answer = anonymous.post("/portal/sign-in", data={"csrf": secret, "credential": refused})
        assert answer.status_code == 401 and "meterline_session" not in answer.headers.get("set-cookie", "")
        secret = csrf_of(answer.text)  # the refusal's form is tied to a fresh sign-in cookie
    ingest_key = portal.http.post("/v1/keys", json={"name": "agent", "role": "ingest", "sources": ["a"]}).json()["key"]
    answer = anonymous.post("/portal/sign-in", data={"csrf": secret, "credential": ingest_key})
    assert answer.status_code == 401 and "customers and partners" in answer.text
    secret = csrf_of(answer.text)

    direct_key = key_for(portal, "customer", "direct")[0]
    elsewhere = browser(portal)  # a page elsewhere posts the form: it has no sign-in cookie, or the wrong secret
    assert elsewhere.post("/portal/sign-in", data={"csrf": secret, "credential": direct_key}).status_code == 403
    assert anonymous.post("/portal/sign-in", data={"csrf": "forged", "credential": direct_key}).status_code == 403
    as_json = anonymous.post("/portal/sign-in", json={"csrf": secret, "credential": direct_key})
    assert as_json.status_code == 415

    forged = browser(portal)  # a page that could set cookies: a nonce of its choosing, as the form's secret
    forged.cookies.set("meterline_sign_in", "chosen", path="/portal")
    assert forged.post("/portal/sign-in", data={"csrf": "chosen", "credential": direct_key}).status_code == 403

    direct = sign_in(portal, direct_key)
    refused = direct.post("/portal/sign-out", data={"csrf": ""})
    assert refused.status_code == 403, "sign-out too takes the session's secret"
    copied = browser(portal)
    copied.cookies.set("meterline_session", direct.cookies["meterline_session"], path="/portal")
    assert copied.get("/portal/invoices").status_code == 200
    signed_out = direct.post("/portal/sign-out", data={"csrf": csrf_of(direct.get("/portal/invoices").text)})
    assert signed_out.status_code == 303 and 'meterline_session=""' in signed_out.headers["set-cookie"]
    assert copied.get("/portal/invoices").headers.get("location") == "/portal/sign-in", "a copy ends with it"


def test_downloads_are_never_cached_and_a_link_takes_no_api_key(portal: System):
    direct_key = key_for(portal, "customer", "direct")[0]
    direct = sign_in(portal, direct_key)
    for download in (
        "/portal/invoices/2026-10.acme.direct/pdf",
        "/portal/customers/direct/usage.csv?from=2026-10-01&to=2026-10-31",
    ):
        answer = direct.get(download)
        assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store", download
        assert answer.headers["x-content-type-options"] == "nosniff"
    missing = direct.get("/portal/invoices/2026-10.acme.nobody")
    nonce = re.search(r'<style nonce="([^"]+)"', missing.text)
    assert missing.status_code == 404 and nonce, "an error page is branded by its style block"
    assert f"'nonce-{nonce.group(1)}'" in missing.headers["content-security-policy"], "and its policy lets it apply"
    landing = browser(portal).get("/portal/sign-in", params={"token": direct_key})
    assert "invalid or has expired" in landing.text and direct_key not in landing.text


def test_a_tampered_or_foreign_session_cookie_is_no_session(portal: System):
    direct = sign_in(portal, key_for(portal, "customer", "direct")[0])
    signed = direct.cookies["meterline_session"]
    body, _, signature = signed.partition(".")
    for forged in (body + "." + signature[::-1], body.replace("e", "f") + "." + signature, "mls_e30.", "x"):
        client = browser(portal)
        client.cookies.set("meterline_session", forged, path="/portal")
        assert client.get("/portal/invoices").headers.get("location") == "/portal/sign-in", forged


def test_a_read_token_link_signs_in_as_its_party_after_a_click_and_ends_with_the_token(portal: System):
    issued = portal.http.post("/v1/tokens", json={"party_id": "direct", "ttl_s": 3600})
    assert issued.status_code == 201, issued.text
    token, token_id = issued.json()["token"], issued.json()["token_id"]
    client = browser(portal)
    landing = client.get("/portal/sign-in", params={"token": token})
    assert landing.status_code == 200 and "Continue as Direct SAS" in landing.text
    assert client.get("/portal/invoices").status_code == 303, "the link alone signs no one in"
    answer = client.post("/portal/sign-in", data={"csrf": csrf_of(landing.text), "credential": token})
    assert answer.status_code == 303
    assert client.get("/portal/invoices/2026-10.acme.direct").status_code == 200
    assert client.get("/portal/invoices/2026-10.north.resold").status_code == 404
    cookie = client.cookies["meterline_session"]
    assert "mlt_" not in base64.urlsafe_b64decode(cookie[4:].split(".")[0] + "==").decode(), "the token's claims only"
    assert portal.client(cookie).get("/v1/invoices").status_code == 401, "a session cookie is no API credential"

    assert portal.http.delete(f"/v1/tokens/{token_id}").status_code == 200
    time.sleep(0.2)
    assert client.get("/portal/invoices").headers.get("location") == "/portal/sign-in"
    assert "invalid or has expired" in browser(portal).get("/portal/sign-in", params={"token": token}).text


@pytest.fixture
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's headless Chromium through its ChromeDriver, downloading into a folder of its own."""
    if shutil.which("chromedriver") is None and os.environ.get("CI") != "true":
        pytest.skip("chromium-driver is not installed (make test installs it; under CI its absence fails the run)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "plugins.always_open_pdf_externally": True,
        },
    )
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    driver.downloads = downloads
    driver.set_window_size(1280, 900)
    try:
        yield driver
    finally:
        driver.quit()


CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""As the machine's Chromium needs them here: without the background-networking ones it keeps
trying Google's hosts through a closed network."""
SCREENSHOTS = Path("test-artifacts/portal")


def downloaded(driver: Any, suffix: str) -> Path:
    """The file the browser finished downloading whose name ends with ``suffix``."""

    def found() -> Path | None:
        done = [p for p in driver.downloads.iterdir() if p.name.endswith(suffix)]
        return done[0] if done else None

    return wait_for(found, timeout_s=30, what=f"a downloaded {suffix}")


def shot(driver: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def test_a_customer_checks_an_invoice_line_down_to_its_events_in_a_real_browser(portal: System, chromium: Any):
    """Sign in, read usage, open the invoice, follow its vCPU line to the hourly usage and the
    raw event behind it, download the CSVs and the PDF; another tenant's page is a 404 page; the
    pages fit a phone's width and the keyboard reaches the content first."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = chromium
    driver.get(f"{portal.url}/portal/sign-in")
    shot(driver, "sign-in")
    field = driver.find_element(By.ID, "credential")
    assert driver.find_element(By.CSS_SELECTOR, "label[for=credential]").text
    field.send_keys(key_for(portal, "customer", "direct")[0])
    field.send_keys(Keys.ENTER)
    wait_for(lambda: driver.current_url.endswith("/portal/customers/direct") or None, what="the consumption page")
    assert "Direct SAS" in driver.find_element(By.TAG_NAME, "h1").text
    shot(driver, "consumption")

    driver.get(f"{portal.url}/portal/customers/direct/usage?from=2026-10-01&to=2026-10-31")
    table = driver.find_element(By.CSS_SELECTOR, "main table").text
    assert "vcpu_hours" in table and "2026-10-05" in table
    shot(driver, "usage")
    driver.find_element(By.PARTIAL_LINK_TEXT, "Download the hourly usage").click()
    assert "vm-d" in downloaded(driver, ".csv").read_text()

    driver.find_element(By.LINK_TEXT, "Invoices").click()
    shot(driver, "invoices")
    driver.find_element(By.PARTIAL_LINK_TEXT, "ACME-").click()
    assert "Invoice ACME-" in driver.find_element(By.TAG_NAME, "h1").text
    shot(driver, "invoice")
    driver.find_element(By.PARTIAL_LINK_TEXT, "Download the PDF").click()
    assert downloaded(driver, ".pdf").read_bytes().startswith(b"%PDF")
    driver.find_element(By.PARTIAL_LINK_TEXT, "Virtual CPU").click()
    assert "Line " in driver.find_element(By.TAG_NAME, "h1").text
    usage_rows = driver.find_element(By.CSS_SELECTOR, "main table").text
    assert "vm-d" in usage_rows and "2026-10-05 09:00" in usage_rows, "the sample at 10:00 covers the hour before"
    assert '"resource_id": "vm-d"' in driver.find_element(By.CSS_SELECTOR, "pre.event").text
    shot(driver, "invoice-line")

    # pay: the button leads to the gateway's page (stripe-mock's address, not reachable from
    # here), and the gateway's signed word that it was paid shows on the invoice
    driver.back()
    invoice_url = driver.current_url
    driver.find_element(By.XPATH, "//button[contains(., 'by card')]").click()
    wait_for(lambda: driver.current_url.startswith("https://checkout.stripe.com/") or None, what="the gateway's page")
    (paying,) = portal.http.get("/v1/payments", params={"holder_id": "direct"}).json()
    minor = int(Decimal(paying["amount"]) * 100)
    paid = {"id": "pi_portal_1", "amount": minor, "amount_received": minor, "currency": "eur",
            "metadata": {"meterline_payment_id": paying["payment_id"]}}  # fmt: skip
    body, headers = stripe_webhook(WEBHOOK_SECRET, stripe_event("evt_portal_1", "payment_intent.succeeded", paid))
    assert (
        httpx.post(f"{portal.url}/v1/payments/webhooks/acme-stripe", content=body, headers=headers).status_code == 200
    )
    driver.get(invoice_url)
    payment_block = driver.find_element(By.CSS_SELECTOR, "section[aria-label=Payment]").text
    assert "Paid:" in payment_block and "pi_portal_1" in payment_block and "succeeded" in payment_block
    assert not driver.find_elements(By.XPATH, "//button[contains(., 'by card')]"), "a paid invoice asks nothing"
    shot(driver, "invoice-paid")

    driver.get(f"{portal.url}/portal/invoices/2026-10.north.resold")
    assert "Not found" in driver.find_element(By.TAG_NAME, "h1").text
    shot(driver, "another-tenants-invoice")

    driver.set_window_size(390, 844)
    driver.get(f"{portal.url}/portal/customers/direct")
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    shot(driver, "consumption-phone")
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert driver.switch_to.active_element.text == "Skip to content"
    unlabelled = driver.execute_script(
        "return [...document.querySelectorAll('input:not([type=hidden]), select')]"
        ".filter(e => !document.querySelector(`label[for='${e.id}']`)).length"
    )
    assert unlabelled == 0


def test_every_portal_page_about_another_tenant_is_not_found(portal: System):
    """Each page with an id in its path, asked by Direct's session for Resold's (North's) ids:
    404, the same as an id no one has. Read from the routes, so that a new page is walked too."""
    pages = sorted(
        path
        for method, path in route_policies(create_app(Settings()).routes)
        if method == "GET" and path.startswith("/portal/") and "{" in path
    )
    assert len(pages) >= 8
    direct = sign_in(portal, key_for(portal, "customer", "direct")[0])
    others = {"customer_id": "resold", "holder_id": "resold", "invoice_id": "2026-10.north.resold", "line_no": "1"}
    nobodys = {"customer_id": "nobody", "holder_id": "nobody", "invoice_id": "2026-10.acme.nobody", "line_no": "1"}
    others["mac"] = nobodys["mac"] = "0" * 32  # a payment link signed for no invoice
    for page in pages:
        answer, unknown = direct.get(page.format(**others)), direct.get(page.format(**nobodys))
        assert answer.status_code == unknown.status_code == 404, (page, answer.status_code, unknown.status_code)
        assert _anonymised(answer.text, others) == _anonymised(unknown.text, nobodys), "nothing tells them apart"


def _anonymised(page: str, ids: dict[str, str]) -> str:
    for value in sorted(ids.values(), key=len, reverse=True):
        page = page.replace(value, "?")
    return re.sub(r'nonce="[^"]*"', "", page)
