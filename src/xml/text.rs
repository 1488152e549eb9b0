//! Character data: validation of references (RFC 6120 §11.1 allows only the five
//! predefined entities and character references), decoding, and escaping.

use super::error::XmlError;
use std::borrow::Cow;

/// A reference (`&…;`) whose body is this long or longer is rejected as not
/// well-formed: it keeps the rescanning of a pending reference bounded, and the
/// framer applies the same bound to text it sees in pieces.
pub const MAX_REFERENCE: usize = 256;

/// XML 1.0 §2.2 `Char`.
pub fn is_xml_char(c: u32) -> bool {
    matches!(c, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// Checks that `s` holds only XML characters (XML 1.0 §2.2): no C0 controls other
/// than tab, LF and CR, and no U+FFFE / U+FFFF. Surrogates cannot occur in UTF-8.
pub fn check_chars(s: &str) -> Result<(), XmlError> {
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r' {
            return Err(XmlError::not_well_formed("control character in the stream"));
        }
        if b == 0xEF && matches!(s.as_bytes().get(i + 1..i + 3), Some([0xBF, 0xBE | 0xBF])) {
            return Err(XmlError::not_well_formed("U+FFFE or U+FFFF in the stream"));
        }
    }
    Ok(())
}

/// Decodes the reference starting just after `&` in `s`; returns the character and
/// the length of the reference body including the `;`.
fn parse_reference(s: &str) -> Result<(char, usize), XmlError> {
    let end = s.find(';').ok_or(XmlError::not_well_formed("'&' without a reference"))?;
    let name = &s[..end];
    let c = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => {
            if let Some(num) = name.strip_prefix('#') {
                let (digits, radix) = match num.strip_prefix('x') {
                    Some(hex) => (hex, 16),
                    None => (num, 10),
                };
                let malformed = XmlError::not_well_formed("malformed character reference");
                if digits.is_empty() || !digits.bytes().all(|b| (b as char).is_digit(radix)) {
                    return Err(malformed);
                }
                let significant = digits.trim_start_matches('0');
                // Eight digits exceed U+10FFFF in either radix: no overflow below.
                if significant.len() > 8 {
                    return Err(XmlError::not_well_formed("character reference to a character XML forbids"));
                }
                let code = if significant.is_empty() {
                    0
                } else {
                    u32::from_str_radix(significant, radix).map_err(|_| malformed.clone())?
                };
                if !is_xml_char(code) {
                    return Err(XmlError::not_well_formed("character reference to a character XML forbids"));
                }
                char::from_u32(code).ok_or(malformed)?
            } else if is_name(name) {
                return Err(XmlError::restricted("entity reference other than the predefined five"));
            } else {
                return Err(XmlError::not_well_formed("malformed entity reference"));
            }
        }
    };
    Ok((c, end + 1))
}

/// A loose check of the XML `Name` production, enough to tell an undeclared entity
/// (restricted) from garbage after `&` (not well-formed).
fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_alphabetic() || c == '_' || c == ':' => {}
        _ => return false,
    }
    chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.' | '\u{B7}'))
}

/// Validates every `&` reference in raw character data or an attribute value.
pub fn check_references(raw: &str) -> Result<(), XmlError> {
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        let (_, len) = parse_reference(&rest[i + 1..])?;
        rest = &rest[i + 1 + len..];
    }
    Ok(())
}

/// Validates raw character data in one pass, reporting the problem at the earliest
/// byte: invalid UTF-8 (`unsupported-encoding`), a character XML forbids, `]]>`, or a
/// bad reference. One pass keeps the reported error independent of how the data was
/// split into pieces.
pub fn validate_text(bytes: &[u8]) -> Result<(), XmlError> {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            match b {
                b'&' => {
                    let window = &bytes[i + 1..bytes.len().min(i + 1 + MAX_REFERENCE)];
                    let body_end = match window.iter().position(|&c| c == b';') {
                        Some(p) => i + 1 + p + 1,
                        None if window.len() == MAX_REFERENCE => {
                            return Err(XmlError::not_well_formed("unterminated reference"))
                        }
                        None => return Err(XmlError::not_well_formed("'&' without a reference")),
                    };
                    let body = std::str::from_utf8(&bytes[i + 1..body_end])
                        .map_err(|_| XmlError::not_well_formed("malformed entity reference"))?;
                    parse_reference(body)?;
                    i = body_end;
                    continue;
                }
                b']' if bytes[i..].starts_with(b"]]>") => {
                    return Err(XmlError::not_well_formed("']]>' in character data"));
                }
                b'\t' | b'\n' | b'\r' => {}
                0..=0x1f => return Err(XmlError::not_well_formed("control character in the stream")),
                _ => {}
            }
            i += 1;
        } else {
            let width = match b {
                0xC2..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF4 => 4,
                _ => return Err(XmlError::encoding("invalid UTF-8")),
            };
            let ch = bytes
                .get(i..i + width)
                .and_then(|c| std::str::from_utf8(c).ok())
                .ok_or(XmlError::encoding("invalid UTF-8"))?;
            if matches!(ch, "\u{FFFE}" | "\u{FFFF}") {
                return Err(XmlError::not_well_formed("U+FFFE or U+FFFF in the stream"));
            }
            i += width;
        }
    }
    Ok(())
}

/// Decodes raw (already validated) character data: references, and line ends
/// normalised per XML 1.0 §2.11.
pub fn decode_text(raw: &str) -> Cow<'_, str> {
    decode(raw, false)
}

/// Decodes a raw (already validated) attribute value per XML 1.0 §3.3.3 (literal
/// tab/CR/LF become spaces; references are decoded after that).
pub fn decode_attr(raw: &str) -> Cow<'_, str> {
    decode(raw, true)
}

fn decode(raw: &str, attr: bool) -> Cow<'_, str> {
    if !raw.bytes().any(|b| b == b'&' || b == b'\r' || (attr && (b == b'\n' || b == b'\t'))) {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '&' => match parse_reference(&raw[i + 1..]) {
                Ok((d, len)) => {
                    out.push(d);
                    // Skip the reference body (ASCII only, so byte length = char count).
                    for _ in 0..len {
                        chars.next();
                    }
                }
                // Unreachable for validated input; keep the character rather than panic.
                Err(_) => out.push('&'),
            },
            '\r' => {
                if matches!(chars.peek(), Some((_, '\n'))) {
                    chars.next();
                }
                out.push(if attr { ' ' } else { '\n' });
            }
            '\n' | '\t' if attr => out.push(' '),
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Appends `s` escaped for character data.
pub fn escape_text(out: &mut Vec<u8>, s: &str) {
    escape(out, s, false)
}

/// Appends `s` escaped for an attribute value delimited by `'`.
pub fn escape_attr(out: &mut Vec<u8>, s: &str) {
    escape(out, s, true)
}

fn escape(out: &mut Vec<u8>, s: &str, attr: bool) {
    let mut last = 0;
    for (i, b) in s.bytes().enumerate() {
        let rep: &[u8] = match b {
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'&' => b"&amp;",
            b'\'' if attr => b"&apos;",
            b'"' if attr => b"&quot;",
            // Keep CR, and tab/LF inside attributes, through the receiver's normalisation.
            b'\r' => b"&#xD;",
            b'\n' if attr => b"&#xA;",
            b'\t' if attr => b"&#x9;",
            _ => continue,
        };
        out.extend_from_slice(&s.as_bytes()[last..i]);
        out.extend_from_slice(rep);
        last = i + 1;
    }
    out.extend_from_slice(&s.as_bytes()[last..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::error::XmlErrorKind;

    #[test]
    fn predefined_and_character_references_decode() {
        assert_eq!(decode_text("a&lt;b&gt;&amp;&apos;&quot;&#65;&#x42;&#x1F600;"), "a<b>&'\"AB😀");
        assert_eq!(decode_text("plain"), Cow::Borrowed("plain"));
        assert_eq!(decode_text("a\r\nb\rc"), "a\nb\nc");
        assert_eq!(decode_attr("a\tb\nc&#xA;"), "a b c\n");
    }

    #[test]
    fn other_entities_are_restricted_and_garbage_is_not_well_formed() {
        let kind = |s| check_references(s).unwrap_err().kind;
        assert_eq!(kind("&nbsp;"), XmlErrorKind::Restricted);
        assert_eq!(kind("&lol9;"), XmlErrorKind::Restricted);
        assert_eq!(kind("a & b"), XmlErrorKind::NotWellFormed);
        assert_eq!(kind("&#0;"), XmlErrorKind::NotWellFormed);
        assert_eq!(kind("&#x1;"), XmlErrorKind::NotWellFormed);
        assert_eq!(kind("&#xD800;"), XmlErrorKind::NotWellFormed);
        assert_eq!(kind("&#xFFFE;"), XmlErrorKind::NotWellFormed);
        assert_eq!(kind("&#x110000;"), XmlErrorKind::NotWellFormed);
        assert_eq!(kind("&#99999999999999999999;"), XmlErrorKind::NotWellFormed);
        assert_eq!(kind("&#xG;"), XmlErrorKind::NotWellFormed);
        assert_eq!(kind("&#;"), XmlErrorKind::NotWellFormed);
        assert!(check_references("&#x0000041; &#9;").is_ok());
    }

    #[test]
    fn escaping_round_trips() {
        let mut out = Vec::new();
        escape_attr(&mut out, "<a href='x'>&\"\r\n\t");
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, "&lt;a href=&apos;x&apos;&gt;&amp;&quot;&#xD;&#xA;&#x9;");
        assert_eq!(decode_attr(&s), "<a href='x'>&\"\r\n\t");
        let mut out = Vec::new();
        escape_text(&mut out, "]]> & <x>\r\n");
        assert_eq!(decode_text(std::str::from_utf8(&out).unwrap()), "]]> & <x>\r\n");
    }

    #[test]
    fn text_is_validated_in_one_pass_earliest_problem_first() {
        let kind = |b: &[u8]| validate_text(b).unwrap_err().kind;
        assert_eq!(kind(b"&foo;\x01"), XmlErrorKind::Restricted);
        assert_eq!(kind(b"\x01&foo;"), XmlErrorKind::NotWellFormed);
        assert_eq!(kind(b"\xff\x01"), XmlErrorKind::UnsupportedEncoding);
        assert_eq!(kind(b"\x01\xff"), XmlErrorKind::NotWellFormed);
        assert_eq!(kind("a]]>".as_bytes()), XmlErrorKind::NotWellFormed);
        assert_eq!(kind("\u{FFFF}".as_bytes()), XmlErrorKind::NotWellFormed);
        assert!(validate_text("été ☺ 😀 &amp;&#x41; ]] >".as_bytes()).is_ok());
    }

    #[test]
    fn forbidden_characters_are_rejected() {
        assert!(check_chars("ok\t\r\n ü 😀").is_ok());
        assert!(check_chars("bell\u{7}").is_err());
        assert!(check_chars("\u{FFFE}").is_err());
        assert!(check_chars("\u{FFFF}").is_err());
        assert!(check_chars("\u{FFFD}").is_ok());
    }
}
