"""A throwaway ejabberd (Debian's 23.01 package) on loopback, e.g. as a benchmark peer.

    from ejabberd_peer import EjabberdPeer
    from prosody_peer import TestCA, free_port

    ca = TestCA(tmp / "ca")
    cert, key = ca.issue("bench.test")
    peer = EjabberdPeer(tmp / "ejabberd", "bench.test", free_port(), cert, key,
                        ca_file=ca.cert_file, users=[("u0", "bench"), ("u1", "bench")])
    with peer:                       # start() ... stop()
        peer.pid                     # the beam.smp process (measure RSS/CPU here)
        peer.register_many([(f"u{i}", "bench") for i in range(100)])   # one VM, ~1 s
        peer.ctl("status")           # any ejabberdctl command, against this node only

How it runs (never the system service, never /etc/ejabberd or /var/lib/ejabberd):
the Erlang VM is started directly, as the current user (root is fine), the way
`ejabberdctl foreground` would: `erl -sname NODE -s ejabberd -noinput -mnesia dir SPOOL`
with EJABBERD_CONFIG_PATH, EJABBERD_LOG_PATH, ERL_LIBS, ERL_INETRC, HOME (for the
cookie) all under work_dir. /usr/sbin/ejabberdctl itself is not used, because as root it
always re-executes itself as the `ejabberd` user via su (with that user's HOME and
cookie) and sources /etc/default/ejabberd, which points back at the system config.
`erl` execs erlexec, which execs beam.smp: the Popen PID *is* the beam.smp PID.

Distribution needs no epmd: the node listens for Erlang distribution on a fixed port
(-erl_epmd_port P -start_epmd false, chosen afresh per start, bound to 127.0.0.1), and
control clients (`erl -hidden -dist_listen false -erl_epmd_port P`) dial that port. So
no epmd is ever started and nothing needs killing besides beam.smp. The cookie lives in
work_dir/.erlang.cookie (mode 0400), not on any command line.

Config (work_dir/ejabberd.yml, rewritten on every start()): one host; the only listener
is c2s on 127.0.0.1:c2s_port with starttls_required (no s2s, HTTP, STUN, MQTT listeners;
s2s_access: none); certfiles = cert+key concatenated into one PEM; passwords stored as
SCRAM-SHA-1 (auth_password_format: scram, auth_scram_hash: sha), so the offered
mechanisms are SCRAM-SHA-1, SCRAM-SHA-1-PLUS and PLAIN (X-OAUTH2/DIGEST-MD5 disabled);
mnesia in work_dir/spool; modules mod_roster, mod_disco, mod_ping only (presence and
resource binding are in ejabberd's core; no mod_offline, mod_stream_mgmt, mod_carboncopy,
mod_caps, mod_mam...); listener backlog 128 like Prosody's (ejabberd's default is 5,
which drops SYNs when 50 clients connect at once); no shaper; loglevel warning.

Self-test: `python3 tests/interop/ejabberd_peer.py` (needs `apt-get install
ejabberd openssl` and target/interop-venv with slixmpp, or $WRENHUB_PYTHON).
Python standard library only.
"""

import glob
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import peer_process  # noqa: E402
from peer_process import PeerProcess, die_with_parent  # noqa: E402
from prosody_peer import TestCA, free_port  # noqa: E402

__all__ = ["EjabberdPeer", "EjabberdError", "TestCA", "free_port", "sasl_mechanisms"]


class EjabberdError(Exception):
    """ejabberd could not be configured, started, controlled, or did not become ready."""


def _accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _yaml(value):
    """A Python str/Path as a YAML double-quoted scalar (JSON strings are valid YAML)."""
    import json
    return json.dumps(str(value))


def _ejabberd_ebin():
    """(ERL_LIBS directory, ebin directory) of the installed ejabberd application."""
    for app in sorted(glob.glob("/usr/lib/*/ejabberd-*/ebin/ejabberd.app")) + sorted(
            glob.glob("/usr/lib/erlang/lib/ejabberd-*/ebin/ejabberd.app")):
        ebin = Path(app).parent
        return ebin.parent.parent, ebin
    raise EjabberdError("ejabberd is not installed (apt-get install -y --no-install-recommends ejabberd)")


def sasl_mechanisms(port, domain, ca_file=None, host="127.0.0.1", timeout=10):
    """The SASL mechanisms a server offers after STARTTLS (standard library only):
    stream header, <starttls/>, TLS (verified against ca_file if given), new stream."""
    deadline = time.monotonic() + timeout

    def read_until(sock, pattern, buf=b""):
        while not re.search(pattern, buf, re.S):
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                raise EjabberdError(f"connection closed; got {buf!r}")
            buf += chunk
        return buf

    header = (f"<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' "
              "xmlns:stream='http://etherx.jabber.org/streams'>").encode()
    with socket.create_connection((host, port), timeout=timeout) as raw:
        raw.sendall(header)
        features = read_until(raw, rb"</stream:features>")
        if b"urn:ietf:params:xml:ns:xmpp-tls" not in features:
            raise EjabberdError(f"no STARTTLS offered: {features!r}")
        raw.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        read_until(raw, rb"<proceed[^>]*/>")
        ctx = ssl.create_default_context(cafile=str(ca_file)) if ca_file else ssl._create_unverified_context()
        with ctx.wrap_socket(raw, server_hostname=domain) as tls:
            tls.sendall(header)
            features = read_until(tls, rb"</stream:features>")
    return re.findall(r"<mechanism>([^<]+)</mechanism>", features.decode(errors="replace"))


class EjabberdPeer(PeerProcess):
    """One ejabberd node serving `domain`, c2s only (STARTTLS required) on
    127.0.0.1:c2s_port.

    cert_file/key_file: PEM certificate (chain) and key; concatenated into
      work_dir/server.pem for `certfiles`. ca_file: optional CA bundle (`ca_file`
      option; only silences ejabberd's "signed by unknown CA" warning here).
    users: [(user, password)] registered after the first start() (again only if new).
    node: Erlang node name; keep it fixed for a given work_dir (mnesia's schema is
      bound to it). Several peers may share it: without epmd names never clash.
    loglevel, backlog, modules (name -> YAML flow mapping text), extra_config (raw
      YAML appended at top level), die_with_parent (Linux: SIGTERM to beam.smp if the
      starting thread dies).
    """

    # The VM runs init:stop() on SIGTERM, which takes 2-3 s.
    stop_timeout = 15

    DEFAULT_MODULES = {"mod_roster": "{}", "mod_disco": "{}", "mod_ping": "{}"}

    def __init__(self, work_dir, domain, c2s_port, cert_file, key_file, users=(), *, ca_file=None,
                 node="ejabberd_bench@localhost", loglevel="warning", backlog=128, modules=None,
                 disable_sasl=("X-OAUTH2", "DIGEST-MD5"), extra_config="", die_with_parent=True, erl="erl"):
        if not re.fullmatch(r"[A-Za-z0-9_-]+@[A-Za-z0-9_.-]+", node):
            raise EjabberdError(f"bad node name {node!r}")
        self.work_dir = Path(work_dir).resolve()
        self.domain = domain
        self.c2s_port = int(c2s_port)
        self.cert_file, self.key_file = Path(cert_file).resolve(), Path(key_file).resolve()
        self.ca_file = Path(ca_file).resolve() if ca_file else None
        self.users = list(users)
        self.node = node
        self.loglevel = loglevel
        self.backlog = int(backlog)
        self.modules = dict(self.DEFAULT_MODULES if modules is None else modules)
        self.disable_sasl = list(disable_sasl)
        self.extra_config = extra_config
        self.die_with_parent = die_with_parent
        self.erl = erl
        self.erl_libs, self.ebin = _ejabberd_ebin()
        self.config_file = self.work_dir / "ejabberd.yml"
        self.pem_file = self.work_dir / "server.pem"
        self.inetrc = self.work_dir / "inetrc"
        self.cookie_file = self.work_dir / ".erlang.cookie"
        self.spool_dir = self.work_dir / "spool"
        self.logs_dir = self.work_dir / "logs"
        self.log_file = self.logs_dir / "ejabberd.log"
        self.console_file = self.logs_dir / "console.log"
        self.dist_port = None
        self.process = None
        self.startup_s = None  # spawn -> c2s port accepting, of the last start()
        self._registered = set()

    # -- configuration -----------------------------------------------------------

    def config_text(self):
        lines = [
            "# Written by tests/interop/ejabberd_peer.py; rewritten on every start().",
            f"hosts: [{_yaml(self.domain)}]",
            f"loglevel: {self.loglevel}",
            "log_rotate_count: 0",
            "hide_sensitive_log_data: true",
            f"certfiles: [{_yaml(self.pem_file)}]",
        ]
        if self.ca_file:
            lines.append(f"ca_file: {_yaml(self.ca_file)}")
        lines += [
            "acme: {auto: false}",
            "default_db: mnesia",
            "auth_method: [internal]",
            "auth_password_format: scram",
            "auth_scram_hash: sha",
            f"disable_sasl_mechanisms: [{', '.join(_yaml(m) for m in self.disable_sasl)}]",
            "s2s_access: none",
            "listen:",
            f"  - port: {self.c2s_port}",
            '    ip: "127.0.0.1"',
            "    module: ejabberd_c2s",
            "    starttls_required: true",
            f"    backlog: {self.backlog}",
            "    max_stanza_size: 262144",
            "modules:" + ("" if self.modules else " {}"),
        ]
        lines += [f"  {name}: {opts}" for name, opts in self.modules.items()]
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def write_config(self):
        for d in (self.work_dir, self.spool_dir, self.logs_dir, self.work_dir / "contrib"):
            d.mkdir(parents=True, exist_ok=True)
        self.pem_file.write_text(self.cert_file.read_text() + "\n" + self.key_file.read_text())
        os.chmod(self.pem_file, 0o600)
        self.inetrc.write_text('{lookup, ["file", "native"]}.\n{host, {127,0,0,1}, ["localhost"]}.\n')
        if not self.cookie_file.exists():
            fd = os.open(self.cookie_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(16).upper())
        self.config_file.write_text(self.config_text())

    def _env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ERL_", "EJABBERD_"))}
        env.update(
            HOME=str(self.work_dir),  # the cookie file
            ERL_LIBS=str(self.erl_libs),
            ERL_INETRC=str(self.inetrc),
            ERL_CRASH_DUMP=str(self.logs_dir / "erl_crash.dump"),
            ERL_CRASH_DUMP_BYTES="0",
            ERL_MAX_PORTS="32000",
            ERL_MAX_ETS_TABLES="1400",
            EJABBERD_CONFIG_PATH=str(self.config_file),
            EJABBERD_LOG_PATH=str(self.log_file),
            CONTRIB_MODULES_PATH=str(self.work_dir / "contrib"),
            CONTRIB_MODULES_CONF_DIR=str(self.work_dir / "contrib"),
        )
        return env

    def _client_args(self):
        """erl arguments of a hidden control node that reaches ours without epmd."""
        if not self.dist_port:
            raise EjabberdError("not started")
        host = self.node.split("@", 1)[1]
        return [self.erl, "-sname", f"ctl{os.getpid()}x{secrets.token_hex(3)}@{host}", "-hidden", "-noinput",
                "-erl_epmd_port", str(self.dist_port), "-start_epmd", "false", "-dist_listen", "false"]

    # -- control -------------------------------------------------------------------

    def ctl(self, *args, timeout=60, check=True):
        """`ejabberdctl ARGS` against this node (e.g. "status", "registered_users",
        domain); returns (exit code, output). One Erlang VM per call (~0.3 s)."""
        cmd = self._client_args() + ["-s", "ejabberd_ctl", "-extra", self.node] + [str(a) for a in args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self._env(),
                           cwd=self.spool_dir, stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise EjabberdError(f"ejabberdctl {' '.join(map(str, args))} exited {r.returncode}: {r.stdout}{r.stderr}")
        return r.returncode, r.stdout + r.stderr

    def register(self, user, password):
        self.register_many([(user, password)])

    def register_many(self, users, timeout=300):
        """Registers (or resets the password of) every (user, password), all through
        one control VM calling ejabberd_auth over Erlang RPC (100 users ~ 1 s)."""
        users = list(users)
        if not users:
            return
        term_file = self.work_dir / "register.terms"
        hx = lambda s: s.encode().hex()  # noqa: E731 - no Erlang escaping needed
        term_file.write_text("".join(f'{{"{hx(u)}", "{hx(p)}"}}.\n' for u, p in users))
        code = f"""
            N = '{self.node}', H = binary:decode_hex(<<"{hx(self.domain)}">>),
            {{ok, Us}} = file:consult({_yaml(term_file)}),
            Reg = fun(U, P) -> case rpc:call(N, ejabberd_auth, try_register, [U, H, P], 30000) of
                                   {{error, exists}} -> rpc:call(N, ejabberd_auth, set_password, [U, H, P], 30000);
                                   Other -> Other end end,
            R = [{{U, Reg(U, P)}} || {{Uh, Ph}} <- Us,
                                    U <- [binary:decode_hex(list_to_binary(Uh))],
                                    P <- [binary:decode_hex(list_to_binary(Ph))]],
            case [X || {{_, Res}} = X <- R, Res =/= ok] of
                [] -> io:format("registered ~p~n", [length(R)]), halt(0);
                Bad -> io:format("failed: ~p~n", [lists:sublist(Bad, 5)]), halt(1)
            end."""
        r = subprocess.run(self._client_args() + ["-eval", code], capture_output=True, text=True, timeout=timeout,
                           env=self._env(), cwd=self.spool_dir, stdin=subprocess.DEVNULL)
        term_file.unlink(missing_ok=True)
        if r.returncode != 0:
            raise EjabberdError(f"registering {len(users)} users failed: {r.stdout}{r.stderr}")
        self._registered.update(u for u, _ in users)

    def version(self):
        m = re.search(r'\{vsn,\s*"([^"]+)"', (self.ebin / "ejabberd.app").read_text())
        otp = ""
        try:
            otp = next(Path("/usr/lib/erlang/releases").glob("*/OTP_VERSION")).read_text().strip()
        except (StopIteration, OSError):
            pass
        return f"ejabberd {m.group(1) if m else '?'}" + (f" (Erlang/OTP {otp})" if otp else "")

    # -- life cycle --------------------------------------------------------------

    def start(self, users=(), timeout=60):
        """Writes the config, starts the node, waits (at most `timeout` s) until c2s
        accepts connections, then registers the users not yet registered."""
        if self.process:
            raise EjabberdError(f"{self.domain}: already started")
        self.write_config()
        self.dist_port = free_port()
        cmd = [self.erl, "-sname", self.node, "-noinput",
               "-erl_epmd_port", str(self.dist_port), "-start_epmd", "false",
               "-kernel", "inet_dist_use_interface", "{127,0,0,1}",
               "+K", "true", "+P", "250000",
               "-mnesia", "dir", f'"{self.spool_dir}"', "-s", "ejabberd"]
        t0 = time.monotonic()
        with open(self.console_file, "ab") as console:
            self.process = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, env=self._env(),
                cwd=self.spool_dir, start_new_session=True,
                preexec_fn=die_with_parent if self.die_with_parent else None)
        self.track()
        deadline = t0 + timeout
        while not _accepts(self.c2s_port):
            code = self.process.poll()
            if code is not None or time.monotonic() > deadline:
                self.stop()
                why = f"exited with {code}" if code is not None else f"port {self.c2s_port} not open after {timeout} s"
                raise EjabberdError(f"ejabberd for {self.domain} {why}\n--- console ---\n{self.console_text()}"
                                    f"\n--- log (tail) ---\n{self.log_tail()}")
            time.sleep(0.02)
        self.startup_s = time.monotonic() - t0
        todo = [(u, p) for u, p in self.users + list(users) if u not in self._registered]
        if todo:
            self.register_many(todo)
        return self

    @property
    def pid(self):
        """The beam.smp PID (None when not running)."""
        if not self.running():
            return None
        pid = self.process.pid
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "beam.smp":
                return pid
            for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                if Path(f"/proc/{child}/comm").read_text().strip() == "beam.smp":
                    return int(child)
        except OSError:
            pass
        return pid



# -- self-test -----------------------------------------------------------------------

def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def _listening_sockets(pid):
    """[(ip, port)] of the TCP sockets `pid` listens on (from /proc, IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:
                    addr, port = parts[1].split(":")
                    ip = (socket.inet_ntoa(bytes.fromhex(addr)[::-1]) if len(addr) == 8 else addr)
                    found.append((ip, int(port, 16)))
    return sorted(found)


def _client_python():
    if os.environ.get("WRENHUB_PYTHON"):
        return os.environ["WRENHUB_PYTHON"]
    venv = HERE.parent.parent / "target" / "interop-venv" / "bin" / "python"
    if venv.exists():
        return str(venv)
    return None


def _slixmpp(python, script, *args, timeout=30):
    cmd = [python, str(HERE / script), "--timeout", str(timeout), *map(str, args)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30,
                           env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{script}: killed after {timeout + 30} s: {e.stdout}{e.stderr}")
    if r.returncode != 0:
        raise AssertionError(f"{script} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r.stdout.strip().splitlines()[0]


def _self_test():
    for tool in ("erl", "openssl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found (apt-get install -y --no-install-recommends ejabberd openssl)")
    python = _client_python()

    def give_up(signum, _frame):
        raise SystemExit(f"ejabberd_peer.py self-test: stopped by signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, give_up)
    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(300)
    keep = os.environ.get("EJABBERD_PEER_KEEP") == "1"
    tmp = Path(tempfile.mkdtemp(prefix="ejabberd-peer-"))
    ok = False
    domain = "bench.test"
    try:
        ca = TestCA(tmp / "ca")
        cert, key = ca.issue(domain)
        port = free_port()
        peer = EjabberdPeer(tmp / "ejabberd", domain, port, cert, key, ca_file=ca.cert_file,
                            users=[(f"u{i}", "bench") for i in range(3)])
        print(peer.version())
        t0 = time.monotonic()
        peer.start()
        print(f"first start (new mnesia) + 3 users: c2s accepting after {peer.startup_s:.3f} s, "
              f"start() returned after {time.monotonic() - t0:.3f} s; pid {peer.pid} "
              f"({Path(f'/proc/{peer.pid}/comm').read_text().strip()})")
        t0 = time.monotonic()
        peer.register_many([(f"u{i}", "bench") for i in range(100)])
        print(f"register_many(100 users, 97 new): {time.monotonic() - t0:.2f} s")
        t0 = time.monotonic()
        _, out = peer.ctl("register", "solo", domain, "pw")
        print(f"ctl register (one user, one VM): {time.monotonic() - t0:.2f} s: {out.strip()}")
        _, out = peer.ctl("registered_users", domain)
        assert len(out.split()) == 101, out
        mechs = sasl_mechanisms(port, domain, ca.cert_file)
        print(f"SASL mechanisms after STARTTLS (TLS verified against the test CA): {mechs}")
        assert "SCRAM-SHA-1" in mechs, mechs
        if python:
            print(_slixmpp(python, "login.py", "--port", port, "--ca", ca.cert_file, "--jid", f"u0@{domain}/r",
                           "--password", "bench", "--mech", "SCRAM-SHA-1"))
            print(_slixmpp(python, "wrong_password.py", "--port", port, "--ca", ca.cert_file,
                           "--jid", f"u0@{domain}/r", "--password", "nope", "--mech", "SCRAM-SHA-1"))
            print(_slixmpp(python, "message.py", "--port", port, "--ca", ca.cert_file, "--jid", f"u1@{domain}/a",
                           "--password", "bench", "--peer-jid", f"u2@{domain}/b", "--peer-password", "bench"))
        else:
            print("no slixmpp venv (target/interop-venv or $WRENHUB_PYTHON): login checks skipped")
        listening = _listening_sockets(peer.pid)
        print(f"beam.smp listens on {listening} (c2s {port}, distribution {peer.dist_port})")
        assert listening == sorted([("127.0.0.1", port), ("127.0.0.1", peer.dist_port)]), listening
        pid = peer.pid
        t0 = time.monotonic()
        peer.stop()
        print(f"stop(): {time.monotonic() - t0:.2f} s")
        assert not Path(f"/proc/{pid}").exists()
        # A warm restart, like the benchmark does for every measurement group.
        for _ in range(2):
            peer.start()
            time.sleep(1.0)
            print(f"restart: c2s accepting after {peer.startup_s:.3f} s; idle VmRSS after 1 s: "
                  f"{_rss_kib(peer.pid)} KiB")
            if python:
                print(_slixmpp(python, "login.py", "--port", port, "--ca", ca.cert_file,
                               "--jid", f"u99@{domain}/r", "--password", "bench", "--mech", "SCRAM-SHA-1"))
            peer.stop()
        epmd = subprocess.run(["pgrep", "-x", "epmd"], capture_output=True, text=True).stdout.split()
        print(f"epmd processes now: {epmd or 'none'}")
        ok = True
    except Exception:
        for p in list(peer_process.running):
            print(f"--- console ---\n{p.console_text()}\n--- log (tail) ---\n{p.log_tail()}", file=sys.stderr)
        raise
    finally:
        peer_process.stop_all()
        if keep or not ok:
            print(f"files kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("ejabberd_peer.py self-test: OK")


if __name__ == "__main__":
    _self_test()
