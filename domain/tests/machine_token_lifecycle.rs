//! Given/when/then tables for the machine token decider: every row of the lifecycle table of
//! DESIGN.md §3, allowed and forbidden, and the semantics of roll, transfer, flag and expiry.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use credledger_domain::machine_token::{
    self, Command, Context, Event, NewMachineToken, State, Update, decide, evolve, fold,
};
use credledger_domain::token::SecretToken;
use credledger_domain::values::{Conditions, EnvHint, Scopes, TokenName};
use credledger_domain::{CredentialId, DomainError, FlagReason, MemberId, OrgId, Status};
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
    SecretToken::machine_token(&EnvHint::parse("prod").unwrap(), [seed; 32])
}

fn create_command(expires_in_days: Option<u32>) -> Command {
    let secret = secret(1);
    Command::Create(Box::new(NewMachineToken {
        id: CredentialId::from_uuid(Uuid::from_u128(10)),
        org_id: OrgId::from_uuid(Uuid::from_u128(20)),
        name: TokenName::parse("GitHub Actions prod").unwrap(),
        environment_hint: EnvHint::parse("prod").unwrap(),
        project_id: None,
        owner: owner(),
        scopes: Scopes::all(),
        conditions: Conditions::none(),
        secret_hash: secret.digest(),
        token_prefix: secret.prefix(),
        expires_in_days,
    }))
}

fn roll_command(seed: u8, grace: Option<TimeDelta>) -> Command {
    let secret = secret(seed);
    Command::Roll { secret_hash: secret.digest(), token_prefix: secret.prefix(), grace }
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

fn token(state: &State) -> &machine_token::MachineToken {
    match state {
        State::Present(token) => token,
        State::Absent => panic!("token absent"),
    }
}

/// The four recorded states plus "active but past its expiry", each reached from the start.
fn history(name: &str) -> (Vec<(i64, Command)>, i64) {
    let create = (0, create_command(Some(30)));
    match name {
        "active" => (vec![create], 1),
        "disabled" => (vec![create, (1, Command::Disable)], 2),
        "expired" => (vec![create, (31, Command::Expire)], 32),
        "expired_by_clock" => (vec![create], 31),
        "revoked" => (vec![create, (1, Command::Revoke { reason: None })], 2),
        other => panic!("no history {other}"),
    }
}

fn command(name: &str) -> Command {
    match name {
        "update_name" => {
            Command::Update(Update { name: Some(TokenName::parse("renamed").unwrap()), ..Update::default() })
        }
        "disable" => Command::Disable,
        "enable" => Command::Enable,
        "roll" => roll_command(2, None),
        "transfer" => Command::Transfer { to: other_member() },
        "flag" => Command::Flag { reason: FlagReason::OwnerRemoved },
        "expire" => Command::Expire,
        "revoke" => Command::Revoke { reason: Some("leaked".into()) },
        other => panic!("no command {other}"),
    }
}

/// Then: the event type and the status after it, or the error code.
type Then = Result<(&'static str, Status), &'static str>;

/// given state | when command | then.
const LIFECYCLE: &[(&str, &str, Then)] = &[
    ("active", "update_name", Ok(("MachineTokenUpdated", Status::Active))),
    ("active", "disable", Ok(("MachineTokenDisabled", Status::Disabled))),
    ("active", "enable", Err("invalid_transition")),
    ("active", "roll", Ok(("MachineTokenRolled", Status::Active))),
    ("active", "transfer", Ok(("MachineTokenTransferred", Status::Active))),
    ("active", "flag", Ok(("MachineTokenFlagged", Status::Active))),
    ("active", "expire", Err("not_yet_expired")),
    ("active", "revoke", Ok(("MachineTokenRevoked", Status::Revoked))),
    ("disabled", "update_name", Ok(("MachineTokenUpdated", Status::Disabled))),
    ("disabled", "disable", Err("invalid_transition")),
    ("disabled", "enable", Ok(("MachineTokenEnabled", Status::Active))),
    ("disabled", "roll", Ok(("MachineTokenRolled", Status::Disabled))),
    ("disabled", "transfer", Ok(("MachineTokenTransferred", Status::Disabled))),
    ("disabled", "flag", Ok(("MachineTokenFlagged", Status::Disabled))),
    ("disabled", "expire", Err("invalid_transition")),
    ("disabled", "revoke", Ok(("MachineTokenRevoked", Status::Revoked))),
    ("expired", "update_name", Ok(("MachineTokenUpdated", Status::Expired))),
    ("expired", "disable", Err("invalid_transition")),
    ("expired", "enable", Err("invalid_transition")),
    ("expired", "roll", Ok(("MachineTokenRolled", Status::Active))),
    ("expired", "transfer", Ok(("MachineTokenTransferred", Status::Expired))),
    ("expired", "flag", Ok(("MachineTokenFlagged", Status::Expired))),
    ("expired", "expire", Err("invalid_transition")),
    ("expired", "revoke", Ok(("MachineTokenRevoked", Status::Revoked))),
    ("expired_by_clock", "update_name", Ok(("MachineTokenUpdated", Status::Expired))),
    ("expired_by_clock", "disable", Err("invalid_transition")),
    ("expired_by_clock", "enable", Err("invalid_transition")),
    ("expired_by_clock", "roll", Ok(("MachineTokenRolled", Status::Active))),
    ("expired_by_clock", "transfer", Ok(("MachineTokenTransferred", Status::Expired))),
    ("expired_by_clock", "flag", Ok(("MachineTokenFlagged", Status::Expired))),
    ("expired_by_clock", "expire", Ok(("MachineTokenExpired", Status::Expired))),
    ("expired_by_clock", "revoke", Ok(("MachineTokenRevoked", Status::Revoked))),
    ("revoked", "update_name", Err("invalid_transition")),
    ("revoked", "disable", Err("invalid_transition")),
    ("revoked", "enable", Err("invalid_transition")),
    ("revoked", "roll", Err("invalid_transition")),
    ("revoked", "transfer", Err("invalid_transition")),
    ("revoked", "flag", Err("invalid_transition")),
    ("revoked", "expire", Err("invalid_transition")),
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
                assert_eq!(token(&after).effective_status(ctx.now), *status, "{given_state} + {when}");
            }
            (Err(code), Err(error)) => assert_eq!(error.code(), *code, "{given_state} + {when}"),
            (then, outcome) => panic!("{given_state} + {when}: expected {then:?}, got {outcome:?}"),
        }
    }
}

#[test]
fn the_table_covers_every_state_and_command() {
    let states = ["active", "disabled", "expired", "expired_by_clock", "revoked"];
    let commands = ["update_name", "disable", "enable", "roll", "transfer", "flag", "expire", "revoke"];
    for state in states {
        for command in commands {
            assert!(LIFECYCLE.iter().any(|(s, c, _)| *s == state && *c == command), "missing row {state} + {command}");
        }
    }
}

#[test]
fn create_records_expiry_from_the_given_lifetime() {
    let (events, state) = given(vec![(0, create_command(Some(90)))]);
    assert_eq!(events.len(), 1);
    let token = token(&state);
    assert_eq!(token.status, Status::Active);
    assert_eq!(token.expires_at, Some(T0 + TimeDelta::days(90)));
    assert_eq!(token.created_at, T0);
}

#[test]
fn create_refuses_an_out_of_range_lifetime() {
    for days in [0, machine_token::MAX_EXPIRY_DAYS + 1] {
        let err = decide(&State::Absent, create_command(Some(days)), &at(0)).unwrap_err();
        assert_eq!(err.code(), "invalid_expiry");
    }
}

#[test]
fn create_twice_is_refused_and_commands_on_an_absent_token_are_not_found() {
    let (_, state) = given(vec![(0, create_command(None))]);
    assert_eq!(decide(&state, create_command(None), &at(0)).unwrap_err().code(), "already_exists");
    assert_eq!(decide(&State::Absent, Command::Disable, &at(0)).unwrap_err().code(), "not_found");
}

#[test]
fn a_token_without_expiry_never_expires() {
    let (_, state) = given(vec![(0, create_command(None))]);
    assert_eq!(token(&state).effective_status(T0 + TimeDelta::days(100_000)), Status::Active);
    assert_eq!(decide(&state, Command::Expire, &at(5000)).unwrap_err(), DomainError::NotYetExpired);
}

#[test]
fn roll_replaces_the_secret_and_keeps_identity_owner_conditions_and_scopes() {
    let (_, before) = given(vec![(0, create_command(Some(30)))]);
    let (_, after) = given(vec![(0, create_command(Some(30))), (10, roll_command(2, None))]);
    let (before, after) = (token(&before), token(&after));
    assert_eq!(after.secret_hash, secret(2).digest());
    assert_ne!(after.secret_hash, before.secret_hash);
    assert_eq!(after.token_prefix, secret(2).prefix());
    assert_eq!((after.id, &after.name, after.owner), (before.id, &before.name, before.owner));
    assert_eq!((&after.scopes, &after.conditions), (&before.scopes, &before.conditions));
    // The old value stops at once: no grace was asked for.
    assert_eq!(after.previous_secret, None);
}

#[test]
fn roll_of_an_expired_token_gives_a_new_value_the_original_lifetime() {
    let (events, state) =
        given(vec![(0, create_command(Some(30))), (31, Command::Expire), (40, roll_command(2, None))]);
    let Event::MachineTokenRolled(rolled) = &events[2] else { panic!("expected a roll") };
    assert_eq!(rolled.expires_at, Some(T0 + TimeDelta::days(40 + 30)));
    let token = token(&state);
    assert_eq!(token.status, Status::Active);
    assert_eq!(token.effective_status(T0 + TimeDelta::days(41)), Status::Active);
    assert_eq!(token.effective_status(T0 + TimeDelta::days(70)), Status::Expired);
}

#[test]
fn roll_with_grace_keeps_the_old_value_for_a_bounded_time() {
    let grace = TimeDelta::hours(2);
    let (_, state) = given(vec![(0, create_command(Some(30))), (1, roll_command(2, Some(grace)))]);
    let previous = token(&state).previous_secret.expect("grace recorded");
    assert_eq!(previous.secret_hash, secret(1).digest());
    assert_eq!(previous.valid_until, at(1).now + grace);

    let (_, state) = given(vec![(0, create_command(Some(30)))]);
    let too_long = roll_command(2, Some(machine_token::MAX_ROLL_GRACE + TimeDelta::seconds(1)));
    assert_eq!(decide(&state, too_long, &at(1)).unwrap_err().code(), "grace_period_too_long");
}

#[test]
fn grace_is_refused_when_the_old_value_no_longer_authenticates() {
    for history_name in ["disabled", "expired", "expired_by_clock"] {
        let (commands, day) = history(history_name);
        let (_, state) = given(commands);
        let err = decide(&state, roll_command(2, Some(TimeDelta::hours(1))), &at(day)).unwrap_err();
        assert_eq!(err.code(), "grace_not_applicable", "{history_name}");
    }
}

#[test]
fn a_second_roll_ends_the_grace_of_the_first_value() {
    let (_, state) = given(vec![
        (0, create_command(Some(30))),
        (1, roll_command(2, Some(TimeDelta::hours(2)))),
        (1, roll_command(3, None)),
    ]);
    assert_eq!(token(&state).previous_secret, None);
    assert_eq!(token(&state).secret_hash, secret(3).digest());
}

#[test]
fn revoke_ends_a_grace_period_at_once() {
    let (_, state) = given(vec![
        (0, create_command(Some(30))),
        (1, roll_command(2, Some(TimeDelta::hours(2)))),
        (1, Command::Revoke { reason: None }),
    ]);
    assert_eq!(token(&state).previous_secret, None);
}

#[test]
fn flag_on_member_removal_keeps_the_token_working_until_transfer_clears_it() {
    let (events, state) =
        given(vec![(0, create_command(Some(30))), (1, Command::Flag { reason: FlagReason::OwnerRemoved })]);
    let token_state = token(&state);
    assert_eq!(token_state.flagged.map(|f| f.reason), Some(FlagReason::OwnerRemoved));
    assert_eq!(token_state.flagged.map(|f| f.at), Some(at(1).now));
    assert_eq!(token_state.effective_status(at(1).now), Status::Active);
    assert_eq!(events.len(), 2);

    // Flagging again adds nothing, so the process manager can run twice safely.
    let again = decide(&state, Command::Flag { reason: FlagReason::OwnerRemoved }, &at(2)).unwrap();
    assert!(again.is_empty());

    let events = decide(&state, Command::Transfer { to: other_member() }, &at(2)).unwrap();
    let after = evolve(state, &events[0]);
    assert_eq!(token(&after).flagged, None);
    assert_eq!(token(&after).owner, other_member());
    let Event::MachineTokenTransferred(transferred) = &events[0] else { panic!("transfer") };
    assert_eq!((transferred.from, transferred.to), (owner(), other_member()));
}

#[test]
fn update_changes_only_the_named_fields() {
    let (_, state) = given(vec![(0, create_command(Some(30)))]);
    let update = Update { scopes: Some(Scopes::read_only()), ..Update::default() };
    let events = decide(&state, Command::Update(update), &at(1)).unwrap();
    let after = evolve(state.clone(), &events[0]);
    assert_eq!(token(&after).scopes, Scopes::read_only());
    assert_eq!(token(&after).name, token(&state).name);
    assert_eq!(token(&after).expires_at, token(&state).expires_at);

    let err = decide(&state, Command::Update(Update::default()), &at(1)).unwrap_err();
    assert_eq!(err.code(), "nothing_to_update");
}

#[test]
fn update_may_not_bring_an_expired_token_back() {
    let (commands, day) = history("expired");
    let (_, state) = given(commands);
    let update = Update { expires_in_days: Some(Some(30)), ..Update::default() };
    assert_eq!(decide(&state, Command::Update(update), &at(day)).unwrap_err().code(), "invalid_transition");
}

#[test]
fn update_can_remove_the_expiry_of_an_active_token() {
    let (_, state) = given(vec![(0, create_command(Some(30)))]);
    let update = Update { expires_in_days: Some(None), ..Update::default() };
    let events = decide(&state, Command::Update(update), &at(1)).unwrap();
    let after = evolve(state, &events[0]);
    assert_eq!(token(&after).expires_at, None);
    assert_eq!(token(&after).effective_status(T0 + TimeDelta::days(1000)), Status::Active);
}

#[test]
fn events_round_trip_through_their_recorded_form() {
    let (events, state) = given(vec![
        (0, create_command(Some(30))),
        (1, Command::Disable),
        (2, Command::Enable),
        (3, roll_command(2, Some(TimeDelta::hours(1)))),
        (4, Command::Flag { reason: FlagReason::OwnerRemoved }),
        (5, Command::Transfer { to: other_member() }),
        (31, roll_command(3, None)),
        (62, Command::Expire),
        (63, Command::Revoke { reason: Some("rotated away".into()) }),
    ]);
    let mut decoded = Vec::new();
    for event in &events {
        let (event_type, payload) = credledger_domain::event::encode(event).unwrap();
        match credledger_domain::DomainEvent::decode(&event_type, &payload).unwrap() {
            credledger_domain::DomainEvent::MachineToken(e) => decoded.push(e),
            other => panic!("decoded as {other:?}"),
        }
    }
    assert_eq!(decoded, events);
    assert_eq!(fold(&decoded), state);
}
