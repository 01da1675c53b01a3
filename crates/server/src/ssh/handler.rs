//! The russh handler: one per connection, holding the observed address and, once a
//! certificate passed [`authorize`], the authenticated user.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use ippin_policy::{NetDecision, NetOperation, NetworkEvent, ObservedAddr};
use russh::server::{Auth, ChannelOpenHandle, Handle, Msg, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure, Disconnect, MethodKind, MethodSet};
use ssh_key::Certificate;

use super::Shared;
use super::audit::{AuthRecord, ExecRecord, SshAuditEvent};
use super::dial::dial;
use super::exec::{MAX_COMMAND_LEN, run_builtin};
use super::session::{Ctx, Kind, Sessions};
use super::text::printable;
use ippin_access::ssh::{
    AuthContext, Authorized, CertIdentity, SshDenial, SshDenyReason, authorize,
};

/// The most `direct-tcpip` channels one connection may have open (or dialling) at once.
pub const MAX_FORWARDS_PER_CONNECTION: usize = 64;

/// The message a client gets when it asks for a shell.
pub const NO_SHELL: &str = "ippin: this server has no shell; run a built-in instead: `ssh ... whoami` or `ssh ... echo TEXT`\r\n";

pub(crate) struct Connection {
    pub(crate) shared: Arc<Shared>,
    pub(crate) observed: ObservedAddr,
    /// The TCP peer, when the accept loop told it (`crate::audit::CONNECTION_PEER`).
    pub(crate) peer: Option<std::net::SocketAddr>,
    pub(crate) session_id: String,
    pub(crate) handle: Arc<OnceLock<Handle>>,
    pub(crate) authenticated: Arc<AtomicBool>,
    /// Told once the user is in (the connection then leaves the unauthenticated stage).
    pub(crate) auth_done: Arc<tokio::sync::Notify>,
    /// Who is in, and the `ssh.auth.allowed` record: set once, read by the service, which
    /// checks the connection again every `recheck_interval`.
    pub(crate) admitted: Arc<OnceLock<(Authorized, ippin_access::ssh::AuthRecord)>>,
    /// This session's place among the authenticated ones, held until it ends.
    pub(crate) session_slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// This connection's place among its user's (`MAX_CONNECTIONS_PER_USER`).
    pub(crate) user_slot: Option<super::UserSlot>,
    pub(crate) authorized: Option<Authorized>,
    pub(crate) forwards: Arc<AtomicUsize>,
    /// Told when this connection ends, so that its forwards' relays end with it: a relay
    /// whose write to the client waits for a window that never opens again would otherwise
    /// outlive it, holding its destination socket and its user's forward place. (A dial in
    /// progress finishes first, so that every decision it made is audited.)
    pub(crate) ended: Arc<ConnectionEnd>,
    /// The refusal message queued for the user by the last denial, sent by russh as an
    /// `SSH_MSG_USERAUTH_BANNER` just before that attempt's failure reply (taken there).
    pub(crate) refusal_banner: Option<String>,
    /// The server's address of this connection, when the accept loop told it.
    pub(crate) local: Option<std::net::SocketAddr>,
    /// The session channels of an OS login and their processes; dropping it ends them all.
    pub(crate) sessions: Sessions,
}

/// The banner that tells the user why an attempt was refused: the message with its stable
/// reason code, made [`printable`], one line ending in CRLF (RFC 4252 §5.4).
pub(crate) fn refusal_banner(denial: &SshDenial) -> String {
    let code = denial.reason.code();
    let text = match denial.message.strip_prefix("ippin: ") {
        Some(rest) => format!("ippin: refused ({code}): {rest}"),
        None => format!("ippin: refused ({code}): {}", denial.message),
    };
    let mut banner = printable(&text);
    banner.push_str("\r\n");
    banner
}

fn publickey_only() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
        partial_success: false,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Connection {
    /// Runs `kind` on `channel` as the session's OS login.
    async fn start(
        &mut self,
        channel: ChannelId,
        kind: Kind,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let Some(who) = self.authorized.as_ref() else {
            return session.channel_failure(channel);
        };
        let ctx = Ctx {
            shared: &self.shared,
            who,
            session_id: &self.session_id,
            observed: &self.observed,
            local: self.local,
            peer: self.peer,
            handle: self.handle.get().cloned(),
            ended: self.sessions.ended(),
        };
        self.sessions.start(&ctx, channel, kind, session).await
    }

    fn record(&self, event: SshAuditEvent) -> bool {
        self.shared.audit.record(event)
    }

    fn auth_record(&self, user: &str, cert: Option<&Certificate>) -> AuthRecord {
        AuthRecord::attempt(&self.session_id, user, cert, self.peer, &self.observed)
    }

    fn deny(&mut self, user: &str, cert: Option<&Certificate>, denial: SshDenial) -> Auth {
        let banner = refusal_banner(&denial);
        let mut rec = self.auth_record(user, cert);
        rec.pinned = denial.pinned;
        rec.roles = denial.roles;
        rec.reason = Some(denial.reason.code().to_owned());
        rec.message = Some(denial.message.clone());
        // A denial stands whether or not its line could be written.
        let _ = self.record(SshAuditEvent::AuthDenied(rec));
        if denial.reason.tells_user() {
            // The reason reaches the user twice over. First as a banner, which russh sends
            // just before this attempt's failure reply (the vendored patch's
            // `auth_rejection_banner`, vendor/russh/PATCHES.md): OpenSSH prints it on stderr
            // even when it gives up right after that reply, as it does when the certificate
            // was its last identity. Then in a disconnect message, for clients that read on
            // (and ippin's own client, which shows it); the handle only queues it: the
            // session loop sends it after the failure reply.
            self.refusal_banner = Some(banner);
            if let Some(handle) = self.handle.get().cloned() {
                let message = printable(&denial.message);
                tokio::spawn(async move {
                    let _ = handle
                        .disconnect(
                            Disconnect::NoMoreAuthMethodsAvailable,
                            message,
                            "en".to_owned(),
                        )
                        .await;
                });
            }
        }
        publickey_only()
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_rejection_banner(&mut self) -> Result<Option<String>, Self::Error> {
        // Queued by `deny` for a refusal the user can act on; never set on success.
        Ok(self.refusal_banner.take())
    }

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        // The probe every OpenSSH client starts with: not audited.
        Ok(publickey_only())
    }

    async fn auth_password(&mut self, user: &str, _password: &str) -> Result<Auth, Self::Error> {
        Ok(self.deny(
            user,
            None,
            SshDenial {
                reason: SshDenyReason::NotACertificate,
                message:
                    "ippin: passwords are not accepted; use the certificate from `ippin login`"
                        .to_owned(),
                pinned: Vec::new(),
                roles: Vec::new(),
            },
        ))
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        _response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.deny(
            user,
            None,
            SshDenial {
                reason: SshDenyReason::NotACertificate,
                message: "ippin: keyboard-interactive is not accepted; use the certificate from `ippin login`"
                    .to_owned(),
                pinned: Vec::new(),
                roles: Vec::new(),
            },
        ))
    }

    // `auth_publickey_offered` keeps russh's default (accept the offer): at that stage russh
    // hands over the certificate's inner key, so a certificate cannot be told from a plain
    // key yet. The decision is made after the signature check, below.

    async fn auth_publickey(
        &mut self,
        user: &str,
        _key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.deny(
            user,
            None,
            SshDenial {
                reason: SshDenyReason::NotACertificate,
                message: "ippin: a plain public key is not accepted; use the certificate from `ippin login`"
                    .to_owned(),
                pinned: Vec::new(),
                roles: Vec::new(),
            },
        ))
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &Certificate,
    ) -> Result<Auth, Self::Error> {
        let ctx = AuthContext {
            identity: CertIdentity::IppinKeyId,
            trusted_cas: &self.shared.trusted_cas,
            users: self.shared.users.as_ref(),
            honours_force_command: true,
        };
        match authorize(&ctx, user, certificate, &self.observed, unix_now()) {
            Ok(who) => {
                // A place among the authenticated sessions, or a refusal now (never a wait).
                let Ok(slot) = self.shared.sessions.clone().try_acquire_owned() else {
                    return Ok(self.deny(
                        user,
                        Some(certificate),
                        SshDenial {
                            reason: SshDenyReason::SessionsFull,
                            message: "ippin: this server has as many SSH sessions as it \
                                      serves at once; try again later"
                                .to_owned(),
                            pinned: who.pinned,
                            roles: who.roles,
                        },
                    ));
                };
                let Some(user_slot) = self.shared.per_user.take(&who.user) else {
                    return Ok(self.deny(
                        user,
                        Some(certificate),
                        SshDenial {
                            reason: SshDenyReason::SessionsFull,
                            message: format!(
                                "ippin: you have {} SSH connections open on this server, the \
                                 most one user may; close one and try again",
                                super::MAX_CONNECTIONS_PER_USER
                            ),
                            pinned: who.pinned,
                            roles: who.roles,
                        },
                    ));
                };
                let mut rec = self.auth_record(user, Some(certificate));
                rec.event = "ssh.auth.allowed";
                rec.user = who.user.clone();
                rec.login = who.login.clone();
                rec.pinned = who.pinned.clone();
                rec.roles = who.roles.clone();
                let allowed = rec.clone();
                if !self.record(SshAuditEvent::AuthAllowed(rec)) {
                    // Fail closed: no access that the audit log does not show.
                    return Ok(self.deny(
                        user,
                        Some(certificate),
                        SshDenial {
                            reason: SshDenyReason::AuditUnavailable,
                            message: "ippin: the audit log cannot be written, so nobody is let \
                                      in; tell the operator"
                                .to_owned(),
                            pinned: who.pinned,
                            roles: who.roles,
                        },
                    ));
                }
                let _ = self.admitted.set((who.clone(), allowed));
                self.authorized = Some(who);
                self.session_slot = Some(slot);
                self.user_slot = Some(user_slot);
                self.authenticated.store(true, Ordering::SeqCst);
                self.auth_done.notify_one();
                Ok(Auth::Accept)
            }
            Err(denial) => Ok(self.deny(user, Some(certificate), denial)),
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.authorized.is_some() {
            // At most MAX_SESSION_CHANNELS at once (each may hold a terminal and processes).
            if !self.sessions.open(channel.id()) {
                reply.reject(ChannelOpenFailure::ResourceShortage).await;
                return Ok(());
            }
            // The `Channel` is dropped: built-ins answer from the handler, and russh's copies of
            // the requests to a dropped channel are discarded rather than queued.
            reply.accept().await;
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(who) = self.authorized.as_ref() else {
            return session.channel_failure(channel);
        };
        if who.login.is_some() {
            return self
                .start(channel, Kind::Exec(data.to_vec()), session)
                .await;
        }
        if let Some((code, message)) = super::session::recheck(&self.shared, who) {
            session.channel_success(channel)?;
            let text = printable(&format!("ippin: refused ({code}): {message}"));
            session.extended_data(channel, 1, format!("{text}\r\n").into_bytes())?;
            session.exit_status_request(channel, 1)?;
            session.eof(channel)?;
            self.sessions.forget(channel);
            return session.close(channel);
        }
        // A certificate's `force-command` replaces whatever the client asked for, as in sshd.
        let command = who.force_command.as_deref().map_or(data, str::as_bytes);
        let result = run_builtin(command, who, &self.observed, &self.session_id);
        let shown = command
            .get(..command.len().min(MAX_COMMAND_LEN.min(1024)))
            .unwrap_or(&[]);
        let recorded = self.record(SshAuditEvent::Exec(ExecRecord {
            event: "ssh.exec",
            session_id: self.session_id.clone(),
            user: who.user.clone(),
            command: String::from_utf8_lossy(shown).into_owned(),
            status: result.status,
        }));
        if !recorded {
            // Fail closed: a command the audit log does not show is not run.
            return session.channel_failure(channel);
        }
        session.channel_success(channel)?;
        if !result.stdout.is_empty() {
            session.data(channel, result.stdout.into_bytes())?;
        }
        if !result.stderr.is_empty() {
            session.extended_data(channel, 1, result.stderr.into_bytes())?;
        }
        session.exit_status_request(channel, result.status)?;
        session.eof(channel)?;
        self.sessions.forget(channel);
        session.close(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.authorized.as_ref().is_some_and(|w| w.login.is_some()) {
            return self.start(channel, Kind::Shell, session).await;
        }
        // Accepted only to say why there is none: a refused request would make OpenSSH exit
        // with "shell request failed" before it shows any message.
        session.channel_success(channel)?;
        session.extended_data(channel, 1, NO_SHELL.as_bytes().to_vec())?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        self.sessions.forget(channel);
        session.close(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.authorized.as_ref().is_some_and(|w| w.login.is_some()) {
            return self
                .start(
                    channel,
                    Kind::Subsystem(name.chars().take(64).collect()),
                    session,
                )
                .await;
        }
        session.channel_failure(channel)
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A terminal only with `permit-pty`, as sshd (a certificate made with `-O no-pty`).
        if self
            .authorized
            .as_ref()
            .is_some_and(|w| w.login.is_some() && w.pty)
        {
            return self
                .sessions
                .pty(channel, term, col_width, row_height, session);
        }
        session.channel_failure(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.authorized.as_ref().is_some_and(|w| w.login.is_some()) {
            return self
                .sessions
                .env(channel, variable_name, variable_value, session);
        }
        session.channel_failure(channel)
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.sessions.resize(channel, col_width, row_height);
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.sessions.data(channel, data);
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.sessions.eof(channel);
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.sessions.close(channel);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(who) = self.authorized.as_ref() else {
            return Ok(());
        };
        if let Some((code, message)) = super::session::recheck(&self.shared, who) {
            let mut rec = ippin_access::ssh::SessionRecord::new(
                "ssh.session.refused",
                &self.session_id,
                &who.user,
                who.login.as_deref().unwrap_or(""),
                "direct-tcpip",
            );
            rec.reason = Some(code.to_owned());
            rec.message = Some(message.clone());
            let _ = self.record(SshAuditEvent::Session(rec));
            reply
                .reject(ChannelOpenFailure::Other {
                    code: 1,
                    reason: printable(&format!("ippin: refused ({code}): {message}")),
                })
                .await;
            return Ok(());
        }
        if !who.port_forwarding {
            reply
                .reject(ChannelOpenFailure::Other {
                    code: 1,
                    reason: "ippin: the certificate does not permit port forwarding".to_owned(),
                })
                .await;
            return Ok(());
        }
        if self.forwards.fetch_add(1, Ordering::SeqCst) >= MAX_FORWARDS_PER_CONNECTION {
            self.forwards.fetch_sub(1, Ordering::SeqCst);
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        // The user's place among their forwards on every connection, held until it ends.
        let Some(user_forward) = self.shared.forwards_per_user.take(&who.user) else {
            self.forwards.fetch_sub(1, Ordering::SeqCst);
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        };
        let forwards = self.forwards.clone();
        let shared = self.shared.clone();
        let user = who.user.clone();
        // The OS login, as the kernel's events name it (the user's own name for a session of
        // the built-ins, which has none).
        let login = who.login.clone().unwrap_or_else(|| who.user.clone());
        let sid = self.session_id.clone();
        let src = self.observed.socket_addr();
        let host = host_to_connect.to_owned();
        let ended = self.ended.clone();
        // Dial off the session loop, so a slow destination does not stall the connection.
        tokio::spawn(async move {
            let _user_forward = user_forward;
            // One `T4002I` line for this session's dial or forward to `addr`.
            let network = |addr, operation, decision: &NetDecision| {
                shared.audit.record(SshAuditEvent::Network(
                    NetworkEvent::new(&user, &login, &sid, src, addr, operation, decision)
                        .with_server(&shared.session.server_id, &shared.session.cluster_name),
                ))
            };
            let outcome = dial(
                shared.dial_policy.as_ref(),
                &shared.own_listeners,
                &user,
                &host,
                port_to_connect,
            )
            .await;
            let denied = match &outcome {
                Ok(d) => d.denied.as_slice(),
                Err(e) => e.denied(),
            };
            for (addr, why) in denied {
                let decision = why.decision();
                // Denied either way; a line that cannot be written changes nothing.
                let _ = network(*addr, NetOperation::Connect, &decision);
            }
            match outcome {
                Err(e) => {
                    let code = if e.denied().is_empty() { 2 } else { 1 };
                    reply
                        .reject(ChannelOpenFailure::Other {
                            code,
                            reason: e.message(),
                        })
                        .await;
                }
                Ok(mut d) => {
                    let recorded = !shared.audit_observed_connections
                        || network(d.addr, NetOperation::Connect, &NetDecision::Allowed);
                    if !recorded {
                        // Fail closed: the connection is dropped before any byte is relayed.
                        drop(d.stream);
                        reply
                            .reject(ChannelOpenFailure::Other {
                                code: 1,
                                reason: "ippin: the audit log cannot be written, so no \
                                         connection is made; tell the operator"
                                    .to_owned(),
                            })
                            .await;
                        forwards.fetch_sub(1, Ordering::SeqCst);
                        return;
                    }
                    reply.accept().await;
                    let mut stream = channel.into_stream();
                    // Held to policy updates: ended when the destination is denied; and
                    // ended with the connection.
                    let end = tokio::select! {
                        end = ippin_access::egress::relay(
                            &mut stream,
                            &mut d.stream,
                            shared.dial_policy.as_ref(),
                            &user,
                            d.addr,
                            shared.recheck_interval,
                        ) => Some(end),
                        () = ended.wait() => None,
                    };
                    if let Some(ippin_access::egress::RelayEnd::Denied(decision)) = end {
                        // Ended either way; a line that cannot be written changes nothing.
                        let _ = network(d.addr, NetOperation::Send, &decision);
                    }
                }
            }
            forwards.fetch_sub(1, Ordering::SeqCst);
        });
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        _address: &str,
        _port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        // Remote forwarding would make the server listen for the user: not offered.
        Ok(false)
    }
}

/// That a connection ended, for the tasks that must end with it.
#[derive(Debug, Default)]
pub(crate) struct ConnectionEnd {
    ended: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl ConnectionEnd {
    fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Returns once the connection has ended (at once if it has).
    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so an end between the two is not missed.
            notified.as_mut().enable();
            if self.ended.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Connection {
    /// The connection is gone: so are its forwards' relays.
    fn drop(&mut self) {
        self.ended.end();
    }
}

#[cfg(test)]
mod tests {
    use ippin_policy::DenyReason;
    use proptest::prelude::*;

    use super::super::text::{MAX_REFUSAL_MESSAGE, is_bidi_control};
    use super::*;

    fn denial(reason: SshDenyReason, message: &str) -> SshDenial {
        SshDenial {
            reason,
            message: message.to_owned(),
            pinned: Vec::new(),
            roles: Vec::new(),
        }
    }

    #[test]
    fn banner_carries_the_reason_code_and_the_message() {
        let d = denial(
            SshDenyReason::Pin(DenyReason::PinnedIpMismatch),
            "ippin: the certificate is pinned to 127.0.0.1/32, this connection comes from \
             127.0.0.2: log in again (`ippin login`) from here",
        );
        assert_eq!(
            refusal_banner(&d),
            "ippin: refused (pinned_ip_mismatch): the certificate is pinned to 127.0.0.1/32, \
             this connection comes from 127.0.0.2: log in again (`ippin login`) from here\r\n"
        );
    }

    #[test]
    fn escape_sequences_in_a_user_name_are_written_out() {
        let d = denial(
            SshDenyReason::UnknownUser,
            "ippin: there is no user `x\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\u{202e}` on this server",
        );
        assert_eq!(
            refusal_banner(&d),
            "ippin: refused (unknown_user): there is no user \
             `x\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{9b}31m\\u{202e}` on this server\r\n"
        );
    }

    #[test]
    fn long_messages_are_cut() {
        let d = denial(SshDenyReason::UnknownUser, &"\u{1b}".repeat(5000));
        let banner = refusal_banner(&d);
        assert_eq!(banner.chars().count(), MAX_REFUSAL_MESSAGE + 2);
        assert!(banner.ends_with("\r\n"));
    }

    proptest! {
        /// Whatever the text, what reaches the terminal has no control character (but the
        /// final CRLF), no bidirectional control, and is bounded.
        #[test]
        fn banner_is_always_printable_and_bounded(text in any::<String>()) {
            let banner = refusal_banner(&denial(SshDenyReason::Expired, &text));
            let body = banner.strip_suffix("\r\n").expect("ends in CRLF");
            prop_assert!(body.chars().count() <= MAX_REFUSAL_MESSAGE);
            prop_assert!(!body.chars().any(|c| c.is_control() || is_bidi_control(c)));
            prop_assert!(body.starts_with("ippin: refused (expired): "));
        }
    }
}
