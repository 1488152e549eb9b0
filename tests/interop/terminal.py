"""Plumbing for the interop checks that drive a real terminal XMPP client in tmux.

Used by poezio_login.py (poezio) and profanity_muc.py (Profanity); each script keeps
what is its own (the client's config files, what its screen and log must show) and
takes the rest from here:

  * parse_args(): the options, each with an XMPP_* environment fallback (--port
    and XMPP_PORT, --peer-jid and XMPP_PEER_JID, ...), plus --keep; --ca and --port
    are required. connection_options(), timeout_option() and program_option() give
    the rows the scripts share.
  * Fail, check() and Deadline: how a check fails, and the time it has left.
  * TerminalClient: the client in a private tmux server (its own socket and
    tmux.conf) inside a private temporary directory, with a private HOME and XDG
    directories there and a clean environment (env -i). As root (CI) the client
    runs as uid/gid 65534 via setpriv (or runuser), and the directory is handed
    to that user. Keys go in with `tmux send-keys`, the screen comes back with
    `tmux capture-pane`; at the end the client is ended (TERM, then KILL) before
    the tmux server, and the directory is removed (unless --keep).
  * main(): runs a check under a hard timeout (SIGALRM, --timeout); on failure it
    prints "FAIL: why" and the script's dumps to stderr and exits 1; it always
    cleans up.

Standard library only: the scripts run with Debian's /usr/bin/python3, next to the
clients' own Python packages.
"""

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOBODY = 65534
PATH = "/usr/bin:/bin:/usr/local/bin"


class Fail(Exception):
    """The check failed; the message says how."""


def check(condition, message):
    if not condition:
        raise Fail(message)


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def left(self):
        return self.end - time.monotonic()


# --- options ------------------------------------------------------------------

def connection_options(tls_port_help, jid_help):
    """The (name, default, help) rows every script has: where the server is, and the account."""
    return [
        ("--host", "127.0.0.1", "server address"),
        ("--port", None, "client (STARTTLS) port"),
        ("--tls-port", None, tls_port_help),
        ("--ca", None, "CA certificate (PEM) that signed the server's certificate"),
        ("--jid", "juliet@localhost/balcony", jid_help),
        ("--password", "balcony", "its password"),
    ]


def timeout_option(seconds):
    return ("--timeout", str(seconds), "hard limit for the whole check, in seconds")


def program_option(name):
    """--NAME: the client's executable, found on PATH (the system's directories first)."""
    found = shutil.which(name, path="/usr/bin:/usr/local/bin:" + os.environ.get("PATH", ""))
    return (f"--{name}", found or f"/usr/bin/{name}", f"the {name} executable")


def parse_args(description, options, flags=(), validate=None):
    """options: (name, default, help) rows, each also read from XMPP_NAME; flags:
    (name, help) switches after --keep; validate(parser, args) may call parser.error."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default, help_text in options:
        env = "XMPP_" + name[2:].upper().replace("-", "_")
        parser.add_argument(name, default=os.environ.get(env, default), help=f"{help_text} (env {env})")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (printed at the end)")
    for name, help_text in flags:
        parser.add_argument(name, action="store_true", help=help_text)
    args = parser.parse_args()
    if args.ca is None:
        parser.error("--ca (or XMPP_CA) is required")
    if args.port is None:
        parser.error("--port (or XMPP_PORT) is required")
    if validate:
        validate(parser, args)
    return args


# --- the client in tmux -------------------------------------------------------

def _say(message, *values):
    return message(*values) if callable(message) else message


def read_text(path):
    """A file's text, or "" while it does not exist (yet)."""
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


class TerminalClient:
    """A terminal client in a private tmux server, with its own HOME.

    A subclass sets name (for messages), program_name (its executable's, for
    messages), session (the tmux session's name), width
    and height (the pane's), join_lines (capture-pane -J: wrapped lines joined),
    and after __init__: debug_log (what log() reads), marker (a string in the
    client's command line, so that a reused pid is never signalled) and
    extra_env (more NAME=VALUE for the client's environment)."""

    name = "the client"
    program_name = "client"
    session = "client"
    width, height = 200, 50
    join_lines = False

    def __init__(self, args, deadline, prefix, program, xdg):
        """prefix: the temporary directory's; program: the client's executable;
        xdg: XDG_CONFIG_HOME, XDG_DATA_HOME and XDG_CACHE_HOME, relative to HOME."""
        self.args = args
        self.deadline = deadline
        self.program = program
        self.root = os.geteuid() == 0
        # As root, the directory must be reachable by uid 65534: /tmp is (1777),
        # whereas a root-only $TMPDIR might not be.
        base = "/tmp" if self.root and os.path.isdir("/tmp") else None
        self.dir = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
        self.tmux_socket = self.dir / "tmux.sock"
        self.home = self.dir / "home"
        self.config_home, self.data_home, self.cache_home = (self.home / d for d in xdg)
        self.debug_log = self.home / "debug.log"
        self.marker = program
        self.extra_env = []
        self.tmux_started = False
        self.pid = self.tmux_pid = None

    # --- set-up -----------------------------------------------------------

    def hand_over(self):
        """Write tmux.conf; as root, give the whole directory to uid/gid 65534 (call
        it once the client's files are written, then restrict the secret ones)."""
        (self.dir / "tmux.conf").write_text(
            "set -g remain-on-exit on\nset -g history-limit 5000\nset -g status off\n"
            'set -g default-terminal "tmux-256color"\n'
        )
        if self.root:
            for path in [self.dir, *self.dir.rglob("*")]:
                os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
            os.chmod(self.dir, 0o700)

    def drop_privileges(self):
        """The argv prefix that runs the client unprivileged (empty when not root)."""
        if not self.root:
            return []
        if shutil.which("setpriv"):
            return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
        if shutil.which("runuser"):
            return ["runuser", "-u", "nobody", "--"]
        raise Fail(f"running as root, and neither setpriv nor runuser is available to run {self.name} unprivileged")

    def as_user(self, argv):
        """argv in the client's clean environment, as its user."""
        env = ["env", "-i", f"HOME={self.home}", f"PATH={PATH}", "TERM=tmux-256color",
               "LANG=C.UTF-8", "LC_ALL=C.UTF-8", f"XDG_CONFIG_HOME={self.config_home}",
               f"XDG_DATA_HOME={self.data_home}", f"XDG_CACHE_HOME={self.cache_home}",
               *self.extra_env, f"TMPDIR={self.home}", "USER=juliet"]
        return env + self.drop_privileges() + argv

    def preflight(self, readable, writable, install_hint=""):
        """The unprivileged user can write its HOME and writable, and read readable;
        the client's executable exists."""
        probe = self.as_user(["sh", "-c", 'test -w "$HOME" && test -r "$1" && test -w "$2"', "sh",
                              str(readable), str(writable)])
        r = subprocess.run(probe, capture_output=True, text=True, timeout=max(1, self.deadline.left()))
        check(r.returncode == 0, f"{self.name}'s user cannot use {self.home} (rc {r.returncode}): {r.stderr.strip()}")
        check(Path(self.program).exists(), f"no {self.program_name} at {self.program}{install_hint}")

    # --- tmux -------------------------------------------------------------

    def tmux(self, *argv, check_rc=True, timeout=5):
        env = {k: v for k, v in os.environ.items() if k != "TMUX"}
        env["TMUX_TMPDIR"] = str(self.dir)
        env["LANG"] = env["LC_ALL"] = "C.UTF-8"
        r = subprocess.run(["tmux", "-S", str(self.tmux_socket), "-f", str(self.dir / "tmux.conf"), *argv],
                           capture_output=True, text=True, env=env,
                           timeout=max(0.5, min(timeout, self.deadline.left() + 1)))
        if check_rc and r.returncode != 0:
            raise Fail(f"tmux {' '.join(argv[:1])} failed (rc {r.returncode}): {r.stderr.strip()}")
        return r.stdout

    def start(self, argv):
        """Run argv (the client, as its user) in a new session of the private tmux server."""
        argv = self.as_user(argv)
        self.tmux_started = True
        # exec: env, setpriv and the client replace the pane's shell, so #{pane_pid} is the client.
        self.tmux("new-session", "-d", "-s", self.session, "-x", str(self.width), "-y", str(self.height),
                  "exec " + shlex.join(argv))
        pids = self.tmux("display-message", "-p", "-t", self.session, "#{pane_pid} #{pid}").split()
        self.pid, self.tmux_pid = (int(p) if p.isdigit() else None for p in (pids + ["", ""])[:2])

    def pane(self):
        """The screen, as text ("" if tmux does not answer in time)."""
        try:
            return self.tmux("capture-pane", "-p", *(["-J"] if self.join_lines else []), "-t", self.session,
                             check_rc=False)
        except subprocess.TimeoutExpired:
            return ""

    def pane_dead(self):
        """None while the client runs; once it has exited, its status (or "?")."""
        try:
            out = self.tmux("display-message", "-p", "-t", self.session, "#{pane_dead} #{pane_dead_status}",
                            check_rc=False)
        except subprocess.TimeoutExpired:
            return None
        parts = out.split()
        if parts and parts[0] == "1":
            return parts[1] if len(parts) > 1 else "?"
        return None

    def keys(self, *keys, literal=False):
        self.tmux("send-keys", "-t", self.session, *(["-l"] if literal else []), *keys)

    def log(self):
        return read_text(self.debug_log)

    def until(self, done, late, exited=None):
        """Poll done() until it returns something true, and return that. Fail with late
        (a message, or a function that makes it) near the deadline, and with exited (a
        message, or a function of the exit status) if given and the client has exited."""
        while True:
            result = done()
            if result:
                return result
            if exited is not None:
                dead = self.pane_dead()
                check(dead is None, _say(exited, dead))
            check(self.deadline.left() > 0.3, _say(late))
            time.sleep(0.05)

    def quit(self, send_quit, seconds):
        """Leave politely (best effort: the tmux server is killed anyway): send_quit(),
        then give the client up to seconds (within the deadline) to exit."""
        try:
            send_quit()
        except Fail:
            pass
        quit_by = time.monotonic() + min(seconds, max(0, self.deadline.left() - 0.5))
        while self.pane_dead() is None and time.monotonic() < quit_by:
            time.sleep(0.05)

    # --- the end ----------------------------------------------------------

    @staticmethod
    def alive(pid, marker):
        """pid still runs (not a zombie) and its command line has marker (not a reused pid)."""
        if not pid:
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return stat.rsplit(")", 1)[-1].split()[0] != "Z" and marker.encode() in cmdline

    def end(self, pid, marker):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self.alive(pid, marker):
                return
            try:
                os.kill(pid, sig)
            except OSError:
                return
            until = time.monotonic() + 1
            while self.alive(pid, marker) and time.monotonic() < until:
                time.sleep(0.02)

    def stop(self):
        # A client can outlive its terminal (poezio does: once tmux is gone, it spins
        # on a closed tty instead of exiting). So end the client first (TERM, then
        # KILL), then tmux.
        self.end(self.pid, self.marker)
        if self.tmux_started:
            try:
                self.tmux("kill-server", check_rc=False, timeout=3)
            except Exception:
                pass
            self.tmux_started = False
        self.end(self.tmux_pid, str(self.tmux_socket))

    def cleanup(self):
        self.stop()
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- the script's main --------------------------------------------------------

def main(args, client, run, report, close=None):
    """run() under the hard timeout (args.timeout, SIGALRM), then exit: 0, or 1 after
    printing "FAIL: why" and calling report(screen) (the client's last screen) to
    show the rest on stderr. Always: close() if given, then the client's cleanup."""

    def alarm(*_):
        raise Fail(f"hard timeout ({args.timeout} s)")

    signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, float(args.timeout))
    code = 0
    try:
        run()
    except (Fail, subprocess.TimeoutExpired, OSError) as e:
        code = 1
        screen = ""
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
            screen = client.pane() if client.tmux_started else ""
        except Exception:
            pass
        print(f"FAIL: {e}", file=sys.stderr)
        report(screen)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if close:
            close()
        client.cleanup()
        if args.keep:
            print(f"kept {client.dir}", file=sys.stderr)
    sys.exit(code)
