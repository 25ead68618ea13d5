//! Work the server does on its own: the first-start server-admin token, the process manager that
//! reacts to MemberRemoved, the expiry sweeper, and the writer of coalesced denials.
//!
//! Background commands derive their event ids from their cause (idempotency seeds), so running
//! one twice, after a restart or on two nodes, records it once.

use std::time::Duration as StdDuration;

use credledger_domain::personal_token::{self, NewPersonalToken};
use credledger_domain::token::SecretToken;
use credledger_domain::values::TokenName;
use credledger_domain::{Actor, CredentialId, DomainEvent, FlagReason, MemberId, OrgId, machine_token, organization};
use credledger_domain::{machine_identity, service_credential};
use credledger_projections::Credential;
use credledger_projections::queries::CredentialFilter;
use futures::StreamExt;

use crate::command::{self, Origin};
use crate::problem::Problem;
use crate::{AppState, random_bytes};

/// The server-admin PAT's id: fixed, so that two nodes starting on one empty ledger create it
/// once (the second append finds the stream and is refused).
pub const SERVER_ADMIN_TOKEN_ID: CredentialId =
    CredentialId::from_uuid(uuid::Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0001));

/// Creates the server-admin PAT if the ledger has none, and returns its plaintext: the only time
/// it exists outside the caller's hands.
pub async fn bootstrap_server_admin(app: &AppState) -> Result<Option<SecretToken>, Problem> {
    if server_admin_exists(app).await? {
        return Ok(None);
    }
    let stream = personal_token::stream(SERVER_ADMIN_TOKEN_ID);
    let secret = SecretToken::personal_token(random_bytes()?);
    let command = personal_token::Command::Create(Box::new(NewPersonalToken {
        id: SERVER_ADMIN_TOKEN_ID,
        owner: None,
        name: TokenName::parse("server admin")?,
        secret_hash: secret.digest(),
        token_prefix: secret.prefix(),
        expires_in_days: None,
    }));
    let origin = Origin { actor: Actor::system("bootstrap"), request: None, idempotency_seed: None };
    match command::execute::<command::PersonalToken>(app, &stream, None, &origin, command).await {
        Ok(_) => Ok(Some(secret)),
        // Another node created it first.
        Err(problem) if problem.code == "already_exists" => Ok(None),
        Err(problem) => Err(problem),
    }
}

/// Whether the ledger has its server-admin token (created by any node, at any start).
pub async fn server_admin_exists(app: &AppState) -> Result<bool, Problem> {
    let stream = personal_token::stream(SERVER_ADMIN_TOKEN_ID);
    Ok(!app.store.read_stream(&stream, 0).await?.is_empty())
}

/// Follows the log and, for every MemberRemoved, flags each credential the member owns and
/// revokes its PATs. Driven by the log rather than by the request that removed the member, so
/// that it also happens for removals appended by another node, and after a crash.
pub async fn run_member_removals(app: AppState) {
    const JOB: &str = "member-removals";
    loop {
        // Resume after the last removal handled; on a lost subscription, start over from there.
        let from = match app.projections.job_checkpoint(JOB) {
            Ok(position) => position + 1,
            Err(error) => {
                tracing::error!(%error, "the member-removal job cannot read its checkpoint; retrying");
                tokio::time::sleep(StdDuration::from_secs(1)).await;
                continue;
            }
        };
        let mut events = app.store.subscribe(from);
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    tracing::error!(%error, "the member-removal job lost the log; resubscribing");
                    break;
                }
            };
            if event.event_type != "MemberRemoved" {
                continue;
            }
            let Ok(DomainEvent::Organization(organization::Event::MemberRemoved(removed))) =
                DomainEvent::decode(&event.event_type, &event.payload)
            else {
                continue;
            };
            let Some(org) = event.org_id else { continue };
            // A leader that stalled past its lease leaves the removal to the one that took over
            // (this job stops as soon as the lease's loss is announced).
            while !app.store.leads_now() {
                tokio::time::sleep(StdDuration::from_millis(100)).await;
            }
            // Retry until done: a failure here must not skip the member's credentials.
            while let Err(problem) =
                flag_credentials_of(&app, org, removed.member_id, event.position, &event.event_id.to_string()).await
            {
                tracing::warn!(code = problem.code, detail = %problem.detail, "flagging a removed member's credentials failed; retrying");
                tokio::time::sleep(StdDuration::from_secs(1)).await;
            }
            if let Err(error) = app.projections.save_job_checkpoint(JOB, event.position) {
                tracing::error!(%error, "the member-removal job cannot save its checkpoint");
            }
        }
        tokio::time::sleep(StdDuration::from_secs(1)).await;
    }
}

pub(crate) async fn flag_credentials_of(
    app: &AppState,
    org: OrgId,
    member: MemberId,
    position: u64,
    cause: &str,
) -> Result<(), Problem> {
    // The inventory must include everything up to the removal.
    app.projections.wait_for(position).await?;
    let filter = CredentialFilter { owner: Some(member), ..CredentialFilter::default() };
    let mut after = None;
    loop {
        let page = app.projections.credentials(org, &filter, app.clock.now(), after, 200)?;
        let Some(last) = page.last() else { return Ok(()) };
        after = Some(last.credential.id());
        for record in page {
            let id = record.credential.id();
            let origin = Origin {
                actor: Actor::system("member-removal"),
                request: None,
                idempotency_seed: Some(format!("{cause}:{id}")),
            };
            let result = match record.credential {
                Credential::MachineToken(token) if token.status != credledger_domain::Status::Revoked => {
                    let command = machine_token::Command::Flag { reason: FlagReason::OwnerRemoved };
                    command::execute::<command::MachineToken>(
                        app,
                        &machine_token::stream(id),
                        Some(org),
                        &origin,
                        command,
                    )
                    .await
                    .map(|_| ())
                }
                Credential::ServiceCredential(credential)
                    if credential.status != credledger_domain::Status::Revoked =>
                {
                    let command = service_credential::Command::Flag { reason: FlagReason::OwnerRemoved };
                    command::execute::<command::ServiceCredential>(
                        app,
                        &service_credential::stream(id),
                        Some(org),
                        &origin,
                        command,
                    )
                    .await
                    .map(|_| ())
                }
                Credential::Machine(machine) if machine.status != credledger_domain::Status::Revoked => {
                    let command = machine_identity::Command::Flag { reason: FlagReason::OwnerRemoved };
                    command::execute::<command::MachineIdentity>(
                        app,
                        &machine_identity::stream(id),
                        Some(org),
                        &origin,
                        command,
                    )
                    .await
                    .map(|_| ())
                }
                Credential::PersonalToken(token) if token.status != credledger_domain::Status::Revoked => {
                    let command = personal_token::Command::Revoke { reason: Some("member removed".to_owned()) };
                    command::execute::<command::PersonalToken>(
                        app,
                        &personal_token::stream(id),
                        Some(org),
                        &origin,
                        command,
                    )
                    .await
                    .map(|_| ())
                }
                _ => Ok(()),
            };
            match result {
                // Revoked meanwhile: nothing left to flag.
                Err(problem) if problem.code == "invalid_transition" => {}
                other => other?,
            }
        }
    }
}

/// Appends MachineTokenExpired for every active token whose expiry has passed, so that the trail
/// shows it. Authentication does not wait for it: expiry is decided by the clock.
pub async fn run_expiry_sweeper(app: AppState, every: StdDuration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if !app.store.leads_now() {
            continue;
        }
        if let Err(problem) = sweep_expired(&app).await {
            tracing::warn!(code = problem.code, detail = %problem.detail, "the expiry sweep failed");
        }
    }
}

pub async fn sweep_expired(app: &AppState) -> Result<usize, Problem> {
    let expired = app.projections.expired_but_active(app.clock.now(), 500)?;
    let mut swept = 0;
    for credential in expired {
        let Credential::MachineToken(token) = credential else { continue };
        let origin = Origin {
            actor: Actor::system("expiry-sweeper"),
            request: None,
            idempotency_seed: Some(format!("expire:{}:{:?}", token.id, token.expires_at)),
        };
        let stream = machine_token::stream(token.id);
        match command::execute::<command::MachineToken>(
            app,
            &stream,
            Some(token.org_id),
            &origin,
            machine_token::Command::Expire,
        )
        .await
        {
            Ok(_) => swept += 1,
            // Revoked, rolled or already expired meanwhile.
            Err(problem) if matches!(problem.code, "invalid_transition" | "not_yet_expired") => {}
            // One stuck token must not hold up the others: report it and go on.
            Err(problem) => {
                tracing::warn!(credential = %token.id, code = problem.code, detail = %problem.detail, "recording an expiry failed");
            }
        }
    }
    Ok(swept)
}

/// Writes coalesced denials once their second has passed, until `stop` turns true; then writes
/// every denial still pending. It stops only between flushes, so none is lost half-written.
pub async fn run_denial_writer(app: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(StdDuration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => app.usage.flush_denials(app.clock.now(), false).await,
            // A closed channel (the server is gone) stops the writer too.
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { break },
        }
    }
    app.usage.flush_denials(app.clock.now(), true).await;
}
