//! End-to-end tests of the dashboard's server-side rules against the real binary: the session
//! cookie's flags, CSRF, the security headers, one-time sign-in links (once, within a minute,
//! members' PATs only) and the sessions a revoked PAT leaves behind. The pages themselves are
//! driven in a real browser by tests/browser/.

mod support;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;
use support::Server;

fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// The `Set-Cookie` headers of a response that set `name`.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().and_then(|pair| pair.split_once('=')).map(|(_, v)| v.to_owned()).unwrap_or_default()
}

/// The CSRF value of the first form of a page.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
    html[at..at + 64].to_owned()
}

/// Signs in with a PAT through the sign-in form; returns the session cookie's `Set-Cookie`.
async fn sign_in(server: &Server, pat: &str) -> String {
    let http = browser();
    let form = http.get(server.url("/sign-in")).send().await.expect("sign-in page");
    let pre = cookie_value(&set_cookie(&form, "credledger_sign_in").expect("a sign-in cookie"));
    let csrf = csrf_of(&form.text().await.expect("page"));
    assert_eq!(pre, csrf, "the form's CSRF value is the cookie's (double submit)");
    let reply = http
        .post(server.url("/sign-in"))
        .header(COOKIE, format!("credledger_sign_in={pre}"))
        .form(&[("csrf", csrf.as_str()), ("token", pat)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(reply.status(), StatusCode::SEE_OTHER);
    set_cookie(&reply, "credledger_session").expect("a session cookie")
}

/// Opens a sign-in link: the page, and the CSRF value its form and cookie carry.
async fn open_link(url: &str) -> (String, String) {
    let reply = browser().get(url).send().await.expect("link");
    assert_eq!(reply.status(), StatusCode::OK);
    let cookie = cookie_value(&set_cookie(&reply, "credledger_sign_in").expect("a sign-in cookie"));
    let page = reply.text().await.expect("page");
    assert_eq!(csrf_of(&page), cookie);
    (page, cookie)
}

/// Presses the link page's Sign in button.
async fn use_link(url: &str, csrf: &str) -> reqwest::Response {
    browser()
        .post(url)
        .header(COOKIE, format!("credledger_sign_in={csrf}"))
        .form(&[("csrf", csrf)])
        .send()
        .await
        .expect("post")
}

async fn get_page(server: &Server, path: &str, session: &str) -> reqwest::Response {
    browser().get(server.url(path)).header(COOKIE, format!("credledger_session={session}")).send().await.expect("page")
}

#[tokio::test]
async fn the_session_cookie_is_http_only_strict_and_expiring_and_secure_behind_tls() {
    let server = Server::start().expect("server");
    let (_, _, pat) = server.admin().create_org("acme", "ops@acme.example").await;
    let cookie = sign_in(&server, &pat).await;
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Max-Age=43200"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP cannot carry a Secure cookie: {cookie}");

    let tls = Server::start_with(&["--public-url", "https://ledger.example"]).expect("server");
    let (_, _, pat) = tls.admin().create_org("acme", "ops@acme.example").await;
    let cookie = sign_in(&tls, &pat).await;
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_is_forbidden() {
    let server = Server::start().expect("server");
    let (org, _, pat) = server.admin().create_org("acme", "ops@acme.example").await;
    let session = cookie_value(&sign_in(&server, &pat).await);
    let page = get_page(&server, "/settings/cli-tokens/new", &session).await;
    let csrf = csrf_of(&page.text().await.expect("page"));
    let post = |fields: Vec<(&'static str, String)>| {
        browser()
            .post(server.url("/settings/cli-tokens"))
            .header(COOKIE, format!("credledger_session={session}"))
            .form(&fields)
            .send()
    };
    let name = || ("name", "deploy".to_owned());
    let form = |id: &str| ("form", id.to_owned());
    assert_eq!(post(vec![name(), form("a")]).await.expect("post").status(), StatusCode::FORBIDDEN);
    assert_eq!(
        post(vec![name(), form("b"), ("csrf", "0".repeat(64))]).await.expect("post").status(),
        StatusCode::FORBIDDEN
    );
    let listed = server.client(&pat).get(&format!("/v1/service-credentials/{org}")).await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(0), "a refused form created nothing");

    let created = post(vec![name(), form("c"), ("csrf", csrf.clone()), ("scope", "credledger-api/read".to_owned())])
        .await
        .expect("post");
    assert_eq!(created.status(), StatusCode::OK);
    assert!(created.headers()["cache-control"].to_str().unwrap().contains("no-store"));
    let body = created.text().await.expect("page");
    assert!(body.contains("shown once") && body.contains("cl_cs_"), "{body}");
    // The same form again shows nothing and creates nothing.
    let again = post(vec![name(), form("c"), ("csrf", csrf)]).await.expect("post");
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert!(!again.text().await.expect("page").contains("cl_cs_"));
    let listed = server.client(&pat).get(&format!("/v1/service-credentials/{org}")).await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));

    // Without a session there is no token to match: 403 too, not a sign-in.
    let anonymous = browser().post(server.url("/sign-out")).form(&[("csrf", "x")]).send().await.expect("post");
    assert_eq!(anonymous.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_dashboard_answer_carries_the_security_headers() {
    let server = Server::start().expect("server");
    for path in ["/", "/sign-in", "/machine-tokens", "/assets/dashboard.css"] {
        let reply = browser().get(server.url(path)).send().await.expect("page");
        let csp = reply.headers().get("content-security-policy").map(|v| v.to_str().unwrap().to_owned());
        assert!(csp.as_deref().is_some_and(|csp| csp.contains("default-src 'none'")), "{path}: {csp:?}");
        assert_eq!(reply.headers()["x-frame-options"], "DENY", "{path}");
        assert_eq!(reply.headers()["x-content-type-options"], "nosniff", "{path}");
    }
    let reply = browser().get(server.url("/machine-tokens")).send().await.expect("page");
    assert_eq!(reply.status(), StatusCode::SEE_OTHER);
    assert_eq!(reply.headers()[LOCATION], "/sign-in");
}

#[tokio::test]
async fn a_sign_in_link_works_once_within_a_minute_and_only_for_a_members_pat() {
    let server = Server::start().expect("server");
    let (org, _, pat) = server.admin().create_org("acme", "ops@acme.example").await;
    let owner = server.client(&pat);
    let link = owner.post_empty("/v1/dashboard/sign-in-links").await;
    assert_eq!(link.status, 201, "{link:?}");
    let url = link.body["url"].as_str().expect("url").to_owned();
    assert!(url.starts_with(&server.url("/sign-in/link/")), "{url}");

    // Opening the link asks (naming the member) and spends nothing; the button's post signs in.
    let (first, csrf) = open_link(&url).await;
    assert!(first.contains("ops@acme.example"), "{first}");
    let (_, csrf_again) = open_link(&url).await;
    let used = use_link(&url, &csrf).await;
    assert_eq!(used.status(), StatusCode::SEE_OTHER);
    let session = cookie_value(&set_cookie(&used, "credledger_session").expect("a session"));
    assert_eq!(get_page(&server, "/machine-tokens", &session).await.status(), StatusCode::OK);
    let second = use_link(&url, &csrf_again).await;
    assert_eq!(second.status(), StatusCode::GONE);
    assert!(set_cookie(&second, "credledger_session").is_none());
    assert_eq!(browser().get(&url).send().await.expect("link").status(), StatusCode::GONE);
    // Without the form's CSRF value, the link is not used up either.
    let fresh = owner.post_empty("/v1/dashboard/sign-in-links").await.body["url"].as_str().expect("url").to_owned();
    let refused = browser().post(&fresh).form(&[("csrf", "x")]).send().await.expect("post");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(browser().get(&fresh).send().await.expect("link").status(), StatusCode::OK);

    let late = owner.post_empty("/v1/dashboard/sign-in-links").await.body["url"].as_str().expect("url").to_owned();
    let (_, csrf) = open_link(&late).await;
    server.shift_clock(61);
    assert_eq!(use_link(&late, &csrf).await.status(), StatusCode::GONE);
    server.shift_clock(0);

    // The sign-in is in the ledger as a use of the PAT.
    let trail = owner.get(&format!("/v1/audit/{org}?type=CredentialUsed")).await;
    assert!(trail.body.to_string().contains("/sign-in/link"), "{}", trail.body);

    let (_, machine_token) = owner.create_token(&org, json!({ "name": "ci", "environmentHint": "prod" })).await;
    let refused = server.client(&machine_token).post_empty("/v1/dashboard/sign-in-links").await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let refused = server.admin().post_empty("/v1/dashboard/sign-in-links").await;
    assert_eq!(refused.status, 403, "{refused:?}");
}

#[tokio::test]
async fn revoking_the_pat_ends_its_dashboard_sessions_at_once() {
    let server = Server::start().expect("server");
    let (org, member, pat) = server.admin().create_org("acme", "ops@acme.example").await;
    let owner = server.client(&pat);
    let laptop = owner.post(&format!("/v1/orgs/{org}/members/{member}/tokens"), json!({ "name": "laptop" })).await;
    assert_eq!(laptop.status, 201, "{laptop:?}");
    let session = cookie_value(&sign_in(&server, laptop.body["token"].as_str().expect("token")).await);
    assert_eq!(get_page(&server, "/machine-tokens", &session).await.status(), StatusCode::OK);
    let id = laptop.body["id"].as_str().expect("id");
    assert_eq!(owner.delete(&format!("/v1/orgs/{org}/members/{member}/tokens/{id}")).await.status, 200);
    let after = get_page(&server, "/machine-tokens", &session).await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    assert_eq!(after.headers()[LOCATION], "/sign-in");
}

/// An environment's secrets page shows versions and reads, never a value until "Reveal values"
/// is pressed; the reveal is a read recorded in the ledger, and needs the CSRF token.
#[tokio::test]
async fn secret_values_are_shown_only_behind_a_recorded_reveal() {
    let server = Server::start().expect("server");
    let (org, _, pat) = server.admin().create_org("acme", "ops@acme.example").await;
    let owner = server.client(&pat);
    let project =
        owner.post(&format!("/v1/projects/{org}"), json!({ "name": "api", "environments": ["production"] })).await;
    assert_eq!(project.status, 201, "{project:?}");
    let path = format!("/v1/secrets/{org}/api/production");
    let put = owner
        .send("PUT", &path, Some(json!({ "secrets": { "DEPLOY_KEY": "dashboard-s3cret" }, "message": "first" })))
        .await;
    assert_eq!(put.status, 200, "{put:?}");
    let session = cookie_value(&sign_in(&server, &pat).await);

    let projects = get_page(&server, "/projects", &session).await.text().await.expect("page");
    assert!(projects.contains("href=\"/secrets/api/production\""), "projects link to their environments' secrets");
    let page = get_page(&server, "/secrets/api/production", &session).await;
    assert_eq!(page.status(), StatusCode::OK);
    let body = page.text().await.expect("page");
    assert!(body.contains("DEPLOY_KEY") && body.contains("Reveal values"), "{body}");
    assert!(!body.contains("dashboard-s3cret"), "no value before the reveal");
    let csrf = csrf_of(&body);

    let reveal = |csrf: String| {
        browser()
            .post(server.url("/secrets/api/production/reveal"))
            .header(COOKIE, format!("credledger_session={session}"))
            .form(&[("csrf", csrf)])
            .send()
    };
    assert_eq!(reveal("0".repeat(64)).await.expect("post").status(), StatusCode::FORBIDDEN);
    let shown = reveal(csrf).await.expect("post");
    assert_eq!(shown.status(), StatusCode::OK);
    assert!(shown.headers()["cache-control"].to_str().unwrap().contains("no-store"));
    assert!(shown.text().await.expect("page").contains("dashboard-s3cret"));
    let reads = support::eventually("the reveal in the reads", std::time::Duration::from_secs(10), async || {
        let reads = owner.get(&format!("{path}/reads")).await;
        let items = reads.body["items"].as_array().cloned().unwrap_or_default();
        (items.len() == 1).then_some(items)
    })
    .await;
    assert_eq!(reads[0]["kind"], "personal_token", "{reads:?}");
}
