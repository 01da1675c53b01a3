//! verify ∘ sign: what a front signs for a link at time t, the inner
//! accepts on that link within the window, once; any tampered byte is
//! refused (and leaves no replay state behind).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ippin_propagation::{Link, Reason, SecretKey, address_block_for};
use proptest::prelude::*;

use crate::{AUD, FROM, UNTIL, fixture, verifier};

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

/// The canonical form the block carries (IPv4-mapped → IPv4).
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn verify_accepts_what_was_signed_once_and_refuses_any_tampering(
        client in addr(),
        reached in addr(),
        front in addr(),
        inner_addr in addr(),
        t in FROM + 60..UNTIL - 3600,
        delay in 0u64..=30,
        nonce in any::<[u8; 16]>(),
        inner_secret in any::<[u8; 32]>(),
        ephemeral in any::<[u8; 32]>(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let inner = SecretKey::from_bytes(inner_secret);
        let eph = SecretKey::from_bytes(ephemeral);
        let signer = &fixture().1;
        // A random secret key gives a key of small order with negligible
        // probability; the grant refuses it rather than agree on zeros.
        let grant = signer.grant(&inner.public_key(), AUD, t, t + 600, &eph).unwrap();
        let link = Link { front, inner: inner_addr };
        let value = grant.signed_block(client, reached, link, t, nonce).unwrap();
        let sent = address_block_for(client, reached);
        let v = verifier(&inner);

        // Any one byte of the block or of the header's addresses changed: refused.
        let mut bad_value = value.clone();
        let i = at.index(bad_value.len());
        bad_value[i] ^= flip;
        prop_assert!(v.verify_block(&sent, &bad_value, link, t + delay).is_err());
        let mut bad_sent = sent.clone();
        let j = at.index(bad_sent.len());
        bad_sent[j] ^= flip;
        prop_assert!(v.verify_block(&bad_sent, &value, link, t + delay).is_err());

        // The genuine one: accepted, with the client and destination signed.
        let ok = v.verify_block(&sent, &value, link, t + delay).unwrap();
        prop_assert_eq!(ok.client(), canonical(client));
        prop_assert_eq!(ok.destination(), canonical(reached));
        // Once.
        prop_assert_eq!(
            v.verify_block(&sent, &value, link, t + delay).unwrap_err().reason,
            Reason::Replayed
        );
        // Past the window, or on another link: refused.
        let w = verifier(&inner);
        prop_assert_eq!(
            w.verify_block(&sent, &value, link, t + 31).unwrap_err().reason,
            Reason::Stale
        );
        let elsewhere = Link { front: SocketAddr::new(front.ip(), front.port().wrapping_add(1)), ..link };
        prop_assert_eq!(
            w.verify_block(&sent, &value, elsewhere, t).unwrap_err().reason,
            Reason::ConnectionMismatch
        );
    }
}

#[test]
fn another_inner_key_or_audience_is_refused() {
    let inner = SecretKey::from_bytes([0x11; 32]);
    let eph = SecretKey::from_bytes([0x22; 32]);
    let t = FROM + 1000;
    let grant = fixture()
        .1
        .grant(&inner.public_key(), AUD, t, t + 600, &eph)
        .unwrap();
    let link = Link {
        front: "10.0.0.5:40000".parse().unwrap(),
        inner: "10.0.0.9:4443".parse().unwrap(),
    };
    let client = "192.0.2.7:5000".parse().unwrap();
    let reached = "198.51.100.1:443".parse().unwrap();
    let value = grant
        .signed_block(client, reached, link, t, [9; 16])
        .unwrap();
    let sent = address_block_for(client, reached);
    let other = verifier(&SecretKey::from_bytes([0x33; 32]));
    assert_eq!(
        other
            .verify_block(&sent, &value, link, t)
            .unwrap_err()
            .reason,
        Reason::GrantWrongKey
    );
    let anchor = ippin_propagation::TrustAnchor::from_der(&fixture().0).unwrap();
    let elsewhere = ippin_propagation::Verifier::new(anchor, inner.clone(), "inner-ssh", 30, 64);
    assert_eq!(
        elsewhere
            .verify_block(&sent, &value, link, t)
            .unwrap_err()
            .reason,
        Reason::WrongAudience
    );
    assert!(
        verifier(&inner)
            .verify_block(&sent, &value, link, t)
            .is_ok()
    );
}
