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

#[cfg(test)]
mod framer_tests;
