"""What the throwaway peer servers of the tests (prosody_peer.py, ejabberd_peer.py)
share: every started peer is stopped at exit whatever happens, dies with the process
that started it, stops with SIGTERM then SIGKILL, and exposes its log and console.
Standard library only."""

import atexit
import signal
import subprocess

running = set()  # peers to stop at exit, whatever happens


def stop_all():
    for peer in list(running):
        peer.stop()


atexit.register(stop_all)


def die_with_parent():
    """In the child before exec: SIGTERM it when the thread that started it dies (Linux
    prctl PR_SET_PDEATHSIG), so that no peer server outlives a killed test."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except Exception:  # not Linux: atexit and stop() still apply
        pass


class PeerProcess:
    """Base of a peer server. Subclasses set `process` (a Popen, or None), `log_file`
    and `console_file`, call `self.track()` right after starting the process, and may
    set `stop_timeout`."""

    process = None
    stop_timeout = 10

    def track(self):
        running.add(self)

    def stop(self, timeout=None):
        """SIGTERM, wait up to `timeout` s (default `stop_timeout`), then SIGKILL.
        Safe to call twice."""
        process, self.process = self.process, None
        running.discard(self)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(self.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def running(self):
        return self.process is not None and self.process.poll() is None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_text(self):
        """The server's log ('' before it exists)."""
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=60):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def console_text(self):
        try:
            return self.console_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""
