//! The wiring into the server: arming an inner listener's verifier, the
//! `forward` listener's accept loop, and the SSH accept loop for `ssh`
//! listeners with propagation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ippin_access::lockout::PeerPlaces;
use tokio::net::{TcpListener, TcpStream};

use super::net::{ForwardTarget, accept_listener, dial_and_sign, relay, unix};
use super::{GrantSchedule, Signer, TrustAnchor, Verifier};
use crate::audit::AuditEvent;
use crate::config::{ListenerConfig, read_bounded};
use crate::listen::bounded_accept;
use crate::state::{ServerError, State};

pub use super::runtime::Armed;

fn load_error(file: &std::path::Path, message: impl std::fmt::Display) -> ServerError {
    ServerError::Tls {
        file: file.display().to_string(),
        message: message.to_string(),
    }
}

/// The verifier of `lcfg` (when it has `propagation`): reads the
/// trusted CA (the cluster CA unless `trusted_ca` is set); the static key
/// was read with the configuration.
///
/// # Errors
/// [`ServerError`] when the CA file cannot be read or used.
pub fn arm(state: &State, lcfg: &ListenerConfig) -> Result<Option<Armed>, ServerError> {
    let Some(p) = &lcfg.propagation else {
        return Ok(None);
    };
    let ca_file = p
        .trusted_ca
        .clone()
        .unwrap_or_else(|| state.config.ca.tls_cert.clone());
    let pem = read_bounded(&ca_file, crate::config::MAX_CONFIG_BYTES)?;
    let der = crate::files::pem_to_der(&pem, "CERTIFICATE")
        .ok_or_else(|| load_error(&ca_file, "not one PEM CERTIFICATE block"))?;
    let anchor = TrustAnchor::from_der(&der).map_err(|e| load_error(&ca_file, e))?;
    // Started now: the headers accepted before a restart are not accepted again. (A second
    // before now: a header written in the second the server starts, for a connection that
    // arrives once it listens, is not refused for it.)
    let verifier = Verifier::new(
        anchor,
        p.secret.clone(),
        &p.audience,
        p.window.as_secs(),
        p.replay_capacity,
    )
    .started_at(unix((state.clock)()).saturating_sub(1));
    Ok(Some(Armed {
        verifier: Arc::new(verifier),
        clock: state.clock.clone(),
    }))
}

fn audit(state: &State, event: &AuditEvent) -> bool {
    match state.audit.record((state.clock)(), event) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!("{e}; refusing the action it records");
            false
        }
    }
}

/// Loads a `forward` listener's identity.
///
/// # Errors
/// [`ServerError`] when the listener has no `forward` section, or its
/// files cannot be read or do not make an identity.
pub fn forward_target(lcfg: &ListenerConfig) -> Result<ForwardTarget, ServerError> {
    let Some(f) = &lcfg.forward else {
        return Err(load_error(
            std::path::Path::new("(config)"),
            format!(
                "forward listener on {} has no `forward` section",
                lcfg.listen
            ),
        ));
    };
    let cert = read_bounded(&f.cert, crate::config::MAX_CONFIG_BYTES)?;
    // Refused when group or others may access it, as sshd does.
    let key = crate::files::read_private(&f.key, crate::config::MAX_CONFIG_BYTES)
        .map_err(|e| load_error(&f.key, format!("field `forward.key`: {e}")))?;
    let signer = Signer::from_pem(&cert, &key).map_err(|e| load_error(&f.cert, e))?;
    if !signer.is_front() {
        return Err(load_error(
            &f.cert,
            "not a front's certificate (CN `proxy:NAME`, role `proxy`, and the front's extended \
             key usage alone, which certificates issued before 2026-12-07 lack): issue it again \
             with `ippin ca issue-proxy`",
        ));
    }
    Ok(ForwardTarget {
        upstream: f.upstream.clone(),
        grants: Arc::new(GrantSchedule::new(
            Arc::new(signer),
            f.upstream_public,
            &f.audience,
            f.grant_lifetime.as_secs(),
        )),
    })
}

/// The accept loop of a `forward` listener: the PROXY-aware accept path
/// (with signed headers when it has `propagation` too), then dial, sign,
/// relay; every forward and refusal audited.
pub async fn forward_loop(
    socket: TcpListener,
    lcfg: ListenerConfig,
    target: ForwardTarget,
    state: Arc<State>,
    signed: Option<Armed>,
) {
    let listen = lcfg.listen;
    let forwarding = Arc::new(Forwarding {
        observing: crate::observe::Observing::new(&lcfg, signed),
        lcfg,
        target,
        young: PeerPlaces::new(MAX_YOUNG_RELAYS_PER_PEER),
    });
    bounded_accept(socket, listen, move |tcp, peer, pending_slot, slots| {
        let (forwarding, state) = (forwarding.clone(), state.clone());
        async move {
            forward_one(tcp, peer, &forwarding, &state, pending_slot, slots).await;
        }
    })
    .await;
}

/// A `forward` listener: its configuration, where it forwards to, and its clients' young
/// relays.
struct Forwarding {
    lcfg: ListenerConfig,
    /// The listener's PROXY policy and verifier.
    observing: crate::observe::Observing,
    target: ForwardTarget,
    young: PeerPlaces,
}

/// The most relays of one client address (an IPv4 address, an IPv6 /64) a `forward` listener
/// holds that are younger than [`YOUNG_RELAY`]; one more is refused (`forward_peer_busy`).
/// A relay's first minute is when the inner server may still be waiting for the client to
/// authenticate (an SSH server's login grace, a TLS handshake): without this bound, one client
/// sending a byte on each of many connections held every relay of the listener for that long.
/// Relays older than that (sessions in use) do not count, so many users behind one address
/// keep their sessions.
pub const MAX_YOUNG_RELAYS_PER_PEER: usize = 64;

/// How long a relay counts against its client's [`MAX_YOUNG_RELAYS_PER_PEER`].
pub const YOUNG_RELAY: Duration = Duration::from_secs(60);

async fn forward_one(
    tcp: TcpStream,
    peer: SocketAddr,
    forwarding: &Forwarding,
    state: &State,
    pending_slot: tokio::sync::OwnedSemaphorePermit,
    slots: Arc<tokio::sync::Semaphore>,
) {
    let Forwarding {
        lcfg,
        observing,
        target,
        young,
    } = forwarding;
    let _ = tcp.set_nodelay(true);
    let local = match tcp.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    // The same observation as every other listener: a forward listener with `propagation`
    // verifies a signed header from the front before it (fronts chained), and never reads
    // one as an unsigned header.
    let accepted = crate::observe::observe(tcp, peer, Some(local), lcfg, observing).await;
    let (observed, stream) = match accepted {
        Ok(x) => x,
        Err(refused) => {
            audit(
                state,
                &AuditEvent::ProxyRefused {
                    listener: lcfg.kind.as_str().into(),
                    peer: AuditEvent::peer(peer),
                    reason: refused.code.into(),
                    detail: refused.message,
                },
            );
            return;
        }
    };
    let refused = |reason: &str, detail: String| AuditEvent::ForwardRefused {
        peer: AuditEvent::peer(peer),
        observed: AuditEvent::addr(&observed),
        provenance: observed.provenance().as_str().into(),
        upstream: target.upstream.clone(),
        reason: reason.into(),
        detail,
    };
    // The client's place among its young relays: the observed client when trusted, else the
    // TCP peer. Given back when the relay ends or is YOUNG_RELAY old, whichever comes first.
    let client = ippin_access::lockout::throttle_key(&observed, peer);
    let Some(place) = young.take(client) else {
        audit(
            state,
            &refused(
                "forward_peer_busy",
                format!(
                    "this client has {MAX_YOUNG_RELAYS_PER_PEER} relays younger than \
                     {YOUNG_RELAY:?} already"
                ),
            ),
        );
        return;
    };
    let (_relay_open, relay_ended) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _place = place;
        tokio::select! {
            () = tokio::time::sleep(YOUNG_RELAY) => {}
            _ = relay_ended => {}
        }
    });
    // Past the PROXY stage: trade the pending slot for a relay slot (as the server's other
    // listeners do), waiting at most `header_timeout` for one: every relay held, a new
    // connection is refused (`forward_busy`) rather than queued with its pending slot, which
    // would let stalled relays stop the accept loop.
    let Ok(Ok(_slot)) = tokio::time::timeout(lcfg.header_timeout, slots.acquire_owned()).await
    else {
        audit(
            state,
            &refused(
                "forward_busy",
                "every relay of this listener is in use".to_owned(),
            ),
        );
        return;
    };
    drop(pending_slot);
    let (early, mut client) = stream.into_parts();
    let clock = state.clock.clone();
    let dialed = dial_and_sign(target, &observed, local, &early, move || unix(clock())).await;
    let mut up = match dialed {
        Ok(d) => d,
        Err(e) => {
            tracing::info!("forward listener: {peer}: {e}");
            audit(state, &refused(e.code(), e.to_string()));
            return;
        }
    };
    let started = AuditEvent::Forwarded {
        peer: AuditEvent::peer(peer),
        observed: AuditEvent::addr(&observed),
        provenance: observed.provenance().as_str().into(),
        upstream: up.upstream.to_string(),
        audience: target.grants.audience().to_owned(),
    };
    if !audit(state, &started) {
        // Fail closed: nothing is sent or relayed that the log does not show (the header
        // and the early bytes are still unsent).
        return;
    }
    if let Err(e) = up.send_first().await {
        tracing::info!("forward listener: {peer}: upstream {}: {e}", up.upstream);
        return;
    }
    let (sent, received) = relay(&mut client, &mut up.stream).await;
    audit(
        state,
        &AuditEvent::ForwardClosed {
            observed: AuditEvent::addr(&observed),
            upstream: up.upstream.to_string(),
            bytes_up: sent.saturating_add(early.len() as u64),
            bytes_down: received,
        },
    );
}

/// The accept loop of an `ssh` listener with `propagation`: the header
/// sequence with signed headers, then the SSH service.
pub async fn ssh_loop(
    service: crate::ssh::SshService,
    socket: TcpListener,
    lcfg: ListenerConfig,
    state: Arc<State>,
    signed: Option<Armed>,
) {
    let observing = Arc::new(crate::observe::Observing::new(&lcfg, signed));
    let lcfg = Arc::new(lcfg);
    let listen = lcfg.listen;
    // As `SshService::serve_listener`: the accept loop bounds the header stage; past it the
    // service bounds the rest (unauthenticated connections shed oldest first, authenticated
    // ones counted), so the loop's established-connection slots are not waited for (a wait
    // there, with no deadline, let stalled connections hold every slot and queue the rest).
    bounded_accept(socket, listen, move |tcp, peer, pending_slot, _slots| {
        let (service, lcfg, state) = (service.clone(), lcfg.clone(), state.clone());
        let observing = observing.clone();
        async move {
            let Ok(local) = tcp.local_addr() else {
                return;
            };
            let accepted = accept_listener(
                tcp,
                peer,
                local,
                &lcfg,
                &observing.policy,
                observing.signed.as_ref(),
            )
            .await;
            drop(pending_slot);
            match accepted {
                Ok((observed, stream)) => {
                    let _ = service.handle(stream, observed).await;
                }
                Err(refused) => {
                    audit(
                        &state,
                        &AuditEvent::ProxyRefused {
                            listener: lcfg.kind.as_str().into(),
                            peer: AuditEvent::peer(peer),
                            reason: refused.code.into(),
                            detail: refused.message,
                        },
                    );
                }
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A forward listener starts with a front's certificate, and refuses at load one that
    /// is not (named and roled as a front's, Ed25519 key, but a user's key usage), with what
    /// to do.
    #[test]
    fn a_forward_listener_refuses_a_certificate_that_is_not_a_fronts() {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        use ippin_cert::x509::{ClientCertRequest, X509Ca};
        let dir = ippin_test_support::temp_dir();
        let mut rng = crate::rng();
        let ca = X509Ca::generate_p256("cluster CA", 1, 4_000_000_000, &mut rng).unwrap();
        let inner = ippin_propagation::SecretKey::from_bytes([0x5a; 32]);
        for as_front in [true, false] {
            let key = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
            let spki = ippin_propagation::ed25519_spki_der(key.verifying_key().as_bytes());
            let mut req = ClientCertRequest::builder("proxy:front", spki).role("proxy");
            if as_front {
                req = req.propagation_front();
            }
            let req = req.validity(1, 4_000_000_000).serial(3).build().unwrap();
            let der = ca.issue_client(&req, &mut rng).unwrap();
            let cert = dir.path().join(format!("front-{as_front}.pem"));
            let key_file = dir.path().join(format!("front-{as_front}.key"));
            std::fs::write(&cert, crate::files::der_to_pem(&der, "CERTIFICATE")).unwrap();
            let pem = key.to_pkcs8_pem(der::pem::LineEnding::LF).unwrap();
            std::fs::write(&key_file, pem.as_bytes()).unwrap();
            std::fs::set_permissions(
                &key_file,
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
            let lcfg = ListenerConfig {
                kind: crate::config::ListenerKind::Forward,
                listen: "127.0.0.1:0".parse().unwrap(),
                proxy_protocol: crate::config::ProxyModeSetting::Off,
                trusted_proxies: None,
                header_timeout: Duration::from_secs(5),
                trust_x_forwarded_for: false,
                trust_every_peer: false,
                forwarded_hops: 1,
                propagation: None,
                allowed_endpoints: None,
                forward: Some(crate::config::propagation::ForwardConfig {
                    upstream: "127.0.0.1:9".into(),
                    audience: "inner".into(),
                    cert,
                    key: key_file,
                    upstream_key: dir.path().join("inner.propkey.pub"),
                    upstream_public: inner.public_key(),
                    grant_lifetime: Duration::from_secs(600),
                }),
            };
            match forward_target(&lcfg) {
                Ok(_) => assert!(as_front, "a user's key usage was taken for a front's"),
                Err(e) => {
                    assert!(!as_front, "a front's certificate was refused: {e}");
                    let e = e.to_string();
                    assert!(e.contains("not a front's certificate"), "{e}");
                    assert!(e.contains("ippin ca issue-proxy"), "{e}");
                }
            }
        }
    }
}
