//! What the step journal records: the steps, where each is, where the
//! whole run is, and the note each step leaves of how to undo it.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The steps of the upgrade, in order (the runbook, `flow::upgrade::runbook`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// While 7.1 takes mail: the 9.1 cluster made ready beside it, with the
    /// last 24 hours of policy events.
    Presync,
    /// Stop the 7.1 services and database. Mail downtime starts.
    Quiesce,
    /// Archive the program tree and system files; move the 7.1 data directory.
    Snapshot,
    /// The 9.1 cluster into place; configuration and the rest of the last 24 hours.
    Migrate,
    /// 9.1 program tree, ini files, services. Mail downtime ends.
    Switch,
    /// Record what rollback needs.
    RegisterRollback,
}

impl Step {
    /// Every step, in the order they run.
    pub const ALL: [Step; 6] = [
        Step::Presync,
        Step::Quiesce,
        Step::Snapshot,
        Step::Migrate,
        Step::Switch,
        Step::RegisterRollback,
    ];

    /// The name used in the journal, logs and messages.
    pub fn name(self) -> &'static str {
        match self {
            Step::Presync => "presync",
            Step::Quiesce => "quiesce",
            Step::Snapshot => "snapshot",
            Step::Migrate => "migrate",
            Step::Switch => "switch",
            Step::RegisterRollback => "register-rollback",
        }
    }

    /// The step after this one.
    pub fn next(self) -> Option<Step> {
        let index = Step::ALL.iter().position(|s| *s == self)?;
        Step::ALL.get(index + 1).copied()
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where one step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// Begun; its effects may be partial.
    Started,
    /// Finished.
    Done,
    /// Being undone; its undo may be partial.
    Undoing,
    /// Undone.
    Undone,
}

/// Where the whole run is. The transitions: `InProgress` → `Completed`
/// (the last step done) or → `RollingBack` (a step failed, or recovery of
/// an interrupted run); `Completed` → `RollingBack` (imss-rollback only);
/// `RollingBack` → `RolledBack` (every step undone). `RolledBack` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// Steps are running (or were, when the machine went down).
    InProgress,
    /// Every step is done: 9.1 runs, rollback is possible until finalized.
    Completed,
    /// Undoing the done steps, newest first.
    RollingBack,
    /// Back on 7.1; the journal stays as the record of the attempt.
    RolledBack,
}

/// What undoing one step needs, noted in the journal before the step's
/// first effect: one variant per step, holding exactly what its undo
/// needs. A step whose record has no note made no change yet, and its
/// undo does nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "kebab-case")]
pub enum Undo {
    /// presync: stop the staged 9.1 cluster if it runs, and remove its
    /// data directory (inside the root).
    RemoveStagedCluster {
        /// The staged cluster's data directory.
        data_dir: PathBuf,
    },
    /// quiesce: start 7.1 again through its control script and check that
    /// it takes mail.
    Restart71 {
        /// The 7.1 server's units the quiesce disabled (where systemd
        /// manages the server): enabled again first.
        #[serde(default)]
        disabled_71_units: Vec<String>,
    },
    /// snapshot: move the 7.1 data directory from the backup back to its
    /// place, from whatever stage the move reached (paths inside the root).
    MoveDataDirBack {
        /// Where 7.1 keeps it.
        original: PathBuf,
        /// Where the snapshot moved it.
        moved_to: PathBuf,
    },
    /// migrate: stop the 7.1 cluster started read-only from the backup,
    /// then stop and remove the 9.1 cluster that took 7.1's place.
    RemoveTargetCluster {
        /// The 9.1 cluster's data directory.
        data_dir: PathBuf,
    },
    /// switch: stop 9.1, rename the 7.1 tree set aside back into place
    /// while it is there, otherwise restore it from the verified snapshot.
    RestoreProgramTree {
        /// The staged 9.1 tree.
        staging: PathBuf,
        /// The 7.1 tree set aside by the swap.
        replaced: PathBuf,
        /// What the switch creates outside the tree (the 9.1 units, the
        /// bundled BIND's working directory), none of which existed: the
        /// undo stops the units and removes these.
        #[serde(default)]
        created: Vec<PathBuf>,
    },
    /// register-rollback: remove the rollback manifest.
    RemoveRollbackManifest {
        /// The manifest.
        path: PathBuf,
    },
}

impl Undo {
    /// The step this note belongs to.
    pub fn step(&self) -> Step {
        match self {
            Undo::RemoveStagedCluster { .. } => Step::Presync,
            Undo::Restart71 { .. } => Step::Quiesce,
            Undo::MoveDataDirBack { .. } => Step::Snapshot,
            Undo::RemoveTargetCluster { .. } => Step::Migrate,
            Undo::RestoreProgramTree { .. } => Step::Switch,
            Undo::RemoveRollbackManifest { .. } => Step::RegisterRollback,
        }
    }
}

/// Why a rollback begins; each cause may start one from one run state only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackCause {
    /// A step of a running upgrade failed (run in progress).
    StepFailed(String),
    /// `recover` found the run interrupted before the switch (run in progress).
    Interrupted(String),
    /// The administrator asked with `imss-rollback` (run completed).
    Requested,
}

/// One step's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Which step.
    pub step: Step,
    /// Where it is.
    pub status: StepStatus,
    /// When it began.
    pub started_at: DateTime<Utc>,
    /// When it last changed status.
    pub changed_at: DateTime<Utc>,
    /// What undoing it needs, once the step noted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Undo>,
}

impl StepStatus {
    /// The status in words, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            StepStatus::Started => "running",
            StepStatus::Done => "done",
            StepStatus::Undoing => "being undone",
            StepStatus::Undone => "undone",
        }
    }
}

impl RunState {
    /// The state in words, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            RunState::InProgress => "in progress",
            RunState::Completed => "completed",
            RunState::RollingBack => "rolling back",
            RunState::RolledBack => "rolled back",
        }
    }
}
