//! A request head (RFC 9112 §2–§3), parsed by httparse from a bounded buffer into
//! the few fields the routes use. Everything else in the head is ignored.

/// The bounds on one head (config keys `http_max_head_bytes`, `http_max_headers`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_head_bytes: usize,
    pub max_headers: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Put,
    Options,
    /// Anything else: `405 Method Not Allowed`.
    Other,
}

/// What the routes need of a request.
#[derive(Debug, Default)]
pub struct Request {
    pub method: Option<Method>,
    /// The path of the target (origin form, before `?`), still percent-encoded.
    pub path: String,
    /// The query, without `?` (empty when none).
    pub query: String,
    pub content_length: Option<u64>,
    /// A `Transfer-Encoding` was sent (the routes take only a known length).
    pub transfer_encoding: bool,
    /// The connection ends after the response (`Connection: close`, HTTP/1.0).
    pub close: bool,
    pub range: Option<String>,
    pub origin: Option<String>,
    pub content_type: Option<String>,
    /// `Expect: 100-continue` (RFC 9110 §10.1.1).
    pub expect_continue: bool,
    /// `Upgrade: websocket` with `Connection: upgrade` (RFC 6455 §4.2.1).
    pub upgrade_websocket: bool,
    pub websocket_key: Option<String>,
    pub websocket_version: Option<String>,
    pub websocket_protocols: Option<String>,
}

impl Request {
    pub fn method(&self) -> Method {
        self.method.unwrap_or(Method::Other)
    }
}

/// Why a head is refused; each maps to its status in [`HeadError::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Longer than `http_max_head_bytes`.
    TooLarge,
    /// More than `http_max_headers` header fields.
    TooManyHeaders,
    /// Not HTTP/1.x.
    Version,
    Malformed(&'static str),
}

impl HeadError {
    pub fn status(self) -> u16 {
        match self {
            HeadError::TooLarge | HeadError::TooManyHeaders => 431,
            HeadError::Version => 505,
            HeadError::Malformed(_) => 400,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            HeadError::TooLarge => "the request head is too large",
            HeadError::TooManyHeaders => "the request has too many header fields",
            HeadError::Version => "only HTTP/1.1 is served",
            HeadError::Malformed(why) => why,
        }
    }
}

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete (and
/// within the bounds), else the request and the bytes its head took.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, HeadError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut parsed = httparse::Request::new(&mut headers);
    let status = parsed.parse(buf).map_err(|e| match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        httparse::Error::Version => HeadError::Version,
        httparse::Error::HeaderName | httparse::Error::HeaderValue => {
            HeadError::Malformed("a header field is malformed")
        }
        httparse::Error::Token | httparse::Error::Status => HeadError::Malformed("the request line is malformed"),
        httparse::Error::NewLine => HeadError::Malformed("a line ends wrongly"),
    })?;
    let consumed = match status {
        httparse::Status::Partial if buf.len() >= limits.max_head_bytes => return Err(HeadError::TooLarge),
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(n) if n > limits.max_head_bytes => return Err(HeadError::TooLarge),
        httparse::Status::Complete(n) => n,
    };
    let version = parsed.version.unwrap_or(1);
    let target = parsed.path.unwrap_or("");
    if !target.starts_with('/') {
        // Origin form only (RFC 9112 §3.2.1): no proxy requests, no `*`.
        return Err(HeadError::Malformed("the request target must be a path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request {
        method: Some(match parsed.method.unwrap_or("") {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "PUT" => Method::Put,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }),
        path: path.to_string(),
        query: query.to_string(),
        close: version == 0,
        ..Request::default()
    };
    let mut connection_upgrade = false;
    let mut upgrade = false;
    for h in parsed.headers.iter() {
        let Ok(value) = std::str::from_utf8(h.value) else {
            return Err(HeadError::Malformed("a header value is not UTF-8"));
        };
        let value = value.trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            // RFC 9112 §6.3: a list or a second, different value is an error.
            let n: u64 = value.parse().map_err(|_| HeadError::Malformed("Content-Length is not a number"))?;
            if request.content_length.is_some_and(|m| m != n) {
                return Err(HeadError::Malformed("two Content-Length values"));
            }
            request.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            request.transfer_encoding = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    request.close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && version == 0 {
                    request.close = false;
                } else if token.eq_ignore_ascii_case("upgrade") {
                    connection_upgrade = true;
                }
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = value.split(',').any(|t| t.trim().eq_ignore_ascii_case("websocket"));
        } else if name.eq_ignore_ascii_case("range") {
            request.range = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("origin") {
            request.origin = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-type") {
            request.content_type = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("expect") {
            request.expect_continue = value.eq_ignore_ascii_case("100-continue");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            request.websocket_key = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            request.websocket_version = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            let all = match request.websocket_protocols.take() {
                Some(before) => format!("{before}, {value}"),
                None => value.to_string(),
            };
            request.websocket_protocols = Some(all);
        }
    }
    request.upgrade_websocket = upgrade && connection_upgrade;
    Ok(Some((request, consumed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_head_bytes: 256, max_headers: 4 };

    #[test]
    fn a_head_gives_its_fields_and_length() {
        let head =
            b"PUT /upload/a/b.png?t=x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Type: image/png\r\n\r\nhello";
        let (r, n) = parse_head(head, &LIMITS).unwrap().unwrap();
        assert_eq!(n, head.len() - 5);
        assert_eq!(r.method(), Method::Put);
        assert_eq!((r.path.as_str(), r.query.as_str()), ("/upload/a/b.png", "t=x"));
        assert_eq!(r.content_length, Some(5));
        assert_eq!(r.content_type.as_deref(), Some("image/png"));
        assert!(!r.close);
    }

    #[test]
    fn partial_heads_wait_and_bounds_and_errors_are_named() {
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost:", &LIMITS).unwrap().is_none());
        assert_eq!(parse_head(&[b'a'; 300], &LIMITS).unwrap_err(), HeadError::TooLarge);
        assert_eq!(parse_head(b"G@T / HTTP/1.1\r\n\r\n", &LIMITS).unwrap_err().status(), 400);
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(300));
        assert_eq!(parse_head(long.as_bytes(), &LIMITS).unwrap_err(), HeadError::TooLarge);
        let many = "GET / HTTP/1.1\r\na: 1\r\nb: 1\r\nc: 1\r\nd: 1\r\ne: 1\r\n\r\n";
        assert_eq!(parse_head(many.as_bytes(), &LIMITS).unwrap_err(), HeadError::TooManyHeaders);
        let two = "PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(parse_head(two.as_bytes(), &LIMITS).unwrap_err().status(), 400);
        assert_eq!(parse_head(b"GET http://x/ HTTP/1.1\r\n\r\n", &LIMITS).unwrap_err().status(), 400);
        let (r, _) = parse_head(b"GET / HTTP/1.0\r\n\r\n", &LIMITS).unwrap().unwrap();
        assert!(r.close, "HTTP/1.0 closes unless keep-alive");
    }

    #[test]
    fn a_websocket_upgrade_needs_both_headers() {
        let head = "GET /xmpp-websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                    Sec-WebSocket-Key: k\r\n\r\n";
        let limits = Limits { max_head_bytes: 1024, max_headers: 8 };
        let (r, _) = parse_head(head.as_bytes(), &limits).unwrap().unwrap();
        assert!(r.upgrade_websocket);
        let (r, _) = parse_head(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", &limits).unwrap().unwrap();
        assert!(!r.upgrade_websocket);
    }
}
