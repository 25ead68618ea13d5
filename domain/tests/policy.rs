//! The access policy as a table: each deny reason, and the order in which checks apply.

use std::net::IpAddr;

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use credledger_domain::policy::{AccessRequest, CredentialView, DenyReason, Presented, RouteClass, evaluate};
use credledger_domain::values::{Cidr, Conditions, Scope, Scopes, TimeWindow, UserAgentPattern};
use credledger_domain::{CredentialId, CredentialKind, OrgId, Status};
use uuid::Uuid;

// A Wednesday.
const NOW: DateTime<Utc> = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap().and_hms_opt(10, 0, 0).unwrap().and_utc();

fn org(n: u128) -> OrgId {
    OrgId::from_uuid(Uuid::from_u128(n))
}

fn machine_token() -> CredentialView {
    CredentialView {
        id: CredentialId::from_uuid(Uuid::from_u128(1)),
        kind: CredentialKind::MachineToken,
        org_id: Some(org(1)),
        owner: None,
        project_id: None,
        environment_hint: Some("prod".to_owned()),
        status: Status::Active,
        expires_at: Some(NOW + TimeDelta::days(1)),
        scopes: Scopes::all(),
        conditions: Conditions::none(),
        server_admin: false,
    }
}

fn request() -> AccessRequest<'static> {
    AccessRequest {
        org_id: Some(org(1)),
        ip: "140.82.112.7".parse().unwrap(),
        user_agent: Some("github-actions/2.3"),
        at: NOW,
        route_class: RouteClass::Open,
        required_scope: Scope::Read,
    }
}

fn conditions() -> Conditions {
    Conditions::new(
        vec![Cidr::parse("140.82.112.0/20").unwrap(), Cidr::parse("2001:db8::/32").unwrap()],
        vec![TimeWindow::parse_spec("mon-fri 06:00-22:00").unwrap()],
        Some(UserAgentPattern::parse("github-actions/*").unwrap()),
    )
    .unwrap()
}

fn deny(view: &CredentialView, request: &AccessRequest<'_>) -> Result<(), DenyReason> {
    evaluate(view, Presented::Current, request)
}

#[test]
fn an_active_token_within_its_conditions_is_allowed() {
    let view = CredentialView { conditions: conditions(), ..machine_token() };
    assert_eq!(deny(&view, &request()), Ok(()));
    let v6 = AccessRequest { ip: "2001:db8::5".parse().unwrap(), ..request() };
    assert_eq!(deny(&view, &v6), Ok(()));
}

#[test]
fn each_condition_has_its_own_reason() {
    let view = CredentialView { conditions: conditions(), ..machine_token() };
    let outside_ip = AccessRequest { ip: "10.0.0.1".parse().unwrap(), ..request() };
    assert_eq!(deny(&view, &outside_ip), Err(DenyReason::IpNotAllowed));
    let saturday = AccessRequest { at: Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap(), ..request() };
    let view_no_expiry = CredentialView { expires_at: None, ..view.clone() };
    assert_eq!(deny(&view_no_expiry, &saturday), Err(DenyReason::OutsideTimeWindow));
    let night = AccessRequest { at: Utc.with_ymd_and_hms(2026, 11, 25, 22, 0, 0).unwrap(), ..request() };
    assert_eq!(deny(&view, &night), Err(DenyReason::OutsideTimeWindow));
    let curl = AccessRequest { user_agent: Some("curl/8.0"), ..request() };
    assert_eq!(deny(&view, &curl), Err(DenyReason::UserAgentMismatch));
    let no_agent = AccessRequest { user_agent: None, ..request() };
    assert_eq!(deny(&view, &no_agent), Err(DenyReason::UserAgentMismatch));
}

#[test]
fn state_decides_before_anything_else() {
    let cases = [
        (Status::Disabled, None, DenyReason::Disabled),
        (Status::Revoked, None, DenyReason::Revoked),
        (Status::Expired, None, DenyReason::Expired),
        (Status::Active, Some(NOW), DenyReason::Expired),
    ];
    for (status, expires_at, reason) in cases {
        let view = CredentialView { status, expires_at, conditions: conditions(), ..machine_token() };
        // Wrong org and wrong IP too: the state is still the reason given.
        let request = AccessRequest { org_id: Some(org(2)), ip: IpAddr::from([10, 0, 0, 1]), ..request() };
        assert_eq!(deny(&view, &request), Err(reason), "{status:?}");
    }
}

#[test]
fn a_credential_of_another_organization_is_refused() {
    let request = AccessRequest { org_id: Some(org(2)), ..request() };
    assert_eq!(deny(&machine_token(), &request), Err(DenyReason::WrongOrganization));
}

#[test]
fn machine_credentials_never_call_human_only_routes_whatever_their_scopes() {
    let request = AccessRequest { route_class: RouteClass::HumanOnly, required_scope: Scope::Write, ..request() };
    for kind in [CredentialKind::MachineToken, CredentialKind::ServiceCredential, CredentialKind::Machine] {
        let view = CredentialView { kind, ..machine_token() };
        assert_eq!(deny(&view, &request), Err(DenyReason::MachineCredentialForbidden), "{kind:?}");
    }
    let pat = CredentialView { kind: CredentialKind::PersonalToken, ..machine_token() };
    assert_eq!(deny(&pat, &request), Ok(()));
}

#[test]
fn a_read_only_credential_cannot_write() {
    let view = CredentialView { scopes: Scopes::read_only(), ..machine_token() };
    let write = AccessRequest { required_scope: AccessRequest::scope_for_method("POST"), ..request() };
    assert_eq!(deny(&view, &write), Err(DenyReason::InsufficientScope));
    let read = AccessRequest { required_scope: AccessRequest::scope_for_method("GET"), ..request() };
    assert_eq!(deny(&view, &read), Ok(()));
}

#[test]
fn a_rolled_away_value_works_only_within_its_grace() {
    let view = machine_token();
    let at_once = Presented::Previous { valid_until: None };
    assert_eq!(evaluate(&view, at_once, &request()), Err(DenyReason::Revoked));
    let in_grace = Presented::Previous { valid_until: Some(NOW + TimeDelta::minutes(5)) };
    assert_eq!(evaluate(&view, in_grace, &request()), Ok(()));
    let after_grace = Presented::Previous { valid_until: Some(NOW) };
    assert_eq!(evaluate(&view, after_grace, &request()), Err(DenyReason::Revoked));
}

#[test]
fn the_server_admin_token_may_act_in_any_organization() {
    let admin =
        CredentialView { kind: CredentialKind::PersonalToken, org_id: None, server_admin: true, ..machine_token() };
    assert_eq!(deny(&admin, &AccessRequest { org_id: Some(org(9)), ..request() }), Ok(()));
}
