#![no_main]
//! The source-address parser: no panic; what parses, formats and parses
//! back to the same list; matching never panics.

use ippin_cert::ssh::SourceAddress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(list) = SourceAddress::parse(text) {
        let again = SourceAddress::parse(&list.to_string()).expect("formatted list parses");
        assert_eq!(again, list);
        for net in list.nets() {
            assert!(list.matches(net.addr()));
        }
    }
});
