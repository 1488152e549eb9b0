//! The XML layer: an incremental, bounded, zero-copy stream framer over `xmlparser`
//! tokens, borrowed element views, and a writer. It knows nothing of XMPP streams,
//! routing or sockets.

pub mod element;
pub mod error;
pub mod framer;
pub mod text;
pub mod writer;

pub use element::{Attribute, Content, Element};
pub use error::{Limit, XmlError, XmlErrorKind};
pub use framer::{Event, Framer, Limits};

/// The namespace bound to the `xml` prefix (Namespaces in XML 1.0 §3).
pub const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// Frames stanzas wrenhub wrote itself (queued or generated `jabber:client`
/// bytes) again, one `f` call per first-level element; one that does not frame
/// is skipped, the rest still go. Returns how many were framed.
pub fn for_each_stanza(bytes: &[u8], mut f: impl FnMut(&Element<'_>)) -> usize {
    const HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
    let limits = Limits { max_stanza_size: 1 << 24, ..Limits::default() };
    let mut framer = Framer::new(limits);
    framer.feed(HEADER.as_bytes());
    let mut framed = 0;
    let mut rest = bytes;
    loop {
        loop {
            match framer.next_event() {
                Ok(Some(Event::Element(e))) => {
                    f(&e);
                    framed += 1;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    log::warn!("a stanza of wrenhub's own does not frame again: {e}");
                    framer = Framer::new(limits);
                    framer.feed(HEADER.as_bytes());
                    break;
                }
            }
        }
        if rest.is_empty() {
            return framed;
        }
        let n = framer.feed(rest);
        if n == 0 {
            return framed;
        }
        rest = &rest[n..];
        framer.trim();
    }
}

#[cfg(test)]
mod framer_tests;
