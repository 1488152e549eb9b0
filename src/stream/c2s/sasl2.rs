//! The client stream's one-round-trip login: XEP-0388 SASL2 with what it carries
//! inline, XEP-0386 Bind 2 (with stream management, carbons and CSI), XEP-0198
//! resumption, and XEP-0484 FAST tokens. The SASL mechanisms themselves are the
//! legacy profile's; success does not restart the stream.

use super::{resumable, write_resumed, C2sStream, Env, Exchange, NotResumable, Phase, Sasl2Exchange, Step};
use crate::jid::{BareJid, FullJid};
use crate::ns::{NS_CARBONS, NS_CSI, NS_STANZAS};
use crate::sasl::fast::{self, HtMechanism};
use crate::sasl::sasl2::{parse_authenticate, BindRequest, Inline, NS_BIND2, NS_FAST, NS_SASL2};
use crate::sasl::Failure;
use crate::sessions::{BindError, Session};
use crate::store::fast_tokens::FastToken;
use crate::stream::sm::NS_SM;
use crate::xml::writer::XmlWriter;
use crate::xml::Element;
use base64::Engine;
use std::rc::Rc;

/// A login with a FAST token, until its success is written.
pub(super) struct FastLogin {
    mechanism: HtMechanism,
    agent: String,
    /// The token used, unless the client invalidated it.
    used: Option<FastToken>,
    /// Tokens issued after it and not used yet (a rotation whose answer may have
    /// been lost); §3.4: the ones issued before it are void.
    newer: Vec<FastToken>,
    /// The token used is in its last third: a new one goes out unasked.
    rotate: bool,
    /// What stays valid differs from what the store holds.
    changed: bool,
}

impl C2sStream {
    /// The FAST mechanisms this connection can run (channel binding needs TLS data).
    fn fast_mechanisms(&self, env: &Env<'_>) -> Vec<HtMechanism> {
        if !self.secure {
            return Vec::new();
        }
        HtMechanism::ALL.into_iter().filter(|m| m.binding(env.bindings).is_some()).collect()
    }

    /// XEP-0388 §2.4: the `<authentication/>` feature with its inline features.
    pub(super) fn write_sasl2_feature(&self, env: &Env<'_>, out: &mut Vec<u8>) {
        let mut w = XmlWriter::new(out);
        w.start("authentication").attr("xmlns", NS_SASL2).open();
        for m in self.offered_mechanisms(env) {
            w.start("mechanism").open().text(m.name()).end("mechanism");
        }
        w.start("inline").open();
        w.start("bind").attr("xmlns", NS_BIND2).open().start("inline").open();
        for feature in [NS_CARBONS, NS_CSI, NS_SM] {
            w.start("feature").attr("var", feature).close_empty();
        }
        w.end("inline").end("bind");
        w.empty_ns("sm", NS_SM);
        let fast = self.fast_mechanisms(env);
        if !fast.is_empty() {
            w.start("fast").attr("xmlns", NS_FAST).open();
            for m in fast {
                w.start("mechanism").open().text(m.name()).end("mechanism");
            }
            w.end("fast");
        }
        w.end("inline").end("authentication");
    }

    /// XEP-0388 §2.5: `<authenticate mechanism>`.
    pub(super) fn on_authenticate(&mut self, el: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        self.phase = Phase::Negotiating;
        let request = parse_authenticate(el);
        let inline = request.as_ref().map(|r| r.inline.clone()).unwrap_or_default();
        self.exchange = Exchange::Sasl2(Box::new(Sasl2Exchange { inline, fast: None }));
        let request = match request {
            Ok(r) => r,
            Err(f) => return self.sasl_failure(f, None, env, out),
        };
        if let Err(step) = self.may_authenticate(env, out) {
            return step;
        }
        let Some(payload) = request.initial_response else {
            let text = "this server needs the mechanism's first message in <initial-response/>";
            return self.sasl_failure(Failure::MalformedRequest, Some(text), env, out);
        };
        if let Some(ht) = HtMechanism::from_name(&request.mechanism) {
            return self.auth_fast(ht, &payload, env, out);
        }
        match self.choose_mechanism(&request.mechanism, env, out) {
            Ok(m) => self.start_mechanism(m, &payload, env, out),
            Err(step) => step,
        }
    }

    /// XEP-0484 §3.3: a login with a token (one message; no PBKDF2).
    fn auth_fast(&mut self, ht: HtMechanism, payload: &[u8], env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        if !self.fast_mechanisms(env).contains(&ht) {
            return self.sasl_failure(Failure::InvalidMechanism, None, env, out);
        }
        let response = match fast::parse(payload) {
            Ok(r) => r,
            Err(f) => return self.sasl_failure(f, None, env, out),
        };
        let (jid, account) = match self.identify(&response.username, None, env) {
            Ok(found) => found,
            Err(f) => return self.sasl_failure(f, None, env, out),
        };
        if let Err(step) = self.account_may_try(jid.as_ref(), account.is_some(), env, out) {
            return step;
        }
        let (invalidate, agent) = match &self.exchange {
            Exchange::Sasl2(x) => (x.inline.fast.as_ref().is_some_and(|f| f.invalidate), x.inline.agent.clone()),
            Exchange::Legacy => (false, None),
        };
        let (Some(jid), Some(account), Some(agent)) = (jid, account, agent) else {
            // Unknown user, or no client id to find its tokens by.
            return self.sasl_failure(Failure::NotAuthorized, None, env, out);
        };
        let tokens = env.hub.store.fast_tokens(&jid, &agent).unwrap_or_else(|e| {
            log::error!("FAST tokens of {jid}: {e}");
            Vec::new()
        });
        let cb = ht.binding(env.bindings).unwrap_or_default();
        let now = crate::clock::now_unix();
        let Some((used, server_final)) = fast::verify(&response, ht, cb, &tokens, now) else {
            // §4.2: a token this server issued but no longer trusts.
            if fast::verify(&response, ht, cb, &tokens, 0).is_some() {
                return self.sasl_failure(Failure::CredentialsExpired, Some("this token has expired"), env, out);
            }
            return self.sasl_failure(Failure::NotAuthorized, None, env, out);
        };
        if account.disabled {
            return self.sasl_failure(Failure::AccountDisabled, None, env, out);
        }
        // The store lists a client's tokens newest first.
        let position = tokens.iter().position(|t| t == used).unwrap_or(0);
        let newer: Vec<FastToken> = tokens[..position].iter().filter(|t| t.expiry > now).cloned().collect();
        let rotate = !invalidate && used.expiry.saturating_sub(now) < self.policy.fast_token_lifetime / 3;
        let changed = invalidate || newer.len() + 1 != tokens.len();
        let used = (!invalidate).then(|| used.clone());
        if let Exchange::Sasl2(x) = &mut self.exchange {
            x.fast = Some(FastLogin { mechanism: ht, agent, used, newer, rotate, changed });
        }
        self.sasl_success_if_current(jid, &server_final, env, out)
    }

    /// XEP-0388 §2.6.1: the account is authenticated. Resumption, else binding,
    /// happen now; `<success/>` reports them, then the new features follow (no
    /// restart), then what a resumed session had unacknowledged.
    pub(super) fn sasl2_success(
        &mut self,
        jid: BareJid,
        additional: &[u8],
        exchange: Sasl2Exchange,
        env: &Env<'_>,
        out: &mut Vec<u8>,
    ) -> Step {
        let Sasl2Exchange { inline, fast } = exchange;
        let mut resumed = None;
        let mut resume_failed = false;
        if let Some(r) = &inline.resume {
            match resumable(&jid, &r.previd, r.h, env) {
                Ok((session, batch)) => resumed = Some((session, r.previd.clone(), batch)),
                Err(NotResumable::TooHigh(e)) => return self.too_high(e, out),
                Err(NotResumable::Unknown) => resume_failed = true,
            }
        }
        let bound = match (&resumed, &inline.bind) {
            (None, Some(request)) => match self.bind2(&jid, request, inline.agent.as_deref(), env) {
                Ok(session) => Some(session),
                Err(text) => {
                    // Not a credential failure: it is not counted.
                    self.phase = Phase::Negotiating;
                    crate::sasl::sasl2::write_failure(Failure::TemporaryAuthFailure, Some(text), out);
                    return Step::Continue;
                }
            },
            _ => None,
        };
        let token = self.fast_token(&jid, &inline, fast, env);
        log::info!("{jid} authenticated with SASL2 (stream {})", self.stream_id);
        self.user = Some(jid.clone());

        let mut w = XmlWriter::new(out);
        w.start("success").attr("xmlns", NS_SASL2).open();
        if !additional.is_empty() {
            let data = base64::engine::general_purpose::STANDARD.encode(additional);
            w.start("additional-data").open().text(&data).end("additional-data");
        }
        let identity = match (&resumed, &bound) {
            (Some((s, _, _)), _) | (None, Some(s)) => s.jid.as_str().to_string(),
            _ => jid.as_str().to_string(),
        };
        w.start("authorization-identifier").open().text(&identity).end("authorization-identifier");
        if let Some((session, previd, _)) = &resumed {
            write_resumed(session, previd, out);
        } else if resume_failed {
            let mut w = XmlWriter::new(out);
            w.start("failed").attr("xmlns", NS_SM).open().empty_ns("item-not-found", NS_STANZAS).end("failed");
        }
        if let (Some(session), Some(request)) = (&bound, &inline.bind) {
            XmlWriter::new(out).start("bound").attr("xmlns", NS_BIND2).open();
            if let Some(resume) = request.sm {
                self.enable_sm(session, resume, out);
            }
            XmlWriter::new(out).end("bound");
        }
        if let Some((text, expiry)) = token {
            XmlWriter::new(out)
                .start("token")
                .attr("xmlns", NS_FAST)
                .attr(
                    "expiry",
                    &crate::clock::utc_timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(expiry)),
                )
                .attr("token", &text)
                .close_empty();
        }
        XmlWriter::new(out).end("success");
        if let Some((session, _, batch)) = resumed {
            self.phase = Phase::Bound(Rc::clone(&session));
            self.write_features(env, out);
            self.resume_into(Rc::clone(&session), out);
            super::offline_acknowledged(env, &session, batch, out);
        } else if let Some(session) = bound {
            log::info!("{} bound with Bind 2 (stream {})", session.jid, self.stream_id);
            self.phase = Phase::Bound(Rc::clone(&session));
            self.write_features(env, out);
            if let Some(state) = session.sm.borrow_mut().as_mut() {
                state.count_from = out.len();
            }
        } else {
            self.phase = Phase::Authenticated;
            self.write_features(env, out);
        }
        Step::Continue
    }

    /// XEP-0386 §3: binds `tag.suffix`, where the suffix is the same for the same
    /// client (`<user-agent id>`), so a reconnecting phone keeps its resource and
    /// replaces its stale session; then enables what the request asks for.
    fn bind2(
        &self,
        jid: &BareJid,
        request: &BindRequest,
        agent: Option<&str>,
        env: &Env<'_>,
    ) -> Result<Rc<Session>, &'static str> {
        let tag = request.tag.as_deref().unwrap_or("wrenhub");
        let random = || crate::stream::header::new_stream_id()[..8].to_string();
        let suffix = agent.map_or_else(random, |a| stable_suffix(env.secret, jid, a));
        let full = FullJid::new(jid, &format!("{tag}.{suffix}"))
            .or_else(|_| FullJid::new(jid, &format!("wrenhub.{suffix}")))
            .map_err(|_| "no resource could be made")?;
        let session = match env.hub.registry.bind(full) {
            Ok(s) => s,
            Err(BindError::Conflict) => FullJid::new(jid, &format!("{tag}.{}", random()))
                .ok()
                .and_then(|f| env.hub.registry.bind(f).ok())
                .ok_or("this resource is in use")?,
            Err(BindError::ResourceConstraint) => return Err("this account has max_resources_per_account sessions"),
        };
        session.carbons.set(request.carbons);
        if request.inactive {
            session.set_inactive(true);
        }
        Ok(session)
    }

    /// XEP-0484 §3.2, §3.4: a new token when the client asks for one (with a
    /// client id and an offered mechanism) or when the one it used is due for
    /// rotation; stores what stays valid. Its text and expiry, to send once.
    fn fast_token(
        &self,
        jid: &BareJid,
        inline: &Inline,
        login: Option<FastLogin>,
        env: &Env<'_>,
    ) -> Option<(String, u64)> {
        let requested = inline
            .request_token
            .as_deref()
            .and_then(HtMechanism::from_name)
            .filter(|m| self.fast_mechanisms(env).contains(m));
        let (agent, mechanism, used, newer, changed) = match login {
            Some(l) => (l.agent, requested.or(l.rotate.then_some(l.mechanism)), l.used, l.newer, l.changed),
            None => (inline.agent.clone()?, requested, None, Vec::new(), false),
        };
        if mechanism.is_none() && !changed {
            return None;
        }
        let expiry = crate::clock::now_unix().saturating_add(self.policy.fast_token_lifetime);
        let mut tokens = Vec::new();
        let issued = match mechanism {
            // A new token and the one in use; unused rotations are dropped (§3.4).
            Some(m) => {
                let (text, token) = fast::issue(m, expiry);
                tokens.push(token);
                Some(text)
            }
            None => {
                tokens.extend(newer);
                None
            }
        };
        tokens.extend(used);
        tokens.truncate(2);
        if let Err(e) = env.hub.store.put_fast_tokens(jid, &agent, &tokens, self.policy.fast_clients_per_account) {
            log::error!("FAST tokens of {jid}: {e}");
            return None;
        }
        issued.map(|text| (text, expiry))
    }
}

/// Eight hex digits that name one client of one account, unguessable without the
/// server's secret.
fn stable_suffix(secret: &[u8], jid: &BareJid, agent: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(jid.as_str().as_bytes());
    ctx.update(b"\0");
    ctx.update(agent.as_bytes());
    ctx.sign().as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
}
