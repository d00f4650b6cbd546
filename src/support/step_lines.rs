//! Step lines for people, as `pg_upgrade` prints them: on a terminal,
//! `Migrating configuration and the last 24 hours ........ ok  0.40 s`,
//! the label first and the outcome once the step ends; without one (a
//! log, an RPM scriptlet), one plain line per step when it ends. The
//! details go to the journal and the install log, not here.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Width the labels are padded to with dots.
const LABEL_WIDTH: usize = 56;

/// Prints step lines to standard error.
#[derive(Debug)]
pub struct StepLines {
    terminal: bool,
    enabled: bool,
}

/// A step line begun and not yet ended.
#[derive(Debug)]
pub struct OpenLine {
    label: String,
    started: Instant,
}

impl StepLines {
    /// Step lines on standard error, shaped for a terminal when it is one.
    pub fn stderr() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            enabled: true,
        }
    }

    /// No step lines (a caller that prints its own, or none).
    pub fn silent() -> Self {
        Self {
            terminal: false,
            enabled: false,
        }
    }

    /// Begins the line of a step labelled `label`.
    pub fn begin(&self, label: impl Into<String>) -> OpenLine {
        let line = OpenLine {
            label: label.into(),
            started: Instant::now(),
        };
        if self.enabled && self.terminal {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{}", dotted(&line.label));
            let _ = err.flush();
        }
        line
    }

    /// Ends `line` with `outcome` (`ok`, `failed`) and the time it took.
    pub fn end(&self, line: OpenLine, outcome: &str) {
        if !self.enabled {
            return;
        }
        let seconds = line.started.elapsed().as_secs_f64();
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            writeln!(err, " {outcome:<6} {seconds:>6.2} s")
        } else {
            writeln!(err, "{} {outcome} {seconds:.2} s", dotted(&line.label))
        };
    }
}

/// `label` followed by dots to the common width.
fn dotted(label: &str) -> String {
    format!(
        "{label} {:.<width$}",
        "",
        width = LABEL_WIDTH.saturating_sub(label.chars().count() + 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_padded_to_one_width() {
        let short = dotted("Stopping the 7.1 services");
        let long = dotted("Migrating configuration and the last 24 hours");
        assert_eq!(short.chars().count(), LABEL_WIDTH);
        assert_eq!(long.chars().count(), LABEL_WIDTH);
        assert!(short.ends_with("..."), "{short}");
    }
}
