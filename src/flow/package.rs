//! What the upgrade package's scriptlets do (README, "The package"): the
//! decision, from rpm's first argument and the step journal alone, so that
//! every way a transaction can meet the server (install, reinstall, an
//! upgrade of the package, an erase, a second attempt after a failure or a
//! power loss) is settled in one place.
//!
//! rpm's first argument (DESIGN.md section 7) counts the instances of the
//! package left once the transaction is done: `%pre` sees 1 on an install
//! and 2 or more on a reinstall or an upgrade of the package; `%preun`
//! sees 0 on an erase and 1 or more when a newer instance replaces it.

use super::journal::RunState;

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
/// does on a server whose step journal is in `state` (`None`: no journal,
/// no upgrade was ever run here).
pub fn decide(scriptlet: Scriptlet, rpm_arg: u32, state: Option<RunState>) -> Decision {
    let described = state.map_or("none recorded", RunState::describe);
    match scriptlet {
        Scriptlet::PreInstall if rpm_arg >= 2 => Decision::Nothing(format!(
            "{MAIN_PACKAGE} is being reinstalled or upgraded: the server is left as it is \
             (upgrade: {described})"
        )),
        Scriptlet::PreInstall => match state {
            None | Some(RunState::RolledBack) => Decision::Upgrade,
            Some(RunState::Completed) => Decision::Nothing(
                "IMSS was upgraded to 9.1 already (its step journal says completed): \
                 the package is recorded, nothing is redone"
                    .to_string(),
            ),
            Some(RunState::InProgress | RunState::RollingBack) => Decision::RecoverFirst,
        },
        Scriptlet::PreUninstall if rpm_arg >= 1 => Decision::Nothing(format!(
            "{MAIN_PACKAGE} is being upgraded or reinstalled: the upgrade stays \
             (upgrade: {described})"
        )),
        Scriptlet::PreUninstall => match state {
            Some(RunState::Completed) => Decision::RollBack,
            Some(RunState::InProgress | RunState::RollingBack) => Decision::RecoverFirst,
            Some(RunState::RolledBack) => {
                Decision::Nothing("the upgrade was rolled back already: IMSS 7.1 runs".to_string())
            }
            None => Decision::Nothing("no upgrade was run here: nothing to roll back".to_string()),
        },
        Scriptlet::HelpersPreUninstall if rpm_arg >= 1 => Decision::Nothing(format!(
            "{HELPERS_PACKAGE} is being upgraded or reinstalled"
        )),
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

    const STATES: [Option<RunState>; 5] = [
        None,
        Some(RunState::InProgress),
        Some(RunState::Completed),
        Some(RunState::RollingBack),
        Some(RunState::RolledBack),
    ];

    #[test]
    fn an_install_upgrades_a_server_on_71_and_settles_an_interrupted_run_first() {
        assert_eq!(decide(Scriptlet::PreInstall, 1, None), Decision::Upgrade);
        assert_eq!(
            decide(Scriptlet::PreInstall, 1, Some(RunState::RolledBack)),
            Decision::Upgrade
        );
        assert_eq!(
            decide(Scriptlet::PreInstall, 1, Some(RunState::InProgress)),
            Decision::RecoverFirst
        );
        assert_eq!(
            decide(Scriptlet::PreInstall, 1, Some(RunState::RollingBack)),
            Decision::RecoverFirst
        );
        assert!(matches!(
            decide(Scriptlet::PreInstall, 1, Some(RunState::Completed)),
            Decision::Nothing(_)
        ));
    }

    #[test]
    fn a_reinstall_or_an_upgrade_of_the_package_neither_reruns_nor_undoes() {
        for state in STATES {
            for arg in [2, 3] {
                assert!(
                    matches!(
                        decide(Scriptlet::PreInstall, arg, state),
                        Decision::Nothing(_)
                    ),
                    "%pre {arg} with {state:?}"
                );
            }
            assert!(
                matches!(
                    decide(Scriptlet::PreUninstall, 1, state),
                    Decision::Nothing(_)
                ),
                "%preun 1 with {state:?}"
            );
            assert!(
                matches!(
                    decide(Scriptlet::HelpersPreUninstall, 1, state),
                    Decision::Nothing(_)
                ),
                "helpers %preun 1 with {state:?}"
            );
        }
    }

    #[test]
    fn an_erase_rolls_a_completed_upgrade_back() {
        assert_eq!(
            decide(Scriptlet::PreUninstall, 0, Some(RunState::Completed)),
            Decision::RollBack
        );
        assert_eq!(
            decide(Scriptlet::PreUninstall, 0, Some(RunState::InProgress)),
            Decision::RecoverFirst
        );
        assert!(matches!(
            decide(Scriptlet::PreUninstall, 0, Some(RunState::RolledBack)),
            Decision::Nothing(_)
        ));
        assert!(matches!(
            decide(Scriptlet::PreUninstall, 0, None),
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
            let Decision::Refuse(why) = decide(Scriptlet::HelpersPreUninstall, 0, Some(state))
            else {
                panic!("the helpers' erase is allowed while the upgrade is {state:?}");
            };
            assert!(why.contains("dnf remove imss-upgrade"), "{why}");
        }
        for state in [None, Some(RunState::RolledBack)] {
            assert!(matches!(
                decide(Scriptlet::HelpersPreUninstall, 0, state),
                Decision::Nothing(_)
            ));
        }
    }
}
