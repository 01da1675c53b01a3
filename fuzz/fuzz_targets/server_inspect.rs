//! `ippin inspect proxy` and `ippin inspect cert` on arbitrary file bytes:
//! no panic, only the documented exit codes, the documented output shapes
//! (one JSON line on stdout for exit 0, one `error: …` line on stderr
//! otherwise), agreement with the PROXY parser, and agreement with
//! `ippin check`, which reads certificates with the same loader.
#![no_main]

use ippin::Outcome;
use ippin::check::{CheckArgs, run};
use ippin_proxy_protocol as pp;
use libfuzzer_sys::fuzz_target;

/// The documented shape of an outcome: exit 0 (and for `check`, exit 1: a
/// deny) is one JSON object line on stdout and nothing on stderr; anything
/// else is one `error: …` line on stderr and nothing on stdout. Either is
/// printable.
fn assert_shape(out: &Outcome, what: &str) {
    // Printable whatever the input: no control character but the final
    // newline (no escape sequences for the terminal, no extra lines).
    for text in [&out.stdout, &out.stderr] {
        let body = text.strip_suffix('\n').unwrap_or(text);
        assert!(!body.chars().any(char::is_control), "{what}: {out:?}");
    }
    if out.code == 0 || (what == "check" && out.code == 1) {
        assert!(out.stderr.is_empty(), "{what}: stderr on exit 0: {out:?}");
        assert!(out.stdout.starts_with('{'), "{what}: {out:?}");
        assert!(out.stdout.ends_with("}\n"), "{what}: {out:?}");
        assert_eq!(out.stdout.lines().count(), 1, "{what}: {out:?}");
    } else {
        assert!(out.stdout.is_empty(), "{what}: stdout on failure: {out:?}");
        assert!(out.stderr.starts_with("error: "), "{what}: {out:?}");
        assert!(out.stderr.ends_with('\n'), "{what}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{what}: {out:?}");
    }
}

/// The text of JSON string array field `"name":[…]` in a report line.
fn array_field<'a>(line: &'a str, name: &str) -> &'a str {
    let key = format!("\"{name}\":[");
    let start = line.find(&key).expect("field present") + key.len();
    let len = line[start..].find(']').expect("array closed");
    &line[start..start + len]
}

fuzz_target!(|data: &[u8]| {
    // inspect proxy: exit 0 exactly when the parser accepts the start and
    // no second header follows; the report is about the header alone.
    let out = ippin::inspect::proxy(data);
    assert!(matches!(out.code, 0 | 1), "{out:?}");
    assert_shape(&out, "inspect proxy");
    match pp::parse(data) {
        Err(_) => assert_eq!(out.code, 1),
        Ok((header, used)) => {
            assert!(used <= data.len());
            let rest = &data[used..];
            assert_eq!(out.code == 0, !pp::starts_with_header(rest), "{out:?}");
            if out.code == 0 {
                let len = format!(",\"header_len\":{},", header.header_len());
                assert!(out.stdout.contains(&len), "{out:?}");
                assert_eq!(ippin::inspect::proxy(&data[..used]), out);
            }
        }
    }
    assert_eq!(ippin::inspect::proxy(data), out, "deterministic");

    // inspect cert.
    let cert = ippin::inspect::cert(data);
    assert!(matches!(cert.code, 0..=2), "{cert:?}");
    assert_shape(&cert, "inspect cert");
    if cert.code == 0 {
        assert!(
            cert.stdout.starts_with("{\"format\":\"ssh\",")
                || cert.stdout.starts_with("{\"format\":\"x509\","),
            "{cert:?}"
        );
    }
    if data.len() > ippin::inspect::MAX_CERT_FILE || data.is_empty() {
        assert_eq!(cert.code, 2);
    }

    // `check` loads the same bytes with the same loader: input `inspect
    // cert` finds unusable is unusable there too, and a certificate it
    // reports gets a decision with the same pin.
    let check = |observed: &str, untrusted: bool| {
        run(&CheckArgs {
            cert: data.to_vec(),
            observed: observed.to_owned(),
            roles: Vec::new(),
            untrusted,
            endpoint: None,
        })
    };
    let checked = check("192.0.2.1:1", false);
    assert!(matches!(checked.code, 0..=2), "{checked:?}");
    assert_shape(&checked, "check");
    match cert.code {
        2 => assert_eq!(checked.code, 2, "{checked:?}"),
        0 => {
            assert_ne!(checked.code, 2, "{checked:?}");
            let pinned = array_field(&cert.stdout, "pinned");
            assert_eq!(array_field(&checked.stdout, "pinned"), pinned);
            // The first network's own address is inside the pin: a trusted
            // client there is allowed; an untrusted one never is.
            if let Some(first) = pinned.split(',').next().filter(|s| !s.is_empty()) {
                let net = first.trim_matches('"');
                let (ip, _) = net.split_once('/').expect("CIDR");
                let at = if ip.contains(':') {
                    format!("[{ip}]:1")
                } else {
                    format!("{ip}:1")
                };
                let inside = check(&at, false);
                assert_eq!(inside.code, 0, "{net}: {inside:?}");
                let untrusted = check(&at, true);
                assert_eq!(untrusted.code, 1, "{net}: {untrusted:?}");
                assert!(
                    untrusted
                        .stdout
                        .contains("\"reason\":\"untrusted_client_ip\""),
                    "{untrusted:?}"
                );
            } else {
                // No pin, and no role requires one: allowed from anywhere.
                assert_eq!(checked.code, 0, "{checked:?}");
            }
        }
        _ => {}
    }
});
