"""PEP (XEP-0163) and OMEMO (XEP-0384) keys between wrenhub and Prosody users.

    prosody_pep_federation.py --work DIR --mode external|dialback \
        --hub-domain hub.test --hub-c2s P --hub-s2s P --hub-ca PEM \
        --prosody-c2s P --prosody-s2s P --prosody-cert PEM --prosody-key PEM --prosody-ca PEM

Starts a Prosody 0.12 for prosody.test on loopback (tests/interop/prosody_peer.py)
with its mod_pep, routing hub.test to wrenhub's s2s port. The s2s authentication
is as in prosody_federation.py: SASL EXTERNAL in `external` mode, dialback
otherwise. Then tests/interop/pep_federation.py runs with Romeo on wrenhub and
Juliet on Prosody: each fetches the other's open OMEMO device list and bundle as a
stranger (parts 1 and 2); then, as mutual contacts with devicelist+notify in their
caps, each gets the headline event when the other publishes a new device list
(parts 3a and 3b). Prints the check's line for each part, then Prosody's evidence
(the notifications it sent, the events it received). Exits 0 if every part passed.
"""

import re
import sys
from pathlib import Path

from prosody_federation import parse_args, run_client
from prosody_peer import ProsodyPeer


def evidence(log, hub):
    """One line on what Prosody's log says about PEP with `hub`: the notifications it
    sent to hub's users, the caps queries (mod_pep's iq id='disco') it sent to their
    resources, and the headline messages it received from hub."""
    lines = log.splitlines()
    to_hub = re.compile(rf"to='[^']*@{re.escape(hub)}[/']")
    from_hub = re.compile(rf"from='[^']*@{re.escape(hub)}[/']")
    sent = [l for l in lines if re.search(rf"Sending notification to \S+@{re.escape(hub)}/", l)]
    caps = [l for l in lines if "Sending[s2sout" in l and "<iq " in l and "id='disco'" in l and to_hub.search(l)]
    got = [l for l in lines if "Received[s2sin" in l and "<message " in l and "type='headline'" in l
           and from_hub.search(l)]
    return (f"prosody: {len(sent)} PEP notification(s) sent to {hub} users, {len(caps)} caps "
            f"query(ies) sent to {hub} resources, {len(got)} headline message(s) received from {hub}")


def main():
    args = parse_args()
    external = args.mode == "external"
    hub = args.hub_domain
    peer = ProsodyPeer(
        Path(args.work) / "prosody", "prosody.test", args.prosody_c2s, args.prosody_s2s,
        routes={hub: ("127.0.0.1", int(args.hub_s2s))},
        cert_file=args.prosody_cert, key_file=args.prosody_key,
        ca_file=args.hub_ca if external else None, s2s_secure_auth=external,
        users=[("juliet", "balcony")], extra_modules=["pep"],
    )
    try:
        with peer:
            run_client("pep_federation.py", "--port", args.hub_c2s, "--ca", args.hub_ca,
                       "--jid", f"romeo@{hub}/orchard", "--password", "montague",
                       "--peer-port", args.prosody_c2s, "--peer-ca", args.prosody_ca,
                       "--peer-jid", "juliet@prosody.test/balcony", "--peer-password", "balcony",
                       timeout=120)
            log = peer.log_text()
    except BaseException:
        print(evidence(peer.log_text(), hub), file=sys.stderr)
        print("--- prosody log (tail) ---\n" + peer.log_tail(200), file=sys.stderr)
        raise
    print(evidence(log, hub))
    print("ok")


if __name__ == "__main__":
    main()
