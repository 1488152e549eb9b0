//! The stream framer: bytes in (in chunks of any size), events out — first the
//! stream header, then one complete top-level element at a time, then the end of
//! the stream. Sans-I/O: the caller reads the socket; the framer never does.
//!
//! - Bounded: the input buffer never holds more than the stanza limit plus one
//!   read chunk; the element's parsed tables hold at most the stanza limit in
//!   entries (a run of `<a/>` costs ten times its bytes as nodes) and twice it in
//!   capacity; both are released while the connection is idle ([`Framer::trim`]).
//!   Until the stream layer lifts it, a smaller pre-authentication limit applies
//!   ([`Framer::limit_until_authenticated`]).
//! - Incremental: a cheap byte scanner finds where the next tag, text run or CDATA
//!   section ends (tracking quotes inside tags), and only complete pieces are
//!   tokenized by `xmlparser`, so a byte-at-a-time sender costs O(n), not O(n²).
//! - Zero-copy: a completed element is delivered as a view of spans into the input
//!   buffer ([`Element`]); the bytes are dropped when the caller asks for the next event.
//! - RFC 6120 §11: DTDs, comments, processing instructions and undeclared entity
//!   references are restricted-xml; only UTF-8 is accepted (§11.6); namespaces are
//!   resolved with proper scoping (Namespaces in XML 1.0).

use super::element::{AttrNode, Doc, Element, Node, NsRef, Span, StreamNs};
use super::error::{Limit, XmlError, XmlErrorKind};
use super::text::{check_chars, check_references, decode_attr, validate_text, MAX_REFERENCE};
use super::NS_XML;
use xmlparser::{ElementEnd, Token, Tokenizer};

/// How many bytes one read asks for.
pub const READ_CHUNK: usize = 4096;

/// Prefixes are stored as 16-bit offsets; no real prefix comes near this.
const MAX_PREFIX: usize = u16::MAX as usize;

/// The framer's limits (each one a config key, see [`Limit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_stanza_size: usize,
    pub max_depth: usize,
    pub max_attributes: usize,
    pub max_namespaces: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_stanza_size: 256 * 1024, max_depth: 64, max_attributes: 64, max_namespaces: 32 }
    }
}

/// What the framer yields.
#[derive(Debug)]
pub enum Event<'a> {
    /// The stream's opening tag, as an element with no children. Seen again inside
    /// the stream (a first-level element named like the root, never closed), it is
    /// a new header sent without a restart.
    Header(Element<'a>),
    /// One complete first-level child of the stream.
    Element(Element<'a>),
    /// The stream's closing tag.
    StreamEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing read yet: sniff the encoding.
    Start,
    /// Before the stream header; the XML declaration is allowed only first.
    Prolog { decl_allowed: bool },
    /// Inside the stream.
    Content,
    /// After the stream's closing tag.
    Ended,
}

/// Where the byte scanner stands (absolute offsets into `buf`).
#[derive(Clone, Copy, Debug)]
enum Scan {
    Idle,
    Tag { start: usize, quote: u8, at: usize },
    Decl { start: usize, at: usize },
    Cdata { start: usize, at: usize },
    Text { start: usize },
}

/// What a completed scan step produced.
enum Complete {
    Header { end: usize, empty: bool },
    Element { end: usize },
    StreamEnd { end: usize },
}

#[derive(Clone, Copy, Debug)]
struct Open {
    node: u32,
    ns_mark: u32,
}

#[derive(Clone, Copy, Debug)]
struct NsDecl {
    /// `None` for the default namespace.
    prefix: Option<Span>,
    uri: NsRef,
}

/// The incremental, bounded stream framer of one connection.
pub struct Framer {
    limits: Limits,
    buf: Vec<u8>,
    /// Bytes before this are done with and may be dropped.
    consumed: usize,
    /// Bytes before this have been scanned.
    pos: usize,
    /// Start of the element (or header) in progress; spans are relative to it.
    origin: usize,
    phase: Phase,
    scan: Scan,
    tree: Tree,
    stream_ns: Vec<StreamNs>,
    stream_name: Box<str>,
    /// End of the element handed out by the last call, dropped at the next call.
    delivered: Option<usize>,
    /// A self-closing stream header yields the header, then the end of the stream.
    pending_end: bool,
    failed: Option<XmlError>,
    /// The stanza limit before authentication, while it applies.
    preauth_limit: Option<usize>,
}

impl Framer {
    pub fn new(limits: Limits) -> Self {
        Framer {
            limits,
            buf: Vec::new(),
            consumed: 0,
            pos: 0,
            origin: 0,
            phase: Phase::Start,
            scan: Scan::Idle,
            tree: Tree::default(),
            stream_ns: Vec::new(),
            stream_name: Box::from(""),
            delivered: None,
            pending_end: false,
            failed: None,
            preauth_limit: None,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Applies a smaller stanza limit until [`Framer::authenticated`] (S1: an
    /// unauthenticated peer needs a few KiB for a header, features and SASL).
    pub fn limit_until_authenticated(&mut self, max: usize) {
        self.preauth_limit = Some(max.min(self.limits.max_stanza_size));
    }

    /// The peer authenticated: the configured stanza limit applies from now on.
    pub fn authenticated(&mut self) {
        self.preauth_limit = None;
    }

    /// The stanza limit in force now.
    pub fn stanza_limit(&self) -> usize {
        self.preauth_limit.unwrap_or(self.limits.max_stanza_size)
    }

    /// The error for an element over [`Framer::stanza_limit`].
    fn too_big(&self) -> XmlError {
        XmlError::limit(if self.preauth_limit.is_some() { Limit::PreAuthStanzaSize } else { Limit::StanzaSize })
    }

    /// Bytes of memory this framer holds now (input buffer and parsed tables), for
    /// the process-wide budget and the memory tests.
    pub fn memory(&self) -> usize {
        self.buf.capacity() + self.tree.bytes()
    }

    /// Reads into the buffer through `read` (given at most one chunk of free space,
    /// never past the buffer's limit); returns what `read` returned.
    pub fn fill_with<E>(&mut self, read: impl FnOnce(&mut [u8]) -> Result<usize, E>) -> Result<usize, E> {
        self.compact();
        let len = self.buf.len();
        let most = self.stanza_limit() + READ_CHUNK;
        let room = self.room();
        if len + room > self.buf.capacity() {
            // Grow by doubling, but never past the limit (plain `resize` could
            // double a buffer that is nearly at its limit).
            let target = (self.buf.capacity() * 2).max(len + room).min(most);
            self.buf.reserve_exact(target - len);
        }
        self.buf.resize(len + room, 0);
        let result = read(&mut self.buf[len..]);
        let got = match &result {
            Ok(n) => (*n).min(room),
            Err(_) => 0,
        };
        self.buf.truncate(len + got);
        result
    }

    /// Bytes the next [`Framer::fill_with`] may take (0: the buffer is at its limit
    /// until the caller takes events out).
    pub fn room(&self) -> usize {
        let held = self.buf.len() - self.consumed.max(self.delivered.unwrap_or(0)).min(self.buf.len());
        (self.stanza_limit() + READ_CHUNK).saturating_sub(held).min(READ_CHUNK)
    }

    /// Appends as much of `data` as fits; returns how many bytes were taken.
    pub fn feed(&mut self, data: &[u8]) -> usize {
        self.fill_with(|room| {
            let n = room.len().min(data.len());
            room[..n].copy_from_slice(&data[..n]);
            Ok::<usize, ()>(n)
        })
        .unwrap_or(0)
    }

    /// Unprocessed bytes are buffered (a partial element, or data not yet framed).
    pub fn has_buffered(&self) -> bool {
        self.buf.len() > self.consumed.max(self.delivered.unwrap_or(0))
    }

    /// Drops everything buffered but not yet framed (RFC 6120 §5.4.3.3: after
    /// `<proceed/>` nothing sent in plaintext may be processed inside TLS).
    pub fn discard_buffered(&mut self) {
        self.buf.clear();
        self.consumed = 0;
        self.pos = 0;
        self.origin = 0;
        self.delivered = None;
        self.scan = Scan::Idle;
    }

    /// Starts a new stream on the same connection (RFC 6120 §4.3.3 restart),
    /// keeping bytes already received after the element that caused the restart.
    pub fn restart(&mut self) {
        if let Some(end) = self.delivered.take() {
            self.consumed = end;
            self.pos = end;
        }
        self.phase = Phase::Start;
        self.scan = Scan::Idle;
        self.tree.clear();
        self.stream_ns.clear();
        self.stream_name = Box::from("");
        self.pending_end = false;
        self.failed = None;
    }

    /// Releases the memory of an idle connection: with no partial element buffered,
    /// the input buffer and the tree tables go back to the allocator.
    pub fn trim(&mut self) {
        if let Some(end) = self.delivered.take() {
            self.consumed = end;
            self.clear_tree();
        }
        self.compact();
        if self.buf.is_empty() {
            self.buf = Vec::new();
        } else {
            // A partial element waits (a slow sender): keep its bytes, not the chunk.
            self.buf.shrink_to_fit();
        }
        if self.tree.open.is_empty() {
            self.tree = Tree::default();
        } else {
            self.tree.shrink();
        }
    }

    /// The next event, `Ok(None)` when more input is needed. After an error the
    /// framer stays failed: the stream must be closed.
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>, XmlError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if let Some(end) = self.delivered.take() {
            self.consumed = end;
            self.clear_tree();
        }
        if self.pending_end {
            self.pending_end = false;
            self.phase = Phase::Ended;
            return Ok(Some(Event::StreamEnd));
        }
        let complete = match self.scan() {
            Ok(c) => c,
            Err(mut e) => {
                if e.kind == XmlErrorKind::LimitExceeded(Limit::Tree) && self.preauth_limit.is_some() {
                    // Before authentication the one limit to name is the small one.
                    e = self.too_big();
                }
                self.failed = Some(e.clone());
                return Err(e);
            }
        };
        match complete {
            None => Ok(None),
            Some(Complete::StreamEnd { end }) => {
                self.consumed = end;
                self.phase = Phase::Ended;
                Ok(Some(Event::StreamEnd))
            }
            Some(Complete::Header { end, empty }) => {
                self.delivered = Some(end);
                self.pending_end = empty;
                Ok(Some(Event::Header(self.view(end)?)))
            }
            Some(Complete::Element { end }) => {
                self.delivered = Some(end);
                Ok(Some(Event::Element(self.view(end)?)))
            }
        }
    }

    fn view(&self, end: usize) -> Result<Element<'_>, XmlError> {
        let src = utf8(&self.buf[self.origin..end])?;
        Ok(Element::root(Doc {
            src,
            nodes: &self.tree.nodes,
            attrs: &self.tree.attrs,
            stream_ns: &self.stream_ns,
            decoded: &self.tree.decoded,
        }))
    }

    /// Forgets the delivered element (the open stack is empty between elements).
    fn clear_tree(&mut self) {
        self.tree.clear();
    }

    /// Drops consumed bytes from the front of the buffer (a delivered element is
    /// done with: nobody can hold its view while the framer is borrowed mutably).
    fn compact(&mut self) {
        if let Some(end) = self.delivered.take() {
            self.consumed = end;
            self.clear_tree();
        }
        let n = self.consumed;
        if n == 0 {
            return;
        }
        self.buf.drain(..n);
        self.consumed -= n;
        self.pos -= n;
        self.origin = self.origin.saturating_sub(n);
        self.scan = match self.scan {
            Scan::Idle => Scan::Idle,
            Scan::Tag { start, quote, at } => Scan::Tag { start: start - n, quote, at: at - n },
            Scan::Decl { start, at } => Scan::Decl { start: start - n, at: at - n },
            Scan::Cdata { start, at } => Scan::Cdata { start: start - n, at: at - n },
            Scan::Text { start } => Scan::Text { start: start - n },
        };
    }

    fn need_more(&self) -> Result<Option<Complete>, XmlError> {
        if self.buf.len() - self.consumed > self.stanza_limit() {
            return Err(self.too_big());
        }
        Ok(None)
    }

    /// Scans forward to the next complete event. The scanner never looks further
    /// than `max_stanza_size` bytes past the start of the element in progress, and
    /// every region is checked against that limit before it is validated, so the
    /// error a stream gets never depends on how its bytes were split into reads.
    fn scan(&mut self) -> Result<Option<Complete>, XmlError> {
        loop {
            let limit = self.consumed + self.stanza_limit();
            let len = self.buf.len().min(limit + 1);
            let too_big = self.too_big();
            let fits = |end: usize| if end > limit { Err(too_big.clone()) } else { Ok(()) };
            match self.scan {
                Scan::Idle => {
                    if self.pos >= len {
                        return self.need_more();
                    }
                    if !self.scan_idle()? {
                        return self.need_more();
                    }
                }
                Scan::Tag { start, quote, at } => match find_tag_end(&self.buf[at..len], quote) {
                    Ok(off) => {
                        let end = at + off + 1;
                        fits(end)?;
                        self.scan = Scan::Idle;
                        self.pos = end;
                        if let Some(c) = self.on_tag(start, end)? {
                            return Ok(Some(c));
                        }
                    }
                    Err(quote) => {
                        self.scan = Scan::Tag { start, quote, at: len };
                        return self.need_more();
                    }
                },
                Scan::Decl { start, at } => match find(&self.buf[..len], at, b"?>") {
                    Some(end) => {
                        fits(end)?;
                        self.scan = Scan::Idle;
                        self.pos = end;
                        self.on_declaration(start, end)?;
                    }
                    None => {
                        self.scan = Scan::Decl { start, at: len.saturating_sub(1).max(start) };
                        return self.need_more();
                    }
                },
                Scan::Cdata { start, at } => match find(&self.buf[..len], at, b"]]>") {
                    Some(end) => {
                        fits(end)?;
                        self.scan = Scan::Idle;
                        self.pos = end;
                        let text = utf8(&self.buf[start + 9..end - 3])?;
                        check_chars(text)?;
                        // An empty section adds nothing (and would re-emit as an
                        // open/close pair that frames back as an empty element).
                        if end - 3 > start + 9 {
                            let node = Node::CData(Span::new(start + 9 - self.origin, end - 3 - self.origin));
                            self.tree.push_node(node, self.stanza_limit())?;
                        }
                    }
                    None => {
                        self.scan = Scan::Cdata { start, at: len.saturating_sub(2).max(start + 9) };
                        return self.need_more();
                    }
                },
                Scan::Text { start } => match memchr(b'<', &self.buf[start..len]) {
                    Some(off) => {
                        self.on_text(start, start + off)?;
                        self.scan = Scan::Idle;
                        self.pos = start + off;
                    }
                    None => {
                        let (cut, pending_too_long) = safe_text_cut(&self.buf[start..len]);
                        let cut = start + cut;
                        if cut > start {
                            self.on_text(start, cut)?;
                        }
                        if pending_too_long {
                            return Err(XmlError::not_well_formed("unterminated reference"));
                        }
                        self.scan = Scan::Text { start: cut };
                        self.pos = cut;
                        return self.need_more();
                    }
                },
            }
        }
    }

    /// Decides what starts at `pos`. Returns false when more bytes are needed.
    fn scan_idle(&mut self) -> Result<bool, XmlError> {
        let pos = self.pos;
        let rest = &self.buf[pos..];
        match self.phase {
            Phase::Start => match sniff(rest)? {
                None => return Ok(false),
                Some(bom) => {
                    self.pos += bom;
                    self.consumed = self.pos;
                    self.phase = Phase::Prolog { decl_allowed: true };
                }
            },
            Phase::Prolog { decl_allowed } => {
                if rest[0].is_ascii_whitespace() {
                    let n = rest.iter().take_while(|b| is_space(**b)).count();
                    if n == 0 {
                        return Err(XmlError::not_well_formed("text before the stream header"));
                    }
                    self.pos += n;
                    self.consumed = self.pos;
                    self.phase = Phase::Prolog { decl_allowed: false };
                    return Ok(true);
                }
                if rest[0] != b'<' {
                    return Err(XmlError::not_well_formed("text before the stream header"));
                }
                match markup(rest) {
                    Markup::NeedMore => return Ok(false),
                    Markup::Declaration if decl_allowed => {
                        self.scan = Scan::Decl { start: pos, at: pos + 2 };
                    }
                    Markup::Declaration => {
                        return Err(XmlError::restricted("XML declaration not at the start of the stream"))
                    }
                    Markup::Pi => return Err(XmlError::restricted("processing instruction")),
                    Markup::Comment => return Err(XmlError::restricted("comment")),
                    Markup::Doctype => return Err(XmlError::restricted("DTD")),
                    Markup::Cdata | Markup::Bad => {
                        return Err(XmlError::not_well_formed("markup before the stream header"))
                    }
                    Markup::EndTag => return Err(XmlError::not_well_formed("end tag before the stream header")),
                    Markup::StartTag => {
                        self.origin = pos;
                        self.scan = Scan::Tag { start: pos, quote: 0, at: pos + 1 };
                    }
                }
            }
            Phase::Content => {
                let top_level = self.tree.open.is_empty();
                if top_level && is_space(rest[0]) {
                    let n = rest.iter().take_while(|b| is_space(**b)).count();
                    self.pos += n;
                    self.consumed = self.pos;
                    return Ok(true);
                }
                if rest[0] != b'<' {
                    if top_level {
                        return Err(XmlError::not_well_formed("text outside elements"));
                    }
                    self.scan = Scan::Text { start: pos };
                    return Ok(true);
                }
                match markup(rest) {
                    Markup::NeedMore => return Ok(false),
                    Markup::Declaration | Markup::Pi => return Err(XmlError::restricted("processing instruction")),
                    Markup::Comment => return Err(XmlError::restricted("comment")),
                    Markup::Doctype => return Err(XmlError::restricted("DTD")),
                    Markup::Bad => return Err(XmlError::not_well_formed("malformed markup")),
                    Markup::Cdata if top_level => return Err(XmlError::not_well_formed("CDATA outside elements")),
                    Markup::Cdata => self.scan = Scan::Cdata { start: pos, at: pos + 9 },
                    Markup::StartTag | Markup::EndTag => {
                        if top_level {
                            self.origin = pos;
                        }
                        self.scan = Scan::Tag { start: pos, quote: 0, at: pos + 1 };
                    }
                }
            }
            // Whatever follows the end of the stream is not read.
            Phase::Ended => {
                self.pos = self.buf.len();
                self.consumed = self.pos;
            }
        }
        Ok(true)
    }

    fn on_declaration(&mut self, start: usize, end: usize) -> Result<(), XmlError> {
        let s = utf8(&self.buf[start..end])?;
        check_chars(s)?;
        match Tokenizer::from(s).next() {
            Some(Ok(Token::Declaration { version, encoding, .. })) => {
                if version.as_str() != "1.0" {
                    return Err(XmlError::not_well_formed("XML version other than 1.0"));
                }
                if let Some(enc) = encoding {
                    if !enc.as_str().eq_ignore_ascii_case("utf-8") {
                        return Err(XmlError::encoding("the XML declaration names an encoding other than UTF-8"));
                    }
                }
            }
            _ => return Err(XmlError::not_well_formed("malformed XML declaration")),
        }
        self.consumed = end;
        self.phase = Phase::Prolog { decl_allowed: false };
        Ok(())
    }

    fn on_text(&mut self, start: usize, end: usize) -> Result<(), XmlError> {
        validate_text(&self.buf[start..end])?;
        let (s, e) = (start - self.origin, end - self.origin);
        if let Some(Node::Text(prev)) = self.tree.nodes.last_mut() {
            if prev.end as usize == s {
                prev.end = e as u32;
                return Ok(());
            }
        }
        self.tree.push_node(Node::Text(Span::new(s, e)), self.stanza_limit())
    }

    /// Handles one complete tag `buf[start..end]`.
    fn on_tag(&mut self, start: usize, end: usize) -> Result<Option<Complete>, XmlError> {
        let header = matches!(self.phase, Phase::Prolog { .. });
        let too_big = self.too_big();
        let stanza_limit = self.stanza_limit();
        let ctx = TagContext {
            src: &self.buf[self.origin..end],
            tag_start: start - self.origin,
            limits: &self.limits,
            stanza_limit,
            stream_ns: &self.stream_ns,
            stream_name: &self.stream_name,
            header,
        };
        let outcome = self.tree.on_tag(&ctx)?;
        match outcome {
            TagOutcome::Open => Ok(None),
            TagOutcome::Closed { top_level: false } => Ok(None),
            TagOutcome::Closed { top_level: true } | TagOutcome::Header { .. } if end - self.origin > stanza_limit => {
                Err(too_big)
            }
            TagOutcome::Closed { top_level: true } => Ok(Some(Complete::Element { end })),
            TagOutcome::StreamEnd => Ok(Some(Complete::StreamEnd { end })),
            TagOutcome::NestedHeader => Ok(Some(Complete::Header { end, empty: false })),
            TagOutcome::Header { empty } => {
                let qname = self.tree.root_qname(&self.buf[self.origin..end]);
                self.stream_name = Box::from(qname);
                self.stream_ns = self.tree.take_stream_namespaces(&self.buf[self.origin..end]);
                self.phase = Phase::Content;
                Ok(Some(Complete::Header { end, empty }))
            }
        }
    }
}

/// What [`Tree::on_tag`] needs to know besides the tree itself.
struct TagContext<'c> {
    /// The element's source from its origin through the end of this tag.
    src: &'c [u8],
    /// Where this tag starts in `src`.
    tag_start: usize,
    limits: &'c Limits,
    /// The stanza limit in force (also the budget of the parsed tables).
    stanza_limit: usize,
    stream_ns: &'c [StreamNs],
    stream_name: &'c str,
    /// The tag is the stream header.
    header: bool,
}

enum TagOutcome {
    Open,
    /// A stream header inside the stream (see [`Event::Header`]).
    NestedHeader,
    Closed {
        top_level: bool,
    },
    StreamEnd,
    Header {
        empty: bool,
    },
}

/// The element being framed: flat pre-order node and attribute tables with spans
/// relative to the element's origin, plus the open-element and namespace stacks.
#[derive(Default)]
struct Tree {
    nodes: Vec<Node>,
    attrs: Vec<AttrNode>,
    open: Vec<Open>,
    ns_decls: Vec<NsDecl>,
    decoded: String,
}

/// Makes room for one more entry in `table`. What the tables hold (`used` bytes
/// of entries, not of capacity, so the answer never depends on how the input was
/// split into reads) may not pass `budget`; growth doubles, but never reserves
/// more than the budget leaves, so the capacity stays within twice the budget.
fn room_for_one<T>(table: &mut Vec<T>, used: usize, budget: usize) -> Result<(), XmlError> {
    let size = std::mem::size_of::<T>().max(1);
    if used + size > budget {
        return Err(XmlError::limit(Limit::Tree));
    }
    if table.len() == table.capacity() {
        table.reserve_exact(table.capacity().max(8).min((budget - used) / size).max(1));
    }
    Ok(())
}

/// Tables bigger than this are given back between elements, not kept for the next.
const KEEP_TREE: usize = 16 * 1024;

impl Tree {
    /// Bytes the tables hold (their capacity, which is what they cost).
    fn bytes(&self) -> usize {
        use std::mem::size_of;
        self.nodes.capacity() * size_of::<Node>()
            + self.attrs.capacity() * size_of::<AttrNode>()
            + self.open.capacity() * size_of::<Open>()
            + self.ns_decls.capacity() * size_of::<NsDecl>()
            + self.decoded.capacity()
    }

    /// Bytes of the entries in the tables (what the budget counts).
    fn used(&self) -> usize {
        use std::mem::size_of;
        self.nodes.len() * size_of::<Node>()
            + self.attrs.len() * size_of::<AttrNode>()
            + self.open.len() * size_of::<Open>()
            + self.ns_decls.len() * size_of::<NsDecl>()
            + self.decoded.len()
    }

    /// Gives back what a partial element does not use.
    fn shrink(&mut self) {
        self.nodes.shrink_to_fit();
        self.attrs.shrink_to_fit();
        self.open.shrink_to_fit();
        self.ns_decls.shrink_to_fit();
        self.decoded.shrink_to_fit();
    }

    /// Appends a node within the tree budget (the stanza limit).
    fn push_node(&mut self, node: Node, stanza_limit: usize) -> Result<(), XmlError> {
        let used = self.used();
        room_for_one(&mut self.nodes, used, stanza_limit)?;
        self.nodes.push(node);
        Ok(())
    }

    fn clear(&mut self) {
        if self.bytes() > KEEP_TREE {
            *self = Tree::default();
            return;
        }
        self.nodes.clear();
        self.attrs.clear();
        self.open.clear();
        self.ns_decls.clear();
        self.decoded.clear();
    }

    fn on_tag(&mut self, ctx: &TagContext<'_>) -> Result<TagOutcome, XmlError> {
        let tag = utf8(&ctx.src[ctx.tag_start..])?;
        check_chars(tag)?;
        let base = ctx.tag_start;
        let mut tokens = Tokenizer::from_fragment(tag, 0..tag.len());
        let first = tokens.next();
        if let Some(Ok(Token::ElementEnd { end: ElementEnd::Close(prefix, local), .. })) = first {
            if tokens.next().is_some() {
                return Err(XmlError::not_well_formed("malformed end tag"));
            }
            return self.on_end_tag(ctx, prefix.as_str(), local.as_str());
        }
        let Some(Ok(Token::ElementStart { prefix, local, .. })) = first else {
            return Err(XmlError::not_well_formed("malformed tag"));
        };
        if prefix.len() >= MAX_PREFIX {
            return Err(XmlError::not_well_formed("namespace prefix too long"));
        }
        if !ctx.header && self.open.len() + 1 > ctx.limits.max_depth {
            return Err(XmlError::limit(Limit::Depth));
        }
        let ns_mark = self.ns_decls.len() as u32;
        let attr_from = self.attrs.len();
        let empty = loop {
            match tokens.next() {
                Some(Ok(Token::Attribute { prefix: ap, local: al, value, .. })) => {
                    if ap.len() >= MAX_PREFIX {
                        return Err(XmlError::not_well_formed("namespace prefix too long"));
                    }
                    check_references(value.as_str())?;
                    let names = AttrNames {
                        prefix: ap.as_str(),
                        local: al.as_str(),
                        start: base + qname_start(&ap, &al),
                        local_start: base + al.start(),
                        end: base + al.end(),
                    };
                    let value_span = Span::new(base + value.start(), base + value.end());
                    self.on_attribute(ctx, names, value.as_str(), value_span, attr_from)?;
                }
                Some(Ok(Token::ElementEnd { end: ElementEnd::Open, .. })) => break false,
                Some(Ok(Token::ElementEnd { end: ElementEnd::Empty, .. })) => break true,
                _ => return Err(XmlError::not_well_formed("malformed start tag")),
            }
        };
        if tokens.next().is_some() {
            return Err(XmlError::not_well_formed("malformed start tag"));
        }
        let ns = self.resolve(ctx, prefix.as_str(), true)?;
        for i in attr_from..self.attrs.len() {
            let a = self.attrs[i];
            if a.local > 0 {
                let prefix = ctx.src.get(a.name.start as usize..(a.name.start + a.local as u32 - 1) as usize);
                let prefix = std::str::from_utf8(prefix.unwrap_or(&[])).unwrap_or("");
                self.attrs[i].ns = self.resolve(ctx, prefix, false)?;
            }
        }
        self.check_duplicate_attributes(ctx, attr_from)?;
        let index = self.nodes.len() as u32;
        let used = self.used();
        room_for_one(&mut self.open, used, ctx.stanza_limit)?;
        self.push_node(
            Node::Element {
                name: Span::new(base + qname_start(&prefix, &local), base + local.end()),
                local: (local.start() - qname_start(&prefix, &local)) as u16,
                ns,
                attrs: (attr_from as u32, self.attrs.len() as u32),
                end: index + 1,
            },
            ctx.stanza_limit,
        )?;
        if ctx.header {
            return Ok(TagOutcome::Header { empty });
        }
        if self.open.is_empty()
            && !empty
            && span_bytes(Span::new(base + qname_start(&prefix, &local), base + local.end()), ctx.src)
                == ctx.stream_name.as_bytes()
        {
            // A first-level element named like the stream root: a new stream header
            // sent without a restart. Reported as such; the stream layer decides.
            return Ok(TagOutcome::NestedHeader);
        }
        self.open.push(Open { node: index, ns_mark });
        if empty {
            return self.close_top();
        }
        Ok(TagOutcome::Open)
    }

    fn on_attribute(
        &mut self,
        ctx: &TagContext<'_>,
        names: AttrNames<'_>,
        raw: &str,
        value: Span,
        attr_from: usize,
    ) -> Result<(), XmlError> {
        let AttrNames { prefix, local, start, local_start, end } = names;
        let declared = match (prefix, local) {
            ("", "xmlns") => Some(None),
            ("xmlns", p) => Some(Some(p)),
            _ => None,
        };
        let Some(decl_prefix) = declared else {
            if self.attrs.len() - attr_from >= ctx.limits.max_attributes {
                return Err(XmlError::limit(Limit::Attributes));
            }
            let used = self.used();
            room_for_one(&mut self.attrs, used, ctx.stanza_limit)?;
            self.attrs.push(AttrNode {
                name: Span::new(start, end),
                local: (local_start - start) as u16,
                ns: NsRef::None,
                value,
            });
            return Ok(());
        };
        let uri = decode_attr(raw);
        if let Some(p) = decl_prefix {
            if p == "xmlns" || (p == "xml") != (uri == NS_XML) {
                return Err(XmlError::not_well_formed("reserved namespace prefix misused"));
            }
            if uri.is_empty() {
                return Err(XmlError::not_well_formed("empty namespace name for a prefix"));
            }
        } else if uri == NS_XML {
            return Err(XmlError::not_well_formed("the XML namespace as default namespace"));
        }
        if self.ns_decls.len() >= ctx.limits.max_namespaces {
            return Err(XmlError::limit(Limit::Namespaces));
        }
        let uri = if uri.is_empty() {
            NsRef::None
        } else if raw.contains('&') {
            if self.used() + uri.len() > ctx.stanza_limit {
                return Err(XmlError::limit(Limit::Tree));
            }
            let from = self.decoded.len();
            self.decoded.push_str(&uri);
            NsRef::Decoded(Span::new(from, self.decoded.len()))
        } else {
            NsRef::Local(value)
        };
        let prefix = decl_prefix.map(|_| Span::new(local_start, end));
        let used = self.used();
        room_for_one(&mut self.ns_decls, used, ctx.stanza_limit)?;
        self.ns_decls.push(NsDecl { prefix, uri });
        Ok(())
    }

    fn on_end_tag(&mut self, ctx: &TagContext<'_>, prefix: &str, local: &str) -> Result<TagOutcome, XmlError> {
        let Some(top) = self.open.last() else {
            if qname_eq(ctx.stream_name.as_bytes(), prefix, local) {
                return Ok(TagOutcome::StreamEnd);
            }
            return Err(XmlError::not_well_formed("end tag does not match the stream header"));
        };
        let written = match self.nodes.get(top.node as usize) {
            Some(Node::Element { name, .. }) => span_bytes(*name, ctx.src),
            _ => &[],
        };
        if !qname_eq(written, prefix, local) {
            return Err(XmlError::not_well_formed("end tag does not match start tag"));
        }
        self.close_top()
    }

    /// Closes the innermost open element.
    fn close_top(&mut self) -> Result<TagOutcome, XmlError> {
        let Some(top) = self.open.pop() else {
            return Err(XmlError::not_well_formed("unbalanced end tag"));
        };
        self.ns_decls.truncate(top.ns_mark as usize);
        let after = self.nodes.len() as u32;
        if let Some(Node::Element { end, .. }) = self.nodes.get_mut(top.node as usize) {
            *end = after;
        }
        Ok(TagOutcome::Closed { top_level: self.open.is_empty() })
    }

    /// Resolves a prefix (`""` is the default namespace for elements, none for attributes).
    fn resolve(&self, ctx: &TagContext<'_>, prefix: &str, element: bool) -> Result<NsRef, XmlError> {
        match prefix {
            "xml" => return Ok(NsRef::Xml),
            "xmlns" => return Err(XmlError::not_well_formed("the xmlns prefix on an element")),
            "" if !element => return Ok(NsRef::None),
            _ => {}
        }
        for decl in self.ns_decls.iter().rev() {
            let matches = match decl.prefix {
                None => prefix.is_empty(),
                Some(p) => span_bytes(p, ctx.src) == prefix.as_bytes(),
            };
            if matches {
                return Ok(decl.uri);
            }
        }
        for (i, decl) in ctx.stream_ns.iter().enumerate().rev() {
            if &*decl.prefix == prefix {
                return Ok(if decl.uri.is_empty() { NsRef::None } else { NsRef::Stream(i as u16) });
            }
        }
        if prefix.is_empty() {
            return Ok(NsRef::None);
        }
        Err(XmlError { kind: XmlErrorKind::UnboundPrefix, detail: "namespace prefix not declared" })
    }

    fn check_duplicate_attributes(&self, ctx: &TagContext<'_>, from: usize) -> Result<(), XmlError> {
        let local = |a: &AttrNode| span_bytes(Span { start: a.name.start + a.local as u32, end: a.name.end }, ctx.src);
        let attrs = &self.attrs[from..];
        for (i, a) in attrs.iter().enumerate() {
            for b in &attrs[..i] {
                if local(a) == local(b) && self.ns_bytes(ctx, a.ns) == self.ns_bytes(ctx, b.ns) {
                    return Err(XmlError::not_well_formed("duplicate attribute"));
                }
            }
        }
        Ok(())
    }

    /// The namespace name behind a reference, as bytes (for comparisons).
    fn ns_bytes<'s>(&'s self, ctx: &TagContext<'s>, ns: NsRef) -> &'s [u8] {
        match ns {
            NsRef::None => &[],
            NsRef::Xml => NS_XML.as_bytes(),
            NsRef::Stream(i) => ctx.stream_ns.get(i as usize).map(|n| n.uri.as_bytes()).unwrap_or(&[]),
            NsRef::Local(s) => span_bytes(s, ctx.src),
            NsRef::Decoded(s) => span_bytes(s, self.decoded.as_bytes()),
        }
    }

    /// The qualified name of the root element (the stream header).
    fn root_qname<'s>(&self, src: &'s [u8]) -> &'s str {
        match self.nodes.first() {
            Some(Node::Element { name, .. }) => std::str::from_utf8(span_bytes(*name, src)).unwrap_or(""),
            _ => "",
        }
    }

    /// Moves the header's namespace declarations into an owned table: the header's
    /// bytes are dropped once it has been handled, the declarations stay in scope.
    fn take_stream_namespaces(&mut self, src: &[u8]) -> Vec<StreamNs> {
        let text = |span: Span| std::str::from_utf8(span_bytes(span, src)).unwrap_or("");
        let table = self
            .ns_decls
            .iter()
            .map(|decl| StreamNs {
                prefix: Box::from(decl.prefix.map(text).unwrap_or("")),
                uri: Box::from(match decl.uri {
                    NsRef::Local(span) => text(span),
                    NsRef::Decoded(span) => span.get(&self.decoded),
                    _ => "",
                }),
            })
            .collect();
        self.ns_decls.clear();
        table
    }
}
/// The names of one attribute (offsets relative to the element's origin).
struct AttrNames<'s> {
    prefix: &'s str,
    local: &'s str,
    start: usize,
    local_start: usize,
    end: usize,
}

fn utf8(bytes: &[u8]) -> Result<&str, XmlError> {
    std::str::from_utf8(bytes).map_err(|_| XmlError::encoding("invalid UTF-8"))
}

/// XML 1.0 §2.3 `S`.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Finds `pat` in `buf[from..]`; returns the absolute end of the first match.
fn find(buf: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    buf.get(from..)?.windows(pat.len()).position(|w| w == pat).map(|i| from + i + pat.len())
}

/// Offset of the `>` that ends a tag, skipping quoted attribute values; on `Err`,
/// the quote state to resume with.
fn find_tag_end(bytes: &[u8], mut quote: u8) -> Result<usize, u8> {
    for (i, &b) in bytes.iter().enumerate() {
        if quote != 0 {
            if b == quote {
                quote = 0;
            }
        } else if b == b'"' || b == b'\'' {
            quote = b;
        } else if b == b'>' {
            return Ok(i);
        }
    }
    Err(quote)
}

/// How much of an unfinished text run can be validated now: not a reference that
/// may be cut, not a `]` that may start `]]>`, not a partial UTF-8 character. The
/// flag says a pending reference is already too long to be one.
fn safe_text_cut(text: &[u8]) -> (usize, bool) {
    if let Some(amp) = text.iter().rposition(|&b| b == b'&') {
        if !text[amp..].contains(&b';') {
            // The `&` ends whatever precedes it: no `]]>` or UTF-8 sequence spans it.
            // Matches `validate_text`: no `;` among the MAX_REFERENCE bytes after `&`.
            return (amp, text.len() - amp > MAX_REFERENCE);
        }
    }
    let mut cut = text.len();
    while cut > 0 && text[cut - 1] == b']' && text.len() - cut < 2 {
        cut -= 1;
    }
    // Back off to the start of a trailing partial UTF-8 sequence.
    let mut start = cut;
    while start > 0 && start + 4 > cut && (text[start - 1] & 0xC0) == 0x80 {
        start -= 1;
    }
    if start > 0 && start + 4 > cut {
        let lead = text[start - 1];
        let need = match lead {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        if need > 1 && cut - (start - 1) < need {
            cut = start - 1;
        }
    }
    (cut, false)
}

/// The encoding check at the very start of a stream (RFC 6120 §11.6; XML 1.0
/// Appendix F): returns the length of a UTF-8 byte-order mark to skip, or `None`
/// when more bytes are needed to decide.
fn sniff(b: &[u8]) -> Result<Option<usize>, XmlError> {
    match b {
        [0xEF, 0xBB, 0xBF, ..] => Ok(Some(3)),
        [0xEF] | [0xEF, 0xBB] => Ok(None),
        [0xFE, 0xFF, ..] | [0xFF, 0xFE, ..] => Err(XmlError::encoding("UTF-16 byte-order mark")),
        [0xFE] | [0xFF] => Ok(None),
        [0x00, ..] | [b'<', 0x00, ..] => Err(XmlError::encoding("UTF-16 or UTF-32 stream")),
        [b'<'] => Ok(None),
        _ => Ok(Some(0)),
    }
}

/// What kind of markup starts with `<` at the front of `b`.
#[derive(Debug, PartialEq, Eq)]
enum Markup {
    NeedMore,
    StartTag,
    EndTag,
    Declaration,
    Pi,
    Comment,
    Cdata,
    Doctype,
    Bad,
}

fn markup(b: &[u8]) -> Markup {
    let Some(&second) = b.get(1) else {
        return Markup::NeedMore;
    };
    match second {
        b'/' => Markup::EndTag,
        b'?' => match b.get(2..6) {
            None if b"<?xml".starts_with(b) || b.starts_with(b"<?xml") => Markup::NeedMore,
            Some(b"xml ") | Some(b"xml\t") | Some(b"xml\n") | Some(b"xml\r") => Markup::Declaration,
            _ => Markup::Pi,
        },
        b'!' => {
            for (pat, kind) in [
                (&b"<!--"[..], Markup::Comment),
                (&b"<![CDATA["[..], Markup::Cdata),
                (&b"<!DOCTYPE"[..], Markup::Doctype),
            ] {
                if b.starts_with(pat) {
                    return kind;
                }
                if pat.starts_with(b) {
                    return Markup::NeedMore;
                }
            }
            Markup::Bad
        }
        _ => Markup::StartTag,
    }
}

/// Compares a written qualified name with an end tag's prefix and local name.
fn qname_eq(written: &[u8], prefix: &str, local: &str) -> bool {
    if prefix.is_empty() {
        written == local.as_bytes()
    } else {
        written.len() == prefix.len() + 1 + local.len()
            && written.starts_with(prefix.as_bytes())
            && written.ends_with(local.as_bytes())
            && written.get(prefix.len()) == Some(&b':')
    }
}

/// Where a qualified name starts (`xmlparser` gives an empty prefix no position).
fn qname_start(prefix: &xmlparser::StrSpan<'_>, local: &xmlparser::StrSpan<'_>) -> usize {
    if prefix.is_empty() {
        local.start()
    } else {
        prefix.start()
    }
}

fn span_bytes(span: Span, src: &[u8]) -> &[u8] {
    src.get(span.start as usize..span.end as usize).unwrap_or(&[])
}
