//! Writing XML: a tiny builder for what the server says itself, and re-emission of
//! a received element from its view. Re-emission never copies input bytes: names,
//! namespaces and text are written anew (normalised prefixes, fresh escaping), which
//! closes the parser-differential "stanza smuggling" class of bugs.

use super::element::{Content, Element};
use super::text::{escape_attr, escape_text};
use super::NS_XML;

/// Appends markup to a byte buffer. The caller keeps tags balanced.
pub struct XmlWriter<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> XmlWriter<'o> {
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        XmlWriter { out }
    }

    /// `<name` (finish with [`XmlWriter::open`] or [`XmlWriter::close_empty`]).
    pub fn start(&mut self, name: &str) -> &mut Self {
        self.out.push(b'<');
        self.out.extend_from_slice(name.as_bytes());
        self
    }

    /// ` name='value'`, escaped.
    pub fn attr(&mut self, name: &str, value: &str) -> &mut Self {
        self.out.push(b' ');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"='");
        escape_attr(self.out, value);
        self.out.push(b'\'');
        self
    }

    /// ` name='value'` when a value is given.
    pub fn attr_opt(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.attr(name, v);
        }
        self
    }

    /// `>`
    pub fn open(&mut self) -> &mut Self {
        self.out.push(b'>');
        self
    }

    /// `/>`
    pub fn close_empty(&mut self) -> &mut Self {
        self.out.extend_from_slice(b"/>");
        self
    }

    /// Character data, escaped.
    pub fn text(&mut self, text: &str) -> &mut Self {
        escape_text(self.out, text);
        self
    }

    /// `</name>`
    pub fn end(&mut self, name: &str) -> &mut Self {
        self.out.extend_from_slice(b"</");
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'>');
        self
    }

    /// `<name xmlns='ns'/>`
    pub fn empty_ns(&mut self, name: &str, ns: &str) -> &mut Self {
        self.start(name).attr("xmlns", ns).close_empty()
    }
}

/// An attribute change applied to the top element when re-emitting it.
#[derive(Clone, Copy, Debug)]
pub enum Override<'a> {
    /// Set (replace or add) an attribute in no namespace.
    Set(&'a str, &'a str),
    /// Remove an attribute in no namespace.
    Remove(&'a str),
}

impl Override<'_> {
    fn name(&self) -> &str {
        match self {
            Override::Set(n, _) | Override::Remove(n) => n,
        }
    }
}

/// Writes `el`'s children anew under a parent in `parent_ns`: those in `el`'s own
/// namespace move to `parent_ns` (a `jabber:server` stanza's `<status/>` written
/// for a client), those in a `skip` namespace are left out, and the output stops
/// before it would pass `max` bytes.
pub fn write_children(out: &mut Vec<u8>, el: &Element<'_>, parent_ns: &str, skip: &[&str], max: usize) {
    let start = out.len();
    for child in el.children().filter(|c| !skip.contains(&c.ns())) {
        let before = out.len();
        let content = (child.ns() == el.ns()).then_some(parent_ns);
        write_element(out, &child, parent_ns, content, &[]);
        if out.len() - start > max {
            out.truncate(before);
            break;
        }
    }
}

/// Writes `el` anew into `out`. `parent_ns` is the default namespace in force where
/// it is written (the stream's content namespace for a stanza); `content_ns`, when
/// given, replaces the top element's namespace (e.g. `jabber:client` stanzas written
/// to a `jabber:server` stream) together with its descendants in the same namespace.
pub fn write_element(
    out: &mut Vec<u8>,
    el: &Element<'_>,
    parent_ns: &str,
    content_ns: Option<&str>,
    overrides: &[Override<'_>],
) {
    let from_ns = el.ns();
    emit(out, el, parent_ns, content_ns.map(|to| (from_ns, to)), overrides);
}

fn emit(out: &mut Vec<u8>, el: &Element<'_>, parent_ns: &str, remap: Option<(&str, &str)>, overrides: &[Override<'_>]) {
    let ns = match remap {
        Some((from, to)) if el.ns() == from => to,
        _ => el.ns(),
    };
    start_tag(out, el, ns, parent_ns, overrides);
    let mut children = el.nodes().filter(|c| !matches!(c, Content::Text(t) if t.is_empty())).peekable();
    if children.peek().is_none() {
        XmlWriter::new(out).close_empty();
        return;
    }
    XmlWriter::new(out).open();
    for child in children {
        match child {
            Content::Text(t) => escape_text(out, &t),
            Content::Element(c) => emit(out, &c, ns, remap, &[]),
        }
    }
    XmlWriter::new(out).end(el.name());
}

/// `el`'s start tag, up to (not including) its closing `>` or `/>`.
fn start_tag(out: &mut Vec<u8>, el: &Element<'_>, ns: &str, parent_ns: &str, overrides: &[Override<'_>]) {
    let mut w = XmlWriter::new(out);
    w.start(el.name());
    if ns != parent_ns {
        w.attr("xmlns", ns);
    }
    let mut prefixes = 0usize;
    for a in el.attrs() {
        if a.ns.is_empty() {
            if overrides.iter().any(|o| o.name() == a.name) {
                continue;
            }
            w.attr(a.name, &a.value());
        } else if a.ns == NS_XML {
            w.attr(&format!("xml:{}", a.name), &a.value());
        } else {
            // Each namespaced attribute gets a fresh prefix declared right here.
            let prefix = format!("a{prefixes}");
            prefixes += 1;
            w.attr(&format!("xmlns:{prefix}"), a.ns);
            w.attr(&format!("{prefix}:{}", a.name), &a.value());
        }
    }
    for o in overrides {
        if let Override::Set(name, value) = o {
            w.attr(name, value);
        }
    }
}

/// Writes `el` as [`write_element`] does (its namespace kept), without its child
/// elements in namespace `drop_ns` and with `extra` (written children) added
/// last: a stanza with one extension replaced.
pub fn write_element_amended(out: &mut Vec<u8>, el: &Element<'_>, parent_ns: &str, drop_ns: &str, extra: &[u8]) {
    start_tag(out, el, el.ns(), parent_ns, &[]);
    XmlWriter::new(out).open();
    for child in el.nodes() {
        match child {
            Content::Text(t) => escape_text(out, &t),
            Content::Element(c) if c.ns() == drop_ns => {}
            Content::Element(c) => emit(out, &c, el.ns(), None, &[]),
        }
    }
    out.extend_from_slice(extra);
    XmlWriter::new(out).end(el.name());
}
