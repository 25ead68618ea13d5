//! Given/when/then tests for the organization and personal token deciders.

use chrono::NaiveDate;
use credledger_domain::names::{Email, Slug};
use credledger_domain::organization::{self, Command, Context, Event, State, decide, evolve};
use credledger_domain::personal_token::{self, NewPersonalToken};
use credledger_domain::token::SecretToken;
use credledger_domain::values::{Role, TokenName};
use credledger_domain::{CredentialId, MemberId, OrgId, ProjectId, Status};
use uuid::Uuid;

const CTX: Context =
    Context { now: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap().and_hms_opt(12, 0, 0).unwrap().and_utc() };

fn member(n: u128) -> MemberId {
    MemberId::from_uuid(Uuid::from_u128(n))
}

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

fn slug(s: &str) -> Slug {
    Slug::parse(s).unwrap()
}

fn run(state: State, command: Command) -> Result<State, String> {
    let events = decide(&state, command, &CTX).map_err(|e| e.code().to_owned())?;
    Ok(events.iter().fold(state, evolve))
}

fn org_with_owner() -> State {
    run(
        State::Absent,
        Command::Create {
            id: OrgId::from_uuid(Uuid::from_u128(7)),
            name: slug("acme"),
            owner_id: member(1),
            owner_email: email("ops@acme.example"),
        },
    )
    .unwrap()
}

fn org(state: &State) -> &organization::Organization {
    match state {
        State::Present(org) => org,
        State::Absent => panic!("absent"),
    }
}

#[test]
fn creating_an_organization_adds_its_first_owner() {
    let events = decide(
        &State::Absent,
        Command::Create {
            id: OrgId::from_uuid(Uuid::from_u128(7)),
            name: slug("acme"),
            owner_id: member(1),
            owner_email: email("ops@acme.example"),
        },
        &CTX,
    )
    .unwrap();
    assert!(matches!(events[0], Event::OrgCreated(_)));
    assert!(matches!(&events[1], Event::MemberAdded(added) if added.role == Role::Owner));
    let state = org_with_owner();
    assert_eq!(org(&state).member(member(1)).map(|m| m.role), Some(Role::Owner));
}

#[test]
fn an_email_belongs_to_one_current_member() {
    let state = org_with_owner();
    let add = |id, e: &str| Command::AddMember { member_id: member(id), email: email(e), role: Role::Member };
    let state = run(state, add(2, "dev@acme.example")).unwrap();
    assert_eq!(run(state.clone(), add(3, "DEV@acme.example")), Err("member_exists".into()));
    // Once removed, the email may join again as a new member.
    let state = run(state, Command::RemoveMember { member_id: member(2) }).unwrap();
    assert!(run(state, add(3, "dev@acme.example")).is_ok());
}

#[test]
fn the_last_owner_can_be_neither_removed_nor_demoted() {
    let state = org_with_owner();
    assert_eq!(run(state.clone(), Command::RemoveMember { member_id: member(1) }), Err("last_owner".into()));
    assert_eq!(
        run(state.clone(), Command::ChangeRole { member_id: member(1), role: Role::Admin }),
        Err("last_owner".into())
    );
    let state =
        run(state, Command::AddMember { member_id: member(2), email: email("b@acme.example"), role: Role::Owner })
            .unwrap();
    let state = run(state, Command::ChangeRole { member_id: member(1), role: Role::Admin }).unwrap();
    assert_eq!(org(&state).member(member(1)).map(|m| m.role), Some(Role::Admin));
}

#[test]
fn removed_members_cannot_be_changed_or_removed_again() {
    let state = org_with_owner();
    let state =
        run(state, Command::AddMember { member_id: member(2), email: email("b@acme.example"), role: Role::Admin })
            .unwrap();
    let state = run(state, Command::RemoveMember { member_id: member(2) }).unwrap();
    assert!(org(&state).member(member(2)).is_none());
    assert!(org(&state).members.get(&member(2)).is_some_and(|m| m.removed));
    assert_eq!(run(state.clone(), Command::RemoveMember { member_id: member(2) }), Err("member_not_found".into()));
    assert_eq!(
        run(state, Command::ChangeRole { member_id: member(2), role: Role::Owner }),
        Err("member_not_found".into())
    );
}

#[test]
fn projects_and_environments_are_unique_by_name() {
    let project = ProjectId::from_uuid(Uuid::from_u128(30));
    let state = run(
        org_with_owner(),
        Command::CreateProject {
            project_id: project,
            name: slug("my-api"),
            environments: vec![slug("production"), slug("staging"), slug("production")],
        },
    )
    .unwrap();
    assert_eq!(org(&state).projects[&project].environments.len(), 2);
    let again = Command::CreateProject {
        project_id: ProjectId::from_uuid(Uuid::from_u128(31)),
        name: slug("my-api"),
        environments: vec![],
    };
    assert_eq!(run(state.clone(), again), Err("project_exists".into()));
    let staging = Command::AddEnvironment { project_id: project, name: slug("staging") };
    assert_eq!(run(state.clone(), staging), Err("environment_exists".into()));
    let state = run(state, Command::AddEnvironment { project_id: project, name: slug("dev") }).unwrap();
    assert!(org(&state).projects[&project].environments.contains(&slug("dev")));
    let missing = Command::AddEnvironment { project_id: ProjectId::from_uuid(Uuid::from_u128(99)), name: slug("x") };
    assert_eq!(run(state, missing), Err("project_not_found".into()));
}

#[test]
fn commands_on_a_missing_organization_are_not_found() {
    let result = run(State::Absent, Command::RemoveMember { member_id: member(1) });
    assert_eq!(result, Err("not_found".into()));
}

#[test]
fn a_personal_token_is_revoked_once_and_for_good() {
    let ctx = personal_token::Context { now: CTX.now };
    let secret = SecretToken::personal_token([4; 32]);
    let create = personal_token::Command::Create(Box::new(NewPersonalToken {
        id: CredentialId::from_uuid(Uuid::from_u128(40)),
        owner: Some((OrgId::from_uuid(Uuid::from_u128(7)), member(1))),
        name: TokenName::parse("laptop").unwrap(),
        secret_hash: secret.digest(),
        token_prefix: secret.prefix(),
        expires_in_days: Some(30),
    }));
    let events = personal_token::decide(&personal_token::State::Absent, create.clone(), &ctx).unwrap();
    let state = events.iter().fold(personal_token::State::Absent, personal_token::evolve);
    assert_eq!(personal_token::decide(&state, create, &ctx).unwrap_err().code(), "already_exists");
    let revoke = personal_token::Command::Revoke { reason: None };
    let events = personal_token::decide(&state, revoke.clone(), &ctx).unwrap();
    let state = events.iter().fold(state, personal_token::evolve);
    let personal_token::State::Present(token) = &state else { panic!("absent") };
    assert_eq!(token.status, Status::Revoked);
    assert!(!token.server_admin);
    assert_eq!(personal_token::decide(&state, revoke, &ctx).unwrap_err().code(), "invalid_transition");
}
