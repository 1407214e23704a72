//! The output queue frames are encoded into.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::frame::{FrameHeader, MAX_HEADER_LEN, OpCode};
use super::mask::apply_mask;

/// Payloads up to this size are copied next to their header, so a burst of
/// small messages leaves in one contiguous write. Larger payloads are queued
/// as their own `Bytes` and written with vectored I/O, without a copy.
const COPY_THRESHOLD: usize = 2048;

/// A coalescing buffer that grew past this (a client masks whole large
/// messages into it) is freed once written out instead of kept.
const RETAIN_MAX: usize = 256 << 10;

/// Encoded frames waiting to be written to the transport.
///
/// The caller owns it and passes it to the [`Connection`](super::Connection)
/// calls that produce output; it implements [`bytes::Buf`], so the I/O layer
/// writes it with `chunks_vectored` and consumes it with `advance`.
///
/// Headers and small payloads are coalesced into one growing buffer; large
/// payloads are kept as shared `Bytes` (a broadcast frame is encoded once and
/// queued on every connection without copying).
#[derive(Debug, Default)]
pub struct WriteBuf {
    /// Frozen chunks, in wire order, that come before `tail`.
    chunks: VecDeque<Bytes>,
    /// Bytes still being coalesced, after every chunk.
    tail: BytesMut,
    len: usize,
    /// Bytes of the frame at the front not yet written (0 at a frame
    /// boundary), so unsent output can be dropped without cutting a frame.
    front_frame_left: usize,
}

impl WriteBuf {
    /// An empty buffer; it allocates on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Memory this buffer holds: the bytes waiting, and the spare room of
    /// the coalescing buffer (kept for the next frames).
    pub fn buffered_bytes(&self) -> usize {
        self.len - self.tail.len() + self.tail.capacity()
    }

    /// Drops everything not yet written except the rest of the frame being
    /// written (a frame cut short would corrupt the stream), and frees the
    /// memory; returns how many bytes were dropped. For a connection that
    /// is being closed because its peer does not read.
    pub fn discard_unsent(&mut self) -> usize {
        let keep = self.front_frame_left.min(self.len);
        let dropped = self.len - keep;
        let mut left = keep;
        let mut kept = VecDeque::new();
        while let Some(mut chunk) = self.chunks.pop_front() {
            if left == 0 {
                break;
            }
            chunk.truncate(left);
            left -= chunk.len();
            kept.push_back(chunk);
        }
        self.chunks = kept;
        if left > 0 {
            self.tail.truncate(left);
        } else {
            self.tail = BytesMut::new();
        }
        self.len = keep;
        dropped
    }

    /// The length of the frame whose header starts the unwritten bytes
    /// (RFC 6455 §5.2). Frames are queued whole and a header never spans
    /// two chunks, so it is in `chunk()`.
    fn front_frame_len(&self) -> usize {
        let b = self.chunk();
        let masked = if b[1] & 0x80 != 0 { 4 } else { 0 };
        let (header, payload) = match b[1] & 0x7f {
            126 => (4, usize::from(u16::from_be_bytes([b[2], b[3]]))),
            127 => (
                10,
                u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")) as usize,
            ),
            n => (2, usize::from(n)),
        };
        header + masked + payload
    }

    /// Appends one frame: a header built from the arguments, then `payload`.
    ///
    /// With a `mask` (a client's frame, RFC 6455 §5.3) the payload cannot be
    /// shared: it is masked as it is copied into the buffer, its only copy.
    pub(crate) fn push_frame(
        &mut self,
        fin: bool,
        rsv: u8,
        opcode: OpCode,
        payload: &Bytes,
        mask: Option<[u8; 4]>,
    ) {
        let mut header = [0u8; MAX_HEADER_LEN];
        let n = FrameHeader::encode(&mut header, fin, rsv, opcode, mask, payload.len() as u64);
        self.tail.put_slice(&header[..n]);
        if let Some(key) = mask {
            let start = self.tail.len();
            self.tail.put_slice(payload);
            apply_mask(&mut self.tail[start..], key, 0);
        } else if payload.len() <= COPY_THRESHOLD {
            self.tail.put_slice(payload);
        } else {
            self.seal_tail();
            self.chunks.push_back(payload.clone());
        }
        self.len += n + payload.len();
    }

    /// Appends already-encoded frame bytes (a shared, pre-encoded frame).
    pub(crate) fn push_encoded(&mut self, bytes: Bytes) {
        self.len += bytes.len();
        if bytes.len() <= COPY_THRESHOLD {
            self.tail.put_slice(&bytes);
        } else {
            self.seal_tail();
            self.chunks.push_back(bytes);
        }
    }

    /// Queues the unwritten rest of a frame whose start went out already
    /// (a shared frame written straight from its buffer). Only into an
    /// empty buffer: nothing may come before it.
    pub(crate) fn push_frame_rest(&mut self, rest: Bytes) {
        debug_assert!(self.is_empty(), "the rest of a frame goes first");
        self.push_encoded(rest);
        self.front_frame_left = self.len;
    }

    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
    }
}

impl Buf for WriteBuf {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        match self.chunks.front() {
            Some(c) => c,
            None => &self.tail,
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for chunk in self
            .chunks
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&self.tail[..]))
        {
            if n == dst.len() {
                break;
            }
            if !chunk.is_empty() {
                dst[n] = IoSlice::new(chunk);
                n += 1;
            }
        }
        n
    }

    fn advance(&mut self, cnt: usize) {
        assert!(cnt <= self.len, "advance past the end of WriteBuf");
        if cnt == self.len {
            // All written (the usual case): no frame is left part-written.
            self.front_frame_left = 0;
            self.chunks.clear();
            self.len = 0;
            self.reuse_tail();
            return;
        }
        let mut left = cnt;
        // Frame by frame, reading each header as it comes to the front.
        while left > 0 {
            if self.front_frame_left == 0 {
                self.front_frame_left = self.front_frame_len();
            }
            let step = left.min(self.front_frame_left);
            self.front_frame_left -= step;
            self.consume(step);
            left -= step;
        }
    }
}

impl WriteBuf {
    fn consume(&mut self, mut cnt: usize) {
        self.len -= cnt;
        while cnt > 0 {
            match self.chunks.front_mut() {
                Some(front) if front.len() <= cnt => {
                    cnt -= front.len();
                    self.chunks.pop_front();
                }
                Some(front) => {
                    front.advance(cnt);
                    return;
                }
                None => {
                    self.tail.advance(cnt);
                    return;
                }
            }
        }
        if self.len == 0 {
            self.reuse_tail();
        }
    }

    /// Everything was written: the tail's allocation is reused from its
    /// start.
    fn reuse_tail(&mut self) {
        if self.tail.capacity() > RETAIN_MAX {
            // A large masked message: do not hold its size forever.
            self.tail = BytesMut::new();
        } else {
            self.tail.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_wire_order_across_small_and_large_payloads() {
        let mut w = WriteBuf::new();
        let small = Bytes::from_static(b"hi");
        let large = Bytes::from(vec![7u8; COPY_THRESHOLD + 1]);
        w.push_frame(true, 0, OpCode::Text, &small, None);
        w.push_frame(true, 0, OpCode::Binary, &large, None);
        w.push_frame(true, 0, OpCode::Pong, &small, None);
        let total = w.len();
        let mut flat = Vec::new();
        while w.has_remaining() {
            let chunk = w.chunk().to_vec();
            // Consume in odd-sized steps to exercise partial advances.
            let step = chunk.len().min(1000);
            flat.extend_from_slice(&chunk[..step]);
            w.advance(step);
        }
        assert_eq!(flat.len(), total);
        assert_eq!(&flat[..4], &[0x81, 2, b'h', b'i']);
        assert_eq!(&flat[4..8], &[0x82, 126, 0x08, 0x01]);
        assert!(flat[8..8 + COPY_THRESHOLD + 1].iter().all(|&b| b == 7));
        assert_eq!(&flat[flat.len() - 4..], &[0x8a, 2, b'h', b'i']);
    }

    #[test]
    fn discarding_keeps_the_frame_being_written_whole() {
        let mut w = WriteBuf::new();
        let large = Bytes::from(vec![3u8; 5000]);
        let small = Bytes::from_static(b"abc");
        w.push_frame(true, 0, OpCode::Binary, &large, None);
        w.push_frame(true, 0, OpCode::Text, &small, None);
        w.push_frame(true, 0, OpCode::Binary, &large, None);
        // The peer took part of the first frame.
        w.advance(1000);
        let dropped = w.discard_unsent();
        assert_eq!(
            w.len(),
            4 + 5000 - 1000,
            "the rest of the first frame stays"
        );
        assert_eq!(dropped, 2 + 3 + 4 + 5000);
        // A close frame can follow: the stream stays well-formed.
        w.push_frame(
            true,
            0,
            OpCode::Close,
            &Bytes::from_static(b"\x03\xf5"),
            None,
        );
        let mut flat = Vec::new();
        while w.has_remaining() {
            let n = w.chunk().len();
            flat.extend_from_slice(w.chunk());
            w.advance(n);
        }
        assert_eq!(flat.len(), 4004 + 4);
        assert_eq!(&flat[flat.len() - 4..], b"\x88\x02\x03\xf5");
    }

    #[test]
    fn the_rest_of_a_frame_written_elsewhere_is_kept_whole_by_discarding() {
        let mut w = WriteBuf::new();
        // The last 3000 bytes of a frame whose start went out already.
        w.push_frame_rest(Bytes::from(vec![5u8; 3000]));
        w.push_frame(true, 0, OpCode::Text, &Bytes::from_static(b"next"), None);
        w.advance(1000);
        assert_eq!(w.discard_unsent(), 6, "only the next frame goes");
        assert_eq!(w.len(), 2000);
        assert!(w.chunk().iter().all(|&b| b == 5));
    }

    #[test]
    fn discarding_at_a_frame_boundary_drops_everything() {
        let mut w = WriteBuf::new();
        let small = Bytes::from_static(b"abc");
        w.push_frame(true, 0, OpCode::Text, &small, None);
        w.push_frame(true, 0, OpCode::Text, &small, None);
        w.advance(5);
        assert_eq!(w.discard_unsent(), 5);
        assert!(w.is_empty());
        assert_eq!(w.buffered_bytes(), 0);
    }

    #[test]
    fn advancing_across_many_frames_at_once_tracks_boundaries() {
        let mut w = WriteBuf::new();
        let large = Bytes::from(vec![1u8; 70_000]);
        for _ in 0..3 {
            w.push_frame(true, 0, OpCode::Text, &Bytes::from_static(b"x"), None);
            w.push_frame(true, 0, OpCode::Binary, &large, None);
        }
        let total = w.len();
        // Everything but 10 bytes of the last frame, in one step.
        w.advance(total - 10);
        assert_eq!(w.discard_unsent(), 0);
        assert_eq!(w.len(), 10);
    }

    #[test]
    fn vectored_chunks_cover_everything() {
        let mut w = WriteBuf::new();
        let large = Bytes::from(vec![1u8; 5000]);
        w.push_frame(false, 0, OpCode::Binary, &large, None);
        w.push_frame(true, 0, OpCode::Continuation, &large, None);
        let mut slices = [IoSlice::new(&[]); 8];
        let n = w.chunks_vectored(&mut slices);
        let sum: usize = slices[..n].iter().map(|s| s.len()).sum();
        assert_eq!(sum, w.len());
    }

    fn drain(w: &mut WriteBuf) -> Vec<u8> {
        let mut flat = Vec::new();
        while w.has_remaining() {
            let n = w.chunk().len();
            flat.extend_from_slice(w.chunk());
            w.advance(n);
        }
        flat
    }

    #[test]
    fn masked_frames_are_masked_copies_whatever_their_size() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in [0, 5, COPY_THRESHOLD, COPY_THRESHOLD + 1, 70_000] {
            let payload = Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>());
            let mut w = WriteBuf::new();
            w.push_frame(true, 0, OpCode::Binary, &payload, Some(key));
            let wire = drain(&mut w);
            let h = FrameHeader::parse(&wire).unwrap().unwrap();
            assert_eq!(h.mask, Some(key));
            assert_eq!(h.payload_len, len as u64);
            let mut body = wire[h.header_len..].to_vec();
            crate::proto::mask::apply_mask_reference(&mut body, key, 0);
            assert_eq!(body, payload, "len {len}");
        }
    }

    #[test]
    fn rfc_6455_section_5_7_masked_hello_is_encoded_exactly() {
        let mut w = WriteBuf::new();
        let hello = Bytes::from_static(b"Hello");
        w.push_frame(
            true,
            0,
            OpCode::Text,
            &hello,
            Some([0x37, 0xfa, 0x21, 0x3d]),
        );
        assert_eq!(
            drain(&mut w),
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
    }

    #[test]
    fn a_large_masked_message_does_not_pin_its_buffer() {
        let mut w = WriteBuf::new();
        let big = Bytes::from(vec![0u8; 1 << 20]);
        w.push_frame(true, 0, OpCode::Binary, &big, Some([1, 2, 3, 4]));
        drain(&mut w);
        assert!(w.tail.capacity() <= RETAIN_MAX);
        let small = Bytes::from(vec![0u8; 1000]);
        w.push_frame(true, 0, OpCode::Binary, &small, Some([1, 2, 3, 4]));
        drain(&mut w);
        assert!(w.tail.capacity() > 0, "a small buffer is kept for reuse");
    }
}
