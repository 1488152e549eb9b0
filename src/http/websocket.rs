//! The WebSocket protocol (RFC 6455) as RFC 7395 uses it, sans I/O: the opening
//! handshake's accept key (§4.2.2), and frames: a bounded decoder of the
//! client's masked frames into whole text messages and control frames, and the
//! server's unmasked frames. Binary frames, unmasked client frames, reserved bits
//! and oversized messages are errors that close the connection with their code.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// §1.3: the GUID appended to the client's key.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let digest =
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, format!("{}{GUID}", key.trim()).as_bytes());
    B64.encode(digest.as_ref())
}

/// What the decoder found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A whole text message (UTF-8 checked).
    Text(Vec<u8>),
    /// A ping, to be answered with a pong carrying its payload.
    Ping(Vec<u8>),
    Pong,
    /// The peer closes (with its status code, if any).
    Close(Option<u16>),
}

/// Why the decoder stopped: each is a close status (§7.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsError {
    /// 1002: a frame breaks the protocol (unmasked, reserved bits, bad control frame).
    Protocol(&'static str),
    /// 1003: a binary message (RFC 7395 §3.2 carries text only).
    Binary,
    /// 1007: a text message that is not UTF-8.
    NotUtf8,
    /// 1009: a message longer than the limit.
    TooBig,
}

impl WsError {
    pub fn code(self) -> u16 {
        match self {
            WsError::Protocol(_) => 1002,
            WsError::Binary => 1003,
            WsError::NotUtf8 => 1007,
            WsError::TooBig => 1009,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            WsError::Protocol(why) => why,
            WsError::Binary => "XMPP over WebSocket is text",
            WsError::NotUtf8 => "a text message is not UTF-8",
            WsError::TooBig => "the message is longer than the stanza limit",
        }
    }
}

/// The client's frames: raw bytes in, events out. It holds at most one frame
/// not yet complete and one message being assembled, each within `max_message`.
pub struct Decoder {
    raw: Vec<u8>,
    message: Vec<u8>,
    /// A fragmented text message is being assembled.
    in_message: bool,
    max_message: usize,
}

impl Decoder {
    pub fn new(max_message: usize) -> Decoder {
        Decoder { raw: Vec::new(), message: Vec::new(), in_message: false, max_message }
    }

    /// Bytes the decoder holds.
    pub fn memory(&self) -> usize {
        self.raw.capacity() + self.message.capacity()
    }

    /// Gives back buffers while nothing is pending.
    pub fn trim(&mut self) {
        if self.raw.is_empty() {
            self.raw = Vec::new();
        }
        if self.message.is_empty() {
            self.message = Vec::new();
        }
    }

    /// Takes bytes from the connection.
    pub fn push(&mut self, data: &[u8]) {
        self.raw.extend_from_slice(data);
    }

    /// The next event, `Ok(None)` until a frame is complete.
    pub fn next_event(&mut self) -> Result<Option<Event>, WsError> {
        loop {
            let Some(header) = self.header()? else { return Ok(None) };
            let Header { fin, opcode, len, at } = header;
            let control = opcode & 0x8 != 0;
            if control && (!fin || len > 125) {
                return Err(WsError::Protocol("a control frame is fragmented or longer than 125 bytes"));
            }
            if !control && self.message.len() as u64 + len > self.max_message as u64 {
                return Err(WsError::TooBig);
            }
            let len = len as usize;
            if self.raw.len() < at + 4 + len {
                return Ok(None);
            }
            let mut key = [0u8; 4];
            key.copy_from_slice(&self.raw[at..at + 4]);
            let payload_at = at + 4;
            for (i, b) in self.raw[payload_at..payload_at + len].iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
            let payload = &self.raw[payload_at..payload_at + len];
            let event = match opcode {
                OP_TEXT | OP_CONTINUATION => {
                    if (opcode == OP_TEXT) == self.in_message {
                        return Err(WsError::Protocol("a continuation without a message, or a message inside one"));
                    }
                    self.message.extend_from_slice(payload);
                    self.in_message = !fin;
                    if fin {
                        let message = std::mem::take(&mut self.message);
                        if std::str::from_utf8(&message).is_err() {
                            return Err(WsError::NotUtf8);
                        }
                        Some(Event::Text(message))
                    } else {
                        None
                    }
                }
                OP_BINARY => return Err(WsError::Binary),
                OP_PING => Some(Event::Ping(payload.to_vec())),
                OP_PONG => Some(Event::Pong),
                OP_CLOSE => Some(Event::Close(payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]])))),
                _ => return Err(WsError::Protocol("an unknown opcode")),
            };
            self.raw.drain(..payload_at + len);
            if event.is_some() {
                return Ok(event);
            }
        }
    }

    /// The header of the frame at the start of `raw`, once it is all there.
    fn header(&self) -> Result<Option<Header>, WsError> {
        let raw = &self.raw;
        let (Some(&b0), Some(&b1)) = (raw.first(), raw.get(1)) else { return Ok(None) };
        if b0 & 0x70 != 0 {
            return Err(WsError::Protocol("reserved bits are set (no extension was agreed)"));
        }
        if b1 & 0x80 == 0 {
            return Err(WsError::Protocol("a client frame must be masked"));
        }
        let (len, at) = match b1 & 0x7f {
            126 => match raw.get(2..4) {
                Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 4),
                None => return Ok(None),
            },
            127 => match raw.get(2..10) {
                Some(l) => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(l);
                    (u64::from_be_bytes(b), 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if raw.len() < at + 4 {
            return Ok(None);
        }
        Ok(Some(Header { fin: b0 & 0x80 != 0, opcode: b0 & 0x0f, len, at }))
    }
}

struct Header {
    fin: bool,
    opcode: u8,
    len: u64,
    /// Where the masking key starts.
    at: usize,
}

/// One unmasked server frame (§5.2).
pub fn encode(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// A close frame with a status code and a short reason.
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    encode(OP_CLOSE, &payload, out);
}

/// A client's frame, masked with `key` (§5.3): what browsers send; for the
/// tests, the fuzz corpus and the benches' clients.
pub fn encode_masked(opcode: u8, fin: bool, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

#[cfg(test)]
pub(crate) fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    encode_masked(opcode, fin, payload, [0x37, 0xfa, 0x21, 0x3d])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_of_rfc_6455() {
        // §1.3's example.
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn masked_frames_decode_in_any_pieces_and_fragments_join() {
        let mut wire = masked(OP_TEXT, false, b"<message>");
        wire.extend(masked(OP_PING, true, b"p"));
        wire.extend(masked(OP_CONTINUATION, true, "<body>é</body></message>".as_bytes()));
        wire.extend(masked(OP_TEXT, true, &[b'x'; 300]));
        wire.extend(masked(OP_CLOSE, true, &[0x03, 0xe8]));
        for piece in [1, 3, 7, wire.len()] {
            let mut d = Decoder::new(1000);
            let mut events = Vec::new();
            for chunk in wire.chunks(piece) {
                d.push(chunk);
                while let Some(e) = d.next_event().unwrap() {
                    events.push(e);
                }
            }
            assert_eq!(
                events,
                vec![
                    Event::Ping(b"p".to_vec()),
                    Event::Text("<message><body>é</body></message>".as_bytes().to_vec()),
                    Event::Text(vec![b'x'; 300]),
                    Event::Close(Some(1000)),
                ],
                "in pieces of {piece}"
            );
        }
    }

    #[test]
    fn broken_frames_are_refused_with_their_codes() {
        let error = |wire: Vec<u8>| {
            let mut d = Decoder::new(100);
            d.push(&wire);
            d.next_event().unwrap_err().code()
        };
        let mut unmasked = masked(OP_TEXT, true, b"x");
        unmasked[1] &= 0x7f;
        assert_eq!(error(unmasked), 1002);
        assert_eq!(error(masked(OP_BINARY, true, b"x")), 1003);
        assert_eq!(error(masked(OP_TEXT, true, &[0xff, 0xfe])), 1007);
        assert_eq!(error(masked(OP_TEXT, true, &[b'x'; 101])), 1009);
        assert_eq!(error(masked(OP_PING, false, b"x")), 1002);
        assert_eq!(error(masked(OP_CONTINUATION, true, b"x")), 1002);
        let mut reserved = masked(OP_TEXT, true, b"x");
        reserved[0] |= 0x40;
        assert_eq!(error(reserved), 1002);
        // A huge declared length is refused from its header, before its bytes.
        let mut d = Decoder::new(100);
        d.push(&[0x81, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(d.next_event(), Err(WsError::TooBig));
    }

    #[test]
    fn server_frames_carry_their_length_in_the_shortest_form() {
        let mut out = Vec::new();
        encode(OP_TEXT, b"hi", &mut out);
        assert_eq!(out, [0x81, 2, b'h', b'i']);
        out.clear();
        encode(OP_TEXT, &[0; 200], &mut out);
        assert_eq!(&out[..4], [0x81, 126, 0, 200]);
        out.clear();
        encode(OP_TEXT, &[0; 70000], &mut out);
        assert_eq!(&out[..10], [0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        out.clear();
        encode_close(1000, "bye", &mut out);
        assert_eq!(out, [0x88, 5, 0x03, 0xe8, b'b', b'y', b'e']);
    }
}
