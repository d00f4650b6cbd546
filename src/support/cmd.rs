//! The one place that starts other programs.
//!
//! A [`Cmd`] is a program and an argument vector, never a shell string. The
//! vector is logged before the program runs; anything secret travels on
//! standard input ([`Cmd::stdin_secret`]), which is never logged. A non-zero
//! exit becomes a [`CmdError`] carrying the status and the tail of stderr.
//!
//! A program run to completion ([`Cmd::run`], [`Cmd::pipe_into`]) dies with
//! the thread that started it (`PR_SET_PDEATHSIG`): when the helper is
//! killed (`kill -9`, the OOM killer), no `initdb`, `cp` or control script
//! of its goes on working under the recovery that follows. Daemons
//! ([`Cmd::spawn_daemon`]) are meant to outlive it and do.
//!
//! Beside this file: `error` (how a run failed), `pipe` (two programs
//! joined by a pipe) and `group` (the record of a program's process group,
//! and the stop of what it left running).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

mod error;
mod group;
mod pipe;

pub use error::CmdError;
pub(crate) use error::failed;
pub use group::stop_recorded_group;
use group::write_group_record;

use crate::support::account::ServiceUser;
use crate::support::secret::Secret;

/// A command to run: program, arguments, and how to run it.
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    current_dir: Option<PathBuf>,
    user: Option<ServiceUser>,
    stdin: Option<Secret>,
    /// The secret on standard input is a file in memory, which the child
    /// may also open again by name (`/dev/stdin`), rather than a pipe.
    stdin_is_file: bool,
    timeout: Option<Duration>,
    group_record: Option<PathBuf>,
}

impl Cmd {
    /// A command running `program` (a path, or a name looked up in `PATH`).
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            program: program.as_ref().to_os_string(),
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
            user: None,
            stdin: None,
            stdin_is_file: false,
            timeout: None,
            group_record: None,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Sets an environment variable for the child. Never use this for a secret.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Runs the child in `dir`.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.current_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Runs the child as `user` (with no supplementary groups). Needs root,
    /// unless `user` is the current user.
    pub fn as_user(mut self, user: &ServiceUser) -> Self {
        self.user = Some(user.clone());
        self
    }

    /// Feeds `bytes` to the child's standard input. Not logged.
    pub fn stdin_secret(mut self, bytes: &Secret) -> Self {
        self.stdin = Some(bytes.clone());
        self
    }

    /// Feeds `bytes` to the child's standard input as a file that exists in
    /// memory only (`memfd_create`), for a program that wants a file name
    /// for its secret: it opens `/dev/stdin`, which works for another
    /// account too (a pipe of ours would be closed to it), and nothing is
    /// left on a disk, whatever happens to either process. Not logged.
    pub fn stdin_secret_file(mut self, bytes: &Secret) -> Self {
        self.stdin = Some(bytes.clone());
        self.stdin_is_file = true;
        self
    }

    /// Gives the program at most `limit` to finish ([`Cmd::run`]); then it,
    /// and every process it started in its process group, is killed and the
    /// run fails with [`CmdError::TimedOut`]. For programs that may hang,
    /// such as a service's start.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Runs the program in a process group of its own, and names that
    /// group in the file `record` (written durably before the program does
    /// anything, removed once it ended), so that if this process is killed
    /// meanwhile, whoever comes next can stop what the program left running
    /// ([`stop_recorded_group`]). For programs that start others, such as a
    /// control script.
    pub fn record_group_in(mut self, record: impl AsRef<Path>) -> Self {
        self.group_record = Some(record.as_ref().to_path_buf());
        self
    }

    /// The command line as logged and shown in errors.
    pub fn display_argv(&self) -> String {
        let mut line = shell_word(&self.program);
        for arg in &self.args {
            line.push(' ');
            line.push_str(&shell_word(arg));
        }
        line
    }

    /// The command for a program the caller waits for: it is killed when
    /// the calling thread ends, which the caller's death ends too.
    fn attached_command(&self) -> Command {
        let mut command = self.command();
        die_with_parent(&mut command);
        command
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        if let Some(user) = &self.user
            && !user.is_current()
        {
            // std drops supplementary groups itself when root sets a uid.
            command.uid(user.uid).gid(user.gid);
            command.env("HOME", &user.home).env("USER", &user.name);
        }
        command
    }

    /// Runs the command to completion and returns its output; a non-zero
    /// exit is an error.
    pub fn run(&self) -> Result<Output, CmdError> {
        let output = self.run_unchecked()?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(failed(self.display_argv(), &output))
        }
    }

    /// Runs the command to completion and returns its output whatever its
    /// exit status, for programs whose non-zero exit is an answer rather
    /// than a failure (`rpm -q` exits with the number of names it did not
    /// find). Logged like [`Cmd::run`]; only a failure to start or wait for
    /// the program is an error, so the caller must look at `status` itself.
    pub fn run_unchecked(&self) -> Result<Output, CmdError> {
        let argv = self.display_argv();
        tracing::debug!(argv = %argv, user = ?self.user.as_ref().map(|u| &u.name), "running");
        let mut command = self.attached_command();
        let stdin = match &self.stdin {
            Some(secret) if self.stdin_is_file => {
                secret_in_memory(secret).map_err(|source| CmdError::Spawn {
                    argv: argv.clone(),
                    source,
                })?
            }
            Some(_) => Stdio::piped(),
            None => Stdio::null(),
        };
        command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if self.timeout.is_some() || self.group_record.is_some() {
            // A group of its own, so that it is stopped whole.
            command.process_group(0);
        }
        let spawn_error = |source| CmdError::Spawn {
            argv: argv.clone(),
            source,
        };
        let mut child = command.spawn().map_err(spawn_error)?;
        if let Some(record) = &self.group_record {
            // The group's first program stops at once if its name cannot be
            // kept: nothing it starts may go unrecorded.
            if let Err(source) = write_group_record(record, child.id()) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(spawn_error(source));
            }
        }
        let ended = self.wait_for(child, argv.clone());
        if let Some(record) = &self.group_record {
            let _ = std::fs::remove_file(record);
        }
        ended
    }

    fn wait_for(&self, mut child: Child, argv: String) -> Result<Output, CmdError> {
        if let Some(input) = self.stdin.as_ref().filter(|_| !self.stdin_is_file) {
            let mut pipe = child.stdin.take().expect("stdin was piped");
            // A child that exits without reading all of it reports its own error.
            let _ = pipe.write_all(input.expose());
        }
        match self.timeout {
            None => child
                .wait_with_output()
                .map_err(|source| CmdError::Spawn { argv, source }),
            Some(limit) => wait_at_most(child, limit, argv),
        }
    }

    /// Runs the command and returns its standard output as text.
    pub fn output_text(&self) -> Result<String, CmdError> {
        let output = self.run()?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Starts the command in the background with its output going to `log`
    /// (appended), in a session of its own so that it outlives its parent's
    /// terminal. For daemons; the caller keeps the [`Child`].
    pub fn spawn_daemon(&self, log: &Path) -> Result<Child, CmdError> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| CmdError::Spawn {
                argv: self.display_argv(),
                source,
            })?;
        self.spawn_daemon_into(log_file, log)
    }

    /// [`Cmd::spawn_daemon`] with the log opened by the caller (where
    /// another account can write, through `no_follow`); `shown_as` names
    /// it in the log line.
    pub fn spawn_daemon_into(&self, log_file: File, shown_as: &Path) -> Result<Child, CmdError> {
        let argv = self.display_argv();
        tracing::debug!(argv = %argv, log = %shown_as.display(), "starting in the background");
        let spawn_error = |source| CmdError::Spawn {
            argv: argv.clone(),
            source,
        };
        let log_err = log_file.try_clone().map_err(spawn_error)?;
        let mut command = self.command();
        command
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .process_group(0);
        command.spawn().map_err(spawn_error)
    }
}

/// Waits for `child` at most `limit`, reading its output meanwhile; kills
/// its process group when the time is up.
fn wait_at_most(mut child: Child, limit: Duration, argv: String) -> Result<Output, CmdError> {
    use std::io::Read;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
                let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                // The readers end once every holder of the pipes is gone.
                let _ = (stdout.join(), stderr.join());
                return Err(CmdError::TimedOut { argv, limit });
            }
            Err(source) => return Err(CmdError::Spawn { argv, source }),
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// A file in memory holding `secret`, read from its start.
///
/// Through rustix, which makes the system call itself: glibc has the
/// `memfd_create` wrapper only from 2.27, and the binaries run on 2.17.
/// A kernel without the call (RHEL 7 before 7.3) gets an unnamed file on
/// the memory file system `/dev/shm` instead, gone when it is closed.
fn secret_in_memory(secret: &Secret) -> std::io::Result<Stdio> {
    use std::io::{Seek, SeekFrom};
    let fd = match rustix::fs::memfd_create(c"imss-upgrade-secret", rustix::fs::MemfdFlags::CLOEXEC)
    {
        Err(rustix::io::Errno::NOSYS) => rustix::fs::open(
            "/dev/shm",
            rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )?,
        other => other?,
    };
    let mut file = std::fs::File::from(fd);
    file.write_all(secret.expose())?;
    file.seek(SeekFrom::Start(0))?;
    Ok(Stdio::from(file))
}

/// Makes the child get SIGKILL when the thread that forks it ends (the
/// kernel's parent-death signal), and refuses to run it if the parent died
/// before the signal was armed.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the hook runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: it calls prctl(2) and
    // getppid(2) and allocates nothing. It runs after std has set the
    // child's user and group, so the change of credentials does not clear
    // the signal again.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(|errno| std::io::Error::from_raw_os_error(errno as i32))?;
            if nix::unistd::getppid().as_raw() as u32 != parent {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_argv())
    }
}

/// Quotes a word for display only; nothing ever runs this as a shell line.
fn shell_word(word: &OsStr) -> String {
    let text = word.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_exit_carries_status_and_stderr_tail() {
        let err = Cmd::new("sh")
            .args(["-c", "echo first >&2; echo 'the cause' >&2; exit 3"])
            .run()
            .unwrap_err();
        assert_eq!(err.exit_code(), Some(3));
        let text = err.to_string();
        assert!(text.contains("the cause"), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
    }

    #[test]
    fn run_unchecked_hands_back_a_failing_program_s_output() {
        let output = Cmd::new("sh")
            .args(["-c", "echo 'the answer'; echo 'a warning' >&2; exit 2"])
            .run_unchecked()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        assert_eq!(output.stdout, b"the answer\n");
        assert_eq!(output.stderr, b"a warning\n");
        let err = Cmd::new("/nonexistent/imss-tool")
            .run_unchecked()
            .unwrap_err();
        assert!(matches!(err, CmdError::Spawn { .. }), "{err}");
    }

    #[test]
    fn missing_program_names_it() {
        let err = Cmd::new("/nonexistent/imss-tool").run().unwrap_err();
        assert!(err.to_string().contains("/nonexistent/imss-tool"), "{err}");
        assert_eq!(err.exit_code(), None);
    }

    #[test]
    fn stdin_reaches_the_child_and_stays_out_of_the_argv() {
        let secret = Secret::new("p%ss;#word");
        let cmd = Cmd::new("cat").stdin_secret(&secret);
        assert_eq!(cmd.output_text().unwrap(), "p%ss;#word");
        assert!(!cmd.display_argv().contains("p%ss"));
        assert!(!format!("{cmd:?}").contains("p%ss"));
    }

    #[test]
    fn a_secret_as_a_file_in_memory_is_read_by_name_and_never_on_disk() {
        let secret = Secret::new("p%ss;#word");
        let cmd = Cmd::new("cat").arg("/dev/stdin").stdin_secret_file(&secret);
        assert_eq!(cmd.output_text().unwrap(), "p%ss;#word");
        assert!(!cmd.display_argv().contains("p%ss"));
    }

    #[test]
    fn a_program_that_hangs_is_stopped_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild");
        let started = std::time::Instant::now();
        let err = Cmd::new("/bin/sh")
            .args(["-c", "sleep 600 & echo $! > \"$1\"; wait", "sh"])
            .arg(&marker)
            .timeout(Duration::from_millis(300))
            .run()
            .unwrap_err();
        assert!(matches!(err, CmdError::TimedOut { .. }), "{err}");
        assert!(err.to_string().contains("did not finish within"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(30));
        let grandchild: u32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                .map_or(true, |stat| stat.contains(") Z "))
        });
        assert!(gone, "the program's own child outlived it");
        let output = Cmd::new("sh")
            .args(["-c", "echo done"])
            .timeout(Duration::from_secs(30))
            .output_text()
            .unwrap();
        assert_eq!(output, "done\n");
    }

    #[test]
    fn display_quotes_words_with_spaces() {
        let cmd = Cmd::new("initdb").args(["-D", "/var/imss/pg data"]);
        assert_eq!(cmd.display_argv(), "initdb -D '/var/imss/pg data'");
    }
}
