//! Two programs joined by a pipe, as a shell's `a | b` would join them,
//! with no shell.

use std::process::Stdio;

use super::{Cmd, CmdError, failed};

impl Cmd {
    /// Runs `self | next`: this command's standard output feeds `next`'s
    /// standard input through a pipe (the data never lands in a file), and
    /// both must exit 0; `next`'s standard output is discarded. Logged as
    /// one line; a failure of either carries its status and stderr tail.
    pub fn pipe_into(&self, next: &Cmd) -> Result<(), CmdError> {
        let first_argv = self.display_argv();
        let second_argv = next.display_argv();
        tracing::debug!(argv = %format!("{first_argv} | {second_argv}"), "running");
        let mut producer = self
            .attached_command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CmdError::Spawn {
                argv: first_argv.clone(),
                source,
            })?;
        let stream = producer.stdout.take().expect("stdout was piped");
        // The command (holding this process's copy of the pipe) is dropped
        // once spawned, so that the pipe closes when either program exits.
        let consumer = next
            .attached_command()
            .stdin(Stdio::from(stream))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let consumer = match consumer {
            Ok(child) => child,
            Err(source) => {
                // Our own child, which now writes into a pipe nobody reads.
                let _ = producer.kill();
                let _ = producer.wait();
                return Err(CmdError::Spawn {
                    argv: second_argv,
                    source,
                });
            }
        };
        // Each program's stderr is drained while it runs, in a thread of its
        // own, so that neither can block on a full stderr pipe.
        let producer = std::thread::spawn(move || producer.wait_with_output());
        let consumed = consumer
            .wait_with_output()
            .map_err(|source| CmdError::Spawn {
                argv: second_argv.clone(),
                source,
            })?;
        let produced = producer
            .join()
            .expect("the thread waiting for a child does not panic")
            .map_err(|source| CmdError::Spawn {
                argv: first_argv.clone(),
                source,
            })?;
        // The consumer first: when it stops early, the producer dies of
        // SIGPIPE, which is the consequence, not the cause.
        if !consumed.status.success() {
            return Err(failed(second_argv, &consumed));
        }
        if !produced.status.success() {
            return Err(failed(first_argv, &produced));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_streams_from_the_first_program_into_the_second() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        Cmd::new("/bin/sh")
            .args(["-c", "seq 1 100000"])
            .pipe_into(
                &Cmd::new("/bin/sh")
                    .args(["-c", "wc -l > \"$OUT\""])
                    .env("OUT", &out),
            )
            .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "100000");
    }

    #[test]
    fn a_failure_on_either_side_of_a_pipe_names_the_program_and_its_stderr() {
        let err = Cmd::new("/bin/sh")
            .args(["-c", "echo 'no such database' >&2; exit 1"])
            .pipe_into(&Cmd::new("cat"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("exit status: 1"), "{err}");
        assert!(err.contains("no such database"), "{err}");
        let err = Cmd::new("/bin/sh")
            .args(["-c", "seq 1 10"])
            .pipe_into(&Cmd::new("/bin/sh").args(["-c", "echo 'restore failed' >&2; exit 3"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("restore failed"), "{err}");
        let err = Cmd::new("/bin/true")
            .pipe_into(&Cmd::new("/nonexistent/pg_restore"))
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pg_restore"), "{err}");
    }
}
