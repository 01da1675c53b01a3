//! `ippin check`: the pin check on one certificate for a client seen at a
//! given address, with the decision function the listeners use
//! ([`ippin_policy::check_pin`]).
//!
//! | code | meaning | stdout | stderr |
//! |---|---|---|---|
//! | 0 | allow | decision JSON | — |
//! | 1 | deny (a malformed pin denies with `invalid_pin`, never passes as unpinned) | decision JSON | — |
//! | 2 | unusable input: bad `--observed` syntax, no readable certificate, a bad role file | — | `error: …` |
//!
//! ```
//! use ippin::check::{CheckArgs, run};
//!
//! // Not a certificate at all: unusable input.
//! let out = run(&CheckArgs {
//!     cert: b"hello".to_vec(),
//!     observed: "127.0.0.1:5000".to_owned(),
//!     roles: Vec::new(),
//!     untrusted: false,
//!     endpoint: None,
//! });
//! assert_eq!(out.code, 2);
//! assert!(out.stderr.starts_with("error: "));
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use ippin_policy::{Decision, ObservedAddr, Provenance, RoleSet, check_pin_at};
use serde::Serialize;

use crate::Outcome;
use crate::inspect::{self, EXIT_UNUSABLE};

/// Exit code of a deny.
pub const EXIT_DENY: i32 = 1;

/// The inputs of `ippin check`, already read from their files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckArgs {
    /// The certificate file's bytes (OpenSSH, PEM or DER, as for
    /// `ippin inspect cert`).
    pub cert: Vec<u8>,
    /// `--observed`: `ip`, `ipv4:port` or `[ipv6]:port`. A missing port or
    /// port 0 means an untrusted address.
    pub observed: String,
    /// The `--roles` files as (file name, text). Every role in them is the
    /// user's; none means the user has no role, so no pin is required.
    pub roles: Vec<(String, String)>,
    /// `--untrusted`: the address is not believed, whatever its port.
    pub untrusted: bool,
    /// `--endpoint NAME`: the client came through this private endpoint (a listener with
    /// `allowed_endpoints`), as `vpce-…`, `azure:N` or `gcp:N`.
    pub endpoint: Option<String>,
}

/// The JSON `ippin check` prints, fields in this order.
#[derive(Debug, Serialize)]
struct CheckReport {
    decision: &'static str,
    reason: Option<&'static str>,
    message: Option<String>,
    observed: String,
    trusted: bool,
    requires_pin: bool,
    /// The widest pin the roles accept, per family, when they require one (`pin_source_ip_prefix`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pin_prefix: Option<PrefixReport>,
    pinned: Vec<String>,
}

#[derive(Debug, Serialize)]
struct PrefixReport {
    ipv4: u8,
    ipv6: u8,
}

/// Runs the pin check: exit 0 allow, 1 deny, 2 unusable input.
///
/// The observed address is built as a direct observation
/// ([`Provenance::Direct`]), trusted unless `--untrusted` is given or the
/// port is 0; the policy crate then gives it port 0 when untrusted. The
/// roles files are parsed with the same reader the server uses; their roles
/// together decide whether a pin is required.
///
/// The certificate's signature and validity window are not checked: this
/// is the pin check alone.
pub fn run(args: &CheckArgs) -> Outcome {
    let seen = match parse_observed(&args.observed) {
        Ok(seen) => seen,
        Err(reason) => return unusable(&format!("--observed: {reason}")),
    };
    let mut roles = Vec::new();
    for (file, text) in &args.roles {
        match ippin_policy::parse_roles(file, text) {
            Ok(mut parsed) => roles.append(&mut parsed),
            Err(e) => return unusable(&format!("--roles: {e}")),
        }
    }
    let names: Vec<String> = roles.iter().map(|r| r.name.clone()).collect();
    let requires_pin = match RoleSet::new(roles).and_then(|set| set.select(&names)) {
        Ok(user_roles) => user_roles.pin_requirement(),
        Err(e) => return unusable(&format!("--roles: {e}")),
    };
    let cert = match inspect::load(&args.cert) {
        Ok(cert) => cert,
        Err(failure) => return unusable(&format!("--cert: {}", failure.reason)),
    };
    let trusted = !args.untrusted && seen.port() != 0;
    let mut observed = ObservedAddr::new(seen, Provenance::Direct, trusted);
    if let Some(name) = &args.endpoint {
        // As `allowed_endpoints` reads one (canonical: `gcp:007` is not a name a listener
        // gives), then as the observation carries it.
        let parsed = crate::config::parse_endpoint(name)
            .ok()
            .and_then(|id| ippin_policy::Endpoint::parse(&id.to_string()));
        match parsed {
            Some(e) => observed = observed.with_endpoint(e),
            None => {
                return unusable(&format!(
                    "--endpoint: {:?} is not an endpoint ID (`vpce-…`, `azure:N`, `gcp:N`)",
                    name.chars().take(64).collect::<String>()
                ));
            }
        }
    }
    let decision = check_pin_at(
        requires_pin,
        &cert.pin,
        cert.pinned_endpoint.as_ref(),
        &observed,
    );
    let (verdict, reason, message, code) = match &decision {
        Decision::Allow => ("allow", None, None, 0),
        Decision::Deny(denial) => (
            "deny",
            Some(denial.reason.code()),
            Some(denial.message.clone()),
            EXIT_DENY,
        ),
        // A decision this version does not know is not an allow.
        _ => ("deny", None, Some(format!("{decision:?}")), EXIT_DENY),
    };
    let report = CheckReport {
        decision: verdict,
        reason,
        message,
        observed: SocketAddr::new(observed.ip(), observed.port()).to_string(),
        trusted: observed.is_trusted(),
        requires_pin: requires_pin.is_required(),
        pin_prefix: requires_pin
            .prefix()
            .filter(|p| !p.is_exact())
            .map(|p| PrefixReport {
                ipv4: p.ipv4(),
                ipv6: p.ipv6(),
            }),
        pinned: inspect::pin_strings(&cert.pin),
    };
    inspect::json_with_code(&report, code)
}

fn unusable(reason: &str) -> Outcome {
    inspect::failure(EXIT_UNUSABLE, reason)
}

/// Parses `--observed ADDR` strictly: `ip`, `ipv4:port` or `[ipv6]:port`.
///
/// Refused: zones (`%eth0`), IPv4 octets with leading zeros (`010` reads as
/// octal elsewhere), ports with a sign or leading zeros, IPv6 with a port but
/// no brackets, brackets without a port, anything around the address. A
/// missing port means port 0, which the pin check treats as untrusted.
pub(crate) fn parse_observed(text: &str) -> Result<SocketAddr, String> {
    if text.is_empty() {
        return Err("address is empty".to_owned());
    }
    if let Some(rest) = text.strip_prefix('[') {
        let Some((host, port)) = rest.split_once("]:") else {
            return Err(format!(
                "address `{text}`: brackets are only for an IPv6 address with a port, as in `[2001:db8::1]:443`"
            ));
        };
        let ip = parse_v6(host, text)?;
        let port = parse_port(port, text)?;
        return Ok(SocketAddr::new(IpAddr::V6(ip), port));
    }
    if text.contains(':') {
        // Either a bare IPv6 address or `ipv4:port`.
        if let Some((host, port)) = text.split_once(':')
            && !port.contains(':')
        {
            let ip = parse_v4(host, text)?;
            let port = parse_port(port, text)?;
            return Ok(SocketAddr::new(IpAddr::V4(ip), port));
        }
        let ip = parse_v6(text, text)?;
        return Ok(SocketAddr::new(IpAddr::V6(ip), 0));
    }
    let ip = parse_v4(text, text)?;
    Ok(SocketAddr::new(IpAddr::V4(ip), 0))
}

fn parse_v4(host: &str, whole: &str) -> Result<Ipv4Addr, String> {
    // std refuses leading zeros and short forms; say why when it does.
    Ipv4Addr::from_str(host).map_err(|_| {
        format!(
            "address `{whole}`: `{host}` is not an IPv4 address in dotted-quad form \
             (four decimal octets, no leading zeros)"
        )
    })
}

fn parse_v6(host: &str, whole: &str) -> Result<Ipv6Addr, String> {
    if host.contains('%') {
        return Err(format!(
            "address `{whole}`: zone identifiers (`%…`) are not allowed"
        ));
    }
    Ipv6Addr::from_str(host)
        .map_err(|_| format!("address `{whole}`: `{host}` is not an IPv6 address"))
}

fn parse_port(port: &str, whole: &str) -> Result<u16, String> {
    let digits_only = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    if !digits_only {
        return Err(format!(
            "address `{whole}`: port `{port}` must be decimal digits only"
        ));
    }
    if port.len() > 1 && port.starts_with('0') {
        return Err(format!(
            "address `{whole}`: port `{port}`: leading zeros are not allowed"
        ));
    }
    u16::from_str(port).map_err(|_| format!("address `{whole}`: port `{port}` is above 65535"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::fixtures::*;
    use ippin_cert::x509::Profile;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    const PINNING: &str = "kind: role\nversion: v7\nmetadata:\n  name: pinned-ip\nspec:\n  options:\n    pin_source_ip: true\n";
    const DEV: &str = "kind: role\nversion: v7\nmetadata:\n  name: dev\n";

    fn args(cert: &[u8], observed: &str) -> CheckArgs {
        CheckArgs {
            cert: cert.to_vec(),
            observed: observed.to_owned(),
            roles: Vec::new(),
            untrusted: false,
            endpoint: None,
        }
    }

    fn with_roles(mut a: CheckArgs, files: &[&str]) -> CheckArgs {
        a.roles = files
            .iter()
            .enumerate()
            .map(|(i, text)| (format!("roles{i}.yaml"), (*text).to_owned()))
            .collect();
        a
    }

    fn decision(out: &Outcome) -> Value {
        assert!(out.stderr.is_empty(), "{}", out.stderr);
        assert_eq!(out.stdout.lines().count(), 1);
        serde_json::from_str(&out.stdout).expect("JSON")
    }

    fn unusable_reason(out: Outcome) -> String {
        assert_eq!(out.code, 2, "{}", out.stdout);
        assert!(out.stdout.is_empty());
        assert!(out.stderr.starts_with("error: "));
        out.stderr
    }

    #[test]
    fn observed_syntax() {
        let ok = [
            ("192.0.2.1", "192.0.2.1:0"),
            ("192.0.2.1:443", "192.0.2.1:443"),
            ("192.0.2.1:0", "192.0.2.1:0"),
            ("2001:db8::1", "[2001:db8::1]:0"),
            ("[2001:db8::1]:443", "[2001:db8::1]:443"),
            ("[2001:0db8::1]:65535", "[2001:db8::1]:65535"),
            ("::ffff:192.0.2.1", "[::ffff:192.0.2.1]:0"),
            ("::1", "[::1]:0"),
        ];
        for (text, want) in ok {
            let got = parse_observed(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(got.to_string(), want, "{text}");
        }
        let bad = [
            "",
            "localhost",
            "192.0.2.01",
            "192.0.2.1:",
            "192.0.2.1:+80",
            "192.0.2.1:080",
            "192.0.2.1:65536",
            "192.0.2.1:-1",
            "192.0.2",
            " 192.0.2.1",
            "192.0.2.1 ",
            "[192.0.2.1]:80",
            "[2001:db8::1]",
            "[2001:db8::1]:",
            "[2001:db8::1]80",
            "2001:db8::1:80x",
            "fe80::1%eth0",
            "[fe80::1%1]:22",
            "[2001:db8::1]:443x",
            "2001:db8::1]:443",
        ];
        for text in bad {
            assert!(parse_observed(text).is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn pinned_certificate_allowed_at_its_ip_only() {
        for der in [
            x509_cert(Some("192.0.2.10"), None, Profile::Ippin),
            ssh_cert(Some("192.0.2.10"), None).into_bytes(),
        ] {
            let out = run(&args(&der, "192.0.2.10:50000"));
            assert_eq!(out.code, 0);
            assert_eq!(
                decision(&out),
                json!({"decision": "allow", "reason": null, "message": null,
                       "observed": "192.0.2.10:50000", "trusted": true,
                       "requires_pin": false, "pinned": ["192.0.2.10/32"]})
            );
            let out = run(&args(&der, "192.0.2.11:50000"));
            assert_eq!(out.code, 1);
            let got = decision(&out);
            assert_eq!(got["decision"], "deny");
            assert_eq!(got["reason"], "pinned_ip_mismatch");
            assert!(
                got["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("log in again"),
                "{got}"
            );
        }
    }

    /// A role with `pin_source_ip_prefix`: a network pin is checked by containment, the
    /// report names the prefix, and the same certificate is too wide for an exact role.
    #[test]
    fn prefix_roles_accept_a_network_pin_from_inside_it() {
        const PREFIX: &str = "kind: role\nversion: v7\nmetadata:\n  name: v6\nspec:\n  options:\n    pin_source_ip: true\n    pin_source_ip_prefix: {ipv6: 64}\n";
        let der = x509_cert(Some("2001:db8:1:2::/64"), None, Profile::Ippin);
        let out = run(&with_roles(
            args(&der, "[2001:db8:1:2::99]:5000"),
            &[PREFIX],
        ));
        assert_eq!(out.code, 0, "{}", out.stdout);
        let got = decision(&out);
        assert_eq!(got["decision"], "allow");
        assert_eq!(got["pin_prefix"], json!({"ipv4": 32, "ipv6": 64}));
        assert_eq!(got["pinned"], json!(["2001:db8:1:2::/64"]));
        let out = run(&with_roles(args(&der, "[2001:db8:1:3::1]:5000"), &[PREFIX]));
        assert_eq!(decision(&out)["reason"], "pinned_ip_mismatch");
        // narrowest wins: with an exact pinning role beside it, the /64 is too wide
        let out = run(&with_roles(
            args(&der, "[2001:db8:1:2::99]:5000"),
            &[PREFIX, PINNING],
        ));
        assert_eq!(out.code, 1);
        let got = decision(&out);
        assert_eq!(got["reason"], "pin_too_wide");
        assert_eq!(
            got.get("pin_prefix"),
            None,
            "exact is not reported as a prefix"
        );
    }

    /// `--endpoint`: a certificate bound to a private endpoint is allowed through it only;
    /// the ID is read as `allowed_endpoints` reads one (canonical), else unusable input.
    #[test]
    fn the_endpoint_the_client_came_through() {
        let der = x509_bound("10.0.0.5", "gcp:7");
        let through = |e: Option<&str>| {
            run(&CheckArgs {
                endpoint: e.map(str::to_owned),
                ..args(&der, "10.0.0.5:4000")
            })
        };
        assert_eq!(through(Some("gcp:7")).code, 0);
        for other in [Some("gcp:8"), None] {
            let out = through(other);
            assert_eq!(out.code, 1, "{other:?}");
            assert_eq!(decision(&out)["reason"], "pinned_endpoint_mismatch");
        }
        for bad in ["gcp:007", "GCP:7", "vpce-1", ""] {
            let out = through(Some(bad));
            assert_eq!(out.code, 2, "{bad:?}: {out:?}");
            assert!(out.stderr.contains("--endpoint"), "{out:?}");
        }
        // An unbound certificate through an endpoint: refused too.
        let plain = x509_cert(Some("10.0.0.5"), None, Profile::Ippin);
        let out = run(&CheckArgs {
            endpoint: Some("gcp:7".to_owned()),
            ..args(&plain, "10.0.0.5:4000")
        });
        assert_eq!(decision(&out)["reason"], "pinned_endpoint_mismatch");
    }

    #[test]
    fn port_zero_and_untrusted_flag() {
        let der = x509_cert(Some("192.0.2.10"), None, Profile::Ippin);
        for a in [
            args(&der, "192.0.2.10"),
            args(&der, "192.0.2.10:0"),
            CheckArgs {
                untrusted: true,
                ..args(&der, "192.0.2.10:5000")
            },
        ] {
            let out = run(&a);
            assert_eq!(out.code, 1);
            let got = decision(&out);
            assert_eq!(got["reason"], "untrusted_client_ip");
            assert_eq!(got["observed"], "192.0.2.10:0");
            assert_eq!(got["trusted"], false);
        }
        // An unpinned certificate of a user whose roles do not pin passes.
        let unpinned = x509_cert(None, None, Profile::Ippin);
        let out = run(&with_roles(args(&unpinned, "192.0.2.10"), &[DEV]));
        assert_eq!(out.code, 0);
        assert_eq!(decision(&out)["pinned"], json!([]));
    }

    #[test]
    fn roles_decide_whether_a_pin_is_required() {
        let unpinned = x509_cert(None, None, Profile::Ippin);
        let out = run(&with_roles(
            args(&unpinned, "192.0.2.10:1"),
            &[DEV, PINNING],
        ));
        assert_eq!(out.code, 1);
        let got = decision(&out);
        assert_eq!(got["reason"], "pinned_ip_missing");
        assert_eq!(got["requires_pin"], true);
        // Both roles in one file (two YAML documents): same.
        let one_file = format!("{DEV}---\n{PINNING}");
        let out = run(&with_roles(args(&unpinned, "192.0.2.10:1"), &[&one_file]));
        assert_eq!(decision(&out)["reason"], "pinned_ip_missing");
        let out = run(&with_roles(args(&unpinned, "192.0.2.10:1"), &[DEV]));
        assert_eq!(out.code, 0);
        assert_eq!(decision(&out)["requires_pin"], false);
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let der = x509_cert(Some("2001:db8::5"), None, Profile::Teleport);
        assert_eq!(run(&args(&der, "[2001:db8::5]:443")).code, 0);
        assert_eq!(run(&args(&der, "[2001:db8::6]:443")).code, 1);
        // An IPv4-mapped observation is the IPv4 client.
        let v4 = ssh_cert(Some("192.0.2.10"), None);
        let out = run(&args(v4.as_bytes(), "[::ffff:192.0.2.10]:22"));
        assert_eq!(out.code, 0);
        assert_eq!(decision(&out)["observed"], "192.0.2.10:22");
    }

    #[test]
    fn ssh_networks_match_inside() {
        let text = raw_ssh_cert(NOW + 60, &[("source-address", "10.0.0.0/8")], &[]);
        assert_eq!(run(&args(text.as_bytes(), "10.1.2.3:22")).code, 0);
        assert_eq!(run(&args(text.as_bytes(), "11.1.2.3:22")).code, 1);
    }

    #[test]
    fn a_malformed_pin_denies_never_unpinned() {
        let bad_ssh = raw_ssh_cert(NOW + 60, &[("source-address", "10.0.0.1/24")], &[]);
        let dup = ext(OID_PIN, None, &printable("192.0.2.10"));
        let bad_x509 = crafted(&[], &[dup.clone(), dup]);
        let disagree = crafted(
            &[rdn(OID_TP_PIN, 0x13, b"192.0.2.11")],
            &[ext(OID_PIN, None, &printable("192.0.2.10"))],
        );
        for cert in [bad_ssh.into_bytes(), bad_x509, disagree] {
            // Even where the roles do not require a pin, at any address.
            for observed in ["192.0.2.10:1", "10.0.0.1:1", "192.0.2.10"] {
                let out = run(&with_roles(args(&cert, observed), &[DEV]));
                assert_eq!(out.code, 1, "{observed}");
                let got = decision(&out);
                assert_eq!(got["decision"], "deny");
                assert_eq!(got["reason"], "invalid_pin");
            }
        }
    }

    #[test]
    fn unusable_input() {
        let der = x509_cert(Some("192.0.2.10"), None, Profile::Ippin);
        assert!(unusable_reason(run(&args(&der, "192.0.2.010:1"))).contains("--observed"));
        assert!(unusable_reason(run(&args(b"junk", "192.0.2.10:1"))).contains("--cert"));
        assert!(unusable_reason(run(&args(&der[..100], "192.0.2.10:1"))).contains("--cert"));
        let bad_role = "kind: role\nversion: v7\nmetadata:\n  name: x\nspec:\n  options:\n    pin_source_ip: yes-please\n";
        let out = run(&with_roles(args(&der, "192.0.2.10:1"), &[bad_role]));
        assert!(unusable_reason(out).contains("--roles"));
        // The same role name in two files.
        let out = run(&with_roles(args(&der, "192.0.2.10:1"), &[DEV, DEV]));
        assert!(unusable_reason(out).contains("--roles"));
    }

    proptest! {
        #[test]
        fn never_panics(
            cert in proptest::collection::vec(any::<u8>(), 0..200),
            observed in "\\PC{0,40}",
            role in "\\PC{0,80}",
            untrusted in any::<bool>(),
        ) {
            let out = run(&CheckArgs {
                cert,
                observed,
                roles: vec![("r.yaml".to_owned(), role)],
                untrusted,
                endpoint: None,
            });
            prop_assert!((0..=2).contains(&out.code));
        }

        #[test]
        fn observed_round_trips(addr in any::<SocketAddr>()) {
            let addr = match addr {
                SocketAddr::V6(v6) => SocketAddr::new(IpAddr::V6(*v6.ip()), v6.port()),
                v4 => v4,
            };
            prop_assert_eq!(parse_observed(&addr.to_string()), Ok(addr));
            prop_assert_eq!(parse_observed(&addr.ip().to_string()), Ok(SocketAddr::new(addr.ip(), 0)));
        }
    }
}
