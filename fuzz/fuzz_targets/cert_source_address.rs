#![no_main]
//! The source-address parser: no panic; what parses, formats and parses
//! back to the same list; every accepted entry is a real restriction
//! (prefix length above 0, not IPv4-mapped, no host bits), the input had
//! no white space, and matching never panics.

use ippin_cert::ssh::SourceAddress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(list) = SourceAddress::parse(text) {
        assert!(!text.chars().any(char::is_whitespace));
        assert_eq!(list.nets().len(), text.split(',').count());
        let again = SourceAddress::parse(&list.to_string()).expect("formatted list parses");
        assert_eq!(again, list);
        for net in list.nets() {
            assert!(net.prefix_len() > 0);
            assert_eq!(net.trunc(), *net);
            if let std::net::IpAddr::V6(v6) = net.addr() {
                assert!(v6.to_ipv4_mapped().is_none());
            }
            assert!(list.matches(net.addr()));
        }
    }
});
