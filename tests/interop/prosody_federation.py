"""wrenhub <-> Prosody federation with slixmpp clients on both sides.

    prosody_federation.py --work DIR --mode external|dialback \
        --hub-domain hub.test --hub-c2s P --hub-s2s P --hub-ca PEM \
        --prosody-c2s P --prosody-s2s P --prosody-cert PEM --prosody-key PEM --prosody-ca PEM

Starts a Prosody 0.12 for prosody.test on loopback (tests/interop/prosody_peer.py) that
routes hub.test to wrenhub's s2s port. In `external` mode it trusts wrenhub's CA and
requires valid certificates (s2s_secure_auth: SASL EXTERNAL or nothing); in
`dialback` mode it trusts no CA and allows dialback. Then tests/interop/federation.py
runs twice: Juliet on Prosody and Romeo on wrenhub (the first message goes Prosody ->
wrenhub, and Romeo's subscription wrenhub -> Prosody), then Benvolio on wrenhub and the
Nurse on Prosody the other way round (wrenhub -> Prosody first, subscription into wrenhub).
Prints Prosody's evidence of the authentication method; exits 0 on success.
"""

import argparse
import subprocess
import sys
from pathlib import Path

from prosody_peer import ProsodyPeer

HERE = Path(__file__).resolve().parent


def run_client(script, *client_args, timeout=45):
    """Runs a client check script (tests/interop) to the end; exits on its failure."""
    cmd = [sys.executable, str(HERE / script), *client_args, "--s2s-wait", "15", "--timeout", str(timeout)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 45)
    print(done.stdout, end="")
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        raise SystemExit(f"{script} failed ({done.returncode}): {' '.join(client_args[:8])}")


def parse_args():
    """The options tests/interop_prosody.rs gives every Prosody orchestration script."""
    p = argparse.ArgumentParser()
    for name in ("work", "mode", "hub-domain", "hub-c2s", "hub-s2s", "hub-ca", "prosody-c2s", "prosody-s2s",
                 "prosody-cert", "prosody-key", "prosody-ca"):
        p.add_argument("--" + name, required=True)
    return p.parse_args()


def run(args, *client_args):
    run_client("federation.py", *client_args)


def main():
    args = parse_args()
    external = args.mode == "external"
    peer = ProsodyPeer(
        Path(args.work) / "prosody", "prosody.test", args.prosody_c2s, args.prosody_s2s,
        routes={args.hub_domain: ("127.0.0.1", int(args.hub_s2s))},
        cert_file=args.prosody_cert, key_file=args.prosody_key,
        ca_file=args.hub_ca if external else None, s2s_secure_auth=external,
        users=[("juliet", "balcony"), ("nurse", "verona")],
    )
    hub = args.hub_domain
    try:
        with peer:
            # Juliet on Prosody first: Prosody opens the first link.
            run(args, "--port", args.prosody_c2s, "--ca", args.prosody_ca,
                "--jid", "juliet@prosody.test/balcony", "--password", "balcony",
                "--peer-port", args.hub_c2s, "--peer-ca", args.hub_ca,
                "--peer-jid", f"romeo@{hub}/orchard", "--peer-password", "montague")
            # Roles swapped: Benvolio on wrenhub sends first, and the Nurse on Prosody
            # subscribes to him (a subscription into wrenhub).
            run(args, "--port", args.hub_c2s, "--ca", args.hub_ca,
                "--jid", f"benvolio@{hub}/square", "--password", "cousin",
                "--peer-port", args.prosody_c2s, "--peer-ca", args.prosody_ca,
                "--peer-jid", "nurse@prosody.test/kitchen", "--peer-password", "verona")
            log = peer.log_text()
    except BaseException:
        print("--- prosody log (tail) ---\n" + "\n".join(peer.log_text().splitlines()[-80:]), file=sys.stderr)
        raise
    external_seen = "SASL EXTERNAL with " in log and "succeeded" in log
    accepted_external = "Accepting SASL EXTERNAL identity from" in log
    dialback_seen = "verified dialback key" in log or "sent dialback key" in log
    print(f"prosody: outbound EXTERNAL={external_seen} inbound EXTERNAL={accepted_external} dialback={dialback_seen}")
    if external and not (external_seen and accepted_external):
        raise SystemExit("expected SASL EXTERNAL both ways in Prosody's log")
    if not external and not dialback_seen:
        raise SystemExit("expected dialback in Prosody's log")
    print("ok")


if __name__ == "__main__":
    main()
