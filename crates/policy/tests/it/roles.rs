//! Role YAML, role sets, and trusted clusters.

use std::net::SocketAddr;

use std::collections::BTreeSet;

use ippin_policy::{
    CertPin, Decision, Error, LOG_IN_AGAIN, ObservedAddr, Provenance, RawValue, Role, RoleMap,
    RoleSet, RoleVersion, allowed_logins, check_login, check_pin_remote, parse_roles,
};

const ROLES: &str = include_str!("../data/roles.yaml");

fn seen(addr: &str) -> ObservedAddr {
    let a: SocketAddr = addr.parse().unwrap();
    ObservedAddr::new(a, Provenance::Direct, true)
}

#[test]
fn parses_roles_as_users_write_them() {
    let roles = parse_roles("roles.yaml", ROLES).unwrap();
    let summary: Vec<(&str, RoleVersion, bool)> = roles
        .iter()
        .map(|r| (r.name.as_str(), r.version, r.pin_source_ip))
        .collect();
    assert_eq!(
        summary,
        [
            ("access", RoleVersion::V7, false),
            ("pinned-admin", RoleVersion::V6, true),
            ("auditor", RoleVersion::V5, false),
        ]
    );
    // allow / deny and other options are preserved, not interpreted
    let admin = &roles[1];
    assert_eq!(
        admin.option("max_session_ttl"),
        Some(&RawValue::String("8h".into()))
    );
    assert_eq!(
        admin.allow().and_then(|a| a.get("logins")),
        Some(&RawValue::Seq(vec![RawValue::String("root".into())]))
    );
    assert_eq!(
        admin
            .document
            .get("metadata")
            .and_then(|m| m.get("description"))
            .and_then(RawValue::as_str),
        Some("admins must use the address they logged in from")
    );
    assert_eq!(
        roles[2].option("forward_agent"),
        Some(&RawValue::Bool(true))
    );
    assert_eq!(roles[0].deny(), Some(&RawValue::Map(vec![])));
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn logins_are_read_deduplicated_and_deny_wins() {
    let roles = parse_roles("roles.yaml", ROLES).unwrap();
    assert_eq!(roles[0].allow_logins(), &set(&["deploy", "web-1"]));
    assert_eq!(roles[0].deny_logins(), &set(&[]));
    assert_eq!(roles[1].allow_logins(), &set(&["root"]));
    assert_eq!(roles[2].allow_logins(), &set(&[]));
    assert_eq!(roles[2].deny_logins(), &set(&["root"]));
    let set_of = RoleSet::new(roles).unwrap();
    let table: [(&[&str], &[&str]); 6] = [
        (&[], &[]),
        (&["access"], &["deploy", "web-1"]),
        (&["pinned-admin"], &["root"]),
        (&["access", "pinned-admin"], &["deploy", "root", "web-1"]),
        // the auditor's deny of root wins over the admin's allow, in either order
        (&["pinned-admin", "auditor"], &[]),
        (&["auditor", "access", "pinned-admin"], &["deploy", "web-1"]),
    ];
    for (names, want) in table {
        assert_eq!(
            set_of.select(names).unwrap().logins(),
            &set(want),
            "{names:?}"
        );
    }
    // empty and null rule sets hold no logins
    let text = "kind: role\nversion: v7\nmetadata: {name: x}\nspec:\n  allow:\n  deny: {}\n";
    let r = &parse_roles("r.yaml", text).unwrap()[0];
    assert!(r.allow_logins().is_empty() && r.deny_logins().is_empty());
}

#[test]
fn login_errors_name_file_line_and_field() {
    let role = |allow: &str| {
        format!(
            "kind: role\nversion: v7\nmetadata: {{name: x}}\nspec:\n  allow:\n    logins: {allow}\n"
        )
    };
    let table = [
        (
            role("['{{internal.logins}}']"),
            r#"roles.yaml:6: spec.allow.logins[0]: login "{{internal.logins}}": templates such as `{{internal.logins}}` are not supported; list the logins by name"#,
        ),
        (
            role("[ok, '{{external.unix_login}}']"),
            r#"roles.yaml:6: spec.allow.logins[1]: login "{{external.unix_login}}": templates such as `{{internal.logins}}` are not supported; list the logins by name"#,
        ),
        (
            role("['*']"),
            r#"roles.yaml:6: spec.allow.logins[0]: login "*": wildcards are not supported; list the logins by name"#,
        ),
        (
            role("root"),
            r#"roles.yaml:6: spec.allow.logins: expected a sequence, found string "root""#,
        ),
        (
            role("[7]"),
            "roles.yaml:6: spec.allow.logins[0]: expected a string, found integer 7",
        ),
        (
            role("[ok, [x]]"),
            "roles.yaml:6: spec.allow.logins[1]: expected a string, found a sequence",
        ),
        (
            role("\n      - ok\n      - 'ma$'"),
            r#"roles.yaml:8: spec.allow.logins[1]: login "ma$": use 1 to 32 bytes: a letter or `_` first, then letters, digits, `_`, `.` or `-`"#,
        ),
        (
            "kind: role\nversion: v7\nmetadata: {name: x}\nspec:\n  deny:\n    logins: ['']\n"
                .to_owned(),
            r#"roles.yaml:6: spec.deny.logins[0]: login "": use 1 to 32 bytes: a letter or `_` first, then letters, digits, `_`, `.` or `-`"#,
        ),
        (
            "kind: role\nversion: v7\nmetadata: {name: x}\nspec:\n  deny: [logins]\n".to_owned(),
            "roles.yaml:5: spec.deny: expected a mapping, found a sequence",
        ),
    ];
    for (text, want) in table {
        assert_eq!(
            parse_roles("roles.yaml", &text).unwrap_err().to_string(),
            want,
            "{text}"
        );
    }
}

#[test]
fn login_names() {
    let long = "a".repeat(32);
    for ok in [
        "a",
        "_",
        "root",
        "Deploy",
        "web-1",
        "svc.app_2",
        "_x-",
        long.as_str(),
    ] {
        check_login(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    let too_long = "a".repeat(33);
    for bad in [
        "",
        "1root",
        "-x",
        ".x",
        "a$",
        "a b",
        "a/b",
        "a:b",
        "ä",
        "a\n",
        "a@b",
        "*",
        "a*",
        "{{internal.logins}}",
        "{{external.x}}",
        "x}}",
        too_long.as_str(),
    ] {
        assert!(
            matches!(check_login(bad), Err(Error::InvalidLogin { .. })),
            "{bad:?}"
        );
    }
    // Half a template is still named as one, and so is a wildcard.
    for half in ["{{x", "x}}", "{{internal.logins}}"] {
        let e = check_login(half).unwrap_err().to_string();
        assert!(e.contains("templates such as"), "{half}: {e}");
    }
    let e = check_login("a*").unwrap_err().to_string();
    assert!(e.contains("wildcards are not supported"), "{e}");
}

#[test]
fn roles_built_in_code_carry_logins() {
    let dev = Role::new("dev", RoleVersion::V7, false)
        .with_logins(["deploy", "deploy", "root"], ["nobody"])
        .unwrap();
    assert_eq!(dev.allow_logins(), &set(&["deploy", "root"]));
    assert_eq!(dev.deny_logins(), &set(&["nobody"]));
    let safe = Role::new("safe", RoleVersion::V7, false)
        .with_logins(Vec::<String>::new(), ["root"])
        .unwrap();
    assert_eq!(allowed_logins(&[&dev, &safe]), set(&["deploy"]));
    assert_eq!(allowed_logins(&[&safe, &dev]), set(&["deploy"]));
    assert_eq!(allowed_logins(&[&dev]), set(&["deploy", "root"]));
    assert_eq!(allowed_logins(&[]), set(&[]));
    // Role::new holds none
    assert!(
        Role::new("x", RoleVersion::V5, true)
            .allow_logins()
            .is_empty()
    );
    let err = Role::new("x", RoleVersion::V7, false)
        .with_logins(["{{internal.logins}}"], Vec::<String>::new())
        .unwrap_err();
    assert!(err.to_string().contains("templates"), "{err}");
    assert!(
        Role::new("x", RoleVersion::V7, false)
            .with_logins(Vec::<String>::new(), ["*"])
            .is_err()
    );
}

#[test]
fn wrong_types_name_file_line_and_field() {
    let text = "kind: role\nversion: v7\nmetadata:\n  name: x\nspec:\n  options:\n    pin_source_ip: \"yes\"\n";
    let err = parse_roles("roles.yaml", text).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"roles.yaml:7: spec.options.pin_source_ip: expected a boolean, found string "yes""#
    );
    let table = [
        // YAML 1.2: plain `yes` is a string, not a boolean
        (
            "kind: role\nversion: v7\nmetadata: {name: x}\nspec: {options: {pin_source_ip: yes}}\n",
            r#"roles.yaml:4: spec.options.pin_source_ip: expected a boolean, found string "yes""#,
        ),
        (
            "kind: role\nversion: v7\nmetadata: {name: x}\nspec:\n  options:\n    pin_source_ip: 1\n",
            "roles.yaml:6: spec.options.pin_source_ip: expected a boolean, found integer 1",
        ),
        (
            "kind: role\nversion: v7\nmetadata: {name: x}\nspec:\n  options: [pin_source_ip]\n",
            "roles.yaml:5: spec.options: expected a mapping, found a sequence",
        ),
        (
            "kind: role\nversion: v7\nmetadata:\n  name: 7\n",
            "roles.yaml:4: metadata.name: expected a string, found integer 7",
        ),
        (
            "kind: role\nversion: v7\nmetadata:\n  labels: {}\n",
            "roles.yaml:4: metadata.name: required field is missing",
        ),
        (
            "kind: role\nversion: v7\nspec: {}\n",
            "roles.yaml:1: metadata: required field is missing",
        ),
        (
            "kind: role\nversion: 7\nmetadata: {name: x}\n",
            "roles.yaml:2: version: expected a string, found integer 7",
        ),
        (
            "- a\n- b\n",
            "roles.yaml:1: (document): expected a mapping, found a sequence",
        ),
    ];
    for (text, want) in table {
        assert_eq!(
            parse_roles("roles.yaml", text).unwrap_err().to_string(),
            want,
            "{text}"
        );
    }
    // the line is counted across documents
    let text = format!(
        "{ROLES}---\nkind: role\nversion: v7\nmetadata: {{name: late}}\nspec:\n  options:\n    pin_source_ip: TRUE\n    x: 1\n---\nkind: role\nversion: v7\nmetadata: {{name: bad}}\nspec:\n  options:\n    pin_source_ip: 'true'\n"
    );
    let err = parse_roles("all.yaml", &text).unwrap_err();
    let line = text.lines().position(|l| l.contains("'true'")).unwrap() + 1;
    assert_eq!(
        err.to_string(),
        format!(
            r#"all.yaml:{line}: spec.options.pin_source_ip: expected a boolean, found string "true""#
        )
    );
}

#[test]
fn other_kinds_and_versions_refused() {
    for (kind, version) in [
        ("role", "v4"),
        ("role", "v8"),
        ("user", "v7"),
        ("Role", "v7"),
        ("network_restrictions", "v4"),
    ] {
        let text = format!("kind: {kind}\nversion: {version}\nmetadata: {{name: x}}\n");
        match parse_roles("r.yaml", &text) {
            Err(Error::Unsupported {
                kind: k,
                version: v,
                line: 1,
                ..
            }) => {
                assert!(k.contains(kind) && v.contains(version));
            }
            other => panic!("{kind} {version}: {other:?}"),
        }
    }
}

#[test]
fn yaml_syntax_and_structure_errors() {
    let table = [
        (
            "kind: role\nversion: v7\nversion: v6\n",
            "r.yaml:3: YAML syntax error: duplicate key \"version\"",
        ),
        ("a: [1, 2\n", "r.yaml:2:"),
        (
            "base: &b {pin_source_ip: true}\nspec:\n  options:\n    <<: *b\n",
            "r.yaml:4: YAML syntax error: merge keys",
        ),
        (
            "? [a]\n: b\n",
            "r.yaml:1: YAML syntax error: mapping keys must be scalars",
        ),
        ("a: *nowhere\n", "r.yaml:1: YAML syntax error"),
    ];
    for (text, want) in table {
        let got = parse_roles("r.yaml", text).unwrap_err().to_string();
        assert!(got.starts_with(want), "{text:?}: {got}");
    }
}

#[test]
fn billion_laughs_is_refused_quickly() {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    match parse_roles("bomb.yaml", &text) {
        Err(Error::Limit { what, .. }) => assert!(what.contains("nodes"), "{what}"),
        other => panic!("expected a limit error, got {other:?}"),
    }
}

#[test]
fn long_string_alias_bomb_is_refused() {
    // Few nodes, but every alias copies a long string: the byte budget stops it.
    let mut text = format!("a: &a \"{}\"\nb: [", "x".repeat(600_000));
    text.push_str(&vec!["*a"; 100_000].join(","));
    text.push_str("]\n");
    assert!(text.len() <= ippin_policy::MAX_YAML_BYTES);
    match parse_roles("bomb.yaml", &text) {
        Err(Error::Limit { what, .. }) => assert!(what.contains("bytes"), "{what}"),
        other => panic!("expected a limit error, got {other:?}"),
    }
}

#[test]
fn size_depth_and_document_limits() {
    let big = "#".repeat(ippin_policy::MAX_YAML_BYTES + 1);
    assert!(matches!(
        parse_roles("big.yaml", &big),
        Err(Error::Limit { .. })
    ));
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert!(matches!(
        parse_roles("deep.yaml", &deep),
        Err(Error::Limit { .. }) | Err(Error::Syntax { .. })
    ));
    let deep_ok_for_parser = format!("{}{}", "[".repeat(100), "]".repeat(100));
    match parse_roles("deep.yaml", &deep_ok_for_parser) {
        Err(Error::Limit { what, .. }) => assert!(what.contains("nesting")),
        other => panic!("{other:?}"),
    }
    let many = "---\nx\n".repeat(ippin_policy::MAX_YAML_DOCUMENTS + 1);
    match parse_roles("many.yaml", &many) {
        Err(Error::Limit { what, .. }) => assert!(what.contains("documents"), "{what}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_input_and_empty_documents() {
    assert_eq!(parse_roles("e.yaml", "").unwrap(), vec![]);
    assert_eq!(
        parse_roles("e.yaml", "# nothing\n---\n---\n").unwrap(),
        vec![]
    );
}

#[test]
fn role_sets() {
    let set = RoleSet::new(parse_roles("roles.yaml", ROLES).unwrap()).unwrap();
    assert_eq!(set.len(), 3);
    assert!(set.get("access").is_some() && set.get("nobody").is_none());

    let table: [(&[&str], bool); 6] = [
        (&[], false),
        (&["access"], false),
        (&["access", "auditor"], false),
        (&["pinned-admin"], true),
        (&["access", "pinned-admin"], true),
        (&["auditor", "pinned-admin", "access"], true),
    ];
    for (names, requires) in table {
        let user = set.select(names).unwrap();
        assert_eq!(user.requires_pin(), requires, "{names:?}");
        assert_eq!(user.names(), names);
    }
    let user = set.select(&["access", "access"]).unwrap();
    assert_eq!(user.names(), ["access"]);
    assert_eq!(
        set.select(&["access", "ghost"]).unwrap_err(),
        Error::UnknownRole {
            name: "ghost".into()
        }
    );

    let mut dup = parse_roles("roles.yaml", ROLES).unwrap();
    dup.push(dup[0].clone());
    assert_eq!(
        RoleSet::new(dup).unwrap_err(),
        Error::DuplicateRole {
            name: "access".into()
        }
    );
}

#[test]
fn role_change_after_issue() {
    // Issued while the user held a pinning role; the role set then changed.
    let before = RoleSet::new(parse_roles("roles.yaml", ROLES).unwrap()).unwrap();
    assert!(before.select(&["pinned-admin"]).unwrap().requires_pin());
    let relaxed = ROLES.replace("pin_source_ip: true", "pin_source_ip: false");
    let after = RoleSet::new(parse_roles("roles.yaml", &relaxed).unwrap()).unwrap();
    let now = after.select(&["pinned-admin"]).unwrap();
    assert!(!now.requires_pin());
    // the pinned certificate is still checked
    let pin = CertPin::Ip("203.0.113.9".parse().unwrap());
    assert!(ippin_policy::check_pin(now.requires_pin(), &pin, &seen("203.0.113.9:1")).is_allow());
    assert!(!ippin_policy::check_pin(now.requires_pin(), &pin, &seen("203.0.113.10:1")).is_allow());
    // and the other way round: an unpinned certificate, roles that now pin
    let tightened = ROLES.replace("pin_source_ip: false", "pin_source_ip: true");
    let after = RoleSet::new(parse_roles("roles.yaml", &tightened).unwrap()).unwrap();
    let now = after.select(&["auditor"]).unwrap();
    let d = ippin_policy::check_pin(now.requires_pin(), &CertPin::None, &seen("203.0.113.9:1"));
    assert_eq!(
        d.denial().map(|d| d.reason.code()),
        Some("pinned_ip_missing")
    );
}

const MAP: &str = "- remote: dev\n  local: [access]\n- remote: admin\n  local: [pinned-admin, access]\n- remote: ops\n  local: missing-role\n";

#[test]
fn role_map_parsing() {
    let map = RoleMap::parse("map.yaml", MAP).unwrap();
    assert_eq!(map.mappings().len(), 3);
    assert_eq!(map.map(&["admin".into()]), ["pinned-admin", "access"]);
    assert_eq!(
        map.map(&["dev".into(), "admin".into()]),
        ["access", "pinned-admin"]
    );
    assert_eq!(map.map(&["stranger".into()]), Vec::<String>::new());
    let wild = RoleMap::parse(
        "map.yaml",
        "- {remote: '*', local: [auditor]}\n- {remote: dev, local: [access]}\n",
    )
    .unwrap();
    assert_eq!(wild.map(&["anything".into()]), ["auditor"]);
    assert_eq!(wild.map(&["dev".into()]), ["auditor", "access"]);
    let table = [
        (
            "- remote: dev\n  local: 3\n",
            "map.yaml:2: [0].local: expected a list of role names, found integer 3",
        ),
        (
            "- remote: dev\n",
            "map.yaml:1: [0].local: required field is missing",
        ),
        (
            "- remote: dev\n  local: [a]\n  extra: 1\n",
            "map.yaml:3: [0].extra: unknown field (expected `remote` and `local`)",
        ),
        (
            "remote: dev\n",
            "map.yaml:1: (document): expected a sequence, found a mapping",
        ),
        (
            "- remote: dev\n  local: [a, [b]]\n",
            "map.yaml:2: [0].local[1]: expected a string, found a sequence",
        ),
    ];
    for (text, want) in table {
        assert_eq!(
            RoleMap::parse("map.yaml", text).unwrap_err().to_string(),
            want
        );
    }
}

#[test]
fn trusted_cluster_table() {
    let local = RoleSet::new(parse_roles("roles.yaml", ROLES).unwrap()).unwrap();
    let map = RoleMap::parse("map.yaml", MAP).unwrap();
    let pin = CertPin::Ip("203.0.113.9".parse().unwrap());
    let here = seen("[::ffff:203.0.113.9]:1");
    let there = seen("198.51.100.1:1");
    let untrusted = ObservedAddr::new("203.0.113.9:1".parse().unwrap(), Provenance::ProxyV1, false);
    let invalid = CertPin::Invalid("bad".into());
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    #[rustfmt::skip]
    let table: Vec<(Vec<String>, &CertPin, &ObservedAddr, Option<&str>)> = vec![
        (s(&["dev"]), &CertPin::None, &here, None),
        (s(&["dev"]), &pin, &here, None),
        (s(&["dev"]), &pin, &there, Some("pinned_ip_mismatch")),
        (s(&["admin"]), &CertPin::None, &here, Some("pinned_ip_missing")),
        (s(&["dev", "admin"]), &CertPin::None, &here, Some("pinned_ip_missing")),
        (s(&["admin"]), &pin, &here, None),
        (s(&["admin"]), &pin, &there, Some("pinned_ip_mismatch")),
        (s(&["admin"]), &pin, &untrusted, Some("untrusted_client_ip")),
        (s(&["admin"]), &invalid, &here, Some("invalid_pin")),
        (s(&["stranger"]), &CertPin::None, &here, Some("role_mapping_failed")),
        (s(&[]), &pin, &here, Some("role_mapping_failed")),
        (s(&["ops"]), &CertPin::None, &here, Some("role_mapping_failed")),
    ];
    for (remote, pin, observed, want) in &table {
        let d = check_pin_remote(&map, &local, remote, pin, observed);
        let got = match &d {
            Decision::Allow => None,
            Decision::Deny(den) => {
                assert!(den.message.ends_with(LOG_IN_AGAIN), "{}", den.message);
                Some(den.reason.code())
            }
            _ => unreachable!(),
        };
        assert_eq!(got, *want, "{remote:?} {pin:?} {observed:?}");
    }
    let d = check_pin_remote(&map, &local, &s(&["admin"]), &CertPin::None, &here);
    let msg = &d.denial().unwrap().message;
    assert!(
        msg.contains("issuing cluster's roles must enable pin_source_ip"),
        "{msg}"
    );
    assert!(
        msg.contains("pinned-admin") && msg.contains("\"admin\""),
        "{msg}"
    );
}

#[test]
fn the_admin_option_is_a_strict_bool() {
    let doc = |v: &str| {
        format!(
            "kind: role\nversion: v7\nmetadata:\n  name: ops\nspec:\n  options:\n    admin: {v}\n"
        )
    };
    assert!(parse_roles("r.yaml", &doc("true")).unwrap()[0].admin);
    assert!(!parse_roles("r.yaml", &doc("false")).unwrap()[0].admin);
    let plain = "kind: role\nversion: v7\nmetadata:\n  name: dev\n";
    assert!(!parse_roles("r.yaml", plain).unwrap()[0].admin);
    assert!(!Role::new("dev", RoleVersion::V7, true).admin);
    // Not a YAML 1.1 boolean, not a string, not a number: refused with the line.
    for bad in ["yes", "\"true\"", "1", "[true]"] {
        let err = parse_roles("r.yaml", &doc(bad)).unwrap_err().to_string();
        assert!(
            err.contains("r.yaml:7") && err.contains("spec.options.admin"),
            "{bad}: {err}"
        );
    }
}

/// A key that is a slip away from one ippin reads, or one written at the wrong level, is
/// refused with its line: a misspelt `pin_source_ip` would leave the role unpinned, a
/// misspelt `deny.logins` would deny nothing. Teleport's other keys are still kept unread.
#[test]
fn a_misspelt_or_misplaced_key_is_refused() {
    let role =
        |spec: &str| format!("kind: role\nversion: v7\nmetadata: {{name: r}}\nspec:\n{spec}");
    for (spec, field) in [
        (
            "  options:\n    pin_source_ips: true\n",
            "spec.options.pin_source_ips",
        ),
        (
            "  options:\n    pin-source-ip: true\n",
            "spec.options.pin-source-ip",
        ),
        (
            "  options:\n    Pin_Source_IP: true\n",
            "spec.options.Pin_Source_IP",
        ),
        (
            "  options:\n    pinsourceip: true\n",
            "spec.options.pinsourceip",
        ),
        (
            "  options:\n    pin_source_ip: true\n    pin_source_ip_prefx: {ipv4: 24}\n",
            "spec.options.pin_source_ip_prefx",
        ),
        ("  option:\n    pin_source_ip: true\n", "spec.option"),
        ("  pin_source_ip: true\n", "spec.pin_source_ip"),
        ("  deny:\n    login: [root]\n", "spec.deny.login"),
        ("  allow:\n    Logins: [deploy]\n", "spec.allow.Logins"),
        ("  options:\n    logins: [root]\n", "spec.options.logins"),
        (
            "  options:\n    pin_source_ip: true\n    pin_source_port: true\n",
            "spec.options.pin_source_port",
        ),
        (
            "  options:\n    ippin_max_renewals: 3\n",
            "spec.options.ippin_max_renewals",
        ),
        (
            "  allow:\n    pin_source_ip: true\n",
            "spec.allow.pin_source_ip",
        ),
        ("  deney:\n    logins: [root]\n", "spec.deney"),
        ("  d\u{435}ny:\n    logins: [root]\n", "spec.d\u{435}ny"),
        (
            "  options:\n    pin_source_ip\u{200b}: true\n",
            "spec.options.pin_source_ip\u{200b}",
        ),
        (
            "  allow:\n    logins\u{2060}: [deploy]\n",
            "spec.allow.logins\u{2060}",
        ),
    ] {
        let text = role(spec);
        let e = parse_roles("r.yaml", &text).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains(field), "{spec:?}: {shown}");
        assert!(
            ["r.yaml:5:", "r.yaml:6:", "r.yaml:7:"]
                .iter()
                .any(|l| shown.starts_with(l)),
            "{shown}"
        );
    }
    // The document's own keys: a misspelt `spec` would drop the whole role's rules.
    for (text, field) in [
        (
            "kind: role\nversion: v7\nmetadata: {name: r}\nSpec:\n  options:\n    pin_source_ip: true\n",
            "Spec",
        ),
        (
            "kind: role\nversion: v7\nmetadata: {name: r}\nsepc:\n  options:\n    pin_source_ip: true\n",
            "sepc",
        ),
        (
            "kind: role\nversion: v7\nmetadata: {name: r}\nsp\u{435}c:\n  options:\n    pin_source_ip: true\n",
            "sp\u{435}c",
        ),
    ] {
        let shown = parse_roles("r.yaml", text).unwrap_err().to_string();
        assert!(shown.contains(&format!("r.yaml:5: {field}:")), "{shown}");
    }
    // An empty key (a bare `?`, or `""`) is refused with a field that says so.
    for text in [
        "?\rkind: role\nversion: v7\nmetadata: {name: r}\n",
        "\"\": 1\nkind: role\nversion: v7\nmetadata: {name: r}\n",
        "kind: role\nversion: v7\nmetadata: {name: r}\nspec:\n  \"\": 1\n",
    ] {
        match parse_roles("r.yaml", text) {
            Err(Error::Field { field, .. }) => assert!(field.contains("\"\""), "{field}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let with_sub_kind = "kind: role\nsub_kind: x\nversion: v7\nmetadata: {name: r}\nspec:\n  options:\n    pin_source_ip: true\n";
    assert!(parse_roles("r.yaml", with_sub_kind).unwrap()[0].pin_source_ip);
    // Teleport's own keys, at their levels, are kept (unread).
    let text = role(
        "  options:\n    pin_source_ip: true\n    max_session_ttl: 8h\n    forward_agent: false\n    cert_format: standard\n  allow:\n    logins: [deploy]\n    node_labels: {'*': '*'}\n    rules: []\n    windows_desktop_logins: [a]\n  deny:\n    logins: [root]\n    host_groups: [x]\n",
    );
    let roles = parse_roles("r.yaml", &text).unwrap();
    assert!(roles[0].pin_source_ip);
}
