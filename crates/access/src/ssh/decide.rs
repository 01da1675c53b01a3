//! The SSH certificate authentication decision: one certificate, one user name, one observed
//! address.
//!
//! Pure: no I/O, the time is a parameter. [`authorize`] is what the russh handler calls for
//! every certificate; it is also what the tests exercise row by row.
//!
//! | step | check | refused with |
//! |---|---|---|
//! | 1 | the key is an OpenSSH certificate (a plain key is never enough) | `not_a_certificate` |
//! | 2 | signed by a trusted user CA (Ed25519 or ECDSA) | `untrusted_ca` |
//! | 3 | the CA signature verifies (before any other field is believed) | `bad_ca_signature` |
//! | 4 | a user certificate, not a host certificate | `host_certificate` |
//! | 5 | valid now (`valid_after` ≤ now < `valid_before`) | `not_yet_valid`, `expired` |
//! | 6 | the SSH user name is one of the principals | `wrong_principal` |
//! | 7 | only known critical options (`source-address`, `force-command`, `verify-required`) | `unknown_critical_option` |
//! | 8 | critical options well formed (`source-address` strictly) | `invalid_source_address`, `invalid_certificate` |
//! | 9 | no `verify-required` (FIDO user verification cannot be checked here); no `force-command` unless the caller enforces it (`AuthContext::honours_force_command`) | `verify_required_unsupported`, `unknown_critical_option` |
//! | 10 | the user the certificate belongs to, read as [`AuthContext::identity`] says (ippin's CA: the key id `USER@ippin/SERIAL`, SERIAL the certificate's own serial), **never the SSH user name** | `invalid_key_id` |
//! | 11 | that user is known here, with roles | `unknown_user` |
//! | 12 | the SSH user name is one of the OS logins that user's roles allow *now* ([`User::logins`]: a real session as that login, [`Authorized::login`] set), or else the user's own name (the built-ins only, `login` unset) | `login_not_allowed` |
//! | 13 | the roles' pin requirement and any pin (`check_pin_at`): the observed address must be trusted and inside `source-address`, seen through the private endpoint the pin is bound to (or through none when unbound) | `pinned_ip_missing`, `untrusted_client_ip`, `pinned_ip_mismatch`, `pinned_endpoint_mismatch`, `invalid_pin` |
//! | 14 | `source-address` and its endpoint against the observation once more, with the certificate crate's `check_source_at` (OpenSSH's own rule, whatever the roles say) | `pinned_ip_mismatch`, `pinned_endpoint_mismatch` |
//!
//! Steps 2 to 8 are the certificate crate's `validate_user_cert`, step 13 is the policy
//! crate's `check_pin_at` with the certificate's `source-address` as the pin.
//!
//! Why steps 10 and 12: a certificate carries its user's allowed OS logins as principals
//! besides the user's name. Were the user looked up by the SSH user name, bob's certificate
//! with the login `alice` (allowed by bob's role) would be decided as the ippin user `alice`,
//! with her roles and pin requirement. The user comes from the key id, which only the CA
//! writes; the SSH user name only chooses the login, and must be allowed by that user's roles
//! as they are now (a login removed from a role stops working at once, before the certificate
//! expires). `root` is a login like any other: allowed only when a role lists it.
//!
//! After authentication, `force-command` replaces the command the client asks for, and
//! `direct-tcpip` needs the `permit-port-forwarding` extension, as in sshd.

use std::fmt;

use ippin_cert::ssh::{SshValidation, ValidatedSshCert, validate_user_cert};
use ippin_cert::ssh_key::{Certificate, Fingerprint};
use ippin_policy::{
    CertPin, Decision, DenyReason, Endpoint, ObservedAddr, PinRequirement, check_pin_at,
};

use crate::pin::{pin_strings, source_address_pin};
pub use crate::users::{User, UserDirectory};

/// The user record of the SSH decision: the crate's [`User`].
pub type SshUser = User;

/// Why an authentication was refused. [`SshDenyReason::code`] gives the stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SshDenyReason {
    /// A plain public key (or another method) where a certificate is required.
    NotACertificate,
    /// The certificate is signed by a CA that is not trusted here.
    UntrustedCa,
    /// A host certificate was presented as a user certificate.
    HostCertificate,
    /// The SSH user name is not one of the certificate's principals.
    WrongPrincipal,
    /// The certificate's validity starts in the future.
    NotYetValid,
    /// The certificate has expired.
    Expired,
    /// The certificate carries a critical option this server does not implement.
    UnknownCriticalOption,
    /// The `source-address` critical option cannot be read.
    InvalidSourceAddress,
    /// The certificate requires FIDO user verification, which this server cannot check.
    VerifyRequiredUnsupported,
    /// The CA's signature over the certificate does not verify (a forged or altered
    /// certificate that names a trusted CA).
    BadCaSignature,
    /// The certificate is unusable for another reason (a malformed field).
    InvalidCertificate,
    /// The certificate is valid but the user is not known here.
    UnknownUser,
    /// The certificate's key id does not name its user in the form [`AuthContext::identity`]
    /// expects (for ippin's CA `USER@ippin/SERIAL`, with the certificate's serial).
    InvalidKeyId,
    /// The SSH user name is a principal of the certificate but neither one of the OS logins
    /// the user's roles allow now nor the user's own name.
    LoginNotAllowed,
    /// The pin check refused (the policy crate's reason).
    Pin(DenyReason),
    /// Everything passed, but the audit line could not be written: refused (fail closed).
    AuditUnavailable,
    /// Everything passed, but the service already holds as many authenticated sessions as
    /// it serves at once (`SshSettings::max_sessions`).
    SessionsFull,
    /// The pin check gave a decision this server does not know: refused (fail closed).
    UnknownDecision,
}

impl SshDenyReason {
    /// The stable reason code written to the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            SshDenyReason::NotACertificate => "not_a_certificate",
            SshDenyReason::UntrustedCa => "untrusted_ca",
            SshDenyReason::HostCertificate => "host_certificate",
            SshDenyReason::WrongPrincipal => "wrong_principal",
            SshDenyReason::NotYetValid => "not_yet_valid",
            SshDenyReason::Expired => "expired",
            SshDenyReason::UnknownCriticalOption => "unknown_critical_option",
            SshDenyReason::InvalidSourceAddress => "invalid_source_address",
            SshDenyReason::VerifyRequiredUnsupported => "verify_required_unsupported",
            SshDenyReason::BadCaSignature => "bad_ca_signature",
            SshDenyReason::InvalidCertificate => "invalid_certificate",
            SshDenyReason::UnknownUser => "unknown_user",
            SshDenyReason::InvalidKeyId => "invalid_key_id",
            SshDenyReason::LoginNotAllowed => "login_not_allowed",
            SshDenyReason::Pin(r) => r.code(),
            SshDenyReason::AuditUnavailable => "audit_unavailable",
            SshDenyReason::SessionsFull => "sessions_full",
            SshDenyReason::UnknownDecision => "unknown_decision",
        }
    }

    /// Whether the client is told the reason (as a userauth banner before the failure reply,
    /// then in the disconnect message) before the connection is closed.
    ///
    /// True where the certificate is ours and the user can act on the message (log in
    /// again): the pin reasons, expiry, an unknown user, a login the roles do not allow. For
    /// the others (a certificate from another CA, a host certificate, a principal for another
    /// user, a key id not written by ippin's CA, a plain key) the attempt is simply refused,
    /// as sshd does, so that the client can go on to its next identity.
    pub fn tells_user(&self) -> bool {
        matches!(
            self,
            SshDenyReason::Pin(_)
                | SshDenyReason::Expired
                | SshDenyReason::NotYetValid
                | SshDenyReason::UnknownUser
                | SshDenyReason::LoginNotAllowed
                | SshDenyReason::AuditUnavailable
                | SshDenyReason::SessionsFull
        )
    }
}

impl fmt::Display for SshDenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refused authentication: the reason, a message for the user, and what was learned
/// from the certificate on the way (for the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshDenial {
    /// The stable reason.
    pub reason: SshDenyReason,
    /// What happened and what to do, for the user.
    pub message: String,
    /// The certificate's pin, when it was read.
    pub pinned: Vec<String>,
    /// The user's roles, when they were looked up.
    pub roles: Vec<String>,
}

impl SshDenial {
    fn new(reason: SshDenyReason, message: impl Into<String>) -> SshDenial {
        SshDenial {
            reason,
            message: message.into(),
            pinned: Vec::new(),
            roles: Vec::new(),
        }
    }
}

/// A user the certificate authenticates, with everything a session needs.
///
/// `login` was added after the first release of this struct: code that builds one with a
/// struct literal sets it too (`None` for a session of the built-ins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The ippin user the certificate belongs to (read from the certificate as
    /// [`AuthContext::identity`] says, never from the SSH user name).
    pub user: String,
    /// The OS login to run the session as: `Some` when the SSH user name is one of the logins
    /// the user's roles allow now (it is then that name); `None` when the SSH user name is
    /// the user's own name and no role allows it as a login: a session of the built-ins only,
    /// no OS process.
    pub login: Option<String>,
    /// The certificate's `valid_before` (seconds since the epoch): a caller that keeps a
    /// connection open checks it again before it starts anything new on it.
    pub valid_before: u64,
    /// The user's roles.
    pub roles: Vec<String>,
    /// The certificate's pin (`source-address` networks); empty when unpinned.
    pub pinned: Vec<String>,
    /// The certificate's key id.
    pub key_id: String,
    /// The certificate's serial.
    pub serial: u64,
    /// The client address seen at login, when the certificate records it.
    pub login_ip: Option<String>,
    /// The certificate's `force-command`: run instead of what the client asks.
    pub force_command: Option<String>,
    /// Whether the certificate grants `permit-port-forwarding`.
    pub port_forwarding: bool,
    /// Whether the certificate grants `permit-pty` (a terminal; sshd refuses one without).
    pub pty: bool,
    /// The certificate's pin, as the pin check read it: a caller that keeps a connection
    /// open checks it again, against the roles of the moment, before it starts anything new
    /// on it ([`Authorized::recheck_pin`]).
    pub pin: CertPin,
    /// The private endpoint the certificate's pin is bound to, if any (checked with the pin).
    pub pinned_endpoint: Option<Endpoint>,
    /// The address the connection was observed from when it was authorized.
    pub observed: ObservedAddr,
}

impl Authorized {
    /// Everything [`authorize`] decided from the clock and the user directory, again, at
    /// `now` (seconds since the epoch), for a connection that stays open: call it before
    /// anything new starts on it (a process, a built-in, a forward). A connection can
    /// outlive its certificate (OpenSSH's connection sharing keeps one open for hours) and
    /// the user's roles. `None` when it still allows; otherwise the first that fails of:
    ///
    /// | check | reason |
    /// |---|---|
    /// | `now` before the certificate's `valid_before` | `expired` |
    /// | the user still known, with roles ([`crate::users::lookup_usable`]) | `unknown_user` |
    /// | the login still allowed by the roles of now (a session of the built-ins has none) | `login_not_allowed` |
    /// | the pin against the roles' requirement of now ([`Authorized::recheck_pin`]) | the pin's reason |
    ///
    /// Each message ends by telling the user to log in again and reconnect.
    pub fn recheck(&self, users: &dyn UserDirectory, now: u64) -> Option<SshDenial> {
        let deny = |reason, message: String| SshDenial {
            reason,
            message,
            pinned: self.pinned.clone(),
            roles: self.roles.clone(),
        };
        if now >= self.valid_before {
            return Some(deny(
                SshDenyReason::Expired,
                "ippin: the certificate of this connection has expired: log in again \
                 (`ippin login`) and reconnect"
                    .to_owned(),
            ));
        }
        let Some(user) = crate::users::lookup_usable(users, &self.user) else {
            return Some(deny(
                SshDenyReason::UnknownUser,
                format!(
                    "ippin: the user `{}` is no longer known here: log in again (`ippin login`) \
                     and reconnect",
                    self.user
                ),
            ));
        };
        if let Some(login) = &self.login
            && !user.logins.contains(login)
        {
            return Some(deny(
                SshDenyReason::LoginNotAllowed,
                format!(
                    "ippin: the login `{login}` is no longer allowed by the roles of `{}`: log \
                     in again (`ippin login`) and reconnect",
                    self.user
                ),
            ));
        }
        self.recheck_pin(user.pin_requirement()).map(|mut d| {
            d.message = format!("{} (`ippin login`), then reconnect", d.message);
            d
        })
    }

    /// The pin check again, with the user's pin requirement of now (roles change while a
    /// connection stays open: a role that starts to require a pin, or a narrower prefix,
    /// applies to the connections already open too). `None` when it still allows.
    pub fn recheck_pin(&self, requirement: PinRequirement) -> Option<SshDenial> {
        match check_pin_at(
            requirement,
            &self.pin,
            self.pinned_endpoint.as_ref(),
            &self.observed,
        ) {
            Decision::Allow => None,
            Decision::Deny(denial) => Some(SshDenial {
                reason: SshDenyReason::Pin(denial.reason),
                message: format!(
                    "ippin: the roles of `{}` now refuse this connection's certificate: {}",
                    self.user, denial.message
                ),
                pinned: self.pinned.clone(),
                roles: self.roles.clone(),
            }),
            other => Some(SshDenial {
                reason: SshDenyReason::UnknownDecision,
                message: format!("ippin: the pin check gave an unknown decision ({other:?})"),
                pinned: self.pinned.clone(),
                roles: self.roles.clone(),
            }),
        }
    }
}

/// Where [`authorize`] reads the user a certificate belongs to. Never from the SSH user name:
/// that is one of the principals, which include the logins the user may use, and so can name
/// another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CertIdentity {
    /// The key id ippin's CA writes: `USER@ippin/SERIAL`, read strictly: `USER` non-empty,
    /// without `@`, white space or control characters; `SERIAL` in decimal without sign or
    /// leading zero, and equal to the certificate's serial. Anything else is refused
    /// (`invalid_key_id`).
    #[default]
    IppinKeyId,
}

impl CertIdentity {
    /// The user `key_id` names, for a certificate with `serial`; `None` when the key id is
    /// not of this form.
    ///
    /// ```
    /// use ippin_access::ssh::CertIdentity;
    /// let id = CertIdentity::IppinKeyId;
    /// assert_eq!(id.user("alice@ippin/42", 42), Some("alice"));
    /// assert_eq!(id.user("alice@ippin/42", 43), None);
    /// assert_eq!(id.user("alice@ippin/042", 42), None);
    /// assert_eq!(id.user("alice", 42), None);
    /// ```
    pub fn user<'k>(&self, key_id: &'k str, serial: u64) -> Option<&'k str> {
        match self {
            CertIdentity::IppinKeyId => ippin_key_id_user(key_id, serial),
        }
    }
}

fn ippin_key_id_user(key_id: &str, serial: u64) -> Option<&str> {
    let (user, rest) = key_id.split_once('@')?;
    let digits = rest.strip_prefix("ippin/")?;
    // `user` holds no `@`: the key id was split at its first one.
    let user_ok = !user.is_empty() && !user.chars().any(|c| c.is_whitespace() || c.is_control());
    let digits_ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !user_ok || !digits_ok || digits.parse::<u64>().ok()? != serial {
        return None;
    }
    Some(user)
}

/// The principal that gives the user `user` a session of the built-ins (no OS login):
/// `ippin:USER`. A user's own name is not a principal of their certificates unless a role
/// allows it as a login: an OpenSSH `sshd` that trusts the CA (without an
/// `AuthorizedPrincipalsFile`) lets a certificate in as any account one of its principals
/// names, and an ippin user named `root`, or after any account of the host, must not get it.
/// No account can be called this (`:` separates the fields of `/etc/passwd`). ippin's own
/// server takes it for the SSH user name `USER` ([`authorize`]).
///
/// ```
/// assert_eq!(ippin_access::ssh::builtins_principal("alice"), "ippin:alice");
/// ```
pub fn builtins_principal(user: &str) -> String {
    format!("ippin:{user}")
}

/// What [`authorize`] needs besides the attempt itself.
pub struct AuthContext<'a> {
    /// How the user a certificate belongs to is read from it ([`CertIdentity::IppinKeyId`]
    /// for ippin's CA, the default).
    pub identity: CertIdentity,
    /// SHA-256 fingerprints of the user CAs whose certificates are accepted.
    pub trusted_cas: &'a [Fingerprint],
    /// Where users and their roles come from.
    pub users: &'a dyn UserDirectory,
    /// Whether the caller runs a certificate's `force-command` instead of what the client
    /// asks ([`Authorized::force_command`]). When `false`, a certificate that carries one is
    /// refused (`unknown_critical_option`): a restriction the CA wrote must never be dropped
    /// because the service does not implement it.
    pub honours_force_command: bool,
}

/// Decides one certificate authentication, following the table in the module docs.
///
/// `now` is the current time in Unix seconds.
pub fn authorize(
    ctx: &AuthContext<'_>,
    user: &str,
    cert: &Certificate,
    observed: &ObservedAddr,
    now: u64,
) -> Result<Authorized, SshDenial> {
    authorize_with(ctx, user, cert, observed, now, |r, p, e, o| {
        check_pin_at(r, p, e, o)
    })
}

/// [`authorize`] with the policy crate's pin check (step 13) passed in, so that a test can
/// give it a broken one and see step 14 refuse on its own: with today's crates the two steps
/// agree on every input (see docs/testing.md), so no real attempt reaches step 14's refusal.
pub(crate) fn authorize_with(
    ctx: &AuthContext<'_>,
    user: &str,
    cert: &Certificate,
    observed: &ObservedAddr,
    now: u64,
    check_pin: impl Fn(PinRequirement, &CertPin, Option<&Endpoint>, &ObservedAddr) -> Decision,
) -> Result<Authorized, SshDenial> {
    // The SSH user name is the principal checked, except for a certificate that names the
    // user only through the built-ins principal (`ippin:USER`, see [`builtins_principal`]):
    // that one stands for the user name `USER`, for the built-ins only.
    let builtins = builtins_principal(user);
    let principals = cert.valid_principals();
    let as_builtins = !principals.iter().any(|p| p == user) && principals.contains(&builtins);
    let principal = if as_builtins { builtins.as_str() } else { user };
    let validation = SshValidation::new(ctx.trusted_cas, principal, now);
    let valid = validate_user_cert(cert, &validation).map_err(|e| cert_denial(&e, user))?;
    if valid.force_command.is_some() && !ctx.honours_force_command {
        return Err(SshDenial::new(
            SshDenyReason::UnknownCriticalOption,
            "ippin: the certificate carries force-command, which this service does not enforce",
        ));
    }
    if valid.verify_required {
        return Err(SshDenial::new(
            SshDenyReason::VerifyRequiredUnsupported,
            "ippin: the certificate requires FIDO user verification, which this server cannot check",
        ));
    }
    let (pin, pinned_endpoint) =
        crate::pin::with_endpoint(cert_pin(&valid), valid.pinned_endpoint.clone());
    let pinned = pin_strings(&pin);
    // The user is the one the CA wrote the certificate for; `user` (the SSH user name) is
    // only a principal, and may be a login that another ippin user is named after.
    let Some(identity) = ctx.identity.user(&valid.key_id, cert.serial()) else {
        let mut d = SshDenial::new(
            SshDenyReason::InvalidKeyId,
            "ippin: the certificate's key id does not name its user as this server's CA writes it",
        );
        d.pinned = pinned;
        return Err(d);
    };
    let Some(account) = crate::users::lookup_usable(ctx.users, identity) else {
        let mut d = SshDenial::new(
            SshDenyReason::UnknownUser,
            format!(
                "ippin: there is no user `{identity}` on this server (or no longer); log in \
                 again (`ippin login`)"
            ),
        );
        d.pinned = pinned;
        return Err(d);
    };
    let login = if !as_builtins && account.logins.contains(user) {
        Some(user.to_owned())
    } else if user == identity {
        None
    } else {
        return Err(SshDenial {
            reason: SshDenyReason::LoginNotAllowed,
            message: format!(
                "ippin: the login `{user}` is not allowed by the roles of `{identity}`; \
                 if your roles changed, log in again (`ippin login`)"
            ),
            pinned,
            roles: account.roles,
        });
    };
    // Only `Allow` goes on: the decision type is `#[non_exhaustive]`, and a decision this
    // server does not know is a denial.
    let denial = match check_pin(
        account.pin_requirement(),
        &pin,
        pinned_endpoint.as_ref(),
        observed,
    ) {
        Decision::Allow => None,
        Decision::Deny(denial) => Some(denial),
        other => {
            return Err(SshDenial {
                reason: SshDenyReason::UnknownDecision,
                message: format!("ippin: the pin check gave an unknown decision ({other:?})"),
                pinned,
                roles: account.roles,
            });
        }
    };
    if let Some(denial) = denial {
        let message = match denial.reason {
            DenyReason::PinnedIpMismatch => format!(
                "ippin: the certificate is pinned to {pin}, this connection comes from {}: log in again (`ippin login`) from here",
                observed.ip()
            ),
            _ => format!("ippin: {}", denial.message),
        };
        return Err(SshDenial {
            reason: SshDenyReason::Pin(denial.reason),
            message,
            pinned,
            roles: account.roles,
        });
    }
    // `check_pin` enforces any pin whatever the roles say; this second look is OpenSSH's own
    // `source-address` rule, from the certificate crate, kept separate so that a change in the
    // policy crate cannot turn a pinned certificate into an unpinned one here.
    let through = observed.endpoint();
    if let Err(e) = valid.check_source_at(
        observed.ip(),
        through.as_ref().map(ippin_policy::Endpoint::as_str),
    ) {
        let reason = if e.code() == "pinned_endpoint_mismatch" {
            DenyReason::PinnedEndpointMismatch
        } else {
            DenyReason::PinnedIpMismatch
        };
        return Err(SshDenial {
            reason: SshDenyReason::Pin(reason),
            message: format!("ippin: {e}: log in again"),
            pinned,
            roles: account.roles,
        });
    }
    Ok(Authorized {
        user: identity.to_owned(),
        login,
        roles: account.roles,
        pinned,
        key_id: valid.key_id.clone(),
        serial: cert.serial(),
        login_ip: valid.login_ip.map(|ip| ip.to_string()),
        force_command: valid.force_command.clone(),
        port_forwarding: valid.permissions.port_forwarding,
        pty: valid.permissions.pty,
        valid_before: cert.valid_before(),
        pin,
        pinned_endpoint,
        observed: *observed,
    })
}

/// The pin of a validated certificate: its `source-address` networks.
fn cert_pin(valid: &ValidatedSshCert) -> CertPin {
    match &valid.source_address {
        None => CertPin::None,
        Some(sa) => source_address_pin(sa.clone()),
    }
}

/// Maps a certificate-crate refusal to our reason and message.
fn cert_denial(e: &ippin_cert::Error, user: &str) -> SshDenial {
    let reason = cert_reason(e);
    let message = match reason {
        SshDenyReason::Expired => {
            format!("ippin: the certificate has expired ({e}): log in again")
        }
        SshDenyReason::NotYetValid => {
            format!(
                "ippin: the certificate is not valid yet ({e}); check the clock or log in again"
            )
        }
        SshDenyReason::WrongPrincipal => {
            format!("ippin: the certificate does not name the user `{user}`")
        }
        _ => format!("ippin: certificate refused: {e}"),
    };
    SshDenial::new(reason, message)
}

/// The reason for a refusal of `validate_user_cert`.
fn cert_reason(e: &ippin_cert::Error) -> SshDenyReason {
    use ippin_cert::Error as E;
    match e {
        E::SshNotUserCert => SshDenyReason::HostCertificate,
        // A CA key of an algorithm never trusted is an untrusted CA. Checked before the
        // signature: like `untrusted_ca`, nothing else the certificate says is believed (the
        // audit summaries never key on its key id).
        E::SshUntrustedCa { .. } | E::SshCaAlgorithm { .. } => SshDenyReason::UntrustedCa,
        E::SshValidity {
            now, valid_after, ..
        } if now < valid_after => SshDenyReason::NotYetValid,
        E::SshValidity { .. } => SshDenyReason::Expired,
        E::SshPrincipal { .. } => SshDenyReason::WrongPrincipal,
        E::SshSignature => SshDenyReason::BadCaSignature,
        E::SshUnknownCriticalOption { .. } => SshDenyReason::UnknownCriticalOption,
        E::SourceAddressEntry { .. } => SshDenyReason::InvalidSourceAddress,
        // Anything else (a malformed `force-command`, a flag with data, an extension the
        // certificate crate refuses) is refused as an invalid certificate.
        _ => SshDenyReason::InvalidCertificate,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ippin_cert::getrandom::SysRng;
    use ippin_cert::rand_core::UnwrapErr;
    use ippin_cert::ssh::{SshCa, SshCertRequest};
    use ippin_cert::ssh_key::certificate::{Builder, CertType};
    use ippin_cert::ssh_key::{HashAlg, PrivateKey};
    use ippin_policy::Provenance;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    struct Fixture {
        ca: SshCa,
        trusted: Vec<Fingerprint>,
        users: HashMap<String, SshUser>,
    }

    fn fixture() -> Fixture {
        let ca = SshCa::generate_ed25519(&mut UnwrapErr(SysRng)).unwrap();
        let trusted = vec![ca.public_key().fingerprint(HashAlg::Sha256)];
        let mut users = HashMap::new();
        users.insert(
            "alice".to_owned(),
            SshUser::new(true, vec!["pinned-ip".into()]),
        );
        // bob's role allows the OS logins `alice` (an ippin user is also called so) and
        // `deploy`.
        users.insert(
            "bob".to_owned(),
            SshUser::new(false, vec!["dev".into()]).with_logins(["alice", "deploy"]),
        );
        Fixture { ca, trusted, users }
    }

    fn user_key() -> ippin_cert::ssh_key::public::KeyData {
        let k = SshCa::generate_ed25519(&mut UnwrapErr(SysRng)).unwrap();
        k.public_key().key_data().clone()
    }

    /// A certificate as ippin's CA issues it for `principal` (key id `PRINCIPAL@ippin/7`).
    fn issue(f: &Fixture, principal: &str, pin: Option<&str>) -> Certificate {
        issue_as(f, principal, &[principal], pin)
    }

    /// A certificate as ippin's CA issues it for the user `owner` (key id `OWNER@ippin/7`)
    /// with these principals (the user's name and logins).
    fn issue_as(f: &Fixture, owner: &str, principals: &[&str], pin: Option<&str>) -> Certificate {
        let mut req = SshCertRequest::builder(user_key())
            .key_id(format!("{owner}@ippin/7"))
            .serial(7)
            .validity(NOW - 60, NOW + 3600);
        for p in principals {
            req = req.principal(*p);
        }
        if let Some(ip) = pin {
            req = req.pinned_ip(ip.parse().unwrap());
        }
        f.ca.issue(&req.build().unwrap(), &mut UnwrapErr(SysRng))
            .unwrap()
    }

    /// A certificate signed with the fixture's CA through `ssh-key`'s builder, for shapes the
    /// issuing API refuses to make: alice's (key id `alice@ippin/9`, serial 9) unless `edit`
    /// changes it.
    fn raw(f: &Fixture, edit: impl FnOnce(&mut Builder)) -> Certificate {
        raw_with(f, "alice@ippin/9", 9, edit)
    }

    /// [`raw`] with this key id and serial.
    fn raw_with(
        f: &Fixture,
        key_id: &str,
        serial: u64,
        edit: impl FnOnce(&mut Builder),
    ) -> Certificate {
        let ca_key = PrivateKey::from_openssh(f.ca.to_openssh().unwrap()).unwrap();
        let mut b = Builder::new([7u8; 16], user_key(), NOW - 60, NOW + 3600).unwrap();
        b.key_id(key_id).unwrap();
        b.serial(serial).unwrap();
        b.valid_principal("alice").unwrap();
        edit(&mut b);
        b.sign(&ca_key).unwrap()
    }

    fn seen(addr: &str) -> ObservedAddr {
        ObservedAddr::new(addr.parse().unwrap(), Provenance::Direct, true)
    }

    /// An SSH certificate whose pin is bound to a private endpoint: allowed only through it,
    /// at authorization and at every recheck; the second look (`check_source_at`) agrees on
    /// its own when the policy crate's check is bypassed.
    #[test]
    fn a_pin_bound_to_an_endpoint_holds_only_through_it() {
        let f = fixture();
        let req = SshCertRequest::builder(user_key())
            .key_id("alice@ippin/7")
            .serial(7)
            .validity(NOW - 60, NOW + 3600)
            .principal("alice")
            .pinned_ip("10.0.0.5".parse().unwrap())
            .pinned_endpoint("vpce-0123456789abcdef0")
            .build()
            .unwrap();
        let cert = f.ca.issue(&req, &mut UnwrapErr(SysRng)).unwrap();
        let e1 = ippin_policy::Endpoint::parse("vpce-0123456789abcdef0").unwrap();
        let e2 = ippin_policy::Endpoint::parse("azure:7").unwrap();
        let direct = seen("10.0.0.5:5000");
        let who = decide(&f, "alice", &cert, &direct.with_endpoint(e1), NOW).unwrap();
        assert_eq!(who.pinned_endpoint, Some(e1));
        assert_eq!(
            who.recheck_pin(PinRequirement::Required(ippin_policy::PinPrefix::EXACT)),
            None
        );
        for other in [direct.with_endpoint(e2), direct] {
            let d = decide(&f, "alice", &cert, &other, NOW).unwrap_err();
            assert_eq!(d.reason.code(), "pinned_endpoint_mismatch", "{other}");
            // The same connection's recheck, had it been observed so.
            let moved = Authorized {
                observed: other,
                ..who.clone()
            };
            assert_eq!(
                moved
                    .recheck_pin(PinRequirement::NotRequired)
                    .map(|d| d.reason.code()),
                Some("pinned_endpoint_mismatch"),
                "{other}"
            );
            // The second look refuses on its own.
            let ctx = AuthContext {
                identity: CertIdentity::IppinKeyId,
                trusted_cas: &f.trusted,
                users: &f.users,
                honours_force_command: true,
            };
            let allow_all = |_: PinRequirement,
                             _: &CertPin,
                             _: Option<&Endpoint>,
                             _: &ObservedAddr| Decision::Allow;
            let d = authorize_with(&ctx, "alice", &cert, &other, NOW, allow_all).unwrap_err();
            assert_eq!(d.reason.code(), "pinned_endpoint_mismatch", "{other}");
        }
    }

    fn decide(
        f: &Fixture,
        user: &str,
        cert: &Certificate,
        observed: &ObservedAddr,
        now: u64,
    ) -> Result<Authorized, SshDenial> {
        let ctx = AuthContext {
            identity: CertIdentity::IppinKeyId,
            trusted_cas: &f.trusted,
            users: &f.users,
            honours_force_command: true,
        };
        authorize(&ctx, user, cert, observed, now)
    }

    fn reason(r: Result<Authorized, SshDenial>) -> &'static str {
        match r {
            Ok(a) => panic!("allowed: {a:?}"),
            Err(d) => d.reason.code(),
        }
    }

    #[test]
    fn pinned_user_allowed_only_from_the_pin() {
        let f = fixture();
        let cert = issue(&f, "alice", Some("127.0.0.1"));
        let ok = decide(&f, "alice", &cert, &seen("127.0.0.1:5000"), NOW).unwrap();
        assert_eq!(ok.pinned, vec!["127.0.0.1/32".to_owned()]);
        assert_eq!(ok.roles, vec!["pinned-ip".to_owned()]);
        // The IPv4-mapped form of the same address is the same address.
        assert!(decide(&f, "alice", &cert, &seen("[::ffff:127.0.0.1]:5000"), NOW).is_ok());
        let denied = decide(&f, "alice", &cert, &seen("127.0.0.2:5000"), NOW).unwrap_err();
        assert_eq!(denied.reason.code(), "pinned_ip_mismatch");
        assert!(denied.reason.tells_user());
        assert!(denied.message.contains("127.0.0.2"), "{}", denied.message);
        assert!(
            denied.message.contains("log in again"),
            "{}",
            denied.message
        );
    }

    /// Certificates name the user through `ippin:USER` (the built-ins), never through the
    /// bare name unless it is a login: the SSH user name `USER` reaches the built-ins with
    /// it, a login needs its own principal, and `ippin:USER` stands for no one else.
    #[test]
    fn the_builtins_principal_stands_for_its_user_only() {
        let f = fixture();
        let cert = issue_as(&f, "bob", &["ippin:bob", "deploy"], None);
        let at = seen("127.0.0.1:1");
        let builtins = decide(&f, "bob", &cert, &at, NOW).unwrap();
        assert_eq!(
            (builtins.user.as_str(), builtins.login.as_deref()),
            ("bob", None)
        );
        let login = decide(&f, "deploy", &cert, &at, NOW).unwrap();
        assert_eq!(login.login.as_deref(), Some("deploy"));
        // bob's roles allow the login `alice`, but his certificate does not name it.
        assert_eq!(
            reason(decide(&f, "alice", &cert, &at, NOW)),
            "wrong_principal"
        );
        // The principal itself as a user name is no login.
        assert_eq!(
            reason(decide(&f, "ippin:bob", &cert, &at, NOW)),
            "login_not_allowed"
        );
        // `ippin:alice` in bob's certificate (no CA of ours writes that) gives nothing as
        // `alice`, even though bob's roles allow the login `alice`.
        let odd = issue_as(&f, "bob", &["ippin:alice"], None);
        assert_eq!(
            reason(decide(&f, "alice", &odd, &at, NOW)),
            "login_not_allowed"
        );
    }

    /// Refusals made before the CA's signature is verified say so by their reason, which
    /// the audit summaries read to leave the (unverified) key id out.
    #[test]
    fn a_ca_algorithm_never_trusted_is_an_untrusted_ca() {
        let e = ippin_cert::Error::SshCaAlgorithm {
            key: "ssh-rsa".into(),
            signature: "ssh-rsa".into(),
            reason: "RSA CA keys are refused".into(),
        };
        assert_eq!(cert_reason(&e).code(), "untrusted_ca");
    }

    /// A connection authorized while the roles did not require a pin is refused by the
    /// check again once they do (a connection kept open, `ControlMaster`), and one whose
    /// prefix is wider than the roles now allow likewise.
    #[test]
    fn recheck_applies_the_pin_requirement_of_now() {
        let f = fixture();
        let unpinned_bob = issue(&f, "bob", None);
        let who = decide(&f, "bob", &unpinned_bob, &seen("127.0.0.1:1"), NOW).unwrap();
        assert_eq!(who.recheck_pin(PinRequirement::NotRequired), None);
        let denied = who
            .recheck_pin(PinRequirement::Required(ippin_policy::PinPrefix::EXACT))
            .expect("refused once a role requires a pin");
        assert_eq!(denied.reason.code(), "pinned_ip_missing");
        assert!(
            denied.message.contains("log in again"),
            "{}",
            denied.message
        );
        // A pinned certificate from its pin stays allowed when a pin becomes required.
        let pinned_bob = issue(&f, "bob", Some("127.0.0.1"));
        let who = decide(&f, "bob", &pinned_bob, &seen("127.0.0.1:1"), NOW).unwrap();
        assert_eq!(
            who.recheck_pin(PinRequirement::Required(ippin_policy::PinPrefix::EXACT)),
            None
        );
    }

    /// A connection kept open is checked again as the clock and the directory say now:
    /// expiry, the user removed or left without roles, the login taken away, a pin required.
    #[test]
    fn recheck_follows_the_clock_and_the_directory() {
        let f = fixture();
        let cert = issue_as(&f, "bob", &["bob", "deploy"], None);
        let who = decide(&f, "deploy", &cert, &seen("127.0.0.1:1"), NOW).unwrap();
        assert_eq!(who.login.as_deref(), Some("deploy"));
        let code = |users: &HashMap<String, SshUser>, now: u64| {
            who.recheck(users, now).map(|d| {
                assert!(d.message.contains("log in again"), "{}", d.message);
                d.reason.code()
            })
        };
        assert_eq!(code(&f.users, NOW), None);
        assert_eq!(code(&f.users, who.valid_before - 1), None);
        assert_eq!(code(&f.users, who.valid_before), Some("expired"));
        let mut users = f.users.clone();
        users.remove("bob");
        assert_eq!(code(&users, NOW), Some("unknown_user"));
        users.insert(
            "bob".into(),
            SshUser::new(false, vec![]).with_logins(["deploy"]),
        );
        assert_eq!(
            code(&users, NOW),
            Some("unknown_user"),
            "no roles, no access"
        );
        users.insert(
            "bob".into(),
            SshUser::new(false, vec!["dev".into()]).with_logins(["alice"]),
        );
        assert_eq!(code(&users, NOW), Some("login_not_allowed"));
        users.insert(
            "bob".into(),
            SshUser::new(true, vec!["dev".into()]).with_logins(["deploy"]),
        );
        assert_eq!(code(&users, NOW), Some("pinned_ip_missing"));
    }

    /// A directory that answers a user without roles lets nobody in (`unknown_user`).
    #[test]
    fn a_user_without_roles_is_refused() {
        let mut f = fixture();
        f.users.insert(
            "bob".into(),
            SshUser::new(false, vec![]).with_logins(["deploy"]),
        );
        let cert = issue_as(&f, "bob", &["bob", "deploy"], None);
        assert_eq!(
            reason(decide(&f, "deploy", &cert, &seen("127.0.0.1:1"), NOW)),
            "unknown_user"
        );
        assert_eq!(
            reason(decide(&f, "bob", &cert, &seen("127.0.0.1:1"), NOW)),
            "unknown_user"
        );
    }

    #[test]
    fn untrusted_observation_never_satisfies_a_pin() {
        let f = fixture();
        let cert = issue(&f, "alice", Some("127.0.0.1"));
        let untrusted = ObservedAddr::untrusted("127.0.0.1".parse().unwrap(), Provenance::ProxyV2);
        assert_eq!(
            reason(decide(&f, "alice", &cert, &untrusted, NOW)),
            "untrusted_client_ip"
        );
    }

    #[test]
    fn role_requirement_and_pins_whatever_the_role() {
        let f = fixture();
        let unpinned_alice = issue(&f, "alice", None);
        assert_eq!(
            reason(decide(
                &f,
                "alice",
                &unpinned_alice,
                &seen("127.0.0.1:1"),
                NOW
            )),
            "pinned_ip_missing"
        );
        let unpinned_bob = issue(&f, "bob", None);
        for from in ["127.0.0.1:1", "127.0.0.2:1", "[::1]:1"] {
            assert!(decide(&f, "bob", &unpinned_bob, &seen(from), NOW).is_ok());
        }
        let untrusted = ObservedAddr::untrusted("192.0.2.1".parse().unwrap(), Provenance::ProxyV1);
        assert!(decide(&f, "bob", &unpinned_bob, &untrusted, NOW).is_ok());
        // A pinned certificate is enforced even when the role does not require a pin.
        let pinned_bob = issue(&f, "bob", Some("127.0.0.1"));
        assert_eq!(
            reason(decide(&f, "bob", &pinned_bob, &seen("127.0.0.2:1"), NOW)),
            "pinned_ip_mismatch"
        );
    }

    #[test]
    fn certificate_refusals_each_with_their_reason() {
        let f = fixture();
        let other = fixture();
        let at = seen("127.0.0.1:1");
        let from_other_ca = issue(&other, "alice", Some("127.0.0.1"));
        assert_eq!(
            reason(decide(&f, "alice", &from_other_ca, &at, NOW)),
            "untrusted_ca"
        );
        let host = raw(&f, |b| {
            b.cert_type(CertType::Host).unwrap();
        });
        assert_eq!(
            reason(decide(&f, "alice", &host, &at, NOW)),
            "host_certificate"
        );
        let cert = issue(&f, "alice", Some("127.0.0.1"));
        assert_eq!(
            reason(decide(&f, "bob", &cert, &at, NOW)),
            "wrong_principal"
        );
        assert_eq!(
            reason(decide(&f, "alice", &cert, &at, NOW + 3600)),
            "expired"
        );
        assert_eq!(
            reason(decide(&f, "alice", &cert, &at, NOW - 61)),
            "not_yet_valid"
        );
        let unknown = raw(&f, |b| {
            b.critical_option("ippin-test@example.com", "x").unwrap();
        });
        assert_eq!(
            reason(decide(&f, "alice", &unknown, &at, NOW)),
            "unknown_critical_option"
        );
        let bad_source = raw(&f, |b| {
            b.critical_option("source-address", "127.0.0.1/33").unwrap();
        });
        assert_eq!(
            reason(decide(&f, "alice", &bad_source, &at, NOW)),
            "invalid_source_address"
        );
        let verify = raw(&f, |b| {
            b.critical_option("source-address", "127.0.0.1/32").unwrap();
            b.critical_option("verify-required", "").unwrap();
        });
        assert_eq!(
            reason(decide(&f, "alice", &verify, &at, NOW)),
            "verify_required_unsupported"
        );
        let carol = issue(&f, "carol", Some("127.0.0.1"));
        assert_eq!(
            reason(decide(&f, "carol", &carol, &at, NOW)),
            "unknown_user"
        );
    }

    #[test]
    fn a_forged_certificate_is_bad_ca_signature() {
        let f = fixture();
        let cert = issue(&f, "alice", Some("127.0.0.1"));
        // The key id changed after signing ("alice@ippin/7" → "alicf@ippin/7"): the CA's
        // signature no longer covers the bytes.
        let mut bytes = cert.to_bytes().unwrap();
        let at = bytes
            .windows(12)
            .position(|w| w == b"alice@ippin/")
            .expect("key id in the certificate");
        bytes[at + 4] = b'f';
        let forged = Certificate::from_bytes(&bytes).unwrap();
        assert_eq!(
            reason(decide(&f, "alice", &forged, &seen("127.0.0.1:1"), NOW)),
            "bad_ca_signature"
        );
    }

    #[test]
    fn each_message_says_what_to_do() {
        let f = fixture();
        let at = seen("127.0.0.1:1");
        let cert = issue(&f, "alice", Some("127.0.0.1"));
        let message = |r: Result<Authorized, SshDenial>| r.unwrap_err().message;
        let m = message(decide(&f, "alice", &cert, &seen("127.0.0.2:1"), NOW));
        assert!(
            m.contains("is pinned to 127.0.0.1/32, this connection comes from 127.0.0.2")
                && m.contains("(`ippin login`)"),
            "{m}"
        );
        let m = message(decide(&f, "alice", &cert, &at, NOW + 3600));
        assert!(m.starts_with("ippin: the certificate has expired ("), "{m}");
        assert!(m.ends_with("log in again"), "{m}");
        let m = message(decide(&f, "alice", &cert, &at, NOW - 61));
        assert!(
            m.contains("is not valid yet") && m.contains("check the clock"),
            "{m}"
        );
        let m = message(decide(&f, "bob", &cert, &at, NOW));
        assert_eq!(m, "ippin: the certificate does not name the user `bob`");
    }

    #[test]
    fn codes_display_and_who_is_told() {
        let told = [
            SshDenyReason::Pin(DenyReason::PinnedIpMismatch),
            SshDenyReason::Expired,
            SshDenyReason::NotYetValid,
            SshDenyReason::UnknownUser,
            SshDenyReason::LoginNotAllowed,
            SshDenyReason::AuditUnavailable,
            SshDenyReason::SessionsFull,
        ];
        let not_told = [
            SshDenyReason::NotACertificate,
            SshDenyReason::UntrustedCa,
            SshDenyReason::HostCertificate,
            SshDenyReason::WrongPrincipal,
            SshDenyReason::UnknownCriticalOption,
            SshDenyReason::InvalidSourceAddress,
            SshDenyReason::VerifyRequiredUnsupported,
            SshDenyReason::BadCaSignature,
            SshDenyReason::InvalidCertificate,
            SshDenyReason::InvalidKeyId,
            SshDenyReason::UnknownDecision,
        ];
        for r in told {
            assert!(r.tells_user(), "{r}");
            assert_eq!(r.to_string(), r.code());
        }
        for r in not_told {
            assert!(!r.tells_user(), "{r}");
            assert_eq!(r.to_string(), r.code());
        }
    }

    #[test]
    fn force_command_and_forwarding_permission_are_carried() {
        let f = fixture();
        let cert = raw(&f, |b| {
            b.critical_option("source-address", "127.0.0.1/32").unwrap();
            b.critical_option("force-command", "whoami").unwrap();
        });
        let who = decide(&f, "alice", &cert, &seen("127.0.0.1:1"), NOW).unwrap();
        assert_eq!(who.force_command.as_deref(), Some("whoami"));
        assert!(!who.port_forwarding, "no permit-port-forwarding extension");
        assert!(!who.pty, "no permit-pty extension");
        // A service that does not run it refuses the certificate rather than drop the
        // restriction.
        let ctx = AuthContext {
            identity: CertIdentity::default(),
            trusted_cas: &f.trusted,
            users: &f.users,
            honours_force_command: false,
        };
        let refused = authorize(&ctx, "alice", &cert, &seen("127.0.0.1:1"), NOW).unwrap_err();
        assert_eq!(refused.reason.code(), "unknown_critical_option");
        assert!(
            refused.message.contains("force-command"),
            "{}",
            refused.message
        );
        let plain = issue(&f, "alice", Some("127.0.0.1"));
        assert!(authorize(&ctx, "alice", &plain, &seen("127.0.0.1:1"), NOW).is_ok());
        let issued = issue(&f, "alice", Some("127.0.0.1"));
        let who = decide(&f, "alice", &issued, &seen("127.0.0.1:1"), NOW).unwrap();
        assert!(who.port_forwarding);
        assert!(who.pty);
    }

    /// Step 14 refuses on its own: with a pin check that allows everything (a regression in
    /// the policy crate), a pinned certificate from another address is still refused, and
    /// still allowed from its pin. Removing `check_source` makes this fail.
    #[test]
    fn the_source_address_backstop_refuses_when_the_pin_check_does_not() {
        let f = fixture();
        let ctx = AuthContext {
            identity: CertIdentity::default(),
            trusted_cas: &f.trusted,
            users: &f.users,
            honours_force_command: true,
        };
        let allow_all = |_: PinRequirement, _: &CertPin, _: Option<&Endpoint>, _: &ObservedAddr| {
            Decision::Allow
        };
        let cert = issue(&f, "bob", Some("127.0.0.1"));
        let denied = authorize_with(&ctx, "bob", &cert, &seen("127.0.0.2:5000"), NOW, allow_all)
            .unwrap_err();
        assert_eq!(denied.reason.code(), "pinned_ip_mismatch");
        assert_eq!(denied.pinned, vec!["127.0.0.1/32".to_owned()]);
        assert!(
            denied.message.contains("log in again"),
            "{}",
            denied.message
        );
        let raw_list = raw(&f, |b| {
            b.critical_option("source-address", "10.0.0.0/8,2001:db8::/32")
                .unwrap();
        });
        for from in ["192.0.2.1:1", "[2001:db9::1]:1", "[::ffff:11.0.0.1]:1"] {
            let denied =
                authorize_with(&ctx, "alice", &raw_list, &seen(from), NOW, allow_all).unwrap_err();
            assert_eq!(denied.reason.code(), "pinned_ip_mismatch", "{from}");
        }
        // The backstop is no blanket refusal: inside the list, and unpinned, it lets through.
        for from in ["10.1.2.3:1", "[2001:db8::7]:1", "[::ffff:10.0.0.1]:1"] {
            authorize_with(&ctx, "alice", &raw_list, &seen(from), NOW, allow_all)
                .unwrap_or_else(|d| panic!("{from}: {d:?}"));
        }
        authorize_with(&ctx, "bob", &cert, &seen("127.0.0.1:5000"), NOW, allow_all).unwrap();
        let unpinned = issue(&f, "bob", None);
        authorize_with(
            &ctx,
            "bob",
            &unpinned,
            &seen("127.0.0.2:5000"),
            NOW,
            allow_all,
        )
        .unwrap();
    }

    /// The collision of the design note (docs/design/restricted-sessions.md): bob's role
    /// allows the OS login `alice`, and an ippin user `alice` exists whose roles pin.
    #[test]
    fn a_login_named_after_another_user_is_decided_as_the_certificate_owner() {
        let f = fixture();
        let bob = issue_as(&f, "bob", &["bob", "alice"], None);
        // From an address alice's pin requirement would refuse an unpinned certificate from.
        let who = decide(&f, "alice", &bob, &seen("127.0.0.2:1"), NOW).unwrap();
        assert_eq!(who.user, "bob");
        assert_eq!(who.login.as_deref(), Some("alice"));
        assert_eq!(who.roles, vec!["dev".to_owned()]);
        assert_eq!(who.key_id, "bob@ippin/7");
        // His own name: a session of the built-ins, no login.
        let own = decide(&f, "bob", &bob, &seen("127.0.0.2:1"), NOW).unwrap();
        assert_eq!((own.user.as_str(), own.login), ("bob", None));
        // Alice's certificate cannot be used as bob: not a principal ...
        let alice = issue(&f, "alice", Some("127.0.0.1"));
        assert_eq!(
            reason(decide(&f, "bob", &alice, &seen("127.0.0.1:1"), NOW)),
            "wrong_principal"
        );
        // ... and where it is one (a login her roles once allowed), her roles now do not.
        let alice_bob = issue_as(&f, "alice", &["alice", "bob"], Some("127.0.0.1"));
        let denied = decide(&f, "bob", &alice_bob, &seen("127.0.0.1:1"), NOW).unwrap_err();
        assert_eq!(denied.reason.code(), "login_not_allowed");
        assert_eq!(denied.roles, vec!["pinned-ip".to_owned()]);
        // Her own name still works, with her pin, and is no OS login.
        let she = decide(&f, "alice", &alice_bob, &seen("127.0.0.1:1"), NOW).unwrap();
        assert_eq!((she.user.as_str(), she.login), ("alice", None));
        assert_eq!(
            reason(decide(&f, "alice", &alice_bob, &seen("127.0.0.2:1"), NOW)),
            "pinned_ip_mismatch"
        );
    }

    #[test]
    fn a_login_removed_from_the_roles_after_issuance_is_refused() {
        let mut f = fixture();
        let bob = issue_as(&f, "bob", &["bob", "deploy", "root"], None);
        let who = decide(&f, "deploy", &bob, &seen("127.0.0.1:1"), NOW).unwrap();
        assert_eq!(who.login.as_deref(), Some("deploy"));
        // root is a principal, but no role of bob's lists it.
        let denied = decide(&f, "root", &bob, &seen("127.0.0.1:1"), NOW).unwrap_err();
        assert_eq!(denied.reason.code(), "login_not_allowed");
        // The role changes: `deploy` is no longer allowed. The certificate still names it.
        f.users.insert(
            "bob".to_owned(),
            SshUser::new(false, vec!["dev".into()]).with_logins(["alice"]),
        );
        let denied = decide(&f, "deploy", &bob, &seen("127.0.0.1:1"), NOW).unwrap_err();
        assert_eq!(denied.reason, SshDenyReason::LoginNotAllowed);
        assert!(denied.reason.tells_user());
        assert_eq!(denied.roles, vec!["dev".to_owned()]);
        assert_eq!(
            denied.message,
            "ippin: the login `deploy` is not allowed by the roles of `bob`; if your roles \
             changed, log in again (`ippin login`)"
        );
        // His own name is unaffected.
        assert!(decide(&f, "bob", &bob, &seen("127.0.0.1:1"), NOW).is_ok());
    }

    #[test]
    fn a_deny_in_any_role_wins_over_an_allow() {
        use ippin_policy::{Role, RoleVersion, allowed_logins};
        let mut f = fixture();
        let ops = Role::new("ops", RoleVersion::V7, false)
            .with_logins(["root", "deploy"], Vec::<String>::new())
            .unwrap();
        let safe = Role::new("safe", RoleVersion::V7, false)
            .with_logins(Vec::<String>::new(), ["root"])
            .unwrap();
        f.users.insert(
            "bob".to_owned(),
            SshUser::new(false, vec!["ops".into(), "safe".into()])
                .with_logins(allowed_logins(&[&ops, &safe])),
        );
        let bob = issue_as(&f, "bob", &["bob", "root", "deploy"], None);
        assert_eq!(
            reason(decide(&f, "root", &bob, &seen("127.0.0.1:1"), NOW)),
            "login_not_allowed"
        );
        let who = decide(&f, "deploy", &bob, &seen("127.0.0.1:1"), NOW).unwrap();
        assert_eq!(who.login.as_deref(), Some("deploy"));
    }

    /// A login the roles allow that is also the user's own name is a login (a real session).
    #[test]
    fn the_own_name_allowed_as_a_login_is_a_login() {
        let mut f = fixture();
        f.users.insert(
            "bob".to_owned(),
            SshUser::new(false, vec!["dev".into()]).with_logins(["bob"]),
        );
        let bob = issue(&f, "bob", None);
        let who = decide(&f, "bob", &bob, &seen("127.0.0.1:1"), NOW).unwrap();
        assert_eq!(who.login.as_deref(), Some("bob"));
    }

    #[test]
    fn key_ids_not_written_by_the_ca_are_refused() {
        let f = fixture();
        let at = seen("127.0.0.1:1");
        let signed = |key_id: &str, serial: u64| {
            raw_with(&f, key_id, serial, |b| {
                b.critical_option("source-address", "127.0.0.1/32").unwrap();
            })
        };
        // the control: the CA's own form
        let ok = decide(&f, "alice", &signed("alice@ippin/1", 1), &at, NOW).unwrap();
        assert_eq!(ok.user, "alice");
        let zero = decide(&f, "alice", &signed("alice@ippin/0", 0), &at, NOW).unwrap();
        assert_eq!(zero.serial, 0);
        let max = format!("alice@ippin/{}", u64::MAX);
        assert!(decide(&f, "alice", &signed(&max, u64::MAX), &at, NOW).is_ok());
        for (key_id, serial) in [
            ("alice@ippin/1", 2),
            ("alice@ippin/2", 1),
            ("@ippin/1", 1),
            ("alice", 1),
            ("alice@ippin/01", 1),
            ("alice@ippin/00", 0),
            ("alice@ippin/", 1),
            ("alice@ippin/+1", 1),
            ("alice@ippin/-1", 1),
            ("alice@ippin/1 ", 1),
            ("alice@ippin/0x1", 1),
            ("alice@ippin/18446744073709551616", 0),
            ("alice@ippin1", 1),
            ("alice@Ippin/1", 1),
            ("alice@other/1", 1),
            ("alice@ippin/1/1", 1),
            ("al ice@ippin/1", 1),
            ("alice\n@ippin/1", 1),
            ("a@alice@ippin/1", 1),
            ("", 1),
        ] {
            let denied = decide(&f, "alice", &signed(key_id, serial), &at, NOW).unwrap_err();
            assert_eq!(
                denied.reason.code(),
                "invalid_key_id",
                "{key_id:?} {serial}"
            );
            assert!(!denied.reason.tells_user());
            assert_eq!(denied.pinned, vec!["127.0.0.1/32".to_owned()]);
        }
        // A key id naming bob on a certificate whose principal is alice: decided as bob, for
        // whom `alice` is a login.
        let who = decide(&f, "alice", &signed("bob@ippin/3", 3), &at, NOW).unwrap();
        assert_eq!(
            (who.user.as_str(), who.login.as_deref()),
            ("bob", Some("alice"))
        );
        // An unknown user named by the key id, whatever the SSH user name.
        let denied = decide(&f, "alice", &signed("carol@ippin/3", 3), &at, NOW).unwrap_err();
        assert_eq!(denied.reason.code(), "unknown_user");
        assert!(denied.message.contains("`carol`"), "{}", denied.message);
    }

    mod identity {
        use proptest::prelude::*;

        use super::*;

        const NAMES: [&str; 5] = ["alice", "bob", "carol", "deploy", "root"];

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// The user decided for is the key id's, never the SSH user name's: with any owner,
            /// any principals, any SSH user name and any logins per user, an allowed attempt
            /// carries the owner's name and roles, and a login only when the owner's roles
            /// allow it; every other SSH user name is refused.
            #[test]
            fn the_identity_never_comes_from_the_ssh_user_name(
                owner in 0usize..5,
                principals in proptest::collection::btree_set(0usize..5, 1..5),
                asked in 0usize..5,
                logins in proptest::collection::vec(proptest::collection::btree_set(0usize..5, 0..4), 5),
            ) {
                let mut f = fixture();
                f.users.clear();
                // carol (2) is not a user; the others each have a role named after them.
                for (i, name) in NAMES.iter().enumerate() {
                    if i != 2 {
                        let l: Vec<&str> = logins[i].iter().map(|j| NAMES[*j]).collect();
                        f.users.insert(
                            (*name).to_owned(),
                            SshUser::new(false, vec![format!("role-of-{name}")]).with_logins(l),
                        );
                    }
                }
                let owner_name = NAMES[owner];
                let ps: Vec<&str> = principals.iter().map(|j| NAMES[*j]).collect();
                let cert = issue_as(&f, owner_name, &ps, None);
                let asked_name = NAMES[asked];
                let got = decide(&f, asked_name, &cert, &seen("127.0.0.1:1"), NOW);
                let expected_ok = principals.contains(&asked)
                    && owner != 2
                    && (logins[owner].contains(&asked) || asked == owner);
                prop_assert_eq!(got.is_ok(), expected_ok, "{:?}", got);
                if let Ok(who) = got {
                    prop_assert_eq!(&who.user, owner_name);
                    prop_assert_eq!(&who.roles, &vec![format!("role-of-{owner_name}")]);
                    if logins[owner].contains(&asked) {
                        prop_assert_eq!(who.login.as_deref(), Some(asked_name));
                    } else {
                        prop_assert_eq!(who.login, None);
                        prop_assert_eq!(asked_name, owner_name);
                    }
                }
            }
        }
    }

    mod agree {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

        use ipnet::{IpNet, Ipv4Net, Ipv6Net};
        use ippin_cert::ssh::SourceAddress;
        use proptest::prelude::*;

        use super::*;

        fn net() -> impl Strategy<Value = IpNet> {
            prop_oneof![
                (any::<u32>(), 1u8..=32).prop_map(|(a, l)| IpNet::from(
                    Ipv4Net::new(Ipv4Addr::from(a), l).expect("prefix").trunc()
                )),
                (any::<u128>(), 1u8..=128).prop_map(|(a, l)| IpNet::from(
                    Ipv6Net::new(Ipv6Addr::from(a), l).expect("prefix").trunc()
                )),
            ]
        }

        proptest! {
            /// Why step 14 never refuses after step 13 allowed, with today's crates: for every
            /// `source-address` the certificate crate accepts and every trusted observation,
            /// the policy crate's pin check and OpenSSH's rule agree (both canonicalise the
            /// client IP; a list holds no IPv4-mapped network and no /0).
            #[test]
            fn check_pin_and_check_source_agree(
                nets in proptest::collection::vec(net(), 1..4),
                (which, v4, v6, mapped, port) in any::<(u8, u32, u128, bool, u16)>(),
                requires_pin in any::<bool>(),
            ) {
                let Ok(list) = SourceAddress::from_nets(nets.clone()) else {
                    return Ok(());
                };
                // Addresses inside the networks as well as anywhere.
                let ip: IpAddr = match (nets[usize::from(which) % nets.len()], which % 3) {
                    (IpNet::V4(n), 0) => Ipv4Addr::from(
                        u32::from(n.network()) | (v4 & !u32::from(n.netmask())),
                    )
                    .into(),
                    (IpNet::V6(n), 0) => Ipv6Addr::from(
                        u128::from(n.network()) | (v6 & !u128::from(n.netmask())),
                    )
                    .into(),
                    (_, 1) => Ipv4Addr::from(v4).into(),
                    _ => Ipv6Addr::from(v6).into(),
                };
                let ip = match ip {
                    IpAddr::V4(v4) if mapped => IpAddr::V6(v4.to_ipv6_mapped()),
                    other => other,
                };
                let observed =
                    ObservedAddr::new(SocketAddr::new(ip, port.max(1)), Provenance::Direct, true);
                let pin = CertPin::Nets(list.nets().to_vec());
                let allowed = matches!(ippin_policy::check_pin(requires_pin, &pin, &observed), Decision::Allow);
                // What step 14 would refuse, step 13 has refused already.
                if allowed {
                    prop_assert!(list.matches(observed.ip()), "{} {}", list, ip);
                }
                // And they are the same rule where the roles do not ask for one host.
                if !requires_pin || pin.is_single_host() {
                    prop_assert_eq!(allowed, list.matches(observed.ip()), "{} {}", list, ip);
                }
            }
        }
    }
}
