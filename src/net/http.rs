//! One HTTP/1.1 connection on the HTTPS listener (or the plain one behind a
//! proxy): request heads within `http_max_head_bytes` and `http_header_timeout`,
//! keep-alive up to `http_max_requests_per_connection` requests and
//! `http_idle_timeout` between them, and the routes:
//!
//! - `/`: the hub's page; `/ca.pem`, `/ca.crt`, `/ca.mobileconfig`: its local CA;
//! - `/.well-known/host-meta[.json]`: XEP-0156 discovery;
//! - `/upload/<id>/<name>`: XEP-0363 PUT (streamed to disk, constant memory) and
//!   GET/HEAD (streamed from disk, with a byte range);
//! - anything else: a file under `http_files_dir`, if set.
//!
//! Every refusal is its status with a short text, then a close. A connection
//! counts in the pool as unauthenticated until its first head is complete, then
//! in the HTTP share (`http_max_connections`): slow heads cannot hold transfers'
//! slots, and a transfer is never evicted for a newcomer.

use super::transport::{ReadOutcome, Transport};
use super::Idle;
use crate::http::range::{self, Range};
use crate::http::request::{parse_head, Method, Request};
use crate::http::response::{text, Head};
use crate::server::Server;
use crate::services::upload::{Grant, Upload};
use crate::session_pool::{Kind, SessionLease};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::io::{self, Seek};
use std::rc::Rc;
use std::time::Instant;

/// Bytes read from the socket or a file at a time (and the buffer a transfer
/// holds: a 100 MiB file goes through this much memory of ours).
const CHUNK: usize = 16 * 1024;

/// The WebSocket endpoint's path (RFC 7395 §3.1; XEP-0156 names it).
pub const WEBSOCKET_PATH: &str = "/xmpp-websocket";

/// What a route leaves of the connection.
enum Next {
    /// The next request may follow.
    KeepAlive,
    Close,
}

/// Why a wait for input ended without data.
enum Stop {
    /// The peer closed, or the connection failed.
    Gone,
    /// The deadline passed.
    TimedOut,
    /// Shutdown, or eviction from the pool.
    Ended,
}

/// Serves one connection until it closes. The HTTP exchange and the WebSocket
/// session that may follow are each a heap future of their own: an XMPP session
/// upgraded from this connection holds none of the HTTP side's state.
pub async fn serve(server: Rc<Server>, transport: Transport, lease: SessionLease) {
    if let Some((transport, already)) = Box::pin(serve_http(&server, transport, &lease)).await {
        Box::pin(super::c2s::serve_websocket(server, transport, lease, already)).await;
    }
}

/// The HTTP requests of one connection; the transport and the bytes after the
/// request head when the connection is upgraded to XMPP over WebSocket.
async fn serve_http(
    server: &Rc<Server>,
    mut transport: Transport,
    lease: &SessionLease,
) -> Option<(Transport, Vec<u8>)> {
    let peer = lease.peer().map(|p| p.to_string()).unwrap_or_default();
    let mut input: Vec<u8> = Vec::new();
    let mut charge = server.buffers.charge();
    let config = &server.config.http;
    let mut served = 0usize;
    loop {
        let timeout = if served == 0 { config.header_timeout } else { config.idle_timeout };
        let deadline = Instant::now() + timeout;
        let request = loop {
            match parse_head(&input, &config.limits) {
                Ok(Some(parsed)) => break Ok(parsed),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            // Read into the buffer's tail: no chunk of its own is held across the wait.
            let room = config.limits.max_head_bytes.saturating_sub(input.len()).clamp(1, 4096);
            let at = input.len();
            input.resize(at + room, 0);
            let read = read_some(server, &mut transport, lease, &mut input[at..], deadline).await;
            input.truncate(at + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(_) => charge.set(input.capacity()),
                Err(Stop::TimedOut) if !input.is_empty() => {
                    let _ = transport
                        .write_all(&text(408, "the request head took too long", true, false), write_timeout(server))
                        .await;
                    return closed(transport, server).await;
                }
                Err(_) => return closed(transport, server).await,
            }
        };
        let (request, head_len) = match request {
            Ok(parsed) => parsed,
            Err(e) => {
                log::debug!("{peer}: HTTP request refused: {}", e.text());
                let _ = transport.write_all(&text(e.status(), e.text(), true, false), write_timeout(server)).await;
                return closed(transport, server).await;
            }
        };
        input.drain(..head_len);
        served += 1;
        if served == 1 {
            lease.progressed();
            // An upgrade to XMPP stays unauthenticated, as on the client ports, until
            // its stream authenticates: evictable, and out of the transfers' share.
            if request.path != WEBSOCKET_PATH && lease.promote(Kind::Http).is_err() {
                let answer = Head::new(503).header("Retry-After", "5").finish(Some(0), true);
                let _ = transport.write_all(&answer, write_timeout(server)).await;
                return closed(transport, server).await;
            }
        }
        if request.path == WEBSOCKET_PATH {
            let answer = match websocket_upgrade(server, &request) {
                Ok(head) => head,
                Err((status, why)) => {
                    let mut answer = text(status, why, true, false);
                    if status == 426 {
                        let at = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |p| p + 2);
                        answer.splice(at..at, b"Sec-WebSocket-Version: 13\r\n".iter().copied());
                    }
                    let _ = transport.write_all(&answer, write_timeout(server)).await;
                    return closed(transport, server).await;
                }
            };
            if transport.write_all(&answer, write_timeout(server)).await.is_err() {
                return None;
            }
            log::debug!("{peer}: XMPP over WebSocket");
            return Some((transport, input));
        }
        let close = request.close || served >= config.max_requests_per_connection || server.is_shutting_down();
        log::debug!("{peer}: HTTP {:?} {}", request.method(), request.path);
        let next = route(server, &mut transport, lease, &request, &mut input, close).await;
        charge.set(input.capacity());
        match next {
            Ok(Next::KeepAlive) if !close => {}
            Ok(_) => break,
            Err(e) => {
                log::debug!("{peer}: HTTP connection failed: {e}");
                break;
            }
        }
        if input.capacity() > CHUNK {
            input.shrink_to(CHUNK);
        }
    }
    closed(transport, server).await
}

/// A transfer's buffer, and its charge in the budget: this buffer and the
/// blocking pipe's (`CHUNK` each).
fn transfer_buffer(server: &Server) -> (crate::budget::Charge<'_>, Vec<u8>) {
    let mut charge = server.buffers.charge();
    charge.set(2 * CHUNK);
    (charge, vec![0u8; CHUNK])
}

/// Closes the connection (TLS close_notify included): nothing follows.
async fn closed(transport: Transport, server: &Server) -> Option<(Transport, Vec<u8>)> {
    transport.close(write_timeout(server)).await;
    None
}

/// RFC 6455 §4.2.2 and RFC 7395 §3.1: the `101` that accepts an upgrade to the
/// `xmpp` subprotocol, or the status that refuses it.
fn websocket_upgrade(server: &Server, request: &Request) -> Result<Vec<u8>, (u16, &'static str)> {
    if request.method() != Method::Get {
        return Err((405, "the WebSocket endpoint takes GET with an upgrade"));
    }
    if !request.upgrade_websocket {
        return Err((426, "this is the XMPP over WebSocket endpoint: upgrade to websocket"));
    }
    if request.websocket_version.as_deref() != Some("13") {
        return Err((426, "only WebSocket version 13 is served"));
    }
    let key = request.websocket_key.as_deref().unwrap_or("");
    let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key.trim());
    if decoded.map(|k| k.len()) != Ok(16) {
        return Err((400, "Sec-WebSocket-Key must be 16 bytes in base64"));
    }
    let offered = request.websocket_protocols.as_deref().unwrap_or("");
    if !offered.split(',').any(|p| p.trim() == "xmpp") {
        return Err((400, "the subprotocol must be xmpp (RFC 7395 section 3.1)"));
    }
    if let Some(origin) = request.origin.as_deref() {
        let origin = origin.trim_end_matches('/');
        let allowed = &server.config.http.websocket_origins;
        let ok = if allowed.is_empty() {
            origin == server.http_url || origin == format!("https://{}", server.domain)
        } else {
            allowed.iter().any(|a| a == "*" || a == origin)
        };
        if !ok {
            return Err((403, "this page's origin may not open XMPP sessions here (websocket_origins)"));
        }
    }
    Ok(Head::new(101)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Accept", &crate::http::websocket::accept_key(key))
        .header("Sec-WebSocket-Protocol", "xmpp")
        .finish(None, false))
}

fn write_timeout(server: &Server) -> std::time::Duration {
    server.config.write_timeout
}

/// Reads what arrives into `buf` (flushing TLS handshake records), waiting
/// until `deadline`, shutdown or eviction.
async fn read_some(
    server: &Server,
    transport: &mut Transport,
    lease: &SessionLease,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<usize, Stop> {
    let mut shutdown = server.shutdown.listen();
    loop {
        if server.is_shutting_down() || lease.evicted() {
            return Err(Stop::Ended);
        }
        match transport.read_into_slice(buf) {
            Ok(ReadOutcome::Data(0)) => {
                // TLS records only: our handshake answer goes out.
                if transport.write_all(&[], write_timeout(server)).await.is_err() {
                    return Err(Stop::Gone);
                }
                continue;
            }
            Ok(ReadOutcome::Data(n)) => return Ok(n),
            Ok(ReadOutcome::Eof) | Err(_) => return Err(Stop::Gone),
            Ok(ReadOutcome::WouldBlock) => {}
        }
        if transport.has_buffered_input() {
            continue;
        }
        match super::wait_idle(transport, true, &mut None, deadline, &mut shutdown, Some(lease)).await {
            Idle::Readable | Idle::Queue => {}
            Idle::Deadline => return Err(Stop::TimedOut),
            Idle::Shutdown | Idle::Evicted => return Err(Stop::Ended),
        }
    }
}

/// Answers one request.
async fn route(
    server: &Server,
    transport: &mut Transport,
    lease: &SessionLease,
    request: &Request,
    input: &mut Vec<u8>,
    close: bool,
) -> io::Result<Next> {
    let method = request.method();
    let head_only = method == Method::Head;
    let path = request.path.as_str();
    let timeout = write_timeout(server);
    // A body the route does not read cannot stay on a kept connection.
    let close =
        close || (request.content_length.unwrap_or(0) > 0 && method != Method::Put) || request.transfer_encoding;
    let reply = |status: u16, why: &str| text(status, why, true, head_only);
    if let Some(rest) = path.strip_prefix("/upload/") {
        let Some(upload) = server.upload.as_ref() else {
            transport.write_all(&reply(404, "file upload is off on this hub"), timeout).await?;
            return Ok(Next::Close);
        };
        return match method {
            Method::Put => put(server, transport, lease, upload, request, rest, input, close).await,
            Method::Get | Method::Head => get_upload(server, transport, upload, request, rest, close).await,
            Method::Options => {
                let answer = cors(Head::new(204))
                    .header("Access-Control-Allow-Methods", "GET, HEAD, PUT, OPTIONS")
                    .header("Access-Control-Allow-Headers", "Content-Type, Authorization")
                    .header("Access-Control-Max-Age", "86400")
                    .finish(Some(0), close);
                transport.write_all(&answer, timeout).await?;
                Ok(keep(close))
            }
            Method::Other => method_not_allowed(transport, timeout, "GET, HEAD, PUT, OPTIONS").await,
        };
    }
    if !matches!(method, Method::Get | Method::Head) {
        return method_not_allowed(transport, timeout, "GET, HEAD").await;
    }
    let websocket_url = format!("{}{WEBSOCKET_PATH}", server.http_url.replacen("http", "ws", 1));
    let page = match path {
        "/" => Some((
            "text/html; charset=utf-8",
            crate::http::pages::index_html(server.domain.as_str(), server.ca_fingerprint.as_deref(), &websocket_url)
                .into_bytes(),
        )),
        "/.well-known/host-meta" => {
            Some(("application/xrd+xml; charset=utf-8", crate::http::pages::host_meta_xml(&websocket_url).into_bytes()))
        }
        "/.well-known/host-meta.json" => {
            Some(("application/json", crate::http::pages::host_meta_json(&websocket_url).into_bytes()))
        }
        "/ca.pem" | "/ca.crt" | "/ca.mobileconfig" if server.ca_fingerprint.is_some() => {
            let format = match path {
                "/ca.pem" => crate::tls::export::Format::Pem,
                "/ca.crt" => crate::tls::export::Format::Der,
                _ => crate::tls::export::Format::MobileConfig,
            };
            let ca = crate::tls::local_ca::LocalCa::in_data_dir(&server.config.data_dir).ca_cert;
            let pem = blocking::unblock(move || std::fs::read(ca)).await?;
            let body = crate::tls::export::export(&pem, format, server.domain.as_str()).map_err(io::Error::other)?;
            let kind = match format {
                crate::tls::export::Format::Pem => "application/x-pem-file",
                crate::tls::export::Format::Der => "application/x-x509-ca-cert",
                crate::tls::export::Format::MobileConfig => "application/x-apple-aspen-config",
            };
            Some((kind, body))
        }
        _ => None,
    };
    if let Some((content_type, body)) = page {
        let answer = cors(Head::new(200))
            .header("Content-Type", content_type)
            .header("Cache-Control", "no-cache")
            .header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
            .finish(Some(body.len() as u64), close);
        transport.write_all(&answer, timeout).await?;
        if !head_only {
            transport.write_all(&body, timeout).await?;
        }
        return Ok(keep(close));
    }
    let Some(root) = server.config.http.files_dir.clone() else {
        transport.write_all(&reply(404, "not found"), timeout).await?;
        return Ok(Next::Close);
    };
    let wanted = path.to_string();
    let Some(file) = blocking::unblock(move || crate::http::path::resolve_under(&root, &wanted)).await else {
        transport.write_all(&reply(404, "not found"), timeout).await?;
        return Ok(Next::Close);
    };
    let content_type = static_type(&file);
    let headers = Head::new(200).header("Cache-Control", "no-cache");
    send_file(server, transport, file, headers, content_type, request, close).await
}

fn keep(close: bool) -> Next {
    if close {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

/// Any web client may read what the hub serves (uploads are shared by URL).
fn cors(head: Head) -> Head {
    head.header("Access-Control-Allow-Origin", "*")
}

async fn method_not_allowed(transport: &mut Transport, timeout: std::time::Duration, allow: &str) -> io::Result<Next> {
    let mut answer = text(405, "this method is not served here", true, false);
    // The Allow header goes in the head, before its blank line.
    let at = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |p| p + 2);
    answer.splice(at..at, format!("Allow: {allow}\r\n").into_bytes());
    transport.write_all(&answer, timeout).await?;
    Ok(Next::Close)
}

/// The id and decoded file name of `/upload/<id>/<name>`.
fn upload_target(rest: &str) -> Option<(String, String)> {
    let (id, name) = rest.split_once('/')?;
    let name = crate::http::path::decode(name)?;
    (crate::store::uploads::valid_id(id) && !name.is_empty() && !name.contains('/')).then(|| (id.to_string(), name))
}

/// XEP-0363 §4.1: the PUT of a slot, streamed into its `.part` file.
#[allow(clippy::too_many_arguments)]
async fn put(
    server: &Server,
    transport: &mut Transport,
    lease: &SessionLease,
    upload: &Upload,
    request: &Request,
    rest: &str,
    input: &mut Vec<u8>,
    close: bool,
) -> io::Result<Next> {
    let timeout = write_timeout(server);
    let refuse = |status: u16, why: &str| text(status, why, true, false);
    let grant = match upload_target(rest) {
        None => Err((404, "no such upload slot")),
        Some((id, name)) => {
            let token = crate::http::path::query_value(&request.query, "t").unwrap_or("");
            upload.verify(&id, &name, token, crate::clock::now_unix()).map_err(|r| (403, r.text()))
        }
    };
    let grant = match grant {
        Ok(g) => g,
        Err((status, why)) => {
            transport.write_all(&refuse(status, why), timeout).await?;
            return Ok(Next::Close);
        }
    };
    if request.transfer_encoding {
        transport.write_all(&refuse(411, "send the file with a Content-Length, not chunked"), timeout).await?;
        return Ok(Next::Close);
    }
    match request.content_length {
        None => {
            transport.write_all(&refuse(411, "the upload needs a Content-Length"), timeout).await?;
            return Ok(Next::Close);
        }
        Some(n) if n != grant.size => {
            let why = format!("Content-Length must be the slot's size, {} bytes", grant.size);
            let status = if n > grant.size { 413 } else { 400 };
            transport.write_all(&refuse(status, &why), timeout).await?;
            return Ok(Next::Close);
        }
        Some(_) => {}
    }
    let dir = upload.dir.clone();
    let id = grant.id.clone();
    if blocking::unblock(move || dir.taken(&id)).await {
        transport.write_all(&refuse(409, "this slot was used already: request a new one"), timeout).await?;
        return Ok(Next::Close);
    }
    if let Err(r) = upload.reserve(&grant.owner, grant.size) {
        transport.write_all(&refuse(413, r.text()), timeout).await?;
        return Ok(Next::Close);
    }
    let stored = receive(server, transport, lease, upload, &grant, request, input).await;
    match stored {
        Ok(()) => {
            log::info!("upload: {} stored {} bytes as {}", grant.owner, grant.size, grant.id);
            let answer = cors(Head::new(201)).finish(Some(0), close);
            transport.write_all(&answer, timeout).await?;
            Ok(keep(close))
        }
        Err((status, why)) => {
            upload.release(&grant.owner, grant.size);
            let dir = upload.dir.clone();
            let id = grant.id.clone();
            blocking::unblock(move || dir.abort(&id)).await;
            log::info!("upload of {} by {} failed: {why}", grant.id, grant.owner);
            if status != 0 {
                let _ = transport.write_all(&refuse(status, &why), timeout).await;
            }
            Ok(Next::Close)
        }
    }
}

/// Reads the body into the slot's `.part` file, syncs it and puts it in place.
/// `Err((status, why))`: status 0 when nothing can be answered (the peer left).
async fn receive(
    server: &Server,
    transport: &mut Transport,
    lease: &SessionLease,
    upload: &Upload,
    grant: &Grant,
    request: &Request,
    input: &mut Vec<u8>,
) -> Result<(), (u16, String)> {
    let dir = upload.dir.clone();
    let id = grant.id.clone();
    let file = match blocking::unblock(move || dir.begin(&id)).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err((409, "this slot was used already: request a new one".into()))
        }
        Err(e) => return Err((500, format!("the file cannot be created: {e}"))),
    };
    if request.expect_continue {
        let _ = transport.write_all(b"HTTP/1.1 100 Continue\r\n\r\n", write_timeout(server)).await;
    }
    let disk_error = |e: io::Error| (500, format!("the file cannot be written: {e}"));
    let mut file = blocking::Unblock::with_capacity(CHUNK, file);
    let mut left = grant.size;
    // What came with the head first (the body's start).
    let first = (input.len() as u64).min(left) as usize;
    file.write_all(&input[..first]).await.map_err(disk_error)?;
    input.drain(..first);
    left -= first as u64;
    let (_charge, mut buf) = transfer_buffer(server);
    while left > 0 {
        let want = (left as usize).min(CHUNK);
        let deadline = Instant::now() + server.config.http.body_timeout;
        let n = match read_some(server, transport, lease, &mut buf[..want], deadline).await {
            Ok(n) => n,
            Err(Stop::TimedOut) => return Err((408, "the upload stalled".into())),
            Err(Stop::Gone) => return Err((0, "the client went away".into())),
            Err(Stop::Ended) => return Err((503, "the hub is shutting down".into())),
        };
        file.write_all(&buf[..n]).await.map_err(disk_error)?;
        left -= n as u64;
    }
    file.flush().await.map_err(disk_error)?;
    let file = file.into_inner().await;
    let dir = upload.dir.clone();
    let id = grant.id.clone();
    let meta = crate::store::uploads::FileMeta {
        owner: grant.owner.clone(),
        size: grant.size,
        content_type: grant.content_type.clone(),
        filename: grant.filename.clone(),
        created: crate::clock::now_unix(),
    };
    blocking::unblock(move || {
        file.sync_all()?;
        dir.complete(&id, &meta)
    })
    .await
    .map_err(disk_error)
}

/// XEP-0363 §4.2: a stored file, with the type its slot named, and headers that
/// keep it from running script in the hub's origin.
async fn get_upload(
    server: &Server,
    transport: &mut Transport,
    upload: &Upload,
    request: &Request,
    rest: &str,
    close: bool,
) -> io::Result<Next> {
    let head_only = request.method() == Method::Head;
    let found = match upload_target(rest) {
        Some((id, _)) => {
            let dir = upload.dir.clone();
            blocking::unblock(move || dir.meta(&id).map(|m| (dir.data(&id), m))).await
        }
        None => None,
    };
    let Some((file, meta)) = found else {
        transport
            .write_all(&text(404, "no such file (it may have expired)", true, head_only), write_timeout(server))
            .await?;
        return Ok(Next::Close);
    };
    let inline = is_inline(&meta.content_type);
    let disposition = format!(
        "{}; filename*=UTF-8''{}",
        if inline { "inline" } else { "attachment" },
        crate::http::path::encode_segment(&meta.filename)
    );
    let headers = cors(Head::new(200))
        .header("Content-Disposition", &disposition)
        .header("Content-Security-Policy", "default-src 'none'; media-src 'self'; img-src 'self'; sandbox")
        .header("Cache-Control", "private, max-age=86400");
    send_file(server, transport, file, headers, meta.content_type.clone(), request, close).await
}

/// Types a browser may show in place: images, audio, video, plain text (no
/// HTML, no SVG: they could run script).
fn is_inline(content_type: &str) -> bool {
    matches!(content_type, "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/avif" | "text/plain")
        || content_type.starts_with("video/")
        || content_type.starts_with("audio/")
}

/// A static file's type, by its extension.
fn static_type(path: &std::path::Path) -> String {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "txt" => "text/plain; charset=utf-8",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" => "audio/ogg",
        _ => "application/octet-stream",
    }
    .to_string()
}

/// Streams a file (or the byte range asked for), `CHUNK` bytes at a time.
async fn send_file(
    server: &Server,
    transport: &mut Transport,
    path: std::path::PathBuf,
    headers: Head,
    content_type: String,
    request: &Request,
    close: bool,
) -> io::Result<Next> {
    let timeout = write_timeout(server);
    let head_only = request.method() == Method::Head;
    let opened = blocking::unblock(move || -> io::Result<(std::fs::File, u64)> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok((file, len))
    })
    .await;
    let Ok((mut file, len)) = opened else {
        transport.write_all(&text(404, "not found", true, head_only), timeout).await?;
        return Ok(Next::Close);
    };
    let (status_head, start, count) = match range::parse(request.range.as_deref(), len) {
        Range::Whole => (headers, 0, len),
        Range::Part { start, end } => (
            headers.into_status(206).header("Content-Range", &format!("bytes {start}-{end}/{len}")),
            start,
            end - start + 1,
        ),
        Range::Unsatisfiable => {
            let answer = Head::new(416).header("Content-Range", &format!("bytes */{len}")).finish(Some(0), close);
            transport.write_all(&answer, timeout).await?;
            return Ok(keep(close));
        }
    };
    let answer =
        status_head.header("Content-Type", &content_type).header("Accept-Ranges", "bytes").finish(Some(count), close);
    transport.write_all(&answer, timeout).await?;
    if head_only || count == 0 {
        return Ok(keep(close));
    }
    // lseek does not wait for the disk.
    file.seek(io::SeekFrom::Start(start))?;
    let mut file = blocking::Unblock::with_capacity(CHUNK, file);
    let (_charge, mut buf) = transfer_buffer(server);
    let mut left = count;
    while left > 0 {
        let want = (left as usize).min(CHUNK);
        let n = file.read(&mut buf[..want]).await?;
        if n == 0 {
            // The file shrank under us: the length already sent cannot be met.
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file is shorter than its length"));
        }
        transport.write_all(&buf[..n], timeout).await?;
        left -= n as u64;
    }
    Ok(keep(close))
}
