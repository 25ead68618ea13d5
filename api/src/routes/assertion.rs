//! The jwt-bearer grant (RFC 7523 §2.1): a machine signs a short-lived assertion with its
//! Ed25519 private key and exchanges it for a 15-minute, read-only access token scoped to its
//! project and environment.
//!
//! The assertion must be EdDSA, signed by the machine's registered key, with `iss` = `sub` = the
//! machine id, `aud` = this server's token endpoint, `exp` at most five minutes after `iat`
//! (30 s of skew either way) and a `jti` never seen before: each accepted assertion is recorded
//! in a stream of its own that must not exist yet, so a replay is refused durably, across
//! restarts and nodes.

use axum::http::StatusCode;
use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use credledger_domain::machine_identity::Machine;
use credledger_domain::policy::{AccessRequest, DenyReason, Presented, RouteClass, evaluate};
use credledger_domain::values::{Scope, Scopes};
use credledger_domain::{CredentialId, CredentialKind};
use credledger_projections::Credential;
use credledger_store::StoreError;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::oauth::OAuthError;
use crate::AppState;
use crate::limiter::Verdict;
use crate::signing::{ACCESS_TOKEN_LIFETIME, AUDIENCE, Claims, LEEWAY_SECONDS};
use crate::usage::{IssuedToken, Use};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The longest an assertion may be valid.
const MAX_ASSERTION_LIFETIME: TimeDelta = TimeDelta::minutes(5);

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: i64,
    iat: i64,
    #[serde(default)]
    nbf: Option<i64>,
    jti: String,
}

fn invalid_grant(description: impl Into<String>) -> OAuthError {
    OAuthError::new(axum::http::StatusCode::BAD_REQUEST, "invalid_grant", description)
}

/// Verifies an assertion and issues the machine's access token; returns the token and its
/// scope string.
pub async fn exchange(app: &AppState, assertion: &str, used: &Use<'_>) -> Result<(String, String), OAuthError> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| invalid_grant("the assertion is not a JWT"))?;
    if header.alg != Algorithm::EdDSA {
        return Err(invalid_grant("the assertion must be signed with EdDSA"));
    }
    // Which machine claims to have signed it; nothing is believed before the signature checks.
    let unverified = jsonwebtoken::dangerous::insecure_decode::<AssertionClaims>(assertion)
        .map_err(|_| invalid_grant("the assertion lacks iss, sub, exp, iat or jti"))?
        .claims;
    let machine = CredentialId::parse(&unverified.sub)
        .ok()
        .map(|id| app.projections.credential_by_id(id))
        .transpose()
        .map_err(|error| {
            tracing::error!(%error, "reading a machine failed");
            OAuthError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "retry")
        })?
        .flatten();
    let ip: std::net::IpAddr = used.ip.parse().unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let now = app.clock.now();
    // Forged assertions cost a lookup and a signature check each: throttle their sources.
    if let Verdict::Throttled { retry_after } | Verdict::Locked { retry_after } = app.limiter.check_assertion(ip, now) {
        let mut error = OAuthError::new(StatusCode::TOO_MANY_REQUESTS, "invalid_grant", "too many refused assertions");
        error.retry_after = Some(retry_after);
        return Err(error);
    }
    let Some(Credential::Machine(machine)) = machine else {
        app.limiter.assertion_failed(ip, now);
        return Err(invalid_grant("the assertion's subject is not a known machine"));
    };
    let claims = verify(app, assertion, &machine).inspect_err(|_| {
        // A bad signature for a known machine is recorded against it, like a wrong secret.
        app.limiter.assertion_failed(ip, now);
        if let Some(view) = app.projections.hot_index().view(machine.id) {
            app.usage.denied(&view, DenyReason::InvalidSecret, used);
        }
    })?;
    check_times(&claims, now)?;
    let view = app
        .projections
        .hot_index()
        .view(machine.id)
        .ok_or_else(|| invalid_grant("the machine is not known yet; retry"))?;
    let access = AccessRequest {
        org_id: None,
        ip,
        user_agent: used.request.user_agent.as_deref(),
        at: now,
        route_class: RouteClass::Open,
        required_scope: Scope::Read,
    };
    if let Err(reason) = evaluate(&view, Presented::Current, &access) {
        app.usage.denied(&view, reason, used);
        return Err(invalid_grant(format!("the machine may not obtain a token: {}", reason.as_str())));
    }
    let jti = uuid::Uuid::now_v7().to_string();
    let expires_at = now + ACCESS_TOKEN_LIFETIME;
    let scopes = Scopes::read_only();
    let token = Claims {
        iss: app.keys.issuer().to_owned(),
        sub: machine.id.to_string(),
        aud: AUDIENCE.to_owned(),
        org: machine.org_id.to_string(),
        scope: scopes.to_space_separated(),
        jti: jti.clone(),
        iat: now.timestamp(),
        nbf: now.timestamp(),
        exp: expires_at.timestamp(),
        kind: CredentialKind::Machine.as_str().to_owned(),
        client_id: None,
        project: Some(machine.project_id.to_string()),
        environment: Some(machine.environment.to_string()),
        machine: Some(machine.name.to_string()),
    };
    let issued = IssuedToken { jti, assertion_jti: Some(claims.jti.clone()), scopes, expires_at };
    match app.usage.issued(&view, used, issued).await {
        Ok(()) => {}
        Err(StoreError::WrongExpectedVersion { .. }) => {
            metrics::counter!("credledger_assertion_replays_total").increment(1);
            return Err(invalid_grant("the assertion was already used (jti replay)"));
        }
        Err(StoreError::Superseded { position, .. }) => {
            // The machine changed after the view it was judged on: answer with what it is now.
            app.view_including(position).await.map_err(super::oauth::unavailable)?;
            let current = app.projections.hot_index().view(machine.id);
            if let Some(reason) = current.and_then(|view| evaluate(&view, Presented::Current, &access).err()) {
                app.usage.denied(&view, reason, used);
                return Err(invalid_grant(format!("the machine may not obtain a token: {}", reason.as_str())));
            }
            return Err(super::oauth::unavailable(crate::freshness::stale(app.freshness.bound())));
        }
        Err(error) => {
            tracing::error!(%error, "recording an issued machine token failed");
            return Err(OAuthError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the issuance could not be recorded; retry",
            ));
        }
    }
    let access_token = app.keys.sign(&token);
    Ok((access_token, token.scope))
}

/// Checks the signature with the machine's registered key, the audience and the issuer.
fn verify(app: &AppState, assertion: &str, machine: &Machine) -> Result<AssertionClaims, OAuthError> {
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(machine.public_key.as_bytes());
    let key = DecodingKey::from_ed_components(&x).map_err(|_| invalid_grant("the machine's key is unusable"))?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    let endpoint = format!("{}/oauth2/token", app.config.public_url.trim_end_matches('/'));
    validation.set_audience(&[endpoint]);
    validation.set_issuer(&[machine.id.to_string()]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud", "jti"]);
    // Times are checked against the server's clock in `check_times`.
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation)
        .map(|data| data.claims)
        .map_err(|error| {
            use jsonwebtoken::errors::ErrorKind;
            match error.kind() {
                ErrorKind::InvalidSignature => {
                    invalid_grant("the assertion's signature does not verify with the machine's key")
                }
                ErrorKind::InvalidAudience => invalid_grant("the assertion's aud must be this server's token endpoint"),
                ErrorKind::InvalidIssuer => invalid_grant("the assertion's iss must be the machine id"),
                _ => invalid_grant("the assertion is malformed"),
            }
        })?;
    if claims.sub != claims.iss {
        return Err(invalid_grant("the assertion's sub must equal its iss"));
    }
    Ok(claims)
}

fn check_times(claims: &AssertionClaims, now: DateTime<Utc>) -> Result<(), OAuthError> {
    let (now, skew) = (now.timestamp(), LEEWAY_SECONDS as i64);
    let lifetime = MAX_ASSERTION_LIFETIME.num_seconds();
    // Client-chosen numbers: compare without arithmetic on them that could overflow.
    if claims.exp <= now.saturating_sub(skew) {
        return Err(invalid_grant("the assertion has expired"));
    }
    if claims.iat > now.saturating_add(skew) {
        return Err(invalid_grant("the assertion is issued in the future"));
    }
    if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
        return Err(invalid_grant("the assertion is not valid yet (nbf)"));
    }
    if claims.exp <= claims.iat {
        return Err(invalid_grant("the assertion expires before it is issued"));
    }
    // With iat at most `skew` ahead, this also bounds exp to now + skew + 5 minutes.
    if claims.exp.saturating_sub(claims.iat) > lifetime {
        return Err(invalid_grant("an assertion may be valid for at most 5 minutes"));
    }
    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err(invalid_grant("the assertion's jti must be 1 to 256 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    const NOW: DateTime<Utc> = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap().and_hms_opt(10, 0, 0).unwrap().and_utc();

    fn claims(iat: i64, exp: i64) -> AssertionClaims {
        AssertionClaims { iss: "m".into(), sub: "m".into(), exp, iat, nbf: None, jti: "j".into() }
    }

    #[test]
    fn extreme_times_are_refused_without_overflow() {
        let now = NOW.timestamp();
        assert!(check_times(&claims(now, now + 60), NOW).is_ok());
        for (iat, exp) in [
            (-100, i64::MAX - 30),
            (i64::MIN, i64::MAX),
            (now, i64::MAX),
            (i64::MIN, now + 60),
            (i64::MAX, i64::MAX),
            (now + 60, now + 30),
        ] {
            assert!(check_times(&claims(iat, exp), NOW).is_err(), "iat {iat}, exp {exp}");
        }
    }
}
