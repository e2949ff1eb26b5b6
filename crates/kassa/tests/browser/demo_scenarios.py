"""The demo storefront in a real browser: Debian's headless Chromium driven by selenium through
Debian's chromedriver (nothing is downloaded). Run by crates/kassa/tests/browser.rs against a
sandbox `kassa serve`; every scenario ends with a screenshot in the artifacts directory.

    demo_scenarios.py KASSA_BASE SECRET_KEY ARTIFACTS_DIR SQLITE_FILE

After every scenario, every order token Kassa issued so far (read from the answers stored on
the idempotency keys in the database) is looked for in each URL the browser requested, in any
`Referer` it sent, in its storage and history (risk S4).
"""

import json
import os
import sqlite3
import sys
import time
import traceback
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

KASSA, SECRET, ARTIFACTS, DATABASE = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
WAIT_SECS = 15


def api(method, url, key, body=None, form=None):
    """Kassa's or the emulator's API with a secret key, outside the browser."""
    data, headers = None, {"Authorization": f"Bearer {key}"}
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


SANDBOX = api("GET", f"{KASSA}/v1/sandbox", SECRET)
STRIPE, STRIPE_SECRET = SANDBOX["stripe_api_base"], SANDBOX["stripe_secret_key"]


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1000,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait_for(driver, condition, what):
    try:
        return WebDriverWait(driver, WAIT_SECS).until(condition)
    except Exception as error:
        raise AssertionError(f"waited {WAIT_SECS}s for {what}; at {driver.current_url}") from error


def click(driver, element_id):
    wait_for(driver, ready.element_to_be_clickable((By.ID, element_id)), f"#{element_id}").click()


def text_is(driver, element_id, expected):
    wait_for(driver, ready.text_to_be_present_in_element((By.ID, element_id), expected),
             f"#{element_id} to say {expected!r}")


def to_hosted_page(driver, sku):
    driver.get(f"{KASSA}/demo/")
    click(driver, f"add-{sku}")
    click(driver, "pay-hosted")
    wait_for(driver, ready.url_contains(f"{STRIPE}/checkout/"), "the hosted page")
    return driver.current_url.rsplit("/", 1)[-1]


def pay_on_hosted_page(driver, method):
    click(driver, method)
    click(driver, "pay")


def order_of_session(session_id):
    session = api("GET", f"{STRIPE}/v1/checkout/sessions/{session_id}", STRIPE_SECRET)
    return api("GET", f"{KASSA}/v1/orders/{session['client_reference_id']}", SECRET)


def hosted_paid(driver):
    to_hosted_page(driver, "MUG")
    pay_on_hosted_page(driver, "pm_card_visa")
    wait_for(driver, ready.url_contains(f"{KASSA}/demo/return?session_id=cs_"), "the return page")
    text_is(driver, "order-status", "paid")


def hosted_declined_then_paid(driver):
    to_hosted_page(driver, "TEE-M")
    pay_on_hosted_page(driver, "pm_card_chargeDeclined")
    text_is(driver, "error", "declined")
    pay_on_hosted_page(driver, "pm_card_visa")
    text_is(driver, "order-status", "paid")


def hosted_three_d_secure(driver):
    to_hosted_page(driver, "TEE-L")
    pay_on_hosted_page(driver, "pm_card_authenticationRequired")
    click(driver, "authenticate-succeed")
    text_is(driver, "order-status", "paid")


def hosted_cancel_and_return(driver):
    session_id = to_hosted_page(driver, "STICKERS")
    click(driver, "cancel")
    wait_for(driver, ready.url_to_be(f"{KASSA}/demo/"), "the shop again")
    wait_for(driver, ready.presence_of_element_located((By.ID, "add-MUG")), "the catalog")
    assert order_of_session(session_id)["status"] == "pending_payment"


def expired_session_releases_stock(driver):
    before = api("GET", f"{KASSA}/v1/inventory/STICKERS", SECRET)["locations"][0]
    session_id = to_hosted_page(driver, "STICKERS")
    held = api("GET", f"{KASSA}/v1/inventory/STICKERS", SECRET)["locations"][0]
    assert held["reserved"] == before["reserved"] + 1, (before, held)
    api("POST", f"{STRIPE}/v1/checkout/sessions/{session_id}/expire", STRIPE_SECRET, form={})
    driver.refresh()
    text_is(driver, "message", "expired")
    deadline = time.time() + WAIT_SECS
    while order_of_session(session_id)["status"] != "canceled":
        assert time.time() < deadline, "the order was not canceled"
        time.sleep(0.2)
    after = api("GET", f"{KASSA}/v1/inventory/STICKERS", SECRET)["locations"][0]
    assert after["reserved"] == before["reserved"], (before, after)
    assert after["available"] == before["available"], (before, after)


def embedded_with_three_d_secure(driver):
    driver.get(f"{KASSA}/demo/")
    click(driver, "add-TEE-S")
    click(driver, "pay-embedded")
    wait_for(driver, ready.visibility_of_element_located((By.ID, "card")), "the card form")
    driver.find_element(By.CSS_SELECTOR, "#card option[value=pm_card_authenticationRequired]").click()
    click(driver, "confirm")
    click(driver, "3ds-succeed")
    text_is(driver, "order-status", "paid")


def issued_tokens():
    """Every order token in an answer Kassa stored for a checkout of either flow."""
    with sqlite3.connect(f"file:{DATABASE}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT response_body FROM idempotency_keys WHERE response_body LIKE '%order_token%'"
        ).fetchall()
    return [json.loads(body)["order_token"] for (body,) in rows]


def assert_no_token_leaked(driver):
    """No issued token in a requested URL, no Referer at all, none in storage or history."""
    tokens = issued_tokens()
    assert tokens, "no checkout answer was stored"
    requests = [
        message["params"]["request"]
        for message in (json.loads(entry["message"])["message"]
                        for entry in driver.get_log("performance"))
        if message["method"] == "Network.requestWillBeSent"
    ]
    assert requests, "no request was seen"
    stored = driver.execute_script(
        "return JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)]);")
    here = driver.execute_script("return window.location.href + ' ' + document.referrer;")
    for request in requests:
        referer = {k.lower(): v for k, v in request.get("headers", {}).items()}.get("referer")
        assert not referer, f"a Referer was sent: {referer} ({request['url']})"
    for token in tokens:
        for request in requests:
            assert token not in request["url"], f"the token is in {request['url']}"
        assert token not in stored, "the token is in browser storage"
        assert token not in here, f"the token is in {here}"


SCENARIOS = [
    hosted_paid,
    hosted_declined_then_paid,
    hosted_three_d_secure,
    hosted_cancel_and_return,
    expired_session_releases_stock,
    embedded_with_three_d_secure,
]


def main():
    os.makedirs(ARTIFACTS, exist_ok=True)
    failed = []
    for scenario in SCENARIOS:
        driver = browser()
        try:
            scenario(driver)
            assert_no_token_leaked(driver)
            print(f"ok     {scenario.__name__}")
        except Exception:
            failed.append(scenario.__name__)
            print(f"FAILED {scenario.__name__}\n{traceback.format_exc()}")
        finally:
            try:
                driver.save_screenshot(os.path.join(ARTIFACTS, f"{scenario.__name__}.png"))
            finally:
                driver.quit()
    if failed:
        sys.exit(f"{len(failed)} of {len(SCENARIOS)} scenarios failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
