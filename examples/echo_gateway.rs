//! A minimal XMPP gateway for wrenhub, as an external component (XEP-0114): it
//! answers every chat message sent to any address under its domain with the same
//! text. Start from here to bridge another system (mail, SMS, a home-automation bus):
//! replace `answer` with whatever your gateway does.
//!
//! wrenhub's config:
//! ```toml
//! [[component]]
//! domain = "echo.hub.lan"
//! secret = "a long random secret"
//! ```
//! Run: `cargo run --example echo_gateway -- 127.0.0.1:5347 echo.hub.lan 'a long random secret'`
//! then send a message to `anything@echo.hub.lan` from any client.

use std::io::{Read, Write};
use std::net::TcpStream;
use wrenhub::xml::writer::XmlWriter;
use wrenhub::xml::{Element, Event, Framer, Limits};

/// What the gateway does with a message body; here, an echo.
fn answer(body: &str) -> String {
    format!("echo: {body}")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, server, domain, secret] = &args[..] else {
        return Err("usage: echo_gateway SERVER:PORT DOMAIN SECRET".into());
    };
    let mut socket = TcpStream::connect(server)?;
    socket.set_nodelay(true)?;
    // XEP-0114 §3: open the stream for our domain...
    write!(
        socket,
        "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
    )?;
    let mut framer = Framer::new(Limits::default());
    let mut handshake_sent = false;
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf)?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        framer.feed(&buf[..n]);
        let mut out = Vec::new();
        loop {
            match framer.next_event()? {
                None => break,
                Some(Event::Header(header)) if !handshake_sent => {
                    // ...then prove the secret: hex(SHA-1(stream id ‖ secret)).
                    let id = header.attr("id").unwrap_or_default();
                    let proof = wrenhub::stream::component::hex_sha1(&format!("{id}{secret}"));
                    XmlWriter::new(&mut out).start("handshake").open().text(&proof).end("handshake");
                    handshake_sent = true;
                }
                Some(Event::Element(el)) if el.name() == "handshake" => eprintln!("connected as {domain}"),
                Some(Event::Element(el)) if el.name() == "message" => reply(&el, &mut out),
                Some(Event::Element(el)) if el.name() == "error" => return Err(format!("stream error: {el:?}").into()),
                Some(Event::StreamEnd) => return Ok(()),
                Some(_) => {}
            }
        }
        socket.write_all(&out)?;
    }
}

/// Answers a chat message: from the address it was sent to, back to its sender.
fn reply(message: &Element<'_>, out: &mut Vec<u8>) {
    let (Some(from), Some(to)) = (message.attr("from"), message.attr("to")) else { return };
    let Some(body) = message.children().find(|c| c.name() == "body") else { return };
    if message.attr("type").as_deref() == Some("error") {
        return;
    }
    XmlWriter::new(out)
        .start("message")
        .attr("from", &to)
        .attr("to", &from)
        .attr("type", "chat")
        .open()
        .start("body")
        .open()
        .text(&answer(&body.text()))
        .end("body")
        .end("message");
}
