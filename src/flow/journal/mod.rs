//! The step journal: a small file in the state directory (root's alone,
//! [`crate::flow::layout::STATE_DIR`]), rewritten atomically and fsynced
//! at every step boundary, that says which steps of the upgrade are done
//! and what undoing each needs. An interrupted run (kill -9, power loss)
//! is finished or rolled back from it, never left half-done.
//!
//! The journal is a state machine: a run is [`RunState::InProgress`] while
//! steps execute; each step goes `Started` → `Done`, and on failure every
//! started step goes `Undoing` → `Undone` in reverse order. Transitions are
//! checked; an impossible one is a bug and is refused.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::flow::layout::{JOURNAL_RESERVE_FILE, STEP_JOURNAL_FILE};
use crate::snapshot::Pin;
use crate::support::fsutil::{self, atomic_write};

mod records;

pub use records::{RollbackCause, RunState, Step, StepRecord, StepStatus, Undo};

/// The journal's format; a newer one is refused rather than misread.
/// Version 2: typed undo notes (version 1 had one struct for every step).
pub const FORMAT_VERSION: u32 = 2;

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
    /// The snapshot's [`Pin`], once the snapshot step has taken it: every
    /// later read of the snapshot must find this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Pin>,
    #[serde(skip)]
    path: PathBuf,
}

impl StepJournal {
    /// Starts the journal of a new run in `state_dir`; refuses if one is
    /// there already (an earlier run must be recovered or rolled back).
    pub fn create(state_dir: &Path) -> Result<Self> {
        let path = state_dir.join(STEP_JOURNAL_FILE);
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
            snapshot: None,
            path,
        };
        journal.save()?;
        reserve_room(state_dir)?;
        Ok(journal)
    }

    /// This server's journal, from the state directory, checked first
    /// ([`crate::flow::layout::Layout::state_dir`]: only root can write it), if there is one.
    pub fn of(ctx: &crate::flow::context::Context) -> Result<Option<Self>> {
        Self::load(&ctx.layout.state_dir()?)
    }

    /// Reads the journal in `state_dir`, if there is one.
    pub fn load(state_dir: &Path) -> Result<Option<Self>> {
        let path = state_dir.join(STEP_JOURNAL_FILE);
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

    /// Records the snapshot just taken, before anything relies on it.
    pub fn record_snapshot(&mut self, pin: Pin) -> Result<()> {
        self.snapshot = Some(pin);
        self.save()
    }

    /// The snapshot this run took, which every reader of it asks for.
    pub fn snapshot_pin(&self) -> Result<&Pin> {
        self.snapshot.as_ref().with_context(|| {
            format!(
                "{} records no snapshot, so none is trusted: the run never finished its \
                 snapshot step, or an earlier imss-upgrade wrote the journal; restore 7.1's \
                 program tree from your own backup",
                self.path.display()
            )
        })
    }

    /// The file the journal lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn save(&self) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        match atomic_write(&self.path, &json, 0o600) {
            Err(err) if is_out_of_space(&err) => {
                // A rollback must be able to record its progress on a full
                // file system: the room kept for that is given up now.
                let dir = self.path.parent().unwrap_or(Path::new("."));
                let reserve = dir.join(JOURNAL_RESERVE_FILE);
                if !reserve.exists() {
                    return Err(err);
                }
                tracing::warn!(
                    "the file system of {} is full: the room kept for the upgrade journal is used now",
                    dir.display()
                );
                fsutil::remove_file_if_present(&reserve)?;
                fsutil::sync_dir(dir)?;
                atomic_write(&self.path, &json, 0o600)
            }
            written => written,
        }
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

    /// Records that `step` begins. It must be the next step of a run in
    /// progress: a completed or rolled-back run never resumes.
    pub fn begin(&mut self, step: Step) -> Result<()> {
        ensure!(
            self.state == RunState::InProgress,
            "the upgrade in {} is {}, so no step may begin; a new run starts afresh",
            self.path.display(),
            self.state.describe()
        );
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
                undo: None,
            });
        }
        self.save()
    }

    /// Records what undoing the running step needs, before the first
    /// effect it describes happens, so that a crash right after it is
    /// undone too.
    pub fn note_undo(&mut self, undo: Undo) -> Result<()> {
        let step = undo.step();
        let record = self.record_in(step, &[StepStatus::Started])?;
        record.undo = Some(undo);
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

    /// Begins the rollback for `cause`, which must fit the run's state: a
    /// run in progress is rolled back when a step fails or an interrupted
    /// one is recovered; a completed run only at the administrator's
    /// request; a rolled-back run never again.
    pub fn begin_rollback(&mut self, cause: RollbackCause) -> Result<()> {
        let why = match (&cause, self.state) {
            (
                RollbackCause::StepFailed(why) | RollbackCause::Interrupted(why),
                RunState::InProgress,
            ) => why.clone(),
            (RollbackCause::Requested, RunState::Completed) => {
                "rollback requested with imss-rollback".to_string()
            }
            (_, state) => bail!(
                "the upgrade in {} is {}: it cannot be rolled back for {cause:?}{}",
                self.path.display(),
                state.describe(),
                match state {
                    RunState::Completed =>
                        "; a completed upgrade is rolled back with imss-rollback",
                    RunState::RollingBack => "; run `imss-upgrade recover` to finish the rollback",
                    RunState::RolledBack => "",
                    RunState::InProgress => "; run `imss-upgrade recover`, which rolls it back",
                }
            ),
        };
        if self.failure.is_none() {
            self.failure = Some(why);
        }
        self.state = RunState::RollingBack;
        self.save()
    }

    /// Takes up a rollback that was interrupted (the run is rolling back).
    pub fn resume_rollback(&mut self) -> Result<()> {
        ensure!(
            self.state == RunState::RollingBack,
            "the upgrade in {} is {}, not rolling back",
            self.path.display(),
            self.state.describe()
        );
        Ok(())
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
            "no rollback is under way in {}",
            self.path.display()
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
        self.finish_rollback()
    }

    /// Ends a rollback that has nothing left to undo: every step is undone,
    /// or none was begun (a run that died between creating its journal and
    /// beginning its first step). Does nothing while steps are left, or
    /// once the run is rolled back.
    pub fn finish_rollback(&mut self) -> Result<()> {
        if self.state == RunState::RolledBack {
            return Ok(());
        }
        ensure!(
            self.state == RunState::RollingBack,
            "no rollback is under way in {}",
            self.path.display()
        );
        if self.steps.iter().all(|r| r.status == StepStatus::Undone) {
            self.state = RunState::RolledBack;
        }
        self.save()
    }
}

/// How much room: the journal many times over.
const RESERVE_BYTES: i64 = 1 << 20;

/// Allocates the reserve file (its blocks taken now, not sparse).
fn reserve_room(state_dir: &Path) -> Result<()> {
    let path = state_dir.join(JOURNAL_RESERVE_FILE);
    fsutil::remove_file_if_present(&path)?;
    let file = fsutil::create_new_file(&path, 0o600)
        .with_context(|| format!("creating {}", path.display()))?;
    nix::fcntl::posix_fallocate(&file, 0, RESERVE_BYTES)
        .map_err(std::io::Error::from)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("reserving room for the journal in {}", path.display()))?;
    fsutil::sync_dir(state_dir)
}

/// Whether `err` comes down to a full file system.
fn is_out_of_space(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(nix::libc::ENOSPC))
    })
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
            .note_undo(Undo::MoveDataDirBack {
                original: "/var/imss/pgdata".into(),
                moved_to: "/var/imss/imss_backup_71_to_91/pgdata-71".into(),
            })
            .unwrap();
        // The machine goes down here: the journal on disk knows the move.
        let reloaded = StepJournal::load(dir.path()).unwrap().unwrap();
        let record = reloaded.record(Step::Snapshot).unwrap();
        assert_eq!(record.status, StepStatus::Started);
        assert!(
            matches!(&record.undo, Some(Undo::MoveDataDirBack { moved_to, .. })
                if moved_to.ends_with("pgdata-71")),
            "{record:?}"
        );
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
        journal
            .begin_rollback(RollbackCause::StepFailed(
                "migrate failed: disk full".into(),
            ))
            .unwrap();
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
    fn a_run_that_died_before_its_first_step_rolls_back_to_the_end() {
        let (dir, mut journal) = journal();
        journal
            .begin_rollback(RollbackCause::Interrupted(
                "the run was interrupted at start".into(),
            ))
            .unwrap();
        assert!(journal.steps_to_undo().is_empty());
        journal.finish_rollback().unwrap();
        assert_eq!(journal.state, RunState::RolledBack);
        assert_eq!(
            StepJournal::load(dir.path()).unwrap().unwrap().state,
            RunState::RolledBack
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

    fn completed() -> (tempfile::TempDir, StepJournal) {
        let (dir, mut journal) = journal();
        for step in Step::ALL {
            journal.begin(step).unwrap();
            journal.finish(step).unwrap();
        }
        (dir, journal)
    }

    #[test]
    fn a_completed_run_is_rolled_back_only_on_request() {
        let (_dir, mut journal) = completed();
        for cause in [
            RollbackCause::StepFailed("x".into()),
            RollbackCause::Interrupted("x".into()),
        ] {
            let err = journal.begin_rollback(cause).unwrap_err().to_string();
            assert!(err.contains("imss-rollback"), "{err}");
            assert_eq!(journal.state, RunState::Completed);
        }
        journal.begin_rollback(RollbackCause::Requested).unwrap();
        assert_eq!(journal.state, RunState::RollingBack);
    }

    #[test]
    fn a_run_in_progress_is_not_rolled_back_on_request() {
        let (_dir, mut journal) = journal();
        journal.begin(Step::Presync).unwrap();
        let err = journal
            .begin_rollback(RollbackCause::Requested)
            .unwrap_err()
            .to_string();
        assert!(err.contains("recover"), "{err}");
        assert_eq!(journal.state, RunState::InProgress);
    }

    #[test]
    fn a_rolled_back_run_never_resumes() {
        let (_dir, mut journal) = journal();
        journal.begin(Step::Presync).unwrap();
        journal
            .begin_rollback(RollbackCause::StepFailed("presync failed".into()))
            .unwrap();
        journal.begin_undo(Step::Presync).unwrap();
        journal.finish_undo(Step::Presync).unwrap();
        assert_eq!(journal.state, RunState::RolledBack);
        assert_eq!(journal.next_step(), None);
        assert!(journal.begin(Step::Presync).is_err());
        assert!(journal.begin(Step::Quiesce).is_err());
        assert!(journal.resume_rollback().is_err());
        for cause in [
            RollbackCause::StepFailed("x".into()),
            RollbackCause::Interrupted("x".into()),
            RollbackCause::Requested,
        ] {
            assert!(journal.begin_rollback(cause).is_err());
        }
    }

    #[test]
    fn an_undo_note_goes_to_its_own_running_step_only() {
        let (_dir, mut journal) = journal();
        journal.begin(Step::Presync).unwrap();
        let err = journal
            .note_undo(Undo::Restart71 {
                disabled_71_units: Vec::new(),
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("quiesce"), "{err}");
        journal
            .note_undo(Undo::RemoveStagedCluster {
                data_dir: "/var/imss/pgdata-91.staged".into(),
            })
            .unwrap();
        journal.finish(Step::Presync).unwrap();
        assert!(
            journal
                .note_undo(Undo::RemoveStagedCluster {
                    data_dir: "/x".into()
                })
                .is_err(),
            "a finished step takes no more notes"
        );
    }
}
