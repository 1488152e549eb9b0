//! An inbound server-to-server connection for the [driver](super::driver): the
//! [`S2sInStream`] core, STARTTLS, dialback verifications waiting for the
//! authoritative server, the authentication and idle deadlines.

use super::driver::{drive, Action, Clock, Conn, Due, Exit, Queue};
use super::transport::Transport;
use crate::s2s::{DialbackWaiter, SendError, Verdict, VerifyRequest};
use crate::server::Server;
use crate::session_pool::{Kind, SessionLease};
use crate::stream::s2s_in::{Env, Input, S2sInStream, Step};
use std::rc::Rc;
use std::time::Instant;

/// An inbound server stream: the [`S2sInStream`] core and the dialback answers
/// it waits for from authoritative servers.
struct Inbound {
    stream: S2sInStream,
    waiter: Rc<DialbackWaiter>,
}

/// Serves one inbound s2s connection until it closes.
pub async fn serve(server: Rc<Server>, transport: Transport, lease: SessionLease) {
    if server.s2s.is_none() {
        return;
    }
    let inbound = Inbound { stream: S2sInStream::new(transport.is_tls()), waiter: Rc::new(DialbackWaiter::default()) };
    drive(&server, transport, inbound, &lease).await;
}

impl Inbound {
    fn action(&mut self, server: &Server, step: Step, out: &mut Vec<u8>) -> Action {
        match step {
            Step::Continue => Action::Continue,
            Step::Restart => Action::Restart,
            Step::StartTls => Action::StartTls,
            Step::Close => Action::Close,
            Step::Verify { local, remote: domain, key } => {
                let Some(s2s) = server.s2s.as_ref() else { return Action::Close };
                let request = VerifyRequest {
                    stream_id: self.stream.stream_id().to_string(),
                    key,
                    waiter: Rc::downgrade(&self.waiter),
                };
                if let Err(e) = s2s.request_verify(&local, &domain, request) {
                    log::warn!("s2s in: cannot verify {domain}: {e:?}");
                    let verdict = match e {
                        SendError::QueueFull | SendError::TooManyLinks => Verdict::Overloaded,
                    };
                    self.stream.dialback_answer(&domain, verdict, out);
                }
                Action::Continue
            }
        }
    }
}

impl Conn for Inbound {
    // Its answers go out on our outbound link to the peer (RFC 6120 §8.1.1.2 S2S).
    const ANSWERS_ELSEWHERE: bool = true;

    type Outcome = ();

    fn label(&self) -> &'static str {
        "s2s in"
    }

    fn take_queued(&mut self, _: &Server, _: &mut Clock, out: &mut Vec<u8>) -> Action {
        for (domain, verdict) in self.waiter.take() {
            self.stream.dialback_answer(&domain, verdict, out);
        }
        Action::Continue
    }

    fn listen_queue(&self) -> Queue {
        match self.waiter.listen_if_idle() {
            Some(listener) => Queue::Listen(listener),
            None => Queue::Ready,
        }
    }

    fn input(&mut self, server: &Server, transport: &Transport, input: Input<'_>, out: &mut Vec<u8>) -> Action {
        let Some(s2s) = server.s2s.as_ref() else { return Action::Close };
        let env = Env {
            s2s,
            dialback: server.config.s2s_dialback,
            peer_chain: transport.peer_certificates(),
            hub: server.hub(),
        };
        let step = self.stream.handle(input, &env, out);
        self.action(server, step, out)
    }

    fn deadline(&self, server: &Server, clock: &Clock) -> (Instant, Due) {
        let config = &server.config;
        if self.stream.authenticated() {
            (clock.last_activity + config.s2s_idle_timeout, Due::Timeout("no data received within s2s_idle_timeout"))
        } else {
            (clock.started + config.c2s_auth_timeout, Due::Timeout("not authenticated within c2s_auth_timeout"))
        }
    }

    fn due(&mut self, _: &Server, _: Due, _: &mut Clock, _: &mut Vec<u8>) -> Action {
        Action::Continue
    }

    fn authenticated(&self) -> Option<Kind> {
        self.stream.authenticated().then_some(Kind::S2sIn)
    }

    fn read_rate(&self, server: &Server) -> Option<u32> {
        server.config.s2s_read_rate
    }

    fn start_tls(&mut self, server: &Server, transport: &mut Transport, _: &mut Vec<u8>) -> std::io::Result<()> {
        transport.start_tls(server.s2s_server_config(false))?;
        self.stream.set_secure();
        Ok(())
    }

    fn finish(self, _: &Server, _: Exit) {}
}
