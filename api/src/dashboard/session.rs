//! The dashboard's sessions and one-time sign-in links, kept in memory only: a session is a random
//! cookie value whose SHA-256 names the PAT it signed in with (by that PAT's SHA-256, never its
//! plaintext). Every request looks the PAT up in the hot index and lets the domain's policy decide,
//! so revoking or expiring the PAT ends its sessions at once. A restart signs everybody out.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, TimeDelta, Utc};
use credledger_domain::policy::{AccessRequest, RouteClass, evaluate};
use credledger_domain::token::TokenDigest;
use credledger_domain::{CredentialKind, OrgId};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::auth::{Caller, actor_of, request_origin};
use crate::problem::Problem;

/// The session cookie.
pub const SESSION_COOKIE: &str = "credledger_session";
/// The cookie a signed-out browser's sign-in form is checked against (double submit).
pub const SIGN_IN_COOKIE: &str = "credledger_sign_in";
/// How long a session lasts, however busy.
pub const SESSION_LIFETIME: TimeDelta = TimeDelta::hours(12);
/// How long a one-time sign-in link works.
pub const LINK_LIFETIME: TimeDelta = TimeDelta::seconds(60);
/// Most sessions and links kept at once: the oldest make room beyond it.
const CAPACITY: usize = 10_000;

/// Sessions and sign-in links, by the SHA-256 of their secret value.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<[u8; 32], Session>,
    links: HashMap<[u8; 32], Link>,
}

#[derive(Debug)]
struct Session {
    pat: TokenDigest,
    csrf: String,
    expires_at: DateTime<Utc>,
    /// Forms that show a secret once are answered once: a reload or a replayed post finds its
    /// form id here and shows nothing.
    answered_forms: HashSet<String>,
}

#[derive(Debug)]
struct Link {
    pat: TokenDigest,
    expires_at: DateTime<Utc>,
}

/// What a valid session holds.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub pat: TokenDigest,
    pub csrf: String,
}

fn key(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// A fresh random value for a cookie, a CSRF token, a link or a form id: 64 hex characters.
pub fn random_value() -> Result<String, Problem> {
    Ok(hex::encode(crate::random_bytes()?))
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a session for a PAT; returns the cookie value.
    pub fn start(&self, pat: TokenDigest, now: DateTime<Utc>) -> Result<String, Problem> {
        let value = random_value()?;
        let csrf = random_value()?;
        let mut inner = self.lock();
        inner.sessions.retain(|_, session| session.expires_at > now);
        if inner.sessions.len() >= CAPACITY
            && let Some(oldest) = inner.sessions.iter().min_by_key(|(_, s)| s.expires_at).map(|(k, _)| *k)
        {
            inner.sessions.remove(&oldest);
        }
        let session = Session { pat, csrf, expires_at: now + SESSION_LIFETIME, answered_forms: HashSet::new() };
        inner.sessions.insert(key(&value), session);
        Ok(value)
    }

    pub fn get(&self, cookie: &str, now: DateTime<Utc>) -> Option<SessionView> {
        let mut inner = self.lock();
        let k = key(cookie);
        match inner.sessions.get(&k) {
            Some(session) if session.expires_at > now => {
                Some(SessionView { pat: session.pat, csrf: session.csrf.clone() })
            }
            Some(_) => {
                inner.sessions.remove(&k);
                None
            }
            None => None,
        }
    }

    pub fn end(&self, cookie: &str) {
        self.lock().sessions.remove(&key(cookie));
    }

    /// Marks a form answered; `false` when it already was.
    pub fn answer_form(&self, cookie: &str, form: &str) -> bool {
        let mut inner = self.lock();
        match inner.sessions.get_mut(&key(cookie)) {
            Some(session) => session.answered_forms.insert(form.to_owned()),
            None => false,
        }
    }

    /// A new one-time sign-in link for a PAT; returns its secret value.
    pub fn new_link(&self, pat: TokenDigest, now: DateTime<Utc>) -> Result<String, Problem> {
        let value = random_value()?;
        let mut inner = self.lock();
        inner.links.retain(|_, link| link.expires_at > now);
        if inner.links.len() >= CAPACITY {
            return Err(Problem::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_links",
                "too many sign-in links are waiting to be used; try again in a minute",
            ));
        }
        inner.links.insert(key(&value), Link { pat, expires_at: now + LINK_LIFETIME });
        Ok(value)
    }

    /// The PAT a sign-in link would sign in, without using it up.
    pub fn peek_link(&self, value: &str, now: DateTime<Utc>) -> Option<TokenDigest> {
        let inner = self.lock();
        inner.links.get(&key(value)).filter(|link| link.expires_at > now).map(|link| link.pat)
    }

    /// Uses a sign-in link up: the PAT it signs in, once, within its minute.
    pub fn take_link(&self, value: &str, now: DateTime<Utc>) -> Option<TokenDigest> {
        let link = self.lock().links.remove(&key(value))?;
        (link.expires_at > now).then_some(link.pat)
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, for the whole site, Secure behind TLS.
pub fn set_cookie(app: &AppState, name: &str, value: &str, max_age: TimeDelta) -> String {
    let secure = if app.config.public_url.starts_with("https://") { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", max_age.num_seconds())
}

/// Whether a PAT may sign in now: the hot index knows it, the policy allows it, and it is a
/// member's (the server-admin token manages organizations only, and has none to show).
pub fn member_pat(
    app: &AppState,
    pat: &TokenDigest,
    headers: &HeaderMap,
    peer: Option<std::net::IpAddr>,
    method: &str,
) -> Result<(Caller, OrgId), &'static str> {
    // The position the view is judged on, read before the lookup (see `auth`).
    let seen = app.projections.position();
    let (view, presented) = app.projections.hot_index().lookup(pat).ok_or("the token is not known")?;
    if view.kind != CredentialKind::PersonalToken {
        return Err("machine credentials cannot sign in to the dashboard: use a personal access token");
    }
    let org = view.org_id.ok_or("the server-admin token only creates organizations: sign in with a member's token")?;
    let (ip, request) = request_origin(app, peer, headers);
    let access = AccessRequest {
        org_id: Some(org),
        ip,
        user_agent: request.user_agent.as_deref(),
        at: app.clock.now(),
        route_class: RouteClass::Open,
        required_scope: AccessRequest::scope_for_method(method),
    };
    evaluate(&view, presented, &access).map_err(|reason| match reason {
        credledger_domain::policy::DenyReason::Revoked => "the token is revoked",
        credledger_domain::policy::DenyReason::Expired => "the token has expired",
        _ => "the token may not be used here",
    })?;
    let actor = actor_of(&view);
    Ok((Caller { view, actor, request, seen }, org))
}

/// A signed-in member: the caller every page acts as (the same [`Caller`] the API's handlers take),
/// the organization, and the session's CSRF token for the forms it renders. A request without a
/// live session is sent to the sign-in page.
#[derive(Debug, Clone)]
pub struct Signed {
    pub caller: Caller,
    pub org: OrgId,
    pub csrf: String,
    pub cookie: String,
    pub email: String,
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let to_sign_in = || Redirect::to("/sign-in").into_response();
        let cookie = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(to_sign_in)?.to_owned();
        let session = app.dashboard.get(&cookie, app.clock.now()).ok_or_else(to_sign_in)?;
        let peer = parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|info| info.0.ip());
        let Ok((caller, org)) = member_pat(app, &session.pat, &parts.headers, peer, parts.method.as_str()) else {
            app.dashboard.end(&cookie);
            return Err(to_sign_in());
        };
        let email = match caller.member_id() {
            Some(member) => app.projections.member(org, member).ok().flatten().map(|row| row.email),
            None => None,
        }
        .unwrap_or_default();
        Ok(Self { caller, org, csrf: session.csrf, cookie, email })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_link_works_once_and_only_within_its_minute() {
        let sessions = Sessions::default();
        let now = DateTime::UNIX_EPOCH;
        let pat = TokenDigest::of("cl_pat_x");
        let link = sessions.new_link(pat, now).unwrap();
        assert_eq!(sessions.peek_link(&link, now), Some(pat));
        assert_eq!(sessions.take_link(&link, now), Some(pat));
        assert_eq!(sessions.peek_link(&link, now), None);
        assert_eq!(sessions.take_link(&link, now), None);
        let late = sessions.new_link(pat, now).unwrap();
        assert_eq!(sessions.take_link(&late, now + LINK_LIFETIME), None);
    }

    #[test]
    fn a_session_ends_when_it_expires_or_signs_out() {
        let sessions = Sessions::default();
        let now = DateTime::UNIX_EPOCH;
        let cookie = sessions.start(TokenDigest::of("cl_pat_x"), now).unwrap();
        assert!(sessions.get(&cookie, now).is_some());
        assert!(sessions.get(&cookie, now + SESSION_LIFETIME).is_none());
        let cookie = sessions.start(TokenDigest::of("cl_pat_x"), now).unwrap();
        assert!(sessions.answer_form(&cookie, "form-1"));
        assert!(!sessions.answer_form(&cookie, "form-1"));
        sessions.end(&cookie);
        assert!(sessions.get(&cookie, now).is_none());
    }
}
