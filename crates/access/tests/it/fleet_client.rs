//! The async `fleet::client` against a real etcd on loopback (the same start-up as
//! `fleet.rs`): calls, a watch that ends when etcd is killed and resumes after a restart on
//! the same data directory, and the body bound.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use ippin_access::fleet::client::{ClientError, EtcdClient, EtcdWatch};
use ippin_access::fleet::{
    Compare, DeleteRange, EventKind, FleetError, LeaseGrant, LeaseKeepAlive, LeaseRevoke,
    MAX_BODY_BYTES, Op, OpResponse, Put, Range, Txn, Watch, WatchResponse,
};

use super::fleet::Etcd;

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
        matches!(timed_out, Err(ClientError::Timeout { after }) if after == Duration::from_millis(300)),
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
