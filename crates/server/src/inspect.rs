//! `ippin inspect proxy` and `ippin inspect cert`: what a PROXY header or a
//! certificate says, as one line of JSON for scripts.
//!
//! Both functions take the bytes of a file and return an [`Outcome`]; they
//! never panic and read nothing but their input. The output format and the
//! exit codes are stable and documented in `docs/cli.md`:
//!
//! | code | `inspect proxy` | `inspect cert` |
//! |---|---|---|
//! | 0 | one valid header at the start (JSON on stdout) | a certificate with a readable pin, or none (JSON on stdout) |
//! | 1 | invalid, incomplete, or followed by a second header (`error: …` on stderr) | the certificate does not decode, or its pin or login IP is malformed or ambiguous |
//! | 2 | — | unusable input: no certificate in a recognised encoding, broken PEM framing, several certificates |
//!
//! ```
//! use ippin_proxy_protocol::{Addresses, V1Builder};
//!
//! let header = V1Builder::new()
//!     .addresses(Addresses::Tcp4 { src: "198.51.100.7:51234".parse()?, dst: "203.0.113.10:443".parse()? })?
//!     .encode()?;
//! let out = ippin::inspect::proxy(&header);
//! assert_eq!(out.code, 0);
//! assert_eq!(
//!     out.stdout,
//!     "{\"version\":1,\"command\":\"proxy\",\"family\":\"tcp4\",\"source\":\"198.51.100.7:51234\",\
//!      \"destination\":\"203.0.113.10:443\",\"header_len\":48,\"tlvs\":[],\"crc32c\":\"absent\"}\n"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::IpAddr;

use ipnet::IpNet;
use ippin_cert::ssh_key::Certificate as SshCertificate;
use ippin_policy::CertPin;
use ippin_proxy_protocol as pp;
use serde::Serialize;

use crate::Outcome;

/// Exit code: the input is a header or certificate, but an invalid one.
pub const EXIT_INVALID: i32 = 1;
/// Exit code: the input is not usable at all (`inspect cert`, `check`).
pub const EXIT_UNUSABLE: i32 = 2;

/// The JSON `ippin inspect proxy` prints, fields in this order.
#[derive(Debug, Serialize)]
struct ProxyReport {
    version: u8,
    command: &'static str,
    family: &'static str,
    source: Option<String>,
    destination: Option<String>,
    header_len: usize,
    tlvs: Vec<TlvReport>,
    crc32c: &'static str,
}

/// One TLV as `inspect proxy` reports it: its type byte and value length.
#[derive(Debug, Serialize)]
struct TlvReport {
    #[serde(rename = "type")]
    kind: u8,
    length: usize,
}

/// Parses one PROXY header from the start of `bytes`, with the parser and
/// the default [`pp::ParseConfig`] every listener uses, and reports it.
///
/// Bytes after the header are allowed (they are the application's), unless
/// they begin another PROXY header, or could still begin one
/// ([`pp::starts_with_header`]): a listener refuses such a connection, so
/// this reports it as an error. An incomplete header is an error too, with
/// the number of missing bytes when the parser knows it.
pub fn proxy(bytes: &[u8]) -> Outcome {
    let (header, used) = match pp::parse(bytes) {
        Ok(parsed) => parsed,
        Err(e) => return failure(EXIT_INVALID, e),
    };
    let rest = bytes.get(used..).unwrap_or_default();
    if pp::starts_with_header(rest) {
        return failure(
            EXIT_INVALID,
            format_args!(
                "a second PROXY header (or the start of one) follows the first at byte {used}; \
                 listeners refuse a connection that sends more than one"
            ),
        );
    }
    let report = ProxyReport {
        version: header.version(),
        command: match header.command() {
            pp::Command::Proxy => "proxy",
            pp::Command::Local => "local",
            _ => "unknown",
        },
        family: family_name(&header),
        source: header.source().map(|a| a.to_string()),
        destination: header.destination().map(|a| a.to_string()),
        header_len: header.header_len(),
        tlvs: tlv_reports(&header),
        crc32c: match header.crc32c() {
            pp::Crc32cStatus::Absent => "absent",
            pp::Crc32cStatus::Valid => "valid",
            _ => "unknown",
        },
    };
    json_outcome(&report)
}

/// The family as the header states it on the wire: for v2 the family byte
/// (also for a LOCAL header, whose addresses are still ignored), for v1 the
/// protocol word.
fn family_name(header: &pp::Header<'_>) -> &'static str {
    match header {
        pp::Header::V1(v1) if v1.is_unknown() => "unknown",
        pp::Header::V1(_) => match header.addresses() {
            pp::Addresses::Tcp6 { .. } => "tcp6",
            _ => "tcp4",
        },
        pp::Header::V2(v2) => match v2.family_byte() {
            0x11 => "tcp4",
            0x12 => "udp4",
            0x21 => "tcp6",
            0x22 => "udp6",
            0x31 | 0x32 => "unix",
            _ => "unspec",
        },
        _ => "unknown",
    }
}

/// The type and wire length of each TLV, in wire order.
///
/// The lengths are read from the header bytes (already validated by the
/// parser); the types must agree with the parser's own iterator.
fn tlv_reports(header: &pp::Header<'_>) -> Vec<TlvReport> {
    let pp::Header::V2(v2) = header else {
        return Vec::new();
    };
    let raw = v2.as_bytes();
    let block = match v2.family_byte() >> 4 {
        0x1 => 12,
        0x2 => 36,
        0x3 => 216,
        _ => 0,
    };
    let mut area = raw.get(pp::V2_FIXED_LEN + block..).unwrap_or_default();
    let mut out = Vec::new();
    while let Some((&[kind, hi, lo], rest)) = area.split_first_chunk::<3>() {
        let length = usize::from(u16::from_be_bytes([hi, lo]));
        out.push(TlvReport { kind, length });
        area = rest.get(length..).unwrap_or_default();
    }
    out
}

/// The JSON `ippin inspect cert` prints, fields in this order; exactly one
/// of `principals` (SSH) and `subject` (X.509) is present.
#[derive(Debug, Serialize)]
struct CertReport {
    format: &'static str,
    pinned: Vec<String>,
    /// The private endpoint the pin is bound to (only when there is one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned_endpoint: Option<String>,
    login_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    principals: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    valid_after: Option<u64>,
    valid_before: Option<u64>,
}

/// Reports an OpenSSH or X.509 certificate: its format, pin, login IP,
/// principals or subject, and validity window.
///
/// The signature is not checked (there is no CA to check it against); the
/// pin is read with the same strict readers the server uses. `pinned` lists
/// CIDR strings (`198.51.100.7/32`), empty when the certificate carries no
/// pin. `valid_after` and `valid_before` are unix seconds; an SSH
/// `valid_before` of 2^64−1 ("forever") is printed as `null`, because JSON
/// readers lose precision above 2^53.
pub fn cert(bytes: &[u8]) -> Outcome {
    let loaded = match load(bytes) {
        Ok(loaded) => loaded,
        Err(Failure { code, reason }) => {
            return failure(code, reason);
        }
    };
    if let CertPin::Invalid(why) = &loaded.pin {
        return failure(EXIT_INVALID, format_args!("the pin cannot be read: {why}"));
    }
    if let Some(why) = &loaded.login_ip_error {
        return failure(EXIT_INVALID, format_args!("malformed login IP: {why}"));
    }
    if let Some(why) = &loaded.identity_error {
        return failure(EXIT_INVALID, format_args!("X.509 certificate: {why}"));
    }
    let report = CertReport {
        format: loaded.format,
        pinned: pin_strings(&loaded.pin),
        pinned_endpoint: loaded.pinned_endpoint.map(|e| e.to_string()),
        login_ip: loaded.login_ip.map(|ip| ip.to_string()),
        principals: loaded.principals.clone(),
        subject: loaded.subject.clone(),
        valid_after: Some(loaded.valid_after),
        valid_before: (loaded.valid_before != u64::MAX).then_some(loaded.valid_before),
    };
    json_outcome(&report)
}

/// Failure with exit `code` and `error: {reason}` on stderr, as one line.
///
/// Reasons may quote the input (a certificate's type label, say): control
/// characters and bidirectional formatting characters in them are escaped
/// (`\n`, `\u{1b}`, `\u{202e}`), so a file can neither add lines to the
/// output, nor send escape sequences to the terminal, nor reorder what is shown.
pub(crate) fn failure(code: i32, reason: impl std::fmt::Display) -> Outcome {
    let mut line = String::from("error: ");
    for c in reason.to_string().chars() {
        if c.is_control() || crate::ssh::text::is_bidi_control(c) {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line.push('\n');
    Outcome::fail(code, line)
}

/// The pin as CIDR strings (`/32` or `/128` for a single IP).
pub(crate) fn pin_strings(pin: &CertPin) -> Vec<String> {
    match pin {
        CertPin::Ip(ip) => vec![IpNet::from(*ip).to_string()],
        CertPin::Nets(nets) => nets.iter().map(|n| n.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// Why a certificate file could not be used, with the exit code to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// [`EXIT_INVALID`] or [`EXIT_UNUSABLE`].
    pub(crate) code: i32,
    /// The reason, for `error: …`.
    pub(crate) reason: String,
}

impl Failure {
    fn unusable(reason: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_UNUSABLE,
            reason: reason.into(),
        }
    }

    fn invalid(reason: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_INVALID,
            reason: reason.into(),
        }
    }
}

/// A certificate read from a file: what `inspect cert` reports and what
/// `check` runs the pin check on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadedCert {
    /// `ssh` or `x509`.
    pub(crate) format: &'static str,
    /// The pin; [`CertPin::Invalid`] when it is malformed or ambiguous.
    pub(crate) pin: CertPin,
    /// The private endpoint the pin is bound to, if any.
    pub(crate) pinned_endpoint: Option<ippin_policy::Endpoint>,
    /// The login IP, when present and well formed.
    pub(crate) login_ip: Option<IpAddr>,
    /// Why the login IP is malformed, when it is (SSH; for X.509 the pin
    /// reader checks it, so a bad one makes the pin invalid).
    pub(crate) login_ip_error: Option<String>,
    /// Why the X.509 subject or validity cannot be read, when it cannot.
    pub(crate) identity_error: Option<String>,
    /// SSH principals.
    pub(crate) principals: Option<Vec<String>>,
    /// X.509 subject.
    pub(crate) subject: Option<String>,
    /// Start of validity, unix seconds.
    pub(crate) valid_after: u64,
    /// End of validity, unix seconds.
    pub(crate) valid_before: u64,
}

/// Reads a certificate file: recognises the encoding, decodes the
/// certificate, and extracts the pin strictly.
///
/// A malformed pin is not a failure here but [`CertPin::Invalid`], so the
/// pin check can deny it with `invalid_pin`; a certificate that does not
/// decode is [`EXIT_INVALID`], input that holds no single certificate is
/// [`EXIT_UNUSABLE`].
pub(crate) fn load(bytes: &[u8]) -> Result<LoadedCert, Failure> {
    match recognise(bytes).map_err(Failure::unusable)? {
        CertInput::Ssh(text) => load_ssh(text),
        CertInput::X509(der) => load_x509(&der),
    }
}

fn load_ssh(text: &str) -> Result<LoadedCert, Failure> {
    let cert: SshCertificate = ippin_cert::ssh::parse_certificate(text)
        .map_err(|e| Failure::invalid(format!("OpenSSH certificate: {e}")))?;
    let mut pin = CertPin::None;
    for (name, data) in cert.critical_options().iter() {
        if name == ippin_cert::ssh::SOURCE_ADDRESS {
            pin = match ippin_cert::ssh::SourceAddress::parse(data) {
                Ok(list) => CertPin::Nets(list.nets().to_vec()),
                Err(e) => CertPin::Invalid(format!("critical option source-address: {e}")),
            };
        }
    }
    // The rest of the option rules sshd and the server apply (every critical
    // option recognised, flags without data, no NUL in names): a certificate
    // that breaks them has no well-defined pin, so its pin is invalid, never
    // "unpinned".
    if let Err(e) = ippin_cert::ssh::read_options(&cert)
        && !matches!(pin, CertPin::Invalid(_))
    {
        pin = CertPin::Invalid(format!("certificate options: {e}"));
    }
    let endpoint = ippin_cert::ssh::read_options(&cert)
        .ok()
        .and_then(|o| o.pinned_endpoint);
    let (pin, pinned_endpoint) = ippin_access::pin::with_endpoint(pin, endpoint);
    let mut login_ip = None;
    let mut login_ip_error = None;
    for (name, data) in cert.extensions().iter() {
        if name == ippin_cert::ssh::LOGIN_IP {
            match ippin_cert::parse_canonical_ip("login-ip extension", data) {
                Ok(ip) => login_ip = Some(ip),
                Err(e) => login_ip_error = Some(e.to_string()),
            }
        }
    }
    Ok(LoadedCert {
        format: "ssh",
        pin,
        pinned_endpoint,
        login_ip,
        login_ip_error,
        identity_error: None,
        principals: Some(cert.valid_principals().to_vec()),
        subject: None,
        valid_after: cert.valid_after(),
        valid_before: cert.valid_before(),
    })
}

fn load_x509(der: &[u8]) -> Result<LoadedCert, Failure> {
    use ippin_cert::x509;
    // The full decoder says whether this is a certificate at all; the pin
    // is then read by the fast path too, the one the `tls` listener runs,
    // and the two must agree.
    let full = match x509::pin_at(der) {
        Err(e @ (ippin_cert::Error::Der { .. } | ippin_cert::Error::DerStructure { .. })) => {
            return Err(Failure::invalid(format!("X.509 certificate: {e}")));
        }
        other => other,
    };
    let fast = x509::pin_fast_at(der);
    let (pin, pinned_endpoint) = match (full, fast) {
        (Ok(a), Ok(b)) if a == b => ippin_access::pin::with_endpoint(
            a.0.map_or(CertPin::None, ippin_access::pin::network_pin),
            a.1,
        ),
        (Err(e), _) | (Ok(_), Err(e)) => (CertPin::Invalid(e.to_string()), None),
        (Ok(a), Ok(b)) => (
            CertPin::Invalid(format!(
                "the full and the fast pin readers disagree ({a:?} and {b:?})"
            )),
            None,
        ),
    };
    let identity = x509::client_identity(der);
    let (login_ip, subject, valid_after, valid_before, identity_error) = match identity {
        Ok(id) => (
            id.login_ip,
            Some(subject_text(&id.user, &id.roles)),
            id.not_before,
            id.not_after,
            None,
        ),
        Err(e) => (None, None, 0, 0, Some(e.to_string())),
    };
    Ok(LoadedCert {
        format: "x509",
        pin,
        pinned_endpoint,
        login_ip,
        login_ip_error: None,
        identity_error,
        principals: None,
        subject,
        valid_after,
        valid_before,
    })
}

/// The subject attributes ippin reads, as RFC 4514 text: `CN=alice`, then
/// one `O=role` per role, values escaped.
fn subject_text(user: &str, roles: &[String]) -> String {
    let mut out = format!("CN={}", escape_rdn_value(user));
    for role in roles {
        out.push_str(",O=");
        out.push_str(&escape_rdn_value(role));
    }
    out
}

/// Escapes an attribute value as RFC 4514 section 2.4 requires.
fn escape_rdn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if c == '\0' {
            out.push_str("\\00");
        } else {
            if special {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

/// Serialises `report` as one line of JSON on stdout, exit 0.
pub(crate) fn json_outcome<T: Serialize>(report: &T) -> Outcome {
    json_with_code(report, 0)
}

/// Serialises `report` as one line of JSON on stdout with exit `code`.
///
/// Control characters inside strings (a principal, a subject) are written
/// as `\uXXXX` escapes, also the ones JSON allows raw (DEL, the C1 range,
/// which includes the 8-bit CSI), and so are the bidirectional controls
/// (U+202E and its kind, which reorder what follows on the line): the line
/// is printable whatever the certificate holds, and reads back to the same
/// strings.
pub(crate) fn json_with_code<T: Serialize>(report: &T, code: i32) -> Outcome {
    match serde_json::to_string(report) {
        Ok(json) => {
            let mut line = String::with_capacity(json.len() + 1);
            for c in json.chars() {
                if c.is_control() || crate::ssh::text::is_bidi_control(c) {
                    // Controls and bidi controls are all below U+10000: four hex digits.
                    line.push_str(&format!("\\u{:04x}", u32::from(c)));
                } else {
                    line.push(c);
                }
            }
            line.push('\n');
            Outcome {
                code,
                stdout: line,
                stderr: String::new(),
            }
        }
        // Serialising plain structs of strings and numbers cannot fail;
        // report it rather than panic should it ever.
        Err(e) => failure(EXIT_UNUSABLE, format_args!("cannot write JSON: {e}")),
    }
}

/// What a certificate file holds, once its encoding is recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CertInput<'a> {
    /// OpenSSH certificate text (`<type>-cert-v01@openssh.com AAAA… [comment]`).
    Ssh(&'a str),
    /// The DER bytes of one X.509 certificate (DER input, or one PEM block).
    X509(Vec<u8>),
}

/// The most bytes a certificate file may have; certificates are a few KiB.
pub const MAX_CERT_FILE: usize = 1 << 20;

/// Recognises the encoding of a certificate file.
///
/// * Bytes starting with a DER SEQUENCE tag (0x30) are X.509 DER, unless
///   they are text with a PEM boundary (text may start with `0`).
/// * Text whose first word ends in `-cert-v01@openssh.com` is an OpenSSH
///   certificate; it must be that one line (a trailing newline is fine), so
///   two certificates in one file are refused.
/// * Text with PEM blocks must hold exactly one `CERTIFICATE` block. Text
///   outside the blocks is ignored (RFC 7468 allows explanatory text), as
///   are blocks with other labels (a key stored alongside); a malformed
///   block (no END line, mismatched label, headers, bad base64) is refused.
///
/// The error is why the input is unusable.
fn recognise(bytes: &[u8]) -> Result<CertInput<'_>, String> {
    if bytes.len() > MAX_CERT_FILE {
        return Err(format!(
            "input is {} bytes; a certificate file is at most {MAX_CERT_FILE} bytes",
            bytes.len()
        ));
    }
    if bytes.is_empty() {
        return Err("input is empty".to_owned());
    }
    let text = std::str::from_utf8(bytes).ok();
    let is_pem = text.is_some_and(|t| t.contains("-----BEGIN "));
    if bytes.first() == Some(&0x30) && !is_pem {
        return Ok(CertInput::X509(bytes.to_vec()));
    }
    let Some(text) = text else {
        return Err(
            "unrecognised input: not UTF-8 text, and not DER (it does not start with a SEQUENCE tag)"
                .to_owned(),
        );
    };
    let first_word = text.split_ascii_whitespace().next().unwrap_or_default();
    if first_word.ends_with("-cert-v01@openssh.com") {
        let line = text.trim_end_matches(['\r', '\n']);
        if line.contains(['\r', '\n']) {
            return Err(
                "the OpenSSH certificate file holds more than one line; inspect one certificate at a time"
                    .to_owned(),
            );
        }
        return Ok(CertInput::Ssh(line));
    }
    if text.contains("-----BEGIN ") {
        let blocks = pem_blocks(text)?;
        let mut certs = blocks
            .into_iter()
            .filter(|(label, _)| label == "CERTIFICATE");
        let Some((_, der)) = certs.next() else {
            return Err("the PEM text holds no CERTIFICATE block".to_owned());
        };
        let more = certs.count();
        if more > 0 {
            return Err(format!(
                "the PEM text holds {} CERTIFICATE blocks; inspect one certificate at a time",
                more + 1
            ));
        }
        return Ok(CertInput::X509(der));
    }
    Err(
        "unrecognised input: neither an OpenSSH certificate, nor a PEM certificate, nor DER"
            .to_owned(),
    )
}

/// Splits PEM text into (label, decoded bytes) blocks, strictly.
fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    struct Open {
        label: String,
        body: String,
        line: usize,
    }
    let mut blocks = Vec::new();
    let mut open: Option<Open> = None;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index.saturating_add(1);
        let line = raw.trim_end();
        match open.take() {
            None => {
                if let Some(rest) = line.strip_prefix("-----BEGIN ") {
                    let Some(label) = rest.strip_suffix("-----") else {
                        return Err(format!("PEM line {line_no}: malformed BEGIN line"));
                    };
                    open = Some(Open {
                        label: label.to_owned(),
                        body: String::new(),
                        line: line_no,
                    });
                } else if line.starts_with("-----END ") {
                    return Err(format!("PEM line {line_no}: END line without a BEGIN line"));
                }
            }
            Some(mut block) => {
                if let Some(rest) = line.strip_prefix("-----END ") {
                    if rest.strip_suffix("-----") != Some(block.label.as_str()) {
                        return Err(format!(
                            "PEM line {line_no}: END line does not match `BEGIN {}`",
                            block.label
                        ));
                    }
                    let der = decode_base64(&block.body)
                        .map_err(|e| format!("PEM block `{}`: {e}", block.label))?;
                    blocks.push((block.label, der));
                } else if line.starts_with("-----") {
                    return Err(format!(
                        "PEM line {line_no}: unexpected boundary inside `{}`",
                        block.label
                    ));
                } else {
                    block.body.push_str(line.trim_start());
                    open = Some(block);
                }
            }
        }
    }
    if let Some(block) = open {
        return Err(format!(
            "PEM block `{}` opened at line {} has no END line",
            block.label, block.line
        ));
    }
    Ok(blocks)
}

/// Decodes standard base64 (RFC 4648 section 4) strictly: padding
/// required, nothing outside the alphabet, no non-zero unused bits.
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err("empty base64 body".to_owned());
    }
    if !bytes.len().is_multiple_of(4) {
        return Err(format!(
            "base64 body of {} characters is not a multiple of 4",
            bytes.len()
        ));
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let last = bytes.len() / 4 - 1;
    for (i, quad) in bytes.chunks_exact(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i != last) {
            return Err("misplaced `=` padding in the base64 body".to_owned());
        }
        let mut acc: u32 = 0;
        for (j, &c) in quad.iter().enumerate() {
            let v = if j >= 4 - pad {
                0
            } else {
                value(c).ok_or_else(|| format!("character {:?} is not base64", char::from(c)))?
            };
            acc = (acc << 6) | v;
        }
        let [_, b0, b1, b2] = acc.to_be_bytes();
        match pad {
            0 => out.extend_from_slice(&[b0, b1, b2]),
            1 if b2 == 0 => out.extend_from_slice(&[b0, b1]),
            2 if b1 == 0 && b2 == 0 => out.push(b0),
            _ => return Err("non-zero unused bits before the base64 padding".to_owned()),
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Certificates and headers for the unit tests of `inspect` and `check`,
    //! made with the libraries' own issuing and encoding APIs (and, for what
    //! a correct CA never issues, a small DER writer signed by the CA).

    use std::net::IpAddr;

    use ippin_cert::getrandom::SysRng;
    use ippin_cert::rand_core::UnwrapErr;
    use ippin_cert::ssh::{SshCa, SshCertRequest};
    use ippin_cert::ssh_key::certificate::{Builder, CertType};
    use ippin_cert::ssh_key::{Algorithm, PrivateKey};
    use ippin_cert::x509::{self, ClientCertRequest, Profile, X509Ca};

    /// A fixed "now", unix seconds (2023-11-14T22:13:20Z).
    pub(crate) const NOW: u64 = 1_700_000_000;

    pub(crate) fn rng() -> UnwrapErr<SysRng> {
        UnwrapErr(SysRng)
    }

    pub(crate) fn ip(text: &str) -> IpAddr {
        text.parse().expect("test IP")
    }

    fn user_key() -> PrivateKey {
        PrivateKey::random(&mut rng(), Algorithm::Ed25519).expect("ed25519 key")
    }

    /// An OpenSSH user certificate issued by ippin-cert, as file text.
    pub(crate) fn ssh_cert(pin: Option<&str>, login: Option<&str>) -> String {
        let ca = SshCa::generate_ed25519(&mut rng()).expect("CA");
        let mut b = SshCertRequest::builder(user_key().public_key().key_data().clone())
            .key_id("alice@ippin")
            .serial(42)
            .principal("alice")
            .principal("ops")
            .validity(NOW - 60, NOW + 3600);
        if let Some(p) = pin {
            b = b.pinned_ip(ip(p));
        }
        if let Some(l) = login {
            b = b.login_ip(ip(l));
        }
        let cert = ca
            .issue(&b.build().expect("request"), &mut rng())
            .expect("issue");
        format!("{}\n", cert.to_openssh().expect("encode"))
    }

    /// An OpenSSH user certificate with arbitrary critical options and
    /// extensions, signed by a fresh CA key (ippin would never issue these).
    pub(crate) fn raw_ssh_cert(
        valid_before: u64,
        critical: &[(&str, &str)],
        extensions: &[(&str, &str)],
    ) -> String {
        let ca = user_key();
        let mut b = Builder::new(
            vec![7u8; 32],
            user_key().public_key().key_data().clone(),
            NOW - 60,
            valid_before,
        )
        .expect("builder");
        b.cert_type(CertType::User).expect("type");
        b.key_id("raw").expect("key id");
        b.valid_principal("alice").expect("principal");
        for (name, data) in critical {
            b.critical_option(*name, *data).expect("critical option");
        }
        for (name, data) in extensions {
            b.extension(*name, *data).expect("extension");
        }
        let cert = b.sign(&ca).expect("sign");
        format!("{}\n", cert.to_openssh().expect("encode"))
    }

    pub(crate) fn x509_ca() -> X509Ca {
        X509Ca::generate_p256("ippin test CA", NOW - 86_400, NOW + 86_400, &mut rng())
            .expect("X.509 CA")
    }

    fn spki() -> Vec<u8> {
        let (_, public) = x509::generate_key_pair_p256(&mut rng()).expect("key pair");
        x509::spki_der_from_pem(&public).expect("SPKI")
    }

    /// A DER client certificate for alice (roles dev, ops) issued by
    /// ippin-cert.
    pub(crate) fn x509_cert(pin: Option<&str>, login: Option<&str>, profile: Profile) -> Vec<u8> {
        let mut b = ClientCertRequest::builder("alice", spki())
            .role("dev")
            .role("ops")
            .validity(NOW - 60, NOW + 3600)
            .serial(0x1234)
            .profile(profile);
        if let Some(p) = pin {
            b = match p.parse::<ipnet::IpNet>() {
                Ok(net) => b.pinned_network(net),
                Err(_) => b.pinned_ip(ip(p)),
            };
        }
        if let Some(l) = login {
            b = b.login_ip(ip(l));
        }
        x509_ca()
            .issue_client(&b.build().expect("request"), &mut rng())
            .expect("issue")
    }

    /// A DER client certificate for alice pinned to `pin` and bound to the private endpoint
    /// `endpoint`.
    pub(crate) fn x509_bound(pin: &str, endpoint: &str) -> Vec<u8> {
        let b = ClientCertRequest::builder("alice", spki())
            .role("dev")
            .validity(NOW - 60, NOW + 3600)
            .serial(0x1235)
            .pinned_ip(ip(pin))
            .pinned_endpoint(endpoint);
        x509_ca()
            .issue_client(&b.build().expect("request"), &mut rng())
            .expect("issue")
    }

    /// PEM text of a DER certificate.
    pub(crate) fn pem(der: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut b64 = String::new();
        for chunk in der.chunks(3) {
            let b = [
                chunk.first().copied().unwrap_or(0),
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = u32::from_be_bytes([0, b[0], b[1], b[2]]);
            for i in 0..4 {
                if i <= chunk.len() {
                    let index = usize::try_from((n >> (18 - 6 * i)) & 63).expect("6 bits");
                    b64.push(char::from(ALPHABET[index]));
                } else {
                    b64.push('=');
                }
            }
        }
        let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("ASCII"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        out
    }

    // --- a small DER writer, for certificates a correct CA never issues ---

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(u8::try_from(len).expect("short"));
        } else if len < 0x100 {
            out.extend([0x81, u8::try_from(len).expect("one byte")]);
        } else {
            out.extend([0x82]);
            out.extend(u16::try_from(len).expect("two bytes").to_be_bytes());
        }
        out.extend_from_slice(content);
        out
    }

    fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    /// OID contents (without tag and length) used below.
    pub(crate) const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
    /// 1.3.9999.1.9: the ippin pin extension, and Teleport's login IP attribute.
    pub(crate) const OID_PIN: &[u8] = &[0x2B, 0xCE, 0x0F, 0x01, 0x09];
    /// 1.3.9999.1.9.1: the ippin login IP extension.
    pub(crate) const OID_LOGIN: &[u8] = &[0x2B, 0xCE, 0x0F, 0x01, 0x09, 0x01];
    /// 1.3.9999.2.15: Teleport's pinned IP attribute.
    pub(crate) const OID_TP_PIN: &[u8] = &[0x2B, 0xCE, 0x0F, 0x02, 0x0F];

    /// An extension: OID, optional critical flag, OCTET STRING value.
    pub(crate) fn ext(oid: &[u8], critical: Option<bool>, value: &[u8]) -> Vec<u8> {
        let mut parts = vec![tlv(0x06, oid)];
        if let Some(c) = critical {
            parts.push(vec![0x01, 0x01, if c { 0xFF } else { 0x00 }]);
        }
        parts.push(tlv(0x04, value));
        seq(&parts)
    }

    /// A subject RDN with one attribute.
    pub(crate) fn rdn(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        tlv(0x31, &seq(&[tlv(0x06, oid), tlv(tag, value)]))
    }

    /// A PrintableString.
    pub(crate) fn printable(text: &str) -> Vec<u8> {
        tlv(0x13, text.as_bytes())
    }

    /// A certificate for CN=alice with extra subject RDNs and extensions,
    /// signed by a fresh CA.
    pub(crate) fn crafted(rdns: &[Vec<u8>], exts: &[Vec<u8>]) -> Vec<u8> {
        let mut subject = vec![rdn(OID_CN, 0x0C, b"alice")];
        subject.extend_from_slice(rdns);
        crafted_subject(&subject, exts)
    }

    /// A certificate with exactly these subject RDNs and extra extensions,
    /// signed by a fresh CA.
    pub(crate) fn crafted_subject(subject: &[Vec<u8>], exts: &[Vec<u8>]) -> Vec<u8> {
        let ca = x509_ca();
        let mut ext_list = vec![ext(&[0x55, 0x1D, 0x13], Some(true), &seq(&[]))];
        ext_list.extend_from_slice(exts);
        let tbs = seq(&[
            vec![0xA0, 0x03, 0x02, 0x01, 0x02],
            vec![0x02, 0x01, 0x07],
            seq(&[tlv(0x06, &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02])]),
            ca.subject_der().to_vec(),
            seq(&[tlv(0x17, b"231114000000Z"), tlv(0x17, b"331114000000Z")]),
            seq(subject),
            spki(),
            tlv(0xA3, &seq(&ext_list)),
        ]);
        ca.danger_sign_tbs(&tbs, &mut rng()).expect("sign")
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use ippin_cert::x509::Profile;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn stdout_json(out: &Outcome) -> Value {
        assert_eq!(out.code, 0, "stderr: {}", out.stderr);
        assert!(out.stderr.is_empty());
        assert!(out.stdout.ends_with('\n'));
        assert_eq!(out.stdout.lines().count(), 1, "one line of JSON");
        serde_json::from_str(&out.stdout).expect("valid JSON")
    }

    fn error_line(out: Outcome, code: i32) -> String {
        assert_eq!(
            out.code, code,
            "stdout: {} stderr: {}",
            out.stdout, out.stderr
        );
        assert!(out.stdout.is_empty());
        assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
        assert!(out.stderr.ends_with('\n'));
        out.stderr
    }

    fn v2(command: pp::Command, addrs: pp::Addresses) -> pp::V2Builder {
        let b = pp::V2Builder::new(command);
        if addrs == pp::Addresses::Unspec {
            b
        } else {
            b.addresses(addrs).expect("addresses")
        }
    }

    fn tcp4() -> pp::Addresses {
        pp::Addresses::Tcp4 {
            src: "198.51.100.7:51234".parse().expect("src"),
            dst: "203.0.113.10:443".parse().expect("dst"),
        }
    }

    fn tcp6() -> pp::Addresses {
        pp::Addresses::Tcp6 {
            src: "[2001:db8::1]:51234".parse().expect("src"),
            dst: "[2001:db8::2]:443".parse().expect("dst"),
        }
    }

    /// A quoted input can neither break the line, nor send escapes, nor reorder the text.
    #[test]
    fn failure_escapes_controls_and_bidi() {
        let out = failure(2, "label \u{202e}gnp.exe\n\u{1b}[2J\u{2066}x");
        let text = out.stderr;
        assert_eq!(text.lines().count(), 1, "{text:?}");
        for c in ['\u{202e}', '\u{2066}', '\u{1b}'] {
            assert!(!text.contains(c), "{text:?}");
        }
        assert!(text.contains("\\u{202e}"), "{text:?}");
    }

    // --- inspect proxy ---

    #[test]
    fn v1_tcp6_and_unknown() {
        let line = pp::V1Builder::new()
            .addresses(tcp6())
            .expect("addresses")
            .encode()
            .expect("encode");
        assert_eq!(
            stdout_json(&proxy(&line)),
            json!({"version": 1, "command": "proxy", "family": "tcp6",
                   "source": "[2001:db8::1]:51234", "destination": "[2001:db8::2]:443",
                   "header_len": line.len(), "tlvs": [], "crc32c": "absent"})
        );
        let unknown = pp::V1Builder::new().encode().expect("encode");
        assert_eq!(unknown, b"PROXY UNKNOWN\r\n");
        assert_eq!(
            stdout_json(&proxy(&unknown)),
            json!({"version": 1, "command": "proxy", "family": "unknown",
                   "source": null, "destination": null,
                   "header_len": 15, "tlvs": [], "crc32c": "absent"})
        );
    }

    #[test]
    fn v2_tlvs_in_wire_order_with_crc32c() {
        let header = v2(pp::Command::Proxy, tcp4())
            .tlv(pp::Tlv::Authority("example.org"))
            .expect("authority")
            .crc32c()
            .expect("crc")
            .tlv(pp::Tlv::Custom {
                kind: 0xE0,
                value: b"abc",
            })
            .expect("custom")
            .tlv(pp::Tlv::Noop(&[]))
            .expect("noop")
            .encode()
            .expect("encode");
        assert_eq!(
            stdout_json(&proxy(&header)),
            json!({"version": 2, "command": "proxy", "family": "tcp4",
                   "source": "198.51.100.7:51234", "destination": "203.0.113.10:443",
                   "header_len": header.len(),
                   "tlvs": [{"type": 2, "length": 11}, {"type": 3, "length": 4},
                            {"type": 224, "length": 3}, {"type": 4, "length": 0}],
                   "crc32c": "valid"})
        );
        // 16 fixed bytes, 12 address bytes, TLVs of 3+11, 3+4, 3+3, 3+0.
        assert_eq!(header.len(), 16 + 12 + 14 + 7 + 6 + 3);
    }

    #[test]
    fn tlv_types_agree_with_the_parser_and_lengths_with_the_wire() {
        let subs = pp::encode_ssl_sub_tlvs(&[
            pp::SslSubTlv::Version("TLSv1.3"),
            pp::SslSubTlv::Cn("alice"),
        ])
        .expect("sub-TLVs");
        let ssl = pp::SslTlv::new(pp::PP2_CLIENT_SSL, 0, &subs).expect("SSL TLV");
        let header = v2(pp::Command::Proxy, tcp6())
            .tlv(pp::Tlv::Alpn(b"h2"))
            .expect("alpn")
            .tlv(pp::Tlv::UniqueId(&[9; 32]))
            .expect("unique id")
            .tlv(pp::Tlv::Ssl(ssl))
            .expect("ssl")
            .tlv(pp::Tlv::Netns("blue"))
            .expect("netns")
            .tlv(pp::Tlv::Unknown {
                kind: 0x50,
                value: b"?",
            })
            .expect("unknown")
            .encode()
            .expect("encode");
        let got = stdout_json(&proxy(&header));
        let (parsed, _) = pp::parse(&header).expect("parse");
        let kinds: Vec<u8> = parsed.tlvs().map(|t| t.kind()).collect();
        let reported: Vec<u64> = got["tlvs"]
            .as_array()
            .expect("array")
            .iter()
            .map(|t| t["type"].as_u64().expect("type"))
            .collect();
        assert_eq!(
            reported,
            kinds.iter().map(|&k| u64::from(k)).collect::<Vec<_>>()
        );
        assert_eq!(
            got["tlvs"],
            json!([{"type": 1, "length": 2}, {"type": 5, "length": 32},
                   {"type": 0x20, "length": 5 + subs.len()}, {"type": 0x30, "length": 4},
                   {"type": 0x50, "length": 1}])
        );
    }

    #[test]
    fn v2_every_family() {
        let v4 = |s: &str| s.parse::<std::net::SocketAddrV4>().expect("v4");
        let v6 = |s: &str| s.parse::<std::net::SocketAddrV6>().expect("v6");
        let mut src = [0u8; pp::UNIX_ADDR_LEN];
        src[..4].copy_from_slice(b"/a/b");
        let cases = [
            (tcp6(), "tcp6", json!("[2001:db8::1]:51234")),
            (
                pp::Addresses::Udp4 {
                    src: v4("192.0.2.1:53"),
                    dst: v4("192.0.2.2:5353"),
                },
                "udp4",
                json!("192.0.2.1:53"),
            ),
            (
                pp::Addresses::Udp6 {
                    src: v6("[::1]:53"),
                    dst: v6("[::2]:53"),
                },
                "udp6",
                json!("[::1]:53"),
            ),
            (
                pp::Addresses::Unix {
                    datagram: false,
                    src,
                    dst: src,
                },
                "unix",
                Value::Null,
            ),
            (pp::Addresses::Unspec, "unspec", Value::Null),
        ];
        for (addrs, family, source) in cases {
            let header = v2(pp::Command::Proxy, addrs).encode().expect("encode");
            let got = stdout_json(&proxy(&header));
            assert_eq!(got["family"], family);
            assert_eq!(got["source"], source, "{family}");
            assert_eq!(got["header_len"], header.len());
            assert_eq!(got["crc32c"], "absent");
        }
    }

    #[test]
    fn v2_local_reports_the_family_byte_but_no_addresses() {
        // LOCAL with family TCP4 and addresses on the wire: a receiver must
        // ignore them, so they are not reported.
        let mut header = pp::V2_SIGNATURE.to_vec();
        header.extend([0x20, 0x11, 0x00, 0x0C]);
        header.extend([192, 0, 2, 1, 192, 0, 2, 2, 0x13, 0x88, 0x00, 0x16]);
        assert_eq!(
            stdout_json(&proxy(&header)),
            json!({"version": 2, "command": "local", "family": "tcp4",
                   "source": null, "destination": null,
                   "header_len": 28, "tlvs": [], "crc32c": "absent"})
        );
        let local = v2(pp::Command::Local, pp::Addresses::Unspec)
            .encode()
            .expect("encode");
        let got = stdout_json(&proxy(&local));
        assert_eq!(got["command"], "local");
        assert_eq!(got["family"], "unspec");
    }

    #[test]
    fn application_bytes_after_the_header_are_allowed() {
        let mut bytes = v2(pp::Command::Proxy, tcp4()).encode().expect("encode");
        let len = bytes.len();
        bytes.extend_from_slice(b"SSH-2.0-OpenSSH_9.2\r\n");
        assert_eq!(stdout_json(&proxy(&bytes))["header_len"], len);
        let mut v1 = b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n".to_vec();
        v1.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(stdout_json(&proxy(&v1))["header_len"], 36);
    }

    #[test]
    fn a_second_header_is_refused() {
        let first = v2(pp::Command::Proxy, tcp4()).encode().expect("encode");
        let v1 = b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n";
        for second in [&first[..], &v1[..], &v1[..3], &pp::V2_SIGNATURE[..5]] {
            let mut bytes = first.clone();
            bytes.extend_from_slice(second);
            let err = error_line(proxy(&bytes), 1);
            assert!(err.contains("second PROXY header"), "{err}");
            assert!(err.contains(&format!("at byte {}", first.len())), "{err}");
        }
        // A v1 header followed by a v2 one.
        let mut bytes = v1.to_vec();
        bytes.extend_from_slice(&first);
        assert!(error_line(proxy(&bytes), 1).contains("second PROXY header"));
    }

    #[test]
    fn every_truncation_is_incomplete_with_the_missing_count() {
        let header = v2(pp::Command::Proxy, tcp4())
            .tlv(pp::Tlv::Authority("example.org"))
            .expect("tlv")
            .encode()
            .expect("encode");
        for cut in 0..header.len() {
            let err = error_line(proxy(&header[..cut]), 1);
            assert!(err.contains("incomplete"), "cut {cut}: {err}");
            if cut >= pp::V2_FIXED_LEN {
                let missing = header.len() - cut;
                assert!(
                    err.contains(&format!("at least {missing} more bytes")),
                    "cut {cut}: {err}"
                );
            }
        }
        let v1 = b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n";
        for cut in 0..v1.len() {
            assert!(error_line(proxy(&v1[..cut]), 1).contains("incomplete"));
        }
    }

    #[test]
    fn invalid_headers_say_why() {
        let cases: [(&[u8], &str); 4] = [
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 443\r\n", "v1 header"),
            (b"GET / HTTP/1.1\r\n", "not a PROXY header"),
            (b"PROXY TCP4 1.2.3.04 5.6.7.8 80 443\r\n", "v1 header"),
            (b"\x00\x01", "not a PROXY header"),
        ];
        for (bytes, why) in cases {
            let err = error_line(proxy(bytes), 1);
            assert!(err.contains(why), "{err}");
        }
        // A v2 header with a CRC32C that does not match.
        let mut header = v2(pp::Command::Proxy, tcp4())
            .crc32c()
            .expect("crc")
            .encode()
            .expect("encode");
        if let Some(last) = header.last_mut() {
            *last ^= 1;
        }
        assert!(!error_line(proxy(&header), 1).contains("incomplete"));
    }

    // --- inspect cert: SSH ---

    #[test]
    fn ssh_pinned_certificate_every_field() {
        let text = ssh_cert(Some("192.0.2.10"), Some("192.0.2.10"));
        assert_eq!(
            stdout_json(&cert(text.as_bytes())),
            json!({"format": "ssh", "pinned": ["192.0.2.10/32"], "login_ip": "192.0.2.10",
                   "principals": ["alice", "ops"],
                   "valid_after": NOW - 60, "valid_before": NOW + 3600})
        );
        // Without the trailing newline, and with CRLF: the same.
        let bare = text.trim_end();
        assert_eq!(cert(bare.as_bytes()), cert(text.as_bytes()));
        assert_eq!(
            cert(format!("{bare}\r\n").as_bytes()),
            cert(text.as_bytes())
        );
    }

    #[test]
    fn ssh_unpinned_and_ipv6() {
        let unpinned = ssh_cert(None, None);
        let got = stdout_json(&cert(unpinned.as_bytes()));
        assert_eq!(got["pinned"], json!([]));
        assert_eq!(got["login_ip"], Value::Null);
        let v6 = ssh_cert(Some("2001:db8::7"), Some("2001:db8::7"));
        let got = stdout_json(&cert(v6.as_bytes()));
        assert_eq!(got["pinned"], json!(["2001:db8::7/128"]));
        assert_eq!(got["login_ip"], "2001:db8::7");
    }

    #[test]
    fn ssh_source_address_lists_and_forever() {
        let text = raw_ssh_cert(
            u64::MAX,
            &[("source-address", "10.0.0.0/8,2001:db8::/32,192.0.2.1")],
            &[],
        );
        let got = stdout_json(&cert(text.as_bytes()));
        assert_eq!(
            got["pinned"],
            json!(["10.0.0.0/8", "2001:db8::/32", "192.0.2.1/32"])
        );
        assert_eq!(got["valid_before"], Value::Null, "forever is null");
        assert_eq!(got["principals"], json!(["alice"]));
    }

    #[test]
    fn ssh_malformed_pin_or_login_ip_is_exit_1() {
        for list in [
            "10.0.0.1/24",
            "10.0.0.01",
            "",
            "10.0.0.1,",
            "::ffff:10.0.0.1",
            "*",
        ] {
            let text = raw_ssh_cert(NOW + 60, &[("source-address", list)], &[]);
            let err = error_line(cert(text.as_bytes()), 1);
            assert!(err.contains("pin cannot be read"), "{list}: {err}");
            assert!(err.contains("source-address"), "{list}: {err}");
        }
        let text = raw_ssh_cert(NOW + 60, &[], &[("login-ip", "192.0.2.010")]);
        let err = error_line(cert(text.as_bytes()), 1);
        assert!(
            err.contains("login-ip") || err.contains("login IP"),
            "{err}"
        );
    }

    #[test]
    fn ssh_options_sshd_refuses_make_the_pin_unreadable() {
        // A pinned certificate with an option sshd and the server refuse: the
        // pin is not believed (exit 1), never shown as if the certificate were
        // usable.
        for critical in [
            vec![
                ("source-address", "192.0.2.10"),
                ("x-unknown@example.com", ""),
            ],
            vec![("source-address", "192.0.2.10"), ("verify-required", "yes")],
        ] {
            let text = raw_ssh_cert(NOW + 60, &critical, &[]);
            let err = error_line(cert(text.as_bytes()), 1);
            assert!(err.contains("pin cannot be read"), "{critical:?}: {err}");
        }
        // The same certificate without the extra option reads fine.
        let text = raw_ssh_cert(NOW + 60, &[("source-address", "192.0.2.10")], &[]);
        assert_eq!(
            stdout_json(&cert(text.as_bytes()))["pinned"],
            json!(["192.0.2.10/32"])
        );
    }

    #[test]
    fn ssh_broken_or_doubled_text() {
        let text = ssh_cert(Some("192.0.2.10"), None);
        // Corrupt the base64 blob.
        let broken = text.replacen("AAAA", "AA!A", 1);
        assert!(error_line(cert(broken.as_bytes()), 1).contains("OpenSSH certificate"));
        // Cut in the middle.
        let cut = &text[..text.len() / 2];
        assert!(error_line(cert(cut.as_bytes()), 1).contains("OpenSSH certificate"));
        // Two certificates in one file.
        let two = format!("{text}{text}");
        assert!(error_line(cert(two.as_bytes()), 2).contains("more than one line"));
    }

    // --- inspect cert: X.509 ---

    #[test]
    fn x509_pinned_certificate_pem_and_der() {
        let der = x509_cert(Some("192.0.2.10"), Some("192.0.2.11"), Profile::Ippin);
        let want = json!({"format": "x509", "pinned": ["192.0.2.10/32"],
                          "login_ip": "192.0.2.11", "subject": "CN=alice,O=dev,O=ops",
                          "valid_after": NOW - 60, "valid_before": NOW + 3600});
        assert_eq!(stdout_json(&cert(&der)), want);
        assert_eq!(stdout_json(&cert(pem(&der).as_bytes())), want);
    }

    #[test]
    fn x509_layouts_and_unpinned() {
        for profile in [Profile::Teleport, Profile::Both] {
            let der = x509_cert(Some("2001:db8::5"), Some("2001:db8::6"), profile);
            let got = stdout_json(&cert(&der));
            assert_eq!(got["pinned"], json!(["2001:db8::5/128"]), "{profile:?}");
            assert_eq!(got["login_ip"], "2001:db8::6", "{profile:?}");
        }
        let der = x509_cert(None, None, Profile::Ippin);
        let got = stdout_json(&cert(&der));
        assert_eq!(got["pinned"], json!([]));
        assert_eq!(got["login_ip"], Value::Null);
    }

    #[test]
    fn x509_malformed_or_ambiguous_pins_are_exit_1() {
        let pin = |text: &str| ext(OID_PIN, None, &printable(text));
        let cases = [
            (
                "duplicate extension",
                crafted(&[], &[pin("192.0.2.1"), pin("192.0.2.1")]),
            ),
            ("non-canonical text", crafted(&[], &[pin("192.0.2.01")])),
            (
                "critical",
                crafted(&[], &[ext(OID_PIN, Some(true), &printable("192.0.2.1"))]),
            ),
            (
                "not printable",
                crafted(&[], &[ext(OID_PIN, None, &[0x0C, 0x01, b'x'])]),
            ),
            (
                "layouts disagree",
                crafted(&[rdn(OID_TP_PIN, 0x13, b"192.0.2.2")], &[pin("192.0.2.1")]),
            ),
            (
                "duplicate attribute",
                crafted(
                    &[
                        rdn(OID_TP_PIN, 0x13, b"192.0.2.2"),
                        rdn(OID_TP_PIN, 0x13, b"192.0.2.2"),
                    ],
                    &[],
                ),
            ),
            (
                "duplicate basicConstraints",
                crafted(
                    &[],
                    &[
                        pin("192.0.2.1"),
                        ext(&[0x55, 0x1D, 0x13], None, &[0x30, 0x00]),
                    ],
                ),
            ),
            (
                "bad login IP",
                crafted(
                    &[],
                    &[pin("192.0.2.1"), ext(OID_LOGIN, None, &printable("x"))],
                ),
            ),
        ];
        for (what, der) in cases {
            let err = error_line(cert(&der), 1);
            assert!(err.contains("pin cannot be read"), "{what}: {err}");
        }
        // The crafted writer itself makes readable certificates.
        let ok = crafted(&[], &[pin("192.0.2.1")]);
        assert_eq!(stdout_json(&cert(&ok))["pinned"], json!(["192.0.2.1/32"]));
    }

    #[test]
    fn x509_without_a_readable_subject_is_exit_1() {
        let o_only = crafted_subject(&[rdn(&[0x55, 0x04, 0x0A], 0x0C, b"dev")], &[]);
        assert!(error_line(cert(&o_only), 1).contains("no CN"));
        let two_cn = crafted(&[rdn(OID_CN, 0x0C, b"mallory")], &[]);
        assert!(error_line(cert(&two_cn), 1).contains("more than one CN"));
    }

    #[test]
    fn text_starting_with_zero_is_not_der() {
        let der = x509_cert(None, None, Profile::Ippin);
        let text = format!("0 explanatory text\n{}", pem(&der));
        assert_eq!(stdout_json(&cert(text.as_bytes()))["format"], "x509");
        error_line(cert(b"0 nothing else"), 1);
    }

    #[test]
    fn x509_that_does_not_decode_is_exit_1() {
        let der = x509_cert(Some("192.0.2.10"), None, Profile::Ippin);
        for cut in [1, 10, der.len() / 2, der.len() - 1] {
            let err = error_line(cert(&der[..cut]), 1);
            assert!(err.contains("X.509 certificate"), "cut {cut}: {err}");
        }
        let mut longer = der.clone();
        longer.push(0);
        error_line(cert(&longer), 1);
    }

    #[test]
    fn pem_framing() {
        let der = x509_cert(Some("192.0.2.10"), None, Profile::Ippin);
        let block = pem(&der);
        let good = stdout_json(&cert(&der));
        // Explanatory text around the block, and a key block alongside.
        let wrapped = format!(
            "Bag Attributes\n  friendlyName: alice\n{block}\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\ntrailing words\n"
        );
        assert_eq!(stdout_json(&cert(wrapped.as_bytes())), good);
        let two = format!("{block}{block}");
        assert!(error_line(cert(two.as_bytes()), 2).contains("2 CERTIFICATE blocks"));
        let garbage_inside = block.replacen('\n', "\n!!garbage!!\n", 1);
        assert!(error_line(cert(garbage_inside.as_bytes()), 2).contains("PEM block `CERTIFICATE`"));
        let bad_char = block.replacen("\n", "\n!!!!\n", 1);
        assert!(error_line(cert(bad_char.as_bytes()), 2).contains("not base64"));
        let headers = block.replacen('\n', "\nProc-Type: 4,ENCRYPTED\n", 1);
        error_line(cert(headers.as_bytes()), 2);
        let no_end = block.replace("-----END CERTIFICATE-----\n", "");
        assert!(error_line(cert(no_end.as_bytes()), 2).contains("no END line"));
        let mismatched = block.replace("END CERTIFICATE", "END X509 CRL");
        assert!(error_line(cert(mismatched.as_bytes()), 2).contains("does not match"));
        let only_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(error_line(cert(only_key.as_bytes()), 2).contains("no CERTIFICATE block"));
        let lone_end = "-----END CERTIFICATE-----\n";
        error_line(cert(lone_end.as_bytes()), 2);
        // A PEM block whose content is not a certificate.
        let not_cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        error_line(cert(not_cert.as_bytes()), 1);
    }

    #[test]
    fn base64_is_strict() {
        assert_eq!(decode_base64("TWFu").expect("plain"), b"Man");
        assert_eq!(decode_base64("TWE=").expect("one pad"), b"Ma");
        assert_eq!(decode_base64("TQ==").expect("two pads"), b"M");
        for bad in [
            "", "TWF", "TW=u", "T===", "TR==", "TWF=", "TQ==TWFu", "TW u",
        ] {
            assert!(decode_base64(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unusable_input_is_exit_2() {
        let cases: [&[u8]; 5] = [
            b"",
            b"hello world",
            b"\xff\xfe\x00",
            b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 not-a-certificate",
            b"-----BEGIN CERTIFICATE",
        ];
        for bytes in cases {
            error_line(cert(bytes), 2);
        }
        let huge = vec![b'a'; MAX_CERT_FILE + 1];
        assert!(error_line(cert(&huge), 2).contains("at most"));
    }

    /// Found by the `server_inspect` fuzz target: the certificate parser's
    /// error quotes the type label inside the base64 blob, which may hold a
    /// newline or a terminal escape.
    #[test]
    fn errors_quoting_the_input_stay_one_line() {
        // The blob's label is "ssh-ed25519-cert\x1b[2J\nv01@openssh.com".
        let file = b"ssh-ed25519-cert-v01@openssh.com \
            AAAAJHNzaC1lZDI1NTE5LWNlcnQbWzJKCnYwMUBvcGVuc3NoLmNvbQAAAAAAAAAA\n";
        let line = error_line(cert(file), 1);
        assert_eq!(line.lines().count(), 1, "{line:?}");
        assert!(!line.contains('\u{1b}'), "{line:?}");
        assert!(line.contains(r"cert\u{1b}[2J\nv01"), "{line:?}");
        let checked = crate::check::run(&crate::check::CheckArgs {
            cert: file.to_vec(),
            observed: "192.0.2.1:22".to_owned(),
            ..Default::default()
        });
        assert_eq!(checked.code, 2);
        assert_eq!(checked.stderr.lines().count(), 1, "{checked:?}");
        assert!(
            checked.stderr.contains(r"cert\u{1b}[2J\nv01"),
            "{checked:?}"
        );
    }

    #[test]
    fn json_lines_hold_no_control_characters() {
        let text = "a\u{7f}\u{9b}[2J\u{1b}\n\u{0}b";
        let out = json_with_code(&serde_json::json!({ "p": text }), 0);
        assert_eq!(
            out.stdout,
            "{\"p\":\"a\\u007f\\u009b[2J\\u001b\\n\\u0000b\"}\n"
        );
        let back: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
        assert_eq!(back["p"], text);
        // Bidirectional controls (a principal `ops\u{202e}…`) are escaped too.
        let text = "ops\u{202e}gnp\u{2066}x\u{61c}";
        let out = json_with_code(&serde_json::json!({ "p": text }), 0);
        assert_eq!(out.stdout, "{\"p\":\"ops\\u202egnp\\u2066x\\u061c\"}\n");
        let back: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
        assert_eq!(back["p"], text);
    }

    #[test]
    fn rdn_values_are_escaped() {
        assert_eq!(
            subject_text("a,b", &["#x".into(), " y ".into(), "q\"\\<>;+".into()]),
            "CN=a\\,b,O=\\#x,O=\\ y\\ ,O=q\\\"\\\\\\<\\>\\;\\+"
        );
    }

    proptest! {
        #[test]
        fn proxy_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let out = proxy(&bytes);
            prop_assert!(out.code == 0 || out.code == 1);
            prop_assert_eq!(out.stdout.is_empty(), out.code != 0);
            prop_assert_eq!(out.stderr.is_empty(), out.code == 0);
        }

        #[test]
        fn proxy_never_panics_after_a_signature(
            v2_start in any::<bool>(),
            tail in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut bytes = if v2_start { pp::V2_SIGNATURE.to_vec() } else { b"PROXY ".to_vec() };
            bytes.extend_from_slice(&tail);
            let out = proxy(&bytes);
            prop_assert!(out.code == 0 || out.code == 1);
        }

        #[test]
        fn proxy_reports_what_was_encoded(
            src in any::<std::net::SocketAddrV4>(),
            dst in any::<std::net::SocketAddrV4>(),
            src6 in any::<std::net::Ipv6Addr>(),
            port in any::<u16>(),
            custom in proptest::collection::vec(any::<u8>(), 0..40),
            v1 in any::<bool>(),
        ) {
            let src6 = std::net::SocketAddrV6::new(src6, port, 0, 0);
            let four = pp::Addresses::Tcp4 { src, dst };
            let six = pp::Addresses::Tcp6 { src: src6, dst: src6 };
            for addrs in [four, six] {
                let header = if v1 {
                    pp::V1Builder::new().addresses(addrs).expect("v1").encode().expect("encode")
                } else {
                    v2(pp::Command::Proxy, addrs)
                        .tlv(pp::Tlv::Custom { kind: 0xE7, value: &custom })
                        .expect("tlv")
                        .encode()
                        .expect("encode")
                };
                let out = proxy(&header);
                prop_assert_eq!(out.code, 0, "{}", out.stderr);
                let got: Value = serde_json::from_str(&out.stdout).expect("JSON");
                prop_assert_eq!(&got["source"], &json!(addrs.source().map(|a| a.to_string())));
                prop_assert_eq!(&got["destination"], &json!(addrs.destination().map(|a| a.to_string())));
                prop_assert_eq!(&got["header_len"], &json!(header.len()));
                if !v1 {
                    prop_assert_eq!(&got["tlvs"], &json!([{"type": 0xE7, "length": custom.len()}]));
                }
            }
        }

        #[test]
        fn cert_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let out = cert(&bytes);
            prop_assert!((0..=2).contains(&out.code));
            prop_assert_eq!(out.stdout.is_empty(), out.code != 0);
        }

        #[test]
        fn cert_never_panics_on_pem_like_text(
            body in "[A-Za-z0-9+/=\n -]{0,200}",
            label in "(CERTIFICATE|X|)",
            end in any::<bool>(),
        ) {
            let mut text = format!("-----BEGIN {label}-----\n{body}\n");
            if end {
                text.push_str(&format!("-----END {label}-----\n"));
            }
            let out = cert(text.as_bytes());
            prop_assert!((0..=2).contains(&out.code));
        }

        #[test]
        fn cert_never_panics_on_mutated_certificates(
            index in any::<proptest::sample::Index>(),
            byte in any::<u8>(),
            ssh in any::<bool>(),
        ) {
            // One fixture per run of the property keeps it fast.
            static DER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
            static SSH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let mut bytes = if ssh {
                SSH.get_or_init(|| ssh_cert(Some("192.0.2.10"), Some("192.0.2.10"))).clone().into_bytes()
            } else {
                DER.get_or_init(|| x509_cert(Some("192.0.2.10"), Some("192.0.2.11"), Profile::Both)).clone()
            };
            let at = index.index(bytes.len());
            if let Some(b) = bytes.get_mut(at) {
                *b = byte;
            }
            let out = cert(&bytes);
            prop_assert!((0..=2).contains(&out.code));
        }
    }
}
