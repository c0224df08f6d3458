//! A guest's config file, as vzctl keeps `CTID.conf`: `/etc/cradle/NAME.toml` (the
//! directory is `--config-dir` or `$CRADLE_CONFIG_DIR`).
//!
//! Every key is the name of the `start` option it stands for (`root`, `hostname`, `env`,
//! `shim`, `timeout`, `userns`, `ownership`, `capability`, `drop-capability`, `seccomp`, `memory`,
//! `swap`, `pids`, `cpus`, `cpu-weight`, `net`, `ip`, `gateway`, `dns`, `mac`, `mtu`,
//! `port`), with the value that option takes; `onboot` and
//! `bootorder` are for `autostart`. Values are checked as the options' are, when the file
//! is read: a bad one, or a key that is not one of these, is a one-line error naming the
//! file, the line and the key.
//!
//! `cradle start NAME` without `--root` reads the file; options given on the command line
//! are applied on top of it (see [`start_options`]). `create` writes one, `set --save`
//! changes the limits in one (keeping the rest of the file as it is, comments included).

use std::fmt;
use std::fs;
use std::io;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::cli::{Seconds, Switch};
use cradle_core::cgroups::limits::{self, Changes, Setting};
use cradle_core::config;
use cradle_core::container::ownership::Ownership;
use cradle_core::error::{Error, Result};
use cradle_core::guest::state::validate_name;
use cradle_core::net::{Given, Request};
use cradle_core::security::caps::{self, CapSet};
use cradle_core::security::userns::UsernsMode;

/// Where config files live unless `--config-dir` or `$CRADLE_CONFIG_DIR` says otherwise.
pub const DEFAULT_DIR: &str = "/etc/cradle";

/// The timeout of a guest whose file and command line give none.
pub const DEFAULT_TIMEOUT: Seconds = Seconds(60);

/// The config file of guest `name` in `dir`.
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.toml"))
}

/// What a config file says, checked; `None` (or empty) where it says nothing.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GuestConfig {
    #[serde(default, deserialize_with = "de_absolute")]
    pub root: Option<PathBuf>,
    #[serde(default, deserialize_with = "de_hostname")]
    pub hostname: Option<String>,
    #[serde(default, deserialize_with = "de_env")]
    pub env: Vec<String>,
    #[serde(default, deserialize_with = "de_absolute")]
    pub shim: Option<PathBuf>,
    #[serde(default, deserialize_with = "de_timeout")]
    pub timeout: Option<Seconds>,
    #[serde(default, deserialize_with = "de_userns")]
    pub userns: Option<UsernsMode>,
    #[serde(default, deserialize_with = "de_ownership")]
    pub ownership: Option<Ownership>,
    #[serde(default, deserialize_with = "de_capability")]
    pub capability: Vec<String>,
    #[serde(default, deserialize_with = "de_drop_capability")]
    pub drop_capability: Vec<String>,
    #[serde(default, deserialize_with = "de_seccomp")]
    pub seccomp: Option<Switch>,
    #[serde(default, deserialize_with = "de_memory")]
    pub memory: Option<Setting<u64>>,
    #[serde(default, deserialize_with = "de_swap")]
    pub swap: Option<Setting<u64>>,
    #[serde(default, deserialize_with = "de_pids")]
    pub pids: Option<Setting<u64>>,
    #[serde(default, deserialize_with = "de_cpus")]
    pub cpus: Option<Setting<f64>>,
    #[serde(default, deserialize_with = "de_cpu_weight")]
    pub cpu_weight: Option<u32>,
    #[serde(default)]
    pub net: Option<String>,
    #[serde(default)]
    pub ip: Vec<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub port: Vec<String>,
    /// `autostart` starts the guest.
    #[serde(default)]
    pub onboot: bool,
    /// `autostart` order: higher first, then those without one (vzctl's BOOTORDER).
    #[serde(default)]
    pub bootorder: Option<u32>,
}

impl GuestConfig {
    /// The limits the file sets, as changes to none.
    pub fn changes(&self) -> Changes {
        Changes {
            memory: self.memory,
            swap: self.swap,
            pids: self.pids,
            cpus: self.cpus,
            cpu_weight: self.cpu_weight,
        }
    }

    /// The network options the file gives (`mtu` as text in `mtu`).
    pub fn net_given<'a>(&'a self, mtu: &'a Option<String>) -> Given<'a> {
        Given {
            net: self.net.as_deref(),
            ip: &self.ip,
            gateway: self.gateway.as_deref(),
            dns: &self.dns,
            mac: self.mac.as_deref(),
            mtu: mtu.as_deref(),
            port: &self.port,
        }
    }

    /// The network the file asks for.
    pub fn network(&self) -> Result<Request> {
        let mtu = self.mtu.map(|m| m.to_string());
        Request::parse(&self.net_given(&mtu))
    }

    /// The bounding set the file asks for (the command line's options apply on top).
    pub fn caps(&self) -> Result<CapSet> {
        let add = caps::parse_all("capability", &self.capability)?;
        let drop = caps::parse_all("drop-capability", &self.drop_capability)?;
        Ok(CapSet::DEFAULT.union(add).difference(drop))
    }
}

/// Reads `text` (the contents of `path`); an error names the file and the line.
pub fn parse(path: &Path, text: &str) -> Result<GuestConfig> {
    let file: GuestConfig =
        toml::from_str(text).map_err(|e| bad_file(path, text, e.message(), e.span()))?;
    // the network keys go together: checked as one
    if let Err(e) = file.network() {
        return Err(bad_file(path, text, &e.to_string(), None));
    }
    Ok(file)
}

/// The one-line error for what is wrong at `span` of the file `path`.
fn bad_file(path: &Path, text: &str, message: &str, span: Option<Range<usize>>) -> Error {
    // serde says "field"; the file has keys. Its messages are one line, but keep them so.
    let what = message
        .trim()
        .replace("unknown field", "unknown key")
        .replace("missing field", "missing key")
        .replace('\n', " ");
    let at = match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("{}:{line}", path.display())
        }
        None => path.display().to_string(),
    };
    Error::Usage(format!("{at}: {what}"))
}

/// Reads the config file at `path`: `None` when there is none.
pub fn read(path: &Path) -> Result<Option<GuestConfig>> {
    match fs::read_to_string(path) {
        Ok(text) => parse(path, &text).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::host(format!("read {}", path.display()), e)),
    }
}

/// Reads the config file of guest `name`, which must exist (`hint` says what to do
/// without one).
pub fn load(dir: &Path, name: &str, hint: &'static str) -> Result<GuestConfig> {
    validate_name(name)?;
    let path = path(dir, name);
    read(&path)?.ok_or(Error::NoConfig(path, hint))
}

// ---- writing

/// A TOML string literal.
fn string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// A size as the file keeps it: "512M" when it is a whole number of K, M, G or T, else
/// bytes.
fn size(setting: Setting<u64>) -> String {
    match setting {
        Setting::Max => string("max"),
        Setting::To(bytes) => {
            for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
                if bytes != 0 && bytes % (1 << shift) == 0 {
                    return string(&format!("{}{unit}", bytes >> shift));
                }
            }
            bytes.to_string()
        }
    }
}

/// The limits `changes` names, as `key = value` entries, in the file's order.
pub fn limit_entries(changes: &Changes) -> Vec<(&'static str, String)> {
    let mut entries = Vec::new();
    if let Some(memory) = changes.memory {
        entries.push(("memory", size(memory)));
    }
    if let Some(swap) = changes.swap {
        entries.push(("swap", size(swap)));
    }
    if let Some(pids) = changes.pids {
        let value = match pids {
            Setting::Max => string("max"),
            Setting::To(n) => n.to_string(),
        };
        entries.push(("pids", value));
    }
    if let Some(cpus) = changes.cpus {
        let value = match cpus {
            Setting::Max => string("max"),
            Setting::To(f) => f.to_string(),
        };
        entries.push(("cpus", value));
    }
    if let Some(weight) = changes.cpu_weight {
        entries.push(("cpu-weight", weight.to_string()));
    }
    entries
}

/// A TOML array of strings.
fn strings(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| string(s)).collect();
    format!("[{}]", items.join(", "))
}

/// What `create` was given: every entry of the new file.
pub struct NewFile<'a> {
    pub root: &'a Path,
    pub hostname: Option<&'a str>,
    pub env: &'a [String],
    pub shim: Option<&'a Path>,
    pub timeout: Option<Seconds>,
    pub userns: Option<UsernsMode>,
    pub ownership: Option<Ownership>,
    pub capability: &'a [String],
    pub drop_capability: &'a [String],
    pub seccomp: Option<Switch>,
    pub limits: Changes,
    /// The network options, as given (checked).
    pub net: Given<'a>,
    pub onboot: bool,
    pub bootorder: Option<u32>,
}

impl NewFile<'_> {
    /// The file's text: a comment, then one `key = value` line per option given.
    pub fn render(&self, name: &str) -> String {
        let path = |p: &Path| string(&p.to_string_lossy());
        let mut entries = vec![("root", path(self.root))];
        if let Some(hostname) = self.hostname {
            entries.push(("hostname", string(hostname)));
        }
        if !self.env.is_empty() {
            entries.push(("env", strings(self.env)));
        }
        if let Some(shim) = self.shim {
            entries.push(("shim", path(shim)));
        }
        if let Some(timeout) = self.timeout {
            entries.push(("timeout", timeout.0.to_string()));
        }
        if let Some(userns) = self.userns {
            let value = match userns {
                UsernsMode::Pick => string("pick"),
                UsernsMode::Off => string("off"),
                UsernsMode::Base(base) => base.to_string(),
            };
            entries.push(("userns", value));
        }
        if let Some(ownership) = self.ownership {
            entries.push(("ownership", string(ownership.word())));
        }
        if !self.capability.is_empty() {
            entries.push(("capability", strings(self.capability)));
        }
        if !self.drop_capability.is_empty() {
            entries.push(("drop-capability", strings(self.drop_capability)));
        }
        if let Some(seccomp) = self.seccomp {
            let word = if seccomp == Switch::On { "on" } else { "off" };
            entries.push(("seccomp", string(word)));
        }
        entries.extend(limit_entries(&self.limits));
        let net = &self.net;
        if let Some(mode) = net.net {
            entries.push(("net", string(mode)));
        }
        for (key, list) in [("ip", net.ip), ("dns", net.dns), ("port", net.port)] {
            if !list.is_empty() {
                entries.push((key, strings(list)));
            }
        }
        if let Some(gateway) = net.gateway {
            entries.push(("gateway", string(gateway)));
        }
        if let Some(mac) = net.mac {
            entries.push(("mac", string(mac)));
        }
        if let Some(mtu) = net.mtu {
            entries.push(("mtu", mtu.to_owned()));
        }
        entries.push(("onboot", self.onboot.to_string()));
        if let Some(order) = self.bootorder {
            entries.push(("bootorder", order.to_string()));
        }
        let mut text = format!(
            "# The guest {name}, for cradle start {name} (written by cradle create).\n\
             # The keys are the options of cradle start; see cradle's README.\n"
        );
        for (key, value) in entries {
            text.push_str(&format!("{key} = {value}\n"));
        }
        text
    }
}

/// `text` with each of `entries` set: a key the file has gets the new value in its place
/// (comments and the rest of the line stay), a key it lacks is added at the end.
pub fn edit(path: &Path, text: &str, entries: &[(&str, String)]) -> Result<String> {
    let table =
        toml::de::DeTable::parse(text).map_err(|e| bad_file(path, text, e.message(), e.span()))?;
    let mut spans: Vec<(Range<usize>, &str)> = Vec::new();
    let mut missing = Vec::new();
    for (key, value) in entries {
        let found = table
            .get_ref()
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == *key)
            .map(|(_, v)| v.span());
        match found {
            Some(span) => spans.push((span, value.as_str())),
            None => missing.push((*key, value.as_str())),
        }
    }
    // from the end, so that the spans before stay where they are
    spans.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
    let mut out = text.to_owned();
    for (span, value) in spans {
        out.replace_range(span, value);
    }
    if !missing.is_empty() && !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for (key, value) in missing {
        out.push_str(&format!("{key} = {value}\n"));
    }
    Ok(out)
}

/// Writes `text` as the file `path` whole (a temporary file renamed over it), with the
/// mode the file had (0644 for a new one), making its directory when it is missing.
/// With `exclusive`, an existing file is not replaced: [`Error::ConfigExists`].
pub fn write(path: &Path, text: &str, exclusive: bool) -> Result<()> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::host(ctx("create the directory of"), e))?;
    let mode = fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = fs::write(&tmp, text)
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)))
        .and_then(|()| {
            if exclusive {
                // link(2) never replaces: the file appears whole, or not at all
                fs::hard_link(&tmp, path)
            } else {
                fs::rename(&tmp, path)
            }
        });
    let _ = fs::remove_file(&tmp);
    match written {
        Ok(()) => Ok(()),
        Err(e) if exclusive && e.kind() == io::ErrorKind::AlreadyExists => {
            Err(Error::ConfigExists(path.to_owned()))
        }
        Err(e) => Err(Error::host(ctx("write"), e)),
    }
}

// ---- reading values, each checked as its option is

/// A TOML string, integer, float or boolean, as the text an option would have been given.
struct Word(String);

impl<'de> Deserialize<'de> for Word {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = Word;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Word, E> {
                Ok(Word(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Word, E> {
                Ok(Word(v.to_string()))
            }
        }
        d.deserialize_any(Text)
    }
}

/// A value read as a [`Word`] and checked by `check`, whose error becomes the file's.
fn checked<'de, D: Deserializer<'de>, T>(
    d: D,
    check: impl FnOnce(&str) -> std::result::Result<T, String>,
) -> std::result::Result<Option<T>, D::Error> {
    let word = Word::deserialize(d)?;
    check(&word.0).map(Some).map_err(de::Error::custom)
}

/// An option's error message, with the option's name as the file's key.
fn as_key(error: impl fmt::Display, option: &str, key: &str) -> String {
    error.to_string().replacen(option, key, 1)
}

fn de_absolute<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<PathBuf>, D::Error> {
    let path = PathBuf::from(String::deserialize(d)?);
    if path.is_absolute() {
        Ok(Some(path))
    } else {
        Err(de::Error::custom(format!(
            "{:?} is not an absolute path",
            path.display().to_string()
        )))
    }
}

fn de_hostname<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let name = String::deserialize(d)?;
    config::check_hostname(&name)
        .map(|()| Some(name))
        .map_err(|e| de::Error::custom(as_key(e, "--hostname", "hostname")))
}

fn de_env<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    let vars = Vec::<String>::deserialize(d)?;
    config::check_env(&vars)
        .map(|()| vars)
        .map_err(|e| de::Error::custom(as_key(e, "--env", "env")))
}

fn de_timeout<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Seconds>, D::Error> {
    checked(d, |t| {
        <Seconds as argh::FromArgValue>::from_arg_value(t).map_err(|e| format!("bad timeout {e}"))
    })
}

fn de_userns<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<UsernsMode>, D::Error> {
    checked(d, |t| {
        <UsernsMode as argh::FromArgValue>::from_arg_value(t)
            .map_err(|e| as_key(e, "--userns", "userns"))
    })
}

fn de_ownership<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Ownership>, D::Error> {
    checked(d, |t| {
        <Ownership as argh::FromArgValue>::from_arg_value(t)
            .map_err(|e| as_key(e, "--ownership", "ownership"))
    })
}

fn de_caps<'de, D: Deserializer<'de>>(
    d: D,
    key: &str,
) -> std::result::Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    caps::parse_all(key, &list)
        .map(|_| list)
        .map_err(de::Error::custom)
}

fn de_capability<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    de_caps(d, "capability")
}

fn de_drop_capability<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<String>, D::Error> {
    de_caps(d, "drop-capability")
}

fn de_seccomp<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Switch>, D::Error> {
    struct OnOff;
    impl Visitor<'_> for OnOff {
        type Value = Switch;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("\"on\", \"off\", true or false")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Switch, E> {
            Ok(if v { Switch::On } else { Switch::Off })
        }
        fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Switch, E> {
            <Switch as argh::FromArgValue>::from_arg_value(v)
                .map_err(|e| E::custom(format!("bad seccomp {e}")))
        }
    }
    d.deserialize_any(OnOff).map(Some)
}

macro_rules! limit {
    ($fn:ident, $parse:path, $key:literal, $ty:ty) => {
        fn $fn<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<$ty>, D::Error> {
            checked(d, |t| $parse($key, t).map_err(|e| e.to_string()))
        }
    };
}
limit!(de_memory, limits::parse_memory, "memory", Setting<u64>);
limit!(de_swap, limits::parse_swap, "swap", Setting<u64>);
limit!(de_pids, limits::parse_pids, "pids", Setting<u64>);
limit!(de_cpus, limits::parse_cpus, "cpus", Setting<f64>);
limit!(de_cpu_weight, limits::parse_cpu_weight, "cpu-weight", u32);

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY_KEY: &str = r#"
root = "/srv/web1"
hostname = "web1.example"
env = ["LANG=C.UTF-8", "TZ=UTC"]
shim = "/usr/local/lib/cradle/cradle-shim"
timeout = 30
userns = "pick"
ownership = "chown"
capability = ["CAP_SYS_TIME"]
drop-capability = ["net_admin"]
seccomp = "on"
memory = "1G"
swap = "256M"
pids = 512
cpus = 1.5
cpu-weight = 100
net = "routed"
ip = ["192.0.2.5", "2001:db8::5"]
dns = ["192.0.2.53"]
mac = "02:00:5e:10:00:01"
mtu = 1400
port = ["8080:80", "53/udp"]
onboot = true
bootorder = 10
"#;

    fn parsed(text: &str) -> Result<GuestConfig> {
        parse(Path::new("/etc/cradle/web1.toml"), text)
    }

    #[test]
    fn every_key_is_read_and_checked() {
        let conf = parsed(EVERY_KEY).unwrap();
        assert_eq!(conf.root, Some(PathBuf::from("/srv/web1")));
        assert_eq!(conf.env, ["LANG=C.UTF-8", "TZ=UTC"]);
        assert_eq!(conf.timeout, Some(Seconds(30)));
        assert_eq!(conf.userns, Some(UsernsMode::Pick));
        assert_eq!(conf.ownership, Some(Ownership::Chown));
        assert_eq!(conf.seccomp, Some(Switch::On));
        assert_eq!(conf.memory, Some(Setting::To(1 << 30)));
        assert_eq!(conf.pids, Some(Setting::To(512)));
        assert_eq!(conf.cpus, Some(Setting::To(1.5)));
        assert_eq!(conf.cpu_weight, Some(100));
        assert!(conf.onboot);
        assert_eq!(conf.bootorder, Some(10));
        assert!(conf.caps().unwrap().contains(25), "CAP_SYS_TIME kept");
        assert!(!conf.caps().unwrap().contains(12), "CAP_NET_ADMIN dropped");
        assert_eq!(parsed("").unwrap(), GuestConfig::default());
    }

    #[test]
    fn numbers_and_words_are_taken_where_the_option_takes_them() {
        let conf =
            parsed("memory = 1048576\ncpus = 2\npids = \"max\"\nuserns = 524288\nseccomp = false")
                .unwrap();
        assert_eq!(conf.memory, Some(Setting::To(1 << 20)));
        assert_eq!(conf.cpus, Some(Setting::To(2.0)));
        assert_eq!(conf.pids, Some(Setting::Max));
        assert_eq!(conf.userns, Some(UsernsMode::Base(524_288)));
        assert_eq!(conf.seccomp, Some(Switch::Off));
    }

    #[test]
    fn an_unknown_key_is_one_line_naming_it_and_its_line() {
        let err = parsed("root = \"/srv/a\"\n\nonbot = true\n").unwrap_err();
        let text = err.to_string();
        assert_eq!(err.code() as u8, 2);
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.starts_with("/etc/cradle/web1.toml:3: unknown key `onbot`"),
            "{text}"
        );
    }

    #[test]
    fn bad_values_name_the_key_and_the_line() {
        for (text, line, says) in [
            ("\nmemory = \"lots\"", 2, "bad memory \"lots\""),
            ("pids = 0", 1, "bad pids \"0\""),
            ("cpus = -1.0", 1, "bad cpus \"-1\""),
            ("root = \"srv/a\"", 1, "\"srv/a\" is not an absolute path"),
            ("env = [\"A\"]", 1, "bad env \"A\""),
            ("timeout = 90000", 1, "bad timeout \"90000\""),
            ("userns = 1000", 1, "bad userns 1000"),
            ("ownership = \"copy\"", 1, "bad ownership"),
            (
                "capability = [\"fly\"]",
                1,
                "capability: unknown capability \"fly\"",
            ),
            ("seccomp = \"maybe\"", 1, "bad seccomp \"maybe\""),
            ("onboot = \"yes\"", 1, "invalid type"),
            ("root = ", 1, ""),
        ] {
            let err = parsed(text).unwrap_err().to_string();
            let at = format!("/etc/cradle/web1.toml:{line}: ");
            assert!(
                err.starts_with(&at) && err.contains(says),
                "{text:?}: {err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn limits_are_written_as_they_read_back() {
        let changes = Changes {
            memory: Some(Setting::To(512 << 20)),
            swap: Some(Setting::To(1000)),
            pids: Some(Setting::Max),
            cpus: Some(Setting::To(0.25)),
            cpu_weight: Some(50),
        };
        let entries = limit_entries(&changes);
        let text: String = entries
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        assert_eq!(
            text,
            "memory = \"512M\"\nswap = 1000\npids = \"max\"\ncpus = 0.25\ncpu-weight = 50\n"
        );
        assert_eq!(parsed(&text).unwrap().changes(), changes);
    }

    #[test]
    fn edits_keep_the_rest_of_the_file() {
        let text = "# web1\nroot = \"/srv/web1\"\nmemory = \"1G\" # for the cache\npids = 64\n";
        let out = edit(
            Path::new("web1.toml"),
            text,
            &[("memory", "\"2G\"".into()), ("cpus", "1.5".into())],
        )
        .unwrap();
        assert_eq!(
            out,
            "# web1\nroot = \"/srv/web1\"\nmemory = \"2G\" # for the cache\npids = 64\ncpus = 1.5\n"
        );
        let no_newline = edit(Path::new("a"), "pids = 1", &[("cpus", "2".into())]).unwrap();
        assert_eq!(no_newline, "pids = 1\ncpus = 2\n");
    }

    #[test]
    fn a_new_file_reads_back_as_it_was_written() {
        let env = vec!["A=\"quoted\"".to_owned()];
        let caps = vec!["sys_time".to_owned()];
        let ips = vec!["192.0.2.5/24".to_owned()];
        let file = NewFile {
            root: Path::new("/srv/a b"),
            hostname: Some("a"),
            env: &env,
            shim: None,
            timeout: Some(Seconds(5)),
            userns: Some(UsernsMode::Off),
            ownership: Some(Ownership::Map),
            capability: &caps,
            drop_capability: &[],
            seccomp: Some(Switch::Off),
            limits: Changes {
                memory: Some(Setting::To(3 << 30)),
                ..Changes::default()
            },
            net: Given {
                net: Some("bridge=br0"),
                ip: &ips,
                gateway: Some("192.0.2.1"),
                mtu: Some("1400"),
                port: &[],
                ..Given::default()
            },
            onboot: true,
            bootorder: Some(3),
        };
        let conf = parsed(&file.render("a")).unwrap();
        assert_eq!(conf.root, Some(PathBuf::from("/srv/a b")));
        assert_eq!(conf.env, env);
        assert_eq!(conf.userns, Some(UsernsMode::Off));
        assert_eq!(conf.ownership, Some(Ownership::Map));
        assert_eq!(conf.capability, caps);
        assert_eq!(conf.seccomp, Some(Switch::Off));
        assert_eq!(conf.memory, Some(Setting::To(3 << 30)));
        assert_eq!((conf.onboot, conf.bootorder), (true, Some(3)));
        let net = conf.network().unwrap();
        assert_eq!(net.mode.to_string(), "bridge=br0");
        assert_eq!(net.ips[0].to_string(), "192.0.2.5/24");
        assert_eq!(net.mtu, Some(1400));
    }

    #[test]
    fn network_keys_that_do_not_go_together_are_refused_naming_the_file() {
        let err = parsed("root = \"/srv/a\"\nnet = \"nat\"\nip = [\"192.0.2.5\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/etc/cradle/web1.toml: --ip does not go with --net nat"),
            "{err}"
        );
    }
}
