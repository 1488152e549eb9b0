"""A throwaway Prosody 0.12 instance as a federation (server-to-server) peer, on loopback.

    from prosody_peer import ProsodyPeer, TestCA, free_port

    ca = TestCA(tmp / "ca")                      # openssl CLI, ECDSA P-256
    cert, key = ca.issue("prosody.test")         # SAN DNS:prosody.test (+ id-on-xmppAddr)
    peer = ProsodyPeer(tmp / "prosody", "prosody.test", free_port(), free_port(),
                       routes={"hub.test": ("127.0.0.1", hub_s2s_port)},
                       cert_file=cert, key_file=key, ca_file=ca.cert_file,
                       s2s_secure_auth=True, users=[("romeo", "montague")])
    with peer:                                   # start() ... stop()
        ...                                      # peer.log_text(), peer.wait_for_log(...)

Prosody runs in the foreground (`prosody -F --config FILE`) as the current user (root is
fine: run_as_root, mod_posix disabled), only on 127.0.0.1, with its config, data, log
and certificates under work_dir. Outgoing s2s goes only where `routes` says (see
prosody/mod_static_s2s_routes.lua); any other domain fails at once (routes_only).

Self-test: `python3 tests/interop/prosody_peer.py` federates two Prosody instances
(a.test, b.test) and runs tests/interop/federation.py (slixmpp) against them: with
certificate auth (SASL EXTERNAL), with dialback (no CA trusted), refused (secure auth,
no CA), and over Direct TLS s2s (XEP-0368). Python standard library only; slixmpp is
needed only by the self-test's client script (target/interop-venv or $WRENHUB_PYTHON).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import peer_process
from peer_process import PeerProcess, die_with_parent

__all__ = ["ProsodyPeer", "ProsodyError", "TestCA", "free_port", "wait_for_port"]

HERE = Path(__file__).resolve().parent
PLUGIN_DIR = HERE / "prosody"


class ProsodyError(Exception):
    """Prosody could not be configured, started, or did not become ready."""


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, host="127.0.0.1", deadline=None, alive=lambda: True):
    """True once host:port accepts a TCP connection; False at `deadline`
    (time.monotonic()) or when alive() turns false."""
    while True:
        if not alive():
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            pass
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _run(cmd, timeout=30, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        raise ProsodyError(f"{' '.join(map(str, cmd))} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout


class TestCA:
    """A private CA made with the openssl CLI (ECDSA P-256, which LuaSec handles), and
    the server certificates it issues: subjectAltName DNS:<domain> and, unless
    xmpp_addr=False, otherName id-on-xmppAddr;UTF8:<domain>. Extended key usage
    serverAuth + clientAuth, since s2s certificates are presented in both roles."""

    def __init__(self, directory, name="Interop Test CA", days=30):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert_file = self.dir / "ca.pem"
        self.key_file = self.dir / "ca.key"
        self.days = days
        _run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", self.key_file])
        ext = self.dir / "ca.ext"
        ext.write_text(
            "[req]\ndistinguished_name = dn\n[dn]\n[v3_ca]\n"
            "basicConstraints = critical, CA:TRUE\n"
            "keyUsage = critical, keyCertSign, cRLSign\n"
            "subjectKeyIdentifier = hash\n"
        )
        _run(["openssl", "req", "-new", "-x509", "-key", self.key_file, "-out", self.cert_file,
              "-days", str(days), "-subj", f"/CN={name}", "-config", ext, "-extensions", "v3_ca", "-sha256"])

    def issue(self, domain, xmpp_addr=True, dns=True, out_dir=None):
        """(cert_file, key_file) for `domain`, signed by this CA."""
        out = Path(out_dir) if out_dir else self.dir
        out.mkdir(parents=True, exist_ok=True)
        key, csr, cert = out / f"{domain}.key", out / f"{domain}.csr", out / f"{domain}.pem"
        ext = out / f"{domain}.ext"
        sans = []
        if dns:
            sans.append(f"DNS:{domain}")
        if xmpp_addr:
            sans.append(f"otherName:1.3.6.1.5.5.7.8.5;UTF8:{domain}")
        ext.write_text(
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature, keyEncipherment\n"
            "extendedKeyUsage = serverAuth, clientAuth\n"
            + (f"subjectAltName = {', '.join(sans)}\n" if sans else "")
        )
        _run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key])
        _run(["openssl", "req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={domain}"])
        _run(["openssl", "x509", "-req", "-in", csr, "-CA", self.cert_file, "-CAkey", self.key_file,
              "-CAcreateserial", "-out", cert, "-days", str(self.days), "-sha256", "-extfile", ext])
        os.chmod(key, 0o644)  # readable whichever user Prosody ends up as
        return cert, key


def _lua(value):
    """A Python value as a Lua literal (str, bool, int, list/tuple, dict)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (str, Path)):
        s = str(value)
        return '"' + "".join(
            c if c.isprintable() and c not in '"\\' else f"\\{ord(c):03d}" for c in s
        ) + '"'
    if isinstance(value, (list, tuple)):
        return "{ " + "; ".join(_lua(v) for v in value) + " }"
    if isinstance(value, dict):
        return "{ " + "; ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no Lua literal for {value!r}")


class ProsodyPeer(PeerProcess):
    """One Prosody serving `domain`: c2s (STARTTLS, required) on c2s_port, s2s
    (STARTTLS, required) on s2s_port, optionally Direct TLS s2s (XEP-0368) on
    s2s_direct_tls_port; all on 127.0.0.1.

    routes: {domain: (host, port)} for STARTTLS s2s, or (host, port, "direct_tls") to
      reach that domain with Direct TLS. Unrouted domains are unreachable (no DNS).
    cert_file/key_file: PEM certificate (chain) and key for `domain`, used for c2s and
      for s2s in both directions (Prosody presents it as a client certificate too).
    ca_file: PEM CAs trusted to verify peers' s2s certificates, or None to trust none
      (the system store is never used: capath points at an empty directory).
    s2s_secure_auth: True = peers must present a valid certificate for their domain
      (then Prosody authenticates with SASL EXTERNAL where offered); False = untrusted
      peers may still authenticate with dialback (always enabled).
    users: [(user, password)] registered at start() (start(users=...) adds more).
    extra_modules / extra_config: more modules_enabled entries / raw global Lua config.
    components: raw Lua after the VirtualHost (e.g. a `Component ... "muc"`).
    https_ports: ports of Prosody's HTTPS server (mod_http: mod_websocket,
      mod_http_file_share), with the same certificate; none by default.
    routes_only: unrouted domains fail at once (True) or go to DNS (False).
    die_with_parent: Prosody gets SIGTERM if the thread that started it dies (Linux);
      set False when starting it from a short-lived thread.
    """

    def __init__(self, work_dir, domain, c2s_port, s2s_port, routes=None, cert_file=None, key_file=None,
                 ca_file=None, s2s_secure_auth=True, users=(), s2s_direct_tls_port=None, extra_modules=(),
                 extra_config="", routes_only=True, die_with_parent=True, prosody="prosody",
                 prosodyctl="prosodyctl", components="", https_ports=()):
        self.work_dir = Path(work_dir).resolve()
        self.domain = domain
        self.c2s_port = int(c2s_port)
        self.s2s_port = int(s2s_port)
        self.s2s_direct_tls_port = int(s2s_direct_tls_port) if s2s_direct_tls_port else None
        self.routes = dict(routes or {})
        if not (cert_file and key_file):
            raise ProsodyError("cert_file and key_file are required (c2s and s2s both require TLS)")
        self.cert_file = Path(cert_file).resolve()
        self.key_file = Path(key_file).resolve()
        self.ca_file = Path(ca_file).resolve() if ca_file else None
        self.s2s_secure_auth = bool(s2s_secure_auth)
        self.users = list(users)
        self.extra_modules = list(extra_modules)
        self.extra_config = extra_config
        self.components = components
        self.https_ports = [int(p) for p in https_ports]
        self.routes_only = routes_only
        self.die_with_parent = die_with_parent
        self.prosody = prosody
        self.prosodyctl = prosodyctl
        self.config_file = self.work_dir / "prosody.cfg.lua"
        self.data_dir = self.work_dir / "data"
        self.log_file = self.work_dir / "prosody.log"
        self.console_file = self.work_dir / "console.log"  # Prosody's stdout/stderr
        self.process = None

    # -- configuration -----------------------------------------------------------

    def config_text(self):
        routes = {}
        for domain, route in self.routes.items():
            host, port, *kind = route
            if kind and kind[0] not in ("direct_tls", "starttls"):
                raise ProsodyError(f"route to {domain}: kind {kind[0]!r} is neither 'direct_tls' nor 'starttls'")
            routes[domain.lower()] = {"host": str(host), "port": int(port),
                                      "direct_tls": bool(kind) and kind[0] == "direct_tls"}
        ssl = {"certificate": self.cert_file, "key": self.key_file, "capath": self.work_dir / "empty-capath"}
        if self.ca_file:
            ssl["cafile"] = self.ca_file
        modules = ["roster", "saslauth", "tls", "dialback", "disco", "ping", "presence",
                   "static_s2s_routes"] + self.extra_modules
        direct = [self.s2s_direct_tls_port] if self.s2s_direct_tls_port else []
        settings = [
            ("run_as_root", True),  # we may be root; never switch user
            ("modules_disabled", ["posix"]),  # no daemonizing, pidfile or setuid
            ("plugin_paths", [PLUGIN_DIR]),
            ("data_path", self.data_dir),
            ("certificates", self.work_dir / "certs"),  # an empty folder: no automatic certs
            ("storage", "internal"),
            ("authentication", "internal_hashed"),
            ("allow_registration", False),
            ("interfaces", ["127.0.0.1"]),
            ("local_interfaces", ["127.0.0.1"]),
            ("use_ipv6", False),
            ("c2s_ports", [self.c2s_port]),
            ("s2s_ports", [self.s2s_port]),
            ("c2s_direct_tls_ports", []),
            ("s2s_direct_tls_ports", direct),
            ("legacy_ssl_ports", []),
            ("component_ports", []),
            ("http_ports", []),
            ("https_ports", self.https_ports),
            ("c2s_require_encryption", True),
            ("s2s_require_encryption", True),
            ("s2s_secure_auth", self.s2s_secure_auth),
            ("s2s_timeout", 10),  # give up on an s2s connection within 10 s
            ("ssl", ssl),
            ("static_s2s_routes", routes),
            ("static_s2s_routes_only", bool(self.routes_only)),
            ("modules_enabled", modules),
        ]
        lines = ["-- Written by tests/interop/prosody_peer.py; rewritten on every start()."]
        lines += [f"{name} = {_lua(value)}" for name, value in settings]
        # A config of its own may say where the log goes (Prosody refuses an option set twice).
        if not any(line.startswith("log =") for line in self.extra_config.splitlines()):
            lines.append(f"log = {{ {{ levels = {{ min = \"debug\" }}, to = \"file\", filename = {_lua(self.log_file)} }} }}")
        if self.extra_config:
            lines.append(self.extra_config)
        lines.append(f"VirtualHost {_lua(self.domain)}")
        if self.components:
            lines.append(self.components)
        return "\n".join(lines) + "\n"

    def write_config(self):
        for d in (self.work_dir, self.data_dir, self.work_dir / "certs", self.work_dir / "empty-capath"):
            d.mkdir(parents=True, exist_ok=True)
        # prosodyctl and Prosody both run as the current user (run_as_root = true keeps
        # them from switching to the "prosody" user), so no chown is needed.
        self.config_file.write_text(self.config_text())

    def register(self, user, password):
        _run([self.prosodyctl, "--config", self.config_file, "register", user, self.domain, password], timeout=20)

    # -- life cycle --------------------------------------------------------------

    def start(self, users=(), timeout=15):
        """Writes the config, registers the users, starts `prosody -F` and waits (at
        most `timeout` s) until its c2s and s2s ports accept connections."""
        if self.process:
            raise ProsodyError(f"{self.domain}: already started")
        self.write_config()
        for user, password in self.users + list(users):
            self.register(user, password)
        if self.log_file.exists():
            self.log_file.unlink()
        with open(self.console_file, "wb") as console:
            self.process = subprocess.Popen(
                [self.prosody, "-F", "--config", str(self.config_file)],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                cwd=self.work_dir, start_new_session=True,  # a ^C to the tests is not for Prosody
                preexec_fn=die_with_parent if self.die_with_parent else None,
            )
        self.track()
        deadline = time.monotonic() + timeout
        alive = lambda: self.process.poll() is None  # noqa: E731
        for port in [self.c2s_port, self.s2s_port] + ([self.s2s_direct_tls_port] if self.s2s_direct_tls_port else []):
            if not wait_for_port(port, deadline=deadline, alive=alive):
                code = self.process.poll()
                self.stop()
                why = f"exited with {code}" if code is not None else f"port {port} not open after {timeout} s"
                raise ProsodyError(f"Prosody for {self.domain} {why}\n--- console ---\n{self.console_text()}"
                                   f"\n--- log (tail) ---\n{self.log_tail()}")
        return self


    def wait_for_log(self, pattern, timeout=10):
        """The first match of regex `pattern` in the log, waiting up to `timeout` s; None if none."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.log_text(), re.MULTILINE)
            if m or time.monotonic() >= deadline:
                return m
            time.sleep(0.1)

    def s2s_auth_evidence(self):
        """What the log says about s2s authentication, as {kind: [log lines]}:
        external_out / external_in (SASL EXTERNAL as initiator / receiver),
        dialback_out (we sent a dialback key), dialback_in (we asked the authoritative
        server to verify a key), dialback_verified (we answered a db:verify),
        cert_valid / cert_invalid (chain check results), forbidden (s2s_secure_auth
        refused a peer), direct_tls (routes used with Direct TLS)."""
        patterns = {
            "external_out": r"SASL EXTERNAL with \S+ succeeded",
            "external_in": r"Accepting SASL EXTERNAL identity from",
            "external_failed": r"SASL EXTERNAL with \S+ failed",
            "dialback_out": r"sent dialback key on outgoing s2s stream",
            "dialback_in": r"asking \S+ if key \S+ belongs to them",
            "dialback_verified": r"verified dialback key\.\.\. it is",
            "cert_valid": r"certificate chain validation result: valid",
            "cert_invalid": r"certificate chain validation result: invalid",
            "identity": r"certificate identity validation result: \w+",
            "forbidden": r"Forbidding insecure connection",
            "direct_tls": r"Static s2s route: .*\(Direct TLS\)",
            "authenticated": r"is now authenticated for",
        }
        lines = self.log_text().splitlines()
        return {k: [line for line in lines if re.search(p, line)] for k, p in patterns.items()}


# -- self-test -----------------------------------------------------------------------

def _client_python():
    if os.environ.get("WRENHUB_PYTHON"):
        return os.environ["WRENHUB_PYTHON"]
    venv = HERE.parent.parent / "target" / "interop-venv" / "bin" / "python"
    if venv.exists():
        return str(venv)
    raise SystemExit("no Python with slixmpp: run ./scripts/test once (it makes target/interop-venv) "
                     "or set WRENHUB_PYTHON to a Python with slixmpp==1.17.0")


def _federation_check(python, a, b, ca_file, extra=(), timeout=30):
    """Runs federation.py: juliet@a <-> romeo@b. Returns (exit code, output)."""
    cmd = [python, str(HERE / "federation.py"),
           "--port", str(a.c2s_port), "--ca", str(ca_file), "--jid", f"juliet@{a.domain}/balcony",
           "--password", "balcony", "--peer-port", str(b.c2s_port),
           "--peer-jid", f"romeo@{b.domain}/orchard", "--peer-password", "montague",
           "--timeout", str(timeout), *extra]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30,
                           env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    except subprocess.TimeoutExpired as e:
        return 124, f"{e.stdout or ''}{e.stderr or ''}\n(killed after {timeout + 30} s)"
    return r.returncode, r.stdout + r.stderr


def _scenario(tmp, python, ca, certs, name, *, trust, secure, direct_tls=False, expect_refusal=False):
    """Two peers, a.test and b.test, routed to each other; returns a verdict line."""
    ports = {d: (free_port(), free_port(), free_port() if direct_tls else None) for d in ("a.test", "b.test")}
    other = {"a.test": "b.test", "b.test": "a.test"}
    peers = {}
    for d in ("a.test", "b.test"):
        o = other[d]
        route = ("127.0.0.1", ports[o][2], "direct_tls") if direct_tls else ("127.0.0.1", ports[o][1])
        peers[d] = ProsodyPeer(
            tmp / name / d, d, ports[d][0], ports[d][1], routes={o: route},
            cert_file=certs[d][0], key_file=certs[d][1], ca_file=ca.cert_file if trust else None,
            s2s_secure_auth=secure, s2s_direct_tls_port=ports[d][2],
            users=[("juliet" if d == "a.test" else "romeo", "balcony" if d == "a.test" else "montague")],
        )
    a, b = peers["a.test"], peers["b.test"]
    try:
        a.start()
        b.start()
        extra = ["--expect-s2s-error"] if expect_refusal else []
        code, output = _federation_check(python, a, b, ca.cert_file, extra)
        ev = {d: p.s2s_auth_evidence() for d, p in peers.items()}
        problems = []
        if code != 0:
            problems.append(f"federation.py exited {code}:\n{output}")
        if expect_refusal:
            for d in peers:
                if not ev[d]["forbidden"]:
                    problems.append(f"{d}: no 'Forbidding insecure connection' in its log")
                if ev[d]["authenticated"]:
                    problems.append(f"{d}: an s2s stream was authenticated: {ev[d]['authenticated'][0]}")
            method = "refused"
        elif trust:
            for d in peers:
                for k in ("external_out", "external_in"):
                    if not ev[d][k]:
                        problems.append(f"{d}: no {k} evidence in its log")
                if ev[d]["dialback_out"] or ev[d]["dialback_in"]:
                    problems.append(f"{d}: dialback was used although EXTERNAL should have been")
            method = "SASL EXTERNAL"
        else:
            for d in peers:
                for k in ("dialback_out", "dialback_in", "dialback_verified", "cert_invalid"):
                    if not ev[d][k]:
                        problems.append(f"{d}: no {k} evidence in its log")
                if ev[d]["external_out"] or ev[d]["external_in"]:
                    problems.append(f"{d}: SASL EXTERNAL was used without a trusted CA")
            method = "dialback"
        if direct_tls:
            for d in peers:
                if not ev[d]["direct_tls"]:
                    problems.append(f"{d}: its outgoing s2s did not use the Direct TLS route")
        if problems:
            logs = "\n".join(f"--- {d} log (tail) ---\n{p.log_tail(80)}" for d, p in peers.items())
            raise AssertionError(f"scenario {name}:\n" + "\n".join(problems) + "\n" + logs)
        evidence = "; ".join(
            f"{d}: " + ", ".join(f"{k}={len(v)}" for k, v in ev[d].items() if v) for d in peers)
        summary = output.strip().splitlines()[0] if output.strip() else ""  # the check's own line
        return f"{name}: OK, s2s auth = {method} ({summary})\n    log evidence: {evidence}"
    finally:
        a.stop()
        b.stop()


def _self_test():
    for tool in ("prosody", "prosodyctl", "openssl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found (apt-get install -y prosody openssl)")
    python = _client_python()
    def give_up(signum, _frame):  # raise, so that `finally` and atexit stop Prosody
        raise SystemExit(f"prosody_peer.py self-test: stopped by signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, give_up)
    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(300)  # last resort: nothing here may hang
    keep = os.environ.get("PROSODY_PEER_KEEP") == "1"
    tmp = Path(tempfile.mkdtemp(prefix="prosody-peer-"))
    ok = False
    try:
        ca = TestCA(tmp / "ca")
        certs = {d: ca.issue(d) for d in ("a.test", "b.test")}
        scenarios = [
            ("external", dict(trust=True, secure=True)),
            ("dialback", dict(trust=False, secure=False)),
            ("refused", dict(trust=False, secure=True, expect_refusal=True)),
            ("direct-tls", dict(trust=True, secure=True, direct_tls=True)),
        ]
        only = sys.argv[1:]
        for name, kwargs in scenarios:
            if only and name not in only:
                continue
            started = time.monotonic()
            print(_scenario(tmp, python, ca, certs, name, **kwargs), f"[{time.monotonic() - started:.1f} s]",
                  flush=True)
        ok = True
    finally:
        peer_process.stop_all()
        if keep or not ok:
            print(f"files kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("prosody_peer.py self-test: OK")


if __name__ == "__main__":
    _self_test()
