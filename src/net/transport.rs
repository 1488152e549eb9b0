//! A client connection's byte transport: plain TCP, or rustls over it (after
//! STARTTLS, or from the first byte with Direct TLS). rustls is used sans-I/O
//! (`read_tls` / `process_new_packets` / `write_tls`), so reading stays "wait until
//! readable, then read into the framer", and an idle connection holds no buffer of
//! ours.

use crate::sasl::scram::ChannelBindings;
use crate::xml::Framer;
use async_io::{Async, Timer};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// What a read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes went into the framer (0: TLS records only).
    Data(usize),
    /// Nothing to read now.
    WouldBlock,
    /// The peer closed the connection (or sent TLS close_notify).
    Eof,
}

pub struct Transport {
    socket: Async<TcpStream>,
    tls: Option<Box<Connection>>,
    /// Decrypted bytes rustls holds that the framer has not taken yet.
    plaintext_left: usize,
}

impl Transport {
    pub fn plain(socket: Async<TcpStream>) -> Transport {
        Transport { socket, tls: None, plaintext_left: 0 }
    }

    /// Direct TLS (XEP-0368): TLS from the first byte.
    pub fn direct_tls(socket: Async<TcpStream>, config: Arc<ServerConfig>) -> io::Result<Transport> {
        let mut t = Transport::plain(socket);
        t.start_tls(config)?;
        Ok(t)
    }

    /// Starts the TLS handshake (after `<proceed/>` was written in plaintext).
    pub fn start_tls(&mut self, config: Arc<ServerConfig>) -> io::Result<()> {
        let conn = ServerConnection::new(config).map_err(io::Error::other)?;
        self.tls = Some(Box::new(Connection::Server(conn)));
        Ok(())
    }

    /// Starts TLS as the client (an outbound server-to-server link).
    pub fn start_client_tls(&mut self, config: Arc<ClientConfig>, name: ServerName<'static>) -> io::Result<()> {
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        self.tls = Some(Box::new(Connection::Client(conn)));
        Ok(())
    }

    /// The certificate chain the peer presented (end entity first), once the
    /// handshake is done.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.tls.as_ref().filter(|t| !t.is_handshaking()).and_then(|t| t.peer_certificates())
    }

    /// The peer address of the socket.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.socket.get_ref().peer_addr().ok()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TLS handshake is complete.
    pub fn tls_ready(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| !t.is_handshaking())
    }

    /// Decrypted input is waiting: read again without waiting for the socket.
    pub fn has_buffered_input(&self) -> bool {
        self.plaintext_left > 0
    }

    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Reads what is available on a plaintext connection into `buf`, up to `max`
    /// bytes in all, without blocking: `Some(0)` is the end of the stream, `None`
    /// nothing to read now. (Before a stream header: see `net::c2s::until_header`.)
    pub fn read_plain(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<usize>> {
        if self.tls.is_some() || buf.len() >= max {
            return Ok(None);
        }
        let mut chunk = [0u8; 512];
        let room = (max - buf.len()).min(chunk.len());
        match self.socket.get_ref().read(&mut chunk[..room]) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                Ok(Some(n))
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads what is available into the framer, without blocking.
    pub fn read_into(&mut self, framer: &mut Framer) -> io::Result<ReadOutcome> {
        if framer.room() == 0 {
            // Complete elements wait in the framer (the answers to one read were
            // capped): a read into no room would look like the end of the stream.
            return Ok(ReadOutcome::WouldBlock);
        }
        self.read_via(|source| framer.fill_with(|buf| source.read(buf)))
    }

    /// Reads what is available into `buf` (not empty), without blocking.
    pub fn read_into_slice(&mut self, buf: &mut [u8]) -> io::Result<ReadOutcome> {
        self.read_via(|source| source.read(buf))
    }

    /// One read: `fill` reads once from the plaintext source (the socket, or
    /// what rustls decrypted) into its buffer.
    fn read_via(&mut self, fill: impl FnOnce(&mut dyn Read) -> io::Result<usize>) -> io::Result<ReadOutcome> {
        let socket = self.socket.get_ref();
        let Some(tls) = self.tls.as_mut() else {
            return match fill(&mut &*socket) {
                Ok(0) => Ok(ReadOutcome::Eof),
                Ok(n) => Ok(ReadOutcome::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(ReadOutcome::WouldBlock),
                Err(e) => Err(e),
            };
        };
        if self.plaintext_left == 0 {
            match tls.read_tls(&mut &*socket) {
                Ok(0) => return Ok(ReadOutcome::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::WouldBlock),
                Err(e) => return Err(e),
            }
            let state = tls.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            self.plaintext_left = state.plaintext_bytes_to_read();
            if state.peer_has_closed() && self.plaintext_left == 0 {
                return Ok(ReadOutcome::Eof);
            }
            if self.plaintext_left == 0 {
                // Handshake records only; the caller flushes our answer.
                return Ok(ReadOutcome::Data(0));
            }
        }
        match fill(&mut tls.reader()) {
            Ok(0) => Ok(ReadOutcome::Eof),
            Ok(n) => {
                self.plaintext_left = self.plaintext_left.saturating_sub(n);
                Ok(ReadOutcome::Data(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.plaintext_left = 0;
                Ok(ReadOutcome::Data(0))
            }
            Err(e) => Err(e),
        }
    }

    /// Writes `data` (through TLS when active) and any pending TLS records; fails
    /// if the peer accepts nothing for `timeout`. What the socket takes at once is
    /// written without suspending; only a full socket waits, in a boxed future, so
    /// every connection task stays small while it idles (the wait is rare; the
    /// task's size is paid by every idle session).
    pub async fn write_all(&mut self, data: &[u8], timeout: Duration) -> io::Result<()> {
        let rest = match self.write_now(data)? {
            None => return Ok(()),
            Some(rest) => rest,
        };
        Box::pin(self.write_waiting(rest, timeout)).await
    }

    /// Writes without waiting; `None` when everything (and every pending TLS
    /// record) went out, else the part of `data` not yet taken.
    fn write_now<'d>(&mut self, data: &'d [u8]) -> io::Result<Option<&'d [u8]>> {
        let socket = self.socket.get_ref();
        let mut rest = data;
        let Some(tls) = self.tls.as_mut() else {
            while !rest.is_empty() {
                match (&*socket).write(rest) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Some(rest)),
                    Err(e) => return Err(e),
                }
            }
            return Ok(None);
        };
        loop {
            while tls.wants_write() {
                match tls.write_tls(&mut &*socket) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Some(rest)),
                    Err(e) => return Err(e),
                }
            }
            if rest.is_empty() {
                return Ok(None);
            }
            let n = tls.writer().write(rest)?;
            if n == 0 && !tls.wants_write() {
                // rustls takes no more plaintext (its buffer before the handshake
                // ends is full) and has nothing to send: waiting for the socket would
                // spin on the one thread (REVIEW S21). The caller closes instead.
                return Err(io::Error::new(io::ErrorKind::WriteZero, "TLS accepts no more data before its handshake"));
            }
            rest = &rest[n..];
        }
    }

    /// The slow path of [`Transport::write_all`]: the socket is full; wait until it
    /// is writable (at most `timeout` each time) and write what it takes.
    async fn write_waiting(&mut self, mut rest: &[u8], timeout: Duration) -> io::Result<()> {
        loop {
            let writable = futures_lite::future::or(async { Some(self.socket.writable().await) }, async {
                Timer::after(timeout).await;
                None
            })
            .await;
            match writable {
                None => return Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
                Some(result) => result?,
            }
            match self.write_now(rest)? {
                None => return Ok(()),
                Some(left) => rest = left,
            }
        }
    }

    /// Channel-binding data for SCRAM-*-PLUS once the handshake is done:
    /// `tls-exporter` (RFC 9266, TLS 1.3 only) and `tls-server-end-point` (RFC 5929).
    pub fn channel_bindings(&self, end_entity_cert: &[u8]) -> ChannelBindings {
        let Some(tls) = self.tls.as_ref().filter(|t| !t.is_handshaking()) else {
            return ChannelBindings::default();
        };
        let tls_exporter = (tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3))
            .then(|| tls.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None).ok())
            .flatten()
            .map(|k| k.to_vec());
        // RFC 5929 §4.1: the hash of the certificate's signature algorithm (S14).
        let algorithm = match crate::tls::der::end_point_hash(end_entity_cert) {
            crate::tls::der::EndPointHash::Sha256 => &ring::digest::SHA256,
            crate::tls::der::EndPointHash::Sha384 => &ring::digest::SHA384,
            crate::tls::der::EndPointHash::Sha512 => &ring::digest::SHA512,
        };
        let tls_server_end_point = Some(ring::digest::digest(algorithm, end_entity_cert).as_ref().to_vec());
        ChannelBindings { tls_exporter, tls_server_end_point }
    }

    /// Ends the connection at once: what the socket takes of `data` now (and a TLS
    /// close_notify), then the socket is dropped, with no wait for the peer. For a
    /// connection evicted from the pool, which must not linger (it is likely one of
    /// a flood).
    pub fn abandon(mut self, data: &[u8]) {
        let _ = self.write_now(data);
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
            let _ = self.write_now(&[]);
        }
        let _ = self.socket.get_ref().shutdown(std::net::Shutdown::Both);
    }

    /// Ends the connection: TLS close_notify, then our side of TCP, then a bounded
    /// wait for the peer (see [`super::close_gracefully`]). Boxed: a connection
    /// closes once, and its task should not carry this future's size while idle.
    pub async fn close(self, timeout: Duration) {
        Box::pin(self.close_inner(timeout)).await
    }

    async fn close_inner(mut self, timeout: Duration) {
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
            let _ = self.write_all(&[], timeout).await;
        }
        super::close_gracefully(self.socket, super::CLOSE_LINGER).await;
    }
}
