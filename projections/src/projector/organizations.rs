//! Organizations, members, projects and environments.

use credledger_domain::DomainEvent;
use credledger_domain::organization::Event;
use credledger_store::RecordedEvent;
use rusqlite::{Transaction, params};

use super::{Effects, Projector, exec, millis};
use crate::ProjectionError;

#[derive(Debug)]
pub(crate) struct Organizations;

impl Projector for Organizations {
    fn name(&self) -> &'static str {
        "organizations"
    }

    fn apply(
        &self,
        tx: &Transaction<'_>,
        event: &RecordedEvent,
        decoded: Option<&DomainEvent>,
        _effects: &mut Effects,
    ) -> Result<(), ProjectionError> {
        let Some(DomainEvent::Organization(org_event)) = decoded else { return Ok(()) };
        let org_id = event.org_id.map(|id| id.to_string());
        let at = millis(event.occurred_at);
        match org_event {
            Event::OrgCreated(created) => {
                exec(
                    tx,
                    "INSERT INTO organizations (org_id, name, created_at) VALUES (?1, ?2, ?3)",
                    params![created.org_id.to_string(), created.name.as_str(), millis(created.created_at)],
                )?;
            }
            Event::MemberAdded(added) => {
                exec(
                    tx,
                    "INSERT INTO members (member_id, org_id, email, role, added_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![added.member_id.to_string(), org_id, added.email.as_str(), added.role.as_str(), at],
                )?;
            }
            Event::MemberRoleChanged(changed) => {
                exec(
                    tx,
                    "UPDATE members SET role = ?2 WHERE member_id = ?1",
                    params![changed.member_id.to_string(), changed.to.as_str()],
                )?;
            }
            Event::MemberRemoved(removed) => {
                exec(
                    tx,
                    "UPDATE members SET removed = 1, removed_at = ?2 WHERE member_id = ?1",
                    params![removed.member_id.to_string(), at],
                )?;
            }
            Event::ProjectCreated(created) => {
                exec(
                    tx,
                    "INSERT INTO projects (project_id, org_id, name, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![created.project_id.to_string(), org_id, created.name.as_str(), at],
                )?;
                for environment in &created.environments {
                    exec(
                        tx,
                        "INSERT INTO environments (project_id, name) VALUES (?1, ?2)",
                        params![created.project_id.to_string(), environment.as_str()],
                    )?;
                }
            }
            Event::EnvironmentAdded(added) => {
                exec(
                    tx,
                    "INSERT INTO environments (project_id, name) VALUES (?1, ?2)",
                    params![added.project_id.to_string(), added.name.as_str()],
                )?;
            }
        }
        Ok(())
    }
}
