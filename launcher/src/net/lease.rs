//! Addresses held by guests: one file per address in `/run/cradle-net` (fixed, whatever
//! `--state-dir` says, so that guests of every state directory share it), naming the guest
//! and its state directory's lock file. A lease holds while that lock is held (its launcher
//! runs, see `guest::state`), so a killed launcher's leases are free at once and nothing
//! has to hand them over when the launcher execs its monitor (and such leases are removed
//! the next time any guest takes one). Leases are taken under an flock of the directory's
//! `lock`, so two launchers never take the same address.
//!
//! `--net nat` picks from its pool in an order that starts at a slot given by the guest's
//! name: a guest gets the same address at every start while nobody else took it.

use std::fs::{self, File};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;

use crate::error::{Error, Result};
use crate::sys;

/// Where the leases live.
pub const DIR: &str = "/run/cradle-net";

/// The lease directory, locked while a guest takes or gives back addresses.
pub struct Leases {
    dir: PathBuf,
    _lock: Flock<File>,
}

/// Who holds a lease: a guest's name and its state directory's lock file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub name: String,
    pub lock: PathBuf,
}

impl Holder {
    fn render(&self) -> String {
        format!("{}\n{}\n", self.name, self.lock.display())
    }

    fn parse(text: &str) -> Option<Holder> {
        let mut lines = text.lines();
        let name = lines.next()?.to_owned();
        let lock = PathBuf::from(lines.next()?);
        Some(Holder { name, lock })
    }

    /// True while its launcher runs.
    fn alive(&self) -> bool {
        File::open(&self.lock).is_ok_and(|file| sys::write_locked(&file))
    }
}

fn file_name(addr: IpAddr) -> String {
    addr.to_string()
}

impl Leases {
    /// The leases in [`DIR`].
    pub fn open() -> Result<Self> {
        Self::open_in(Path::new(DIR))
    }

    /// The leases in `dir` (tests use their own).
    pub fn open_in(dir: &Path) -> Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| Error::host(format!("make {}", dir.display()), e))?;
        let lock = sys::flock_exclusive(&dir.join("lock"))?;
        let leases = Leases {
            dir: dir.to_owned(),
            _lock: lock,
        };
        leases.prune();
        Ok(leases)
    }

    /// Removes the leases whose holders no longer run (a killed launcher's, or one a
    /// restart with other addresses did not take again): free already, now gone.
    fn prune(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(addr) = name.to_str().and_then(|n| n.parse::<IpAddr>().ok()) else {
                continue;
            };
            if self.holder(addr).is_none() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Who holds `addr` now, if a running guest does.
    pub fn holder(&self, addr: IpAddr) -> Option<Holder> {
        let text = fs::read_to_string(self.dir.join(file_name(addr))).ok()?;
        Holder::parse(&text).filter(Holder::alive)
    }

    /// Takes `addrs` for `holder`, or refuses naming the running guest that holds one.
    pub fn claim(&self, holder: &Holder, addrs: &[IpAddr]) -> Result<()> {
        for addr in addrs {
            if let Some(other) = self.holder(*addr).filter(|h| h != holder) {
                return Err(Error::Usage(format!(
                    "address {addr} is held by the running guest {}",
                    other.name
                )));
            }
        }
        for addr in addrs {
            self.write(holder, *addr)?;
        }
        Ok(())
    }

    fn write(&self, holder: &Holder, addr: IpAddr) -> Result<()> {
        let path = self.dir.join(file_name(addr));
        let tmp = self.dir.join(format!(".{}.tmp", file_name(addr)));
        let write = || -> io::Result<()> {
            let _ = fs::remove_file(&tmp);
            fs::write(&tmp, holder.render())?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| Error::host(format!("write the lease {}", path.display()), e))
    }

    /// Picks the first free address of the pool `net`/`prefix` (IPv4) in `holder`'s order,
    /// skipping the network, the bridge's first address and the broadcast, and takes it.
    pub fn pick(&self, holder: &Holder, net: Ipv4Addr, prefix: u8) -> Result<Ipv4Addr> {
        let size = 1u32 << (32 - u32::from(prefix));
        // hosts 2 ..= size-2
        let slots = size - 3;
        let first = name_hash(&holder.name) % slots;
        for i in 0..slots {
            let host = 2 + (first + i) % slots;
            let addr = Ipv4Addr::from(u32::from(net) | host);
            match self.holder(IpAddr::V4(addr)) {
                Some(other) if other != *holder => continue,
                _ => {
                    self.write(holder, IpAddr::V4(addr))?;
                    return Ok(addr);
                }
            }
        }
        Err(Error::Usage(format!(
            "no free address in {net}/{prefix}: {slots} guests hold them all"
        )))
    }

    /// Gives back `addrs` where `holder` holds them still.
    pub fn release(&self, holder: &Holder, addrs: &[IpAddr]) {
        for addr in addrs {
            let path = self.dir.join(file_name(*addr));
            let ours = fs::read_to_string(&path)
                .ok()
                .and_then(|text| Holder::parse(&text))
                .is_some_and(|h| h == *holder);
            if ours {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// The IPv6 address of `--net nat` that goes with the IPv4 one: the same host number.
pub fn pool6_address(v4: Ipv4Addr, pool4_prefix: u8, net6: Ipv6Addr) -> Ipv6Addr {
    let host = u32::from(v4) & (u32::MAX >> pool4_prefix);
    Ipv6Addr::from(u128::from(net6) | u128::from(host))
}

fn name_hash(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn scratch(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("cradle-lease-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A holder whose lock file is locked (alive) while the returned file is open.
    fn live(dir: &Path, name: &str) -> (Holder, File) {
        let lock = dir.join(format!("{name}.lock"));
        let file = File::create(&lock).unwrap();
        nix::fcntl::fcntl(
            file.as_fd(),
            nix::fcntl::FcntlArg::F_OFD_SETLK(&sys::whole_file(libc::F_WRLCK as libc::c_short)),
        )
        .unwrap();
        (
            Holder {
                name: name.into(),
                lock,
            },
            file,
        )
    }

    #[test]
    fn a_name_gets_the_same_address_again_and_others_get_others() {
        let s = scratch("pick");
        let (web, _w) = live(&s.0, "web");
        let (db, _d) = live(&s.0, "db");
        let leases = Leases::open_in(&s.0.join("leases")).unwrap();
        let net = Ipv4Addr::new(10, 213, 0, 0);
        let a = leases.pick(&web, net, 16).unwrap();
        assert_eq!(
            leases.pick(&web, net, 16).unwrap(),
            a,
            "its own lease again"
        );
        let b = leases.pick(&db, net, 16).unwrap();
        assert_ne!(a, b);
        leases.release(&web, &[IpAddr::V4(a)]);
        assert_eq!(
            leases.pick(&web, net, 16).unwrap(),
            a,
            "the same slot after a release"
        );
        assert_eq!(
            pool6_address(a, 16, Ipv6Addr::new(0xfd63, 0x7261, 0x646c, 0, 0, 0, 0, 0)).segments()
                [7],
            (u32::from(a) & 0xffff) as u16
        );
    }

    #[test]
    fn a_running_guests_address_is_refused_and_a_dead_ones_taken() {
        let s = scratch("claim");
        let (web, web_lock) = live(&s.0, "web");
        let (db, _d) = live(&s.0, "db");
        let leases = Leases::open_in(&s.0.join("leases")).unwrap();
        let addr: IpAddr = "192.0.2.5".parse().unwrap();
        leases.claim(&web, &[addr]).unwrap();
        let err = leases.claim(&db, &[addr]).unwrap_err().to_string();
        assert!(err.contains("held by the running guest web"), "{err}");
        drop(web_lock);
        leases.claim(&db, &[addr]).unwrap();
        assert_eq!(leases.holder(addr), Some(db));
    }

    #[test]
    fn a_small_pool_says_when_it_is_full() {
        let s = scratch("full");
        let leases = Leases::open_in(&s.0.join("leases")).unwrap();
        let net = Ipv4Addr::new(192, 0, 2, 0);
        let mut held = Vec::new();
        for i in 0..5 {
            let (h, f) = live(&s.0, &format!("g{i}"));
            leases.pick(&h, net, 29).unwrap();
            held.push((h, f));
        }
        let (last, _f) = live(&s.0, "last");
        assert!(
            leases
                .pick(&last, net, 29)
                .unwrap_err()
                .to_string()
                .contains("no free address")
        );
    }
}
