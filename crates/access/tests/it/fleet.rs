//! The `fleet` gateway codec against a real etcd started on loopback (a temporary data
//! directory, ephemeral ports), through a tiny blocking HTTP/1.1 client written here: every
//! request is built by the module's encoders and every answer read by its decoders. Then
//! properties of `prefix_end` and of the decoders on arbitrary input.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ippin_access::fleet::{
    Compaction, Compare, DeleteRange, DeleteRangeResponse, EventKind, FleetError, HeaderResponse,
    LeaseGrant, LeaseGrantResponse, LeaseKeepAlive, LeaseKeepAliveResponse, LeaseRevoke,
    MAX_BODY_BYTES, MessageSplitter, Op, OpResponse, Put, PutResponse, Range, RangeResponse,
    Request, Txn, TxnResponse, Watch, WatchResponse, WatchStream, prefix_end,
};
pub(super) use ippin_test_support::etcd::Etcd;
use proptest::prelude::*;

/// The gateway calls these tests make, on the shared test etcd
/// ([`ippin_test_support::etcd::Etcd`]).
trait Gateway {
    fn call(&self, req: &Request) -> (u16, Vec<u8>);
    fn ok(&self, req: &Request) -> Vec<u8>;
    fn put(&self, key: &[u8], value: &[u8]) -> i64;
    fn delete(&self, key: &[u8]) -> i64;
    fn range(&self, req: &Range) -> RangeResponse;
    fn watch(&self, w: &Watch) -> WatchConn;
}

impl Gateway for Etcd {
    /// POSTs a request; the status and the body.
    fn call(&self, req: &Request) -> (u16, Vec<u8>) {
        let mut r = send(self.client, "POST", req.path, &req.body);
        let (status, chunked, len) = read_head(&mut r);
        (status, read_body(&mut r, chunked, len))
    }

    /// POSTs a request that must succeed.
    fn ok(&self, req: &Request) -> Vec<u8> {
        let (status, body) = self.call(req);
        assert_eq!(
            status,
            200,
            "{} answered {status}: {}",
            req.path,
            String::from_utf8_lossy(&body)
        );
        body
    }

    fn put(&self, key: &[u8], value: &[u8]) -> i64 {
        PutResponse::decode(&self.ok(&Put::new(key, value).encode()))
            .unwrap()
            .header
            .revision
    }

    fn delete(&self, key: &[u8]) -> i64 {
        let d = DeleteRangeResponse::decode(&self.ok(&DeleteRange::key(key).encode())).unwrap();
        assert_eq!(d.deleted, 1);
        d.header.revision
    }

    fn range(&self, req: &Range) -> RangeResponse {
        RangeResponse::decode(&self.ok(&req.encode())).unwrap()
    }

    fn watch(&self, w: &Watch) -> WatchConn {
        let req = w.encode();
        let mut r = send(self.client, "POST", req.path, &req.body);
        let (status, chunked, _) = read_head(&mut r);
        assert_eq!(status, 200);
        assert!(chunked, "a watch answers with a chunked stream");
        WatchConn {
            r,
            stream: WatchStream::new(),
        }
    }
}

/// Sends one request with a Content-Length body; the reader of the answer.
fn send(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> BufReader<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect to etcd");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = s.try_clone().unwrap();
    write!(
        w,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    w.write_all(body).unwrap();
    BufReader::new(s)
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    r.by_ref()
        .take(8192)
        .read_line(&mut l)
        .expect("read a line");
    assert!(l.ends_with("\r\n"), "line not ended by CRLF: {l:?}");
    l.truncate(l.len() - 2);
    l
}

/// The status, whether the body is chunked, and its Content-Length.
fn read_head(r: &mut BufReader<TcpStream>) -> (u16, bool, Option<usize>) {
    let status_line = line(r);
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let (mut chunked, mut len) = (false, None);
    for _ in 0..100 {
        let h = line(r);
        if h.is_empty() {
            return (status, chunked, len);
        }
        let (name, value) = h.split_once(':').expect("a header");
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            len = Some(value.parse().expect("a length"));
        }
    }
    panic!("too many headers");
}

/// One chunk's data; `None` after the last chunk (trailers read).
fn read_chunk(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let size_line = line(r);
    let hex = size_line.split(';').next().unwrap_or("").trim();
    let size = usize::from_str_radix(hex, 16).expect("a chunk size");
    assert!(size <= MAX_BODY_BYTES, "chunk of {size} bytes");
    if size == 0 {
        while !line(r).is_empty() {}
        return None;
    }
    let mut data = vec![0; size];
    r.read_exact(&mut data).expect("chunk data");
    assert_eq!(line(r), "", "chunk not ended by CRLF");
    Some(data)
}

fn read_body(r: &mut BufReader<TcpStream>, chunked: bool, len: Option<usize>) -> Vec<u8> {
    let mut body = Vec::new();
    if chunked {
        while let Some(c) = read_chunk(r) {
            body.extend_from_slice(&c);
            assert!(body.len() <= MAX_BODY_BYTES);
        }
    } else if let Some(n) = len {
        assert!(n <= MAX_BODY_BYTES);
        body.resize(n, 0);
        r.read_exact(&mut body).expect("body");
    } else {
        r.by_ref()
            .take(MAX_BODY_BYTES as u64 + 1)
            .read_to_end(&mut body)
            .unwrap();
    }
    body
}

/// An open watch: chunks fed to the module's stream decoder.
struct WatchConn {
    r: BufReader<TcpStream>,
    stream: WatchStream,
}

impl WatchConn {
    /// Reads messages until `enough` holds of all read so far, within 10 s.
    fn until(&mut self, enough: impl Fn(&[WatchResponse]) -> bool) -> Vec<WatchResponse> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while !enough(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "watch: not enough within 10 s: {got:#?}");
            self.r.get_ref().set_read_timeout(Some(left)).unwrap();
            let chunk = read_chunk(&mut self.r).expect("the watch stream ended");
            got.extend(self.stream.push(&chunk).expect("a watch message decodes"));
        }
        got
    }

    /// The events of `messages` as (kind, key, value, mod_revision).
    fn events(messages: &[WatchResponse]) -> Vec<(EventKind, Vec<u8>, Vec<u8>, i64)> {
        messages
            .iter()
            .flat_map(|m| &m.events)
            .map(|e| {
                (
                    e.kind,
                    e.kv.key.clone(),
                    e.kv.value.clone(),
                    e.kv.mod_revision,
                )
            })
            .collect()
    }

    fn count_events(n: usize) -> impl Fn(&[WatchResponse]) -> bool {
        move |got| got.iter().map(|m| m.events.len()).sum::<usize>() >= n
    }
}

#[test]
fn kv_txn_and_leases_against_etcd() {
    let etcd = Etcd::start();

    // put and range of a prefix: the keys under it, in key order, and nothing outside it.
    let r1 = etcd.put(b"/ippin/roles/a", b"one");
    let r2 = etcd.put(b"/ippin/roles/b", b"two");
    etcd.put(b"/ippin0", b"outside, just after the prefix");
    etcd.put(b"/ippin.", b"outside, just before the prefix");
    assert!(r2 > r1);
    let got = etcd.range(&Range::prefix(b"/ippin/"));
    let kvs: Vec<_> = got
        .kvs
        .iter()
        .map(|kv| (kv.key.as_slice(), kv.value.as_slice(), kv.mod_revision))
        .collect();
    assert_eq!(
        kvs,
        [
            (&b"/ippin/roles/a"[..], &b"one"[..], r1),
            (&b"/ippin/roles/b"[..], &b"two"[..], r2)
        ]
    );
    assert_eq!(got.count, 2);
    assert!(got.header.revision >= r2 + 2);
    // Reading at an older revision: the snapshot then.
    let old = etcd.range(&Range {
        revision: Some(r1),
        ..Range::prefix(b"/ippin/")
    });
    assert_eq!(old.kvs.len(), 1);
    // Keys only: the keys and revisions, no values.
    let keys = etcd.range(&Range {
        keys_only: true,
        ..Range::prefix(b"/ippin/")
    });
    assert_eq!(keys.kvs.len(), 2);
    assert!(
        keys.kvs
            .iter()
            .all(|kv| kv.value.is_empty() && kv.mod_revision > 0)
    );
    // The latest change under the prefix: the most recently modified key first.
    let latest = etcd.range(&Range {
        keys_only: true,
        newest_first: true,
        limit: Some(1),
        ..Range::prefix(b"/ippin/")
    });
    assert_eq!(latest.kvs.len(), 1);
    assert_eq!(
        latest.kvs[0].mod_revision,
        keys.kvs.iter().map(|kv| kv.mod_revision).max().unwrap()
    );
    assert_eq!(latest.count, 2);

    // txn create-only: succeeds once, fails the second time and returns what is there.
    let create = |value: &[u8]| Txn {
        compare: vec![Compare::absent(b"/ippin/users/u")],
        success: vec![Op::Put(Put::new(b"/ippin/users/u", value))],
        failure: vec![Op::Range(Range::key(b"/ippin/users/u"))],
    };
    let first = TxnResponse::decode(&etcd.ok(&create(b"v1").encode())).unwrap();
    assert!(first.succeeded);
    assert!(matches!(first.responses[..], [OpResponse::Put(_)]));
    let second = TxnResponse::decode(&etcd.ok(&create(b"v2").encode())).unwrap();
    assert!(
        !second.succeeded,
        "a create-only txn on an existing key must fail"
    );
    let [OpResponse::Range(seen)] = &second.responses[..] else {
        panic!("the failure branch's range: {second:?}");
    };
    assert_eq!(seen.kvs[0].value, b"v1");
    // Compare-and-swap on mod_revision: the stale revision loses, the current one wins.
    let at = seen.kvs[0].mod_revision;
    let cas = |rev: i64| Txn {
        compare: vec![Compare::mod_revision(b"/ippin/users/u", rev)],
        success: vec![Op::Put(Put::new(b"/ippin/users/u", b"v3"))],
        failure: vec![],
    };
    assert!(
        !TxnResponse::decode(&etcd.ok(&cas(at - 1).encode()))
            .unwrap()
            .succeeded
    );
    // A guard: the key exists and was not written after a revision. Held at the revision
    // it was read at; broken once it is written again, and once it is removed.
    let guard = |key: &[u8], since: i64| Txn {
        compare: vec![Compare::exists(key), Compare::unchanged_since(key, since)],
        success: vec![],
        failure: vec![],
    };
    let held = |t: Txn| {
        TxnResponse::decode(&etcd.ok(&t.encode()))
            .unwrap()
            .succeeded
    };
    assert!(held(guard(b"/ippin/users/u", at)));
    assert!(!held(guard(b"/ippin/users/u", at - 1)), "written after");
    assert!(!held(guard(b"/ippin/users/nobody", at)), "absent");
    assert!(
        TxnResponse::decode(&etcd.ok(&cas(at).encode()))
            .unwrap()
            .succeeded
    );
    assert_eq!(
        etcd.range(&Range::key(b"/ippin/users/u")).kvs[0].value,
        b"v3"
    );

    // lease grant, put with the lease, keepalive, revoke: the key is gone.
    let lease =
        LeaseGrantResponse::decode(&etcd.ok(&LeaseGrant { ttl: 60, id: None }.encode())).unwrap();
    assert_eq!(lease.ttl, 60);
    etcd.ok(&Put::new(b"/ippin/lockouts/u", b"locked")
        .with_lease(lease.id)
        .encode());
    let held = etcd.range(&Range::key(b"/ippin/lockouts/u"));
    assert_eq!(held.kvs[0].lease, lease.id);
    let alive = LeaseKeepAliveResponse::decode(&etcd.ok(&LeaseKeepAlive { id: lease.id }.encode()))
        .unwrap();
    assert_eq!(alive.id, lease.id);
    assert!(alive.ttl > 0);
    HeaderResponse::decode(&etcd.ok(&LeaseRevoke { id: lease.id }.encode())).unwrap();
    assert!(etcd.range(&Range::key(b"/ippin/lockouts/u")).kvs.is_empty());
    let ended = LeaseKeepAliveResponse::decode(&etcd.ok(&LeaseKeepAlive { id: lease.id }.encode()))
        .unwrap();
    assert!(ended.ttl <= 0, "a revoked lease has no time left");
    // Revoking it again: etcd's error, typed.
    let (status, body) = etcd.call(&LeaseRevoke { id: lease.id }.encode());
    assert_eq!(status, 404);
    assert!(matches!(
        HeaderResponse::decode(&body),
        Err(FleetError::Gateway { code: 5, .. })
    ));

    // Delete of a prefix, with the previous values.
    let gone = DeleteRangeResponse::decode(
        &etcd.ok(&DeleteRange {
            prev_kv: true,
            ..DeleteRange::prefix(b"/ippin/roles/")
        }
        .encode()),
    )
    .unwrap();
    assert_eq!(gone.deleted, 2);
    assert_eq!(gone.prev_kvs.len(), 2);
    assert!(etcd.range(&Range::prefix(b"/ippin/roles/")).kvs.is_empty());
}

#[test]
fn watch_in_order_resume_and_progress() {
    let etcd = Etcd::start();
    let start = etcd.put(b"/w/before", b"0") + 1;

    // A watch from a revision: the later puts and deletes, in order, then progress.
    let mut w = etcd.watch(&Watch {
        progress_notify: true,
        prev_kv: true,
        ..Watch::prefix(b"/w/").from_revision(start)
    });
    let created = w.until(|got| !got.is_empty());
    assert!(created[0].created);
    let a1 = etcd.put(b"/w/a", b"1");
    let b1 = etcd.put(b"/w/b", b"1");
    etcd.put(b"/x/outside", b"not watched");
    let a2 = etcd.put(b"/w/a", b"2");
    let da = etcd.delete(b"/w/a");
    let seen = w.until(WatchConn::count_events(4));
    assert_eq!(
        WatchConn::events(&seen),
        [
            (EventKind::Put, b"/w/a".to_vec(), b"1".to_vec(), a1),
            (EventKind::Put, b"/w/b".to_vec(), b"1".to_vec(), b1),
            (EventKind::Put, b"/w/a".to_vec(), b"2".to_vec(), a2),
            (EventKind::Delete, b"/w/a".to_vec(), Vec::new(), da),
        ]
    );
    let delete = seen.iter().flat_map(|m| &m.events).last().unwrap();
    assert_eq!(delete.prev_kv.as_ref().unwrap().value, b"2");
    // Nothing changes: a progress message at the current revision (etcd started with a
    // 200 ms progress interval).
    let progress = w.until(|got| got.iter().any(WatchResponse::is_progress));
    let p = progress.iter().find(|m| m.is_progress()).unwrap();
    assert!(p.header.revision >= da);

    // Disconnect; changes meanwhile; resume from the last applied revision + 1.
    drop(w);
    let b2 = etcd.put(b"/w/b", b"2");
    let c1 = etcd.put(b"/w/c", b"1");
    let db = etcd.delete(b"/w/b");
    let mut w = etcd.watch(&Watch::prefix(b"/w/").from_revision(da + 1));
    let missed = w.until(WatchConn::count_events(3));
    assert!(missed[0].created);
    assert_eq!(
        WatchConn::events(&missed),
        [
            (EventKind::Put, b"/w/b".to_vec(), b"2".to_vec(), b2),
            (EventKind::Put, b"/w/c".to_vec(), b"1".to_vec(), c1),
            (EventKind::Delete, b"/w/b".to_vec(), Vec::new(), db),
        ],
        "exactly the missed events, none applied before"
    );
}

#[test]
fn compaction_reported_to_a_watch_from_before_it() {
    let etcd = Etcd::start();
    let first = etcd.put(b"/c/k", b"1");
    etcd.put(b"/c/k", b"2");
    let last = etcd.put(b"/c/k", b"3");
    HeaderResponse::decode(
        &etcd.ok(&Compaction {
            revision: last,
            physical: true,
        }
        .encode()),
    )
    .unwrap();

    // A range at a compacted revision: etcd's error, typed (11: out of range).
    let (status, body) = etcd.call(
        &Range {
            revision: Some(first),
            ..Range::key(b"/c/k")
        }
        .encode(),
    );
    assert_ne!(status, 200);
    assert!(matches!(
        RangeResponse::decode(&body),
        Err(FleetError::Gateway { code: 11, .. })
    ));

    // A watch from a compacted revision: canceled, with the compact revision.
    let mut w = etcd.watch(&Watch::prefix(b"/c/").from_revision(first));
    let got = w.until(|got| got.iter().any(|m| m.canceled));
    let cancel = got.iter().find(|m| m.canceled).unwrap();
    assert_eq!(cancel.compact_revision, last);
    assert!(WatchConn::events(&got).is_empty());

    // From the compact revision on, the watch works.
    let mut w = etcd.watch(&Watch::prefix(b"/c/").from_revision(last));
    let got = w.until(WatchConn::count_events(1));
    assert_eq!(
        WatchConn::events(&got),
        [(EventKind::Put, b"/c/k".to_vec(), b"3".to_vec(), last)]
    );
}

/// What etcd means by a prefix: every key that starts with it, and no other.
fn in_prefix_range(prefix: &[u8], key: &[u8]) -> bool {
    let (start, end) = if prefix.is_empty() {
        (vec![0u8], vec![0u8])
    } else {
        (prefix.to_vec(), prefix_end(prefix))
    };
    // An end of [0] means "no end" (etcd's `--from-key`).
    key >= start.as_slice() && (end == [0] || key < end.as_slice())
}

/// etcd's `GetPrefixRangeEnd` (clientv3/op.go), written as the Go loop is.
fn reference_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    for i in (0..end.len()).rev() {
        if end[i] < 0xff {
            end[i] += 1;
            end.truncate(i + 1);
            return end;
        }
    }
    vec![0]
}

/// Bytes from a small alphabet around the carry (so that a key just past a prefix's range is
/// often generated), or any bytes.
fn bytes_near_ff(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(prop::sample::select(vec![0u8, 1, 0xfe, 0xff]), len.clone()),
        prop::collection::vec(any::<u8>(), len),
    ]
}

/// Splits `data` at the given cut points.
fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut prev = 0;
    for c in at {
        out.push(&data[prev..c]);
        prev = c;
    }
    out.push(&data[prev..]);
    out
}

fn watch_message() -> impl Strategy<Value = String> {
    (
        0i64..1000,
        any::<bool>(),
        prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..8)), 0..4),
    )
        .prop_map(|(rev, created, events)| {
            use base64::Engine as _;
            let events: Vec<String> = events
                .iter()
                .map(|(del, key)| {
                    let key = base64::engine::general_purpose::STANDARD.encode(key);
                    let kind = if *del { r#""type":"DELETE","# } else { "" };
                    format!(r#"{{{kind}"kv":{{"key":"{key}","mod_revision":"{rev}"}}}}"#)
                })
                .collect();
            format!(
                r#"{{"result":{{"header":{{"revision":"{rev}","x":"{{[\"}}"}},"created":{created},"events":[{}]}}}}"#,
                events.join(",")
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    // etcd refuses an empty key, so keys here are not empty.
    fn prefix_end_matches_starts_with(prefix in bytes_near_ff(0..6), key in bytes_near_ff(1..6)) {
        let mut key_under = prefix.clone();
        key_under.extend_from_slice(&key);
        prop_assert!(in_prefix_range(&prefix, &key_under));
        prop_assert_eq!(in_prefix_range(&prefix, &key), key.starts_with(&prefix));
        let end = prefix_end(&prefix);
        prop_assert_eq!(&end, &reference_end(&prefix));
        // The end itself is outside the range, and so is anything after it.
        if end != [0] {
            prop_assert!(!in_prefix_range(&prefix, &end));
            let mut past = end.clone();
            past.extend_from_slice(&key);
            prop_assert!(!in_prefix_range(&prefix, &past));
        }
    }

    #[test]
    fn decoders_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = RangeResponse::decode(&body);
        let _ = PutResponse::decode(&body);
        let _ = DeleteRangeResponse::decode(&body);
        let _ = TxnResponse::decode(&body);
        let _ = HeaderResponse::decode(&body);
        let _ = LeaseGrantResponse::decode(&body);
        let _ = LeaseKeepAliveResponse::decode(&body);
        let _ = WatchResponse::decode(&body);
        let _ = WatchStream::with_max_message(64).push(&body);
    }

    #[test]
    fn decoders_never_panic_on_json_shapes(body in r#"\{("(header|result|kvs|events|kv|key|revision|type|responses|response_put|error|code)":("[A-Za-z0-9+/=-]{0,6}"|-?[0-9]{1,3}|true|null|\[\{\}?\]|\{)[,}]{0,2}){0,8}"#) {
        let body = body.as_bytes();
        let _ = RangeResponse::decode(body);
        let _ = TxnResponse::decode(body);
        let _ = WatchResponse::decode(body);
        let _ = LeaseKeepAliveResponse::decode(body);
    }

    #[test]
    fn stream_same_whatever_the_chunking(
        messages in prop::collection::vec(watch_message(), 1..5),
        gaps in prop::collection::vec("[ \r\n\t]{0,3}", 5),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for (m, gap) in messages.iter().zip(gaps.iter().cycle()) {
            stream.extend_from_slice(m.as_bytes());
            stream.extend_from_slice(gap.as_bytes());
        }
        let mut whole = MessageSplitter::new();
        let whole_msgs = whole.push(&stream).unwrap();
        prop_assert_eq!(whole_msgs.len(), messages.len());
        for (got, want) in whole_msgs.iter().zip(&messages) {
            prop_assert_eq!(got.as_slice(), want.as_bytes());
        }
        let mut split = MessageSplitter::new();
        let mut watch = WatchStream::new();
        let (mut split_msgs, mut decoded) = (Vec::new(), Vec::new());
        for piece in pieces(&stream, &cuts) {
            split_msgs.extend(split.push(piece).unwrap());
            decoded.extend(watch.push(piece).unwrap());
            prop_assert!(split.pending() <= stream.len());
        }
        prop_assert_eq!(&split_msgs, &whole_msgs);
        let direct: Vec<_> = whole_msgs.iter().map(|m| WatchResponse::decode(m).unwrap()).collect();
        prop_assert_eq!(decoded, direct);
        prop_assert!(split.finish().is_ok());
    }

    #[test]
    fn stream_bound_holds_whatever_the_chunking(
        data in prop::collection::vec(prop_oneof![Just(b'{'), Just(b'}'), Just(b'"'), Just(b'\\'), Just(b' '), any::<u8>()], 0..200),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        max in 1usize..40,
    ) {
        let whole = MessageSplitter::with_max_message(max).push(&data);
        let mut s = MessageSplitter::with_max_message(max);
        let mut got = Ok(Vec::new());
        for piece in pieces(&data, &cuts) {
            match s.push(piece) {
                Ok(m) => { if let Ok(all) = &mut got { all.extend(m) } }
                Err(e) => { got = Err(e); break; }
            }
            prop_assert!(s.pending() <= max);
        }
        for m in got.iter().flatten() {
            prop_assert!(m.len() <= max);
        }
        prop_assert_eq!(got.is_ok(), whole.is_ok());
        if let (Ok(a), Ok(b)) = (&got, &whole) {
            prop_assert_eq!(a, b);
        }
    }
}
