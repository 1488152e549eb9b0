"""The web phase's clients (benches/run): XMPP over WebSocket (RFC 7395) in asyncio,
and one HTTPS request at a time over a blocking TLS socket for XEP-0363 transfers.

    ctx = tls_context(ca_file)
    ws = await WsXmpp.connect(port, "bench.test", ctx)     # wss://…/xmpp-websocket, subprotocol xmpp
    await ws.login("bench.test", "u0", PASSWORD, "r0")    # <open/>, SCRAM-SHA-1, bind
    await ws.ping("bench.test", "p1")                      # one iq round trip
    put, get, headers = await ws.upload_slot("upload.bench.test", "f.bin", size)
    tcp = await TcpXmpp.connect(c2s_port, "bench.test", ctx, "bench.test")  # STARTTLS
    status, seconds, sent = https_put(put, headers, data, ctx)  # the body from memory
    received, seconds, head = https_get(get, ctx)               # read, discarded

Everything goes to 127.0.0.1 whatever the URL's host: the host is only the TLS server
name (verified against the CA given) and the Host header. Both servers get the same
client: SCRAM-SHA-1 (Prosody's hashed storage offers no other SCRAM), no Origin (not
a browser), frames masked with a fresh key each (RFC 6455 §5.3).
"""

import asyncio
import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
UPLOAD = "urn:xmpp:http:upload:0"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def tls_context(ca_file):
    """Verifies the server's certificate against `ca_file` and its name."""
    return ssl.create_default_context(cafile=str(ca_file))


# -- WebSocket frames (RFC 6455 §5.2) ---------------------------------------------------

def masked_frame(opcode, payload):
    """One final client frame: masked, as a client must."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = os.urandom(4)
    key = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
    return head + mask + body


class StreamEnded(Exception):
    pass


def attr_is(text, name, value):
    """`name='value'` in either quoting (wrenhub writes ', Prosody ")."""
    return f"{name}='{value}'" in text or f'{name}="{value}"' in text


def local(element):
    return element.tag.rsplit("}", 1)[-1]


class Stream:
    """What both transports share: SCRAM-SHA-1 and bind over element()/send()."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    async def until(self, *names):
        """Elements up to the first named one of `names` (local names); returns it."""
        while True:
            element = await self.element()
            if local(element) in names:
                return element
            if local(element) == "error" and element.tag.startswith("{http://etherx.jabber.org/streams}"):
                raise StreamEnded(ET.tostring(element).decode())

    async def iq(self, stanza, id):
        """Sends an iq; returns the answer with its id (elements before it skipped)."""
        self.send(stanza)
        while True:
            answer = await self.until("iq")
            if answer.get("id") == id:
                return answer

    async def login(self, domain, user, password, resource):
        await self.open(domain)
        nonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = f"n={user},r={nonce}"
        self.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-1'>"
                  f"{base64.b64encode(('n,,' + first_bare).encode()).decode()}</auth>")
        challenge = await self.until("challenge", "failure")
        if local(challenge) != "challenge":
            raise RuntimeError(f"SCRAM-SHA-1 refused for {user}: {ET.tostring(challenge)}")
        server_first = base64.b64decode(challenge.text or "").decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        salted = hashlib.pbkdf2_hmac("sha1", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha1).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        auth_message = f"{first_bare},{server_first},{without_proof}".encode()
        signature = hmac.new(hashlib.sha1(client_key).digest(), auth_message, hashlib.sha1).digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
        self.send(f"<response xmlns='{SASL}'>"
                  f"{base64.b64encode(f'{without_proof},p={proof}'.encode()).decode()}</response>")
        outcome = await self.until("success", "failure")
        if local(outcome) != "success":
            raise RuntimeError(f"SCRAM-SHA-1 login of {user} failed: {ET.tostring(outcome)}")
        await self.open(domain)
        bound = await self.iq(f"<iq xmlns='jabber:client' type='set' id='bind'><bind xmlns='{BIND}'>"
                              f"<resource>{resource}</resource></bind></iq>", "bind")
        if bound.get("type") != "result":
            raise RuntimeError(f"bind failed: {ET.tostring(bound)}")

    async def close(self):
        """The stream's end, then the connection's (TLS close_notify included)."""
        try:
            self.send(self.CLOSE)
            await self.writer.drain()
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (OSError, ConnectionError, asyncio.TimeoutError, ssl.SSLError):
            pass


class WsXmpp(Stream):
    """One XMPP stream over a WebSocket (RFC 7395): each text message is one element."""

    CLOSE = f"<close xmlns='{FRAMING}'/>"

    @classmethod
    async def connect(cls, port, server_name, ctx, path="/xmpp-websocket"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=server_name)
        key = base64.b64encode(os.urandom(16))
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {server_name}:{port}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n".encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        if lines[0].split()[1:2] != ["101"] or fields.get("sec-websocket-accept") != accept \
                or fields.get("sec-websocket-protocol") != "xmpp":
            writer.close()
            raise RuntimeError(f"websocket upgrade refused: {head!r}")
        return cls(reader, writer)

    def send(self, text):
        self.writer.write(masked_frame(0x1, text.encode()))

    async def message(self):
        """The next text message (pings answered, fragments joined)."""
        parts = []
        while True:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            if b1 & 0x80:
                raise RuntimeError("a server frame was masked")
            payload = await self.reader.readexactly(n)
            opcode = b0 & 0x0F
            if opcode == 0x9:
                self.writer.write(masked_frame(0xA, payload))
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                raise StreamEnded(f"the server closed the WebSocket: {payload!r}")
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()

    async def element(self):
        text = await self.message()
        if text.startswith("<close"):
            raise StreamEnded(text)
        return ET.fromstring(text)

    async def open(self, domain):
        self.send(f"<open xmlns='{FRAMING}' to='{domain}' version='1.0'/>")
        return await self.until("features")

    async def ping(self, to, id):
        """One iq round trip (the answer matched on its text: no parse)."""
        self.send(f"<iq xmlns='jabber:client' type='get' id='{id}' to='{to}'><ping xmlns='urn:xmpp:ping'/></iq>")
        while True:
            text = await self.message()
            if text.startswith("<iq") and attr_is(text, "id", id):
                if not attr_is(text, "type", "result"):
                    raise RuntimeError(f"ping: {text}")
                return
            if text.startswith(("<close", "<stream:error")):
                raise StreamEnded(text)

    async def upload_slot(self, service, filename, size, content_type="application/octet-stream"):
        """XEP-0363 §5: (PUT URL, GET URL, headers the PUT must carry)."""
        answer = await self.iq(f"<iq xmlns='jabber:client' type='get' id='slot' to='{service}'><request "
                               f"xmlns='{UPLOAD}' filename='{filename}' size='{size}' "
                               f"content-type='{content_type}'/></iq>", "slot")
        slot = answer.find(f"{{{UPLOAD}}}slot")
        if slot is None:
            raise RuntimeError(f"no upload slot: {ET.tostring(answer)}")
        put, get = slot.find(f"{{{UPLOAD}}}put"), slot.find(f"{{{UPLOAD}}}get")
        headers = {h.get("name"): (h.text or "") for h in put.findall(f"{{{UPLOAD}}}header")}
        return put.get("url"), get.get("url"), headers


class TcpXmpp(Stream):
    """The same over TCP with STARTTLS (RFC 6120): the reference for WebSocket's cost."""

    CLOSE = "</stream:stream>"

    def __init__(self, reader, writer):
        super().__init__(reader, writer)
        self.ready = []

    @classmethod
    async def connect(cls, port, server_name, ctx, domain):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        stream = cls(reader, writer)
        await stream.open(domain)
        stream.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await stream.until("proceed")
        await writer.start_tls(ctx, server_hostname=server_name)
        return stream

    def send(self, text):
        self.writer.write(text.encode())

    async def open(self, domain):
        """A stream header, and a parser for the server's new stream."""
        self.parser, self.depth = ET.XMLPullParser(events=("start", "end")), 0
        self.send(f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
                  "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
        return await self.until("features")

    async def element(self):
        while not self.ready:
            data = await self.reader.read(65536)
            if not data:
                raise StreamEnded("the server closed the connection")
            self.parser.feed(data)
            for event, element in self.parser.read_events():
                self.depth += 1 if event == "start" else -1
                if event == "end" and self.depth == 1:
                    self.ready.append(element)
                elif event == "end" and self.depth == 0:
                    raise StreamEnded("the server ended the stream")
        return self.ready.pop(0)


# -- the measurements (each in an event loop of its own) ---------------------------------

def ws_connector(port, server_name, ctx):
    return lambda: WsXmpp.connect(port, server_name, ctx)


def tcp_connector(port, server_name, ctx, domain):
    return lambda: TcpXmpp.connect(port, server_name, ctx, domain)


async def _open_sessions(connect, domain, users, password, n, concurrency=50):
    """n sessions logged in and bound, `concurrency` logins at a time; the
    accounts u0 … u{users-1} in turn, resources r0 … r{n-1}."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i):
        async with sem:
            stream = await connect()
            await stream.login(domain, f"u{i % users}", password, f"r{i}")
            return stream

    return await asyncio.gather(*(one(i) for i in range(n)))


def hold_sessions(connect, domain, users, password, n, then, rest=1.0):
    """Logs in n idle sessions, calls then() while they are held (after `rest`
    seconds), closes them; returns then()'s value."""

    async def run():
        sessions = await _open_sessions(connect, domain, users, password, n)
        await asyncio.sleep(rest)
        value = then()
        await asyncio.gather(*(s.close() for s in sessions))
        return value

    return asyncio.run(run())


def ping_rate(connect, domain, users, password, sessions, seconds, cpu):
    """`sessions` WebSocket sessions each doing sequential pings (iq get to the
    server) for `seconds`: (round trips per second in all, round trips in all,
    cpu()'s growth meanwhile, this client's CPU seconds / wall seconds)."""

    async def run():
        conns = await _open_sessions(connect, domain, users, password, sessions)
        for ws in conns:
            await ws.ping(domain, "warm")
        counts = [0] * sessions
        deadline = time.monotonic() + seconds

        async def loop(k, ws):
            while time.monotonic() < deadline:
                await ws.ping(domain, f"p{counts[k]}")
                counts[k] += 1

        cpu0, client0, t0 = cpu(), time.process_time(), time.monotonic()
        await asyncio.gather(*(loop(k, ws) for k, ws in enumerate(conns)))
        wall = time.monotonic() - t0
        used, client = cpu() - cpu0, time.process_time() - client0
        await asyncio.gather(*(ws.close() for ws in conns))
        return sum(counts) / wall, sum(counts), used, client / wall

    return asyncio.run(run())


def request_slot(connect, domain, password, service, size):
    """u0 asks `service` for a slot of `size` bytes: (PUT URL, GET URL, PUT headers)."""

    async def run():
        ws = await connect()
        await ws.login(domain, "u0", password, "upload")
        slot = await ws.upload_slot(service, "f.bin", size)
        await ws.close()
        return slot

    return asyncio.run(run())


# -- HTTPS transfers ---------------------------------------------------------------------

CHUNK = 1 << 20


def _https(url, ctx):
    u = urllib.parse.urlsplit(url)
    raw = socket.create_connection(("127.0.0.1", u.port or 443), timeout=120)
    sock = ctx.wrap_socket(raw, server_hostname=u.hostname)
    target = u.path + (f"?{u.query}" if u.query else "")
    return sock, target, u.netloc


def _response_head(sock):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"the connection closed before a response: {head!r}")
        head += chunk
    at = head.index(b"\r\n\r\n") + 4
    text = head[:at].decode("latin-1")
    lines = text.split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    return int(lines[0].split()[1]), fields, head[at:]


def https_put(url, headers, data, ctx, content_type="application/octet-stream"):
    """PUT `data` (bytes) from memory in 1 MiB writes: (status, seconds from the
    first byte of the request to the response's head, seconds to the last byte sent)."""
    sock, target, host = _https(url, ctx)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head = (f"PUT {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(data)}\r\n"
            f"Content-Type: {content_type}\r\n{extra}Connection: close\r\n\r\n").encode()
    view = memoryview(data)
    t0 = time.perf_counter()
    sock.sendall(head)
    for at in range(0, len(data), CHUNK):
        sock.sendall(view[at:at + CHUNK])
    sent = time.perf_counter() - t0
    status, fields, _ = _response_head(sock)
    took = time.perf_counter() - t0
    sock.close()
    return status, took, sent


def https_get(url, ctx):
    """GET into a reused 1 MiB buffer, discarded: (bytes of the body, seconds from
    the request to its last byte, the body's first 64 KiB)."""
    sock, target, host = _https(url, ctx)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    t0 = time.perf_counter()
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    status, fields, rest = _response_head(sock)
    if status != 200:
        raise RuntimeError(f"GET {url}: {status} {fields}")
    length = int(fields["content-length"])
    got, first = len(rest), bytearray(rest[:65536])
    while got < length:
        n = sock.recv_into(view)
        if not n:
            break
        if len(first) < 65536:
            first += view[:min(n, 65536 - len(first))]
        got += n
    took = time.perf_counter() - t0
    sock.close()
    return got, took, bytes(first)


class PeakRss:
    """VmRSS of `pid` just before (`before`), and the most seen sampling every
    `interval` s until the with-block ends (`peak`, the last sample included)."""

    def __init__(self, pid, read_rss, interval=0.02):
        self.pid, self.read, self.interval = pid, read_rss, interval

    def __enter__(self):
        self.before = self.peak = self.read(self.pid)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(self.interval):
            self.peak = max(self.peak, self.read(self.pid))

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.read(self.pid))
        self.growth = self.peak - self.before
