//! `ippin check` on arbitrary inputs: the `--observed` text, the
//! `--untrusted` flag, role files, and the certificate bytes.
//!
//! Input layout: the `--observed` text up to the first `\n`; one flag byte
//! (bit 0: `--untrusted`; bits 1–2: no role file, the `pin_source_ip` role,
//! a role without it, or a fuzzed role file that runs up to the first
//! [`ROLES_END`]); then the certificate bytes.
//!
//! Beyond "no panic": only exit codes 0, 1 and 2 with their documented
//! output; the decision agrees with the exit code; an `--observed` that the
//! standard library cannot read is refused, and one that is accepted is
//! reported as written (port 0 when untrusted); `--untrusted` and role
//! requirements only ever turn an allow into a deny, never the reverse; an
//! allow of a pinned certificate is from inside the pin.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use ippin::Outcome;
use ippin::check::{CheckArgs, run};
use libfuzzer_sys::fuzz_target;

/// Ends a fuzzed role file.
const ROLES_END: &[u8] = b"\n---8<---\n";

const PINNING: &str = "kind: role\nversion: v7\nmetadata:\n  name: pinned-ip\nspec:\n  options:\n    pin_source_ip: true\n";
const DEV: &str = "kind: role\nversion: v7\nmetadata:\n  name: dev\n";

/// The reason codes `check_pin` can give.
const REASONS: [&str; 6] = [
    "invalid_pin",
    "pinned_ip_missing",
    "untrusted_client_ip",
    "pinned_ip_mismatch",
    "pin_too_wide",
    "pinned_endpoint_mismatch",
];

fn split(data: &[u8]) -> Option<CheckArgs> {
    let nl = data.iter().position(|&b| b == b'\n')?;
    let observed = std::str::from_utf8(&data[..nl]).ok()?.to_owned();
    let (&flags, mut rest) = data[nl + 1..].split_first()?;
    let roles = match (flags >> 1) & 3 {
        0 => Vec::new(),
        1 => vec![("pinning.yaml".to_owned(), PINNING.to_owned())],
        2 => vec![("dev.yaml".to_owned(), DEV.to_owned())],
        _ => {
            let end = rest.windows(ROLES_END.len()).position(|w| w == ROLES_END)?;
            let text = std::str::from_utf8(&rest[..end]).ok()?.to_owned();
            rest = &rest[end + ROLES_END.len()..];
            vec![("fuzz.yaml".to_owned(), text)]
        }
    };
    Some(CheckArgs {
        cert: rest.to_vec(),
        observed,
        roles,
        untrusted: flags & 1 == 1,
        // Bit 3: the client came through a private endpoint (a name the CLI takes).
        endpoint: (flags & 8 != 0).then(|| "vpce-0123456789abcdef0".to_owned()),
    })
}

/// The text of JSON string field `"name":"…"` (no escapes in our values).
fn string_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\":\"");
    let start = line.find(&key)? + key.len();
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

/// The CIDR strings of the `"pinned":[…]` field.
fn pinned(line: &str) -> Vec<(IpAddr, u8)> {
    let key = "\"pinned\":[";
    let start = line.find(key).expect("pinned") + key.len();
    let len = line[start..].find(']').expect("closed");
    line[start..start + len]
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (ip, bits) = s.trim_matches('"').split_once('/').expect("CIDR");
            (ip.parse().expect("IP"), bits.parse().expect("prefix"))
        })
        .collect()
}

/// An IPv4-mapped IPv6 address as the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Whether `ip` is inside network `net/bits`, comparing canonically: a
/// network inside `::ffff:0:0/96` is the IPv4 network it maps.
fn contains((net, bits): (IpAddr, u8), ip: IpAddr) -> bool {
    let (net, bits) = match net {
        IpAddr::V6(v6) if bits >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), bits - 96),
            None => (net, bits),
        },
        _ => (net, bits),
    };
    match (net, canonical(ip)) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// What the standard library reads in `--observed`: `ip:port` or `ip`.
fn std_observed(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0)))
}

/// Checks the documented shape of an outcome and returns its decision line.
fn decision(out: &Outcome) -> Option<&str> {
    for text in [&out.stdout, &out.stderr] {
        let body = text.strip_suffix('\n').unwrap_or(text);
        assert!(!body.chars().any(char::is_control), "{out:?}");
    }
    match out.code {
        0 | 1 => {
            assert!(out.stderr.is_empty(), "{out:?}");
            assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
            assert!(out.stdout.ends_with("}\n"), "{out:?}");
            let line = out.stdout.trim_end();
            let verdict = string_field(line, "decision").expect("decision");
            assert_eq!(verdict, if out.code == 0 { "allow" } else { "deny" });
            if out.code == 0 {
                assert!(line.contains("\"reason\":null,\"message\":null"), "{out:?}");
            } else {
                let reason = string_field(line, "reason").expect("a deny has a reason");
                assert!(REASONS.contains(&reason), "{out:?}");
            }
            Some(line)
        }
        2 => {
            assert!(out.stdout.is_empty(), "{out:?}");
            assert!(out.stderr.starts_with("error: "), "{out:?}");
            assert!(out.stderr.ends_with('\n'), "{out:?}");
            assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
            None
        }
        other => panic!("exit code {other}: {out:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(args) = split(data) else {
        return;
    };
    let out = run(&args);
    let Some(line) = decision(&out) else {
        return;
    };

    // The observed address: readable by std, reported as written, port 0
    // (and untrusted) when `--untrusted` or no port.
    let seen = std_observed(&args.observed)
        .unwrap_or_else(|| panic!("accepted `{}`, which std refuses", args.observed));
    let trusted = !args.untrusted && seen.port() != 0;
    assert!(line.contains(&format!("\"trusted\":{trusted},")), "{line}");
    let reported: SocketAddr = string_field(line, "observed")
        .expect("observed")
        .parse()
        .expect("reported address");
    assert_eq!(reported.ip(), canonical(seen.ip()), "{line}");
    assert_eq!(
        reported.port(),
        if trusted { seen.port() } else { 0 },
        "{line}"
    );

    // An allow of a pinned certificate is from a trusted address inside it, and through
    // the endpoint it is bound to (none here but the one `--endpoint` names).
    let pin = pinned(line);
    if out.code == 0 && !pin.is_empty() {
        let bound = ippin::inspect::cert(&args.cert).stdout.contains("pinned_endpoint");
        assert_eq!(bound, args.endpoint.is_some(), "{line}");
    }
    if out.code == 0 && !pin.is_empty() {
        assert!(trusted, "{line}");
        assert!(pin.iter().any(|&n| contains(n, seen.ip())), "{line}");
        // A role that requires a pin is satisfied only by a single-host pin.
        if line.contains("\"requires_pin\":true") {
            let full = |(ip, bits): (IpAddr, u8)| bits == if ip.is_ipv4() { 32 } else { 128 };
            assert!(pin.len() == 1 && full(pin[0]), "{line}");
        }
    }
    if out.code == 1 && !pin.is_empty() && trusted {
        let reason = string_field(line, "reason").expect("reason");
        if reason == "pinned_ip_mismatch" {
            assert!(!pin.iter().any(|&n| contains(n, seen.ip())), "{line}");
        }
    }

    // Monotone: `--untrusted` never turns a deny into an allow, and neither
    // does a role file; dropping them never turns an allow into a deny.
    if args.untrusted && out.code == 0 {
        let trusting = run(&CheckArgs {
            untrusted: false,
            ..args.clone()
        });
        assert_eq!(trusting.code, 0, "{trusting:?}");
    }
    if !args.roles.is_empty() && out.code == 0 {
        let without = run(&CheckArgs {
            roles: Vec::new(),
            ..args.clone()
        });
        assert_eq!(without.code, 0, "{without:?}");
    }
    assert_eq!(run(&args), out, "deterministic");
});
