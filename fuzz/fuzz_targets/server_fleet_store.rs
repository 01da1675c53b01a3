//! What a node makes of its fleet store: arbitrary keys and values (as another etcd client
//! could write them) applied to a node's mirror, in any order, with deletes. No panic, and
//! the mirror's rules hold: a value is kept only if it decodes, a refused value leaves the
//! previous one, the network restrictions are never removed by a delete.
#![no_main]

use ippin::fleet::store::{Key, Mirror, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut m = Mirror::default();
    let mut had_restrictions = false;
    // Records: one byte key length, the key, two bytes value length (0xffff: a delete), the value.
    let mut rest = data;
    let mut rev = 1i64;
    while let Some((&klen, r)) = rest.split_first() {
        let klen = usize::from(klen) % 48;
        if r.len() < klen + 2 {
            break;
        }
        let (key, r) = r.split_at(klen);
        let vlen = usize::from(u16::from_be_bytes([r[0], r[1]]));
        let r = &r[2..];
        let (value, r) = if vlen == 0xffff {
            (None, r)
        } else {
            let vlen = vlen.min(r.len());
            let (v, r) = r.split_at(vlen);
            (Some(v), r)
        };
        rest = r;
        rev += 1;
        let Ok(key) = std::str::from_utf8(key) else {
            continue;
        };
        let before = m.restrictions().map(<[u8]>::to_vec);
        let result = m.apply(key, value, rev, key);
        match (Key::parse(key), value) {
            (None, _) => assert!(result.is_ok()),
            (Some(k), Some(v)) => {
                assert_eq!(result.is_ok(), decode(&k, key, v).is_ok());
                if result.is_err() && k == Key::Restrictions {
                    assert_eq!(m.restrictions().map(<[u8]>::to_vec), before);
                }
            }
            (Some(Key::Restrictions), None) if had_restrictions => {
                assert!(result.is_err());
                assert_eq!(m.restrictions().map(<[u8]>::to_vec), before);
            }
            (Some(_), None) => assert!(result.is_ok()),
        }
        had_restrictions = m.restrictions().is_some();
    }
    let d = m.directory();
    let _ = d.user_count();
    let _ = m.lockouts();
    let _ = m.failed_users();
});
