//! The async `fleet::client` against a real etcd on loopback (the same start-up as
//! `fleet.rs`): calls, a watch that ends when etcd is killed and resumes after a restart on
//! the same data directory, and the body bound. Then etcd over TLS with `--client-cert-auth`
//! (certificates made here with the `openssl` CLI): the calls and a watch with a client
//! certificate, the refusals without one and with another CA, and the failover between
//! endpoints.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ippin_access::fleet::client::{
    ClientError, Endpoint, EtcdClient, EtcdWatch, TlsConfigError, TlsInput, client_config_from_pem,
};
use ippin_access::fleet::{
    Compare, DeleteRange, EventKind, FleetError, LeaseGrant, LeaseKeepAlive, LeaseRevoke,
    MAX_BODY_BYTES, Op, OpResponse, Put, Range, Txn, Watch, WatchResponse,
};

use rustls::pki_types::ServerName;

use ippin_test_support::etcd::{Etcd, Pki};

/// Reads messages until `n` events came, within 10 s; every message read.
async fn events(w: &mut EtcdWatch, n: usize) -> Vec<WatchResponse> {
    let mut got: Vec<WatchResponse> = Vec::new();
    let read = async {
        while got.iter().map(|m| m.events.len()).sum::<usize>() < n {
            match w.next().await {
                Some(Ok(m)) => got.push(m),
                Some(Err(e)) => panic!("watch error: {e}"),
                None => panic!("watch ended early"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| panic!("fewer than {n} events within 10 s"));
    got
}

fn keys_and_revisions(got: &[WatchResponse]) -> Vec<(EventKind, Vec<u8>, i64)> {
    got.iter()
        .flat_map(|m| &m.events)
        .map(|e| (e.kind, e.kv.key.clone(), e.kv.mod_revision))
        .collect()
}

#[tokio::test]
async fn client_calls_against_etcd() {
    let etcd = Etcd::start();
    let c = EtcdClient::new(etcd.client);

    let r1 = c
        .put(&Put::new(b"/c/a", b"one"))
        .await
        .unwrap()
        .header
        .revision;
    let r2 = c
        .put(&Put::new(b"/c/b", b"two"))
        .await
        .unwrap()
        .header
        .revision;
    assert!(r2 > r1);
    let got = c.range(&Range::prefix(b"/c/")).await.unwrap();
    let kvs: Vec<_> = got
        .kvs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone(), kv.mod_revision))
        .collect();
    assert_eq!(
        kvs,
        [
            (b"/c/a".to_vec(), b"one".to_vec(), r1),
            (b"/c/b".to_vec(), b"two".to_vec(), r2)
        ]
    );

    // A create-only txn: once, then its failure branch shows what is there.
    let create = |v: &[u8]| Txn {
        compare: vec![Compare::absent(b"/c/u")],
        success: vec![Op::Put(Put::new(b"/c/u", v))],
        failure: vec![Op::Range(Range::key(b"/c/u"))],
    };
    assert!(c.txn(&create(b"v1")).await.unwrap().succeeded);
    let second = c.txn(&create(b"v2")).await.unwrap();
    assert!(!second.succeeded);
    let [OpResponse::Range(seen)] = &second.responses[..] else {
        panic!("the failure branch's range: {second:?}");
    };
    assert_eq!(seen.kvs[0].value, b"v1");

    // Leases: grant, attach, keepalive, revoke (the key goes), revoke again (etcd's 404).
    let lease = c
        .lease_grant(&LeaseGrant { ttl: 60, id: None })
        .await
        .unwrap();
    assert_eq!(lease.ttl, 60);
    c.put(&Put::new(b"/c/leased", b"x").with_lease(lease.id))
        .await
        .unwrap();
    let alive = c
        .lease_keepalive(&LeaseKeepAlive { id: lease.id })
        .await
        .unwrap();
    assert_eq!(alive.id, lease.id);
    assert!(alive.ttl > 0);
    c.lease_revoke(&LeaseRevoke { id: lease.id }).await.unwrap();
    assert!(
        c.range(&Range::key(b"/c/leased"))
            .await
            .unwrap()
            .kvs
            .is_empty()
    );
    let again = c.lease_revoke(&LeaseRevoke { id: lease.id }).await;
    assert!(
        matches!(
            again,
            Err(ClientError::Etcd {
                status: 404,
                code: 5,
                ..
            })
        ),
        "{again:?}"
    );

    let gone = c.delete_range(&DeleteRange::prefix(b"/c/")).await.unwrap();
    assert_eq!(gone.deleted, 3);

    // Nothing listens: a connect error. A peer that accepts and never answers: the timeout.
    drop(etcd);
    let closed = c.range(&Range::key(b"/c/a")).await;
    assert!(
        matches!(closed, Err(ClientError::Connect { .. })),
        "{closed:?}"
    );
    let mute = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let mute_addr: SocketAddr = mute.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let (s, _) = mute.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(s);
    });
    let slow = EtcdClient::new(mute_addr).with_timeout(Duration::from_millis(300));
    let t = tokio::time::Instant::now();
    let timed_out = slow.range(&Range::key(b"/c/a")).await;
    assert!(
        matches!(timed_out, Err(ClientError::Timeout { after, endpoint }) if after == Duration::from_millis(300) && endpoint == mute_addr),
        "{timed_out:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(2));
    accept.abort();
}

#[tokio::test]
async fn client_watch_ends_when_etcd_dies_and_resumes_after_restart() {
    let mut etcd = Etcd::start();
    let c = EtcdClient::new(etcd.client);

    let mut w = c.watch(&Watch::prefix(b"/w/")).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("the created message")
        .expect("a message")
        .expect("it decodes");
    assert!(first.created);
    let a = c
        .put(&Put::new(b"/w/a", b"1"))
        .await
        .unwrap()
        .header
        .revision;
    let b = c
        .delete_range(&DeleteRange::key(b"/w/a"))
        .await
        .unwrap()
        .header
        .revision;
    c.put(&Put::new(b"/x", b"outside")).await.unwrap();
    let got = events(&mut w, 2).await;
    assert_eq!(
        keys_and_revisions(&got),
        [
            (EventKind::Put, b"/w/a".to_vec(), a),
            (EventKind::Delete, b"/w/a".to_vec(), b)
        ]
    );
    let last = b;

    // etcd dies: the watch ends (an error then None, or None), within 5 s.
    etcd.kill();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        let mut errors = 0;
        loop {
            match w.next().await {
                None => return errors,
                Some(Err(_)) => errors += 1,
                Some(Ok(m)) => assert!(m.events.is_empty(), "an event after the kill: {m:?}"),
            }
        }
    })
    .await
    .expect("the watch ends when etcd is killed");
    assert!(ended <= 1, "at most one error before the end");
    assert!(w.next().await.is_none(), "an ended watch stays ended");
    let refused = c.put(&Put::new(b"/w/lost", b"x")).await;
    assert!(
        matches!(refused, Err(ClientError::Connect { .. })),
        "{refused:?}"
    );

    // Restarted on the same data: writes, then a watch from the last revision + 1 gets
    // exactly them.
    etcd.restart();
    let c2 = c
        .put(&Put::new(b"/w/c", b"2"))
        .await
        .unwrap()
        .header
        .revision;
    let d = c
        .put(&Put::new(b"/w/d", b"3"))
        .await
        .unwrap()
        .header
        .revision;
    assert!(c2 > last);
    let mut w2 = c
        .watch(&Watch::prefix(b"/w/").from_revision(last + 1))
        .await
        .unwrap();
    let got = events(&mut w2, 2).await;
    assert!(got[0].created);
    assert_eq!(
        keys_and_revisions(&got),
        [
            (EventKind::Put, b"/w/c".to_vec(), c2),
            (EventKind::Put, b"/w/d".to_vec(), d)
        ]
    );
}

#[tokio::test]
async fn client_refuses_bodies_over_the_bound() {
    let etcd = Etcd::start();
    let c = EtcdClient::new(etcd.client);

    // Five values of 1 MB: a range over them answers about 6.7 MB of base64, over 4 MiB.
    let big = vec![b'v'; 1_000_000];
    for i in 0..5 {
        c.put(&Put::new(format!("/big/{i}").as_bytes(), &big))
            .await
            .unwrap();
    }
    let one = c.range(&Range::key(b"/big/0")).await.unwrap();
    assert_eq!(one.kvs[0].value.len(), 1_000_000);
    let all = c.range(&Range::prefix(b"/big/")).await;
    assert!(
        matches!(all, Err(ClientError::BodyTooLarge { max }) if max == MAX_BODY_BYTES),
        "{all:?}"
    );

    // A smaller bound: refused over it, read under it; a watch message over it too.
    c.put(&Put::new(b"/small", b"s")).await.unwrap();
    let tight = EtcdClient::new(etcd.client).with_max_body(1000);
    assert_eq!(
        tight.range(&Range::key(b"/small")).await.unwrap().kvs[0].value,
        b"s"
    );
    let over = tight.range(&Range::key(b"/big/0")).await;
    assert!(
        matches!(over, Err(ClientError::BodyTooLarge { max: 1000 })),
        "{over:?}"
    );
    let mut w = tight.watch(&Watch::prefix(b"/big/")).await.unwrap();
    let created = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(created.created);
    c.put(&Put::new(b"/big/0", &[b'w'; 2000])).await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap();
    assert!(
        matches!(
            refused,
            Some(Err(ClientError::Decode(FleetError::TooLarge {
                max: 1000,
                ..
            })))
        ),
        "{refused:?}"
    );
    assert!(w.next().await.is_none());
}

/// A TLS endpoint for `addr` trusting `ca` (a file name of `pki`), with the client
/// certificate or without.
fn endpoint(pki: &Pki, addr: SocketAddr, ca: &str, with_client_cert: bool) -> Endpoint {
    let (chain, key) = (pki.read("client.pem"), pki.read("client.key"));
    let client = with_client_cert.then_some((&chain[..], &key[..]));
    let config = client_config_from_pem(&pki.read(ca), client).unwrap();
    Endpoint::tls(addr, ServerName::from(addr.ip()), Arc::new(config))
}

/// A loopback port where nothing listens (bound then closed).
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn tls_calls_and_watch_with_a_client_certificate() {
    let pki = Pki::new();
    let etcd = pki.etcd();
    let c = EtcdClient::with_endpoints(vec![endpoint(&pki, etcd.client, "ca.pem", true)]);

    let r1 = c
        .put(&Put::new(b"/t/a", b"one"))
        .await
        .unwrap()
        .header
        .revision;
    let got = c.range(&Range::prefix(b"/t/")).await.unwrap();
    assert_eq!(got.kvs.len(), 1);
    assert_eq!(
        (
            &got.kvs[0].key[..],
            &got.kvs[0].value[..],
            got.kvs[0].mod_revision
        ),
        (&b"/t/a"[..], &b"one"[..], r1)
    );

    let mut w = c
        .watch(&Watch::prefix(b"/t/").from_revision(r1 + 1))
        .await
        .unwrap();
    let b = c
        .put(&Put::new(b"/t/b", b"two"))
        .await
        .unwrap()
        .header
        .revision;
    let gone = c
        .delete_range(&DeleteRange::key(b"/t/a"))
        .await
        .unwrap()
        .header
        .revision;
    let seen = events(&mut w, 2).await;
    assert!(seen[0].created);
    assert_eq!(
        keys_and_revisions(&seen),
        [
            (EventKind::Put, b"/t/b".to_vec(), b),
            (EventKind::Delete, b"/t/a".to_vec(), gone)
        ]
    );

    // The clear-text client on the TLS port gets no answer it can read.
    let plain = EtcdClient::new(etcd.client).with_timeout(Duration::from_secs(2));
    assert!(plain.range(&Range::key(b"/t/b")).await.is_err());
}

#[tokio::test]
async fn tls_refuses_a_client_without_certificate_and_another_ca() {
    let pki = Pki::new();
    let etcd = pki.etcd();

    // No client certificate: etcd refuses it with an alert, a TLS error naming the endpoint.
    let anonymous = EtcdClient::with_endpoints(vec![endpoint(&pki, etcd.client, "ca.pem", false)]);
    let refused = anonymous.put(&Put::new(b"/t/x", b"x")).await;
    assert!(
        matches!(
            &refused,
            Err(ClientError::Tls { endpoint, source: rustls::Error::AlertReceived(_) })
                if *endpoint == etcd.client
        ),
        "{refused:?}"
    );
    let mut w = anonymous.watch(&Watch::prefix(b"/t/")).await;
    assert!(
        matches!(w, Err(ClientError::Tls { .. })),
        "{:?}",
        w.as_ref().err()
    );

    // etcd's certificate signed by a CA we do not trust: refused by our verifier.
    let wrong_ca =
        EtcdClient::with_endpoints(vec![endpoint(&pki, etcd.client, "other-ca.pem", true)]);
    let refused = wrong_ca.range(&Range::key(b"/t/x")).await;
    assert!(
        matches!(
            &refused,
            Err(ClientError::Tls {
                endpoint,
                source: rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            }) if *endpoint == etcd.client
        ),
        "{refused:?}"
    );
    w = wrong_ca.watch(&Watch::prefix(b"/t/")).await;
    assert!(
        matches!(w, Err(ClientError::Tls { .. })),
        "{:?}",
        w.as_ref().err()
    );

    // Nothing was written by the refused clients.
    let good = EtcdClient::with_endpoints(vec![endpoint(&pki, etcd.client, "ca.pem", true)]);
    assert!(
        good.range(&Range::prefix(b"/t/"))
            .await
            .unwrap()
            .kvs
            .is_empty()
    );
}

#[test]
fn tls_config_errors_name_the_input() {
    let pki = Pki::new();
    let (ca, chain, key) = (
        pki.read("ca.pem"),
        pki.read("client.pem"),
        pki.read("client.key"),
    );
    let input = |r: Result<rustls::ClientConfig, TlsConfigError>| match r {
        Err(TlsConfigError::Pem { input, .. }) => Some(input),
        Err(e) => panic!("not a PEM error: {e}"),
        Ok(_) => None,
    };
    assert_eq!(input(client_config_from_pem(&ca, None)), None);
    assert_eq!(
        input(client_config_from_pem(&ca, Some((&chain, &key)))),
        None
    );
    assert_eq!(input(client_config_from_pem(b"", None)), Some(TlsInput::Ca));
    assert_eq!(
        input(client_config_from_pem(&key, None)),
        Some(TlsInput::Ca)
    );
    assert_eq!(
        input(client_config_from_pem(&ca, Some((b"", &key)))),
        Some(TlsInput::ClientChain)
    );
    assert_eq!(
        input(client_config_from_pem(&ca, Some((&chain, &chain)))),
        Some(TlsInput::ClientKey)
    );
    // A key that is not the certificate's.
    let other_key = pki.read("etcd.key");
    let mismatch = client_config_from_pem(&ca, Some((&chain, &other_key)));
    assert!(
        matches!(mismatch, Err(TlsConfigError::ClientCert(_))),
        "{:?}",
        mismatch.err()
    );
    let text = client_config_from_pem(&ca, Some((b"", &key)))
        .err()
        .unwrap()
        .to_string();
    assert!(text.contains("client certificate chain"), "{text}");
}

/// Accepts connections on loopback and counts them; answers nothing.
async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    (addr, n, task)
}

#[tokio::test]
async fn failover_between_endpoints() {
    let pki = Pki::new();
    let etcd = pki.etcd();
    let good = endpoint(&pki, etcd.client, "ca.pem", true);

    // A closed port first, the real etcd second: the call succeeds, and the next call starts
    // with etcd.
    let closed = closed_port();
    let c = EtcdClient::with_endpoints(vec![Endpoint::plain(closed), good.clone()]);
    assert_eq!(c.preferred(), Some(closed));
    let rev = c
        .put(&Put::new(b"/f/a", b"1"))
        .await
        .unwrap()
        .header
        .revision;
    assert_eq!(c.preferred(), Some(etcd.client));
    let mut w = c
        .watch(&Watch::prefix(b"/f/").from_revision(rev))
        .await
        .unwrap();
    assert_eq!(
        keys_and_revisions(&events(&mut w, 1).await),
        [(EventKind::Put, b"/f/a".to_vec(), rev)]
    );

    // A peer that accepts and never answers, then etcd: moved on after the time bound; the
    // next call does not go back to the mute peer.
    let (mute, accepted, task) = counting_listener().await;
    let c = EtcdClient::with_endpoints(vec![Endpoint::plain(mute), good.clone()])
        .with_timeout(Duration::from_millis(500));
    assert_eq!(
        c.range(&Range::key(b"/f/a")).await.unwrap().kvs[0].value,
        b"1"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    c.range(&Range::key(b"/f/a")).await.unwrap();
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the preferred endpoint is etcd now"
    );

    // A writer does not move on after a time-out (the mute peer may have applied it): the
    // time-out is the answer, and etcd is not asked.
    let writer = EtcdClient::with_endpoints(vec![Endpoint::plain(mute), good.clone()])
        .with_timeout(Duration::from_millis(500))
        .without_retry_after_timeout();
    let put = writer.put(&Put::new(b"/f/w", b"1")).await;
    assert!(
        matches!(put, Err(ClientError::Timeout { endpoint, .. }) if endpoint == mute),
        "{put:?}"
    );
    assert!(c.range(&Range::key(b"/f/w")).await.unwrap().kvs.is_empty());
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // A closed port still moves on for a writer: nothing was sent.
    let writer = EtcdClient::with_endpoints(vec![Endpoint::plain(closed_port()), good.clone()])
        .without_retry_after_timeout();
    writer.put(&Put::new(b"/f/w", b"2")).await.unwrap();

    // A TLS refusal moves on too: etcd with the wrong CA, then etcd with the right one.
    let bad = endpoint(&pki, etcd.client, "other-ca.pem", true);
    let c = EtcdClient::with_endpoints(vec![bad, good.clone()]);
    c.range(&Range::key(b"/f/a")).await.unwrap();
    assert_eq!(c.preferred(), Some(etcd.client));

    // etcd's own error does not move on: the counting peer after it is never tried.
    let c = EtcdClient::with_endpoints(vec![good.clone(), Endpoint::plain(mute)]);
    let again = c.lease_revoke(&LeaseRevoke { id: 12345 }).await;
    assert!(
        matches!(again, Err(ClientError::Etcd { status: 404, .. })),
        "{again:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    task.abort();

    // All fail: the last endpoint's error, naming it.
    let (a, b) = (closed_port(), closed_port());
    let c = EtcdClient::with_endpoints(vec![Endpoint::plain(a), Endpoint::plain(b)]);
    let all = c.range(&Range::key(b"/f/a")).await;
    assert!(
        matches!(&all, Err(ClientError::Connect { endpoint, .. }) if *endpoint == b),
        "{all:?}"
    );
    assert!(all.unwrap_err().to_string().contains(&b.to_string()));
    let w = c.watch(&Watch::prefix(b"/f/")).await;
    assert!(
        matches!(&w, Err(ClientError::Connect { endpoint, .. }) if *endpoint == b),
        "{:?}",
        w.as_ref().err()
    );
    let none = EtcdClient::with_endpoints(Vec::new())
        .range(&Range::key(b"/f/a"))
        .await;
    assert!(matches!(none, Err(ClientError::NoEndpoint)), "{none:?}");
}
