//! The `imss` service account that the services and the bundled PostgreSQL
//! run as. On the host root it comes from the system's user database (NSS,
//! through `uzers`); under any other root, from that root's `/etc/passwd`,
//! as a `chroot` would see it.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use uzers::os::unix::UserExt;

use crate::support::root::Root;

/// An account to run processes as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUser {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory (as the account's passwd entry has it).
    pub home: PathBuf,
}

impl ServiceUser {
    /// Finds `name` in the user database of `root`.
    pub fn lookup(root: &Root, name: &str) -> Result<Self> {
        if root.is_host() {
            let user = uzers::get_user_by_name(name).with_context(|| {
                format!("user {name} does not exist on this system; is IMSS 7.1 installed here?")
            })?;
            return Ok(Self {
                name: name.to_string(),
                uid: user.uid(),
                gid: user.primary_group_id(),
                home: user.home_dir().to_path_buf(),
            });
        }
        let passwd = root.resolve("/etc/passwd")?;
        let text = std::fs::read_to_string(&passwd)
            .with_context(|| format!("reading {}", passwd.display()))?;
        match find_passwd_entry(&text, name) {
            Some(user) => Ok(user),
            None => bail!(
                "user {name} is not in {}; is IMSS 7.1 installed under this root?",
                passwd.display()
            ),
        }
    }

    /// The account this process runs as.
    pub fn current() -> Self {
        let uid = uzers::get_current_uid();
        let user = uzers::get_user_by_uid(uid);
        Self {
            name: user
                .as_ref()
                .map(|u| u.name().to_string_lossy().into_owned())
                .unwrap_or_else(|| uid.to_string()),
            uid,
            gid: uzers::get_current_gid(),
            home: user
                .map(|u| u.home_dir().to_path_buf())
                .unwrap_or_else(|| PathBuf::from("/")),
        }
    }

    /// Whether this is the account this process runs as.
    pub fn is_current(&self) -> bool {
        self.uid == uzers::get_current_uid() && self.gid == uzers::get_current_gid()
    }
}

/// Parses one entry out of passwd(5) text.
pub fn find_passwd_entry(text: &str, name: &str) -> Option<ServiceUser> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 || fields[0] != name {
            return None;
        }
        Some(ServiceUser {
            name: name.to_string(),
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
            home: PathBuf::from(fields[5]),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_entry_from_passwd_text() {
        let text = "root:x:0:0:root:/root:/bin/bash\nimss:x:65534:65534:IMSS:/opt/trend/imss:/sbin/nologin\n";
        let user = find_passwd_entry(text, "imss").unwrap();
        assert_eq!((user.uid, user.gid), (65534, 65534));
        assert_eq!(user.home, PathBuf::from("/opt/trend/imss"));
        assert!(find_passwd_entry(text, "postgres").is_none());
    }
}
