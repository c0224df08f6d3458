//! `cradle create NAME --root DIR [options]` writes the guest's config file, as `vzctl
//! create` writes `CTID.conf`; `cradle destroy NAME` removes it. Neither touches the root
//! directory: the guest's files are the user's.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::cli::{Create, LimitOptions};
use crate::configfile::{self, NewFile};
use cradle_core::cgroups::limits::{Changes, Limits};
use cradle_core::config;
use cradle_core::container::rootfs;
use cradle_core::error::{Error, Result};
use cradle_core::guest::state::{StateDir, validate_name};
use cradle_core::security::caps;

/// The root `create` is given: one `start` would take ([`rootfs::check_root`]), as an
/// absolute path (symlinks kept: the file names the path the user gave). Nothing in it is
/// looked at.
fn root_path(root: &Path) -> Result<PathBuf> {
    rootfs::check_root(root)?;
    std::path::absolute(root).map_err(|e| Error::BadRoot {
        root: root.to_owned(),
        why: e.to_string(),
    })
}

pub fn create(config_dir: &Path, args: &Create) -> Result<()> {
    validate_name(&args.name)?;
    // everything `start` would refuse, refused now
    config::check_env(&args.env)?;
    if let Some(hostname) = &args.hostname {
        config::check_hostname(hostname)?;
    }
    caps::resolve(&args.capability, &args.drop_capability)?;
    let limits = Changes::parse(args.given())?;
    limits.apply_to(Limits::DEFAULT)?;
    cradle_core::net::Request::parse(&crate::cli::NetOptions::net_given(args))?;
    let root = root_path(&args.root)?;
    let shim = args.shim.as_deref().map(std::path::absolute).transpose();
    let shim = shim.map_err(|e| Error::Usage(format!("bad --shim: {e}")))?;
    let file = NewFile {
        root: &root,
        hostname: args.hostname.as_deref(),
        env: &args.env,
        shim: shim.as_deref(),
        timeout: args.timeout,
        userns: args.userns,
        ownership: args.ownership,
        capability: &args.capability,
        drop_capability: &args.drop_capability,
        seccomp: args.seccomp,
        limits,
        net: crate::cli::NetOptions::net_given(args),
        onboot: args.onboot,
        bootorder: args.bootorder,
    };
    let path = configfile::path(config_dir, &args.name);
    let text = file.render(&args.name);
    // what start will read: checked before it is written
    configfile::parse(&path, &text)?;
    configfile::write(&path, &text, !args.force)
}

pub fn destroy(config_dir: &Path, state_base: &Path, name: &str) -> Result<()> {
    validate_name(name)?;
    let path = configfile::path(config_dir, name);
    if !path.exists() {
        return Err(Error::NoConfig(path, "nothing to destroy"));
    }
    // the name, held while the file goes: no `start` of it can begin meanwhile
    let _name = StateDir::acquire(state_base, name).map_err(|e| match e {
        Error::AlreadyRunning(_) => Error::StillRunning(format!(
            "{name} is running: stop it first (cradle stop {name})"
        )),
        other => other,
    })?;
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(Error::NoConfig(path, "nothing to destroy"))
        }
        Err(e) => Err(Error::host(format!("remove {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_must_be_a_directory_and_not_the_host_s() {
        for bad in ["/nonexistent/x", "/etc/hostname", "/", "/etc/.."] {
            assert!(
                matches!(root_path(Path::new(bad)), Err(Error::BadRoot { .. })),
                "{bad}"
            );
        }
        // one other users can reach: what start refuses
        assert!(root_path(Path::new("/tmp")).is_err());
        // below a directory closed to others: taken, as given
        use std::os::unix::fs::PermissionsExt;
        let closed = std::env::temp_dir().join(format!("cradle-create-{}", std::process::id()));
        let root = closed.join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(root_path(&root).unwrap(), root);
        std::fs::remove_dir_all(&closed).unwrap();
    }
}
