//! Role YAML and role maps: no panic, bounded work; parsed roles form role sets; every login
//! read passes the login rule, and a user's logins are the allows minus the denies.
#![no_main]

use ippin_policy::{RoleMap, RoleSet, allowed_logins, check_login, parse_roles};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(roles) = parse_roles("fuzz.yaml", text) {
        let names: Vec<String> = roles.iter().map(|r| r.name.clone()).collect();
        let any_pin = roles.iter().any(|r| r.pin_source_ip);
        assert!(names.iter().all(|n| !n.is_empty()));
        for role in &roles {
            for login in role.allow_logins().iter().chain(role.deny_logins()) {
                assert!(check_login(login).is_ok(), "{login:?}");
            }
        }
        let refs: Vec<_> = roles.iter().collect();
        let logins = allowed_logins(&refs);
        for login in &logins {
            assert!(roles.iter().any(|r| r.allow_logins().contains(login)));
            assert!(!roles.iter().any(|r| r.deny_logins().contains(login)));
        }
        if let Ok(set) = RoleSet::new(roles) {
            let user = set.select(&names).unwrap();
            assert_eq!(user.requires_pin(), any_pin);
            assert_eq!(user.logins(), &logins);
        }
    }
    if let Ok(map) = RoleMap::parse("fuzz.yaml", text) {
        let _ = map.map(&["x".to_string()]);
    }
});
