"""Message archives (XEP-0313) and stanza ids (XEP-0359) between wrenhub and Prosody users.

    prosody_mam_federation.py --work DIR --mode external|dialback \
        --hub-domain hub.test --hub-c2s P --hub-s2s P --hub-ca PEM \
        --prosody-c2s P --prosody-s2s P --prosody-cert PEM --prosody-key PEM --prosody-ca PEM

Starts a Prosody 0.12 for prosody.test on loopback (tests/interop/prosody_peer.py)
with its mod_mam, routing hub.test to wrenhub's s2s port (which runs with
`archive = true`). The s2s authentication is as in prosody_federation.py: SASL
EXTERNAL in `external` mode, dialback otherwise. Then
tests/interop/mam_federation.py runs with Romeo on wrenhub and Juliet on Prosody:
they chat both ways over s2s; Romeo's copies carry his archive's stanza-ids, one
that Juliet forged (by romeo@hub.test) never reaches him or his archive (a
third party's beside it does reach him: the forged one crossed s2s), and his
archive has both directions with those ids; Juliet's copies and archive carry
Prosody's. Prints the check's lines, then how many messages Prosody's mod_mam
archived (its log). Exits 0 if all passed.
"""

import sys
from pathlib import Path

from prosody_federation import parse_args, run_client
from prosody_peer import ProsodyPeer


def evidence(log, hub):
    """One line on what Prosody's mod_mam archived with hub's users (its log shows
    each stanza's top tag)."""
    lines = [l for l in log.splitlines() if "Archiving stanza: <message" in l]
    sent = [l for l in lines if f"to='romeo@{hub}'" in l]
    received = [l for l in lines if f"from='romeo@{hub}/" in l]
    return f"prosody: mod_mam archived {len(sent)} message(s) to romeo@{hub} and {len(received)} from him"


def main():
    args = parse_args()
    external = args.mode == "external"
    hub = args.hub_domain
    peer = ProsodyPeer(
        Path(args.work) / "prosody", "prosody.test", args.prosody_c2s, args.prosody_s2s,
        routes={hub: ("127.0.0.1", int(args.hub_s2s))},
        cert_file=args.prosody_cert, key_file=args.prosody_key,
        ca_file=args.hub_ca if external else None, s2s_secure_auth=external,
        users=[("juliet", "balcony")], extra_modules=["mam"],
    )
    try:
        with peer:
            run_client("mam_federation.py", "--port", args.hub_c2s, "--ca", args.hub_ca,
                       "--jid", f"romeo@{hub}/orchard", "--password", "montague",
                       "--peer-port", args.prosody_c2s, "--peer-ca", args.prosody_ca,
                       "--peer-jid", "juliet@prosody.test/balcony", "--peer-password", "balcony",
                       "--messages", "6", "--peer-mam", timeout=60)
            log = peer.log_text()
    except BaseException:
        print(evidence(peer.log_text(), hub), file=sys.stderr)
        print("--- prosody log (tail) ---\n" + peer.log_tail(200), file=sys.stderr)
        raise
    print(evidence(log, hub))
    print("ok")


if __name__ == "__main__":
    main()
