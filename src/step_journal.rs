//! The step journal: a small state file in the backup directory, rewritten
//! atomically and fsynced at every step boundary, that says which steps of
//! the upgrade are done and what undoing each needs. An interrupted run
//! (kill -9, power loss) is finished or rolled back from it, never left
//! half-done.
//!
//! The journal is a state machine: a run is [`RunState::InProgress`] while
//! steps execute; each step goes `Started` → `Done`, and on failure every
//! started step goes `Undoing` → `Undone` in reverse order. Transitions are
//! checked; an impossible one is a bug and is refused.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::constants::STEP_JOURNAL_FILE;
use crate::fsutil::atomic_write;

/// The journal's format; a newer one is refused rather than misread.
pub const FORMAT_VERSION: u32 = 1;

/// The steps of the upgrade, in order (DESIGN.md section 3).
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

/// Where the whole run is.
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

/// What undoing a step needs, recorded when the step does it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undo {
    /// 7.1 services that were running and must be started again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services_to_restart: Vec<String>,
    /// Moves to reverse: (from, to) as they were done, paths inside the root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moved: Vec<(PathBuf, PathBuf)>,
    /// Paths inside the root that the step created and undo removes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<PathBuf>,
    /// Whether the snapshot must be restored over the live tree.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restore_snapshot: bool,
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
    /// What undoing it needs (grows while the step runs).
    pub undo: Undo,
}

/// The journal of one upgrade run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepJournal {
    /// [`FORMAT_VERSION`].
    pub format: u32,
    /// When the run began; the 24-hour window ends here.
    pub started_at: DateTime<Utc>,
    /// Where the run is.
    pub state: RunState,
    /// The steps begun so far, in order.
    pub steps: Vec<StepRecord>,
    /// Why the run failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    #[serde(skip)]
    path: PathBuf,
}

impl StepJournal {
    /// Starts the journal of a new run in `backup_dir`; refuses if one is
    /// there already (an earlier run must be recovered or rolled back).
    pub fn create(backup_dir: &Path) -> Result<Self> {
        let path = backup_dir.join(STEP_JOURNAL_FILE);
        if path.exists() {
            bail!(
                "{} already exists: an earlier upgrade run is in progress or not finalized; \
                 run `imss-upgrade recover` or `imss-rollback` first",
                path.display()
            );
        }
        let journal = Self {
            format: FORMAT_VERSION,
            started_at: Utc::now(),
            state: RunState::InProgress,
            steps: Vec::new(),
            failure: None,
            path,
        };
        journal.save()?;
        Ok(journal)
    }

    /// Reads the journal in `backup_dir`, if there is one.
    pub fn load(backup_dir: &Path) -> Result<Option<Self>> {
        let path = backup_dir.join(STEP_JOURNAL_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        let mut journal: StepJournal = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a readable upgrade journal: leave it in place and contact support",
                path.display()
            )
        })?;
        ensure!(
            journal.format == FORMAT_VERSION,
            "{} was written by another version of imss-upgrade (format {}); use that version to recover",
            path.display(),
            journal.format
        );
        journal.path = path;
        Ok(Some(journal))
    }

    /// The file the journal lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn save(&self) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        atomic_write(&self.path, &json, 0o600)
    }

    fn record_mut(&mut self, step: Step) -> Option<&mut StepRecord> {
        self.steps.iter_mut().find(|r| r.step == step)
    }

    /// The record of `step`, if it was begun.
    pub fn record(&self, step: Step) -> Option<&StepRecord> {
        self.steps.iter().find(|r| r.step == step)
    }

    /// The step to run next, if the run is in progress.
    pub fn next_step(&self) -> Option<Step> {
        if self.state != RunState::InProgress {
            return None;
        }
        match self.steps.last() {
            None => Some(Step::ALL[0]),
            Some(last) if last.status == StepStatus::Done => last.step.next(),
            Some(last) => Some(last.step),
        }
    }

    /// Records that `step` begins. It must be the next step.
    pub fn begin(&mut self, step: Step) -> Result<()> {
        ensure!(
            self.next_step() == Some(step),
            "the upgrade journal expects step {:?} next, not {step}",
            self.next_step()
        );
        if self.record(step).is_none() {
            let now = Utc::now();
            self.steps.push(StepRecord {
                step,
                status: StepStatus::Started,
                started_at: now,
                changed_at: now,
                undo: Undo::default(),
            });
        }
        self.save()
    }

    /// Adds to what undoing the running `step` needs, before the effect it
    /// describes happens, so that a crash right after it is undone too.
    pub fn note_undo(&mut self, step: Step, update: impl FnOnce(&mut Undo)) -> Result<()> {
        let record = self.record_in(step, &[StepStatus::Started])?;
        update(&mut record.undo);
        self.save()
    }

    /// The record of `step`, which must be in one of the `allowed` states.
    fn record_in(&mut self, step: Step, allowed: &[StepStatus]) -> Result<&mut StepRecord> {
        let record = self
            .record_mut(step)
            .with_context(|| format!("step {step} was not begun"))?;
        ensure!(
            allowed.contains(&record.status),
            "step {step} is {:?}, not {allowed:?}",
            record.status
        );
        Ok(record)
    }

    /// Moves `step` from one of the `allowed` states to `to`.
    fn transition(&mut self, step: Step, allowed: &[StepStatus], to: StepStatus) -> Result<()> {
        let record = self.record_in(step, allowed)?;
        record.status = to;
        record.changed_at = Utc::now();
        Ok(())
    }

    /// Records that `step` finished; after the last step the run is complete.
    pub fn finish(&mut self, step: Step) -> Result<()> {
        self.transition(step, &[StepStatus::Started], StepStatus::Done)?;
        if step.next().is_none() {
            self.state = RunState::Completed;
        }
        self.save()
    }

    /// Begins the rollback: records why, and the run's new state.
    pub fn begin_rollback(&mut self, why: &str) -> Result<()> {
        if self.failure.is_none() && !why.is_empty() {
            self.failure = Some(why.to_string());
        }
        self.state = RunState::RollingBack;
        self.save()
    }

    /// The steps still to undo, newest first.
    pub fn steps_to_undo(&self) -> Vec<StepRecord> {
        self.steps
            .iter()
            .rev()
            .filter(|r| r.status != StepStatus::Undone)
            .cloned()
            .collect()
    }

    /// Records that undoing `step` begins (again, after an interruption).
    pub fn begin_undo(&mut self, step: Step) -> Result<()> {
        ensure!(
            self.state == RunState::RollingBack,
            "no rollback is under way"
        );
        self.transition(
            step,
            &[StepStatus::Started, StepStatus::Done, StepStatus::Undoing],
            StepStatus::Undoing,
        )?;
        self.save()
    }

    /// Records that `step` is undone; when none is left, the run is rolled back.
    pub fn finish_undo(&mut self, step: Step) -> Result<()> {
        self.transition(step, &[StepStatus::Undoing], StepStatus::Undone)?;
        if self.steps.iter().all(|r| r.status == StepStatus::Undone) {
            self.state = RunState::RolledBack;
        }
        self.save()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal() -> (tempfile::TempDir, StepJournal) {
        let dir = tempfile::tempdir().unwrap();
        let journal = StepJournal::create(dir.path()).unwrap();
        (dir, journal)
    }

    #[test]
    fn steps_run_in_order_and_every_boundary_is_on_disk() {
        let (dir, mut journal) = journal();
        for step in Step::ALL {
            assert_eq!(journal.next_step(), Some(step));
            journal.begin(step).unwrap();
            assert_eq!(
                StepJournal::load(dir.path())
                    .unwrap()
                    .unwrap()
                    .steps
                    .last()
                    .unwrap()
                    .status,
                StepStatus::Started
            );
            journal.finish(step).unwrap();
            assert_eq!(StepJournal::load(dir.path()).unwrap().unwrap(), journal);
        }
        assert_eq!(journal.state, RunState::Completed);
        assert_eq!(journal.next_step(), None);
    }

    #[test]
    fn a_step_out_of_order_is_refused() {
        let (_dir, mut journal) = journal();
        let err = journal.begin(Step::Migrate).unwrap_err();
        assert!(err.to_string().contains("expects step"), "{err}");
        journal.begin(Step::Presync).unwrap();
        assert!(journal.finish(Step::Snapshot).is_err());
    }

    #[test]
    fn undo_notes_are_saved_before_the_effect() {
        let (dir, mut journal) = journal();
        for step in [Step::Presync, Step::Quiesce] {
            journal.begin(step).unwrap();
            journal.finish(step).unwrap();
        }
        journal.begin(Step::Snapshot).unwrap();
        journal
            .note_undo(Step::Snapshot, |undo| {
                undo.moved.push((
                    "/var/imss/pgdata".into(),
                    "/var/imss/imss_backup_71_to_91/pgdata".into(),
                ))
            })
            .unwrap();
        // The machine goes down here: the journal on disk knows the move.
        let reloaded = StepJournal::load(dir.path()).unwrap().unwrap();
        let record = reloaded.record(Step::Snapshot).unwrap();
        assert_eq!(record.status, StepStatus::Started);
        assert_eq!(record.undo.moved.len(), 1);
        assert_eq!(reloaded.next_step(), Some(Step::Snapshot));
    }

    #[test]
    fn rollback_undoes_newest_first_and_survives_interruption() {
        let (dir, mut journal) = journal();
        for step in [Step::Presync, Step::Quiesce, Step::Snapshot] {
            journal.begin(step).unwrap();
            journal.finish(step).unwrap();
        }
        journal.begin(Step::Migrate).unwrap();
        journal.begin_rollback("migrate failed: disk full").unwrap();
        let order: Vec<Step> = journal.steps_to_undo().iter().map(|r| r.step).collect();
        assert_eq!(
            order,
            [Step::Migrate, Step::Snapshot, Step::Quiesce, Step::Presync]
        );
        journal.begin_undo(Step::Migrate).unwrap();
        journal.finish_undo(Step::Migrate).unwrap();
        journal.begin_undo(Step::Snapshot).unwrap();
        // Interrupted here; the next run resumes with what is left.
        let mut resumed = StepJournal::load(dir.path()).unwrap().unwrap();
        let left: Vec<Step> = resumed.steps_to_undo().iter().map(|r| r.step).collect();
        assert_eq!(left, [Step::Snapshot, Step::Quiesce, Step::Presync]);
        for step in left {
            resumed.begin_undo(step).unwrap();
            resumed.finish_undo(step).unwrap();
        }
        assert_eq!(resumed.state, RunState::RolledBack);
        assert_eq!(
            resumed.failure.as_deref(),
            Some("migrate failed: disk full")
        );
    }

    #[test]
    fn a_second_run_is_refused_while_a_journal_exists() {
        let (dir, _journal) = journal();
        let err = StepJournal::create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("imss-upgrade recover"), "{err}");
    }

    #[test]
    fn a_damaged_journal_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STEP_JOURNAL_FILE), "{not json").unwrap();
        let err = StepJournal::load(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains(STEP_JOURNAL_FILE), "{err:#}");
    }
}
