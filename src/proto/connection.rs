//! The connection state machine: bytes in, messages out (RFC 6455 §5–§7).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};

use super::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, RSV1};
use super::mask::apply_mask;
use super::traffic::{CloseRecord, Traffic};
use super::utf8::Utf8Validator;
use super::write_buf::WriteBuf;
use crate::config::{Config, Limits};
use crate::error::{CapacityError, Error, PayloadError, ProtocolError};
use crate::extensions::Extension;
use crate::message::{CloseCode, CloseFrame, Message, Utf8Bytes};

/// Payloads from this size on leave the read buffer with their allocation;
/// below an eighth of a read buffer larger than this, they are copied out.
const DETACH_MIN: usize = 64 << 10;

/// Which end of the connection this engine plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// The server: incoming frames must be masked, outgoing frames are not
    /// (RFC 6455 §5.1).
    Server,
    /// The client: every outgoing frame is masked with a fresh key from the
    /// given source, and a masked frame from the server fails the connection
    /// (RFC 6455 §5.1, §5.3).
    Client(MaskKeys),
}

impl Role {
    /// The masking key for the next frame sent: a fresh one for a client,
    /// none for a server (RFC 6455 §5.1).
    fn next_mask(self) -> Option<[u8; 4]> {
        match self {
            Role::Server => None,
            Role::Client(keys) => Some(keys.next_key()),
        }
    }
}

/// Where a client's masking keys come from.
///
/// RFC 6455 §5.3: "The masking key is a 32-bit value chosen at random by the
/// client. [...] MUST pick a fresh masking key from the set of allowed
/// 32-bit values. The masking key needs to be unpredictable." The engine
/// holds no random number generator (it stays deterministic and testable),
/// so the key source is passed in: a function called once per frame sent.
/// `tower_ws::client` passes a thread-local CSPRNG.
///
/// ```
/// use tower_ws::proto::{Connection, MaskKeys, Role};
///
/// // A fixed key is for tests only: real clients need unpredictable keys.
/// let keys = MaskKeys::new(|| [0x37, 0xfa, 0x21, 0x3d]);
/// let conn = Connection::new(Role::Client(keys), &tower_ws::Config::default(), None);
/// # let _ = conn;
/// ```
#[derive(Clone, Copy)]
pub struct MaskKeys(fn() -> [u8; 4]);

impl MaskKeys {
    /// A key source calling `next` for every frame.
    pub const fn new(next: fn() -> [u8; 4]) -> Self {
        MaskKeys(next)
    }

    /// The key for the next frame.
    pub fn next_key(&self) -> [u8; 4] {
        (self.0)()
    }
}

impl fmt::Debug for MaskKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaskKeys(..)")
    }
}

impl PartialEq for MaskKeys {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::fn_addr_eq(self.0, other.0)
    }
}

impl Eq for MaskKeys {}

/// Where the closing handshake stands (RFC 6455 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// We sent a close frame and wait for the peer's.
    CloseSent,
    /// No more frames flow: the handshake completed, or the connection failed.
    Closed,
}

/// The frame whose payload is arriving.
#[derive(Debug)]
struct PartialFrame {
    header: FrameHeader,
    /// Payload bytes already unmasked (and, for text, UTF-8 checked).
    processed: usize,
}

/// The data message being reassembled.
#[derive(Debug)]
struct PartialMessage {
    text: bool,
    compressed: bool,
    body: Body,
    fragments: usize,
    utf8: Utf8Validator,
}

/// The payload of a message's frames received so far.
#[derive(Debug, Default)]
enum Body {
    #[default]
    Empty,
    /// The payload of the first frame, kept without copying until a second
    /// frame arrives (most messages have one frame: they are never copied).
    First(Bytes),
    /// The payload reassembled from several frames, or inflated.
    Joined(BytesMut),
}

impl PartialMessage {
    fn len(&self) -> usize {
        match &self.body {
            Body::Empty => 0,
            Body::First(first) => first.len(),
            Body::Joined(buf) => buf.len(),
        }
    }
}

impl Body {
    /// The buffer the payload is reassembled (or inflated) into, holding
    /// what arrived so far.
    fn joined(&mut self, additional: usize) -> &mut BytesMut {
        if let Body::First(first) = self {
            let mut buf = BytesMut::with_capacity(first.len() + additional);
            buf.extend_from_slice(first);
            *self = Body::Joined(buf);
        } else if let Body::Empty = self {
            *self = Body::Joined(BytesMut::new());
        }
        match self {
            Body::Joined(buf) => buf,
            _ => unreachable!("joined just above"),
        }
    }
}

/// The sans-I/O WebSocket protocol engine.
///
/// It does no I/O and reads no clock: the caller appends received bytes to
/// [`read_buf`](Connection::read_buf) (or passes them to
/// [`receive_data`](Connection::receive_data)), asks for messages with
/// [`poll_event`](Connection::poll_event), and writes out whatever the engine
/// put into the caller's [`WriteBuf`]. All state lives in this struct, so an
/// async driver around it is cancel-safe by construction.
///
/// Input is processed lazily and in order: a message that arrived before a
/// protocol violation is delivered first, and what the application sends in
/// reply goes out before the close frame that fails the connection.
///
/// ```
/// use bytes::Buf;
/// use tower_ws::Message;
/// use tower_ws::proto::{Connection, Role, WriteBuf};
///
/// let mut conn = Connection::new(Role::Server, &tower_ws::Config::default(), None);
/// let mut out = WriteBuf::new();
/// // RFC 6455 §5.7: a masked text frame carrying "Hello".
/// conn.receive_data(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// let msg = conn.poll_event(&mut out).unwrap().unwrap();
/// assert_eq!(msg, Message::text("Hello"));
/// conn.send(msg, &mut out).unwrap();
/// assert_eq!(out.chunk(), b"\x81\x05Hello");
/// ```
#[derive(Debug)]
pub struct Connection {
    role: Role,
    state: State,
    /// A close frame was received from the peer.
    close_received: bool,
    read: BytesMut,
    frame: Option<PartialFrame>,
    message: Option<PartialMessage>,
    /// Messages parsed ahead of the application (see `process_input`).
    pending: VecDeque<Result<Message, Error>>,
    /// `pending` ends with a failure that has not taken effect yet.
    error_pending: bool,
    /// Payload bytes of the messages in `pending`.
    pending_bytes: usize,
    extension: Option<Box<dyn Extension>>,
    /// The configuration's limits, shared with its other connections.
    limits: Arc<Limits>,
    traffic: Traffic,
    /// Made when the first close frame goes either way: an open connection
    /// does not carry two empty close frames.
    closes: Option<Box<CloseRecord>>,
}

impl Connection {
    /// A connection in the open state, with an optional negotiated extension.
    pub fn new(role: Role, config: &Config, extension: Option<Box<dyn Extension>>) -> Self {
        Connection {
            role,
            state: State::Open,
            close_received: false,
            read: BytesMut::new(),
            frame: None,
            message: None,
            pending: VecDeque::new(),
            error_pending: false,
            pending_bytes: 0,
            extension,
            limits: config.limits.clone(),
            traffic: Traffic::default(),
            closes: None,
        }
    }

    /// The limits this connection was configured with.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The messages and bytes this connection carried so far.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// The close frames sent and received so far.
    pub fn close_record(&self) -> &CloseRecord {
        self.closes.as_deref().unwrap_or(&CloseRecord::NONE)
    }

    fn closes_mut(&mut self) -> &mut CloseRecord {
        self.closes.get_or_insert_default()
    }

    /// Bytes the engine holds on the input side: the read buffer (its whole
    /// allocation), the message being reassembled (or inflated), and the
    /// messages parsed ahead of the application.
    pub fn buffered_bytes(&self) -> usize {
        let message = self.message.as_ref().map_or(0, |m| match &m.body {
            Body::Empty => 0,
            Body::First(first) => first.len(),
            Body::Joined(buf) => buf.capacity(),
        });
        self.read.capacity() + message + self.pending_bytes
    }

    /// The read buffer's allocation, in bytes.
    pub fn read_capacity(&self) -> usize {
        self.read.capacity()
    }

    /// Room left in the read buffer's allocation.
    pub fn read_spare(&self) -> usize {
        self.read.capacity() - self.read.len()
    }

    /// Fails the connection for a reason decided outside the engine (a
    /// keepalive timeout, server overload): queues the error's close frame
    /// unless one was sent, and drops all buffered input and read-ahead.
    /// The caller reports `err` to the application.
    pub(crate) fn fail_with(&mut self, err: &Error, out: &mut WriteBuf) {
        self.fail(err, out);
        self.pending.clear();
        self.pending_bytes = 0;
        self.error_pending = false;
    }

    /// The buffer received bytes go into. The I/O layer reads straight into
    /// it (after `reserve`), avoiding a copy.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        &mut self.read
    }

    /// Appends received bytes (a copying convenience over `read_buf`).
    pub fn receive_data(&mut self, data: &[u8]) {
        if self.state != State::Closed {
            self.read.extend_from_slice(data);
        }
    }

    /// Parsed events (messages, a deferred error) read ahead and waiting for
    /// the application.
    pub(crate) fn buffered_events(&self) -> usize {
        self.pending.len()
    }

    /// Whether the engine wants more bytes from the transport: it is not
    /// closed and has no parsed messages waiting for the application.
    pub fn wants_read(&self) -> bool {
        // Read-ahead holds at most `max_pending_events` messages and about one
        // message's worth of bytes (a small compressed frame can inflate to
        // `max_message_size`).
        self.state != State::Closed
            && !self.error_pending
            && self.pending.len() < self.limits.max_pending_events
            && self.pending_bytes < self.limits.max_message_size
    }

    /// How many more bytes the frame being received needs (0 between
    /// frames). The I/O layer reads that much at once, up to a cap, instead
    /// of in `read_buffer_size` pieces.
    pub fn frame_remaining(&self) -> usize {
        self.frame.as_ref().map_or(0, |f| {
            (f.header.payload_len as usize).saturating_sub(self.read.len())
        })
    }

    /// Whether no more frames will flow in either direction: the closing
    /// handshake completed or the connection failed. Once the caller has
    /// written out the `WriteBuf`, it should close the transport (the server
    /// closes TCP first, RFC 6455 §7.1.1).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether this engine plays the client (and masks what it sends).
    pub fn is_client(&self) -> bool {
        matches!(self.role, Role::Client(_))
    }

    fn mask(&self) -> Option<[u8; 4]> {
        self.role.next_mask()
    }

    /// Whether a close frame may no longer be sent by the application.
    pub fn close_sent(&self) -> bool {
        self.state != State::Open
    }

    /// Whether the peer's close frame was received.
    pub fn close_received(&self) -> bool {
        self.close_received
    }

    /// The transport ended (EOF or error) before the closing handshake.
    /// Returns the event to report to the application, if any.
    pub fn receive_eof(&mut self) -> Option<Error> {
        if self.state == State::Closed {
            return None;
        }
        self.state = State::Closed;
        self.read = BytesMut::new();
        self.message = None;
        self.frame = None;
        Some(Error::io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the peer closed the TCP connection without a closing handshake (close code 1006)",
        )))
    }

    /// The next message for the application, parsing more input if needed.
    ///
    /// Returns `None` when more bytes are needed (or the connection is
    /// closed). Pongs for pings and the reply to a close frame are written to
    /// `out` as a side effect. An `Err` fails the connection: its close frame
    /// is in `out` and no more events follow.
    pub fn poll_event(&mut self, out: &mut WriteBuf) -> Option<Result<Message, Error>> {
        if let Some(event) = self.pending.pop_front() {
            if let Ok(msg) = &event {
                self.pending_bytes -= msg.len();
            }
            if let Err(e) = &event {
                // A failure found while reading ahead takes effect once the
                // messages before it are delivered (a no-op if it already did).
                self.fail(e, out);
            }
            return Some(event);
        }
        if self.state == State::Closed || self.error_pending {
            return None;
        }
        match self.next_message(out) {
            Ok(Some(msg)) => Some(Ok(msg)),
            Ok(None) => None,
            Err(e) => {
                self.fail(&e, out);
                Some(Err(e))
            }
        }
    }

    /// Parses all complete input ahead of the application, answering pings
    /// and close frames at once; the messages wait for `poll_event`.
    ///
    /// The I/O layer calls this when the application is only writing, so
    /// that pongs and close replies still reach the peer. At most
    /// `max_pending_events` messages wait; then parsing pauses. A protocol
    /// violation behind waiting messages fails the connection only when
    /// `poll_event` reaches it, so replies to those messages still go out
    /// first; with nothing waiting it fails the connection at once.
    pub fn process_input(&mut self, out: &mut WriteBuf) {
        while self.wants_read() {
            match self.next_message(out) {
                Ok(Some(msg)) => {
                    self.pending_bytes += msg.len();
                    self.pending.push_back(Ok(msg));
                }
                Ok(None) => break,
                Err(e) => {
                    if self.pending.is_empty() {
                        self.fail(&e, out);
                    } else {
                        self.error_pending = true;
                    }
                    self.pending.push_back(Err(e));
                }
            }
        }
    }

    /// Reports an error after the messages already parsed (the transport
    /// failed or ended while the application was not reading).
    pub(crate) fn defer_error(&mut self, e: Error) {
        self.pending.push_back(Err(e));
    }

    /// Encodes `msg` into `out`.
    ///
    /// Text and binary messages above `out_frame_size` are fragmented and,
    /// with permessage-deflate, compressed. Sending `Close` starts the
    /// closing handshake; after it only the peer's frames are read.
    pub fn send(&mut self, msg: Message, out: &mut WriteBuf) -> Result<(), Error> {
        if self.state != State::Open {
            return Err(Error::closed());
        }
        match msg {
            Message::Text(text) => self.send_data(OpCode::Text, text.into_bytes(), out),
            Message::Binary(data) => self.send_data(OpCode::Binary, data, out),
            Message::Ping(data) => {
                check_control_len(&data)?;
                out.push_frame(true, 0, OpCode::Ping, &data, self.mask());
                Ok(())
            }
            Message::Pong(data) => {
                check_control_len(&data)?;
                out.push_frame(true, 0, OpCode::Pong, &data, self.mask());
                Ok(())
            }
            Message::Close(frame) => {
                let payload = close_payload(frame.as_ref())?;
                out.push_frame(true, 0, OpCode::Close, &payload, self.mask());
                self.closes_mut().on_sent(frame.as_ref());
                self.state = State::CloseSent;
                Ok(())
            }
        }
    }

    /// Queues a complete, pre-encoded frame (header and payload): a
    /// broadcast encodes a frame once and queues the same bytes on every
    /// connection that [`accepts_shared_frames`](Self::accepts_shared_frames).
    ///
    /// # Errors
    ///
    /// A closed connection's error once this side closed; an invalid
    /// message for a client (it must mask each frame itself), and for
    /// anything but exactly one whole, unmasked, final text or binary frame
    /// (RSV1 only with an extension): control frames and the close go
    /// through [`send`](Self::send), which tracks them.
    pub fn send_encoded(&mut self, frame: Bytes, out: &mut WriteBuf) -> Result<(), Error> {
        if self.is_client() {
            return Err(Error::invalid_message(
                "a client masks every frame with a fresh key, so it cannot send a pre-encoded frame (RFC 6455 §5.3)",
            ));
        }
        let payload_len = match FrameHeader::parse(&frame) {
            Ok(Some(h)) if h.header_len as u64 + h.payload_len == frame.len() as u64 => {
                let rsv_ok = h.rsv == 0 || (self.extension.is_some() && h.rsv == RSV1);
                if !h.fin
                    || !matches!(h.opcode, OpCode::Text | OpCode::Binary)
                    || h.mask.is_some()
                    || !rsv_ok
                {
                    return Err(Error::invalid_message(
                        "a pre-encoded frame must be a whole, unmasked text or binary frame (control and close frames go through `send`, RFC 6455 §5.1, §5.5)",
                    ));
                }
                h.payload_len as usize
            }
            _ => {
                return Err(Error::invalid_message(
                    "a pre-encoded frame must be exactly one whole frame, header and payload",
                ));
            }
        };
        self.sent_shared(payload_len)?;
        out.push_encoded(frame);
        Ok(())
    }

    /// Counts a shared frame of a `payload_len`-byte message as sent (the
    /// caller writes it): fails once this side closed.
    pub(crate) fn sent_shared(&mut self, payload_len: usize) -> Result<(), Error> {
        if self.state != State::Open {
            return Err(Error::closed());
        }
        self.traffic.messages_sent += 1;
        self.traffic.bytes_sent += payload_len as u64;
        Ok(())
    }

    /// Whether the shared frame of a `payload_len`-byte message (see
    /// [`encode_frame`]) is what this connection would send for it: it
    /// is open, does not compress, is a server and would not fragment it.
    pub(crate) fn shares_frame_of(&self, payload_len: usize) -> bool {
        self.state == State::Open
            && self.accepts_shared_frames()
            && payload_len <= self.limits.out_frame_size
    }

    /// Whether a frame encoded without compression can be shared with this
    /// connection: true for a server when no extension transforms its
    /// messages (a client masks each frame with its own key).
    pub fn accepts_shared_frames(&self) -> bool {
        self.extension.is_none() && !self.is_client()
    }

    fn send_data(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        out: &mut WriteBuf,
    ) -> Result<(), Error> {
        self.traffic.messages_sent += 1;
        self.traffic.bytes_sent += payload.len() as u64;
        let (payload, rsv) = match &mut self.extension {
            Some(ext) => match ext.encode_shared(&payload)? {
                Some(compressed) => {
                    self.traffic.deflate_input_bytes_sent += payload.len() as u64;
                    self.traffic.compressed_bytes_sent += compressed.len() as u64;
                    (compressed, ext.rsv())
                }
                None => (payload, 0),
            },
            None => (payload, 0),
        };
        write_fragmented(
            opcode,
            rsv,
            payload,
            self.limits.out_frame_size,
            self.role,
            out,
        );
        Ok(())
    }

    /// Fails the connection (RFC 6455 §7.1.7): sends a close frame with the
    /// error's code unless one was sent, and stops processing input.
    fn fail(&mut self, err: &Error, out: &mut WriteBuf) {
        if self.state == State::Open {
            if let Some(code) = err.close_code() {
                let frame = CloseFrame::new(code, Utf8Bytes::from_static(err.close_reason()));
                if let Ok(payload) = close_payload(Some(&frame)) {
                    out.push_frame(true, 0, OpCode::Close, &payload, self.mask());
                    self.closes_mut().on_sent(Some(&frame));
                }
            }
        }
        self.state = State::Closed;
        self.read = BytesMut::new();
        self.frame = None;
        self.message = None;
    }

    /// Parses frames until a message is complete or input runs out.
    fn next_message(&mut self, out: &mut WriteBuf) -> Result<Option<Message>, Error> {
        loop {
            if self.frame.is_none() {
                let Some(header) = FrameHeader::parse(&self.read)? else {
                    return Ok(None);
                };
                self.check_header(&header)?;
                self.read.advance(header.header_len);
                self.frame = Some(PartialFrame {
                    header,
                    processed: 0,
                });
            }
            let frame = self.frame.as_mut().expect("frame in progress");
            let len = frame.header.payload_len as usize;
            let available = self.read.len().min(len);
            if available > frame.processed {
                // Unmask (and UTF-8 check) what arrived since the last call, so
                // an invalid text message fails before its frame completes.
                let new = &mut self.read[frame.processed..available];
                if let Some(mask) = frame.header.mask {
                    apply_mask(new, mask, frame.processed);
                }
                if !frame.header.opcode.is_control() {
                    if let Some(msg) = &mut self.message {
                        if msg.text && !msg.compressed && msg.utf8.feed(new).is_err() {
                            return Err(Error::payload(PayloadError::InvalidUtf8));
                        }
                    }
                }
                frame.processed = available;
            }
            if available < len {
                return Ok(None);
            }
            let header = frame.header;
            self.frame = None;
            let payload = if len < self.read.capacity() / 8 && self.read.capacity() > DETACH_MIN {
                // A small payload in a large buffer (read for a large
                // message): copied out, so a message the application keeps
                // does not keep the buffer.
                let payload = Bytes::copy_from_slice(&self.read[..len]);
                self.read.advance(len);
                payload
            } else {
                self.read.split_to(len).freeze()
            };
            if len >= DETACH_MIN && self.read.len() < DETACH_MIN {
                // The payload and the read buffer share one allocation: give
                // the few bytes after it a buffer of their own, so a large
                // message's memory goes when the message goes.
                self.read = BytesMut::from(&self.read[..]);
            }
            let msg = if header.opcode.is_control() {
                self.on_control(header.opcode, payload, out)?
            } else {
                self.on_data(header.fin, payload)?
            };
            if msg.is_some() {
                return Ok(msg);
            }
        }
    }

    /// The checks a header needs in the context of the connection.
    fn check_header(&mut self, h: &FrameHeader) -> Result<(), Error> {
        match self.role {
            // RFC 6455 §5.1: "The server MUST close the connection upon
            // receiving a frame that is not masked."
            Role::Server if h.mask.is_none() => {
                return Err(Error::protocol(ProtocolError::UnmaskedFrame));
            }
            // RFC 6455 §5.1: "A client MUST close a connection if it detects
            // a masked frame."
            Role::Client(_) if h.mask.is_some() => {
                return Err(Error::protocol(ProtocolError::MaskedFrame));
            }
            _ => {}
        }
        // RFC 6455 §5.2: RSV bits "MUST be 0 unless an extension is negotiated
        // that defines meanings for non-zero values".
        let claimed = self.extension.as_ref().map_or(0, |e| e.rsv());
        if h.rsv & !claimed != 0 {
            return Err(Error::protocol(ProtocolError::ReservedBits));
        }
        // RFC 7692 §6.1: the "Per-Message Compressed" bit is set only on the
        // first frame of a message, never on control or continuation frames.
        if h.rsv != 0 && (h.opcode.is_control() || h.opcode == OpCode::Continuation) {
            return Err(Error::protocol(ProtocolError::ExtensionRsvOnContinuation));
        }
        if h.payload_len > self.limits.max_frame_size as u64 {
            return Err(Error::capacity(CapacityError::FrameTooLarge {
                size: h.payload_len,
                max: self.limits.max_frame_size,
            }));
        }
        match h.opcode {
            OpCode::Continuation => {
                // RFC 6455 §5.4: a continuation needs a message in progress.
                let Some(msg) = &mut self.message else {
                    return Err(Error::protocol(ProtocolError::UnexpectedContinuation));
                };
                msg.fragments += 1;
                if msg.fragments > self.limits.max_fragments {
                    return Err(Error::capacity(CapacityError::TooManyFragments {
                        max: self.limits.max_fragments,
                    }));
                }
                if !msg.compressed
                    && msg.len() as u64 + h.payload_len > self.limits.max_message_size as u64
                {
                    return Err(self.too_big());
                }
            }
            OpCode::Text | OpCode::Binary => {
                // RFC 6455 §5.4: fragments of one message are not interleaved
                // with another data message.
                if self.message.is_some() {
                    return Err(Error::protocol(ProtocolError::ExpectedContinuation));
                }
                let compressed = h.rsv != 0;
                if !compressed && h.payload_len > self.limits.max_message_size as u64 {
                    return Err(self.too_big());
                }
                self.message = Some(PartialMessage {
                    text: h.opcode == OpCode::Text,
                    compressed,
                    body: Body::Empty,
                    fragments: 1,
                    utf8: Utf8Validator::new(),
                });
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => {}
        }
        Ok(())
    }

    fn too_big(&self) -> Error {
        Error::capacity(CapacityError::MessageTooLarge {
            max: self.limits.max_message_size,
        })
    }

    /// A data frame's payload is complete.
    fn on_data(&mut self, fin: bool, payload: Bytes) -> Result<Option<Message>, Error> {
        let max = self.limits.max_message_size;
        let msg = self.message.as_mut().expect("checked in check_header");
        if msg.compressed {
            let ext = self
                .extension
                .as_mut()
                .expect("RSV bits were checked against the extension");
            self.traffic.compressed_bytes_received += payload.len() as u64;
            let buf = msg.body.joined(0);
            let before = buf.len();
            ext.decode(&payload, fin, buf, max)?;
            if msg.text && msg.utf8.feed(&buf[before..]).is_err() {
                return Err(Error::payload(PayloadError::InvalidUtf8));
            }
        } else if let Body::Empty = msg.body {
            msg.body = Body::First(payload);
        } else {
            msg.body.joined(payload.len()).extend_from_slice(&payload);
        }
        if !fin {
            return Ok(None);
        }
        let mut msg = self.message.take().expect("message in progress");
        let data = match std::mem::take(&mut msg.body) {
            Body::Empty => Bytes::new(),
            Body::First(first) => first,
            Body::Joined(buf) => buf.freeze(),
        };
        self.traffic.messages_received += 1;
        self.traffic.bytes_received += data.len() as u64;
        if msg.compressed {
            self.traffic.inflated_bytes_received += data.len() as u64;
        }
        if msg.text {
            // RFC 6455 §8.1: the whole message must be valid UTF-8.
            if msg.utf8.finish().is_err() {
                return Err(Error::payload(PayloadError::InvalidUtf8));
            }
            Ok(Some(Message::Text(Utf8Bytes::from_bytes_unchecked(data))))
        } else {
            Ok(Some(Message::Binary(data)))
        }
    }

    /// A control frame is complete (RFC 6455 §5.5).
    fn on_control(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        out: &mut WriteBuf,
    ) -> Result<Option<Message>, Error> {
        match opcode {
            OpCode::Ping => {
                // RFC 6455 §5.5.2: answer with a pong carrying the same data,
                // unless we already sent a close frame.
                if self.state == State::Open {
                    out.push_frame(true, 0, OpCode::Pong, &payload, self.mask());
                }
                Ok(Some(Message::Ping(payload)))
            }
            OpCode::Pong => Ok(Some(Message::Pong(payload))),
            OpCode::Close => {
                let frame = parse_close_payload(payload)?;
                self.close_received = true;
                self.closes_mut().on_received(frame.as_ref());
                if self.state == State::Open {
                    // RFC 6455 §5.5.1: reply with a close frame, echoing the code.
                    let echo = frame.as_ref().map(|f| CloseFrame::new(f.code, ""));
                    let reply = close_payload(echo.as_ref())?;
                    out.push_frame(true, 0, OpCode::Close, &reply, self.mask());
                    self.closes_mut().on_sent(echo.as_ref());
                }
                self.state = State::Closed;
                self.read = BytesMut::new();
                self.message = None;
                Ok(Some(Message::Close(frame)))
            }
            _ => unreachable!("only control opcodes reach on_control"),
        }
    }
}

/// The frame a server sends for a data message that fits one frame: the
/// header and the payload in one buffer, unmasked and uncompressed, so many
/// connections can write the same bytes. `None` for control messages.
pub(crate) fn encode_frame(msg: &Message) -> Option<Bytes> {
    let (opcode, payload) = match msg {
        Message::Text(text) => (OpCode::Text, text.as_bytes()),
        Message::Binary(data) => (OpCode::Binary, &data[..]),
        _ => return None,
    };
    let mut header = [0u8; MAX_HEADER_LEN];
    let n = FrameHeader::encode(&mut header, true, 0, opcode, None, payload.len() as u64);
    let mut frame = BytesMut::with_capacity(n + payload.len());
    frame.extend_from_slice(&header[..n]);
    frame.extend_from_slice(payload);
    Some(frame.freeze())
}

/// Splits a data message into frames of at most `frame_size` payload bytes,
/// each masked with its own key by a client.
fn write_fragmented(
    opcode: OpCode,
    rsv: u8,
    payload: Bytes,
    frame_size: usize,
    role: Role,
    out: &mut WriteBuf,
) {
    if payload.len() <= frame_size {
        out.push_frame(true, rsv, opcode, &payload, role.next_mask());
        return;
    }
    let mut rest = payload;
    let mut first = true;
    while !rest.is_empty() {
        let piece = rest.split_to(rest.len().min(frame_size));
        let (op, bits) = if first {
            (opcode, rsv)
        } else {
            (OpCode::Continuation, 0)
        };
        out.push_frame(rest.is_empty(), bits, op, &piece, role.next_mask());
        first = false;
    }
}

fn check_control_len(data: &[u8]) -> Result<(), Error> {
    if data.len() > MAX_CONTROL_PAYLOAD {
        return Err(Error::invalid_message(
            "control frame payloads are limited to 125 bytes (RFC 6455 §5.5)",
        ));
    }
    Ok(())
}

/// The payload of a close frame we send.
fn close_payload(frame: Option<&CloseFrame>) -> Result<Bytes, Error> {
    let Some(frame) = frame else {
        return Ok(Bytes::new());
    };
    if !frame.code.is_sendable() {
        return Err(Error::invalid_message(
            "close code may not be sent: use 1000-1003, 1007-1014 or 3000-4999 (RFC 6455 §7.4)",
        ));
    }
    if frame.reason.len() > MAX_CONTROL_PAYLOAD - 2 {
        return Err(Error::invalid_message(
            "close reason is limited to 123 bytes (RFC 6455 §5.5)",
        ));
    }
    let mut payload = Vec::with_capacity(2 + frame.reason.len());
    payload.extend_from_slice(&frame.code.as_u16().to_be_bytes());
    payload.extend_from_slice(frame.reason.as_bytes());
    Ok(payload.into())
}

/// Validates a received close payload (RFC 6455 §5.5.1, §7.4).
fn parse_close_payload(mut payload: Bytes) -> Result<Option<CloseFrame>, Error> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(Error::protocol(ProtocolError::CloseOneBytePayload)),
        _ => {
            let code = CloseCode::from(payload.get_u16());
            if !code.is_sendable() {
                return Err(Error::protocol(ProtocolError::InvalidCloseCode(
                    code.as_u16(),
                )));
            }
            let reason = Utf8Bytes::try_from(payload)
                .map_err(|_| Error::payload(PayloadError::InvalidCloseReason))?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod client_tests;
