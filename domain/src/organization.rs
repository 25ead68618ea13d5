//! The organization aggregate: the tenant, its members and their roles, its projects and their
//! environments.
//!
//! Rules: an organization always keeps at least one owner; an email belongs to at most one
//! current member; project names are unique in the organization and environment names in their
//! project. A removed member stays in the state (marked removed) so that the trail can name them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::names::{Email, Slug};
use crate::values::Role;
use crate::{MemberId, OrgId, ProjectId};

const AGGREGATE: &str = "organization";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: OrgId,
    pub name: Slug,
    pub created_at: DateTime<Utc>,
    pub members: BTreeMap<MemberId, Member>,
    pub projects: BTreeMap<ProjectId, Project>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub email: Email,
    pub role: Role,
    pub removed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub name: Slug,
    pub environments: BTreeSet<Slug>,
}

impl Organization {
    /// The current (not removed) member with this id.
    pub fn member(&self, id: MemberId) -> Option<&Member> {
        self.members.get(&id).filter(|member| !member.removed)
    }

    /// The current member with this email.
    pub fn member_by_email(&self, email: &Email) -> Option<(MemberId, &Member)> {
        self.members
            .iter()
            .find(|(_, member)| !member.removed && &member.email == email)
            .map(|(id, member)| (*id, member))
    }

    pub fn project_by_name(&self, name: &Slug) -> Option<(ProjectId, &Project)> {
        self.projects.iter().find(|(_, project)| &project.name == name).map(|(id, p)| (*id, p))
    }

    fn owners(&self) -> usize {
        self.members.values().filter(|m| !m.removed && m.role == Role::Owner).count()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum State {
    #[default]
    Absent,
    Present(Box<Organization>),
}

#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Create { id: OrgId, name: Slug, owner_id: MemberId, owner_email: Email },
    AddMember { member_id: MemberId, email: Email, role: Role },
    ChangeRole { member_id: MemberId, role: Role },
    RemoveMember { member_id: MemberId },
    CreateProject { project_id: ProjectId, name: Slug, environments: Vec<Slug> },
    AddEnvironment { project_id: ProjectId, name: Slug },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum Event {
    OrgCreated(OrgCreated),
    MemberAdded(MemberAdded),
    MemberRoleChanged(MemberRoleChanged),
    MemberRemoved(MemberRemoved),
    ProjectCreated(ProjectCreated),
    EnvironmentAdded(EnvironmentAdded),
}

impl Event {
    pub const TYPES: [&'static str; 6] =
        ["OrgCreated", "MemberAdded", "MemberRoleChanged", "MemberRemoved", "ProjectCreated", "EnvironmentAdded"];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgCreated {
    pub org_id: OrgId,
    pub name: Slug,
    #[serde(with = "crate::time_format")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberAdded {
    pub member_id: MemberId,
    pub email: Email,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRoleChanged {
    pub member_id: MemberId,
    pub from: Role,
    pub to: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRemoved {
    pub member_id: MemberId,
    pub email: Email,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectCreated {
    pub project_id: ProjectId,
    pub name: Slug,
    pub environments: Vec<Slug>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentAdded {
    pub project_id: ProjectId,
    pub name: Slug,
}

pub fn stream(id: OrgId) -> String {
    format!("org-{id}")
}

pub fn decide(state: &State, command: Command, ctx: &Context) -> Result<Vec<Event>, DomainError> {
    let (org, command) = match (state, command) {
        (State::Absent, Command::Create { id, name, owner_id, owner_email }) => {
            return Ok(vec![
                Event::OrgCreated(OrgCreated { org_id: id, name, created_at: ctx.now }),
                Event::MemberAdded(MemberAdded { member_id: owner_id, email: owner_email, role: Role::Owner }),
            ]);
        }
        (State::Absent, _) => return Err(DomainError::NotFound { aggregate: AGGREGATE }),
        (State::Present(_), Command::Create { .. }) => {
            return Err(DomainError::AlreadyExists { aggregate: AGGREGATE });
        }
        (State::Present(org), command) => (org, command),
    };
    let event = match command {
        Command::Create { .. } => return Err(DomainError::AlreadyExists { aggregate: AGGREGATE }),
        Command::AddMember { member_id, email, role } => {
            if org.member_by_email(&email).is_some() {
                return Err(DomainError::MemberExists);
            }
            if org.members.contains_key(&member_id) {
                return Err(DomainError::AlreadyExists { aggregate: "member" });
            }
            Event::MemberAdded(MemberAdded { member_id, email, role })
        }
        Command::ChangeRole { member_id, role } => {
            let member = org.member(member_id).ok_or(DomainError::MemberNotFound)?;
            if member.role == role {
                return Ok(Vec::new());
            }
            if member.role == Role::Owner && org.owners() == 1 {
                return Err(DomainError::LastOwner);
            }
            Event::MemberRoleChanged(MemberRoleChanged { member_id, from: member.role, to: role })
        }
        Command::RemoveMember { member_id } => {
            let member = org.member(member_id).ok_or(DomainError::MemberNotFound)?;
            if member.role == Role::Owner && org.owners() == 1 {
                return Err(DomainError::LastOwner);
            }
            Event::MemberRemoved(MemberRemoved { member_id, email: member.email.clone() })
        }
        Command::CreateProject { project_id, name, environments } => {
            if org.project_by_name(&name).is_some() || org.projects.contains_key(&project_id) {
                return Err(DomainError::ProjectExists);
            }
            let unique: BTreeSet<Slug> = environments.into_iter().collect();
            Event::ProjectCreated(ProjectCreated { project_id, name, environments: unique.into_iter().collect() })
        }
        Command::AddEnvironment { project_id, name } => {
            let project = org.projects.get(&project_id).ok_or(DomainError::ProjectNotFound)?;
            if project.environments.contains(&name) {
                return Err(DomainError::EnvironmentExists);
            }
            Event::EnvironmentAdded(EnvironmentAdded { project_id, name })
        }
    };
    Ok(vec![event])
}

pub fn evolve(state: State, event: &Event) -> State {
    let mut org = match (state, event) {
        (State::Absent, Event::OrgCreated(created)) => {
            return State::Present(Box::new(Organization {
                id: created.org_id,
                name: created.name.clone(),
                created_at: created.created_at,
                members: BTreeMap::new(),
                projects: BTreeMap::new(),
            }));
        }
        (State::Absent, _) => return State::Absent,
        (State::Present(org), _) => org,
    };
    match event {
        Event::OrgCreated(_) => {}
        Event::MemberAdded(added) => {
            org.members
                .insert(added.member_id, Member { email: added.email.clone(), role: added.role, removed: false });
        }
        Event::MemberRoleChanged(changed) => {
            if let Some(member) = org.members.get_mut(&changed.member_id) {
                member.role = changed.to;
            }
        }
        Event::MemberRemoved(removed) => {
            if let Some(member) = org.members.get_mut(&removed.member_id) {
                member.removed = true;
            }
        }
        Event::ProjectCreated(created) => {
            org.projects.insert(
                created.project_id,
                Project { name: created.name.clone(), environments: created.environments.iter().cloned().collect() },
            );
        }
        Event::EnvironmentAdded(added) => {
            if let Some(project) = org.projects.get_mut(&added.project_id) {
                project.environments.insert(added.name.clone());
            }
        }
    }
    State::Present(org)
}
