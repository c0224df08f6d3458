//! Checks of what the user gives on the command line, each failing with a one-line error
//! that names the bad value.

use crate::error::{Error, Result};

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

/// The environment of a guest init: `HOME=/`, `TERM=linux`, `container=NAME`,
/// `container_uuid=UUID` (systemd's container interface), then the user's (common::guest
/// holds the same base for the shim, which builds the real one).
pub fn guest_env(name: &str, uuid: &str, user: &[String]) -> Vec<String> {
    let base: Vec<String> = cradle_common::guest::BASE_ENV
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .chain([
            format!("{}{name}", cradle_common::guest::CONTAINER_VAR),
            format!("{UUID_VAR}{uuid}"),
        ])
        .collect();
    merge_env(&base, user)
}

/// systemd's variable for the container's UUID, from which a guest without a machine id
/// makes its own.
pub const UUID_VAR: &str = "container_uuid=";

/// The value of `key=` in `env`.
pub fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter().find_map(|v| v.strip_prefix(key))
}

/// `base` with the `K=V` variables of `more` added: a variable set in both keeps the value
/// from `more`, in the place `base` gave it (the later value wins, once).
pub fn merge_env(base: &[String], more: &[String]) -> Vec<String> {
    let key = |var: &str| var.split('=').next().unwrap_or_default().to_owned();
    let mut env: Vec<String> = Vec::with_capacity(base.len() + more.len());
    for var in base.iter().chain(more) {
        match env.iter_mut().find(|v| key(v) == key(var)) {
            Some(slot) => *slot = var.clone(),
            None => env.push(var.clone()),
        }
    }
    env
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
        let uuid = "0b5f5ffa-6e3a-4c4f-9a8e-1d2a3b4c5d6e";
        let env = guest_env("web1", uuid, &["LANG=C".into()]);
        assert_eq!(
            env,
            [
                "HOME=/",
                "TERM=linux",
                "container=web1",
                &format!("container_uuid={uuid}"),
                "LANG=C"
            ]
        );
        assert_eq!(env_value(&env, UUID_VAR), Some(uuid));
    }

    #[test]
    fn the_later_value_wins_in_the_earlier_place() {
        let env = merge_env(
            &["A=1".into(), "TERM=linux".into()],
            &["TERM=xterm".into(), "B=2".into(), "A=3".into()],
        );
        assert_eq!(env, ["A=3", "TERM=xterm", "B=2"]);
    }

    #[test]
    fn hostnames_are_checked() {
        assert!(check_hostname("web1.example").is_ok());
        assert!(check_hostname("").is_err());
        assert!(check_hostname(&"x".repeat(65)).is_err());
    }
}
