use super::*;

const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";

fn role(name: &str) -> String {
    format!(
        "kind: role\nversion: v7\nmetadata:\n  name: {name}\nspec:\n  options:\n    pin_source_ip: true\n  allow:\n    logins: [deploy]\n"
    )
}

fn user(name: &str) -> String {
    format!(
        "kind: user\nversion: v1\nmetadata:\n  name: {name}\nspec:\n  password_hash: \"{HASH}\"\n  roles: [dev, ops]\n"
    )
}

const NETPOLICY: &str = "kind: network_restrictions\nversion: v4\nmetadata:\n  name: network-restrictions\nspec:\n  allow:\n  - cidr: 10.0.0.0/8\n  deny:\n  - cidr: 10.1.2.3\n";

fn refusal(text: &str) -> DocError {
    match parse_documents("f.yaml", text) {
        Err(e) => e,
        Ok(r) => panic!("accepted: {r:?}"),
    }
}

/// (line, field, code) of a refusal.
fn located(text: &str) -> (usize, String, &'static str) {
    let e = refusal(text);
    (e.line(), e.field().to_owned(), e.code())
}

#[test]
fn kinds_parse_strictly() {
    for (text, kind) in [
        ("role", Kind::Role),
        ("roles", Kind::Role),
        ("user", Kind::User),
        ("users", Kind::User),
        ("network_restrictions", Kind::NetworkRestrictions),
    ] {
        assert_eq!(Kind::parse(text), Some(kind), "{text}");
    }
    for bad in [
        "",
        "Role",
        "ROLE",
        " role",
        "role ",
        "network-restrictions",
        "netpolicy",
        "lockouts",
    ] {
        assert_eq!(Kind::parse(bad), None, "{bad:?}");
    }
    assert_eq!(Kind::Role.as_str(), "role");
    assert_eq!(
        Kind::NetworkRestrictions.to_string(),
        "network_restrictions"
    );
}

#[test]
fn keys_and_their_inverse() {
    assert_eq!(Kind::Role.key("dev").unwrap(), "roles/dev");
    assert_eq!(Kind::User.key("alice").unwrap(), "users/alice");
    assert_eq!(
        Kind::NetworkRestrictions
            .key("network_restrictions")
            .unwrap(),
        "network_restrictions"
    );
    assert!(Kind::NetworkRestrictions.key("other").is_err());
    for bad in ["", "a/b", "-x", "é", "a b", &"x".repeat(65)] {
        assert!(Kind::Role.key(bad).is_err(), "{bad:?}");
        assert!(Kind::User.check_name(bad).is_err(), "{bad:?}");
    }
    for kind in Kind::ALL {
        let name = if kind == Kind::NetworkRestrictions {
            NETWORK_RESTRICTIONS_NAME
        } else {
            "a.b_c-1"
        };
        let key = kind.key(name).unwrap();
        assert!(key.starts_with(kind.key_prefix()));
        assert_eq!(Kind::from_key(&key), Some((kind, name.to_owned())));
    }
    for other in [
        "",
        "roles/",
        "roles/a/b",
        "roles/-x",
        "users/a b",
        "role/dev",
        "lockouts/alice",
        "failures/alice/n1",
        "network_restrictions/x",
        "network_restrictionsx",
        "/roles/dev",
        "roles//dev",
    ] {
        assert_eq!(Kind::from_key(other), None, "{other:?}");
    }
}

#[test]
fn several_documents_become_resources() {
    let text = format!(
        "# comment first\n{}---\n{}--- # the restrictions\n{NETPOLICY}",
        role("dev"),
        user("alice")
    );
    let found = parse_documents("f.yaml", &text).unwrap();
    let ids: Vec<(Kind, &str, String)> = found
        .iter()
        .map(|r| (r.kind(), r.name(), r.key()))
        .collect();
    assert_eq!(
        ids,
        [
            (Kind::Role, "dev", "roles/dev".to_owned()),
            (Kind::User, "alice", "users/alice".to_owned()),
            (
                Kind::NetworkRestrictions,
                "network_restrictions",
                "network_restrictions".to_owned()
            ),
        ]
    );
    // Stored as written, the marker lines left out.
    assert_eq!(
        found[0].document(),
        format!("# comment first\n{}", role("dev"))
    );
    assert_eq!(found[1].document(), user("alice"));
    assert_eq!(found[2].document(), NETPOLICY);
    // Empty documents and a trailing `...` are fine; a document without a final line
    // break gets one.
    let text = format!(
        "---\n---\n# nothing\n---\n{}...\n---\n{}",
        role("a"),
        role("b")
    );
    let found = parse_documents("f.yaml", text.trim_end()).unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].document(), format!("{}...\n", role("a")));
    assert_eq!(found[1].document(), role("b"));
    // A document after `...` without a `---`.
    let text = format!("{}...\n{}", role("a"), role("b"));
    assert_eq!(parse_documents("f.yaml", &text).unwrap().len(), 2);
    // CRLF line breaks.
    let text = format!("{}---\r\n{}", role("a"), role("b")).replace('\n', "\r\n");
    let text = text.replace("\r\r\n", "\r\n");
    assert_eq!(parse_documents("f.yaml", &text).unwrap().len(), 2);
}

#[test]
fn errors_name_the_line_in_the_whole_text_and_the_field() {
    // Role (lines 1-9), user (11-17), restrictions (19-27).
    let good = format!("{}---\n{}---\n{NETPOLICY}", role("dev"), user("alice"));
    assert!(parse_documents("f.yaml", &good).is_ok());
    let cases: [(&str, &str, usize, &str); 9] = [
        (
            "pin_source_ip: true",
            "pin_source_ip: yes",
            7,
            "spec.options.pin_source_ip",
        ),
        (
            "logins: [deploy]",
            "logins: [\"{{internal.logins}}\"]",
            9,
            "spec.allow.logins[0]",
        ),
        (
            "roles: [dev, ops]",
            "roles: [dev, \"o/ps\"]",
            17,
            "spec.roles[1]",
        ),
        (
            "  roles: [dev, ops]",
            "  roles: [dev, ops]\n  shell: /bin/sh",
            18,
            "spec",
        ),
        (
            "cidr: 10.1.2.3",
            "cidr: 10.1.2.3/8",
            27,
            "spec.deny[0].cidr",
        ),
        (
            "- cidr: 10.0.0.0/8",
            "- cidr: 10.0.0.0/8\n    port: 22",
            26,
            "spec.allow[0].port",
        ),
        ("version: v1", "version: v2", 12, "version"),
        ("version: v7", "version: v9", 2, "version"),
        ("name: alice", "name: \"al ice\"", 14, "metadata.name"),
    ];
    for (from, to, line, field) in cases {
        let text = good.replacen(from, to, 1);
        let e = refusal(&text);
        assert_eq!((e.line(), e.field()), (line, field), "{from} -> {to}: {e}");
        assert_eq!(e.code(), "bad_document");
        assert!(
            e.to_string()
                .starts_with(&format!("f.yaml:{line}: {field}: ")),
            "{e}"
        );
    }
    // The hash: not argon2id (the configuration's check), or not a PHC string.
    for bad in ["$2b$10$abc", "$argon2id$x", "plain"] {
        let text = good.replace(HASH, bad);
        assert_eq!(
            located(&text),
            (16, "spec.password_hash".into(), "bad_document"),
            "{bad}"
        );
    }
    // A YAML syntax error in the third document.
    let text = good.replace("  - cidr: 10.1.2.3", "  - cidr: [10.1.2.3");
    let e = refusal(&text);
    assert_eq!(e.field(), "(yaml)", "{e}");
    assert!((27..=28).contains(&e.line()), "{e}");
}

#[test]
fn kinds_missing_unknown_or_wrong_are_refused() {
    let text = format!("{}---\nversion: v1\nmetadata: {{name: x}}\n", role("a"));
    assert_eq!(located(&text), (11, "kind".into(), "bad_document"));
    let text = format!("{}---\nkind: node\nversion: v1\n", role("a"));
    let e = refusal(&text);
    assert_eq!((e.line(), e.code()), (11, "unknown_kind"), "{e}");
    assert!(matches!(&e, DocError::UnknownKind { kind, .. } if kind == "node"));
    assert!(
        e.to_string()
            .starts_with("f.yaml:11: kind: unknown kind `node`"),
        "{e}"
    );
    // The plural is a name for `get`, not a document's kind.
    assert_eq!(located("kind: roles\n").2, "unknown_kind");
    assert_eq!(
        located("kind: [role]\n"),
        (1, "kind".into(), "bad_document")
    );
    assert_eq!(
        located("- kind: role\n"),
        (1, "(document)".into(), "bad_document")
    );
    assert_eq!(
        located("just text\n"),
        (1, "(document)".into(), "bad_document")
    );
}

#[test]
fn a_resource_twice_in_one_text_is_refused() {
    let text = format!("{}---\n{}---\n{}", role("a"), role("b"), role("a"));
    let e = refusal(&text);
    assert_eq!((e.line(), e.field()), (24, "metadata.name"), "{e}");
    assert!(e.to_string().contains("role `a` is also on line 4"), "{e}");
    // The same name in two kinds is two resources.
    let text = format!("{}---\n{}", role("a"), user("a"));
    assert_eq!(parse_documents("f.yaml", &text).unwrap().len(), 2);
    let text = format!("{NETPOLICY}---\n{NETPOLICY}");
    assert_eq!(refusal(&text).line(), 11);
}

#[test]
fn what_the_loaders_refuse_is_refused() {
    // Aliases (the configuration's scanner; the roles parser alone would expand them).
    let text = format!(
        "{}---\nkind: role\nversion: v7\nmetadata: {{name: b}}\nspec:\n  allow: &x {{logins: [a]}}\n  deny: *x\n",
        role("a")
    );
    let e = refusal(&text);
    assert_eq!(e.line(), 16, "{e}");
    assert!(e.to_string().contains("aliases"), "{e}");
    // Deep nesting, however deep, at once and located.
    let n = 200_000;
    let text = format!(
        "{}---\nkind: role\nversion: v7\nmetadata: {{name: b}}\nspec: {}{}\n",
        role("a"),
        "[".repeat(n),
        "]".repeat(n)
    );
    let e = refusal(&text);
    assert_eq!(e.line(), 14, "{e}");
    // What serde_yaml_ng (libyaml) reads past a comment that the scanner does not: after
    // NEL or a line or paragraph separator. Aliases there (a bomb, in a value from etcd or
    // the admin API) and a role key that the roles parser would take for a comment.
    for c in ['\u{85}', '\u{2028}', '\u{2029}'] {
        let text =
            format!("kind: network_restrictions\nversion: v4\nx: &a [0, 0]\n#{c}y: [*a, *a]\n");
        let e = refusal(&text);
        assert_eq!(e.line(), 4, "{e}");
        assert!(e.to_string().contains("YAML readers disagree"), "{e}");
        let text = role("a").replace(
            "    pin_source_ip: true\n",
            &format!("    # pinned{c}    pin_source_ip: true\n"),
        );
        assert!(refusal(&text).to_string().contains("YAML readers disagree"));
    }
    // The same on a document separator's comment, which is cut off before the documents
    // are scanned: refused all the same.
    for c in ['\u{85}', '\u{2028}', '\u{2029}'] {
        let text = format!(
            "--- # note{c}spec: {{options: {{pin_source_ip: true}}}}\nkind: role\nversion: v7\nmetadata: {{name: a}}\n"
        );
        let e = refusal(&text);
        assert_eq!(e.line(), 1, "{e}");
        assert!(e.to_string().contains("YAML readers disagree"), "{e}");
    }
    // A key written twice.
    let text = role("a").replace("version: v7\n", "version: v7\nversion: v6\n");
    assert_eq!(refusal(&text).line(), 3);
    // Role names that cannot be keys (the roles parser accepts any non-empty name).
    let e = refusal(&role("a/b"));
    assert_eq!((e.line(), e.field()), (4, "metadata.name"), "{e}");
    // Unknown fields of a user, anywhere.
    let text = user("a").replace("metadata:\n", "metadata:\n  labels: {}\n");
    assert_eq!(located(&text).0, 4);
    let text = format!("{}extra: 1\n", user("a"));
    assert_eq!(located(&text).0, 8);
    // A user without a hash.
    let text = user("a").replace(&format!("  password_hash: \"{HASH}\"\n"), "");
    assert!(refusal(&text).to_string().contains("password_hash"));
}

#[test]
fn limits() {
    let mut text = String::new();
    for i in 0..MAX_DOCUMENTS {
        text.push_str(&format!("---\n{}", role(&format!("r{i}"))));
    }
    assert_eq!(
        parse_documents("f.yaml", &text).unwrap().len(),
        MAX_DOCUMENTS
    );
    text.push_str(&format!("---\n{}", role("one-more")));
    let e = refusal(&text);
    assert!(e.to_string().contains("more than 256 documents"), "{e}");
    assert_eq!(e.line(), MAX_DOCUMENTS * 10 + 5);
    // Many empty documents: bounded too.
    let e = refusal(&"---\n".repeat(5000));
    assert!(e.to_string().contains("empty ones included"), "{e}");
    // Nothing at all.
    for empty in ["", "\n", "# only a comment\n", "---\n", "---\n...\n"] {
        assert_eq!(
            located(empty),
            (1, "(text)".into(), "bad_document"),
            "{empty:?}"
        );
    }
    // Too large: refused before reading.
    let big = format!("{}#{}\n", role("a"), "x".repeat(MAX_TEXT_BYTES));
    let e = refusal(&big);
    assert_eq!(e.code(), "body_too_large");
    assert!(matches!(e, DocError::TooLarge { .. }));
}

#[test]
fn rendering_never_shows_the_hash() {
    let text = format!("{}---\n# a comment\n{}", user("alice"), role("dev"));
    let found = parse_documents("f.yaml", &text).unwrap();
    let alice = &found[0];
    assert!(alice.document().contains(HASH));
    let yaml = alice.render(Format::Yaml).unwrap();
    assert!(!yaml.contains("argon2"), "{yaml}");
    assert!(!yaml.contains("password_hash"), "{yaml}");
    assert_eq!(
        yaml,
        "kind: user\nversion: v1\nmetadata:\n  name: alice\nspec:\n  roles:\n  - dev\n  - ops\n"
    );
    let json = alice.render(Format::Json).unwrap();
    assert!(
        !json.contains("argon2") && !json.contains("password_hash"),
        "{json}"
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["metadata"]["name"], "alice");
    assert_eq!(v["spec"]["roles"], serde_json::json!(["dev", "ops"]));
    // Roles: as written (comments kept); JSON with the YAML types.
    let dev = &found[1];
    assert_eq!(
        dev.render(Format::Yaml).unwrap(),
        format!("# a comment\n{}", role("dev"))
    );
    let v: serde_json::Value = serde_json::from_str(&dev.render(Format::Json).unwrap()).unwrap();
    assert_eq!(v["spec"]["options"]["pin_source_ip"], true);
    assert_eq!(v["version"], "v7");
    assert_eq!(v["spec"]["allow"]["logins"], serde_json::json!(["deploy"]));
}

#[test]
fn stored_values_are_checked_against_their_key() {
    let r = parse_stored("roles/dev", &role("dev")).unwrap();
    assert_eq!((r.kind(), r.name()), (Kind::Role, "dev"));
    let r = parse_stored("network_restrictions", NETPOLICY).unwrap();
    assert_eq!(r.kind(), Kind::NetworkRestrictions);
    for (key, value) in [
        ("roles/ops", role("dev")),
        ("users/dev", role("dev")),
        ("roles/dev", format!("{}---\n{}", role("dev"), role("b"))),
        ("lockouts/dev", role("dev")),
    ] {
        let e = parse_stored(key, &value).unwrap_err();
        assert_eq!(e.field(), "(key)", "{key}: {e}");
        assert!(e.to_string().starts_with(key), "{e}");
    }
    // The value's own errors, named by the key.
    let e = parse_stored("roles/dev", &role("dev").replace("true", "1")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("roles/dev:7: spec.options.pin_source_ip: "),
        "{e}"
    );
}

#[test]
fn yaml_to_json_conversion() {
    let v = document_to_json(
        "d",
        "a: 1\nb: [x, 2.5, null, true]\n3: .nan\n? null\n: !t y\n",
    )
    .unwrap();
    assert_eq!(
        v,
        serde_json::json!({"a": 1, "b": ["x", 2.5, null, true], "3": ".nan", "null": "y"})
    );
    let e = document_to_json("d", "? [a]\n: 1\n").unwrap_err();
    assert_eq!(e.field(), "(document)", "{e}");
    let e = document_to_json("d", "a: &x 1\nb: *x\n").unwrap_err();
    assert!(e.to_string().contains("aliases"), "{e}");
    assert!(document_to_json("d", "a: [1\n").is_err());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9._-]{0,12}"
    }

    /// A valid document of a random kind, as text.
    fn document() -> impl Strategy<Value = String> {
        prop_oneof![
            (name(), any::<bool>(), proptest::collection::vec("[a-z_][a-z0-9]{0,6}", 0..3))
                .prop_map(|(n, pin, logins)| format!(
                    "kind: role\nversion: v6\nmetadata:\n  name: {n}\nspec:\n  options:\n    pin_source_ip: {pin}\n  deny:\n    logins: [{}]\n",
                    logins.join(", ")
                )),
            (name(), proptest::collection::vec(name(), 0..3)).prop_map(|(n, roles)| format!(
                "kind: user\nversion: v1\nmetadata: {{name: \"{n}\"}}\nspec:\n  password_hash: \"{HASH}\"\n  roles:\n{}",
                roles.iter().map(|r| format!("  - \"{r}\"\n")).collect::<String>()
            )),
            (0u8..=255, 8u8..=32).prop_map(|(a, p)| format!(
                "kind: network_restrictions\nversion: v4\nspec:\n  deny:\n    - cidr: {}/{p}\n",
                ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(a, 0, 0, 0), p).unwrap().trunc().network()
            )),
        ]
    }

    /// Several valid documents with distinct (kind, name), joined by markers in their
    /// various forms.
    fn texts() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(document(), 1..6),
            proptest::collection::vec(0usize..4, 6),
        )
            .prop_map(|(docs, seps)| {
                let mut out = String::new();
                let mut seen = std::collections::HashSet::new();
                for (i, d) in docs.iter().enumerate() {
                    let id = d.lines().take(4).collect::<Vec<_>>().join("|");
                    let id = if d.starts_with("kind: network") {
                        "nr".to_owned()
                    } else {
                        id
                    };
                    if !seen.insert(id) {
                        continue;
                    }
                    out.push_str(match seps[i] {
                        0 => "---\n",
                        1 => "--- # next\n",
                        2 => "\n---\n\n",
                        _ => "---\n# comment\n",
                    });
                    out.push_str(d);
                }
                out
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any text is resources or an error, never a panic; an error's line is one of
        /// the text's (counted as YAML 1.1 counts them: NEL, LS and PS break lines too), or
        /// the one after the last for an error at the end of the input.
        #[test]
        fn never_panics(text in "\\PC{0,400}") {
            if let Err(e) = parse_documents("f.yaml", &text) {
                let breaks = text
                    .chars()
                    .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
                    .count();
                prop_assert!(e.line() <= breaks + 2, "{}", e);
            }
        }

        /// Small changes of a valid text: no panic either.
        #[test]
        fn mutations_never_panic(text in texts(), at in any::<prop::sample::Index>(), byte in 0x20u8..0x7f) {
            let mut bytes = text.into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            let text = String::from_utf8(bytes).unwrap();
            if let Ok(found) = parse_documents("f.yaml", &text) {
                for r in found {
                    prop_assert!(r.kind().check_name(r.name()).is_ok());
                    let _ = r.render(Format::Json);
                }
            }
        }

        /// A parsed resource's document parses back to the same resource, and its key
        /// gives back its kind and name.
        #[test]
        fn documents_parse_back(text in texts()) {
            let found = parse_documents("f.yaml", &text).unwrap();
            prop_assert!(!found.is_empty());
            for r in &found {
                let again = parse_documents(&r.key(), r.document()).unwrap();
                prop_assert_eq!(&again, &vec![r.clone()]);
                prop_assert_eq!(Kind::from_key(&r.key()), Some((r.kind(), r.name().to_owned())));
                // What `get` shows parses as YAML and as JSON, without the hash.
                for f in [Format::Yaml, Format::Json] {
                    let shown = r.render(f).unwrap();
                    prop_assert!(!shown.contains("argon2"), "{}", shown);
                }
            }
        }

        /// A bad value put on any line of a valid text is refused on that line, naming
        /// that field.
        #[test]
        fn error_lines_point_at_the_field(text in texts(), pick in any::<prop::sample::Index>()) {
            let lines: Vec<&str> = text.lines().collect();
            // The lines holding a value this test knows how to spoil.
            let spoilable: Vec<(usize, String, &str)> = lines
                .iter()
                .enumerate()
                .filter_map(|(i, l)| {
                    let t = l.trim_start();
                    if t.starts_with("pin_source_ip:") {
                        Some((i, l.replacen("true", "maybe", 1).replacen("false", "maybe", 1), "spec.options.pin_source_ip"))
                    } else if t.starts_with("- cidr:") {
                        Some((i, l.replacen("/", "/0", 1), "spec.deny[0].cidr"))
                    } else if t.starts_with("password_hash:") {
                        Some((i, l.replacen("argon2id", "argon2i", 1), "spec.password_hash"))
                    } else if t.starts_with("version: v1") {
                        Some((i, l.replacen("v1", "v7", 1), "version"))
                    } else if t.starts_with("name: ") {
                        Some((i, format!("{l}/x"), "metadata.name"))
                    } else {
                        None
                    }
                })
                .collect();
            prop_assume!(!spoilable.is_empty());
            let (i, new_line, field) = &spoilable[pick.index(spoilable.len())];
            let mut spoiled: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
            spoiled[*i] = new_line.clone();
            let text = spoiled.join("\n") + "\n";
            let e = parse_documents("f.yaml", &text).unwrap_err();
            prop_assert_eq!(e.line(), i + 1, "{}\n{}", e, text);
            prop_assert_eq!(e.field(), *field, "{}", e);
        }
    }
}

#[test]
fn a_user_hash_asking_for_too_much_memory_or_time_is_refused() {
    let doc = |hash: &str| {
        format!(
            "kind: user\nversion: v1\nmetadata:\n  name: eve\nspec:\n  password_hash: \"{hash}\"\n  roles: [dev]\n"
        )
    };
    assert!(parse_documents("u.yaml", &doc(HASH)).is_ok());
    for (from, to) in [("m=19456", "m=4194304"), ("t=2", "t=1000"), ("p=1", "p=64")] {
        let err = parse_documents("u.yaml", &doc(&HASH.replace(from, to))).unwrap_err();
        assert_eq!(err.field(), "spec.password_hash", "{to}: {err}");
        assert_eq!(err.line(), 6, "{to}: {err}");
    }
}
