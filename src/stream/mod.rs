//! The XMPP stream layer (RFC 6120 §4): headers, version negotiation, stream
//! errors, and the per-connection-kind state machines.

pub mod c2s;
pub mod component;
pub mod error;
pub mod header;
pub mod s2s_in;
pub mod s2s_out;
pub mod sm;

pub use error::{StreamCondition, StreamError};

use crate::xml::{Event, XmlError};

/// What happened to a stream, for any connection kind's state machine.
#[derive(Debug)]
pub enum Input<'a> {
    Xml(Event<'a>),
    XmlError(XmlError),
    /// A deadline passed; the text says which one.
    Timeout(&'static str),
    /// The server is stopping (SIGTERM / SIGINT).
    Shutdown,
    /// Someone else ended this stream (resource conflict, account deleted, queue
    /// overflow, component takeover).
    Kill(StreamError),
}

impl<'a> Input<'a> {
    /// The XML event, or the stream error every other input ends the stream with
    /// (§4.9.3: connection-timeout, system-shutdown, or the condition given).
    pub fn into_event(self) -> Result<Event<'a>, StreamError> {
        match self {
            Input::Xml(event) => Ok(event),
            Input::XmlError(e) => Err(StreamError::from(e)),
            Input::Timeout(why) => Err(StreamError::with_text(StreamCondition::ConnectionTimeout, why)),
            Input::Shutdown => {
                Err(StreamError::with_text(StreamCondition::SystemShutdown, "the server is shutting down"))
            }
            Input::Kill(e) => Err(e),
        }
    }
}
