"""Group chat (XEP-0045) with Profanity (a real terminal client, driven in tmux).

    profanity_muc.py --port P --ca CA.pem --jid juliet@localhost/balcony --password balcony \
                     --peer-jid romeo@localhost/orchard --peer-password montague \
                     [--room lobby@conference.localhost]

Juliet is Debian 12's Profanity 0.13.1 (libstrophe 0.12, OpenSSL), typed at with
`tmux send-keys` and read with `tmux capture-pane`. Romeo is a minimal raw XMPP
client in this script (socket + ssl + xml.etree's pull parser): STARTTLS
(verified against --ca), SASL PLAIN, resource binding, then a MUC join.

Proves, from Profanity's screen and its debug log (`profanity -l DEBUG` logs every
stanza it sends and receives), and from the bytes Romeo receives:
  1. Profanity logs in over STARTTLS on --port and verifies the server's
     certificate against --ca (libstrophe says "Certificate verification passed";
     no "/tls allow" prompt).
  2. Juliet types `/join ROOM`: the room is created, she is its owner; the room
     starts locked (status 201) and Profanity offers `/room accept`, which is typed
     (an instant-room form, muc#owner submit) and the room is unlocked.
  3. Romeo joins ROOM/romeo with <x xmlns='http://jabber.org/protocol/muc'/>, sees
     juliet's occupant presence (owner) and his own (status 110); Profanity shows
     "-> romeo has joined the room" and lists him in its occupants panel.
  4. Juliet types a message in the room window: Romeo receives it as a
     type='groupchat' message from ROOM/juliet with that body.
  5. Romeo sends a groupchat message with a unique token: it is reflected to him
     from ROOM/romeo, and Profanity's screen shows "romeo: TOKEN".

CA handling: Profanity 0.13 has no CA-file option for the XMPP connection; its
`tls.certpath` (profrc [connection], the `/tls certpath set DIR` command) is an
OpenSSL CApath directory, handed to libstrophe's xmpp_conn_set_capath(). So the
script makes a private directory holding only --ca, named by its OpenSSL subject
hash (HASH.0, as c_rehash would; the hash is computed here, standard library only),
and points tls.certpath at it. OpenSSL's default store is emptied for Profanity
(SSL_CERT_FILE and SSL_CERT_DIR point at nothing), so --ca is the only trust
anchor; tls.policy is "force" (STARTTLS mandatory, certificate verified; never
"trust"). A certificate that does not verify makes Profanity print "TLS
certificate verification failed" and ask for /tls allow: the check fails there.

Standard library only (run with /usr/bin/python3). Profanity runs in a private
temporary HOME (XDG_CONFIG_HOME, XDG_DATA_HOME, XDG_CACHE_HOME inside it) with its
profrc and accounts file written there; as root (CI), it runs as uid/gid 65534 via
setpriv (or runuser), and that HOME is owned by that user. The tmux, user and
option plumbing is terminal.py's (shared with poezio_login.py).
"""

import base64
import hashlib
import os
import re
import secrets
import socket
import ssl
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import terminal
from terminal import Fail, check

WIDTH, HEIGHT = 200, 50   # the tmux pane
OCCUPANTS_SIZE = 20       # the occupants panel's width, percent of the room window
NS_STREAMS = "http://etherx.jabber.org/streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_CLIENT = "jabber:client"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"


def parse_args():
    def validate(parser, args):
        for name in ("jid", "peer_jid"):
            if not re.fullmatch(r"[^@/\s]+@[^@/\s]+/\S+", getattr(args, name)):
                parser.error(f"--{name.replace('_', '-')} must be a full JID (user@domain/resource)")
        if not re.fullmatch(r"[^@/\s]+@[^@/\s]+", args.room):
            parser.error("--room must be a bare room JID (room@service)")

    return terminal.parse_args(__doc__, [
        *terminal.connection_options("Direct TLS port (XEP-0368; unused: both clients use STARTTLS on --port)",
                                     "Profanity's account (full JID)"),
        ("--peer-jid", "romeo@localhost/orchard", "the raw client's account (full JID)"),
        ("--peer-password", "montague", "its password"),
        ("--room", "lobby@conference.localhost", "the room Juliet creates and both chat in"),
        terminal.timeout_option(30),
        terminal.program_option("profanity"),
    ], flags=[("--show-screen", "on success too, print Profanity's last screen to stderr")], validate=validate)


def split_jid(jid):
    """'user@domain/resource' -> ('user', 'domain', 'resource')."""
    bare, _, resource = jid.partition("/")
    local, _, domain = bare.partition("@")
    return local, domain, resource


# --- the OpenSSL subject hash, for a CApath directory ------------------------

def _der(buf, i):
    """One DER element at buf[i]: (tag, start of content, end of content)."""
    tag = buf[i]
    check(tag & 0x1F != 0x1F, "the CA certificate has a high-tag-number DER element")
    length, j = buf[i + 1], i + 2
    if length & 0x80:
        n = length & 0x7F
        length, j = int.from_bytes(buf[j:j + n], "big"), j + n
    check(j + length <= len(buf), "the CA certificate's DER is truncated")
    return tag, j, j + length


def _children(buf, start, end):
    out, i = [], start
    while i < end:
        tag, cs, ce = _der(buf, i)
        out.append((tag, i, cs, ce))
        i = ce
    return out


def _encode(tag, content):
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


# ASN.1 string types OpenSSL canonicalises (ASN1_MASK_CANON), with their decoders.
_CANON = {0x0C: "utf-8", 0x13: "latin-1", 0x14: "latin-1", 0x16: "latin-1", 0x1A: "latin-1",
          0x1E: "utf-16-be", 0x1C: "utf-32-be"}


def _canon_value(tag, raw):
    """OpenSSL's asn1_string_canon: to UTF-8, trim and squeeze ASCII whitespace, ASCII lower-case."""
    if tag not in _CANON:
        return _encode(tag, raw)
    text = raw.decode(_CANON[tag], errors="replace")
    text = re.sub(r"[ \t\n\v\f\r]+", " ", text).strip(" ")
    text = "".join(c.lower() if "A" <= c <= "Z" else c for c in text)
    return _encode(0x0C, text.encode("utf-8"))


def subject_hash(pem_text):
    """X509_NAME_hash (what `openssl x509 -subject_hash` prints, c_rehash's file name)
    of the first certificate in pem_text: SHA-1 of the canonical subject, first 4
    bytes little-endian."""
    m = re.search(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", pem_text, re.S)
    check(m, "--ca holds no PEM certificate")
    der = base64.b64decode("".join(m.group(1).split()))
    _, cs, ce = _der(der, 0)                       # Certificate
    _, _, tcs, tce = _children(der, cs, ce)[0]     # TBSCertificate
    fields = _children(der, tcs, tce)
    if fields[0][0] == 0xA0:                       # [0] version
        fields = fields[1:]
    _, _, scs, sce = fields[4]                     # serial, signature, issuer, validity, subject
    canon = b""
    for _, _, rcs, rce in _children(der, scs, sce):  # each RDN (a SET OF AttributeTypeAndValue)
        avas = []
        for _, _, acs, ace in _children(der, rcs, rce):
            (_, oid_i, _, oid_e), (vtag, _, vcs, vce) = _children(der, acs, ace)[:2]
            avas.append(_encode(0x30, der[oid_i:oid_e] + _canon_value(vtag, der[vcs:vce])))
        canon += _encode(0x31, b"".join(sorted(avas)))
    return "%08x" % int.from_bytes(hashlib.sha1(canon).digest()[:4], "little")


# --- Romeo: a raw XMPP client -------------------------------------------------

class Raw:
    """A minimal c2s client: STARTTLS, SASL PLAIN, bind; then stanzas in and out."""

    def __init__(self, args, deadline, jid, password):
        self.args, self.deadline = args, deadline
        self.jid, self.password = jid, password
        self.local, self.domain, self.resource = split_jid(jid)
        self.sock = None
        self.transcript = []      # ("SEND"|"RECV", text), PLAIN credentials redacted
        self.pending = []         # complete top-level elements not consumed yet

    def who(self):
        return f"{self.local} (raw client)"

    def connect(self):
        try:
            self.sock = socket.create_connection((self.args.host, int(self.args.port)),
                                                 timeout=max(0.5, min(5, self.deadline.left())))
        except OSError as e:
            raise Fail(f"{self.who()}: cannot connect to {self.args.host}:{self.args.port}: {e}") from None
        self.open_stream()
        features = self.expect(lambda e: e.tag == f"{{{NS_STREAMS}}}features", "stream features")
        check(features.find(f"{{{NS_TLS}}}starttls") is not None, f"{self.who()}: no STARTTLS offered: {show(features)}")
        self.send(f"<starttls xmlns='{NS_TLS}'/>")
        answer = self.expect(lambda e: e.tag in (f"{{{NS_TLS}}}proceed", f"{{{NS_TLS}}}failure"), "<proceed/>")
        check(answer.tag == f"{{{NS_TLS}}}proceed", f"{self.who()}: STARTTLS refused: {show(answer)}")
        context = ssl.create_default_context(cafile=self.args.ca)
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname=self.domain)
        except (ssl.SSLError, ssl.CertificateError) as e:
            raise Fail(f"{self.who()}: TLS handshake or certificate check against --ca failed: {e}") from None
        self.transcript.append(("TLS", f"{self.sock.version()}, certificate verified against {self.args.ca}"))
        self.open_stream()
        features = self.expect(lambda e: e.tag == f"{{{NS_STREAMS}}}features", "stream features after TLS")
        mechs = [m.text for m in features.iter(f"{{{NS_SASL}}}mechanism")]
        check("PLAIN" in mechs, f"{self.who()}: PLAIN not offered after STARTTLS: {mechs}")
        token = base64.b64encode(f"\0{self.local}\0{self.password}".encode()).decode()
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>", log="<auth mechanism='PLAIN'>(redacted)</auth>")
        answer = self.expect(lambda e: e.tag in (f"{{{NS_SASL}}}success", f"{{{NS_SASL}}}failure"), "SASL outcome")
        check(answer.tag == f"{{{NS_SASL}}}success", f"{self.who()}: SASL PLAIN failed: {show(answer)}")
        self.open_stream()
        features = self.expect(lambda e: e.tag == f"{{{NS_STREAMS}}}features", "stream features after SASL")
        check(features.find(f"{{{NS_BIND}}}bind") is not None, f"{self.who()}: no resource binding offered")
        self.send(f"<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'><resource>{escape(self.resource)}</resource></bind></iq>")
        iq = self.expect(lambda e: e.tag == f"{{{NS_CLIENT}}}iq" and e.get("id") == "bind1", "the bind result")
        check(iq.get("type") == "result", f"{self.who()}: bind failed: {show(iq)}")
        bound = iq.findtext(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid") or ""
        check(bound.split("/")[0] == f"{self.local}@{self.domain}", f"{self.who()}: bound to {bound!r}")
        self.bound = bound

    def open_stream(self):
        """Send a stream header and start a fresh parser (new stream after TLS and SASL)."""
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.send(f"<?xml version='1.0'?><stream:stream to={quoteattr(self.domain)} version='1.0' "
                  f"xml:lang='en' xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'>")

    def send(self, text, log=None):
        self.transcript.append(("SEND", log or text))
        try:
            self.sock.sendall(text.encode())
        except OSError as e:
            raise Fail(f"{self.who()}: send failed: {e}") from None

    def pump(self, timeout):
        """Read once (up to timeout seconds) and queue the complete top-level elements."""
        self.sock.settimeout(max(0.01, timeout))
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return
        except ssl.SSLWantReadError:
            return
        except OSError as e:
            raise Fail(f"{self.who()}: connection error: {e}") from None
        if not data:
            raise Fail(f"{self.who()}: the server closed the connection")
        self.transcript.append(("RECV", data.decode("utf-8", errors="replace")))
        try:
            self.parser.feed(data)
            for event, elem in self.parser.read_events():
                if event == "start":
                    self.depth += 1
                    if self.depth == 1:
                        self.root = elem
                else:
                    self.depth -= 1
                    if self.depth == 1:
                        self.pending.append(elem)
                        self.root.remove(elem)
        except ET.ParseError as e:
            raise Fail(f"{self.who()}: the server sent bad XML: {e}") from None
        for elem in self.pending:
            if elem.tag == f"{{{NS_STREAMS}}}error":
                raise Fail(f"{self.who()}: stream error from the server: {show(elem)}")

    def expect(self, predicate, what, timeout=5):
        until = min(time.monotonic() + timeout, self.deadline.end - 0.3)
        while True:
            for i, elem in enumerate(self.pending):
                if predicate(elem):
                    del self.pending[i]
                    return elem
            left = until - time.monotonic()
            check(left > 0, f"{self.who()}: no {what} (waited {timeout:g} s or up to the overall deadline)")
            self.pump(min(left, 0.2))

    def close(self):
        if self.sock is None:
            return
        try:
            self.sock.settimeout(0.5)
            self.sock.sendall(b"</stream:stream>")
            self.sock.close()
        except OSError:
            pass
        self.sock = None

    def dump(self):
        return "\n".join(f"{kind}: {text}" for kind, text in self.transcript)


def show(elem):
    """An element as text, namespaces abbreviated, for messages."""
    text = ET.tostring(elem, encoding="unicode")
    return text if len(text) < 600 else text[:600] + "…"


def muc_user_x(elem):
    return elem.find(f"{{{NS_MUC_USER}}}x")


def status_codes(elem):
    x = muc_user_x(elem)
    return {s.get("code") for s in x.findall(f"{{{NS_MUC_USER}}}status")} if x is not None else set()


# --- Juliet: Profanity in tmux ------------------------------------------------

class Profanity(terminal.TerminalClient):
    """Profanity in a private tmux server, with its own HOME, profrc, accounts and debug log."""

    name = "Profanity"
    program_name = session = "profanity"
    width, height = WIDTH, HEIGHT

    def __init__(self, args, deadline):
        super().__init__(args, deadline, "profanity-muc-", args.profanity, (".config", ".local/share", ".cache"))
        self.certs = self.home / "trusted-ca"
        self.profrc = self.config_home / "profanity" / "profrc"
        self.accounts = self.data_home / "profanity" / "accounts"
        self.debug_log = self.data_home / "profanity" / "logs" / "profanity.log"
        self.account = args.jid.split("/")[0]
        self.marker = self.account
        # SSL_CERT_FILE/SSL_CERT_DIR name nothing: OpenSSL's default store adds no
        # trust anchor, so only tls.certpath (the --ca copy) can verify the server.
        self.extra_env = [f"SSL_CERT_FILE={self.home / 'no-default-ca.pem'}",
                          f"SSL_CERT_DIR={self.home / 'no-default-ca.d'}"]

    # --- set-up -----------------------------------------------------------

    def prepare(self):
        a = self.args
        for d in (self.profrc.parent, self.accounts.parent, self.cache_home, self.certs):
            d.mkdir(parents=True, exist_ok=True)
        try:
            pem = Path(a.ca).read_text()
        except OSError as e:
            raise Fail(f"cannot read --ca {a.ca}: {e}") from None
        self.ca_hash = subject_hash(pem)
        ca = self.certs / f"{self.ca_hash}.0"
        ca.write_text(pem)
        local, domain, resource = split_jid(a.jid)
        # GKeyFile syntax. [connection] tls.certpath: an OpenSSL CApath (see the docstring).
        self.profrc.write_text(f"""[connection]
tls.certpath={self.certs}
carbons=false
receipts.request=false
mam=false
[logging]
chlog=false
grlog=false
[ui]
splash=false
occupants=true
occupants.size={OCCUPANTS_SIZE}
statuses.muc=all
wrap=false
[chatstates]
enabled=false
""")
        self.accounts.write_text(f"""[{self.account}]
enabled=true
jid={self.account}
server={a.host}
port={int(a.port)}
resource={resource}
password={a.password}
tls.policy=force
muc.nick={local}
""")
        self.hand_over()
        os.chmod(self.accounts, 0o600)   # has the password
        os.chmod(ca, 0o644)

    def preflight(self):
        """The unprivileged user can write its HOME and read its files."""
        super().preflight(self.certs / f"{self.ca_hash}.0", self.accounts, " (apt-get install profanity)")

    def start(self):
        super().start([self.program, "-l", "DEBUG", "-a", self.account])

    def input_line(self):
        """Profanity's input line: the pane's last line (below the status bar)."""
        lines = self.pane().rstrip("\n").split("\n")
        return lines[-1].strip() if lines else ""

    def type(self, text):
        """Type text, wait until the input line shows it, press Enter."""
        self.keys(text, literal=True)
        self.until(lambda: self.input_line().endswith(text),
                   lambda: f"Profanity's input line does not show {text!r}: {self.input_line()!r}",
                   exited="Profanity exited")
        self.keys("Enter")


# Things on Profanity's screen, or in its debug log, that end the check at once.
SCREEN_FAILURES = {
    "TLS certificate verification failed": "Profanity rejected the server's certificate (not verified against --ca)",
    "Use '/tls allow'": "Profanity asks to accept an unverified certificate",
    "Login failed.": "Profanity could not log in",
    "Lost connection.": "Profanity lost its connection",
    "Error joining room": "Profanity could not join the room",
    "Could not load configuration": "Profanity could not read its configuration",
}
LOG_FAILURES = {
    "Error joining room": "Profanity could not join the room",
    "Certificate verification failed": "libstrophe: the server's certificate did not verify against --ca",
    "SSL_CTX_load_verify_locations() failed": "libstrophe could not load tls.certpath",
    f'RECV: <error xmlns="{NS_STREAMS}"': "Profanity received a stream error",
    "Login failed": "Profanity could not log in",
}


def error_lines(text, needle):
    return "; ".join(line.strip() for line in text.splitlines() if needle in line)[:800]


def wait_for(prof, what, done, extra=None):
    """Poll Profanity's screen and log until done(screen, log) is true, or a failure shows."""
    def ready():
        screen, log = prof.pane(), prof.log()
        for needle, why in SCREEN_FAILURES.items():
            check(needle not in screen, f"{why}: {error_lines(screen, needle)!r} on its screen")
        for needle, why in LOG_FAILURES.items():
            check(needle not in log, f"{why}: {error_lines(log, needle)!r} in its debug log")
        if extra:
            extra()
        return (screen, log) if done(screen, log) else None

    return prof.until(ready, f"timed out ({prof.deadline.seconds:g} s) waiting for {what}",
                      exited=lambda dead: f"Profanity exited (status {dead}) while waiting for {what}")


def run(args, prof, romeo):
    room = args.room
    j_nick, r_nick = split_jid(args.jid)[0], split_jid(args.peer_jid)[0]
    prof.prepare()
    prof.preflight()
    prof.start()

    # 1. Profanity logs in, with STARTTLS and a certificate verified against --ca.
    screen, log = wait_for(prof, "Profanity to log in",
                           lambda s, l: "logged in successfully" in s)
    version = re.search(r"Welcome to Profanity, version (\S+)", screen)
    version = version.group(1) if version else "?"
    check(re.search(r'SENT: <starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"', log)
          and re.search(r"RECV: <proceed ", log), "no STARTTLS exchange in Profanity's debug log")
    check("Certificate verification passed" in log,
          "libstrophe did not report 'Certificate verification passed' (certificate not verified?)")
    check("XMPP_CONN_FLAG_TRUST_TLS" not in log, "Profanity connected with TRUST_TLS (no verification)")
    check(f"sock_connect() to {args.host}:{int(args.port)}" in log, f"Profanity did not connect to {args.host}:{args.port}")
    check("[TLS]" in screen, "Profanity's title bar does not show [TLS]")

    # 2. Juliet joins (creates) the room; unlock it with the instant-room form.
    prof.type(f"/join {room}")
    joined = f"You have joined the room as {j_nick}"

    def join_refused():
        # wrenhub's join errors carry no <x xmlns='…/muc'/>, so Profanity shows them as a
        # plain "Error from ROOM/NICK: text" rather than "Error joining room".
        log = prof.log()
        m = re.search(rf'RECV: <presence [^\n]*type="error"[^\n]*from="{re.escape(room)}/[^\n]*', log) or \
            re.search(rf'RECV: <presence [^\n]*from="{re.escape(room)}/[^\n]*type="error"[^\n]*', log)
        check(not m, f"the join of {room} was refused: {m.group(0)[m.group(0).find('<'):] if m else ''}")
        check(f"Error from {room}" not in prof.pane(), f"Profanity shows an error from {room}")

    screen, log = wait_for(prof, f"juliet to join {room}", lambda s, l: joined in s, extra=join_refused)
    check(re.search(rf'SENT: <presence [^\n]*to="{re.escape(room)}/{re.escape(j_nick)}"[^\n]*'
                    rf'<x xmlns="{re.escape(NS_MUC)}"/>', log),
          "Profanity's join presence (with <x xmlns='http://jabber.org/protocol/muc'/>) is not in its debug log")
    check("affiliation: owner" in screen, f"juliet is not the new room's owner: {error_lines(screen, joined)!r}")
    locked = "Room locked, requires configuration." in screen
    if locked:
        prof.type("/room accept")
        screen, log = wait_for(prof, "the room to be unlocked (/room accept)", lambda s, l: "Room unlocked." in s)
        check(re.search(r'SENT: <iq [^\n]*type="set"[^\n]*<query xmlns="http://jabber.org/protocol/muc#owner">'
                        r'<x xmlns="jabber:x:data" type="submit"/>', log),
              "no instant-room form (muc#owner submit) in Profanity's debug log")

    # 3. Romeo logs in and joins.
    romeo.connect()
    romeo.send(f"<presence to={quoteattr(room + '/' + r_nick)}><x xmlns='{NS_MUC}'/></presence>")
    occupant_from = f"{room}/{j_nick}"
    self_from = f"{room}/{r_nick}"

    def presence_from(jid):
        return lambda e: e.tag == f"{{{NS_CLIENT}}}presence" and e.get("from") == jid

    p = romeo.expect(lambda e: e.tag == f"{{{NS_CLIENT}}}presence" and e.get("from") in (occupant_from, self_from),
                     f"presence from {room}")
    check(p.get("type") != "error", f"romeo could not join {room}: {show(p)}")
    if p.get("from") == occupant_from:
        juliet_p = p
        own = romeo.expect(presence_from(self_from), f"romeo's self-presence from {self_from}")
    else:
        own, juliet_p = p, None
    check(own.get("type") in (None, "available"), f"romeo's join failed: {show(own)}")
    check("110" in status_codes(own), f"romeo's self-presence has no status 110: {show(own)}")
    check(juliet_p is not None, f"romeo got his self-presence before juliet's occupant presence ({occupant_from})")
    item = muc_user_x(juliet_p).find(f"{{{NS_MUC_USER}}}item") if muc_user_x(juliet_p) is not None else None
    check(item is not None and item.get("affiliation") == "owner",
          f"juliet's occupant presence does not say owner: {show(juliet_p)}")

    def occupants_panel_lists(screen, nick):
        # The occupants panel is the room window's right-hand OCCUPANTS_SIZE % of the pane:
        # a line that ends with the nick there.
        panel = WIDTH * (100 - OCCUPANTS_SIZE) // 100 - 2
        return any(line.rstrip().endswith(" " + nick) and line.rstrip().rfind(" " + nick) >= panel
                   for line in screen.splitlines())

    screen, log = wait_for(prof, "Profanity to show romeo joining",
                           lambda s, l: f"-> {r_nick} has joined the room" in s and occupants_panel_lists(s, r_nick),
                           extra=lambda: romeo.pump(0.01))

    # 4. Juliet types a message; romeo receives it from ROOM/juliet, type groupchat.
    tag = secrets.token_hex(4)
    from_juliet = f"juliet-says-{tag}"
    prof.type(from_juliet)

    def is_from_juliet(e):
        return e.tag == f"{{{NS_CLIENT}}}message" and e.findtext(f"{{{NS_CLIENT}}}body") == from_juliet

    got = romeo.expect(is_from_juliet, f"juliet's groupchat message {from_juliet!r}")
    check(got.get("type") == "groupchat", f"juliet's message reached romeo with type {got.get('type')!r}: {show(got)}")
    check(got.get("from") == occupant_from, f"juliet's message came from {got.get('from')!r}, not {occupant_from}")
    received = "".join(text for kind, text in romeo.transcript if kind == "RECV")
    check(f"<body>{from_juliet}</body>" in received, "the body is not in romeo's received bytes")
    screen, log = wait_for(prof, "juliet's own message in the room window",
                           lambda s, l: re.search(rf"\b{re.escape(j_nick)}: {re.escape(from_juliet)}", s))

    # 5. Romeo sends; the room reflects it to him, and Profanity shows it with his nick.
    from_romeo = f"romeo-says-{tag}"
    romeo.send(f"<message to={quoteattr(room)} type='groupchat' id='r-{tag}'><body>{from_romeo}</body></message>")
    echo = romeo.expect(lambda e: e.tag == f"{{{NS_CLIENT}}}message" and e.findtext(f"{{{NS_CLIENT}}}body") == from_romeo,
                        "the room's reflection of romeo's message")
    check(echo.get("type") == "groupchat" and echo.get("from") == self_from,
          f"romeo's reflection: {show(echo)}")
    screen, log = wait_for(prof, f"romeo's message {from_romeo!r} on Profanity's screen",
                           lambda s, l: re.search(rf"\b{re.escape(r_nick)}: {re.escape(from_romeo)}", s))
    check(re.search(rf'RECV: <message [^\n]*type="groupchat"[^\n]*from="{re.escape(self_from)}"[^\n]*{re.escape(from_romeo)}', log)
          or re.search(rf'RECV: <message [^\n]*from="{re.escape(self_from)}"[^\n]*type="groupchat"[^\n]*{re.escape(from_romeo)}', log),
          "Profanity's debug log has no groupchat message from romeo with the token")

    if args.show_screen:
        print(f"--- Profanity's screen (tmux capture-pane):\n{screen}", file=sys.stderr)

    # Leave politely (best effort: the tmux server is killed anyway).
    romeo.send(f"<presence to={quoteattr(self_from)} type='unavailable'/>")
    romeo.close()
    prof.quit(lambda: prof.type("/quit"), 2)

    print(f"profanity {version}: joined {room}{' (created, /room accept)' if locked else ''}, "
          f"sent and received in the room (romeo got {from_juliet!r} from {occupant_from}; "
          f"Profanity showed '{r_nick}: {from_romeo}'); TLS verified against --ca")


def main():
    args = parse_args()
    deadline = terminal.Deadline(float(args.timeout))
    prof = Profanity(args, deadline)
    romeo = Raw(args, deadline, args.peer_jid, args.peer_password)

    def report(screen):
        print(f"--- Profanity's screen (tmux capture-pane):\n{screen}", file=sys.stderr)
        print(f"--- Profanity's debug log ({prof.debug_log}):\n{prof.log()}", file=sys.stderr)
        print(f"--- romeo's raw stream:\n{romeo.dump()}", file=sys.stderr)

    terminal.main(args, prof, lambda: run(args, prof, romeo), report, close=romeo.close)


if __name__ == "__main__":
    main()
