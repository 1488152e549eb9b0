//! URL paths: percent-decoding (RFC 3986 §2.1), encoding a file name into one
//! path segment, and mapping a request path to a file under a served directory
//! so that no path leaves it (no `..`, no hidden names, no symlink out).

use std::path::{Path, PathBuf};

/// Decodes `%XX` escapes; `None` for a broken escape, a NUL or control byte, or
/// a result that is not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                i += 2;
                u8::from_str_radix(hex, 16).ok()?
            }
            b => b,
        };
        if b < 0x20 || b == 0x7f {
            return None;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `s` as one path segment: unreserved characters as they are, the rest escaped.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The value of `name` in a query string (`a=1&b=2`), not decoded.
pub fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| pair.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

/// The file under `root` a request path names, or `None` when it could leave
/// `root` or names something hidden: each decoded segment must be a plain name
/// (no `.`, `..`, leading dot, `/`, `\`), and the resolved file (symlinks
/// followed) must still be under the resolved root. A directory gives its
/// `index.html`.
pub fn resolve_under(root: &Path, request_path: &str) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    for raw in request_path.split('/').filter(|s| !s.is_empty()) {
        let segment = decode(raw)?;
        if segment.starts_with('.') || segment.contains(['/', '\\']) {
            return None;
        }
        path.push(segment);
    }
    let root = root.canonicalize().ok()?;
    let mut file = path.canonicalize().ok()?;
    if file.is_dir() {
        file = file.join("index.html").canonicalize().ok()?;
    }
    (file.starts_with(&root) && file.is_file()).then_some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_refuses_broken_escapes_and_control_bytes() {
        assert_eq!(decode("a%20b%C3%A9").as_deref(), Some("a bé"));
        assert_eq!(decode("a%2"), None);
        assert_eq!(decode("a%zz"), None);
        assert_eq!(decode("a%00"), None);
        assert_eq!(decode("a%0A"), None);
        assert_eq!(decode("%FF"), None);
    }

    #[test]
    fn a_file_name_round_trips_as_one_segment() {
        let name = "my photo/é?.png";
        let encoded = encode_segment(name);
        assert!(!encoded.contains(['/', '?', ' ']), "{encoded}");
        assert_eq!(decode(&encoded).as_deref(), Some(name));
        assert_eq!(query_value("a=1&t=xyz", "t"), Some("xyz"));
        assert_eq!(query_value("a=1", "t"), None);
    }

    #[test]
    fn no_request_path_leaves_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("www");
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::write(root.join("index.html"), "i").unwrap();
        std::fs::write(root.join("app/main.js"), "m").unwrap();
        std::fs::write(root.join(".secret"), "s").unwrap();
        std::fs::write(dir.path().join("outside"), "o").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), root.join("link")).unwrap();
        assert_eq!(resolve_under(&root, "/"), Some(root.join("index.html").canonicalize().unwrap()));
        assert!(resolve_under(&root, "/app/main.js").is_some());
        assert!(resolve_under(&root, "/app/%6Dain.js").is_some());
        for bad in
            ["/../outside", "/app/../../outside", "/%2e%2e/outside", "/..%2Foutside", "/.secret", "/link", "/nope"]
        {
            assert_eq!(resolve_under(&root, bad), None, "{bad}");
        }
    }
}
