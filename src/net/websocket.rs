//! The WebSocket framing layer (RFC 7395) between a client's transport and the
//! driver, so that XMPP over WebSocket runs through the same c2s core as TCP
//! (REVIEW §5): the client's `<open/>` becomes the stream header the framer
//! expects and `<close/>` its end tag; the core's output is cut into one element
//! per message, its header becomes `<open/>`, its end `<close/>` (and a close
//! frame), and every top-level element declares its namespace (§3.3.3).

use super::transport::{ReadOutcome, Transport};
use crate::http::websocket::{encode, encode_close, Decoder, Event, OP_PONG, OP_TEXT};
use crate::xml::Framer;
use std::io;

pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
const NS_STREAMS: &str = "http://etherx.jabber.org/streams";

/// A client stream's WebSocket state.
pub struct WsFraming {
    decoder: Decoder,
    /// XMPP bytes decoded but not yet taken by the framer.
    pending: Vec<u8>,
    /// Frames to send that the core did not write (pongs, a close).
    control: Vec<u8>,
    /// The peer sent a close frame (or broke the framing): after `pending`, the end.
    ended: bool,
}

impl WsFraming {
    /// `already`: bytes that came after the upgrade request.
    pub fn new(max_message: usize, already: &[u8]) -> WsFraming {
        let mut decoder = Decoder::new(max_message);
        decoder.push(already);
        WsFraming { decoder, pending: Vec::new(), control: Vec::new(), ended: false }
    }

    /// Takes raw bytes from the connection.
    pub fn push(&mut self, data: &[u8]) {
        self.decoder.push(data);
    }

    /// Decoded input is waiting for the framer.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn memory(&self) -> usize {
        self.decoder.memory() + self.pending.capacity() + self.control.capacity()
    }

    pub fn trim(&mut self) {
        self.decoder.trim();
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
    }

    /// Reads what is available: raw frames from the transport, their messages
    /// into the framer. `Data(n)` counts bytes read from the socket.
    pub fn read_into(&mut self, transport: &mut Transport, framer: &mut Framer) -> io::Result<ReadOutcome> {
        let mut outcome = ReadOutcome::Data(0);
        if self.pending.is_empty() && !self.ended {
            let mut chunk = [0u8; 4096];
            outcome = transport.read_into_slice(&mut chunk)?;
            if let ReadOutcome::Data(n) = outcome {
                self.decoder.push(&chunk[..n]);
            }
            self.decode();
        }
        if !self.pending.is_empty() {
            let n = framer.feed(&self.pending);
            self.pending.drain(..n);
            if matches!(outcome, ReadOutcome::WouldBlock) {
                outcome = ReadOutcome::Data(0);
            }
        }
        if self.ended && self.pending.is_empty() && !matches!(outcome, ReadOutcome::Data(n) if n > 0) {
            return Ok(ReadOutcome::Eof);
        }
        Ok(outcome)
    }

    /// Decodes everything given so far and takes the stream bytes (the fuzz
    /// target's way in, without a transport); whether the peer ended.
    pub fn decode_all(&mut self) -> (Vec<u8>, bool) {
        self.decode();
        (std::mem::take(&mut self.pending), self.ended)
    }

    /// Messages out of the decoder, translated into stream bytes.
    fn decode(&mut self) {
        while !self.ended {
            match self.decoder.next_event() {
                Ok(Some(Event::Text(message))) => translate_in(&message, &mut self.pending),
                Ok(Some(Event::Ping(payload))) => encode(OP_PONG, &payload, &mut self.control),
                Ok(Some(Event::Pong)) => {}
                Ok(Some(Event::Close(_))) => {
                    encode_close(1000, "", &mut self.control);
                    self.ended = true;
                }
                Ok(None) => break,
                Err(e) => {
                    log::debug!("websocket: {}", e.text());
                    encode_close(e.code(), e.text(), &mut self.control);
                    self.ended = true;
                }
            }
        }
    }

    /// The core's output as frames, after any control frames waiting.
    pub fn frame_output(&mut self, out: &[u8], frames: &mut Vec<u8>) {
        frames.append(&mut self.control);
        let mut at = 0;
        while at < out.len() {
            while out.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
                at += 1;
            }
            if at >= out.len() {
                break;
            }
            let end = crate::stream::sm::element_end(out, at).unwrap_or(out.len());
            translate_out(&out[at..end], frames);
            at = end;
        }
    }
}

/// A client message into stream bytes: `<open/>` as a stream header, `<close/>`
/// as its end tag, anything else as it is.
fn translate_in(message: &[u8], pending: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(message);
    let trimmed = text.trim();
    let Some((name, attrs)) = framing_tag(trimmed) else {
        pending.extend_from_slice(message);
        return;
    };
    match name {
        "open" => {
            pending.extend_from_slice(b"<stream:stream xmlns='jabber:client' xmlns:stream='");
            pending.extend_from_slice(NS_STREAMS.as_bytes());
            pending.push(b'\'');
            for (k, v) in attrs {
                if k != "xmlns" {
                    pending.extend_from_slice(format!(" {k}='{v}'").as_bytes());
                }
            }
            pending.push(b'>');
        }
        _ => pending.extend_from_slice(b"</stream:stream>"),
    }
}

/// `<open …/>` or `<close …/>` in the framing namespace: its name and attributes
/// (values escaped as they came, with `'` quotes made safe).
fn framing_tag(message: &str) -> Option<(&'static str, Vec<(String, String)>)> {
    let mut tokens = xmlparser::Tokenizer::from(message);
    let name = match tokens.next()? {
        Ok(xmlparser::Token::ElementStart { prefix, local, .. }) if prefix.is_empty() => match local.as_str() {
            "open" => "open",
            "close" => "close",
            _ => return None,
        },
        _ => return None,
    };
    let mut attrs = Vec::new();
    let mut ns_ok = false;
    for token in tokens {
        match token.ok()? {
            xmlparser::Token::Attribute { prefix, local, value, .. } => {
                let key = if prefix.is_empty() { local.to_string() } else { format!("{prefix}:{local}") };
                if key == "xmlns" {
                    ns_ok = value.as_str() == NS_FRAMING;
                }
                attrs.push((key, value.as_str().replace('\'', "&apos;")));
            }
            xmlparser::Token::ElementEnd { end: xmlparser::ElementEnd::Empty, .. } => break,
            _ => return None,
        }
    }
    ns_ok.then_some((name, attrs))
}

/// One element of the core's output as one text frame, RFC 7395's way.
fn translate_out(element: &[u8], frames: &mut Vec<u8>) {
    let mut message = Vec::with_capacity(element.len() + 40);
    if element.starts_with(b"<?") {
        return; // The XML declaration is not sent (§3.3.3).
    }
    if element.starts_with(b"</stream:stream") {
        message.extend_from_slice(format!("<close xmlns='{NS_FRAMING}'/>").as_bytes());
        encode(OP_TEXT, &message, frames);
        encode_close(1000, "", frames);
        return;
    }
    if let Some(rest) = element.strip_prefix(b"<stream:stream") {
        // Our own header: its attributes but the namespaces, as an empty <open/>.
        message.extend_from_slice(format!("<open xmlns='{NS_FRAMING}'").as_bytes());
        let attrs = String::from_utf8_lossy(rest);
        let attrs = attrs.trim_end_matches('>');
        for attr in split_attrs(attrs) {
            if !attr.starts_with("xmlns") {
                message.push(b' ');
                message.extend_from_slice(attr.as_bytes());
            }
        }
        message.extend_from_slice(b"/>");
        encode(OP_TEXT, &message, frames);
        return;
    }
    let name_end = element.iter().position(|b| matches!(b, b' ' | b'>' | b'/')).unwrap_or(element.len());
    let name = &element[1.min(element.len())..name_end];
    let tag_end = element.iter().position(|&b| b == b'>').unwrap_or(element.len());
    let declared = element[..tag_end].windows(7).any(|w| w == b" xmlns=");
    message.extend_from_slice(&element[..name_end]);
    if name.starts_with(b"stream:") {
        message.extend_from_slice(format!(" xmlns:stream='{NS_STREAMS}'").as_bytes());
    } else if !declared {
        message.extend_from_slice(b" xmlns='jabber:client'");
    }
    message.extend_from_slice(&element[name_end..]);
    encode(OP_TEXT, &message, frames);
}

/// The `name='value'` pieces of a start tag's attribute text (our own writer's:
/// single quotes, no `'` inside values).
fn split_attrs(text: &str) -> Vec<&str> {
    let mut attrs = Vec::new();
    let mut rest = text.trim();
    while let Some(eq) = rest.find("='") {
        let Some(close) = rest[eq + 2..].find('\'') else { break };
        let end = eq + 2 + close + 1;
        attrs.push(rest[..end].trim());
        rest = rest[end..].trim_start();
    }
    attrs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::websocket::masked;

    /// The text messages of server frames (unmasked), and whether a close came.
    fn messages(frames: &[u8]) -> (Vec<String>, bool) {
        let (mut at, mut texts, mut closed) = (0, Vec::new(), false);
        while at < frames.len() {
            let op = frames[at] & 0x0f;
            let (len, start) = match frames[at + 1] {
                126 => (u16::from_be_bytes([frames[at + 2], frames[at + 3]]) as usize, at + 4),
                n => (n as usize, at + 2),
            };
            match op {
                OP_TEXT => texts.push(String::from_utf8(frames[start..start + len].to_vec()).unwrap()),
                0x8 => closed = true,
                _ => {}
            }
            at = start + len;
        }
        (texts, closed)
    }

    #[test]
    fn the_cores_output_goes_out_one_element_per_message_with_its_namespace() {
        let mut ws = WsFraming::new(1000, &[]);
        let out = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
            xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='abc' version='1.0' xml:lang='en'>\
            <stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></stream:features>\
            <message to='a@b' id='1'><body>x &gt; y</body></message><r xmlns='urn:xmpp:sm:3'/>\
            <stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>";
        let mut frames = Vec::new();
        ws.frame_output(out, &mut frames);
        let (texts, closed) = messages(&frames);
        assert_eq!(
            texts,
            [
                "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost' id='abc' version='1.0' xml:lang='en'/>",
                "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></stream:features>",
                "<message xmlns='jabber:client' to='a@b' id='1'><body>x &gt; y</body></message>",
                "<r xmlns='urn:xmpp:sm:3'/>",
                "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
                "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
            ]
        );
        assert!(closed, "a close frame follows <close/>");
    }

    #[test]
    fn the_clients_open_and_close_become_the_stream_the_framer_knows() {
        let mut pending = Vec::new();
        translate_in(b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>", &mut pending);
        assert_eq!(
            String::from_utf8(pending.clone()).unwrap(),
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
        );
        pending.clear();
        translate_in(b"<close xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\"/>", &mut pending);
        assert_eq!(pending, b"</stream:stream>");
        pending.clear();
        // Not the framing namespace: a stanza like any other.
        translate_in(b"<open to='x'/>", &mut pending);
        assert_eq!(pending, b"<open to='x'/>");
    }

    #[test]
    fn a_ping_is_answered_and_a_broken_frame_ends_the_stream_with_its_code() {
        let mut ws = WsFraming::new(10, &masked(0x9, true, b"hi"));
        ws.decode();
        let mut frames = Vec::new();
        ws.frame_output(b"", &mut frames);
        assert_eq!(frames, [0x8a, 2, b'h', b'i']);
        let mut ws = WsFraming::new(10, &masked(OP_TEXT, true, &[b'x'; 11]));
        ws.decode();
        assert!(ws.ended);
        let mut frames = Vec::new();
        ws.frame_output(b"", &mut frames);
        assert_eq!(&frames[..4], [0x88, frames[1], 0x03, 0xf1], "1009");
    }
}
