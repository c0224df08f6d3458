//! The guest's console as seen from the host, for the two processes that serve it: the
//! launcher while it boots or stops a guest, and the shim's monitor mode (`cradle-shim
//! --monitor`) in between. Both keep the same ring of output, send it on to the attached
//! client the same way, and read the same frames from it.
//!
//! - [`Ring`]: the last [`RING`] bytes the guest wrote; byte number `n` is at `n % RING` of
//!   its storage, which the caller owns (a vector, or a mapping of a memfd that passes from
//!   one process to the other).
//! - [`flush`]: sends what a reader has not had yet, without blocking, and tells a reader
//!   that fell further behind than the ring holds what it lost.
//! - [`Frames`]: the client's side of the console socket: input for the guest, or its
//!   window size.

/// How much of the console's output is kept for a client that attaches.
pub const RING: usize = 64 * 1024;

/// Frames of the client's side of the console socket: `FRAME_INPUT`, a length (two bytes,
/// big-endian) and that many bytes for the guest; or `FRAME_WINSIZE` and the client's
/// window size, rows then columns, each two bytes, big-endian.
pub const FRAME_INPUT: u8 = 0;
pub const FRAME_WINSIZE: u8 = 1;

/// Where the ring stands: how many bytes were ever written to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    pub total: u64,
}

impl Ring {
    /// Appends `data` to `storage` (of [`RING`] bytes).
    pub fn push(&mut self, storage: &mut [u8], data: &[u8]) {
        // of more than the ring holds, only the end is kept, each byte at its place
        let skip = data.len().saturating_sub(RING);
        self.total += skip as u64;
        let data = &data[skip..];
        let at = (self.total % RING as u64) as usize;
        let first = data.len().min(RING - at);
        storage[at..at + first].copy_from_slice(&data[..first]);
        storage[..data.len() - first].copy_from_slice(&data[first..]);
        self.total += data.len() as u64;
    }

    /// The oldest position still held.
    pub fn oldest(&self) -> u64 {
        self.total.saturating_sub(RING as u64)
    }

    /// How many bytes of storage are in use: all of it once the ring went round.
    pub fn used(&self) -> usize {
        self.total.min(RING as u64) as usize
    }

    /// What was written from `from` on (no further back than the ring holds), in one or
    /// two pieces.
    pub fn since<'a>(&self, storage: &'a [u8], from: u64) -> [&'a [u8]; 2] {
        let from = from.clamp(self.oldest(), self.total);
        let len = (self.total - from) as usize;
        let at = (from % RING as u64) as usize;
        let first = len.min(RING - at);
        [&storage[at..at + first], &storage[..len - first]]
    }
}

/// What a non-blocking write did.
pub enum Wrote {
    /// This many bytes went.
    Some(usize),
    /// Nothing now: try again when the reader is writable.
    WouldBlock,
    /// The reader is gone.
    Gone,
}

/// Writes what a reader that has had everything before `sent` has not had yet, as far as
/// `write` takes it now. False when the reader is gone.
pub fn flush(
    ring: &Ring,
    storage: &[u8],
    sent: &mut u64,
    mut write: impl FnMut(&[u8]) -> Wrote,
) -> bool {
    if *sent < ring.oldest() {
        // it stalled for longer than the ring holds: say so, in its own stream
        let mut note = Note::default();
        note.add(b"\r\n[cradle: ");
        note.number(ring.oldest() - *sent);
        note.add(b" bytes of console output were lost]\r\n");
        if let Wrote::Gone = write(note.text()) {
            return false;
        }
        *sent = ring.oldest();
    }
    for mut piece in ring.since(storage, *sent) {
        while !piece.is_empty() {
            match write(piece) {
                Wrote::Some(0) | Wrote::Gone => return false,
                Wrote::Some(n) => {
                    *sent += n as u64;
                    piece = &piece[n..];
                }
                Wrote::WouldBlock => return true,
            }
        }
    }
    true
}

/// `n` in decimal, written at the end of `buf`.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// A short message put together without allocating.
struct Note {
    buf: [u8; 80],
    len: usize,
}

impl Default for Note {
    fn default() -> Self {
        Note {
            buf: [0; 80],
            len: 0,
        }
    }
}

impl Note {
    fn add(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn number(&mut self, n: u64) {
        self.add(decimal(n, &mut [0; 20]));
    }

    fn text(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Reads the client's frames as they come, in pieces of any size: no frame is ever held
/// whole, so nothing grows with what a client sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frames {
    /// The header read so far (at most the five bytes of a window size).
    header: [u8; 5],
    have: u8,
    /// Input bytes still to come of the current input frame.
    input_left: u16,
}

/// What a piece of the client's stream carried.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Input for the guest.
    Input(&'a [u8]),
    /// The client's window size: rows, columns.
    WindowSize(u16, u16),
}

/// The client sent something that is no frame of ours.
#[derive(Debug, PartialEq, Eq)]
pub struct NotOurs;

impl Frames {
    /// Reads `bytes`, handing each piece of input and each window size to `each` in order.
    pub fn feed(&mut self, mut bytes: &[u8], mut each: impl FnMut(Frame)) -> Result<(), NotOurs> {
        while let Some((&byte, rest)) = bytes.split_first() {
            if self.input_left > 0 {
                let n = bytes.len().min(self.input_left as usize);
                each(Frame::Input(&bytes[..n]));
                self.input_left -= n as u16;
                bytes = &bytes[n..];
                continue;
            }
            self.header[self.have as usize] = byte;
            self.have += 1;
            bytes = rest;
            let h = self.header;
            match (h[0], self.have) {
                (FRAME_INPUT, 3) => {
                    self.input_left = u16::from_be_bytes([h[1], h[2]]);
                    self.have = 0;
                }
                (FRAME_WINSIZE, 5) => {
                    each(Frame::WindowSize(
                        u16::from_be_bytes([h[1], h[2]]),
                        u16::from_be_bytes([h[3], h[4]]),
                    ));
                    self.have = 0;
                }
                (FRAME_INPUT | FRAME_WINSIZE, _) => {}
                _ => return Err(NotOurs),
            }
        }
        Ok(())
    }

    /// True between frames.
    pub fn idle(&self) -> bool {
        self.have == 0 && self.input_left == 0
    }

    /// The decoder's state as one number, to pass it to another process.
    pub fn to_u64(self) -> u64 {
        let mut bytes = [0u8; 8];
        bytes[..5].copy_from_slice(&self.header);
        bytes[5] = self.have;
        bytes[6..].copy_from_slice(&self.input_left.to_be_bytes());
        u64::from_be_bytes(bytes)
    }

    /// The state [`Frames::to_u64`] made; `None` for a number it cannot have made.
    pub fn from_u64(n: u64) -> Option<Self> {
        let bytes = n.to_be_bytes();
        let frames = Frames {
            header: [bytes[0], bytes[1], bytes[2], bytes[3], bytes[4]],
            have: bytes[5],
            input_left: u16::from_be_bytes([bytes[6], bytes[7]]),
        };
        let header_ok = match frames.header[0] {
            FRAME_INPUT => frames.have < 3,
            FRAME_WINSIZE => frames.have < 5,
            _ => frames.have == 0,
        };
        (header_ok && (frames.have == 0 || frames.input_left == 0)).then_some(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(ring: &Ring, storage: &[u8], from: u64) -> Vec<u8> {
        ring.since(storage, from).concat()
    }

    #[test]
    fn the_ring_keeps_the_last_64_kib_in_order_whatever_the_pieces() {
        let mut storage = vec![0u8; RING];
        let mut ring = Ring::default();
        ring.push(&mut storage, b"hello");
        assert_eq!(contents(&ring, &storage, 0), b"hello");
        assert_eq!(ring.used(), 5);
        let mut all = b"hello".to_vec();
        for i in 0..40_000u32 {
            let piece: Vec<u8> = (0..(i % 7)).map(|j| (i + j) as u8).collect();
            ring.push(&mut storage, &piece);
            all.extend_from_slice(&piece);
        }
        assert_eq!(contents(&ring, &storage, 0), all[all.len() - RING..]);
        assert_eq!(ring.used(), RING);
        assert_eq!(ring.oldest(), all.len() as u64 - RING as u64);
        // more than the ring at once: only the end is kept, each byte at its place
        let mut huge = vec![b'y'; RING + 10];
        huge[RING + 9] = b'z';
        ring.push(&mut storage, &huge);
        let held = contents(&ring, &storage, 0);
        assert_eq!(held.len(), RING);
        assert_eq!(held.last(), Some(&b'z'));
        ring.push(&mut storage, b"tail");
        assert_eq!(contents(&ring, &storage, ring.total - 4), b"tail");
    }

    #[test]
    fn a_stalled_reader_catches_up_from_what_the_ring_still_holds() {
        let mut storage = vec![0u8; RING];
        let mut ring = Ring::default();
        ring.push(&mut storage, &vec![b'a'; RING + 100]);
        let mut out = Vec::new();
        let mut sent = 0;
        assert!(flush(&ring, &storage, &mut sent, |b| {
            out.extend_from_slice(b);
            Wrote::Some(b.len())
        }));
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("\r\n[cradle: 100 bytes of console output were lost]\r\n"));
        assert_eq!(sent, ring.total);
        assert_eq!(out.len(), RING + 51);
    }

    #[test]
    fn a_reader_that_blocks_keeps_its_place_and_a_gone_one_is_said() {
        let mut storage = vec![0u8; RING];
        let mut ring = Ring::default();
        ring.push(&mut storage, b"abcdef");
        let mut sent = 0;
        assert!(flush(&ring, &storage, &mut sent, |b| Wrote::Some(
            b.len().min(2)
        )));
        // two bytes a call until it takes nothing more
        let mut calls = 0;
        sent = 0;
        assert!(flush(&ring, &storage, &mut sent, |_| {
            calls += 1;
            if calls == 1 {
                Wrote::Some(2)
            } else {
                Wrote::WouldBlock
            }
        }));
        assert_eq!(sent, 2);
        assert!(!flush(&ring, &storage, &mut sent, |_| Wrote::Gone));
    }

    /// Every split of a stream of frames reads the same.
    #[test]
    fn frames_read_the_same_however_the_stream_is_cut() {
        let mut stream = vec![FRAME_INPUT, 0, 3, b'a', b'b', b'c'];
        stream.extend_from_slice(&[FRAME_WINSIZE, 0, 24, 0, 80]);
        stream.extend_from_slice(&[FRAME_INPUT, 0, 0]);
        stream.extend_from_slice(&[FRAME_INPUT, 0, 2, 0x1d, b'\n']);
        for cut in 0..=stream.len() {
            for cut2 in cut..=stream.len() {
                let mut frames = Frames::default();
                let mut input = Vec::new();
                let mut sizes = Vec::new();
                for piece in [&stream[..cut], &stream[cut..cut2], &stream[cut2..]] {
                    // the state passes between processes at any cut
                    frames = Frames::from_u64(frames.to_u64()).unwrap();
                    frames
                        .feed(piece, |f| match f {
                            Frame::Input(b) => input.extend_from_slice(b),
                            Frame::WindowSize(r, c) => sizes.push((r, c)),
                        })
                        .unwrap();
                }
                assert_eq!(input, b"abc\x1d\n", "cut at {cut}, {cut2}");
                assert_eq!(sizes, [(24, 80)]);
                assert!(frames.idle());
            }
        }
    }

    #[test]
    fn a_stream_that_is_not_frames_is_refused() {
        let mut frames = Frames::default();
        assert_eq!(frames.feed(b"GET / HTTP/1.0", |_| {}), Err(NotOurs));
        assert_eq!(Frames::from_u64(u64::MAX), None);
    }
}
