//! Checks of what the user gives on the command line, each failing with a one-line error
//! that names the bad value.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The root directory of a guest, made absolute and free of symlinks. Refuses a missing
/// path, anything but a directory, the host's own root, and mount points (proc, sys, dev)
/// that are not directories (a symlink there would move a mount elsewhere).
pub fn check_root(path: &Path) -> Result<PathBuf> {
    let bad = |why: String| Error::BadRoot {
        root: path.to_owned(),
        why,
    };
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => bad("no such directory".into()),
        _ => bad(e.to_string()),
    })?;
    if !meta.is_dir() {
        return Err(bad("not a directory".into()));
    }
    let root = fs::canonicalize(path).map_err(|e| bad(e.to_string()))?;
    if root == Path::new("/") {
        return Err(bad("the host's own root cannot be a guest".into()));
    }
    for sub in ["proc", "sys", "dev"] {
        if let Ok(meta) = fs::symlink_metadata(root.join(sub)) {
            if !meta.is_dir() {
                return Err(bad(format!("/{sub} in it is not a directory")));
            }
        }
    }
    Ok(root)
}

/// `K=V` variables: a non-empty name without `=`, no NUL anywhere.
pub fn check_env(vars: &[String]) -> Result<()> {
    for var in vars {
        let ok =
            matches!(var.split_once('='), Some((key, _)) if !key.is_empty()) && !var.contains('\0');
        if !ok {
            return Err(Error::Usage(format!(
                "bad --env {var:?}: expected NAME=value"
            )));
        }
    }
    Ok(())
}

/// A hostname the kernel accepts: 1 to 64 bytes, no NUL or '/'.
pub fn check_hostname(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 64 || name.contains(['\0', '/']) {
        return Err(Error::Usage(format!(
            "bad --hostname {name:?}: 1 to 64 bytes, no '/'"
        )));
    }
    Ok(())
}

/// The environment of a guest init: `HOME=/`, `TERM=linux`, `container=NAME`, then the
/// user's (common::guest holds the same base for the shim, which builds the real one).
pub fn guest_env(name: &str, user: &[String]) -> Vec<String> {
    let base = cradle_common::guest::BASE_ENV
        .iter()
        .map(|v| v.to_string_lossy().into_owned());
    base.chain([format!("{}{name}", cradle_common::guest::CONTAINER_VAR)])
        .chain(user.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_needs_a_name_and_an_equals_sign() {
        assert!(check_env(&["A=1".into(), "B=".into(), "C=x=y".into()]).is_ok());
        for bad in ["A", "=1", "", "A\0=1"] {
            assert!(check_env(&[bad.into()]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn guest_env_is_the_openvz_base_then_the_user_s() {
        assert_eq!(
            guest_env("web1", &["LANG=C".into()]),
            ["HOME=/", "TERM=linux", "container=web1", "LANG=C"]
        );
    }

    #[test]
    fn roots_that_cannot_be_guests_are_refused() {
        assert!(matches!(
            check_root(Path::new("/nonexistent/x")),
            Err(Error::BadRoot { .. })
        ));
        assert!(matches!(
            check_root(Path::new("/etc/hostname")),
            Err(Error::BadRoot { .. })
        ));
        assert!(matches!(
            check_root(Path::new("/")),
            Err(Error::BadRoot { .. })
        ));
        let msg = check_root(Path::new("/nonexistent/x"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("/nonexistent/x"), "{msg}");
    }

    #[test]
    fn hostnames_are_checked() {
        assert!(check_hostname("web1.example").is_ok());
        assert!(check_hostname("").is_err());
        assert!(check_hostname(&"x".repeat(65)).is_err());
    }
}
