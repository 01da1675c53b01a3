//! Reading an ippin SSH refusal back on the client side: the reason code in the userauth
//! banner an ippin SSH service sends before refusing a certificate, as the OpenSSH client
//! prints it on its stderr.
//!
//! The service writes one line, `ippin: refused (CODE): MESSAGE` ending in CRLF, where CODE is
//! [`SshDenyReason::code`] (docs/ssh.md). A client that wraps `ssh` (`ippin ssh`) feeds the
//! bytes of `ssh`'s stderr to a [`RefusalScan`] while forwarding them, and asks the reason it
//! found whether logging in again could help ([`SshDenyReason::relogin_helps`]).
//!
//! Strict and bounded, because the text comes from the server (and, once a session runs, from
//! the remote command's stderr): only a line that *starts* with [`REFUSAL_PREFIX`], whose
//! code is a known one followed by `): `, counts; free text is never interpreted. Lines are
//! cut at [`MAX_REFUSAL_LINE`] bytes (a longer line never counts), and only the first
//! [`MAX_SCANNED`] bytes of the stream are looked at: a refusal comes before any session.
//!
//! ```
//! use ippin_access::ssh::refusal::{RefusalScan, parse_refusal_line};
//! use ippin_access::ssh::SshDenyReason;
//!
//! let mut scan = RefusalScan::new();
//! scan.push(b"ippin: refused (pinned_ip_mismatch): the certificate is pinned to 127.0.0.1/32");
//! scan.push(b", this connection comes from 127.0.0.2; log in again\r\n");
//! scan.push(b"alice@127.0.0.1: Permission denied (publickey).\r\n");
//! let reason = scan.finish().expect("a refusal");
//! assert_eq!(reason.code(), "pinned_ip_mismatch");
//! assert!(reason.relogin_helps());
//!
//! assert_eq!(parse_refusal_line(b"ippin: refused (expired): x"), Some(SshDenyReason::Expired));
//! assert_eq!(parse_refusal_line(b"remote said: ippin: refused (expired): x"), None);
//! assert_eq!(parse_refusal_line(b"ippin: refused (made_up): x"), None);
//! ```

use ippin_policy::DenyReason;

use super::SshDenyReason;

/// How every refusal line of an ippin SSH service starts.
pub const REFUSAL_PREFIX: &str = "ippin: refused (";

/// The longest line a [`RefusalScan`] keeps (bytes, line end excluded): the service's
/// message (at most 1024 characters) with the prefix and code, in UTF-8 or as OpenSSH's
/// octal escapes of it, fits with room to spare. A longer line never counts as a refusal.
pub const MAX_REFUSAL_LINE: usize = 8 * 1024;

/// How much of a stream a [`RefusalScan`] looks at (bytes): the refusal comes before any
/// session, so what follows (a session's own stderr) is never read as one.
pub const MAX_SCANNED: usize = 64 * 1024;

/// The longest reason code accepted (the longest known one is shorter).
const MAX_CODE: usize = 64;

impl SshDenyReason {
    /// The reason whose [`code`](SshDenyReason::code) is `code`, or `None` for a code this
    /// version does not know (never guessed from a prefix or from case).
    pub fn from_code(code: &str) -> Option<SshDenyReason> {
        Some(match code {
            "not_a_certificate" => SshDenyReason::NotACertificate,
            "untrusted_ca" => SshDenyReason::UntrustedCa,
            "host_certificate" => SshDenyReason::HostCertificate,
            "wrong_principal" => SshDenyReason::WrongPrincipal,
            "not_yet_valid" => SshDenyReason::NotYetValid,
            "expired" => SshDenyReason::Expired,
            "unknown_critical_option" => SshDenyReason::UnknownCriticalOption,
            "invalid_source_address" => SshDenyReason::InvalidSourceAddress,
            "verify_required_unsupported" => SshDenyReason::VerifyRequiredUnsupported,
            "bad_ca_signature" => SshDenyReason::BadCaSignature,
            "invalid_certificate" => SshDenyReason::InvalidCertificate,
            "unknown_user" => SshDenyReason::UnknownUser,
            "invalid_key_id" => SshDenyReason::InvalidKeyId,
            "login_not_allowed" => SshDenyReason::LoginNotAllowed,
            "audit_unavailable" => SshDenyReason::AuditUnavailable,
            "sessions_full" => SshDenyReason::SessionsFull,
            "unknown_decision" => SshDenyReason::UnknownDecision,
            "pinned_ip_missing" => SshDenyReason::Pin(DenyReason::PinnedIpMissing),
            "pinned_ip_mismatch" => SshDenyReason::Pin(DenyReason::PinnedIpMismatch),
            "untrusted_client_ip" => SshDenyReason::Pin(DenyReason::UntrustedClientIp),
            "invalid_pin" => SshDenyReason::Pin(DenyReason::InvalidPin),
            "pin_too_wide" => SshDenyReason::Pin(DenyReason::PinTooWide),
            "role_mapping_failed" => SshDenyReason::Pin(DenyReason::RoleMappingFailed),
            "pinned_endpoint_mismatch" => SshDenyReason::Pin(DenyReason::PinnedEndpointMismatch),
            _ => return None,
        })
    }

    /// Whether a fresh login from where the client is now can turn this refusal into an
    /// access: the certificate is pinned elsewhere (`pinned_ip_mismatch`, or through another
    /// private endpoint: `pinned_endpoint_mismatch`), has no pin where the roles require one
    /// (`pinned_ip_missing`), a pin wider than they allow (`pin_too_wide`), or has expired
    /// (`expired`). A login issues a certificate for the
    /// current roles, pinned to the address the login server observes.
    ///
    /// False for every other reason: an untrusted or missing client address, an unknown
    /// user, a login the roles do not allow, a full server, a certificate not yet valid or
    /// from another CA are not fixed by a new certificate from the same place.
    pub fn relogin_helps(&self) -> bool {
        matches!(
            self,
            SshDenyReason::Expired
                | SshDenyReason::Pin(
                    DenyReason::PinnedIpMismatch
                        | DenyReason::PinnedIpMissing
                        | DenyReason::PinTooWide
                        | DenyReason::PinnedEndpointMismatch
                )
        )
    }
}

/// The reason of one line of OpenSSH's stderr when it is an ippin refusal banner: the line
/// (its end `\n`, `\r\n` or `\r` already removed or not) starts with [`REFUSAL_PREFIX`],
/// then a known code of `a-z` and `_`, then `): `. Anything else is `None`, as is a line
/// longer than [`MAX_REFUSAL_LINE`].
pub fn parse_refusal_line(line: &[u8]) -> Option<SshDenyReason> {
    if line.len() > MAX_REFUSAL_LINE + 2 {
        return None;
    }
    let rest = line.strip_prefix(REFUSAL_PREFIX.as_bytes())?;
    let end = rest
        .iter()
        .take(MAX_CODE + 1)
        .position(|&b| !(b.is_ascii_lowercase() || b == b'_'))?;
    let (code, after) = rest.split_at(end);
    if code.is_empty() || !after.starts_with(b"): ") {
        return None;
    }
    // `code` is ASCII: the conversion cannot fail.
    SshDenyReason::from_code(std::str::from_utf8(code).ok()?)
}

/// A sans-IO scanner of a byte stream (OpenSSH's stderr) for ippin refusal lines, fed in
/// chunks of any size: the same bytes in any split give the same answer. Memory is bounded
/// by [`MAX_REFUSAL_LINE`]; only the first [`MAX_SCANNED`] bytes are looked at.
#[derive(Debug, Clone, Default)]
pub struct RefusalScan {
    /// The current line so far (at most [`MAX_REFUSAL_LINE`] bytes).
    line: Vec<u8>,
    /// The current line grew past [`MAX_REFUSAL_LINE`]: it is skipped to its end.
    overlong: bool,
    /// Bytes looked at so far.
    scanned: usize,
    /// The last refusal found.
    found: Option<SshDenyReason>,
}

impl RefusalScan {
    /// A scanner that has seen nothing.
    pub fn new() -> RefusalScan {
        RefusalScan::default()
    }

    /// Looks at `bytes`, the next part of the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        let room = MAX_SCANNED.saturating_sub(self.scanned);
        let bytes = &bytes[..bytes.len().min(room)];
        self.scanned += bytes.len();
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                self.end_line();
            } else if self.line.len() < MAX_REFUSAL_LINE {
                self.line.push(b);
            } else {
                self.overlong = true;
            }
        }
    }

    fn end_line(&mut self) {
        if !self.overlong
            && let Some(reason) = parse_refusal_line(&self.line)
        {
            self.found = Some(reason);
        }
        self.line.clear();
        self.overlong = false;
    }

    /// The last refusal found so far (complete lines only).
    pub fn found(&self) -> Option<SshDenyReason> {
        self.found
    }

    /// The end of the stream: a last line without its line end counts too (unless the scan
    /// stopped at [`MAX_SCANNED`] inside it). The last refusal found, if any.
    pub fn finish(mut self) -> Option<SshDenyReason> {
        if self.scanned < MAX_SCANNED && !self.line.is_empty() {
            self.end_line();
        }
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [SshDenyReason; 24] = [
        SshDenyReason::NotACertificate,
        SshDenyReason::UntrustedCa,
        SshDenyReason::HostCertificate,
        SshDenyReason::WrongPrincipal,
        SshDenyReason::NotYetValid,
        SshDenyReason::Expired,
        SshDenyReason::UnknownCriticalOption,
        SshDenyReason::InvalidSourceAddress,
        SshDenyReason::VerifyRequiredUnsupported,
        SshDenyReason::BadCaSignature,
        SshDenyReason::InvalidCertificate,
        SshDenyReason::UnknownUser,
        SshDenyReason::InvalidKeyId,
        SshDenyReason::LoginNotAllowed,
        SshDenyReason::AuditUnavailable,
        SshDenyReason::SessionsFull,
        SshDenyReason::UnknownDecision,
        SshDenyReason::Pin(DenyReason::PinnedIpMissing),
        SshDenyReason::Pin(DenyReason::PinnedIpMismatch),
        SshDenyReason::Pin(DenyReason::UntrustedClientIp),
        SshDenyReason::Pin(DenyReason::InvalidPin),
        SshDenyReason::Pin(DenyReason::PinTooWide),
        SshDenyReason::Pin(DenyReason::RoleMappingFailed),
        SshDenyReason::Pin(DenyReason::PinnedEndpointMismatch),
    ];

    #[test]
    fn every_code_reads_back() {
        for r in ALL {
            assert_eq!(SshDenyReason::from_code(r.code()), Some(r), "{r}");
        }
        assert_eq!(SshDenyReason::from_code(""), None);
        assert_eq!(SshDenyReason::from_code("Expired"), None);
        assert_eq!(SshDenyReason::from_code("expired "), None);
        assert_eq!(SshDenyReason::from_code("pinned_ip"), None);
    }

    #[test]
    fn relogin_helps_only_for_the_pin_elsewhere_missing_too_wide_and_expiry() {
        let helps: Vec<&str> = ALL
            .iter()
            .filter(|r| r.relogin_helps())
            .map(SshDenyReason::code)
            .collect();
        assert_eq!(
            helps,
            [
                "expired",
                "pinned_ip_missing",
                "pinned_ip_mismatch",
                "pin_too_wide",
                "pinned_endpoint_mismatch"
            ]
        );
    }

    #[test]
    fn lines_as_the_service_writes_them() {
        let line = b"ippin: refused (pinned_ip_mismatch): the certificate is pinned to \
                     127.0.0.1/32, this connection comes from 127.0.0.2: log in again";
        assert_eq!(
            parse_refusal_line(line),
            Some(SshDenyReason::Pin(DenyReason::PinnedIpMismatch))
        );
        let mut crlf = line.to_vec();
        crlf.extend_from_slice(b"\r\n");
        assert!(parse_refusal_line(&crlf).is_some());
        assert_eq!(
            parse_refusal_line(b"ippin: refused (expired): x"),
            Some(SshDenyReason::Expired)
        );
        assert_eq!(
            parse_refusal_line(b"ippin: refused (unknown_user): there is no user"),
            Some(SshDenyReason::UnknownUser)
        );
    }

    #[test]
    fn anything_else_is_not_a_refusal() {
        for line in [
            &b""[..],
            b"ippin: refused (",
            b"ippin: refused (expired)",
            b"ippin: refused (expired):x",
            b"ippin: refused ():  x",
            b"ippin: refused (EXPIRED): x",
            b"ippin: refused (expired ): x",
            b"ippin: refused ( expired): x",
            b"ippin: refused (made_up_reason): x",
            b" ippin: refused (expired): x",
            b"debug1: ippin: refused (expired): x",
            b"Ippin: refused (expired): x",
            b"ippin: refused(expired): x",
            b"ippin: refused (expired\xff): x",
            b"alice@127.0.0.1: Permission denied (publickey).",
            b"the certificate has expired; pinned_ip_mismatch",
        ] {
            assert_eq!(
                parse_refusal_line(line),
                None,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        let long = format!("ippin: refused (expired): {}", "x".repeat(MAX_REFUSAL_LINE));
        assert_eq!(parse_refusal_line(long.as_bytes()), None);
        let code = format!("ippin: refused ({}): x", "a".repeat(MAX_CODE + 1));
        assert_eq!(parse_refusal_line(code.as_bytes()), None);
    }

    #[test]
    fn the_scan_finds_the_line_in_any_split_and_keeps_the_last() {
        let stream: &[u8] = b"Warning: Permanently added '[127.0.0.1]:2222' (ED25519).\r\n\
            ippin: refused (expired): the certificate has expired\r\n\
            ippin: refused (pinned_ip_mismatch): pinned elsewhere\r\n\
            alice@127.0.0.1: Permission denied (publickey).\r\n";
        for split in 0..=stream.len() {
            let mut scan = RefusalScan::new();
            scan.push(&stream[..split]);
            scan.push(&stream[split..]);
            assert_eq!(
                scan.finish(),
                Some(SshDenyReason::Pin(DenyReason::PinnedIpMismatch)),
                "{split}"
            );
        }
        let mut scan = RefusalScan::new();
        for b in stream {
            scan.push(std::slice::from_ref(b));
        }
        assert!(scan.found().is_some());
    }

    #[test]
    fn a_last_line_without_its_end_counts() {
        let mut scan = RefusalScan::new();
        scan.push(b"ippin: refused (expired): x");
        assert_eq!(scan.found(), None);
        assert_eq!(scan.finish(), Some(SshDenyReason::Expired));
    }

    #[test]
    fn an_overlong_line_is_skipped_to_its_end_and_not_read_as_its_tail() {
        let mut scan = RefusalScan::new();
        scan.push(&vec![b'x'; MAX_REFUSAL_LINE]);
        scan.push(b"ippin: refused (expired): x\n");
        assert_eq!(scan.found(), None);
        scan.push(b"ippin: refused (expired): x\n");
        assert_eq!(scan.finish(), Some(SshDenyReason::Expired));
    }

    #[test]
    fn nothing_after_the_scanned_bound_counts() {
        let mut scan = RefusalScan::new();
        scan.push(&vec![b'.'; MAX_SCANNED - 1]);
        scan.push(b"\nippin: refused (expired): x\n");
        assert_eq!(scan.finish(), None);
        let mut scan = RefusalScan::new();
        scan.push(&vec![b'.'; MAX_SCANNED - 30]);
        scan.push(b"\nippin: refused (expired): x\n");
        assert_eq!(scan.finish(), Some(SshDenyReason::Expired));
    }

    mod props {
        use proptest::prelude::*;

        use super::super::*;
        use super::ALL;

        proptest! {
            /// Arbitrary bytes: no panic, and the answer does not depend on how the stream
            /// is cut into chunks.
            #[test]
            fn any_bytes_in_any_split(
                bytes in proptest::collection::vec(any::<u8>(), 0..600),
                cut in any::<proptest::sample::Index>(),
            ) {
                let _ = parse_refusal_line(&bytes);
                let mut whole = RefusalScan::new();
                whole.push(&bytes);
                let at = cut.index(bytes.len() + 1);
                let mut split = RefusalScan::new();
                split.push(&bytes[..at]);
                split.push(&bytes[at..]);
                prop_assert_eq!(whole.finish(), split.finish());
            }

            /// Refusal-shaped lines around arbitrary text: found only when well formed.
            #[test]
            fn banner_shaped_lines(
                i in 0..ALL.len(),
                message in any::<String>(),
                before in "[ -~]{0,8}",
            ) {
                let reason = ALL[i];
                let line = format!("{before}ippin: refused ({}): {message}", reason.code());
                let found = parse_refusal_line(line.as_bytes());
                if before.is_empty() {
                    prop_assert_eq!(found, Some(reason));
                } else {
                    prop_assert_eq!(found, None);
                }
            }
        }
    }
}
