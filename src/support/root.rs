//! The root directory every helper works under (`--root`, default `/`), as
//! `rpm --root` and `systemctl --root` do. Every path a step touches is an
//! absolute path *inside* the root, resolved here; nothing else joins paths
//! onto the root by hand.
//!
//! Symbolic links are followed the way they would be after a `chroot` into
//! the root: an absolute link target starts again at the root, and a relative
//! one is taken from the link's directory. A path that names `..`, or a link
//! whose target climbs above the root, is refused rather than clamped.
//!
//! A link is followed only where only root could have made it: in a
//! directory only root can write, or a link root owns. One that another
//! account could have planted (in `/var/imss`, the service account's) is
//! refused, naming it: root never goes where it leads.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

use super::no_follow::{self, EntryKind};

/// More link hops than this is a loop (the kernel's own limit is 40).
const MAX_LINK_HOPS: usize = 40;

/// Why a path could not be resolved under the root.
#[derive(Debug, Error)]
pub enum RootError {
    /// The path itself names a parent directory.
    #[error("{path}: paths under the root may not contain '..'")]
    ParentComponent {
        /// The path as given.
        path: PathBuf,
    },
    /// A symbolic link on the way points above the root.
    #[error("{path}: the symbolic link {link} points outside {root}")]
    LinkEscapes {
        /// The path as given.
        path: PathBuf,
        /// The link that escapes, as a path on this machine.
        link: PathBuf,
        /// The root directory.
        root: PathBuf,
    },
    /// Too many symbolic links, probably a loop.
    #[error("{path}: more than {MAX_LINK_HOPS} symbolic links on the way; is there a loop?")]
    TooManyLinks {
        /// The path as given.
        path: PathBuf,
    },
    /// The root directory itself is unusable.
    #[error(
        "root directory {root} cannot be used (give --root the directory the server is installed under, / for this machine)"
    )]
    BadRoot {
        /// The root directory.
        root: PathBuf,
        /// Why it is unusable.
        source: std::io::Error,
    },
    /// A link on the way that another account could have planted.
    #[error(
        "{link} is a symbolic link owned by {owner} in a directory that account can write: \
         root follows no link another account could have planted. Remove it (if the link is \
         meant, make it again as root), then run this again"
    )]
    UntrustedLink {
        /// The link, as a path on this machine.
        link: PathBuf,
        /// Its owner, named.
        owner: String,
    },
    /// Reading a link on the way failed.
    #[error("reading {path}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A root directory. Cheap to clone; holds the canonical path of the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// Opens `dir` as the root; it must exist.
    pub fn new(dir: impl AsRef<Path>) -> Result<Self, RootError> {
        let dir = dir.as_ref();
        let dir = dir.canonicalize().map_err(|source| RootError::BadRoot {
            root: dir.to_path_buf(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// The root directory as a path on this machine.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this is the machine's own `/`.
    pub fn is_host(&self) -> bool {
        self.dir == Path::new("/")
    }

    /// Resolves `path` (absolute inside the root; a relative path is taken
    /// from the root) to a path on this machine, following every link.
    pub fn resolve(&self, path: impl AsRef<Path>) -> Result<PathBuf, RootError> {
        self.resolve_inner(path.as_ref(), true)
    }

    /// Like [`Root::resolve`], but the last component is not followed if it
    /// is a link: for removing, renaming or creating the link itself.
    pub fn resolve_parent(&self, path: impl AsRef<Path>) -> Result<PathBuf, RootError> {
        self.resolve_inner(path.as_ref(), false)
    }

    /// The path inside the root that a path on this machine stands for, for
    /// messages ("/opt/trend/imss/config/odbc.ini" rather than the long form).
    pub fn inside(&self, host_path: &Path) -> PathBuf {
        match host_path.strip_prefix(&self.dir) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => host_path.to_path_buf(),
        }
    }

    fn resolve_inner(&self, path: &Path, follow_last: bool) -> Result<PathBuf, RootError> {
        let mut pending: VecDeque<OsString> = VecDeque::new();
        for component in path.components() {
            match component {
                Component::Normal(name) => pending.push_back(name.to_os_string()),
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(RootError::ParentComponent {
                        path: path.to_path_buf(),
                    });
                }
            }
        }

        let mut resolved: Vec<OsString> = Vec::new();
        let mut hops = 0;
        while let Some(name) = pending.pop_front() {
            if name == ".." {
                // Only link targets reach here with "..": the input was checked above.
                if resolved.pop().is_none() {
                    return Err(RootError::LinkEscapes {
                        path: path.to_path_buf(),
                        link: self.host_path(&resolved),
                        root: self.dir.clone(),
                    });
                }
                continue;
            }
            if name == "." {
                continue;
            }
            resolved.push(name);
            let is_last = pending.is_empty();
            if is_last && !follow_last {
                break;
            }
            let candidate = self.host_path(&resolved);
            let Ok(meta) = std::fs::symlink_metadata(&candidate) else {
                // Not there (yet): nothing further down can be a link either.
                resolved.extend(pending.drain(..));
                break;
            };
            if !meta.file_type().is_symlink() {
                continue;
            }
            if !only_root_could_have_made(&candidate, &meta) {
                return Err(RootError::UntrustedLink {
                    owner: no_follow::describe_uid(meta.uid()),
                    link: candidate,
                });
            }
            hops += 1;
            if hops > MAX_LINK_HOPS {
                return Err(RootError::TooManyLinks {
                    path: path.to_path_buf(),
                });
            }
            let target = std::fs::read_link(&candidate).map_err(|source| RootError::Io {
                path: candidate.clone(),
                source,
            })?;
            resolved.pop();
            if target.is_absolute() {
                resolved.clear();
            }
            for component in target.components().rev() {
                match component {
                    Component::Normal(name) => pending.push_front(name.to_os_string()),
                    Component::ParentDir => pending.push_front("..".into()),
                    Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                }
            }
            // A relative target that climbs out must be refused, not clamped:
            // check it against the depth it starts from.
            let mut depth = resolved.len() as isize;
            for name in &pending {
                if name == ".." {
                    depth -= 1;
                    if depth < 0 {
                        return Err(RootError::LinkEscapes {
                            path: path.to_path_buf(),
                            link: candidate,
                            root: self.dir.clone(),
                        });
                    }
                } else if name != "." {
                    depth += 1;
                }
            }
        }
        Ok(self.host_path(&resolved))
    }

    fn host_path(&self, components: &[OsString]) -> PathBuf {
        let mut path = self.dir.clone();
        path.extend(components);
        path
    }
}

/// Whether the link `link` (its `meta`) can only have been made by root:
/// root owns it, or its directory is root's and writable by no one else.
fn only_root_could_have_made(link: &Path, meta: &std::fs::Metadata) -> bool {
    meta.uid() == 0
        || link
            .parent()
            .and_then(|dir| no_follow::lstat(dir).ok().flatten())
            .is_some_and(|dir| dir.kind == EntryKind::Directory && dir.only_root_can_write())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var/imss")).unwrap();
        std::fs::create_dir_all(dir.path().join("data/imss")).unwrap();
        let root = Root::new(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn plain_paths_land_under_the_root() {
        let (_dir, root) = tree();
        assert_eq!(
            root.resolve("/var/imss/pgdata").unwrap(),
            root.dir().join("var/imss/pgdata")
        );
        assert_eq!(
            root.resolve("var/imss").unwrap(),
            root.dir().join("var/imss")
        );
    }

    #[test]
    fn parent_components_are_refused() {
        let (_dir, root) = tree();
        let err = root.resolve("/var/../../etc/passwd").unwrap_err();
        assert!(matches!(err, RootError::ParentComponent { .. }), "{err}");
        assert!(err.to_string().contains("'..'"));
    }

    #[test]
    fn absolute_link_targets_start_again_at_the_root() {
        let (_dir, root) = tree();
        std::fs::remove_dir(root.dir().join("var/imss")).unwrap();
        symlink("/data/imss", root.dir().join("var/imss")).unwrap();
        assert_eq!(
            root.resolve("/var/imss/pgdata").unwrap(),
            root.dir().join("data/imss/pgdata")
        );
        assert_eq!(
            root.resolve_parent("/var/imss").unwrap(),
            root.dir().join("var/imss")
        );
    }

    #[test]
    fn relative_links_inside_the_root_are_followed() {
        let (_dir, root) = tree();
        symlink("../../data/imss", root.dir().join("var/imss/alias")).unwrap();
        assert_eq!(
            root.resolve("/var/imss/alias/x").unwrap(),
            root.dir().join("data/imss/x")
        );
    }

    #[test]
    fn relative_links_climbing_out_are_refused() {
        let (_dir, root) = tree();
        symlink("../../../../etc", root.dir().join("var/imss/escape")).unwrap();
        let err = root.resolve("/var/imss/escape/passwd").unwrap_err();
        assert!(matches!(err, RootError::LinkEscapes { .. }), "{err}");
        assert!(err.to_string().contains("points outside"), "{err}");
    }

    #[test]
    fn link_loops_are_reported() {
        let (_dir, root) = tree();
        symlink("/var/imss/b", root.dir().join("var/imss/a")).unwrap();
        symlink("/var/imss/a", root.dir().join("var/imss/b")).unwrap();
        let err = root.resolve("/var/imss/a/x").unwrap_err();
        assert!(matches!(err, RootError::TooManyLinks { .. }), "{err}");
    }

    #[test]
    fn a_link_another_account_could_have_planted_is_refused() {
        let (_dir, root) = tree();
        let nobody = uzers::get_user_by_name("nobody").unwrap();
        let data = root.dir().join("var/imss");
        std::os::unix::fs::chown(&data, Some(nobody.uid()), None).unwrap();
        symlink("/data/imss", data.join("run")).unwrap();
        // Root made this one: followed.
        assert_eq!(
            root.resolve("/var/imss/run/x").unwrap(),
            root.dir().join("data/imss/x")
        );
        std::os::unix::fs::lchown(data.join("run"), Some(nobody.uid()), None).unwrap();
        let err = root.resolve("/var/imss/run/x").unwrap_err();
        assert!(matches!(err, RootError::UntrustedLink { .. }), "{err}");
        assert!(err.to_string().contains("nobody"), "{err}");
        // The link itself, not followed, is still a path.
        assert_eq!(
            root.resolve_parent("/var/imss/run").unwrap(),
            data.join("run")
        );
    }

    #[test]
    fn inside_shows_the_path_as_the_root_sees_it() {
        let (_dir, root) = tree();
        let host = root.resolve("/opt/trend/imss/config/odbc.ini").unwrap();
        assert_eq!(
            root.inside(&host),
            Path::new("/opt/trend/imss/config/odbc.ini")
        );
    }
}
