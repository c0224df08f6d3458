//! nf_tables over netlink, for the one thing a boot needs: adding and removing elements of
//! the sets and maps of cradle's ruleset (`nft`), in one transaction (a batch), without
//! running the `nft` program. The ruleset itself is made once per host, by `nft`.
//!
//! A batch is `NFNL_MSG_BATCH_BEGIN`, one `NFT_MSG_NEWSETELEM` or `NFT_MSG_DELSETELEM`
//! per element (each asking for an acknowledgement, so a failure names its element), and
//! `NFNL_MSG_BATCH_END`; the kernel commits all or nothing. The last close of a socket
//! that deleted elements waits for a grace period (nf_tables frees them after one), so
//! such a socket is closed by a child, after us (`sys::close_in_background`). Element keys and data are in
//! the layout nft gives a set of that type: each field of a concatenation in its own
//! 32-bit registers, padded with zeros.

use std::io;
use std::os::fd::AsFd;

use netlink_sys::{Socket, SocketAddr};

/// `NFTA_SET_ELEM_LIST_*`, `NFTA_SET_ELEM_*` and `NFTA_DATA_VALUE` (linux/netfilter/nf_tables.h).
const LIST_TABLE: u16 = 1;
const LIST_SET: u16 = 2;
const LIST_ELEMENTS: u16 = 3;
const LIST_ELEM: u16 = 1;
const ELEM_KEY: u16 = 1;
const ELEM_DATA: u16 = 2;
const ELEM_USERDATA: u16 = 6;
const DATA_VALUE: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
/// libnftnl's user-data type of an element's comment (`NFTNL_UDATA_SET_ELEM_COMMENT`).
const UDATA_COMMENT: u8 = 0;

/// A table's family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Inet,
    Bridge,
}

impl Family {
    fn number(self) -> u8 {
        match self {
            Family::Inet => libc::NFPROTO_INET as u8,
            Family::Bridge => libc::NFPROTO_BRIDGE as u8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Bridge => "bridge",
        }
    }
}

/// One element of a set (no `data`) or map, in table `cradle` of `family`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub family: Family,
    pub set: &'static str,
    pub key: Vec<u8>,
    pub data: Option<Vec<u8>>,
    /// Shown by `nft list` as the element's comment: the guest's name.
    pub comment: String,
}

/// The fields of a key or data, each padded to a whole number of 32-bit registers.
pub fn concat(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for field in fields {
        out.extend_from_slice(field);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    out
}

/// An interface name as a key field: IFNAMSIZ bytes, zero-padded.
pub fn ifname(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let bytes = &name.as_bytes()[..name.len().min(15)];
    out[..bytes.len()].copy_from_slice(bytes);
    out
}

/// What a batch change does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Add,
    Delete,
}

/// A batch that failed: the first element the kernel refused, and why.
#[derive(Debug)]
pub struct Refused {
    pub element: Option<Element>,
    pub error: io::Error,
}

impl From<io::Error> for Refused {
    fn from(error: io::Error) -> Self {
        Refused {
            element: None,
            error,
        }
    }
}

fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
}

fn nested(out: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    fill(&mut inner);
    attr(out, kind | NLA_F_NESTED, &inner);
}

fn cstr(s: &str) -> Vec<u8> {
    let mut out = s.as_bytes().to_vec();
    out.push(0);
    out
}

/// A netlink message: header, `nfgenmsg` for `family`, then `body`.
fn message(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    body: &[u8],
) {
    let len = 16 + 4 + body.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[family, libc::NFNETLINK_V0 as u8]);
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(body);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// The body of one element's message.
fn element_body(element: &Element) -> Vec<u8> {
    let mut body = Vec::new();
    attr(&mut body, LIST_TABLE, &cstr("cradle"));
    attr(&mut body, LIST_SET, &cstr(element.set));
    nested(&mut body, LIST_ELEMENTS, |list| {
        nested(list, LIST_ELEM, |elem| {
            nested(elem, ELEM_KEY, |key| attr(key, DATA_VALUE, &element.key));
            if let Some(data) = &element.data {
                nested(elem, ELEM_DATA, |d| attr(d, DATA_VALUE, data));
            }
            let comment = cstr(&element.comment);
            if comment.len() <= usize::from(u8::MAX) {
                let mut udata = vec![UDATA_COMMENT, comment.len() as u8];
                udata.extend_from_slice(&comment);
                attr(elem, ELEM_USERDATA, &udata);
            }
        });
    });
    body
}

/// The whole batch, its element messages numbered from `first`.
fn batch(change: Change, elements: &[Element], first: u32) -> Vec<u8> {
    let request = libc::NLM_F_REQUEST as u16;
    let (kind, flags) = match change {
        Change::Add => (
            libc::NFT_MSG_NEWSETELEM,
            request | libc::NLM_F_CREATE as u16,
        ),
        Change::Delete => (libc::NFT_MSG_DELSETELEM, request),
    };
    let kind = ((libc::NFNL_SUBSYS_NFTABLES as u16) << 8) | kind as u16;
    let subsystem = libc::NFNL_SUBSYS_NFTABLES as u16;
    let unspec = libc::AF_UNSPEC as u8;
    let mut out = Vec::new();
    message(
        &mut out,
        libc::NFNL_MSG_BATCH_BEGIN as u16,
        request,
        first - 1,
        unspec,
        subsystem,
        &[],
    );
    for (i, element) in elements.iter().enumerate() {
        let flags = flags | libc::NLM_F_ACK as u16;
        let body = element_body(element);
        message(
            &mut out,
            kind,
            flags,
            first + i as u32,
            element.family.number(),
            0,
            &body,
        );
    }
    let end = first + elements.len() as u32;
    message(
        &mut out,
        libc::NFNL_MSG_BATCH_END as u16,
        request,
        end,
        unspec,
        subsystem,
        &[],
    );
    out
}

/// Adds or deletes `elements` in one transaction: all of them, or none and the first
/// refusal. Nothing to do is no transaction.
pub fn commit(change: Change, elements: &[Element]) -> Result<(), Refused> {
    if elements.is_empty() {
        return Ok(());
    }
    let mut socket = Socket::new(libc::NETLINK_NETFILTER as isize)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    // a reply never comes only if the kernel is broken; a launcher must not hang on it
    let timeout = nix::sys::time::TimeVal::new(10, 0);
    nix::sys::socket::setsockopt(
        &socket.as_fd(),
        nix::sys::socket::sockopt::ReceiveTimeout,
        &timeout,
    )
    .map_err(io::Error::from)?;
    let first = 2;
    socket.send(&batch(change, elements, first), 0)?;
    let mut answered = vec![false; elements.len()];
    let mut refused: Option<Refused> = None;
    let mut buffer = vec![0u8; 64 * 1024];
    while answered.iter().any(|a| !a) {
        let n = socket.recv(&mut &mut buffer[..], 0)?;
        let mut at = 0;
        while at + 16 <= n {
            let len = u32::from_ne_bytes(buffer[at..at + 4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(buffer[at + 4..at + 6].try_into().unwrap());
            let seq = u32::from_ne_bytes(buffer[at + 8..at + 12].try_into().unwrap());
            if len < 16 || at + len > n {
                break;
            }
            if kind == libc::NLMSG_ERROR as u16 && len >= 20 {
                let errno = -i32::from_ne_bytes(buffer[at + 16..at + 20].try_into().unwrap());
                let index = seq.wrapping_sub(first) as usize;
                if index < elements.len() {
                    answered[index] = true;
                    if errno != 0 && refused.is_none() {
                        refused = Some(Refused {
                            element: Some(elements[index].clone()),
                            error: io::Error::from_raw_os_error(errno),
                        });
                    }
                } else if errno != 0 {
                    // the batch itself was refused (no nf_tables): nothing else comes
                    return Err(io::Error::from_raw_os_error(errno).into());
                }
            }
            at += len.next_multiple_of(4);
        }
    }
    if change == Change::Delete && refused.is_none() {
        // its last close waits for the grace period that frees what was deleted
        use std::os::fd::IntoRawFd;
        if let Ok(fd) = crate::sys::adopt_fd(socket.into_raw_fd()) {
            crate::sys::close_in_background(fd);
        }
    }
    match refused {
        Some(r) => Err(r),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_laid_out_as_nft_lays_out_a_concatenation() {
        // `tcp . 8080` of an `inet_proto . inet_service` key, as nft --debug=netlink shows it
        assert_eq!(
            concat(&[&[6], &8080u16.to_be_bytes()]),
            [6, 0, 0, 0, 0x1f, 0x90, 0, 0]
        );
        let mac = concat(&[&ifname("ve-web"), &[2, 0, 0, 0, 0, 1]]);
        assert_eq!(mac.len(), 24);
        assert_eq!(&mac[..7], b"ve-web\0");
        assert_eq!(&mac[16..], [2, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(ifname("a-name-longer-than-fifteen")[15], 0);
    }

    #[test]
    fn a_batch_is_begin_one_message_per_element_and_end() {
        let element = Element {
            family: Family::Bridge,
            set: "ports",
            key: ifname("ve-web").to_vec(),
            data: None,
            comment: "web".into(),
        };
        let out = batch(Change::Add, &[element.clone(), element], 2);
        let mut at = 0;
        let mut kinds = Vec::new();
        while at < out.len() {
            let len = u32::from_ne_bytes(out[at..at + 4].try_into().unwrap()) as usize;
            kinds.push(u16::from_ne_bytes(out[at + 4..at + 6].try_into().unwrap()));
            let seq = u32::from_ne_bytes(out[at + 8..at + 12].try_into().unwrap());
            assert_eq!(seq as usize, kinds.len(), "numbered from 1");
            at += len.next_multiple_of(4);
        }
        assert_eq!(at, out.len());
        assert_eq!(kinds, [16, 0x0a0c, 0x0a0c, 17]);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("cradle\0") && text.contains("ports\0") && text.contains("web\0"));
    }
}
