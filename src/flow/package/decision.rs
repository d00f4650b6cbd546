//! What a scriptlet of the upgrade package decides to do (README, "The
//! package"), from rpm's first argument and the step journal alone (the
//! journal read only where the argument leaves the decision open), so that
//! every way a transaction can meet the server (install, reinstall, an
//! upgrade of the package, an erase, a second attempt after a failure or a
//! power loss) is settled in one place.
//!
//! rpm's first argument (as rpm documents it for scriptlets) counts the
//! instances of the package left once the transaction is done: `%pre`
//! sees 1 on an install and 2 or more on a reinstall or an upgrade of the
//! package; `%preun` sees 0 on an erase and 1 or more when a newer
//! instance replaces it.

use anyhow::Result;

use crate::flow::journal::RunState;

/// The scriptlet asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scriptlet {
    /// `%pre` of `imss-upgrade`: the upgrade.
    PreInstall,
    /// `%preun` of `imss-upgrade`: the rollback on erase.
    PreUninstall,
    /// `%preun` of `imss-upgrade-helpers`: keeps the programs a rollback
    /// needs while one is possible.
    HelpersPreUninstall,
}

/// What the scriptlet does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Upgrade the server to 9.1; the scriptlet succeeds when 9.1 runs.
    Upgrade,
    /// Roll the server back to 7.1; the scriptlet succeeds when 7.1 runs.
    RollBack,
    /// Settle an interrupted run first (`recover`), then decide again.
    RecoverFirst,
    /// Nothing: the scriptlet succeeds, saying why.
    Nothing(String),
    /// Refuse: the scriptlet fails, so rpm keeps the package; why, and
    /// what to do.
    Refuse(String),
}

/// The helpers package's name, for messages.
pub const HELPERS_PACKAGE: &str = "imss-upgrade-helpers";

/// The main package's name, for messages.
pub const MAIN_PACKAGE: &str = "imss-upgrade";

/// Decides what `scriptlet`, called with rpm's first argument `rpm_arg`,
/// does. `rpm_arg` decides first; only where it leaves the decision to the
/// upgrade's state is `run_state` called, which reads the step journal's
/// state (`None`: no journal, no upgrade was ever run here), and its error
/// is the scriptlet's. A reinstall or an upgrade of the package, and the
/// erase of the older instance within it, decide from `rpm_arg` alone: a
/// step journal that cannot be read must not fail them, or rpm keeps both
/// versions of the package.
pub fn decide(
    scriptlet: Scriptlet,
    rpm_arg: u32,
    run_state: impl FnOnce() -> Result<Option<RunState>>,
) -> Result<Decision> {
    match from_rpm_arg(scriptlet, rpm_arg) {
        Some(decision) => Ok(decision),
        None => Ok(from_state(scriptlet, run_state()?)),
    }
}

/// The decision `rpm_arg` makes alone: a reinstall or an upgrade of the
/// package (another instance stays once the transaction is done).
fn from_rpm_arg(scriptlet: Scriptlet, rpm_arg: u32) -> Option<Decision> {
    match scriptlet {
        Scriptlet::PreInstall if rpm_arg >= 2 => Some(Decision::Nothing(format!(
            "{MAIN_PACKAGE} is being reinstalled or upgraded: the server is left as it is"
        ))),
        Scriptlet::PreUninstall if rpm_arg >= 1 => Some(Decision::Nothing(format!(
            "{MAIN_PACKAGE} is being upgraded or reinstalled: the server is left as it is, \
             nothing is rolled back"
        ))),
        Scriptlet::HelpersPreUninstall if rpm_arg >= 1 => Some(Decision::Nothing(format!(
            "{HELPERS_PACKAGE} is being upgraded or reinstalled"
        ))),
        _ => None,
    }
}

/// The decision of an install or an erase, from the upgrade's `state`.
fn from_state(scriptlet: Scriptlet, state: Option<RunState>) -> Decision {
    match scriptlet {
        Scriptlet::PreInstall => match state {
            None | Some(RunState::RolledBack) => Decision::Upgrade,
            Some(RunState::Completed) => Decision::Nothing(
                "IMSS was upgraded to 9.1 already (its step journal says completed): \
                 the package is recorded, nothing is redone"
                    .to_string(),
            ),
            Some(RunState::InProgress | RunState::RollingBack) => Decision::RecoverFirst,
        },
        Scriptlet::PreUninstall => match state {
            Some(RunState::Completed) => Decision::RollBack,
            Some(RunState::InProgress | RunState::RollingBack) => Decision::RecoverFirst,
            Some(RunState::RolledBack) => {
                Decision::Nothing("the upgrade was rolled back already: IMSS 7.1 runs".to_string())
            }
            None => Decision::Nothing("no upgrade was run here: nothing to roll back".to_string()),
        },
        Scriptlet::HelpersPreUninstall => match state {
            Some(state @ (RunState::Completed | RunState::InProgress | RunState::RollingBack)) => {
                Decision::Refuse(format!(
                    "{HELPERS_PACKAGE} stays installed: the upgrade to 9.1 is {} and can still \
                     be rolled back, with these programs. Roll back first (dnf remove \
                     {MAIN_PACKAGE}, or imss-rollback), then remove {HELPERS_PACKAGE}",
                    state.describe()
                ))
            }
            None | Some(RunState::RolledBack) => {
                Decision::Nothing("no rollback is pending".to_string())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `scriptlet` decides with `rpm_arg` on a server whose journal
    /// says `state`.
    fn decided(scriptlet: Scriptlet, rpm_arg: u32, state: Option<RunState>) -> Decision {
        decide(scriptlet, rpm_arg, || Ok(state)).unwrap()
    }

    const STATES: [Option<RunState>; 5] = [
        None,
        Some(RunState::InProgress),
        Some(RunState::Completed),
        Some(RunState::RollingBack),
        Some(RunState::RolledBack),
    ];

    #[test]
    fn an_install_upgrades_a_server_on_71_and_settles_an_interrupted_run_first() {
        assert_eq!(decided(Scriptlet::PreInstall, 1, None), Decision::Upgrade);
        assert_eq!(
            decided(Scriptlet::PreInstall, 1, Some(RunState::RolledBack)),
            Decision::Upgrade
        );
        assert_eq!(
            decided(Scriptlet::PreInstall, 1, Some(RunState::InProgress)),
            Decision::RecoverFirst
        );
        assert_eq!(
            decided(Scriptlet::PreInstall, 1, Some(RunState::RollingBack)),
            Decision::RecoverFirst
        );
        assert!(matches!(
            decided(Scriptlet::PreInstall, 1, Some(RunState::Completed)),
            Decision::Nothing(_)
        ));
    }

    #[test]
    fn a_reinstall_or_an_upgrade_of_the_package_neither_reruns_nor_undoes() {
        for state in STATES {
            for arg in [2, 3] {
                assert!(
                    matches!(
                        decided(Scriptlet::PreInstall, arg, state),
                        Decision::Nothing(_)
                    ),
                    "%pre {arg} with {state:?}"
                );
            }
            assert!(
                matches!(
                    decided(Scriptlet::PreUninstall, 1, state),
                    Decision::Nothing(_)
                ),
                "%preun 1 with {state:?}"
            );
            assert!(
                matches!(
                    decided(Scriptlet::HelpersPreUninstall, 1, state),
                    Decision::Nothing(_)
                ),
                "helpers %preun 1 with {state:?}"
            );
        }
    }

    #[test]
    fn an_erase_rolls_a_completed_upgrade_back() {
        assert_eq!(
            decided(Scriptlet::PreUninstall, 0, Some(RunState::Completed)),
            Decision::RollBack
        );
        assert_eq!(
            decided(Scriptlet::PreUninstall, 0, Some(RunState::InProgress)),
            Decision::RecoverFirst
        );
        assert!(matches!(
            decided(Scriptlet::PreUninstall, 0, Some(RunState::RolledBack)),
            Decision::Nothing(_)
        ));
        assert!(matches!(
            decided(Scriptlet::PreUninstall, 0, None),
            Decision::Nothing(_)
        ));
    }

    #[test]
    fn the_helpers_stay_while_a_rollback_is_possible() {
        for state in [
            RunState::Completed,
            RunState::InProgress,
            RunState::RollingBack,
        ] {
            let Decision::Refuse(why) = decided(Scriptlet::HelpersPreUninstall, 0, Some(state))
            else {
                panic!("the helpers' erase is allowed while the upgrade is {state:?}");
            };
            assert!(why.contains("dnf remove imss-upgrade"), "{why}");
        }
        for state in [None, Some(RunState::RolledBack)] {
            assert!(matches!(
                decided(Scriptlet::HelpersPreUninstall, 0, state),
                Decision::Nothing(_)
            ));
        }
    }

    #[test]
    fn a_reinstall_or_an_upgrade_of_the_package_never_reads_the_journal() {
        let unreadable = || -> Result<Option<RunState>> {
            panic!("the journal was read for a decision $1 makes alone")
        };
        for (scriptlet, arg) in [
            (Scriptlet::PreInstall, 2),
            (Scriptlet::PreUninstall, 1),
            (Scriptlet::HelpersPreUninstall, 1),
        ] {
            assert!(
                matches!(decide(scriptlet, arg, unreadable), Ok(Decision::Nothing(_))),
                "{scriptlet:?} {arg}"
            );
        }
        for (scriptlet, arg) in [
            (Scriptlet::PreInstall, 1),
            (Scriptlet::PreUninstall, 0),
            (Scriptlet::HelpersPreUninstall, 0),
        ] {
            let err = decide(scriptlet, arg, || {
                anyhow::bail!("upgrade-state.json is not a readable upgrade journal")
            })
            .unwrap_err();
            assert!(
                err.to_string().contains("upgrade-state.json"),
                "{scriptlet:?} {arg}: {err:#}"
            );
        }
    }
}
