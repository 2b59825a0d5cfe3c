#!/usr/bin/env python3
"""The support console in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven over WebDriver with Selenium, against `serve --console-addr` on a fresh
SQLite database with an invoice sent to the built-in Stripe emulator.

It logs in, searches, opens a customer, changes the seats with the preview and a reason and finds
the change in the history; a viewer's action is refused; a form posted without its CSRF token is
refused; a customer named <script>alert(1)</script> is shown as text (no alert opens); a login is
locked out after repeated failures; logout ends the session. Each main page is checked with
axe-core in the browser (no serious or critical violation) and saved as a screenshot.

Usage: console_browser.py BIN AXE_JS OUT_DIR
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

BIN, AXE, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
PASSWORD = "correct horse battery staple"
os.makedirs(OUT, exist_ok=True)
tmp = tempfile.mkdtemp()
env = dict(os.environ, DATABASE_URL=f"sqlite://{tmp}/console.db", RUST_LOG="warn",
           STRIPE_API_KEY="sk_test_console")
failures = []


def port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cli(*args, now=None, stdin=None, codes=(0,)):
    cmd = [BIN, "--json"] + (["--now", now] if now else []) + list(args)
    r = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True)
    if r.returncode not in codes:
        sys.exit(f"{' '.join(args)}: {r.stderr}")
    return json.loads(r.stdout) if r.stdout.strip() else None


def iso(days_ago):
    t = datetime.now(timezone.utc) - timedelta(days=days_ago)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


# A book: Acme, its plan of 10 licenses that follow the seats, 14 seats since 20 days ago, its
# first renewal invoiced; a customer whose name is a script; staff of each role.
cli("migrate")
emu_port, http_port, console_port = port(), port(), port()
procs = [subprocess.Popen([BIN, "stripe-emulator", "--listen", f"127.0.0.1:{emu_port}"], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
env["STRIPE_API_BASE"] = f"http://127.0.0.1:{emu_port}"
acme = cli("customer", "create", "--name", "Acme Corp", "--email", "billing@acme.test", now=iso(40))["id"]
plan = cli("plan", "create", "--customer", str(acme), "--tier", "cloud_standard", "--schedule",
           "monthly", "--licenses", "10", "--automanage-licenses", now=iso(40))["id"]
cli("plan", "seats", str(plan), "--count", "14", now=iso(20))
cli("customer", "create", "--name", "<script>alert(1)</script>", now=iso(5))
# Short's plan bought 6 licenses but has 9 seats in use: the pass parks it (needs attention).
short = cli("customer", "create", "--name", "Short Ltd", now=iso(40))["id"]
short_plan = cli("plan", "create", "--customer", str(short), "--tier", "cloud_standard",
                 "--schedule", "monthly", "--licenses", "6", now=iso(40))["id"]
cli("customer", "report-usage", str(short), "--seats", "9", now=iso(20))
time.sleep(0.3)
cli("run-once", codes=(0, 3))
for email, role in [("ada@staff.test", "admin"), ("sam@staff.test", "support"),
                    ("vic@staff.test", "viewer"), ("lou@staff.test", "viewer")]:
    cli("console-user", "create", "--email", email, "--role", role, "--password-stdin",
        stdin=PASSWORD + "\n")
invoice = cli("invoices", "list")[0]["id"]

serve_log = open(os.path.join(tmp, "serve.log"), "w")
procs.append(subprocess.Popen(
    [BIN, "serve", "--schedule", "0 0 0 1 1 *", "--http-addr", f"127.0.0.1:{http_port}",
     "--console-addr", f"127.0.0.1:{console_port}"], env=env, stdout=subprocess.DEVNULL,
    stderr=serve_log))
base = f"http://127.0.0.1:{console_port}"
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", console_port), timeout=0.2).close()
        break
    except OSError:
        time.sleep(0.05)

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp}/chrome", "--window-size=1280,1000"]:
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.set_page_load_timeout(30)
axe_source = open(AXE).read()


def page(path):
    driver.get(base + path)


def text():
    return driver.find_element(By.TAG_NAME, "body").text


def audit(name):
    """axe-core on the page as it is, and its screenshot."""
    driver.save_screenshot(os.path.join(OUT, f"{name}.png"))
    driver.execute_script(axe_source)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations))"
        ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));")
    bad = [v for v in result if v.get("impact") in ("serious", "critical")]
    for v in bad:
        print(f"     {v['id']} ({v['impact']}): {v['help']} — {[n.get('target') for n in v['nodes']][:3]}")
    check(not bad, f"axe: no serious or critical violation on {name} ({len(result)} minor)")


def next_page(old):
    """Waits until the page `old` belonged to is gone and the next one has loaded (a node of a
    page being replaced may answer stale, or with an inspector error: both mean gone)."""
    def gone(_):
        try:
            old.is_enabled()
            return False
        except WebDriverException:
            return True
    WebDriverWait(driver, 20).until(gone)
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.readyState") == "complete")


def click(element):
    """Clicks and waits for the next page."""
    old = driver.find_element(By.TAG_NAME, "html")
    element.click()
    next_page(old)


def submit_script(script):
    """Runs a script that submits a form, and waits for the next page."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.execute_script(script)
    next_page(old)


def login(email, password):
    page("/login")
    driver.find_element(By.ID, "email").send_keys(email)
    driver.find_element(By.ID, "password").send_keys(password)
    click(driver.find_element(By.CSS_SELECTOR, "form button[type=submit]"))


def logout():
    page("/")
    click(driver.find_element(By.CSS_SELECTOR, "nav form button"))


try:
    page("/")
    check(driver.current_url.startswith(base + "/login"), "a stranger is sent to the login page")
    audit("login")

    # Log in, search, open the customer.
    login("sam@staff.test", PASSWORD)
    check("sam@staff.test (support)" in text(), "support is logged in")
    box = driver.find_element(By.ID, "q")
    box.send_keys("acme")
    click(driver.find_element(By.CSS_SELECTOR, "form[role=search] button"))
    check("Acme Corp" in text(), "the search finds Acme")
    audit("search")
    click(driver.find_element(By.LINK_TEXT, f"Acme Corp (#{acme})"))
    body = text()
    check("Next invoice" in body and "$112.00" in body, "the customer page shows the next invoice ($112.00 for 14 licenses)")
    check(len(driver.find_elements(By.CSS_SELECTOR, "svg.chart")) == 1, "the licenses chart is drawn")
    audit("customer")

    # Change the seats: the preview, then the confirmation, then the history.
    driver.find_element(By.XPATH, f"//summary[text()='Actions on plan {plan}']").click()
    driver.find_element(By.ID, f"p{plan}-seats-count").send_keys("20")
    driver.find_element(By.ID, f"p{plan}-seats-reason").send_keys("ticket 4411: 6 more seats")
    click(driver.find_element(By.CSS_SELECTOR, f"form[action='/plans/{plan}/seats'] button"))
    body = text()
    check(f"The next invoice of plan {plan} goes from $112.00 to" in body, "the preview shows the money effect")
    audit("preview")
    click(driver.find_element(By.CSS_SELECTOR, "button.danger"))
    body = text()
    check("console:sam@staff.test" in body and "ticket 4411: 6 more seats" in body,
          "the change is in the history with the staff actor and the reason")
    check(cli("plan", "show", str(plan))["licenses"] == 20, "the plan has 20 licenses")

    # A form without its CSRF token is refused.
    submit_script(
        "const f = document.createElement('form'); f.method = 'post';"
        f"f.action = '/plans/{plan}/seats';"
        "for (const [k, v] of [['count', '30'], ['reason', 'forged'], ['confirm', 'yes']]) {"
        "  const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i); }"
        "document.body.appendChild(f); f.submit();")
    check("security token is missing" in text(), "a form without its CSRF token is refused")
    check(cli("plan", "show", str(plan))["licenses"] == 20, "nothing was written")

    # The invoice, line by line.
    page(f"/invoices/{invoice}")
    check("prorated" in text(), "the invoice page explains the proration")
    audit("invoice")
    page("/attention")
    check(f"p{short_plan}-retry-reason" in driver.page_source, "the parked plan has its retry action")
    driver.find_element(By.ID, f"p{short_plan}-retry-reason").send_keys("licenses fixed with the customer")
    click(driver.find_element(By.CSS_SELECTOR, f"form[action='/plans/{short_plan}/retry'] button"))
    check("No field moves" in text() or "needs_attention" in text(), "the retry's preview")
    page("/attention")
    audit("attention")
    page("/revenue")
    check("ARR" in text(), "the revenue page")
    audit("revenue")

    # A script in a customer's name is text.
    page("/?q=script")
    try:
        driver.switch_to.alert
        check(False, "no alert opens")
    except NoAlertPresentException:
        check("<script>alert(1)</script>" in text(), "a customer named <script>alert(1)</script> is shown as text")
    logout()
    check(driver.current_url.startswith(base + "/login"), "logout leads to the login page")
    page(f"/customers/{acme}")
    check(driver.current_url.startswith(base + "/login"), "after logout the session is over")

    # A viewer sees no action, and an action posted anyway is refused.
    login("vic@staff.test", PASSWORD)
    page(f"/customers/{acme}")
    check(not driver.find_elements(By.CSS_SELECTOR, "form.action"), "a viewer sees no action")
    submit_script(
        "const f = document.createElement('form'); f.method = 'post';"
        f"f.action = '/plans/{plan}/seats';"
        "const csrf = document.querySelector('input[name=csrf]').value;"
        "for (const [k, v] of [['csrf', csrf], ['count', '30'], ['reason', 'x'], ['confirm', 'yes']]) {"
        "  const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i); }"
        "document.body.appendChild(f); f.submit();")
    check("this needs the support role" in text(), "a viewer's action is refused")
    check(cli("plan", "show", str(plan))["licenses"] == 20, "nothing was written")
    logout()

    # The admin's staff page.
    login("ada@staff.test", PASSWORD)
    page("/staff")
    check("vic@staff.test" in text(), "the admin sees the staff")
    audit("staff")
    driver.find_element(By.ID, "token-name").send_keys("billing-page")
    Select(driver.find_element(By.ID, "token-scope")).select_by_value("write")
    driver.find_element(By.ID, "token-reason").send_keys("the host application")
    click(driver.find_element(By.CSS_SELECTOR, "form[action='/staff/create-token'] button"))
    check("pit_" in text() and "not shown again" in text(), "an admin creates an API token, shown once")
    check(any(t["name"] == "billing-page" and t["scope"] == "write" for t in cli("api-token", "list")),
          "the token has the scope chosen")
    logout()

    # Five failures lock the account out, even for the right password.
    for _ in range(5):
        login("lou@staff.test", "not the password at all")
    login("lou@staff.test", PASSWORD)
    check("too many failed logins" in text(), "a locked-out login is refused")
    audit("locked-out")
finally:
    driver.quit()
    for p in procs:
        p.terminate()
    serve_log.close()

if failures:
    print(f"{len(failures)} failed; serve's log: {tmp}/serve.log", file=sys.stderr)
    sys.exit(1)
print(f"console in the browser: all passed; screenshots in {OUT}")
