//! Response heads (RFC 9112 §4, §6) and the short plain-text error answers.

/// The reason phrase of each status the listener sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A response head being written.
pub struct Head {
    bytes: Vec<u8>,
}

impl Head {
    pub fn new(status: u16) -> Head {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
        // Nothing the hub serves may be sniffed into another type.
        bytes.extend_from_slice(b"X-Content-Type-Options: nosniff\r\n");
        Head { bytes }
    }

    /// The same head with another status (a range makes a 200 a 206).
    pub fn into_status(mut self, status: u16) -> Head {
        let line_end = self.bytes.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
        let line = format!("HTTP/1.1 {status} {}", reason(status));
        self.bytes.splice(..line_end, line.into_bytes());
        self
    }

    /// A header field; `value` must not hold CR or LF (the callers' values are
    /// built here or checked, never copied from a request unchecked).
    pub fn header(mut self, name: &str, value: &str) -> Head {
        debug_assert!(!value.contains(['\r', '\n']));
        let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.extend_from_slice(b": ");
        self.bytes.extend_from_slice(value.as_bytes());
        self.bytes.extend_from_slice(b"\r\n");
        self
    }

    /// Ends the head: `Content-Length` (none for a 101 or 1xx), and
    /// `Connection: close` when the connection ends after this response.
    pub fn finish(self, content_length: Option<u64>, close: bool) -> Vec<u8> {
        let mut head = self;
        if let Some(n) = content_length {
            head = head.header("Content-Length", &n.to_string());
        }
        if close {
            head = head.header("Connection", "close");
        }
        let mut bytes = head.bytes;
        bytes.extend_from_slice(b"\r\n");
        bytes
    }
}

/// A whole response with a plain-text body; HEAD requests get the head only.
pub fn text(status: u16, body: &str, close: bool, head_only: bool) -> Vec<u8> {
    let mut bytes = Head::new(status)
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("Cache-Control", "no-store")
        .finish(Some(body.len() as u64 + 1), close);
    if !head_only {
        bytes.extend_from_slice(body.as_bytes());
        bytes.push(b'\n');
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_answer_has_its_length_and_close() {
        let r = String::from_utf8(text(404, "no such file", true, false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
        assert!(r.contains("Content-Length: 13\r\n") && r.contains("Connection: close\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nno such file\n"), "{r}");
        let h = String::from_utf8(text(404, "no such file", false, true)).unwrap();
        assert!(h.ends_with("\r\n\r\n") && !h.contains("Connection"), "{h}");
        let p = String::from_utf8(Head::new(200).header("A", "b").into_status(206).finish(None, false)).unwrap();
        assert_eq!(p, "HTTP/1.1 206 Partial Content\r\nX-Content-Type-Options: nosniff\r\nA: b\r\n\r\n");
    }
}
