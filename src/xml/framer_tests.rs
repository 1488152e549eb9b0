//! Byte-level tests of the framer: chunking, restrictions, namespaces, limits.

use super::framer::{Event, Framer, Limits};
use super::writer::write_element;
use super::{XmlError, XmlErrorKind};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
     xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// Feeds `input` in chunks of `chunk` bytes and describes every event.
fn run_with(input: &[u8], chunk: usize, limits: Limits) -> (Vec<String>, Option<XmlError>) {
    let mut framer = Framer::new(limits);
    let mut events = Vec::new();
    let mut rest = input;
    loop {
        loop {
            match framer.next_event() {
                Ok(Some(Event::Header(h))) => {
                    let attrs: Vec<String> = h.attrs().map(|a| format!("{}{}={}", a.ns, a.name, a.value())).collect();
                    events.push(format!("header {{{}}}{} {}", h.ns(), h.name(), attrs.join(",")));
                }
                Ok(Some(Event::Element(e))) => {
                    let mut out = Vec::new();
                    write_element(&mut out, &e, "jabber:client", None, &[]);
                    events.push(String::from_utf8(out).unwrap());
                }
                Ok(Some(Event::StreamEnd)) => events.push("end".into()),
                Ok(None) => break,
                Err(e) => return (events, Some(e)),
            }
        }
        if rest.is_empty() {
            return (events, None);
        }
        let n = framer.feed(&rest[..chunk.min(rest.len())]);
        assert!(n > 0, "framer refused input although it asked for more");
        rest = &rest[n..];
        framer.trim();
    }
}

fn run(input: &str) -> (Vec<String>, Option<XmlError>) {
    run_with(input.as_bytes(), usize::MAX, Limits::default())
}

fn error_kind(input: &str) -> XmlErrorKind {
    run(input).1.unwrap_or_else(|| panic!("no error for {input:?}")).kind
}

#[test]
fn header_then_stanzas_then_end() {
    let input = format!(
        "{HEADER}<message to='a@b' type='chat'><body>hi &amp; &#x263A;</body></message>\n \
         <iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq></stream:stream>"
    );
    let (events, err) = run(&input);
    assert_eq!(err, None);
    assert_eq!(
        events,
        vec![
            "header {http://etherx.jabber.org/streams}stream to=localhost,version=1.0".to_string(),
            "<message to='a@b' type='chat'><body>hi &amp; \u{263A}</body></message>".into(),
            "<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>".into(),
            "end".into(),
        ]
    );
}

#[test]
fn every_chunk_size_gives_the_same_events() {
    let input = format!(
        "\u{FEFF}{HEADER}<message xml:lang='fr' to='b@c'><body>été ☺ 😀 a&lt;b]]&gt;</body>\
         <x xmlns='urn:x' xmlns:p='urn:p' p:a='1' b=\"it's &quot;q&quot; > x\"><![CDATA[<raw> & ]] ]]]></x>\
         <p:y xmlns:p='urn:p2'>t&#10;u</p:y></message><presence/></stream:stream>"
    );
    let whole = run(&input);
    assert_eq!(whole.1, None);
    assert_eq!(whole.0.len(), 4);
    for chunk in 1..=17 {
        assert_eq!(run_with(input.as_bytes(), chunk, Limits::default()), whole, "chunk size {chunk}");
    }
}

#[test]
fn namespaces_are_resolved_and_prefixes_normalised() {
    let input = format!(
        "{HEADER}<message><p:x xmlns:p='urn:p' xmlns='urn:d'><y/><p:z/></p:x>\
         <a xmlns:q='urn:q' q:k='v'/></message>"
    );
    let (events, err) = run(&input);
    assert_eq!(err, None);
    assert_eq!(
        events[1],
        "<message><x xmlns='urn:p'><y xmlns='urn:d'/><z/></x>\
         <a xmlns:a0='urn:q' a0:k='v'/></message>"
    );
}

#[test]
fn restricted_xml_is_named_restricted() {
    for bad in [
        format!("<!DOCTYPE stream [<!ENTITY x 'y'>]>{HEADER}"),
        format!("<!-- hi -->{HEADER}"),
        format!("<?xml-stylesheet href='a'?>{HEADER}"),
        format!("{HEADER}<!-- comment -->"),
        format!("{HEADER}<?pi data?>"),
        format!("{HEADER}<message><!-- c --></message>"),
        format!("{HEADER}<message><body>&lol;</body></message>"),
        format!("{HEADER}<message to='&nbsp;'/>"),
        format!("{HEADER}<!DOCTYPE x>"),
        format!(" <?xml version='1.0'?>{HEADER}"),
    ] {
        assert_eq!(error_kind(&bad), XmlErrorKind::Restricted, "{bad}");
    }
}

#[test]
fn malformed_xml_is_not_well_formed() {
    for bad in [
        format!("{HEADER}<message><body>hi</message>"),
        format!("{HEADER}<message a='1' a='2'/>"),
        format!("{HEADER}<message xmlns:p='urn:x' xmlns:q='urn:x' p:a='1' q:a='2'/>"),
        format!("{HEADER}hello"),
        format!("{HEADER}<message>a & b</message>"),
        format!("{HEADER}<message>&#0;</message>"),
        format!("{HEADER}<message>]]></message>"),
        format!("{HEADER}<message a=b/>"),
        format!("{HEADER}<message>\u{1}</message>"),
        format!("{HEADER}</other>"),
        format!("{HEADER}<![CDATA[x]]>"),
        format!("{HEADER}<message xmlns:p=''/>"),
        "text<stream:stream>".into(),
    ] {
        assert_eq!(error_kind(&bad), XmlErrorKind::NotWellFormed, "{bad}");
    }
}

#[test]
fn unbound_prefixes_are_reported() {
    assert_eq!(error_kind(&format!("{HEADER}<foo:bar/>")), XmlErrorKind::UnboundPrefix);
    assert_eq!(error_kind(&format!("{HEADER}<bar foo:a='1'/>")), XmlErrorKind::UnboundPrefix);
    assert_eq!(error_kind("<stream:stream xmlns='jabber:client'>"), XmlErrorKind::UnboundPrefix);
}

#[test]
fn only_utf8_is_accepted() {
    let utf16: Vec<u8> = HEADER.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let mut bom16 = vec![0xFF, 0xFE];
    bom16.extend_from_slice(&utf16);
    let mut be16 = vec![0xFE, 0xFF];
    be16.extend(HEADER.encode_utf16().flat_map(|u| u.to_be_bytes()));
    for input in [utf16, bom16, be16] {
        let (_, err) = run_with(&input, 1, Limits::default());
        assert_eq!(err.unwrap().kind, XmlErrorKind::UnsupportedEncoding);
    }
    let latin1 = "<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream>";
    assert_eq!(error_kind(latin1), XmlErrorKind::UnsupportedEncoding);
    let mut bad = format!("{HEADER}<message><body>").into_bytes();
    bad.extend_from_slice(&[0xC3, 0x28]);
    bad.extend_from_slice(b"</body></message>");
    assert_eq!(run_with(&bad, 3, Limits::default()).1.unwrap().kind, XmlErrorKind::UnsupportedEncoding);
    assert_eq!(run(&format!("<?xml version='1.0' encoding='utf-8'?>{}", &HEADER[21..])).1, None);
}

#[test]
fn limits_are_enforced_without_growing_the_buffer() {
    let limits = Limits { max_stanza_size: 1024, max_depth: 8, max_attributes: 4, max_namespaces: 3 };
    let big = format!("{HEADER}<message><body>{}</body></message>", "x".repeat(2000));
    let (_, err) = run_with(big.as_bytes(), 100, limits);
    assert_eq!(err.unwrap().kind, XmlErrorKind::LimitExceeded(super::Limit::StanzaSize));
    let (_, err) = run_with(big.as_bytes(), usize::MAX, limits);
    assert_eq!(err.unwrap().kind, XmlErrorKind::LimitExceeded(super::Limit::StanzaSize));
    let deep = format!("{HEADER}{}", "<a>".repeat(100));
    assert_eq!(run_with(deep.as_bytes(), 7, limits).1.unwrap().kind, XmlErrorKind::LimitExceeded(super::Limit::Depth));
    let attrs = format!("{HEADER}<a b='1' c='2' d='3' e='4' f='5'/>");
    assert_eq!(
        run_with(attrs.as_bytes(), 7, limits).1.unwrap().kind,
        XmlErrorKind::LimitExceeded(super::Limit::Attributes)
    );
    let ns = format!("{HEADER}<a xmlns:a='1' xmlns:b='2'><b xmlns:c='3' xmlns:d='4'/></a>");
    assert_eq!(
        run_with(ns.as_bytes(), 7, limits).1.unwrap().kind,
        XmlErrorKind::LimitExceeded(super::Limit::Namespaces)
    );
    // Within limits, elements of nearly the maximum size pass one after another.
    let ok = format!("{HEADER}{}", "<m><b>x</b></m>".repeat(200));
    assert_eq!(run_with(ok.as_bytes(), 333, limits).0.len(), 201);
}

#[test]
fn self_closing_header_ends_the_stream() {
    let (events, err) = run("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>");
    assert_eq!(err, None);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1], "end");
}

#[test]
fn restart_reads_a_new_header() {
    let mut framer = Framer::new(Limits::default());
    framer.feed(format!("{HEADER}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>{HEADER}").as_bytes());
    assert!(matches!(framer.next_event(), Ok(Some(Event::Header(_)))));
    assert!(matches!(framer.next_event(), Ok(Some(Event::Element(_)))));
    framer.restart();
    assert!(matches!(framer.next_event(), Ok(Some(Event::Header(_)))));
    framer.discard_buffered();
    assert!(!framer.has_buffered());
}

#[test]
fn reemission_stamps_a_new_from_and_never_copies_input_bytes() {
    use super::writer::Override;
    let mut framer = Framer::new(Limits::default());
    framer.feed(
        format!(
            "{HEADER}<message from='evil@x' to='b@c' type=\"chat\"><body>&lt;script&gt; &#x41;</body>\
             <x:y xmlns:x='urn:x' xml:lang='en'/></message>"
        )
        .as_bytes(),
    );
    assert!(matches!(framer.next_event(), Ok(Some(Event::Header(_)))));
    let Ok(Some(Event::Element(el))) = framer.next_event() else { panic!("no element") };
    assert_eq!(el.attr("from").as_deref(), Some("evil@x"));
    let mut out = Vec::new();
    write_element(&mut out, &el, "jabber:server", Some("jabber:server"), &[Override::Set("from", "a@d/r")]);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "<message to='b@c' type='chat' from='a@d/r'><body>&lt;script&gt; A</body>\
         <y xmlns='urn:x' xml:lang='en'/></message>"
    );
}

#[test]
fn a_stream_header_inside_the_stream_is_reported_as_a_header() {
    let input = format!("{HEADER}<message/>{}", &HEADER[21..]);
    let (events, err) = run(&input);
    assert_eq!(err, None);
    assert_eq!(events.len(), 3);
    assert!(events[2].starts_with("header {http://etherx.jabber.org/streams}stream"), "{events:?}");
    // An element of another name in the streams namespace is an ordinary element.
    let (events, _) = run(&format!("{HEADER}<stream:features/>"));
    assert_eq!(events[1], "<features xmlns='http://etherx.jabber.org/streams'/>");
}

/// Feeds `input` in reads of `chunk` bytes until the framer fails or the input
/// ends; returns the error and the most memory the framer held between reads.
fn peak_memory(framer: &mut Framer, input: &[u8], chunk: usize) -> (Option<XmlError>, usize) {
    let mut peak = 0;
    let mut rest = input;
    loop {
        loop {
            match framer.next_event() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return (Some(e), peak.max(framer.memory())),
            }
        }
        peak = peak.max(framer.memory());
        if rest.is_empty() {
            return (None, peak);
        }
        let n = framer.feed(&rest[..chunk.min(rest.len())]);
        rest = &rest[n..];
    }
}

#[test]
fn a_stanza_of_empty_elements_costs_at_most_three_times_the_limit() {
    // S1: 65 000 × `<a/>` is 256 KiB of input and was ~2.6 MiB of nodes.
    let limits = Limits::default();
    let input = format!("{HEADER}<message>{}</message>", "<a/>".repeat(65_000));
    let mut framer = Framer::new(limits);
    let (err, peak) = peak_memory(&mut framer, input.as_bytes(), 4096);
    assert_eq!(err.map(|e| e.kind), Some(XmlErrorKind::LimitExceeded(super::Limit::Tree)));
    let bound = 3 * limits.max_stanza_size + super::framer::READ_CHUNK;
    assert!(peak <= bound, "framer held {peak} bytes, bound {bound}");
    // Real stanzas of many small parts still pass: a 1000-item roster push.
    let items: String =
        (0..1000).map(|i| format!("<item jid='contact{i}@example.org' name='C {i}' subscription='both'/>")).collect();
    let roster = format!("{HEADER}<iq type='set' id='p'><query xmlns='jabber:iq:roster'>{items}</query></iq>");
    let (err, _) = peak_memory(&mut Framer::new(limits), roster.as_bytes(), 4096);
    assert_eq!(err, None);
}

#[test]
fn before_authentication_a_smaller_limit_applies_until_lifted() {
    let limits = Limits::default();
    let stanza = format!("<message><body>{}</body></message>", "x".repeat(10_000));
    let mut framer = Framer::new(limits);
    framer.limit_until_authenticated(8192);
    let (err, peak) = peak_memory(&mut framer, format!("{HEADER}{stanza}").as_bytes(), 4096);
    assert_eq!(err.map(|e| e.kind), Some(XmlErrorKind::LimitExceeded(super::Limit::PreAuthStanzaSize)));
    assert!(peak <= 3 * 8192 + super::framer::READ_CHUNK, "{peak}");
    let mut framer = Framer::new(limits);
    framer.limit_until_authenticated(8192);
    framer.authenticated();
    let (err, _) = peak_memory(&mut framer, format!("{HEADER}{stanza}").as_bytes(), 4096);
    assert_eq!(err, None);
}

#[test]
fn a_slow_partial_header_holds_its_bytes_not_a_read_chunk() {
    let mut framer = Framer::new(Limits::default());
    framer.feed(&HEADER.as_bytes()[..40]);
    assert!(framer.next_event().unwrap().is_none());
    framer.trim();
    assert!(framer.memory() <= 64, "{}", framer.memory());
}
