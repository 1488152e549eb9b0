//! The XMPP stream layer (RFC 6120 §4): headers, version negotiation, stream
//! errors, and the per-connection-kind state machines.

pub mod c2s;
pub mod component;
pub mod error;
pub mod header;

pub use error::{StreamCondition, StreamError};
