"""Group chat between wrenhub and Prosody: each side's users in the other's rooms.

    prosody_muc_federation.py --work DIR --mode external|dialback \
        --hub-domain hub.test --hub-c2s P --hub-s2s P --hub-ca PEM \
        --prosody-c2s P --prosody-s2s P --prosody-cert PEM --prosody-key PEM --prosody-ca PEM

Starts a Prosody 0.12 for prosody.test with its mod_muc at conference.prosody.test
(tests/interop/prosody_peer.py), routing hub.test and conference.hub.test to
wrenhub's s2s port. In `external` mode Prosody trusts wrenhub's CA and requires
certificates (SASL EXTERNAL, so wrenhub's group-chat service authenticates with the
name its certificate carries); in `dialback` mode it trusts none and allows
dialback (Prosody verifies conference.hub.test's key with wrenhub). Then
tests/interop/muc_federation.py runs twice: Romeo (wrenhub) owns a room on
wrenhub and Juliet (Prosody) joins it; Juliet owns a room on Prosody's MUC and
Romeo joins it. Exits 0 on success.
"""

import sys
from pathlib import Path

from prosody_federation import parse_args, run_client
from prosody_peer import ProsodyPeer

def run(*client_args):
    run_client("muc_federation.py", *client_args, timeout=50)


def main():
    args = parse_args()
    external = args.mode == "external"
    hub = args.hub_domain
    route = ("127.0.0.1", int(args.hub_s2s))
    peer = ProsodyPeer(
        Path(args.work) / "prosody", "prosody.test", args.prosody_c2s, args.prosody_s2s,
        routes={hub: route, f"conference.{hub}": route},
        cert_file=args.prosody_cert, key_file=args.prosody_key,
        ca_file=args.hub_ca if external else None, s2s_secure_auth=external,
        users=[("juliet", "balcony")],
        components='Component "conference.prosody.test" "muc"\n    restrict_room_creation = false\n',
    )
    try:
        with peer:
            # A room on wrenhub, a Prosody user joins it.
            run("--port", args.hub_c2s, "--ca", args.hub_ca,
                "--jid", f"romeo@{hub}/orchard", "--password", "montague",
                "--peer-port", args.prosody_c2s, "--peer-ca", args.prosody_ca,
                "--peer-jid", "juliet@prosody.test/balcony", "--peer-password", "balcony",
                "--room", f"verona@conference.{hub}")
            # A room on Prosody's MUC, a wrenhub user joins it.
            run("--port", args.prosody_c2s, "--ca", args.prosody_ca,
                "--jid", "juliet@prosody.test/balcony", "--password", "balcony",
                "--peer-port", args.hub_c2s, "--peer-ca", args.hub_ca,
                "--peer-jid", f"romeo@{hub}/orchard", "--peer-password", "montague",
                "--room", "capulet@conference.prosody.test")
            log = peer.log_text()
    except BaseException:
        print("--- prosody log (tail) ---\n" + "\n".join(peer.log_text().splitlines()[-120:]), file=sys.stderr)
        raise
    muc_external = "SASL EXTERNAL" in log and f"conference.{hub}" in log
    print(f"prosody: conference.{hub} seen in its log: {f'conference.{hub}' in log}; external={muc_external}")
    print("ok")


if __name__ == "__main__":
    main()
