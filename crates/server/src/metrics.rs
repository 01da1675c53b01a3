//! The server's metrics, served as `/metrics` (Prometheus text, `ippin-access`'s `metrics`
//! module): decisions by reason code (every decision is audited, so they are counted where
//! the audit line is written, [`Metrics::observe`]), TLS handshake and access decision
//! latency, and a fleet node's store revision, lag and contact. Imports the audit events
//! and the fleet's status; imported by `state` only.

use std::sync::Arc;
use std::time::Duration;

use ippin_access::metrics::{Counters, Gauge, Histogram, MetricsError, Registry};

use crate::audit::AuditEvent;

/// The most distinct reason codes per family (others count as `other`).
const MAX_REASONS: usize = 64;

/// Latency buckets, in seconds: 100 µs to 2.5 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The families and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    login: Arc<Counters>,
    renew: Arc<Counters>,
    access: Arc<Counters>,
    tls: Arc<Counters>,
    ssh: Arc<Counters>,
    proxy: Arc<Counters>,
    admin: Arc<Counters>,
    handshake: Arc<Histogram>,
    decision: Arc<Histogram>,
    revision: Arc<Gauge>,
    lag: Arc<Gauge>,
    connected: Arc<Gauge>,
}

impl Metrics {
    /// Every family, at zero.
    ///
    /// # Errors
    /// Never with these names (checked by the tests); typed for the library's sake.
    pub fn new() -> Result<Metrics, MetricsError> {
        let family =
            |name: &str, help: &str| Counters::new(name, help, "reason", MAX_REASONS).map(Arc::new);
        let m = Metrics {
            registry: Registry::new(),
            login: family(
                "ippin_login_decisions_total",
                "Logins: `issued`, or the refusal's reason code.",
            )?,
            renew: family(
                "ippin_renew_decisions_total",
                "Renewals: `issued`, or the refusal's reason code.",
            )?,
            access: family(
                "ippin_access_decisions_total",
                "Accesses on the tls listeners (the pin check): `allowed`, or the denial's reason code.",
            )?,
            tls: family(
                "ippin_tls_refusals_total",
                "TLS connections refused before any decision, by reason code.",
            )?,
            ssh: family(
                "ippin_ssh_decisions_total",
                "SSH authentications (`allowed` or the denial's reason) and sessions' denied connections (`T4002I`).",
            )?,
            proxy: family(
                "ippin_proxy_refusals_total",
                "Connections refused at the PROXY stage or by the per-address limit, by reason code.",
            )?,
            admin: family(
                "ippin_admin_decisions_total",
                "Admin API requests: `changed`, or the refusal's reason code.",
            )?,
            handshake: Arc::new(Histogram::new(
                "ippin_tls_handshake_seconds",
                "TLS handshakes completed on the login and tls listeners.",
                BUCKETS,
            )?),
            decision: Arc::new(Histogram::new(
                "ippin_access_decision_seconds",
                "The access decision of a tls connection (certificate read, pin check, audit line).",
                BUCKETS,
            )?),
            revision: Arc::new(Gauge::new(
                "ippin_backend_revision",
                "The fleet store's revision in force on this node (0 without a backend).",
            )?),
            lag: Arc::new(Gauge::new(
                "ippin_backend_lag_revisions",
                "How many revisions this node was behind the store at its last contact.",
            )?),
            connected: Arc::new(Gauge::new(
                "ippin_backend_connected",
                "1 when the node is in contact with its fleet store (always 1 without a backend).",
            )?),
        };
        let mut m = m;
        let all: [Arc<dyn ippin_access::metrics::Metric>; 12] = [
            m.login.clone(),
            m.renew.clone(),
            m.access.clone(),
            m.tls.clone(),
            m.ssh.clone(),
            m.proxy.clone(),
            m.admin.clone(),
            m.handshake.clone(),
            m.decision.clone(),
            m.revision.clone(),
            m.lag.clone(),
            m.connected.clone(),
        ];
        for metric in all {
            m.registry.register(metric)?;
        }
        Ok(m)
    }

    /// Counts the decision `event` records, if it is one.
    pub fn observe(&self, event: &AuditEvent) {
        match event {
            AuditEvent::LoginIssued { .. } => self.login.inc("issued"),
            AuditEvent::LoginRefused { reason, .. } => self.login.inc(reason),
            AuditEvent::RenewIssued { .. } => self.renew.inc("issued"),
            AuditEvent::RenewRefused { reason, .. } => self.renew.inc(reason),
            AuditEvent::TlsRefused { reason, .. } => self.tls.inc(reason),
            AuditEvent::ProxyRefused { reason, .. }
            | AuditEvent::ConnectionRefused { reason, .. } => self.proxy.inc(reason),
            // Counted once made, not when requested.
            AuditEvent::AdminChanged { action, .. } if !action.starts_with("requested") => {
                self.admin.inc("changed");
            }
            AuditEvent::AdminRefused { reason, .. } => self.admin.inc(reason),
            AuditEvent::Tls(ippin_access::tls::TlsEvent::AccessAllowed { .. }) => {
                self.access.inc("allowed");
            }
            AuditEvent::Tls(ippin_access::tls::TlsEvent::AccessDenied { reason, .. }) => {
                self.access.inc(reason);
            }
            AuditEvent::Ssh { ssh } => match ssh["event"].as_str() {
                Some("ssh.auth.allowed") => self.ssh.inc("allowed"),
                Some("ssh.auth.denied") => self.ssh.inc(ssh["reason"].as_str().unwrap_or("other")),
                Some("session.network") if ssh["code"] == "T4002I" => self.ssh.inc("T4002I"),
                _ => {}
            },
            _ => {}
        }
    }

    /// Records a completed TLS handshake.
    pub fn handshake(&self, took: Duration) {
        self.handshake.observe_duration(took);
    }

    /// Records an access decision.
    pub fn decision(&self, took: Duration) {
        self.decision.observe_duration(took);
    }

    /// The text of `/metrics`, with the fleet's status when there is a store.
    pub fn render(&self, fleet: Option<&crate::fleet::Fleet>) -> String {
        match fleet.map(crate::fleet::Fleet::status) {
            Some(s) => {
                self.revision.set(s.revision);
                self.lag.set((s.store_revision - s.revision).max(0));
                self.connected.set(i64::from(s.connected));
            }
            None => self.connected.set(1),
        }
        self.registry.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_counted_by_reason_and_rendered() {
        let m = Metrics::new().expect("the names are valid");
        m.observe(&AuditEvent::LoginRefused {
            user: "a".into(),
            observed: "127.0.0.1:1".into(),
            provenance: "direct".into(),
            endpoint: None,
            reason: "bad_credentials".into(),
        });
        m.observe(&AuditEvent::AdminRefused {
            user: "a".into(),
            observed: "127.0.0.1:1".into(),
            provenance: "direct".into(),
            reason: "not_admin".into(),
        });
        m.observe(&AuditEvent::Ssh {
            ssh: serde_json::json!({"event": "ssh.auth.denied", "reason": "pinned_ip_mismatch"}),
        });
        m.observe(&AuditEvent::Ssh {
            ssh: serde_json::json!({"event": "session.network", "code": "T4002I"}),
        });
        m.handshake(Duration::from_micros(300));
        let text = m.render(None);
        for line in [
            "ippin_login_decisions_total{reason=\"bad_credentials\"} 1\n",
            "ippin_admin_decisions_total{reason=\"not_admin\"} 1\n",
            "ippin_ssh_decisions_total{reason=\"pinned_ip_mismatch\"} 1\n",
            "ippin_ssh_decisions_total{reason=\"T4002I\"} 1\n",
            "ippin_tls_handshake_seconds_bucket{le=\"0.0005\"} 1\n",
            "ippin_tls_handshake_seconds_count 1\n",
            "ippin_backend_connected 1\n",
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
    }
}
