//! The verifier's decision table on the signed block, with certificates
//! issued by real CAs: moved from the server (`crates/server/src/
//! propagation/tests.rs`), where they went through the PROXY v2 framing;
//! here they call [`FrontGrant::signed_block`] and
//! [`Verifier::verify_block`] directly. The framing tests stayed in the
//! server.

use std::net::SocketAddr;

use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use ippin_cert::getrandom::SysRng;
use ippin_cert::rand_core::UnwrapErr;
use ippin_cert::x509::{ClientCertRequest, X509Ca};
use ippin_propagation::{
    Error, FrontGrant, GrantSchedule, Link, PROXY_CN_PREFIX, PROXY_ROLE, PublicKey, Reason,
    Rejection, SecretKey, Signer, TrustAnchor, Verified, Verifier, address_block_for,
    ed25519_spki_der, key, pem, wire,
};

const NOW: u64 = 1_700_000_000;
const AUD: &str = "inner-tls";

struct Fx {
    ca: X509Ca,
    signer: Signer,
    inner: SecretKey,
    grant: FrontGrant,
}

fn rng() -> UnwrapErr<SysRng> {
    UnwrapErr(SysRng)
}

fn ca() -> X509Ca {
    X509Ca::generate_p256("cluster CA", NOW - 3600, NOW + 86_400, &mut rng()).unwrap()
}

fn random_key() -> SecretKey {
    let mut b = [0u8; 32];
    ippin_cert::getrandom::fill(&mut b).unwrap();
    SecretKey::from_bytes(b)
}

/// A grant by `s` for `inner`'s key and `audience`, valid from NOW − 10 for 10 minutes.
fn grant_for(s: &Signer, inner: &PublicKey, audience: &str) -> FrontGrant {
    s.grant(inner, audience, NOW - 10, NOW + 590, &random_key())
        .unwrap()
}

/// A front certificate (`ca`, this CN, these roles, this validity) and its
/// Ed25519 key.
fn front_cert(
    ca: &X509Ca,
    cn: &str,
    roles: &[&str],
    nb: u64,
    na: u64,
) -> (ed25519_dalek::SigningKey, Vec<u8>) {
    let key = ed25519_dalek::SigningKey::generate(&mut rng());
    let mut req = ClientCertRequest::builder(cn, ed25519_spki_der(key.verifying_key().as_bytes()))
        .propagation_front()
        .validity(nb, na)
        .serial(5);
    for r in roles {
        req = req.role(*r);
    }
    let der = ca.issue_client(&req.build().unwrap(), &mut rng()).unwrap();
    (key, der)
}

fn fx() -> Fx {
    let ca = ca();
    // The front loads its identity from PEM, as a front does from files.
    let (key, der) = front_cert(
        &ca,
        &format!("{PROXY_CN_PREFIX}front"),
        &[PROXY_ROLE],
        NOW - 60,
        NOW + 3600,
    );
    let key_pem = key.to_pkcs8_pem(Default::default()).unwrap();
    let signer = Signer::from_pem(&pem::der_to_pem(&der, "CERTIFICATE"), &key_pem).unwrap();
    assert_eq!(signer.cert_der(), der);
    let inner = random_key();
    let grant = grant_for(&signer, &inner.public_key(), AUD);
    Fx {
        ca,
        signer,
        inner,
        grant,
    }
}

/// A signer whose certificate `ca` issued with this CN and these roles.
fn signer_with(ca: &X509Ca, cn: &str, roles: &[&str], nb: u64, na: u64) -> Signer {
    let (key, der) = front_cert(ca, cn, roles, nb, na);
    Signer::new(key, der).unwrap()
}

fn verifier_with(ca: &X509Ca, inner: &SecretKey) -> Verifier {
    Verifier::new(
        TrustAnchor::from_der(ca.cert_der()).unwrap(),
        inner.clone(),
        AUD,
        30,
        1024,
    )
}

fn verifier(f: &Fx) -> Verifier {
    verifier_with(&f.ca, &f.inner)
}

fn client() -> SocketAddr {
    "127.0.0.1:40001".parse().unwrap()
}

fn dst() -> SocketAddr {
    "127.0.0.1:4000".parse().unwrap()
}

/// The front's address, as the inner's socket reports its peer.
fn peer() -> SocketAddr {
    "127.0.0.9:50000".parse().unwrap()
}

/// The inner listener's address, as its socket reports it.
fn local() -> SocketAddr {
    "127.0.0.1:4443".parse().unwrap()
}

/// The front → inner connection the tests' blocks travel on.
fn link() -> Link {
    Link {
        front: peer(),
        inner: local(),
    }
}

/// The tests' link with another front port.
fn link_port(port: u16) -> Link {
    Link {
        front: SocketAddr::new(peer().ip(), port),
        inner: local(),
    }
}

/// The signed block (TLV 0xE7's value) for `client()` → `dst()` on `link()`.
fn signed_bytes(g: &FrontGrant, ts: u64, nonce: u8) -> Vec<u8> {
    signed_on(g, link(), ts, nonce)
}

fn signed_on(g: &FrontGrant, on: Link, ts: u64, nonce: u8) -> Vec<u8> {
    g.signed_block(client(), dst(), on, ts, [nonce; 16])
        .unwrap()
}

/// The header's address block as a front writes it for `client()` → `dst()`.
fn sent() -> Vec<u8> {
    address_block_for(client(), dst())
}

fn verify_bytes(v: &Verifier, value: &[u8], now: u64) -> Result<Verified, Rejection> {
    verify_on(v, value, link(), now)
}

fn verify_on(v: &Verifier, value: &[u8], on: Link, now: u64) -> Result<Verified, Rejection> {
    v.verify_block(&sent(), value, on, now)
}

fn reason(r: Result<Verified, Rejection>) -> Reason {
    r.unwrap_err().reason
}

/// The offset of `needle` in `hay` (which must hold it once).
fn find(hay: &[u8], needle: &[u8]) -> usize {
    let at = hay.windows(needle.len()).position(|w| w == needle).unwrap();
    assert!(
        hay[at + 1..].windows(needle.len()).all(|w| w != needle),
        "found twice"
    );
    at
}

#[test]
fn a_signed_header_verifies_to_its_client() {
    let f = fx();
    let v = verifier(&f);
    let ok = verify_bytes(&v, &signed_bytes(&f.grant, NOW, 1), NOW + 5).unwrap();
    assert_eq!(ok.client(), client());
    assert_eq!(ok.destination(), dst());
    assert_eq!(v.replay_len(), 1);
    assert_eq!(v.grant_cache_len(), 1);
    // The next header under the same grant hits the cache.
    assert!(verify_bytes(&v, &signed_bytes(&f.grant, NOW, 2), NOW + 6).is_ok());
    assert_eq!(v.grant_cache_len(), 1);
}

#[test]
fn tampered_mac_is_refused() {
    let f = fx();
    // With the grant cached (a hit) and not (the full check).
    for cold in [false, true] {
        let v = verifier(&f);
        if !cold {
            assert!(verify_bytes(&v, &signed_bytes(&f.grant, NOW, 8), NOW).is_ok());
        }
        let mut bytes = signed_bytes(&f.grant, NOW, 1);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        assert_eq!(
            reason(verify_bytes(&v, &bytes, NOW)),
            Reason::BadSignature,
            "cold: {cold}"
        );
        // The untampered header still passes: the nonce was not burnt.
        assert!(verify_bytes(&v, &signed_bytes(&f.grant, NOW, 1), NOW).is_ok());
    }
}

#[test]
fn tampered_grant_signature_is_refused_and_not_cached() {
    let f = fx();
    let v = verifier(&f);
    let bytes = signed_bytes(&f.grant, NOW, 1);
    // The grant's signature: the 64 bytes before the timestamp.
    let ts_at = find(&bytes, &NOW.to_be_bytes());
    let mut t = bytes.clone();
    t[ts_at - 1] ^= 0x01;
    assert_eq!(reason(verify_bytes(&v, &t, NOW)), Reason::BadSignature);
    assert_eq!(v.grant_cache_len(), 0);
    // A signed grant field (not_after, here) rewritten without re-signing.
    let na_at = find(&bytes, &(NOW + 590).to_be_bytes());
    let mut t = bytes.clone();
    t[na_at + 7] ^= 1;
    assert_eq!(reason(verify_bytes(&v, &t, NOW)), Reason::BadSignature);
    assert_eq!(v.grant_cache_len(), 0);
}

#[test]
fn tampered_timestamp_or_nonce_is_a_bad_mac() {
    let f = fx();
    let v = verifier(&f);
    let bytes = signed_bytes(&f.grant, NOW, 1);
    let at = find(&bytes, &NOW.to_be_bytes());
    let mut t = bytes.clone();
    t[at + 7] ^= 1;
    assert_eq!(reason(verify_bytes(&v, &t, NOW)), Reason::BadSignature);
    let mut t = bytes.clone();
    t[at + 8] ^= 1; // first nonce byte
    assert_eq!(reason(verify_bytes(&v, &t, NOW)), Reason::BadSignature);
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let f = fx();
    let other = ca();
    assert_eq!(
        reason(verify_bytes(
            &verifier_with(&other, &f.inner),
            &signed_bytes(&f.grant, NOW, 1),
            NOW
        )),
        Reason::CertUntrusted
    );
    // Same subject name, other key: the signature check catches it.
    let impostor = X509Ca::generate_p256("cluster CA", NOW - 10, NOW + 10, &mut rng()).unwrap();
    let s = signer_with(&impostor, "proxy:front", &["proxy"], NOW - 5, NOW + 5);
    let g = grant_for(&s, &f.inner.public_key(), AUD);
    let v = verifier(&f);
    assert_eq!(
        reason(verify_bytes(&v, &signed_bytes(&g, NOW, 2), NOW)),
        Reason::CertUntrusted
    );
    assert_eq!(v.grant_cache_len(), 0);
}

#[test]
fn certificate_without_proxy_role_is_refused() {
    let f = fx();
    let v = verifier(&f);
    let no_role = signer_with(&f.ca, "proxy:front", &["dev"], NOW - 5, NOW + 50);
    let g = grant_for(&no_role, &f.inner.public_key(), AUD);
    assert_eq!(
        reason(verify_bytes(&v, &signed_bytes(&g, NOW, 1), NOW)),
        Reason::NotProxy
    );
    // A user given a role named `proxy` is still not a front.
    let user = signer_with(&f.ca, "alice", &["proxy"], NOW - 5, NOW + 50);
    let g = grant_for(&user, &f.inner.public_key(), AUD);
    assert_eq!(
        reason(verify_bytes(&v, &signed_bytes(&g, NOW, 2), NOW)),
        Reason::NotProxy
    );
}

#[test]
fn expired_certificate_is_refused_and_its_grant_leaves_the_cache() {
    let f = fx();
    let old = signer_with(&f.ca, "proxy:front", &["proxy"], NOW - 100, NOW - 50);
    let g = grant_for(&old, &f.inner.public_key(), AUD);
    assert_eq!(
        reason(verify_bytes(&verifier(&f), &signed_bytes(&g, NOW, 1), NOW)),
        Reason::CertExpired
    );
    // A grant cached while the certificate was valid stops hitting when it
    // expires: the full check then names the certificate.
    let short = signer_with(&f.ca, "proxy:front", &["proxy"], NOW - 5, NOW + 20);
    let g = grant_for(&short, &f.inner.public_key(), AUD);
    let v = verifier(&f);
    assert!(verify_bytes(&v, &signed_bytes(&g, NOW + 20, 1), NOW + 20).is_ok());
    assert_eq!(
        reason(verify_bytes(&v, &signed_bytes(&g, NOW + 21, 2), NOW + 21)),
        Reason::CertExpired
    );
}

#[test]
fn expired_grant_is_refused() {
    let f = fx();
    let v = verifier(&f);
    let grant = |nb: u64, na: u64| {
        f.signer
            .grant(&f.inner.public_key(), AUD, nb, na, &random_key())
            .unwrap()
    };
    let g = grant(NOW - 600, NOW - 1);
    assert_eq!(
        reason(verify_bytes(&v, &signed_bytes(&g, NOW, 1), NOW)),
        Reason::GrantExpired
    );
    assert_eq!(v.grant_cache_len(), 0);
    // Not yet valid (beyond the window's skew allowance).
    let g = grant(NOW + 31, NOW + 600);
    assert_eq!(
        reason(verify_bytes(&v, &signed_bytes(&g, NOW, 2), NOW)),
        Reason::GrantExpired
    );
    // Inside the skew allowance: accepted.
    let g = grant(NOW + 30, NOW + 600);
    assert!(verify_bytes(&v, &signed_bytes(&g, NOW, 3), NOW).is_ok());
    // A cached grant stops hitting after its not_after: refused as expired.
    let g = grant(NOW - 10, NOW + 5);
    assert!(verify_bytes(&v, &signed_bytes(&g, NOW + 5, 4), NOW + 5).is_ok());
    assert_eq!(
        reason(verify_bytes(&v, &signed_bytes(&g, NOW + 6, 5), NOW + 6)),
        Reason::GrantExpired
    );
    // The front refuses to sign more than an hour; a hand-made grant
    // claiming more is refused by the inner
    // (`grants_an_honest_front_never_makes_are_refused`).
    assert!(
        f.signer
            .grant(&f.inner.public_key(), AUD, NOW, NOW + 3601, &random_key())
            .is_err()
    );
}

#[test]
fn a_grant_for_another_inner_key_is_refused() {
    let f = fx();
    let v = verifier(&f);
    // Same audience, another inner listener's key: refused before any
    // public-key operation.
    let elsewhere = random_key();
    let g = grant_for(&f.signer, &elsewhere.public_key(), AUD);
    assert_eq!(
        reason(verify_bytes(&v, &signed_bytes(&g, NOW, 1), NOW)),
        Reason::GrantWrongKey
    );
    // The grant names this inner's key, but the front agreed its MAC key
    // with another key: the grant verifies, the MAC cannot.
    let eph = random_key();
    let honest = f
        .signer
        .grant(&f.inner.public_key(), AUD, NOW - 10, NOW + 590, &eph)
        .unwrap();
    let shared = eph.agree(&elsewhere.public_key()).unwrap();
    let crossed_key = key::mac_key(&shared, honest.bytes()).unwrap();
    // The honest grant's block, its MAC made under the crossed key.
    let conn = address_block_for(peer(), local());
    let tag = ring::hmac::sign(
        &crossed_key,
        &wire::mac_input(&sent(), &conn, b"", AUD.as_bytes(), NOW, &[2; 16]),
    );
    let mac: [u8; 32] = tag.as_ref().try_into().unwrap();
    let crossed =
        wire::encode_block(&sent(), &conn, b"", honest.bytes(), NOW, &[2; 16], &mac).unwrap();
    assert_eq!(
        reason(verify_bytes(&v, &crossed, NOW)),
        Reason::BadSignature
    );
    // The honest MAC under the same grant passes (now a cache hit).
    assert!(verify_bytes(&v, &signed_bytes(&honest, NOW, 3), NOW).is_ok());
    // Another inner (other key, same CA and audience) refuses the honest one.
    let other = verifier_with(&f.ca, &elsewhere);
    assert_eq!(
        reason(verify_bytes(&other, &signed_bytes(&honest, NOW, 4), NOW)),
        Reason::GrantWrongKey
    );
}

/// A block under a hand-made grant, signed with the front key `key` (for
/// grants an honest [`Signer`] refuses to make); any MAC.
fn hand_made(key: &ed25519_dalek::SigningKey, grant: wire::Grant<'_>) -> Vec<u8> {
    use ed25519_dalek::Signer as _;
    let sig = key.sign(&grant.transcript()).to_bytes();
    let bytes = wire::Grant {
        signature: &sig,
        ..grant
    }
    .encode()
    .unwrap();
    let conn = address_block_for(peer(), local());
    wire::encode_block(&sent(), &conn, b"", &bytes, NOW, &[1; 16], &[0; 32]).unwrap()
}

#[test]
fn grants_an_honest_front_never_makes_are_refused() {
    let f = fx();
    let v = verifier(&f);
    let (key, der) = front_cert(&f.ca, "proxy:rogue", &["proxy"], NOW - 60, NOW + 7200);
    let s = Signer::new(key.clone(), der).unwrap();
    let base = wire::Grant {
        cert_der: s.cert_der(),
        ephemeral: random_key().public_key().0,
        inner_key: f.inner.public_key().0,
        audience: AUD.as_bytes(),
        not_before: NOW - 10,
        not_after: NOW + 10,
        signature: &[],
    };
    // An ephemeral key of small order (the point 0): no shared secret.
    let zero = hand_made(
        &key,
        wire::Grant {
            ephemeral: [0; 32],
            ..base
        },
    );
    assert_eq!(reason(verify_bytes(&v, &zero, NOW)), Reason::Malformed);
    // A validity longer than an hour.
    let long = hand_made(
        &key,
        wire::Grant {
            not_after: NOW - 10 + 3601,
            ..base
        },
    );
    assert_eq!(reason(verify_bytes(&v, &long, NOW)), Reason::GrantExpired);
    // Reversed.
    let reversed = hand_made(
        &key,
        wire::Grant {
            not_before: NOW + 5,
            not_after: NOW,
            ..base
        },
    );
    assert_eq!(
        reason(verify_bytes(&v, &reversed, NOW)),
        Reason::GrantExpired
    );
    // A well-formed grant with a wrong MAC: the grant verifies, the MAC not.
    assert_eq!(
        reason(verify_bytes(&v, &hand_made(&key, base), NOW)),
        Reason::BadSignature
    );
    assert_eq!(v.grant_cache_len(), 1);
    // The honest front refuses to make such grants.
    assert!(
        s.grant(&PublicKey([0; 32]), AUD, NOW, NOW + 10, &random_key())
            .is_err()
    );
}

#[test]
fn wrong_audience_is_refused() {
    let f = fx();
    let g = grant_for(&f.signer, &f.inner.public_key(), "inner-ssh");
    assert_eq!(
        reason(verify_bytes(&verifier(&f), &signed_bytes(&g, NOW, 1), NOW)),
        Reason::WrongAudience
    );
}

#[test]
fn timestamps_outside_the_window_are_refused_both_ways() {
    let f = fx();
    let v = verifier(&f);
    let b = signed_bytes(&f.grant, NOW, 1);
    assert_eq!(reason(verify_bytes(&v, &b, NOW + 31)), Reason::Stale);
    assert_eq!(reason(verify_bytes(&v, &b, NOW - 31)), Reason::Stale);
    // The edges are inside.
    assert!(verify_bytes(&v, &b, NOW + 30).is_ok());
    let b = signed_bytes(&f.grant, NOW, 2);
    assert!(verify_bytes(&v, &b, NOW - 10).is_ok());
}

#[test]
fn replayed_header_is_refused() {
    let f = fx();
    let v = verifier(&f);
    let b = signed_bytes(&f.grant, NOW, 1);
    assert!(verify_bytes(&v, &b, NOW).is_ok());
    assert_eq!(reason(verify_bytes(&v, &b, NOW + 1)), Reason::Replayed);
    assert_eq!(reason(verify_bytes(&v, &b, NOW + 30)), Reason::Replayed);
    // Past the window the header is stale, not a replay.
    assert_eq!(reason(verify_bytes(&v, &b, NOW + 31)), Reason::Stale);
}

/// The replay state is keyed by the connection's 4-tuple and never
/// refuses for lack of room: more links than its capacity evict the
/// oldest, and the floor keeps the evicted headers refused.
#[test]
fn more_links_than_the_replay_capacity_never_refuse_a_fresh_header() {
    let f = fx();
    let v = Verifier::new(
        TrustAnchor::from_der(f.ca.cert_der()).unwrap(),
        f.inner.clone(),
        AUD,
        30,
        2,
    );
    let on = link_port;
    let first = signed_on(&f.grant, on(1), NOW, 1);
    assert!(verify_on(&v, &first, on(1), NOW).is_ok());
    // One new link a second, each a fresh header: all accepted, the state
    // stays at its capacity.
    for port in 2..=29u16 {
        let ts = NOW + u64::from(port);
        let h = signed_on(&f.grant, on(port), ts, port as u8);
        assert!(verify_on(&v, &h, on(port), ts).is_ok(), "{port}");
        assert!(v.replay_len() <= 2);
    }
    // The first link was forgotten; its header is still refused.
    assert_eq!(
        reason(verify_on(&v, &first, on(1), NOW + 29)),
        Reason::Replayed
    );
}

/// A captured header is good on its own connection only: raced onto
/// another connection (another front port, another front address,
/// another inner port) it is refused before any public-key work; an
/// attacker who rewrites the connection block to match breaks the MAC.
#[test]
fn a_header_is_bound_to_its_connection() {
    let f = fx();
    let v = verifier(&f);
    let b = signed_bytes(&f.grant, NOW, 1);
    let elsewhere = [
        Link {
            front: "127.0.0.9:50001".parse().unwrap(),
            inner: local(),
        },
        Link {
            front: "127.0.0.66:50000".parse().unwrap(),
            inner: local(),
        },
        Link {
            front: peer(),
            inner: "127.0.0.1:4444".parse().unwrap(),
        },
    ];
    for on in elsewhere {
        let r = verify_on(&v, &b, on, NOW).unwrap_err();
        assert_eq!(r.reason, Reason::ConnectionMismatch, "{on:?}");
        assert_eq!(r.reason.code(), "signed_connection_mismatch");
    }
    assert_eq!(v.replay_len(), 0);
    assert_eq!(v.grant_cache_len(), 0, "refused before the grant check");
    // Rewrite the block's connection to the attacker's: the MAC fails.
    let attacker = elsewhere[0];
    let old = address_block_for(peer(), local());
    let new = address_block_for(attacker.front, attacker.inner);
    let mut forged = b.clone();
    let at = find(&forged, &old[1..]);
    forged[at..at + old.len() - 1].copy_from_slice(&new[1..]);
    assert_eq!(
        reason(verify_on(&v, &forged, attacker, NOW)),
        Reason::BadSignature
    );
    // The original still verifies on its own connection, written in
    // IPv4-mapped form by a dual-stack socket.
    let mapped = Link {
        front: "[::ffff:127.0.0.9]:50000".parse().unwrap(),
        inner: "[::ffff:127.0.0.1]:4443".parse().unwrap(),
    };
    assert!(verify_on(&v, &b, mapped, NOW).is_ok());
}

#[test]
fn the_grant_cache_is_bounded_and_holds_only_verified_grants() {
    let f = fx();
    let v = verifier(&f).with_grant_cache_capacity(4);
    // A flood of distinct grants that pass every cheap check (right
    // audience, right inner key, fresh timestamp, a real front certificate)
    // but carry a bad signature: each is refused, none is cached.
    for i in 0..50u8 {
        let g = grant_for(&f.signer, &f.inner.public_key(), AUD);
        let mut bytes = signed_bytes(&g, NOW, i);
        let ts_at = find(&bytes, &NOW.to_be_bytes());
        bytes[ts_at - 1 - usize::from(i % 60)] ^= 0x40;
        assert_eq!(reason(verify_bytes(&v, &bytes, NOW)), Reason::BadSignature);
        assert_eq!(v.grant_cache_len(), 0);
    }
    // Valid grants enter, never more than the capacity.
    let mut grants = Vec::new();
    for i in 0..10u8 {
        let g = grant_for(&f.signer, &f.inner.public_key(), AUD);
        let on = link_port(1000 + u16::from(i));
        assert!(verify_on(&v, &signed_on(&g, on, NOW, 100 + i), on, NOW).is_ok());
        assert!(v.grant_cache_len() <= 4);
        grants.push(g);
    }
    assert_eq!(v.grant_cache_len(), 4);
    // An evicted grant is verified again in full and still accepted.
    assert!(verify_bytes(&v, &signed_bytes(&grants[0], NOW, 200), NOW).is_ok());
}

#[test]
fn an_inner_restart_accepts_the_next_header_from_a_running_front() {
    let f = fx();
    let first = verifier(&f);
    assert!(verify_bytes(&first, &signed_bytes(&f.grant, NOW, 1), NOW).is_ok());
    drop(first);
    // The restarted inner has empty caches and the same key: the front's
    // current grant travels in every header, so nothing is renegotiated.
    let restarted = verifier(&f);
    assert_eq!(restarted.grant_cache_len(), 0);
    assert!(verify_bytes(&restarted, &signed_bytes(&f.grant, NOW + 1, 2), NOW + 1).is_ok());
    assert_eq!(restarted.grant_cache_len(), 1);
}

#[test]
fn the_schedule_renews_the_grant_every_half_lifetime() {
    let f = fx();
    let schedule = GrantSchedule::new(
        std::sync::Arc::new(f.signer.clone()),
        f.inner.public_key(),
        AUD,
        600,
    );
    let fresh = || {
        let mut b = [0u8; 32];
        ippin_cert::getrandom::fill(&mut b).unwrap();
        Ok(b)
    };
    let g1 = schedule.grant_at(NOW, fresh).unwrap();
    assert_eq!((g1.not_before(), g1.not_after()), (NOW, NOW + 600));
    let same = schedule.grant_at(NOW + 299, fresh).unwrap();
    assert_eq!(same.bytes(), g1.bytes());
    let g2 = schedule.grant_at(NOW + 300, fresh).unwrap();
    assert_ne!(g2.bytes(), g1.bytes());
    assert_eq!(g2.not_before(), NOW + 300);
    // A clock that steps back gets a grant valid at its time.
    let back = schedule.grant_at(NOW + 100, fresh).unwrap();
    assert_eq!(back.not_before(), NOW + 100);
    // Both grants verify at the inner; randomness failures surface.
    let v = verifier(&f);
    assert!(verify_bytes(&v, &signed_bytes(&g1, NOW + 299, 1), NOW + 299).is_ok());
    assert!(verify_bytes(&v, &signed_bytes(&g2, NOW + 301, 2), NOW + 301).is_ok());
    let err = schedule
        .grant_at(NOW + 1000, || Err(Error::Grant("no randomness".into())))
        .unwrap_err();
    assert!(err.to_string().contains("no randomness"));
}

/// The block-level half of the server's `malformed_blocks_are_refused`
/// (the LOCAL-header half is framing and stayed there).
#[test]
fn malformed_blocks_are_refused() {
    let f = fx();
    let v = verifier(&f);
    assert_eq!(
        reason(verify_bytes(&v, b"\x02junk", NOW)),
        Reason::Malformed
    );
    // A version-1 block is refused as malformed.
    let mut v1 = signed_bytes(&f.grant, NOW, 1);
    v1[0] = 1;
    assert_eq!(reason(verify_bytes(&v, &v1, NOW)), Reason::Malformed);
    assert_eq!(v.replay_len(), 0);
}

#[test]
fn every_reason_has_a_distinct_code() {
    let mut codes: Vec<&str> = Reason::ALL.iter().map(Reason::code).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), Reason::ALL.len());
}

// ---- boundaries and details that cargo-mutants found untested (docs/testing.md) ----

/// A front certificate is valid from its `notBefore` on, not before.
#[test]
fn a_front_certificate_not_yet_valid_is_refused_until_its_not_before() {
    let f = fx();
    let v = verifier(&f);
    let later = signer_with(&f.ca, "proxy:front", &["proxy"], NOW + 100, NOW + 1000);
    let g = later
        .grant(
            &f.inner.public_key(),
            AUD,
            NOW + 90,
            NOW + 600,
            &random_key(),
        )
        .unwrap();
    let early = verify_bytes(&v, &signed_bytes(&g, NOW + 99, 1), NOW + 99);
    assert_eq!(reason(early), Reason::CertExpired);
    assert_eq!(v.grant_cache_len(), 0);
    assert!(verify_bytes(&v, &signed_bytes(&g, NOW + 100, 2), NOW + 100).is_ok());
}

/// A grant of exactly the longest lifetime an honest front signs is
/// accepted (one second more is refused:
/// `grants_an_honest_front_never_makes_are_refused`).
#[test]
fn a_grant_of_exactly_the_longest_lifetime_is_accepted() {
    let f = fx();
    let v = verifier(&f);
    let nb = NOW - 10;
    let g = f
        .signer
        .grant(
            &f.inner.public_key(),
            AUD,
            nb,
            nb + ippin_propagation::MAX_GRANT_LIFETIME,
            &random_key(),
        )
        .unwrap();
    assert!(verify_bytes(&v, &signed_bytes(&g, NOW, 1), NOW).is_ok());
}

#[test]
fn the_verifier_reports_its_audience_and_key() {
    let f = fx();
    let v = verifier(&f);
    assert_eq!(v.audience(), AUD);
    assert_eq!(v.public_key(), f.inner.public_key());
}

/// Every replay refusal is `signed_header_replayed`, and its detail says
/// which rule refused it.
#[test]
fn replay_refusals_say_why() {
    let f = fx();
    let detail = |r: Result<Verified, Rejection>| {
        let r = r.unwrap_err();
        assert_eq!(r.reason, Reason::Replayed);
        r.detail
    };
    let v = verifier(&f);
    let b = signed_bytes(&f.grant, NOW + 1, 1);
    assert!(verify_bytes(&v, &b, NOW + 1).is_ok());
    assert!(detail(verify_bytes(&v, &b, NOW + 1)).contains("already accepted"));
    let older = signed_bytes(&f.grant, NOW, 2);
    assert!(detail(verify_bytes(&v, &older, NOW + 1)).contains("older than the newest"));
    // A burst: MAX_PER_SECOND headers on one link in one second, then one more.
    let v = verifier(&f);
    for i in 0..ippin_propagation::MAX_PER_SECOND as u8 {
        assert!(verify_bytes(&v, &signed_bytes(&f.grant, NOW, 10 + i), NOW).is_ok());
    }
    let burst = verify_bytes(&v, &signed_bytes(&f.grant, NOW, 99), NOW);
    assert!(detail(burst).contains("too many headers"));
    // Below the floor: a link forgotten to make room.
    let v = Verifier::new(
        TrustAnchor::from_der(f.ca.cert_der()).unwrap(),
        f.inner.clone(),
        AUD,
        30,
        1,
    );
    assert!(
        verify_on(
            &v,
            &signed_on(&f.grant, link_port(1), NOW, 1),
            link_port(1),
            NOW
        )
        .is_ok()
    );
    assert!(
        verify_on(
            &v,
            &signed_on(&f.grant, link_port(2), NOW + 1, 2),
            link_port(2),
            NOW + 1
        )
        .is_ok()
    );
    let floor = verify_on(
        &v,
        &signed_on(&f.grant, link_port(1), NOW, 3),
        link_port(1),
        NOW + 1,
    );
    assert!(detail(floor).contains("floor"));
}

/// The cloud private endpoint the client came through to the front travels under the MAC:
/// the inner reads it back, and a block whose endpoint was changed (or removed) on the way
/// fails the MAC; a name that is not one does not encode.
#[test]
fn the_endpoint_travels_under_the_mac() {
    let f = fx();
    let v = verifier(&f);
    let via = |endpoint: &str, nonce: u8| {
        f.grant
            .signed_block_via(client(), dst(), Some(endpoint), link(), NOW, [nonce; 16])
    };
    let with = via("vpce-0123456789abcdef0", 7).unwrap();
    let ok = verify_bytes(&v, &with, NOW).unwrap();
    assert_eq!(ok.endpoint(), Some("vpce-0123456789abcdef0"));
    assert_eq!(ok.client(), client());
    let without = signed_bytes(&f.grant, NOW, 8);
    assert_eq!(verify_bytes(&v, &without, NOW).unwrap().endpoint(), None);
    // Another endpoint of the same length, in place: the MAC no longer holds.
    let mut changed = via("vpce-0123456789abcdef0", 9).unwrap();
    let at = find(&changed, b"vpce-0123456789abcdef0");
    changed[at + 21] = b'1';
    assert_eq!(
        reason(verify_bytes(&v, &changed, NOW)),
        Reason::BadSignature
    );
    // Removed (its length set to 0 and its bytes dropped): the MAC no longer holds.
    let mut dropped = via("gcp:7", 10).unwrap();
    let at = find(&dropped, b"gcp:7");
    dropped.drain(at..at + 5);
    dropped[at - 1] = 0;
    assert_eq!(
        reason(verify_bytes(&v, &dropped, NOW)),
        Reason::BadSignature
    );
    for bad in ["VPCE-1", "vpce 1", &"a".repeat(33)] {
        assert!(via(bad, 11).is_err(), "{bad:?}");
    }
}
