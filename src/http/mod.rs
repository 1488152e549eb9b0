//! HTTP/1.1 (RFC 9112) for the hub's HTTPS listener, sans I/O: request heads
//! (parsed by httparse within bounds), response heads, byte ranges, URL paths,
//! and the built-in pages. The connection task (`net::http`) does the I/O.

pub mod pages;
pub mod path;
pub mod range;
pub mod request;
pub mod response;
pub mod websocket;
