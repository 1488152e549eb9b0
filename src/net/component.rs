//! An external component connection (XEP-0114) for the [driver](super::driver):
//! the [`ComponentStream`] core, the stanzas routed to the component, the
//! handshake deadline and keepalive pings once established.

use super::driver::{drive, ping_deadline, write_ping, Action, Clock, Conn, Due, Exit, Queue};
use super::transport::Transport;
use crate::server::Server;
use crate::session_pool::{Kind, SessionLease};
use crate::stream::component::{ComponentStream, Env, Input, Step};
use std::rc::Rc;
use std::time::Instant;

/// A component connection: the [`ComponentStream`] core and, once established,
/// its link's queue.
struct Component {
    stream: ComponentStream,
    peer: std::net::IpAddr,
}

/// Serves one component connection until it closes.
pub async fn serve(server: Rc<Server>, transport: Transport, lease: SessionLease) {
    let peer = lease.peer().map(|p| p.ip()).unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    drive(&server, transport, Component { stream: ComponentStream::default(), peer }, &lease).await;
}

fn env(server: &Server, peer: std::net::IpAddr) -> Env<'_> {
    Env { hub: server.hub(), limiter: &server.limiter, peer }
}

fn action(step: Step) -> Action {
    match step {
        Step::Continue => Action::Continue,
        Step::Close => Action::Close,
    }
}

impl Conn for Component {
    type Outcome = ();

    fn label(&self) -> &'static str {
        "component"
    }

    fn take_queued(&mut self, server: &Server, _: &mut Clock, out: &mut Vec<u8>) -> Action {
        match self.stream.link().and_then(|l| l.take_close_or_drain(out)) {
            Some(error) => action(self.stream.handle(Input::Kill(error), &env(server, self.peer), out)),
            None => Action::Continue,
        }
    }

    fn listen_queue(&self) -> Queue {
        match self.stream.link().map(|l| l.listen_if_idle()) {
            None => Queue::None,
            Some(Some(listener)) => Queue::Listen(listener),
            Some(None) => Queue::Ready,
        }
    }

    fn input(&mut self, server: &Server, _: &Transport, input: Input<'_>, out: &mut Vec<u8>) -> Action {
        action(self.stream.handle(input, &env(server, self.peer), out))
    }

    fn deadline(&self, server: &Server, clock: &Clock) -> (Instant, Due) {
        if self.stream.established() {
            // R5: a quiet component is pinged (XEP-0199) instead of dropped.
            ping_deadline(server, clock)
        } else {
            (clock.started + server.config.c2s_auth_timeout, Due::Timeout("no handshake within c2s_auth_timeout"))
        }
    }

    fn due(&mut self, server: &Server, _: Due, clock: &mut Clock, out: &mut Vec<u8>) -> Action {
        let to = self.stream.link().map(|l| l.domain.to_string());
        write_ping(out, Some(server.domain.as_str()), to.as_deref(), clock);
        Action::Continue
    }

    fn authenticated(&self) -> Option<Kind> {
        self.stream.established().then_some(Kind::Component)
    }

    fn start_tls(&mut self, _: &Server, _: &mut Transport, _: &mut Vec<u8>) -> std::io::Result<()> {
        // XEP-0114 has no STARTTLS; Direct TLS starts in the listener.
        Err(std::io::ErrorKind::Unsupported.into())
    }

    fn finish(mut self, server: &Server, _: Exit) {
        if let Some(link) = self.stream.take_link() {
            log::info!("component {} disconnected", link.domain);
            server.components.disconnect(&link);
        }
    }
}
