//! The verifier's decision table and the header-sequence rules, on
//! certificates issued by real CAs.

use std::net::SocketAddr;

use ippin_cert::getrandom::SysRng;
use ippin_cert::rand_core::UnwrapErr;
use ippin_cert::x509::{ClientCertRequest, X509Ca};
use ippin_policy::Provenance;
use ippin_proxy_protocol as pp;

use super::sign::ed25519_spki_der;
use super::*;

const NOW: u64 = 1_700_000_000;
const AUD: &str = "inner-tls";

struct Fx {
    ca: X509Ca,
    signer: Signer,
}

fn rng() -> UnwrapErr<SysRng> {
    UnwrapErr(SysRng)
}

fn ca() -> X509Ca {
    X509Ca::generate_p256("cluster CA", NOW - 3600, NOW + 86_400, &mut rng()).unwrap()
}

fn fx() -> Fx {
    let ca = ca();
    let id = issue_proxy_identity(&ca, "front", NOW - 60, NOW + 3600, 9, &mut rng()).unwrap();
    let signer = Signer::from_pem(&id.cert_pem, &id.key_pem).unwrap();
    Fx { ca, signer }
}

/// A signer whose certificate `ca` issued with this CN and these roles.
fn signer_with(ca: &X509Ca, cn: &str, roles: &[&str], nb: u64, na: u64) -> Signer {
    let key = ed25519_dalek::SigningKey::generate(&mut rng());
    let mut req = ClientCertRequest::builder(cn, ed25519_spki_der(key.verifying_key().as_bytes()))
        .validity(nb, na)
        .serial(5);
    for r in roles {
        req = req.role(*r);
    }
    let der = ca.issue_client(&req.build().unwrap(), &mut rng()).unwrap();
    Signer::new(key, der).unwrap()
}

fn verifier(ca: &X509Ca) -> Verifier {
    Verifier::new(TrustAnchor::from_der(ca.cert_der()).unwrap(), AUD, 30, 1024)
}

fn client() -> SocketAddr {
    "127.0.0.1:40001".parse().unwrap()
}

fn dst() -> SocketAddr {
    "127.0.0.1:4000".parse().unwrap()
}

fn signed_bytes(s: &Signer, audience: &str, ts: u64, nonce: u8) -> Vec<u8> {
    s.header(client(), dst(), audience, ts, [nonce; 16])
        .unwrap()
}

fn verify_bytes(v: &Verifier, bytes: &[u8], now: u64) -> Result<Verified, Rejection> {
    let h = pp::parse_exact(bytes).unwrap();
    v.verify(&h, now)
}

fn reason(r: Result<Verified, Rejection>) -> Reason {
    r.unwrap_err().reason
}

#[test]
fn a_signed_header_verifies_to_its_client() {
    let f = fx();
    let v = verifier(&f.ca);
    let ok = verify_bytes(&v, &signed_bytes(&f.signer, AUD, NOW, 1), NOW + 5).unwrap();
    assert_eq!(ok.client, client());
    assert_eq!(ok.destination, dst());
    assert_eq!(v.replay_len(), 1);
}

#[test]
fn ipv6_client_to_ipv4_destination_travels_as_tcp6() {
    let f = fx();
    let v = verifier(&f.ca);
    let c6: SocketAddr = "[2001:db8::7]:5555".parse().unwrap();
    let bytes = f.signer.header(c6, dst(), AUD, NOW, [3; 16]).unwrap();
    let h = pp::parse_exact(&bytes).unwrap();
    assert!(matches!(h.addresses(), pp::Addresses::Tcp6 { .. }));
    let ok = v.verify(&h, NOW).unwrap();
    assert_eq!(ok.client, c6);
    // The IPv4 destination was written mapped, and comes back canonical.
    assert_eq!(ok.destination, dst());
}

#[test]
fn tampered_address_is_refused() {
    let f = fx();
    let mut bytes = signed_bytes(&f.signer, AUD, NOW, 1);
    // Byte 16 is the first byte of the source address: 127 → 10.
    assert_eq!(bytes[16], 127);
    bytes[16] = 10;
    assert_eq!(
        reason(verify_bytes(&verifier(&f.ca), &bytes, NOW)),
        Reason::AddressMismatch
    );
    // The source port too.
    let mut bytes = signed_bytes(&f.signer, AUD, NOW, 2);
    bytes[24] ^= 1;
    assert_eq!(
        reason(verify_bytes(&verifier(&f.ca), &bytes, NOW)),
        Reason::AddressMismatch
    );
}

#[test]
fn tampered_signature_is_refused() {
    let f = fx();
    let mut bytes = signed_bytes(&f.signer, AUD, NOW, 1);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    assert_eq!(
        reason(verify_bytes(&verifier(&f.ca), &bytes, NOW)),
        Reason::BadSignature
    );
}

#[test]
fn tampered_signed_field_is_a_bad_signature() {
    // Rewriting the timestamp inside the block without re-signing.
    let f = fx();
    let bytes = signed_bytes(&f.signer, AUD, NOW, 1);
    let needle = NOW.to_be_bytes();
    let at = bytes
        .windows(8)
        .position(|w| w == needle)
        .expect("timestamp in the block");
    let mut bytes = bytes;
    bytes[at + 7] ^= 1;
    assert_eq!(
        reason(verify_bytes(&verifier(&f.ca), &bytes, NOW)),
        Reason::BadSignature
    );
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let f = fx();
    let other = ca();
    assert_eq!(
        reason(verify_bytes(
            &verifier(&other),
            &signed_bytes(&f.signer, AUD, NOW, 1),
            NOW
        )),
        Reason::CertUntrusted
    );
    // Same subject name, other key: the signature check catches it.
    let impostor = X509Ca::generate_p256("cluster CA", NOW - 10, NOW + 10, &mut rng()).unwrap();
    let s = signer_with(&impostor, "proxy:front", &["proxy"], NOW - 5, NOW + 5);
    assert_eq!(
        reason(verify_bytes(
            &verifier(&f.ca),
            &signed_bytes(&s, AUD, NOW, 2),
            NOW
        )),
        Reason::CertUntrusted
    );
}

#[test]
fn certificate_without_proxy_role_is_refused() {
    let f = fx();
    let v = verifier(&f.ca);
    let no_role = signer_with(&f.ca, "proxy:front", &["dev"], NOW - 5, NOW + 50);
    assert_eq!(
        reason(verify_bytes(&v, &signed_bytes(&no_role, AUD, NOW, 1), NOW)),
        Reason::NotProxy
    );
    // A user given a role named `proxy` is still not a front.
    let user = signer_with(&f.ca, "alice", &["proxy"], NOW - 5, NOW + 50);
    assert_eq!(
        reason(verify_bytes(&v, &signed_bytes(&user, AUD, NOW, 2), NOW)),
        Reason::NotProxy
    );
}

#[test]
fn expired_certificate_is_refused() {
    let f = fx();
    let old = signer_with(&f.ca, "proxy:front", &["proxy"], NOW - 100, NOW - 50);
    assert_eq!(
        reason(verify_bytes(
            &verifier(&f.ca),
            &signed_bytes(&old, AUD, NOW, 1),
            NOW
        )),
        Reason::CertExpired
    );
}

#[test]
fn wrong_audience_is_refused() {
    let f = fx();
    assert_eq!(
        reason(verify_bytes(
            &verifier(&f.ca),
            &signed_bytes(&f.signer, "inner-ssh", NOW, 1),
            NOW
        )),
        Reason::WrongAudience
    );
}

#[test]
fn timestamps_outside_the_window_are_refused_both_ways() {
    let f = fx();
    let v = verifier(&f.ca);
    let b = signed_bytes(&f.signer, AUD, NOW, 1);
    assert_eq!(reason(verify_bytes(&v, &b, NOW + 31)), Reason::Stale);
    assert_eq!(reason(verify_bytes(&v, &b, NOW - 31)), Reason::Stale);
    // The edges are inside.
    assert!(verify_bytes(&v, &b, NOW + 30).is_ok());
    let b = signed_bytes(&f.signer, AUD, NOW, 2);
    assert!(verify_bytes(&v, &b, NOW - 30).is_ok());
}

#[test]
fn replayed_header_is_refused() {
    let f = fx();
    let v = verifier(&f.ca);
    let b = signed_bytes(&f.signer, AUD, NOW, 1);
    assert!(verify_bytes(&v, &b, NOW).is_ok());
    assert_eq!(reason(verify_bytes(&v, &b, NOW + 1)), Reason::Replayed);
    assert_eq!(reason(verify_bytes(&v, &b, NOW + 30)), Reason::Replayed);
    // Past the window the header is stale, not a replay.
    assert_eq!(reason(verify_bytes(&v, &b, NOW + 31)), Reason::Stale);
}

#[test]
fn a_full_replay_cache_fails_closed() {
    let f = fx();
    let v = Verifier::new(TrustAnchor::from_der(f.ca.cert_der()).unwrap(), AUD, 30, 2);
    for n in 1..=2 {
        assert!(verify_bytes(&v, &signed_bytes(&f.signer, AUD, NOW, n), NOW).is_ok());
    }
    assert_eq!(
        reason(verify_bytes(&v, &signed_bytes(&f.signer, AUD, NOW, 3), NOW)),
        Reason::ReplayCacheFull
    );
    // Once the first entries expire, there is room again.
    assert!(verify_bytes(&v, &signed_bytes(&f.signer, AUD, NOW + 31, 4), NOW + 31).is_ok());
}

#[test]
fn malformed_blocks_are_refused() {
    let f = fx();
    let v = verifier(&f.ca);
    let junk = pp::V2Builder::new(pp::Command::Proxy)
        .addresses(super::sign::addresses_for(client(), dst()))
        .unwrap()
        .tlv(pp::Tlv::Custom {
            kind: TLV_TYPE,
            value: b"\x01junk",
        })
        .unwrap()
        .encode()
        .unwrap();
    assert_eq!(reason(verify_bytes(&v, &junk, NOW)), Reason::Malformed);
    // A LOCAL header carrying a signed block: refused, never used.
    let good = signed_bytes(&f.signer, AUD, NOW, 1);
    let h = pp::parse_exact(&good).unwrap();
    let value = verify::signed_tlv(&h).unwrap().unwrap().to_vec();
    let local = pp::V2Builder::new(pp::Command::Local)
        .tlv(pp::Tlv::Custom {
            kind: TLV_TYPE,
            value: &value,
        })
        .unwrap()
        .encode()
        .unwrap();
    assert_eq!(reason(verify_bytes(&v, &local, NOW)), Reason::Malformed);
}

#[test]
fn every_reason_has_a_distinct_code() {
    let mut codes: Vec<&str> = Reason::ALL.iter().map(Reason::code).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), Reason::ALL.len());
}

// ---- sequences --------------------------------------------------------------

fn policy(mode: pp::ProxyMode, trusted: Option<&str>) -> pp::ListenerPolicy {
    pp::ListenerPolicy {
        mode,
        trusted_proxies: trusted.map(|t| vec![t.parse().unwrap()]),
        parse: pp::ParseConfig::default(),
    }
}

fn unsigned(src: &str) -> Vec<u8> {
    let src: SocketAddr = src.parse().unwrap();
    pp::V2Builder::new(pp::Command::Proxy)
        .addresses(super::sign::addresses_for(src, dst()))
        .unwrap()
        .encode()
        .unwrap()
}

fn peer() -> SocketAddr {
    "127.0.0.9:50000".parse().unwrap()
}

/// Runs [`step`] over `bytes` delivered in pieces of `chunk` bytes.
fn run(p: &pp::ListenerPolicy, v: &Verifier, bytes: &[u8], chunk: usize) -> SeqStep {
    let mut got = 0;
    loop {
        got = (got + chunk).min(bytes.len());
        let eof = got == bytes.len();
        match step(p, v, peer(), &bytes[..got], eof, NOW) {
            SeqStep::NeedMore if !eof => continue,
            other => return other,
        }
    }
}

fn code(s: &SeqStep) -> &'static str {
    match s {
        SeqStep::Refuse { code, .. } => code,
        other => panic!("not refused: {other:?}"),
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn signed_header_alone_is_trusted_with_its_provenance() {
    let f = fx();
    for mode in [
        pp::ProxyMode::On,
        pp::ProxyMode::Off,
        pp::ProxyMode::Unspecified,
    ] {
        let v = verifier(&f.ca);
        let bytes = cat(&[&signed_bytes(&f.signer, AUD, NOW, 1), b"GET /"]);
        match run(&policy(mode, Some("10.0.0.0/8")), &v, &bytes, 7) {
            SeqStep::Accept { observed, consumed } => {
                assert_eq!(observed.socket_addr(), client());
                assert_eq!(observed.provenance(), Provenance::SignedPropagation);
                assert!(observed.is_trusted());
                assert_eq!(&bytes[consumed..], b"GET /");
            }
            other => panic!("{mode:?}: {other:?}"),
        }
        // Verified once, whatever the segmentation.
        assert_eq!(v.replay_len(), 1);
    }
}

#[test]
fn signed_after_unsigned_replaces_it() {
    let f = fx();
    let v = verifier(&f.ca);
    let bytes = cat(&[
        &unsigned("192.0.2.1:1000"),
        &signed_bytes(&f.signer, AUD, NOW, 1),
        b"\x16\x03\x01",
    ]);
    match run(
        &policy(pp::ProxyMode::On, Some("127.0.0.0/8")),
        &v,
        &bytes,
        1,
    ) {
        SeqStep::Accept { observed, consumed } => {
            assert_eq!(observed.socket_addr(), client());
            assert_eq!(observed.provenance(), Provenance::SignedPropagation);
            assert_eq!(&bytes[consumed..], b"\x16\x03\x01");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_mode_still_governs_the_unsigned_header() {
    let f = fx();
    let bytes = cat(&[
        &unsigned("192.0.2.1:1000"),
        &signed_bytes(&f.signer, AUD, NOW, 1),
        b"x",
    ]);
    let off = run(
        &policy(pp::ProxyMode::Off, None),
        &verifier(&f.ca),
        &bytes,
        64,
    );
    assert_eq!(code(&off), "header_forbidden");
    let untrusted = run(
        &policy(pp::ProxyMode::On, Some("10.0.0.0/8")),
        &verifier(&f.ca),
        &bytes,
        64,
    );
    assert_eq!(code(&untrusted), "untrusted_proxy");
}

#[test]
fn unsigned_after_signed_is_refused() {
    let f = fx();
    let v = verifier(&f.ca);
    let bytes = cat(&[
        &signed_bytes(&f.signer, AUD, NOW, 1),
        &unsigned("192.0.2.1:1000"),
        b"x",
    ]);
    let s = run(&policy(pp::ProxyMode::On, None), &v, &bytes, 5);
    assert_eq!(code(&s), "unsigned_after_signed");
    assert_eq!(v.replay_len(), 0);
}

#[test]
fn two_signed_headers_are_refused() {
    let f = fx();
    let p = policy(pp::ProxyMode::On, None);
    let two = cat(&[
        &signed_bytes(&f.signer, AUD, NOW, 1),
        &signed_bytes(&f.signer, AUD, NOW, 2),
        b"x",
    ]);
    assert_eq!(
        code(&run(&p, &verifier(&f.ca), &two, 3)),
        "two_signed_headers"
    );
    // unsigned, signed, signed
    let three = cat(&[&unsigned("192.0.2.1:1000"), &two]);
    assert_eq!(
        code(&run(&p, &verifier(&f.ca), &three, 100)),
        "two_signed_headers"
    );
    // unsigned, signed, unsigned
    let three = cat(&[
        &unsigned("192.0.2.1:1000"),
        &signed_bytes(&f.signer, AUD, NOW, 3),
        &unsigned("192.0.2.2:1000"),
        b"x",
    ]);
    assert_eq!(
        code(&run(&p, &verifier(&f.ca), &three, 100)),
        "unsigned_after_signed"
    );
}

#[test]
fn two_unsigned_headers_stay_a_duplicate() {
    let f = fx();
    let bytes = cat(&[&unsigned("192.0.2.1:1"), &unsigned("192.0.2.2:2"), b"x"]);
    let s = run(
        &policy(pp::ProxyMode::On, None),
        &verifier(&f.ca),
        &bytes,
        4,
    );
    assert_eq!(code(&s), "duplicate_header");
}

#[test]
fn a_failed_signature_never_falls_back_to_the_unsigned_addresses() {
    let f = fx();
    let mut signed = signed_bytes(&f.signer, AUD, NOW, 1);
    let last = signed.len() - 1;
    signed[last] ^= 0x80;
    let bytes = cat(&[&unsigned("192.0.2.1:1000"), &signed, b"x"]);
    let s = run(
        &policy(pp::ProxyMode::On, None),
        &verifier(&f.ca),
        &bytes,
        50,
    );
    assert_eq!(code(&s), "signed_header_bad_signature");
}

#[test]
fn no_header_and_unsigned_only_follow_the_mode() {
    let f = fx();
    let v = verifier(&f.ca);
    let s = run(&policy(pp::ProxyMode::On, None), &v, b"hello", 2);
    assert_eq!(code(&s), "header_required");
    match run(&policy(pp::ProxyMode::Off, None), &v, b"hello", 2) {
        SeqStep::Accept { observed, consumed } => {
            assert_eq!(observed.provenance(), Provenance::Direct);
            assert_eq!(consumed, 0);
        }
        other => panic!("{other:?}"),
    }
    let bytes = cat(&[&unsigned("192.0.2.1:1000"), b"x"]);
    match run(&policy(pp::ProxyMode::On, None), &v, &bytes, 9) {
        SeqStep::Accept { observed, .. } => {
            assert_eq!(observed.provenance(), Provenance::ProxyV2);
            assert_eq!(observed.socket_addr(), "192.0.2.1:1000".parse().unwrap());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_truncated_sequence_is_closed_not_accepted() {
    let f = fx();
    let bytes = cat(&[
        &unsigned("192.0.2.1:1000"),
        &signed_bytes(&f.signer, AUD, NOW, 1),
    ]);
    for cut in [20, 40, bytes.len() - 1] {
        let s = run(
            &policy(pp::ProxyMode::On, None),
            &verifier(&f.ca),
            &bytes[..cut],
            1000,
        );
        assert!(matches!(s, SeqStep::Refuse { .. }), "{cut}: {s:?}");
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever bytes follow a front's signed header, and however they
        /// are split, a SignedPropagation observation names the signed
        /// client and nothing else.
        #[test]
        fn signed_provenance_only_with_the_signed_client(
            prefix in proptest::collection::vec(any::<u8>(), 0..40),
            suffix in proptest::collection::vec(any::<u8>(), 0..40),
            flip in any::<Option<(usize, u8)>>(),
            chunk in 1usize..64,
        ) {
            let f = fx();
            let v = verifier(&f.ca);
            let mut bytes = cat(&[&prefix, &signed_bytes(&f.signer, AUD, NOW, 1), &suffix]);
            if let Some((at, x)) = flip {
                let at = at % bytes.len();
                bytes[at] ^= x;
            }
            if let SeqStep::Accept { observed, .. } = run(&policy(pp::ProxyMode::On, None), &v, &bytes, chunk)
                && observed.provenance() == Provenance::SignedPropagation
            {
                prop_assert_eq!(observed.socket_addr(), client());
            }
        }
    }
}
