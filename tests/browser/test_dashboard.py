"""Browser tests of the dashboard: the real `credledger serve` on a loopback port with a fresh
data directory, driven by a real headless Chromium through Playwright.

Run with tests/browser/run.sh. Screenshots of every page at 1280 and 390 px wide go to
$SCREENSHOTS (target/screenshots by default), outside git.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

from playwright.sync_api import sync_playwright

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("CREDLEDGER_BIN", os.path.join(ROOT, "target", "debug", "credledger"))
SHOTS = os.environ.get("SCREENSHOTS", os.path.join(ROOT, "target", "screenshots"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync", "--disable-quic",
]
TIMEOUT_MS = 15_000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, token=None, body=None, form=None, basic=None, user_agent="browser-test/1"):
    """One HTTP call; returns (status, parsed JSON or text)."""
    headers = {"User-Agent": user_agent}
    data = None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    if form is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


class Server:
    """The real server; stopped by its pid."""

    def __init__(self):
        self.data = tempfile.mkdtemp(prefix="credledger-browser-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        admin_file = os.path.join(self.data, "admin-token")
        self.log = open(os.path.join(self.data, "server.log"), "w")
        self.process = subprocess.Popen(
            [BINARY, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", os.path.join(self.data, "data"),
             "--admin-token-file", admin_file],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if http("GET", self.base + "/readyz")[0] == 200 and os.path.exists(admin_file):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError("the server did not become ready")
        with open(admin_file) as f:
            self.admin = f.read().strip()

    def stop(self):
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()
        if self.process.returncode == 0:
            shutil.rmtree(self.data, ignore_errors=True)
        else:
            print(f"the server exited with {self.process.returncode}; its data and log stay in {self.data}")


def navigate(page, control):
    """Clicks a link or a form's button and waits for the page it leads to."""
    with page.expect_navigation():
        control.click()


def back(page):
    """Goes back and returns what the page then shows. Going back to the answer of a post, Chromium
    either posts the form again or shows an error page; either way, it may still be navigating."""
    try:
        page.go_back()
    except Exception:
        pass
    for _ in range(50):
        try:
            page.wait_for_load_state("load")
            return page.content()
        except Exception:
            time.sleep(0.1)
    raise AssertionError("the page never settled after going back")


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


class Suite:
    def __init__(self, server, browser):
        self.server = server
        self.browser = browser
        self.base = server.base
        status, org = http("POST", self.base + "/v1/orgs", server.admin,
                           {"name": "acme", "ownerEmail": "ops@acme.example"})
        expect(status == 201, f"creating the organization: {status} {org}")
        self.org = org["id"]
        self.pat = org["ownerToken"]
        status, token = http("POST", f"{self.base}/v1/machine-tokens/{self.org}", self.pat,
                             {"name": "deploy-prod", "environmentHint": "prod", "expiresInDays": 90,
                              "conditions": {"ipAllowlist": ["127.0.0.0/8", "::1/128"]}})
        expect(status == 201, f"creating a machine token: {status} {token}")
        self.machine_token = token
        status, project = http("POST", f"{self.base}/v1/projects/{self.org}", self.pat,
                               {"name": "web", "environments": ["production", "staging"]})
        expect(status == 201, f"creating a project: {status} {project}")
        env = dict(os.environ, CREDLEDGER_TOKEN=self.pat, CREDLEDGER_URL=self.base,
                   CREDLEDGER_CONFIG_DIR=os.path.join(server.data, "config"))
        made = subprocess.run([BINARY, "machine", "create", "deploy-web", "--project", "web", "--env", "production"],
                              env=env, capture_output=True, text=True, timeout=30)
        expect(made.returncode == 0, f"credledger machine create: {made.returncode} {made.stderr}")
        # Some use, so that the token's chart and last use have something to show.
        http("GET", f"{self.base}/v1/machine-tokens/{self.org}", token["token"], user_agent="deploy-script/2.1")
        self.context = self.new_context()
        self.page = self.context.new_page()
        self.page.on("dialog", lambda dialog: dialog.accept())
        # A style or script the Content-Security-Policy blocks shows as a console error.
        self.console_errors = []
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        self.page.on("pageerror", lambda error: self.console_errors.append(str(error)))
        os.makedirs(SHOTS, exist_ok=True)

    def new_context(self):
        context = self.browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        return context

    def shot(self, name, page=None):
        page = page or self.page
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            page.screenshot(path=os.path.join(SHOTS, f"{name}-{width}.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})

    def sign_in(self, page, token):
        page.goto(self.base + "/")
        page.get_by_label("Personal access token").fill(token)
        navigate(page, page.get_by_role("button", name="Sign in"))
        page.wait_for_url("**/machine-tokens")

    # --- the tests, in the order they run -------------------------------------------------------

    def test_a_signed_out_visit_is_sent_to_sign_in(self):
        for path in ("/", "/settings/cli-tokens", "/machine-tokens", "/incident"):
            self.page.goto(self.base + path)
            expect(self.page.url == self.base + "/sign-in", f"{path} went to {self.page.url}")
        expect(self.page.get_by_label("Personal access token").is_visible(), "no token field")
        expect(self.page.get_by_role("button", name="Sign in").is_visible(), "no Sign in button")
        self.shot("sign-in")

    def test_a_machine_credential_cannot_sign_in(self):
        self.page.goto(self.base + "/sign-in")
        self.page.get_by_label("Personal access token").fill(self.machine_token["token"])
        navigate(self.page, self.page.get_by_role("button", name="Sign in"))
        expect("Machine credentials cannot sign in" in self.page.content(), "a machine token was not refused")
        expect(self.page.url.endswith("/sign-in"), "a machine token signed in")

    def test_sign_in_by_token_sets_a_strict_http_only_cookie(self):
        response = self.page.goto(self.base + "/sign-in")
        csp = response.headers.get("content-security-policy", "")
        expect("default-src 'none'" in csp and "frame-ancestors 'none'" in csp, f"CSP: {csp!r}")
        self.sign_in(self.page, self.pat)
        expect("ops@acme.example" in self.page.content(), "the member is not shown")
        cookies = {c["name"]: c for c in self.context.cookies()}
        session = cookies.get("credledger_session")
        expect(session is not None, f"no session cookie: {list(cookies)}")
        expect(session["httpOnly"] is True, "the session cookie is not HttpOnly")
        expect(session["sameSite"] == "Strict", f"SameSite is {session['sameSite']}")
        expect(session["expires"] > time.time() + 3600, "the session cookie does not expire later")
        expect(session["expires"] < time.time() + 13 * 3600, "the session cookie lives longer than 12 h")
        # The sign-in is in the ledger, as a use of the PAT.
        status, trail = http("GET", f"{self.base}/v1/audit/{self.org}?type=CredentialUsed", self.pat)
        expect(status == 200, f"audit: {status}")
        expect(any("/sign-in" in json.dumps(item) for item in trail["items"]), "the sign-in is not in the trail")

    def test_a_post_without_the_csrf_token_is_forbidden(self):
        request = self.page.request
        for form in ({}, {"csrf": "0" * 64}):
            reply = request.post(self.base + "/sign-out", form=form, max_redirects=0)
            expect(reply.status == 403, f"sign-out with {form}: {reply.status}")
            reply = request.post(self.base + "/settings/cli-tokens", form={**form, "name": "x", "form": "f1"},
                                 max_redirects=0)
            expect(reply.status == 403, f"create with {form}: {reply.status}")
        reply = request.post(self.base + "/sign-in", form={"token": self.pat}, max_redirects=0)
        expect(reply.status == 403, f"sign-in without csrf: {reply.status}")
        self.page.goto(self.base + "/machine-tokens")
        expect(self.page.url.endswith("/machine-tokens"), "the refused posts ended the session")

    def test_machine_tokens_list_and_filters(self):
        self.page.goto(self.base + "/machine-tokens")
        expect(self.page.get_by_role("link", name="deploy-prod").is_visible(), "the token is not listed")
        self.shot("machine-tokens")
        self.page.get_by_label("State").select_option("revoked")
        navigate(self.page, self.page.get_by_role("button", name="Filter"))
        expect("state=revoked" in self.page.url, f"filter url {self.page.url}")
        expect("No machine tokens match" in self.page.content(), "the revoked filter kept an active token")
        self.page.goto(self.base + "/machine-tokens?environmentHint=prod&unusedFor=30d")
        expect(self.page.get_by_role("link", name="deploy-prod").count() == 0, "a used token counted as unused")
        self.page.goto(self.base + "/machine-tokens?environmentHint=prod")
        expect(self.page.get_by_role("link", name="deploy-prod").count() == 1, "the environment filter lost it")

    def test_creating_a_cli_token_shows_its_secret_once(self):
        self.page.goto(self.base + "/settings/cli-tokens")
        self.shot("cli-tokens-empty")
        navigate(self.page, self.page.get_by_role("link", name="New CLI token"))
        self.page.get_by_label("Name").fill("release-pipeline")
        # No scope: the API refuses it, and the form comes back with the reason and the name kept.
        self.page.get_by_label("credledger-api/read").uncheck()
        navigate(self.page, self.page.get_by_role("button", name="Create CLI token"))
        expect(self.page.locator("p.error").count() == 1, "no error for a token without scopes")
        expect(self.page.get_by_label("Name").input_value() == "release-pipeline", "the name was lost")
        self.page.get_by_label("credledger-api/read").check()
        self.page.get_by_label("credledger-api/write").check()
        self.shot("cli-token-new")
        navigate(self.page, self.page.get_by_role("button", name="Create CLI token"))
        expect("shown once" in self.page.content(), "the words 'shown once' are missing")
        secret = self.page.locator("#client-secret").input_value()
        client_id = self.page.locator("#client-id").input_value()
        expect(secret.startswith("cl_cs_"), f"secret {secret[:8]}")
        expect(client_id.startswith("cl_ci_"), f"client id {client_id[:8]}")
        expect(self.page.get_by_role("button", name="Copy").count() == 2, "no copy buttons")
        self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=self.base)
        self.page.get_by_role("button", name="Copy").nth(1).click()
        self.page.get_by_role("button", name="Copied").wait_for()
        expect(self.page.evaluate("navigator.clipboard.readText()") == secret, "Copy did not copy the secret")
        self.shot("cli-token-created")
        self.secret, self.client_id = secret, client_id
        # A reload posts the form again: it is answered once, and the secret never shows again.
        self.page.reload()
        expect(secret not in self.page.content(), "a reload showed the secret again")
        expect("already submitted" in self.page.content(), "a reload did not say the form was answered")
        self.page.goto(self.base + "/settings/cli-tokens")
        expect(secret not in back(self.page), "going back showed the secret again")
        self.page.goto(self.base + "/settings/cli-tokens")
        expect(secret not in self.page.content(), "the list shows the secret")
        row = self.page.locator(f"tr[data-client-id='{client_id}']")
        expect(row.count() == 1, "the new CLI token is not listed")
        expect("Never" in row.locator("td.last-used").inner_text(), "Last used is not 'Never'")
        expect("credledger-api/write" in row.inner_text(), "the scopes are not listed")

    def test_using_the_cli_token_changes_last_used(self):
        status, grant = http("POST", self.base + "/oauth2/token", basic=(self.client_id, self.secret),
                             form={"grant_type": "client_credentials"}, user_agent="release-bot/3.0")
        expect(status == 200 and "access_token" in grant, f"client_credentials: {status} {grant}")
        self.page.goto(self.base + "/settings/cli-tokens")
        last_used = self.page.locator(f"tr[data-client-id='{self.client_id}'] td.last-used").inner_text()
        expect("Never" not in last_used, f"Last used did not change: {last_used!r}")
        expect("just now" in last_used and "release-bot/3.0" in last_used and "127.0.0.1" in last_used,
               f"Last used: {last_used!r}")
        self.shot("cli-tokens")

    def test_revoking_the_cli_token_from_the_page_stops_its_grants(self):
        self.page.goto(self.base + "/settings/cli-tokens")
        row = self.page.locator(f"tr[data-client-id='{self.client_id}']")
        navigate(self.page, row.get_by_role("button", name="Revoke release-pipeline"))
        self.page.wait_for_url("**/settings/cli-tokens")
        row = self.page.locator(f"tr[data-client-id='{self.client_id}']")
        expect("revoked" in row.inner_text(), "the row does not say revoked")
        status, grant = http("POST", self.base + "/oauth2/token", basic=(self.client_id, self.secret),
                             form={"grant_type": "client_credentials"})
        expect(status in (400, 401), f"a revoked client still got a token: {status} {grant}")

    def test_rolling_a_machine_token_shows_the_new_value_once(self):
        old = self.machine_token["token"]
        self.page.goto(self.base + "/machine-tokens")
        navigate(self.page, self.page.get_by_role("link", name="deploy-prod"))
        expect("Uses and denials" in self.page.content(), "no chart")
        expect(self.page.locator("figure.chart svg rect").count() > 0, "the chart has no bars")
        expect("deploy-script/2.1" in self.page.content(), "the last use is not shown")
        expect("127.0.0.0/8" in self.page.locator("dl.facts").inner_text(), "the IP allowlist is not shown")
        self.shot("machine-token")
        token_url = self.page.url
        navigate(self.page, self.page.get_by_role("button", name="Roll"))
        expect("shown once" in self.page.content(), "the roll page does not say 'shown once'")
        new = self.page.locator("#token-value").input_value()
        expect(new.startswith("cl_mt_prod_") and new != old, "no new value")
        self.shot("machine-token-rolled")
        self.page.reload()
        expect(new not in self.page.content(), "a reload showed the new value again")
        self.page.goto(token_url)
        expect(new not in back(self.page), "going back showed the new value again")
        expect(http("GET", f"{self.base}/v1/machine-tokens/{self.org}", old)[0] == 401, "the old value still works")
        expect(http("GET", f"{self.base}/v1/machine-tokens/{self.org}", new)[0] == 200, "the new value fails")
        self.rolled = new

    def test_disabling_enabling_and_transferring_a_machine_token(self):
        status, added = http("POST", f"{self.base}/v1/orgs/{self.org}/members", self.pat,
                             {"email": "dev@acme.example", "role": "member"})
        expect(status == 201, f"adding a member: {status} {added}")
        self.page.goto(self.base + "/machine-tokens")
        navigate(self.page, self.page.get_by_role("link", name="deploy-prod"))
        navigate(self.page, self.page.get_by_role("button", name="Disable"))
        expect("disabled" in self.page.locator("dl.facts").inner_text(), "not disabled")
        expect(http("GET", f"{self.base}/v1/machine-tokens/{self.org}", self.rolled)[0] == 401, "a disabled token works")
        navigate(self.page, self.page.get_by_role("button", name="Enable"))
        expect("active" in self.page.locator("dl.facts").inner_text(), "not enabled again")
        expect(http("GET", f"{self.base}/v1/machine-tokens/{self.org}", self.rolled)[0] == 200, "an enabled token fails")
        self.page.get_by_label("Transfer to").fill("dev@acme.example")
        navigate(self.page, self.page.get_by_role("button", name="Transfer"))
        expect("dev@acme.example" in self.page.locator("dl.facts").inner_text(), "not transferred")
        navigate(self.page, self.page.get_by_role("link", name="All its events in the audit trail"))
        content = self.page.content()
        expect("MachineTokenTransferred" in content and "MachineTokenDisabled" in content, "its trail")
        expect("ServiceCredentialCreated" not in content, "the trail of one token shows other credentials")

    def test_the_incident_page_finds_a_token_by_value_and_by_hash(self):
        self.page.goto(self.base + "/incident")
        self.page.get_by_label("Token or its SHA-256").fill(self.rolled)
        navigate(self.page, self.page.get_by_role("button", name="Trace"))
        content = self.page.content()
        expect("Credential found" in content and "deploy-prod" in content, "the token was not traced")
        expect("the current value" in content, "the match is not named")
        expect("CredentialUsed" in content, "the timeline lacks the uses")
        self.shot("incident")
        self.page.get_by_label("Token or its SHA-256").fill(hashlib.sha256(self.machine_token["token"].encode()).hexdigest())
        navigate(self.page, self.page.get_by_role("button", name="Trace"))
        content = self.page.content()
        expect("deploy-prod" in content and "replaced" in content, "the old value's hash was not traced")
        navigate(self.page, self.page.get_by_role("button", name="Revoke"))
        self.page.wait_for_url("**/machine-tokens/*")
        expect("Revoked: nothing more can be done" in self.page.content(), "the incident revoke did not revoke")
        expect(http("GET", f"{self.base}/v1/machine-tokens/{self.org}", self.rolled)[0] == 401, "still works")

    def test_the_audit_page_lists_and_filters_the_trail(self):
        self.page.goto(self.base + "/audit")
        content = self.page.content()
        expect("MachineTokenRevoked" in content and "ServiceCredentialCreated" in content, "events missing")
        self.shot("audit")
        self.page.get_by_label("Outcome").select_option("denied")
        navigate(self.page, self.page.get_by_role("button", name="Filter"))
        expect("outcome=denied" in self.page.url, "the outcome filter is not in the url")
        expect("ServiceCredentialCreated" not in self.page.content(), "the outcome filter did nothing")

    def test_the_machines_members_projects_and_ledger_pages(self):
        self.page.goto(self.base + "/machines")
        expect("deploy-web" in self.page.content(), "the machine is not listed")
        self.shot("machines")
        navigate(self.page, self.page.get_by_role("link", name="deploy-web"))
        content = self.page.content()
        expect("credledger machine rotate-key" in content and "Public key" in content, "the machine's page")
        self.shot("machine")
        self.page.goto(self.base + "/machines")
        navigate(self.page, self.page.get_by_role("button", name="Revoke deploy-web"))
        self.page.wait_for_url("**/machines")
        expect("revoked" in self.page.locator("tbody tr").first.inner_text(), "the machine was not revoked")
        self.page.goto(self.base + "/members")
        expect("ops@acme.example" in self.page.content() and "owner" in self.page.content(), "members")
        self.shot("members")
        self.page.goto(self.base + "/projects")
        content = self.page.content()
        expect("web" in content and "production" in content and "staging" in content, "projects")
        self.shot("projects")
        deadline = time.time() + 5
        while True:  # the first checkpoint is signed within a second of the first events
            self.page.goto(self.base + "/ledger")
            if "Tree size" in self.page.content() or time.time() > deadline:
                break
            time.sleep(0.3)
        content = self.page.content()
        expect("Tree size" in content and "Verifier key" in content and "audit verify" in content, "ledger")
        expect("+" in self.page.locator("pre.note").nth(1).inner_text(), "no verifier key")
        self.shot("ledger")

    def test_an_environments_secrets_show_values_only_behind_a_recorded_reveal(self):
        status, _ = http("PUT", f"{self.base}/v1/secrets/{self.org}/web/production", self.pat,
                         {"secrets": {"DEPLOY_KEY": "browser-s3cret", "API_URL": "https://api.example"},
                          "message": "first values"})
        expect(status == 200, f"setting secrets: {status}")
        self.page.goto(self.base + "/projects")
        navigate(self.page, self.page.get_by_role("link", name="Secrets of web production"))
        content = self.page.content()
        expect("DEPLOY_KEY" in content and "first values" in content, "the versions are listed")
        expect("browser-s3cret" not in content, "a value shows before the reveal")
        self.shot("secrets")
        navigate(self.page, self.page.get_by_role("button", name="Reveal values"))
        expect("browser-s3cret" in self.page.content(), "the reveal shows the values")
        self.shot("secrets-revealed")
        status, reads = http("GET", f"{self.base}/v1/secrets/{self.org}/web/production/reads", self.pat)
        expect(status == 200 and len(reads["items"]) >= 1, f"the reveal is a recorded read: {reads}")

    def test_a_one_time_link_signs_in_once(self):
        env = dict(os.environ, CREDLEDGER_TOKEN=self.pat, CREDLEDGER_URL=self.base)
        env.pop("DISPLAY", None)
        env.pop("WAYLAND_DISPLAY", None)
        out = subprocess.run([BINARY, "dashboard"], env=env, capture_output=True, text=True, timeout=30)
        expect(out.returncode == 0, f"credledger dashboard: {out.returncode} {out.stderr}")
        match = re.search(r"(http://\S+/sign-in/link/[0-9a-f]{64})", out.stdout)
        expect(match is not None, f"no link in {out.stdout!r}")
        link = match.group(1)
        first = self.new_context()
        page = first.new_page()
        page.goto(link)
        expect("Sign in to the dashboard as ops@acme.example" in page.inner_text("main"), "the link page does not ask")
        self.shot("sign-in-link", page)
        navigate(page, page.get_by_role("button", name="Sign in"))
        expect(page.url.endswith("/machine-tokens"), f"the link did not sign in: {page.url}")
        first.close()
        second = self.new_context()
        page = second.new_page()
        response = page.goto(link)
        expect(response.status == 410, f"a used link answered {response.status}")
        expect("already used or has expired" in page.content(), "the reused link was not refused")
        page.goto(self.base + "/machine-tokens")
        expect(page.url.endswith("/sign-in"), "a reused link signed in")
        second.close()

    def test_revoking_the_pat_ends_its_sessions(self):
        members = http("GET", f"{self.base}/v1/orgs/{self.org}/members", self.pat)[1]
        member = next(m["id"] for m in members["items"] if m["email"] == "ops@acme.example")
        status, created = http("POST", f"{self.base}/v1/orgs/{self.org}/members/{member}/tokens", self.pat,
                               {"name": "laptop"})
        expect(status == 201, f"creating a PAT: {status} {created}")
        context = self.new_context()
        page = context.new_page()
        self.sign_in(page, created["token"])
        status = http("DELETE", f"{self.base}/v1/orgs/{self.org}/members/{member}/tokens/{created['id']}",
                      self.pat)[0]
        expect(status == 200, f"revoking the PAT: {status}")
        page.goto(self.base + "/machine-tokens")
        expect(page.url.endswith("/sign-in"), "a revoked PAT's session still works")
        context.close()

    def test_the_keyboard_reaches_the_content_and_every_control_has_a_label(self):
        for path in ("/machine-tokens", "/settings/cli-tokens", "/settings/cli-tokens/new", "/audit", "/incident"):
            self.page.goto(self.base + path)
            self.page.keyboard.press("Tab")
            focused = self.page.evaluate("document.activeElement.textContent")
            expect(focused == "Skip to content", f"{path}: the first Tab lands on {focused!r}")
            unlabelled = self.page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select')]
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.name)""")
            expect(not unlabelled, f"{path}: controls without a label: {unlabelled}")

    def test_no_page_broke_its_content_security_policy_or_its_script(self):
        # Going back to a post's answer may log a cache miss; nothing else may be logged.
        errors = [e for e in self.console_errors if "ERR_CACHE_MISS" not in e and "status of 4" not in e]
        expect(not errors, f"console errors: {errors}")
        print(f"        ({len(self.console_errors)} console errors seen, {len(errors)} unexpected)")

    def test_sign_out_ends_the_session(self):
        self.page.goto(self.base + "/machine-tokens")
        navigate(self.page, self.page.get_by_role("button", name="Sign out"))
        self.page.wait_for_url("**/sign-in")
        self.page.goto(self.base + "/settings/cli-tokens")
        expect(self.page.url.endswith("/sign-in"), "signed out, yet the page opened")


def main():
    started = time.time()
    server = Server()
    passed, failed = 0, 0
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                suite = Suite(server, browser)
                tests = sorted((name for name in dir(Suite) if name.startswith("test_")),
                               key=lambda name: Suite.__dict__[name].__code__.co_firstlineno)
                for name in tests:
                    try:
                        getattr(suite, name)()
                        passed += 1
                        print(f"ok      {name}")
                    except Exception:
                        failed += 1
                        print(f"FAILED  {name}")
                        traceback.print_exc()
                    sys.stdout.flush()
            finally:
                browser.close()
    finally:
        server.stop()
    print(f"screenshots in {SHOTS}; {time.time() - started:.1f} s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
