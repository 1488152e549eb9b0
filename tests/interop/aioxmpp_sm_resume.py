"""aioxmpp's XEP-0198 support resumes a dropped session, and nothing is lost.

    aioxmpp_sm_resume.py --port P --ca CA.pem --jid juliet@localhost/balcony --password balcony \
                         --peer-jid romeo@localhost/orchard --peer-password montague

The aioxmpp (0.13) twin of sm_resume.py (slixmpp): a second client library. Juliet logs
in with aioxmpp (STARTTLS to --host:--port, the certificate verified against --ca and
the domain); the server enables stream management with resumption. She sends presence
and pings the server. Her TCP connection is cut (no </stream>). Romeo (aioxmpp too)
sends her full JID a message while she is away and pings the server, so it has been
routed. Then she may reconnect: aioxmpp resumes the session (on_stream_resumed, the
same SM id, no second on_stream_established, no on_stream_destroyed), and the message
arrives exactly once (a ping after it shows nothing else is coming).

Self-contained, since check.py imports slixmpp: the same options (and XMPP_* environment
variables) and exit codes: 0 on success, or 1 after printing what went wrong and
aioxmpp's XML log. A hard timeout (--timeout, default 20 s) means it can never hang.
"""

import argparse
import asyncio
import io
import logging
import os
import signal
import socket
import sys
from datetime import timedelta
from pathlib import Path

import aioxmpp
import aioxmpp.connector
import aioxmpp.dispatcher
import aioxmpp.errors
import aioxmpp.node
import aioxmpp.ping
import aioxmpp.security_layer
import OpenSSL.SSL
from cryptography import x509 as cx509


class Fail(Exception):
    """The check failed; the message says how."""


def check(condition, message):
    if not condition:
        raise Fail(message)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options = [
        ("--host", "127.0.0.1", "server address"),
        ("--port", None, "client (STARTTLS) port"),
        ("--tls-port", None, "Direct TLS port (XEP-0368; unused here)"),
        ("--ca", None, "CA certificate (PEM) that signed the server's certificate"),
        ("--jid", "juliet@localhost/balcony", "account to log in with (full JID)"),
        ("--password", "balcony", "its password"),
        ("--peer-jid", "romeo@localhost/orchard", "the other account (full JID)"),
        ("--peer-password", "montague", "its password"),
        ("--timeout", "20", "hard limit for the whole check, in seconds"),
    ]
    for name, default, help_text in options:
        env = "XMPP_" + name[2:].upper().replace("-", "_")
        parser.add_argument(name, default=os.environ.get(env, default), help=f"{help_text} (env {env})")
    parser.add_argument("--debug", action="store_true", help="print aioxmpp's XML log as it happens")
    args = parser.parse_args()
    if args.ca is None:
        parser.error("--ca (or XMPP_CA) is required")
    if args.port is None:
        parser.error("--port (or XMPP_PORT) is required")
    return args


# Only ever connect to --host: when every override_peer option fails, aioxmpp would go
# on to SRV/A look-ups for the domain ("localhost"), so make that discovery find nothing.
async def _no_dns(domain, loop=None, logger=None):
    return []


aioxmpp.node.discover_connectors = _no_dns


class CAVerifier(aioxmpp.security_layer.CertificateVerifier):
    """PKIX verification against --ca only (not the system's CAs), and the leaf
    certificate must name the domain (a subjectAltName dNSName). aioxmpp's own
    PKIXCertificateVerifier cannot be used: its host name check calls
    X509.get_extension(), which pyOpenSSL 26.2 removed (AttributeError with any
    certificate that has extensions), and it also trusts the system's CAs."""

    def __init__(self, ca, problems):
        self.ca = ca
        self.problems = problems  # shared by the client's connections, for the report
        self.leaf_checked = False

    def setup_context(self, ctx, transport):
        self.transport = transport
        ctx.load_verify_locations(str(self.ca))
        ctx.set_verify(OpenSSL.SSL.VERIFY_PEER | OpenSSL.SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self.verify_callback)

    def verify_callback(self, conn, cert, errno, depth, ok):
        cert = cert.to_cryptography()
        if not ok:
            self.problems.append(f"{cert.subject.rfc4514_string()} (depth {depth}): OpenSSL error {errno}")
            return False
        if depth == 0:
            domain = self.transport.get_extra_info("server_hostname")
            try:
                san = cert.extensions.get_extension_for_class(cx509.SubjectAlternativeName)
                names = san.value.get_values_for_type(cx509.DNSName)
            except cx509.ExtensionNotFound:
                names = []
            if not any(_name_matches(name, domain) for name in names):
                self.problems.append(f"certificate for {names} does not name {domain!r}")
                return False
            self.leaf_checked = True
        return True

    async def post_handshake(self, transport):
        if not self.leaf_checked:
            raise aioxmpp.errors.TLSFailure(f"certificate verification failed: {self.problems}")


def _name_matches(pattern, domain):
    pattern, domain = pattern.lower().rstrip("."), domain.lower().rstrip(".")
    if pattern.startswith("*."):  # one whole leftmost label
        head, _, rest = domain.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == domain


class GatedSTARTTLS(aioxmpp.connector.STARTTLSConnector):
    """aioxmpp's STARTTLS connector, which waits for `gate` before it connects (so the
    check decides when a reconnection may start: aioxmpp reconnects by itself) and
    keeps the transports it made (so the check can cut one)."""

    def __init__(self):
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.transports = []

    async def connect(self, loop, metadata, domain, host, port, negotiation_timeout, base_logger=None):
        await self.gate.wait()
        result = await super().connect(loop, metadata, domain, host, port, negotiation_timeout, base_logger)
        self.transports.append(result[0])
        return result


def first(sig):
    """A future for the next emission of an aioxmpp signal: its argument (or None).
    Unlike Signal.future(), an exception argument is a result, not raised."""
    future = asyncio.get_running_loop().create_future()

    def handler(*args):
        if not future.done():
            future.set_result(args[0] if args else None)
        return True  # disconnect

    sig.connect(handler)
    return future


def count(sig):
    """A list that grows by one entry (the arguments) at each emission of `sig`."""
    seen = []

    def handler(*args):
        seen.append(args)

    sig.connect(handler)
    return seen


async def bounded(awaitable, seconds, what):
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except asyncio.TimeoutError:
        raise Fail(f"timed out waiting for {what}") from None


def new_client(args, jid, password):
    """An aioxmpp Client for `jid` that connects only to --host:--port with STARTTLS,
    verifying the server against --ca. Returns (client, connector)."""
    jid = aioxmpp.JID.fromstr(jid)
    tls_problems = []
    security = aioxmpp.security_layer.SecurityLayer(
        ssl_context_factory=aioxmpp.security_layer.default_ssl_context,
        certificate_verifier_factory=lambda: CAVerifier(Path(args.ca), tls_problems),
        tls_required=True,
        sasl_providers=(aioxmpp.security_layer.PasswordSASLProvider(_once(password)),),
    )
    connector = GatedSTARTTLS()
    client = aioxmpp.Client(
        jid,
        security,
        override_peer=[(args.host, int(args.port), connector)],
        negotiation_timeout=timedelta(seconds=5),
        max_initial_attempts=1,  # a failed first login is reported, not retried
        logger=logging.getLogger(f"aioxmpp.{jid.localpart}"),
    )
    client.backoff_start = timedelta(seconds=0.05)  # reconnect at once (the gate decides when)
    client.tls_problems = tls_problems
    return client, connector


def _once(password):
    async def provide(jid, attempt):
        return password if attempt == 0 else None

    return provide


async def start(client):
    """Starts `client` and waits for its stream; Fail if it does not come up."""
    established, failed = first(client.on_stream_established), first(client.on_failure)
    client.start()
    done, _ = await asyncio.wait({established, failed}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    check(done, f"{client.local_jid}: timed out waiting for the stream")
    if established not in done:
        tls = f" (certificate: {'; '.join(client.tls_problems)})" if client.tls_problems else ""
        raise Fail(f"{client.local_jid}: {failed.result()!r}{tls}")


async def ping_server(client):
    """An iq round trip to the client's server (XEP-0199)."""
    try:
        await asyncio.wait_for(aioxmpp.ping.ping(client, aioxmpp.JID(None, client.local_jid.domain, None)), 5)
    except asyncio.TimeoutError:
        raise Fail(f"{client.local_jid}: no answer to a ping within 5 s") from None


async def stop(client):
    """</stream> (after a last SM ack), waiting up to 5 s for the client to stop."""
    if client.running:
        stopped = first(client.on_stopped)
        client.stop()
        await bounded(stopped, 5, f"{client.local_jid} to stop")


def drain(queue):
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def show(msg):
    return f"<message from={msg.from_} to={msg.to} type={msg.type_} body={dict(msg.body)}>"


async def run(args):
    juliet, juliet_connector = new_client(args, args.jid, args.password)
    romeo, _ = new_client(args, args.peer_jid, args.peer_password)
    try:
        await scenario(juliet, juliet_connector, romeo)
    except BaseException:  # report the first problem, not one while stopping
        await asyncio.gather(stop(juliet), stop(romeo), return_exceptions=True)
        raise
    await asyncio.gather(stop(juliet), stop(romeo))


async def scenario(juliet, connector, romeo):
    established = count(juliet.on_stream_established)
    destroyed = count(juliet.on_stream_destroyed)
    inbox = asyncio.Queue()
    juliet.summon(aioxmpp.dispatcher.SimpleMessageDispatcher).register_callback(None, None, inbox.put_nowait)

    await start(juliet)
    stream = juliet.stream
    check(stream.sm_enabled, "stream management was not enabled")
    check(stream.sm_resumable, "resumption not offered (<enabled/> without resume='true')")
    sm_id = stream.sm_id
    # aioxmpp reconnects first to an <enabled location=...>, with its own (ungated) connector.
    check(not stream.sm_location, f"the server asks to resume at {stream.sm_location}: not covered by this check")
    full_jid = juliet.local_jid
    print(f"{full_jid}: stream management on, resumable (id {sm_id!r}, max {stream.sm_max})")
    await juliet.send(aioxmpp.Presence(type_=aioxmpp.PresenceType.AVAILABLE))
    await ping_server(juliet)

    await start(romeo)
    suspended, resumed = first(juliet.on_stream_suspended), first(juliet.on_stream_resumed)
    connector.gate.clear()  # no reconnection until romeo's message has been routed
    # Cut the TCP connection under TLS: no </stream>, no close_notify, the server gets
    # a FIN and aioxmpp's next read an unexpected EOF. (transport.abort() would not do:
    # aioxmpp takes the connection_lost(None) that follows as a stop it asked for, and
    # neither reports a failure nor reconnects.)
    connector.transports[-1].get_extra_info("socket").shutdown(socket.SHUT_RDWR)
    reason = await bounded(suspended, 5, "aioxmpp to notice the cut")
    print(f"juliet's connection cut ({reason!r})")

    body = "while you were away"
    msg = aioxmpp.Message(type_=aioxmpp.MessageType.CHAT, to=full_jid)
    msg.body[None] = body
    await bounded(romeo.send(msg), 5, "romeo's message to be sent")
    await ping_server(romeo)
    check(not drain(inbox), "a message arrived while disconnected")

    connector.gate.set()
    # on_stream_resumed alone proves nothing: aioxmpp 0.13 also emits it after a failed
    # <resume/> and a fresh bind. Then it emits on_stream_destroyed and a second
    # on_stream_established first, and the SM id changes.
    await bounded(resumed, 10, "the session to resume")
    check(not destroyed, f"resumption failed: aioxmpp destroyed the stream ({destroyed}) and started a new one")
    check(len(established) == 1, f"a new session started instead of the old one resuming ({len(established)} streams)")
    check(len(connector.transports) == 2, f"{len(connector.transports)} connections, expected 2")
    check(stream.sm_enabled, "stream management is off after the resumption")
    check(stream.sm_id == sm_id, f"SM id {stream.sm_id!r} after the resumption, was {sm_id!r}")
    check(juliet.local_jid == full_jid, f"resumed as {juliet.local_jid}, not {full_jid}")
    print(f"resumed {juliet.local_jid} (SM id {sm_id!r}, h={stream.sm_inbound_ctr})")

    got = await bounded(inbox.get(), 5, "the message sent while juliet was away")
    check(
        list(got.body.values()) == [body] and got.from_ == romeo.local_jid and got.type_ == aioxmpp.MessageType.CHAT,
        f"juliet received {show(got)}",
    )
    await ping_server(juliet)
    extra = drain(inbox)
    check(not extra, f"received twice or more: {[show(m) for m in extra]}")
    check(not destroyed and len(established) == 1, "the stream was re-established after the resumption")


def main():
    args = parse_args()
    timeout = float(args.timeout)
    signal.alarm(int(timeout) + 10)  # last resort if the event loop itself is stuck
    xml_log = io.StringIO()
    handler = logging.StreamHandler(sys.stderr if args.debug else xml_log)
    handler.setFormatter(logging.Formatter("%(relativeCreated)6d %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.DEBUG, handlers=[handler])
    name = Path(sys.argv[0]).name
    try:
        asyncio.run(asyncio.wait_for(run(args), timeout))
    except Fail as e:
        problem = str(e)
    except asyncio.TimeoutError:
        problem = f"timed out after {timeout:g} s"
    except Exception as e:  # a bug in the check or in aioxmpp: show it all
        logging.exception("unexpected exception")
        problem = f"unexpected {type(e).__name__}: {e}"
    else:
        print(f"{name}: OK (aioxmpp {aioxmpp.__version__})")
        sys.exit(0)
    print(f"{name}: FAILED: {problem}", file=sys.stderr)
    if not args.debug:
        print("--- aioxmpp debug log (SEND/RECV lines are the XML) ---", file=sys.stderr)
        print(xml_log.getvalue(), file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
