//! Role YAML and role maps: no panic, bounded work; parsed roles form role sets.
#![no_main]

use ippin_policy::{RoleMap, RoleSet, parse_roles};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(roles) = parse_roles("fuzz.yaml", text) {
        let names: Vec<String> = roles.iter().map(|r| r.name.clone()).collect();
        let any_pin = roles.iter().any(|r| r.pin_source_ip);
        assert!(names.iter().all(|n| !n.is_empty()));
        if let Ok(set) = RoleSet::new(roles) {
            assert_eq!(set.select(&names).unwrap().requires_pin(), any_pin);
        }
    }
    if let Ok(map) = RoleMap::parse("fuzz.yaml", text) {
        let _ = map.map(&["x".to_string()]);
    }
});
