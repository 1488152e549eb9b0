//! A borrowed view of one complete top-level element (smoltcp `wire` style): spans
//! into the framer's input buffer, validated once when the framer completed the
//! element, read through accessors. Nothing here owns or copies the input.

use super::text::{decode_attr, decode_text};
use super::NS_XML;
use std::borrow::Cow;

/// A byte range, relative to the start of the element's source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        // Offsets are bounded by max_stanza_size, which config caps far below u32::MAX.
        Span { start: start as u32, end: end as u32 }
    }
    pub fn get(self, s: &str) -> &str {
        s.get(self.start as usize..self.end as usize).unwrap_or("")
    }
}

/// Where a resolved namespace name lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NsRef {
    /// No namespace.
    None,
    /// The predeclared `xml` prefix.
    Xml,
    /// A declaration on the stream header (index into the stream's table).
    Stream(u16),
    /// A declaration inside the element, raw in its source.
    Local(Span),
    /// A declaration inside the element whose value held references, decoded.
    Decoded(Span),
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Node {
    Element {
        /// The qualified name as written.
        name: Span,
        /// Offset of the local name inside `name` (after `prefix:`).
        local: u16,
        ns: NsRef,
        /// Range of indices into the attribute table.
        attrs: (u32, u32),
        /// Index of the first node after this element's subtree.
        end: u32,
    },
    Text(Span),
    CData(Span),
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct AttrNode {
    pub name: Span,
    pub local: u16,
    pub ns: NsRef,
    pub value: Span,
}

/// A namespace declared on the stream header (prefix `""` is the default namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StreamNs {
    pub prefix: Box<str>,
    pub uri: Box<str>,
}

/// Everything a view needs, all borrowed.
#[derive(Clone, Copy)]
pub(crate) struct Doc<'a> {
    pub src: &'a str,
    pub nodes: &'a [Node],
    pub attrs: &'a [AttrNode],
    pub stream_ns: &'a [StreamNs],
    pub decoded: &'a str,
}

impl<'a> Doc<'a> {
    fn ns(&self, ns: NsRef) -> &'a str {
        match ns {
            NsRef::None => "",
            NsRef::Xml => NS_XML,
            NsRef::Stream(i) => self.stream_ns.get(i as usize).map(|n| &*n.uri).unwrap_or(""),
            NsRef::Local(span) => span.get(self.src),
            NsRef::Decoded(span) => span.get(self.decoded),
        }
    }
}

/// A view of one element inside a framed top-level element.
#[derive(Clone, Copy)]
pub struct Element<'a> {
    doc: Doc<'a>,
    index: u32,
}

/// One attribute of an [`Element`] (namespace declarations are not attributes here).
#[derive(Clone, Copy, Debug)]
pub struct Attribute<'a> {
    /// Local name.
    pub name: &'a str,
    /// Namespace name, `""` for none (the usual case).
    pub ns: &'a str,
    raw: &'a str,
}

impl<'a> Attribute<'a> {
    /// The attribute value with references decoded (XML 1.0 §3.3.3).
    pub fn value(&self) -> Cow<'a, str> {
        decode_attr(self.raw)
    }
}

/// A child node: an element, or a run of character data.
#[derive(Clone)]
pub enum Content<'a> {
    Element(Element<'a>),
    Text(Cow<'a, str>),
}

impl<'a> Element<'a> {
    pub(crate) fn root(doc: Doc<'a>) -> Self {
        Element { doc, index: 0 }
    }

    fn parts(&self) -> (Span, u16, NsRef, (u32, u32), u32) {
        match self.doc.nodes.get(self.index as usize) {
            Some(&Node::Element { name, local, ns, attrs, end }) => (name, local, ns, attrs, end),
            // Views are only built on element nodes; an empty element is the safe answer.
            _ => (Span::default(), 0, NsRef::None, (0, 0), self.index + 1),
        }
    }

    /// The local name.
    pub fn name(&self) -> &'a str {
        let (name, local, ..) = self.parts();
        name.get(self.doc.src).get(local as usize..).unwrap_or("")
    }

    /// The qualified name as the sender wrote it (prefix included).
    pub fn qualified_name(&self) -> &'a str {
        self.parts().0.get(self.doc.src)
    }

    /// The namespace name, `""` for none.
    pub fn ns(&self) -> &'a str {
        self.doc.ns(self.parts().2)
    }

    /// True if this element has the given local name and namespace.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name() == name && self.ns() == ns
    }

    /// All attributes, in document order.
    pub fn attrs(&self) -> impl Iterator<Item = Attribute<'a>> + 'a {
        let (_, _, _, (from, to), _) = self.parts();
        let doc = self.doc;
        doc.attrs.get(from as usize..to as usize).unwrap_or(&[]).iter().map(move |a| Attribute {
            name: a.name.get(doc.src).get(a.local as usize..).unwrap_or(""),
            ns: doc.ns(a.ns),
            raw: a.value.get(doc.src),
        })
    }

    /// The value of the attribute `name` in no namespace, decoded.
    pub fn attr(&self, name: &str) -> Option<Cow<'a, str>> {
        self.attr_ns("", name)
    }

    /// The value of the attribute `{ns}name`, decoded.
    pub fn attr_ns(&self, ns: &str, name: &str) -> Option<Cow<'a, str>> {
        self.attrs().find(|a| a.name == name && a.ns == ns).map(|a| a.value())
    }

    /// Child nodes in document order.
    pub fn nodes(&self) -> impl Iterator<Item = Content<'a>> + 'a {
        let doc = self.doc;
        let end = self.parts().4;
        let mut next = self.index + 1;
        core::iter::from_fn(move || {
            if next >= end {
                return None;
            }
            let at = next;
            match doc.nodes.get(at as usize)? {
                Node::Element { end: skip, .. } => {
                    next = *skip;
                    Some(Content::Element(Element { doc, index: at }))
                }
                Node::Text(span) => {
                    next += 1;
                    Some(Content::Text(decode_text(span.get(doc.src))))
                }
                Node::CData(span) => {
                    next += 1;
                    Some(Content::Text(Cow::Borrowed(span.get(doc.src))))
                }
            }
        })
    }

    /// Child elements in document order.
    pub fn children(&self) -> impl Iterator<Item = Element<'a>> + 'a {
        self.nodes().filter_map(|n| match n {
            Content::Element(e) => Some(e),
            Content::Text(_) => None,
        })
    }

    /// The first child element with this name and namespace.
    pub fn child(&self, name: &str, ns: &str) -> Option<Element<'a>> {
        self.children().find(|c| c.is(name, ns))
    }

    /// The namespace the stream header binds to `prefix` (`""`: the stream's default
    /// namespace, i.e. its content namespace), if it declares one.
    pub fn stream_namespace(&self, prefix: &str) -> Option<&'a str> {
        self.doc.stream_ns.iter().rev().find(|n| &*n.prefix == prefix).map(|n| &*n.uri)
    }

    /// The character data directly inside this element, decoded and concatenated.
    pub fn text(&self) -> Cow<'a, str> {
        let mut out: Option<Cow<'a, str>> = None;
        for node in self.nodes() {
            if let Content::Text(t) = node {
                match &mut out {
                    None => out = Some(t),
                    Some(acc) => acc.to_mut().push_str(&t),
                }
            }
        }
        out.unwrap_or(Cow::Borrowed(""))
    }
}

impl core::fmt::Debug for Element<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "<{{{}}}{}>", self.ns(), self.name())
    }
}
