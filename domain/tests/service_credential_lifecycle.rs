//! Given/when/then tables for the service credential decider: every (state, command) pair of its
//! lifecycle, allowed and forbidden, the semantics of rotate, transfer, flag and revoke, and the
//! law that the fold of a stream's events is the state the decider built step by step.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use credledger_domain::service_credential::{
    self, Command, Context, Event, NewServiceCredential, ServiceCredential, State, decide, evolve, fold,
};
use credledger_domain::token::{ClientId, SecretToken};
use credledger_domain::values::{Cidr, Conditions, Scopes, TokenName, UserAgentPattern};
use credledger_domain::{CredentialId, DomainError, FlagReason, MemberId, OrgId, Status};
use proptest::prelude::*;
use uuid::Uuid;

const T0: DateTime<Utc> = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap().and_hms_opt(10, 0, 0).unwrap().and_utc();

fn at(days: i64) -> Context {
    Context { now: T0 + TimeDelta::days(days) }
}

fn owner() -> MemberId {
    MemberId::from_uuid(Uuid::from_u128(1))
}

fn other_member() -> MemberId {
    MemberId::from_uuid(Uuid::from_u128(2))
}

fn secret(seed: u8) -> SecretToken {
    SecretToken::client_secret([seed; 32])
}

fn client_id() -> ClientId {
    ClientId::generate([7; 12])
}

/// Conditions that are not the default, so that "kept" cannot pass by accident.
fn conditions() -> Conditions {
    Conditions::new(
        vec![Cidr::parse("10.0.0.0/8").unwrap()],
        Vec::new(),
        Some(UserAgentPattern::parse("GitHub-Actions/*").unwrap()),
    )
    .unwrap()
}

fn create_command(expires_in_days: Option<u32>) -> Command {
    let secret = secret(1);
    Command::Create(Box::new(NewServiceCredential {
        id: CredentialId::from_uuid(Uuid::from_u128(10)),
        org_id: OrgId::from_uuid(Uuid::from_u128(20)),
        client_id: client_id(),
        name: TokenName::parse("deploy pipeline").unwrap(),
        owner: owner(),
        scopes: Scopes::read_only(),
        conditions: conditions(),
        secret_hash: secret.digest(),
        secret_prefix: secret.prefix(),
        expires_in_days,
    }))
}

fn rotate_command(seed: u8, grace: Option<TimeDelta>) -> Command {
    let secret = secret(seed);
    Command::RotateSecret { secret_hash: secret.digest(), secret_prefix: secret.prefix(), grace }
}

/// Runs `commands` from an empty stream, each at its day offset, panicking on a refusal.
fn given(commands: Vec<(i64, Command)>) -> (Vec<Event>, State) {
    let mut events = Vec::new();
    let mut state = State::Absent;
    for (day, command) in commands {
        let new = decide(&state, command, &at(day)).expect("given commands are accepted");
        for event in &new {
            state = evolve(state, event);
        }
        events.extend(new);
    }
    (events, state)
}

fn credential(state: &State) -> &ServiceCredential {
    match state {
        State::Present(credential) => credential,
        State::Absent => panic!("credential absent"),
    }
}

/// The states a service credential can be in, each reached from the start, and the day it is
/// looked at. There is no recorded expiry: a service credential expires by the clock only.
fn history(name: &str) -> (Vec<(i64, Command)>, i64) {
    let create = (0, create_command(Some(30)));
    match name {
        "active" => (vec![create], 1),
        "expired_by_clock" => (vec![create], 31),
        "revoked" => (vec![create, (1, Command::Revoke { reason: None })], 2),
        other => panic!("no history {other}"),
    }
}

fn command(name: &str) -> Command {
    match name {
        "rotate" => rotate_command(2, None),
        "transfer" => Command::Transfer { to: other_member() },
        "flag" => Command::Flag { reason: FlagReason::OwnerRemoved },
        "revoke" => Command::Revoke { reason: Some("leaked".into()) },
        other => panic!("no command {other}"),
    }
}

const STATES: [&str; 3] = ["active", "expired_by_clock", "revoked"];
const COMMANDS: [&str; 4] = ["rotate", "transfer", "flag", "revoke"];

/// Then: the event type and the effective status after it, or the error code.
type Then = Result<(&'static str, Status), &'static str>;

/// given state | when command | then.
const LIFECYCLE: &[(&str, &str, Then)] = &[
    ("active", "rotate", Ok(("ServiceCredentialSecretRotated", Status::Active))),
    ("active", "transfer", Ok(("ServiceCredentialTransferred", Status::Active))),
    ("active", "flag", Ok(("ServiceCredentialFlagged", Status::Active))),
    ("active", "revoke", Ok(("ServiceCredentialRevoked", Status::Revoked))),
    ("expired_by_clock", "rotate", Ok(("ServiceCredentialSecretRotated", Status::Active))),
    ("expired_by_clock", "transfer", Ok(("ServiceCredentialTransferred", Status::Expired))),
    ("expired_by_clock", "flag", Ok(("ServiceCredentialFlagged", Status::Expired))),
    ("expired_by_clock", "revoke", Ok(("ServiceCredentialRevoked", Status::Revoked))),
    ("revoked", "rotate", Err("invalid_transition")),
    ("revoked", "transfer", Err("invalid_transition")),
    ("revoked", "flag", Err("invalid_transition")),
    ("revoked", "revoke", Err("invalid_transition")),
];

#[test]
fn every_row_of_the_lifecycle_table_holds() {
    for (given_state, when, then) in LIFECYCLE {
        let (commands, day) = history(given_state);
        let (_, state) = given(commands);
        let ctx = at(day);
        let outcome = decide(&state, command(when), &ctx);
        match (then, outcome) {
            (Ok((event_type, status)), Ok(events)) => {
                assert_eq!(events.len(), 1, "{given_state} + {when}");
                let (recorded_type, _) = credledger_domain::event::encode(&events[0]).unwrap();
                assert_eq!(&recorded_type, event_type, "{given_state} + {when}");
                let after = evolve(state.clone(), &events[0]);
                assert_eq!(credential(&after).effective_status(ctx.now), *status, "{given_state} + {when}");
            }
            (Err(code), Err(error)) => assert_eq!(error.code(), *code, "{given_state} + {when}"),
            (then, outcome) => panic!("{given_state} + {when}: expected {then:?}, got {outcome:?}"),
        }
    }
}

#[test]
fn the_table_covers_every_state_and_command() {
    for state in STATES {
        for command in COMMANDS {
            assert!(LIFECYCLE.iter().any(|(s, c, _)| *s == state && *c == command), "missing row {state} + {command}");
        }
    }
}

#[test]
fn the_histories_reach_the_states_they_are_named_after() {
    for (name, status) in
        [("active", Status::Active), ("expired_by_clock", Status::Expired), ("revoked", Status::Revoked)]
    {
        let (commands, day) = history(name);
        let (_, state) = given(commands);
        assert_eq!(credential(&state).effective_status(at(day).now), status, "{name}");
    }
}

#[test]
fn a_revoked_credential_names_its_state_and_the_command_it_refused() {
    let (commands, day) = history("revoked");
    let (_, state) = given(commands);
    let err = decide(&state, rotate_command(2, None), &at(day)).unwrap_err();
    assert_eq!(
        err,
        DomainError::InvalidTransition { aggregate: "service credential", state: "revoked", command: "rotate" }
    );
}

#[test]
fn create_records_the_client_id_the_expiry_and_the_original_lifetime() {
    let (events, state) = given(vec![(0, create_command(Some(90)))]);
    assert_eq!(events.len(), 1);
    let credential = credential(&state);
    assert_eq!(credential.status, Status::Active);
    assert_eq!(credential.client_id, client_id());
    assert_eq!(credential.client_id.as_str().len(), "cl_ci_".len() + 24);
    assert_eq!(credential.secret_hash, secret(1).digest());
    assert_eq!(credential.secret_prefix, secret(1).prefix());
    assert!(credential.secret_prefix.as_str().starts_with("cl_cs_"));
    assert_eq!(credential.created_at, T0);
    assert_eq!(credential.expires_at, Some(T0 + TimeDelta::days(90)));
    assert_eq!(credential.lifetime_days, Some(90));
    assert_eq!((credential.flagged, credential.previous_secret), (None, None));
}

#[test]
fn create_refuses_an_out_of_range_lifetime() {
    for days in [0, service_credential::MAX_EXPIRY_DAYS + 1] {
        let err = decide(&State::Absent, create_command(Some(days)), &at(0)).unwrap_err();
        assert_eq!(err.code(), "invalid_expiry", "{days} days");
    }
    assert_eq!(service_credential::MAX_EXPIRY_DAYS, 3650);
    for days in [1, service_credential::MAX_EXPIRY_DAYS] {
        assert!(decide(&State::Absent, create_command(Some(days)), &at(0)).is_ok(), "{days} days");
    }
}

#[test]
fn create_on_an_existing_credential_is_refused_whatever_its_state() {
    for name in STATES {
        let (commands, day) = history(name);
        let (_, state) = given(commands);
        let err = decide(&state, create_command(Some(30)), &at(day)).unwrap_err();
        assert_eq!(err.code(), "already_exists", "{name}");
    }
}

#[test]
fn every_command_on_an_absent_credential_is_not_found() {
    for name in COMMANDS {
        let err = decide(&State::Absent, command(name), &at(0)).unwrap_err();
        assert_eq!(err.code(), "not_found", "{name}");
    }
}

#[test]
fn a_credential_without_expiry_never_expires_and_rotation_keeps_it_so() {
    let (events, state) = given(vec![(0, create_command(None)), (5000, rotate_command(2, None))]);
    assert_eq!(credential(&state).expires_at, None);
    assert_eq!(credential(&state).effective_status(T0 + TimeDelta::days(100_000)), Status::Active);
    let Event::ServiceCredentialSecretRotated(rotated) = &events[1] else { panic!("expected a rotation") };
    assert_eq!(rotated.expires_at, None);
}

#[test]
fn rotate_replaces_the_secret_and_keeps_identity_owner_client_id_scopes_and_conditions() {
    let (_, before) = given(vec![(0, create_command(Some(30)))]);
    let (events, after) = given(vec![(0, create_command(Some(30))), (10, rotate_command(2, None))]);
    let (before, after) = (credential(&before), credential(&after));
    assert_eq!(after.secret_hash, secret(2).digest());
    assert_ne!(after.secret_hash, before.secret_hash);
    assert_eq!(after.secret_prefix, secret(2).prefix());
    assert_ne!(after.secret_prefix, before.secret_prefix);
    assert_eq!(
        (after.id, after.org_id, &after.name, after.owner),
        (before.id, before.org_id, &before.name, before.owner)
    );
    assert_eq!(after.client_id, before.client_id);
    assert_eq!((&after.scopes, &after.conditions), (&before.scopes, &before.conditions));
    assert_eq!((after.created_at, after.lifetime_days), (before.created_at, before.lifetime_days));
    // The event names the old secret for the trail, but without a grace it stops at once.
    let Event::ServiceCredentialSecretRotated(rotated) = &events[1] else { panic!("expected a rotation") };
    assert_eq!(rotated.previous_secret_hash, secret(1).digest());
    assert_eq!(rotated.previous_valid_until, None);
    assert_eq!(after.previous_secret, None);
}

#[test]
fn rotate_with_grace_keeps_the_old_secret_for_a_bounded_time() {
    let grace = TimeDelta::hours(2);
    let (_, state) = given(vec![(0, create_command(Some(30))), (1, rotate_command(2, Some(grace)))]);
    let previous = credential(&state).previous_secret.expect("grace recorded");
    assert_eq!(previous.secret_hash, secret(1).digest());
    assert_eq!(previous.valid_until, at(1).now + grace);
    assert_eq!(credential(&state).secret_hash, secret(2).digest());
}

#[test]
fn rotate_allows_a_grace_of_exactly_24_hours_and_refuses_a_longer_one() {
    assert_eq!(service_credential::MAX_ROTATION_GRACE, TimeDelta::hours(24));
    let (_, state) = given(vec![(0, create_command(Some(30)))]);

    let longest = rotate_command(2, Some(service_credential::MAX_ROTATION_GRACE));
    let events = decide(&state, longest, &at(1)).unwrap();
    let after = evolve(state.clone(), &events[0]);
    assert_eq!(credential(&after).previous_secret.map(|p| p.valid_until), Some(at(1).now + TimeDelta::hours(24)));

    let too_long = rotate_command(2, Some(service_credential::MAX_ROTATION_GRACE + TimeDelta::seconds(1)));
    let err = decide(&state, too_long, &at(1)).unwrap_err();
    assert_eq!(err.code(), "grace_period_too_long");
    assert_eq!(err, DomainError::GracePeriodTooLong { max_seconds: 24 * 3600 });
}

#[test]
fn rotate_refuses_a_negative_grace() {
    let (_, state) = given(vec![(0, create_command(Some(30)))]);
    let err = decide(&state, rotate_command(2, Some(TimeDelta::seconds(-1))), &at(1)).unwrap_err();
    assert_eq!(err.code(), "grace_period_too_long");
}

#[test]
fn grace_is_refused_on_an_expired_credential_whose_secret_no_longer_works() {
    let (commands, day) = history("expired_by_clock");
    let (_, state) = given(commands);
    let err = decide(&state, rotate_command(2, Some(TimeDelta::hours(1))), &at(day)).unwrap_err();
    assert_eq!(err.code(), "grace_not_applicable");
}

#[test]
fn rotating_an_expired_credential_brings_it_back_for_the_original_lifetime() {
    let (events, state) = given(vec![(0, create_command(Some(30))), (40, rotate_command(2, None))]);
    let Event::ServiceCredentialSecretRotated(rotated) = &events[1] else { panic!("expected a rotation") };
    assert_eq!(rotated.expires_at, Some(T0 + TimeDelta::days(40 + 30)));
    let credential = credential(&state);
    assert_eq!(credential.status, Status::Active);
    assert_eq!(credential.expires_at, Some(T0 + TimeDelta::days(70)));
    assert_eq!(credential.lifetime_days, Some(30));
    assert_eq!(credential.effective_status(at(40).now), Status::Active);
    assert_eq!(credential.effective_status(T0 + TimeDelta::days(70) - TimeDelta::seconds(1)), Status::Active);
    assert_eq!(credential.effective_status(T0 + TimeDelta::days(70)), Status::Expired);
}

#[test]
fn rotating_an_active_credential_gives_the_new_secret_a_full_lifetime() {
    let (_, state) = given(vec![(0, create_command(Some(30))), (10, rotate_command(2, None))]);
    assert_eq!(credential(&state).expires_at, Some(T0 + TimeDelta::days(40)));
}

#[test]
fn a_second_rotation_ends_the_grace_of_the_first_secret() {
    let (_, state) = given(vec![
        (0, create_command(Some(30))),
        (1, rotate_command(2, Some(TimeDelta::hours(2)))),
        (1, rotate_command(3, None)),
    ]);
    assert_eq!(credential(&state).previous_secret, None);
    assert_eq!(credential(&state).secret_hash, secret(3).digest());
}

#[test]
fn a_second_rotation_with_grace_keeps_only_the_secret_it_replaced() {
    let (_, state) = given(vec![
        (0, create_command(Some(30))),
        (1, rotate_command(2, Some(TimeDelta::hours(2)))),
        (2, rotate_command(3, Some(TimeDelta::hours(1)))),
    ]);
    let previous = credential(&state).previous_secret.expect("grace recorded");
    assert_eq!(previous.secret_hash, secret(2).digest());
    assert_eq!(previous.valid_until, at(2).now + TimeDelta::hours(1));
}

#[test]
fn revoke_clears_the_previous_secret_at_once() {
    let (events, state) = given(vec![
        (0, create_command(Some(30))),
        (1, rotate_command(2, Some(TimeDelta::hours(2)))),
        (1, Command::Revoke { reason: Some("leaked".into()) }),
    ]);
    assert_eq!(credential(&state).previous_secret, None);
    assert_eq!(credential(&state).status, Status::Revoked);
    let Event::ServiceCredentialRevoked(revoked) = &events[2] else { panic!("expected a revocation") };
    assert_eq!(revoked.reason.as_deref(), Some("leaked"));
}

#[test]
fn a_revoked_credential_stays_revoked_past_its_expiry() {
    let (commands, _) = history("revoked");
    let (_, state) = given(commands);
    assert_eq!(credential(&state).effective_status(T0 + TimeDelta::days(10_000)), Status::Revoked);
}

#[test]
fn flag_keeps_the_credential_working_and_flagging_twice_yields_no_event() {
    let (events, state) =
        given(vec![(0, create_command(Some(30))), (1, Command::Flag { reason: FlagReason::OwnerRemoved })]);
    assert_eq!(events.len(), 2);
    let flagged = credential(&state).flagged.expect("flag recorded");
    assert_eq!((flagged.reason, flagged.at), (FlagReason::OwnerRemoved, at(1).now));
    assert_eq!(credential(&state).effective_status(at(1).now), Status::Active);

    // The process manager may run twice: the second flag says nothing new.
    let again = decide(&state, Command::Flag { reason: FlagReason::OwnerRemoved }, &at(2)).unwrap();
    assert!(again.is_empty());
}

#[test]
fn transfer_clears_a_flag_and_records_both_owners() {
    let (_, state) =
        given(vec![(0, create_command(Some(30))), (1, Command::Flag { reason: FlagReason::OwnerRemoved })]);
    let events = decide(&state, Command::Transfer { to: other_member() }, &at(2)).unwrap();
    let Event::ServiceCredentialTransferred(transferred) = &events[0] else { panic!("expected a transfer") };
    assert_eq!((transferred.from, transferred.to), (owner(), other_member()));
    let after = evolve(state, &events[0]);
    assert_eq!(credential(&after).flagged, None);
    assert_eq!(credential(&after).owner, other_member());

    // Once cleared, a new removal flags it again.
    let again = decide(&after, Command::Flag { reason: FlagReason::OwnerRemoved }, &at(3)).unwrap();
    assert_eq!(again.len(), 1);
}

#[test]
fn events_round_trip_through_their_recorded_form() {
    let (events, state) = given(vec![
        (0, create_command(Some(30))),
        (3, rotate_command(2, Some(TimeDelta::hours(1)))),
        (4, Command::Flag { reason: FlagReason::OwnerRemoved }),
        (5, Command::Transfer { to: other_member() }),
        (40, rotate_command(3, None)),
        (41, Command::Revoke { reason: Some("rotated away".into()) }),
    ]);
    let mut decoded = Vec::new();
    for event in &events {
        let (event_type, payload) = credledger_domain::event::encode(event).unwrap();
        assert!(Event::TYPES.contains(&event_type.as_str()), "{event_type}");
        match credledger_domain::DomainEvent::decode(&event_type, &payload).unwrap() {
            credledger_domain::DomainEvent::ServiceCredential(e) => decoded.push(e),
            other => panic!("decoded as {other:?}"),
        }
    }
    assert_eq!(decoded, events);
    assert_eq!(fold(&decoded), state);
}

#[test]
fn fold_of_the_events_equals_the_state_built_step_by_step() {
    let commands = vec![
        (0, create_command(Some(30))),
        (1, rotate_command(2, Some(TimeDelta::hours(3)))),
        (2, Command::Flag { reason: FlagReason::OwnerRemoved }),
        (2, Command::Flag { reason: FlagReason::OwnerRemoved }),
        (35, rotate_command(3, None)),
        (36, Command::Transfer { to: other_member() }),
        (37, Command::Revoke { reason: None }),
    ];
    let mut state = State::Absent;
    let mut events = Vec::new();
    for (day, command) in commands {
        let new = decide(&state, command, &at(day)).unwrap();
        for event in &new {
            state = evolve(state, event);
        }
        events.extend(new);
        // After every command, not only at the end of the stream.
        assert_eq!(fold(&events), state, "after {} events", events.len());
    }
    assert_eq!(events.len(), 6, "the second flag adds nothing");
    assert_eq!(fold(&[]), State::Absent);
}

/// A command of a random sequence; secrets, owners and graces vary so that states differ.
#[derive(Debug, Clone)]
enum Step {
    Create(Option<u32>),
    Rotate { seed: u8, grace_minutes: Option<i64> },
    Transfer(u128),
    Flag,
    Revoke,
}

impl Step {
    fn command(&self) -> Command {
        match self {
            Self::Create(days) => create_command(*days),
            Self::Rotate { seed, grace_minutes } => rotate_command(*seed, grace_minutes.map(TimeDelta::minutes)),
            Self::Transfer(member) => Command::Transfer { to: MemberId::from_uuid(Uuid::from_u128(*member)) },
            Self::Flag => Command::Flag { reason: FlagReason::OwnerRemoved },
            Self::Revoke => Command::Revoke { reason: None },
        }
    }
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => prop_oneof![Just(None), (0u32..=3651).prop_map(Some), (1u32..=60).prop_map(Some)].prop_map(Step::Create),
        4 => (any::<u8>(), prop_oneof![Just(None), (-30i64..=1500).prop_map(Some)])
            .prop_map(|(seed, grace_minutes)| Step::Rotate { seed, grace_minutes }),
        2 => (1u128..=4).prop_map(Step::Transfer),
        2 => Just(Step::Flag),
        1 => Just(Step::Revoke),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn fold_equals_the_stepwise_state_and_a_revoked_credential_stays_revoked(
        steps in prop::collection::vec((0i64..=24 * 45, step()), 0..40),
    ) {
        let mut state = State::Absent;
        let mut events = Vec::new();
        let mut now = T0;
        let mut revoked = false;
        for (hours, step) in steps {
            now += TimeDelta::hours(hours);
            let ctx = Context { now };
            match decide(&state, step.command(), &ctx) {
                Ok(new) => {
                    prop_assert!(!revoked, "a revoked credential accepted {step:?}");
                    for event in &new {
                        state = evolve(state, event);
                    }
                    events.extend(new);
                }
                Err(err) if revoked && !matches!(step, Step::Create(_)) => {
                    prop_assert_eq!(err.code(), "invalid_transition", "{:?}", step);
                }
                Err(_) => {}
            }
            prop_assert_eq!(&fold(&events), &state);
            if let State::Present(credential) = &state {
                let status = credential.effective_status(now);
                if revoked {
                    prop_assert_eq!(status, Status::Revoked);
                }
                revoked = status == Status::Revoked;
                if revoked {
                    prop_assert_eq!(credential.previous_secret, None);
                }
                if let Some(previous) = credential.previous_secret {
                    prop_assert!(previous.valid_until <= now + service_credential::MAX_ROTATION_GRACE);
                }
            }
        }
        // Only the first event creates; the stream never holds a second creation.
        prop_assert!(events.iter().skip(1).all(|e| !matches!(e, Event::ServiceCredentialCreated(_))));
        prop_assert!(events.first().is_none_or(|e| matches!(e, Event::ServiceCredentialCreated(_))));
    }
}
