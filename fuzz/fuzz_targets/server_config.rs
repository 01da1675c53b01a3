//! The `serve` configuration parser on arbitrary text: no panic, bounded
//! work, and the documented rules.
//!
//! A configuration it accepts satisfies every rule `docs/server.md` states
//! (non-empty cluster name, at least one listener, distinct listen
//! addresses, `trust_x_forwarded_for` on login listeners only, no no-op
//! `trusted_proxies`, a `forward` section exactly on `forward` listeners,
//! networks without host bits, positive durations, valid user names, paths
//! resolved against the file's folder). A configuration it refuses gets an
//! error that starts with the file name and whose line, when it gives one,
//! is a line of the text.
#![no_main]

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use ippin::config::{Config, ConfigError, ListenerKind, ProxyModeSetting, check_name};
use ippin::propagation::config::{MAX_REPLAY_CAPACITY, MAX_WINDOW};
use libfuzzer_sys::fuzz_target;

const FILE: &str = "/etc/ippin/ippin.yaml";

fn check_accepted(config: &Config) {
    assert!(!config.cluster_name.trim().is_empty());
    assert!(!config.listeners.is_empty());
    assert!(config.cert_ttl > Duration::ZERO);
    assert!(config.ssh_auth_rejection_time > Duration::ZERO);

    let mut names = HashSet::new();
    for user in &config.users {
        assert!(check_name(&user.name).is_ok(), "{:?}", user.name);
        assert!(names.insert(user.name.as_str()), "{:?} twice", user.name);
        assert!(user.password_hash.starts_with("$argon2id$"));
    }

    // Paths are resolved against /etc/ippin, so all absolute.
    let mut paths = vec![
        &config.ca.ssh_key,
        &config.ca.tls_cert,
        &config.ca.tls_key,
        &config.server_tls.cert,
        &config.server_tls.key,
        &config.audit_log,
    ];
    paths.extend(&config.roles);
    paths.extend(&config.network_restrictions);
    paths.extend(&config.ssh_host_key);

    let mut addrs = HashSet::new();
    for l in &config.listeners {
        assert!(l.header_timeout > Duration::ZERO);
        if l.listen.port() != 0 {
            assert!(addrs.insert(l.listen), "{} twice", l.listen);
        }
        if l.trust_x_forwarded_for {
            assert_eq!(l.kind, ListenerKind::Login);
        }
        if l.trusted_proxies.is_some() && l.proxy_protocol == ProxyModeSetting::Off {
            assert!(l.trust_x_forwarded_for);
        }
        for net in l.trusted_proxies.iter().flatten() {
            assert_eq!(net.trunc(), *net, "host bits in {net}");
        }
        assert_eq!(l.forward.is_some(), l.kind == ListenerKind::Forward);
        if let Some(f) = &l.forward {
            assert_ne!(l.proxy_protocol, ProxyModeSetting::Unspecified);
            assert!(!f.audience.is_empty() && f.audience.len() <= 255);
            let (host, port) = f.upstream.rsplit_once(':').expect("host:port");
            assert!(!host.is_empty());
            assert_ne!(port.parse::<u16>().expect("port"), 0);
            paths.push(&f.cert);
            paths.push(&f.key);
        }
        if let Some(p) = &l.propagation {
            assert!(p.window >= Duration::from_secs(1) && p.window <= MAX_WINDOW);
            assert!((1..=MAX_REPLAY_CAPACITY).contains(&p.replay_capacity));
            assert!(!p.audience.is_empty() && p.audience.len() <= 255);
            paths.extend(&p.trusted_ca);
        }
    }
    for p in paths {
        assert!(p.is_absolute(), "{}", p.display());
    }
}

/// The last line YAML may name in `text`: line breaks are LF, CR, CRLF,
/// and (libyaml) NEL, LS and PS; the end of the input counts as one more
/// line when the text does not end with a break.
fn yaml_lines(text: &str) -> usize {
    let breaks = text
        .matches(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
        .count();
    breaks - text.matches("\r\n").count() + 2
}

fn check_refused(text: &str, err: &ConfigError) {
    let shown = err.to_string();
    assert!(shown.starts_with(FILE), "{shown}");
    // A line, when given, is one of the text's (or just past its end).
    let lines = yaml_lines(text);
    match err {
        ConfigError::Syntax { line, message, .. } => {
            // YAML errors are located (config.rs scans the events first, and
            // a second document is one of the errors it locates).
            assert!((1..=lines).contains(line), "line {line} of {lines}: {shown}");
            assert!(!message.is_empty());
        }
        ConfigError::Invalid {
            line,
            field,
            message,
            ..
        } => {
            assert!(*line <= lines, "line {line} of {lines}: {shown}");
            assert!(!field.is_empty() && !message.is_empty());
        }
        other => panic!("parse does no I/O: {other}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new(FILE);
    let first = Config::parse(path, text);
    match &first {
        Ok(config) => check_accepted(config),
        Err(e) => check_refused(text, e),
    }
    // Deterministic: the same text, the same configuration or error.
    match (&first, Config::parse(path, text)) {
        (Ok(a), Ok(b)) => assert_eq!(*a, b),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("parse is not deterministic"),
    }
});
