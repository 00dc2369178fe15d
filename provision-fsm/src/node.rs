//! The conductor's node states: the part of Ironic's provision state machine our conductor
//! drives, as a transition table plus timeouts for the waiting states.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::Time;

/// An Ironic node provision state. Serialized and displayed with Ironic's exact strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum NodeState {
    /// `enroll`: known, BMC not yet verified.
    #[serde(rename = "enroll")]
    Enroll,
    /// `verifying`: checking the BMC credentials and power.
    #[serde(rename = "verifying")]
    Verifying,
    /// `manageable`: verified, not offered for deployment.
    #[serde(rename = "manageable")]
    Manageable,
    /// `inspecting`: reading the hardware (out of band, or starting the agent).
    #[serde(rename = "inspecting")]
    Inspecting,
    /// `inspect wait`: waiting for the agent's inventory.
    #[serde(rename = "inspect wait")]
    InspectWait,
    /// `inspect failed`.
    #[serde(rename = "inspect failed")]
    InspectFailed,
    /// `available`: clean, ready to deploy.
    #[serde(rename = "available")]
    Available,
    /// `deploying`: booting the agent or the live ISO.
    #[serde(rename = "deploying")]
    Deploying,
    /// `wait call-back`: waiting for the agent to write the image.
    #[serde(rename = "wait call-back")]
    WaitCallBack,
    /// `deploy failed`.
    #[serde(rename = "deploy failed")]
    DeployFailed,
    /// `active`: deployed.
    #[serde(rename = "active")]
    Active,
    /// `deleting`: tearing down a deployment.
    #[serde(rename = "deleting")]
    Deleting,
    /// `cleaning`: erasing metadata.
    #[serde(rename = "cleaning")]
    Cleaning,
    /// `clean wait`: waiting for the agent to clean.
    #[serde(rename = "clean wait")]
    CleanWait,
    /// `clean failed`: only `manage` leaves it.
    #[serde(rename = "clean failed")]
    CleanFailed,
    /// `error`: tear-down failed; only `delete` or `rebuild` leave it.
    #[serde(rename = "error")]
    Error,
}

impl NodeState {
    /// Every state, in lifecycle order.
    pub const ALL: [NodeState; 16] = [
        NodeState::Enroll,
        NodeState::Verifying,
        NodeState::Manageable,
        NodeState::Inspecting,
        NodeState::InspectWait,
        NodeState::InspectFailed,
        NodeState::Available,
        NodeState::Deploying,
        NodeState::WaitCallBack,
        NodeState::DeployFailed,
        NodeState::Active,
        NodeState::Deleting,
        NodeState::Cleaning,
        NodeState::CleanWait,
        NodeState::CleanFailed,
        NodeState::Error,
    ];

    /// Ironic's string for the state.
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Enroll => "enroll",
            NodeState::Verifying => "verifying",
            NodeState::Manageable => "manageable",
            NodeState::Inspecting => "inspecting",
            NodeState::InspectWait => "inspect wait",
            NodeState::InspectFailed => "inspect failed",
            NodeState::Available => "available",
            NodeState::Deploying => "deploying",
            NodeState::WaitCallBack => "wait call-back",
            NodeState::DeployFailed => "deploy failed",
            NodeState::Active => "active",
            NodeState::Deleting => "deleting",
            NodeState::Cleaning => "cleaning",
            NodeState::CleanWait => "clean wait",
            NodeState::CleanFailed => "clean failed",
            NodeState::Error => "error",
        }
    }

    /// Parses Ironic's string.
    pub fn from_name(name: &str) -> Option<NodeState> {
        NodeState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Stable states move only on an API request.
    pub fn is_stable(self) -> bool {
        matches!(
            self,
            NodeState::Enroll
                | NodeState::Manageable
                | NodeState::Available
                | NodeState::Active
                | NodeState::Error
        )
    }

    /// The state Ironic reports as `target_provision_state` while in this state.
    pub fn target(self) -> Option<NodeState> {
        match self {
            NodeState::Verifying
            | NodeState::Inspecting
            | NodeState::InspectWait
            | NodeState::InspectFailed => Some(NodeState::Manageable),
            NodeState::Deploying | NodeState::WaitCallBack | NodeState::DeployFailed => {
                Some(NodeState::Active)
            }
            NodeState::Deleting
            | NodeState::Cleaning
            | NodeState::CleanWait
            | NodeState::CleanFailed => Some(NodeState::Available),
            _ => None,
        }
    }

    /// Failure states.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            NodeState::InspectFailed
                | NodeState::DeployFailed
                | NodeState::CleanFailed
                | NodeState::Error
        )
    }

    /// The waiting states that time out, and the failure state they time out into.
    pub fn timeout_target(self) -> Option<NodeState> {
        match self {
            NodeState::InspectWait => Some(NodeState::InspectFailed),
            NodeState::WaitCallBack => Some(NodeState::DeployFailed),
            NodeState::CleanWait => Some(NodeState::CleanFailed),
            _ => None,
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An event: an API verb (`manage`, `provide`, `inspect`, `deploy`, `delete`, `abort`,
/// `rebuild`, `clean`) or a conductor event (`done`, `fail`, `wait`, `resume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeEvent {
    /// Verify and manage.
    Manage,
    /// Clean and offer for deployment.
    Provide,
    /// Inspect the hardware.
    Inspect,
    /// Deploy.
    Deploy,
    /// Tear down.
    Delete,
    /// Abort a waiting operation.
    Abort,
    /// Deploy again.
    Rebuild,
    /// Manual cleaning.
    Clean,
    /// The current step finished.
    Done,
    /// The current step failed.
    Fail,
    /// The current step now waits for the agent.
    Wait,
    /// The agent called back; continue.
    Resume,
}

impl NodeEvent {
    /// Ironic's name of the event.
    pub fn name(self) -> &'static str {
        match self {
            NodeEvent::Manage => "manage",
            NodeEvent::Provide => "provide",
            NodeEvent::Inspect => "inspect",
            NodeEvent::Deploy => "deploy",
            NodeEvent::Delete => "delete",
            NodeEvent::Abort => "abort",
            NodeEvent::Rebuild => "rebuild",
            NodeEvent::Clean => "clean",
            NodeEvent::Done => "done",
            NodeEvent::Fail => "fail",
            NodeEvent::Wait => "wait",
            NodeEvent::Resume => "resume",
        }
    }
}

/// One row of the node transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeTransition {
    /// From.
    pub from: NodeState,
    /// On.
    pub event: NodeEvent,
    /// To.
    pub to: NodeState,
}

const fn t(from: NodeState, event: NodeEvent, to: NodeState) -> NodeTransition {
    NodeTransition { from, event, to }
}

use NodeEvent as E;
use NodeState as S;

/// Ironic's transitions (`ironic/common/state_machine.py`) among the states our conductor
/// uses; the adopt, rescue, service and hold states are left out.
pub const NODE_TRANSITIONS: &[NodeTransition] = &[
    t(S::Enroll, E::Manage, S::Verifying),
    t(S::Verifying, E::Done, S::Manageable),
    t(S::Verifying, E::Fail, S::Enroll),
    t(S::Manageable, E::Clean, S::Cleaning),
    t(S::Manageable, E::Inspect, S::Inspecting),
    t(S::Manageable, E::Provide, S::Cleaning),
    t(S::Inspecting, E::Done, S::Manageable),
    t(S::Inspecting, E::Fail, S::InspectFailed),
    t(S::Inspecting, E::Wait, S::InspectWait),
    t(S::InspectWait, E::Abort, S::InspectFailed),
    t(S::InspectWait, E::Done, S::Manageable),
    t(S::InspectWait, E::Fail, S::InspectFailed),
    t(S::InspectWait, E::Resume, S::Inspecting),
    t(S::InspectFailed, E::Inspect, S::Inspecting),
    t(S::InspectFailed, E::Manage, S::Manageable),
    t(S::Available, E::Deploy, S::Deploying),
    t(S::Available, E::Manage, S::Manageable),
    t(S::Deploying, E::Done, S::Active),
    t(S::Deploying, E::Fail, S::DeployFailed),
    t(S::Deploying, E::Wait, S::WaitCallBack),
    t(S::WaitCallBack, E::Abort, S::DeployFailed),
    t(S::WaitCallBack, E::Delete, S::Deleting),
    t(S::WaitCallBack, E::Fail, S::DeployFailed),
    t(S::WaitCallBack, E::Resume, S::Deploying),
    t(S::DeployFailed, E::Delete, S::Deleting),
    t(S::DeployFailed, E::Deploy, S::Deploying),
    t(S::DeployFailed, E::Rebuild, S::Deploying),
    t(S::Active, E::Delete, S::Deleting),
    t(S::Active, E::Rebuild, S::Deploying),
    t(S::Deleting, E::Clean, S::Cleaning),
    t(S::Deleting, E::Fail, S::Error),
    t(S::Cleaning, E::Done, S::Available),
    t(S::Cleaning, E::Fail, S::CleanFailed),
    t(S::Cleaning, E::Manage, S::Manageable),
    t(S::Cleaning, E::Wait, S::CleanWait),
    t(S::CleanWait, E::Abort, S::CleanFailed),
    t(S::CleanWait, E::Fail, S::CleanFailed),
    t(S::CleanWait, E::Resume, S::Cleaning),
    t(S::CleanFailed, E::Manage, S::Manageable),
    t(S::Error, E::Delete, S::Deleting),
    t(S::Error, E::Rebuild, S::Deploying),
];

/// How long the waiting states may wait (Ironic's `[conductor]*_timeout`, 1800 s each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTimeouts {
    /// `inspect wait`.
    pub inspect_wait: Duration,
    /// `wait call-back`.
    pub deploy_callback: Duration,
    /// `clean wait`.
    pub clean_callback: Duration,
}

impl Default for NodeTimeouts {
    fn default() -> Self {
        let d = Duration::from_secs(1800);
        NodeTimeouts {
            inspect_wait: d,
            deploy_callback: d,
            clean_callback: d,
        }
    }
}

impl NodeTimeouts {
    fn for_state(&self, state: NodeState) -> Option<Duration> {
        match state {
            NodeState::InspectWait => Some(self.inspect_wait),
            NodeState::WaitCallBack => Some(self.deploy_callback),
            NodeState::CleanWait => Some(self.clean_callback),
            _ => None,
        }
    }
}

/// What the conductor does on entering a state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeAction {
    /// Connect to the BMC, check the credentials, read the power state.
    VerifyBmc,
    /// Read the hardware inventory (out of band) or boot the agent to inspect.
    StartInspection,
    /// Boot the deploy agent or the live ISO and start deploying.
    StartDeployment,
    /// Start cleaning (erase metadata, or run the agent's clean steps).
    StartCleaning,
    /// Tear the deployment down: eject media, power off.
    TearDown,
    /// Abort what the agent is doing (power off, eject).
    AbortOperation,
    /// Record the failure for the API (`last_error`).
    RecordFailure {
        /// Why.
        reason: String,
    },
}

/// A node's provisioning status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The provision state.
    pub state: NodeState,
    /// When the state was entered.
    pub entered_at: Time,
    /// When a waiting state times out.
    pub deadline: Option<Time>,
    /// The last failure, for the API's `last_error`.
    pub last_error: Option<String>,
}

/// The result of a node step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStep {
    /// The node after the event.
    pub node: Node,
    /// What the conductor should do now.
    pub actions: Vec<NodeAction>,
    /// When to call [`Node::on_timer`] next, if a timeout is pending.
    pub wake_at: Option<Time>,
    /// The table row taken.
    pub transition: NodeTransition,
}

/// An event that the current state does not accept (Ironic's `InvalidState`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a node in state {state}", event.name())]
pub struct InvalidNodeEvent {
    /// The node's state.
    pub state: NodeState,
    /// The event refused.
    pub event: NodeEvent,
}

impl Node {
    /// A new node in `enroll`.
    pub fn enroll(now: Time) -> Node {
        Node {
            state: NodeState::Enroll,
            entered_at: now,
            deadline: None,
            last_error: None,
        }
    }

    /// The transition `event` takes from `state`, if the table has one.
    pub fn transition_for(state: NodeState, event: NodeEvent) -> Option<NodeTransition> {
        NODE_TRANSITIONS
            .iter()
            .find(|t| t.from == state && t.event == event)
            .copied()
    }

    /// Applies `event` at time `now`. `reason` is recorded for `fail` and `abort`.
    pub fn handle(
        &self,
        event: NodeEvent,
        reason: Option<&str>,
        now: Time,
        timeouts: &NodeTimeouts,
    ) -> Result<NodeStep, InvalidNodeEvent> {
        let transition = Node::transition_for(self.state, event).ok_or(InvalidNodeEvent {
            state: self.state,
            event,
        })?;
        let to = transition.to;
        let deadline = timeouts.for_state(to).map(|d| now + d);
        let mut actions = Vec::new();
        let mut last_error = self.last_error.clone();
        if to.is_failure() {
            let reason = reason
                .map(str::to_string)
                .unwrap_or_else(|| format!("{} failed", self.state));
            actions.push(NodeAction::RecordFailure {
                reason: reason.clone(),
            });
            last_error = Some(reason);
        } else if matches!(event, NodeEvent::Done) {
            last_error = None;
        }
        if event == NodeEvent::Abort {
            actions.push(NodeAction::AbortOperation);
        }
        actions.extend(match (to, event) {
            (NodeState::Verifying, _) => Some(NodeAction::VerifyBmc),
            (NodeState::Inspecting, NodeEvent::Manage | NodeEvent::Inspect) => {
                Some(NodeAction::StartInspection)
            }
            (NodeState::Deploying, NodeEvent::Deploy | NodeEvent::Rebuild) => {
                Some(NodeAction::StartDeployment)
            }
            (NodeState::Cleaning, NodeEvent::Clean | NodeEvent::Provide) => {
                Some(NodeAction::StartCleaning)
            }
            (NodeState::Deleting, _) => Some(NodeAction::TearDown),
            _ => None,
        });
        Ok(NodeStep {
            node: Node {
                state: to,
                entered_at: now,
                deadline,
                last_error,
            },
            actions,
            wake_at: deadline,
            transition,
        })
    }

    /// Moves a waiting state whose deadline has passed to its failure state (the
    /// conductor's periodic timeout check). `None` when nothing is due.
    pub fn on_timer(&self, now: Time) -> Option<NodeStep> {
        let deadline = self.deadline?;
        let to = self.state.timeout_target()?;
        if now < deadline {
            return None;
        }
        let reason = format!(
            "timeout reached while in {} after {:?}",
            self.state,
            deadline.saturating_sub(self.entered_at)
        );
        Some(NodeStep {
            node: Node {
                state: to,
                entered_at: now,
                deadline: None,
                last_error: Some(reason.clone()),
            },
            actions: vec![
                NodeAction::AbortOperation,
                NodeAction::RecordFailure { reason },
            ],
            wake_at: None,
            transition: NodeTransition {
                from: self.state,
                event: NodeEvent::Fail,
                to,
            },
        })
    }
}
