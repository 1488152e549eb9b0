"""A wrong password is refused: SASL <failure><not-authorized/>, no session.

    wrong_password.py --port P --ca CA.pem --jid juliet@localhost/balcony \
                      --password WRONG [--mech SCRAM-SHA-256]

slixmpp is limited to --mech, so it gives up after that one failure.
"""

from check import check, close, connect, main


async def run(args):
    xmpp, started = connect(args, args.jid, args.password, mech=args.mech)
    conditions = []
    xmpp.add_event_handler("failed_auth", lambda failure: conditions.append(failure["condition"]))
    reason = await started
    check(reason is not None, "the session started with a wrong password")
    check(conditions == ["not-authorized"], f"expected one SASL failure not-authorized, got {conditions}: {reason}")
    check(not xmpp.authenticated, "slixmpp says it is authenticated")
    print(f"{args.mech} with a wrong password: <failure><not-authorized/></failure>")
    await close(xmpp)


main(__doc__, run, [("--mech", "SCRAM-SHA-256", "the only SASL mechanism slixmpp may use")])
