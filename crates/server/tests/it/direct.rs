//! curl straight to the `tls` listener with the certificates `ippin login`
//! issued: allowed from the pinned address, refused from another.

use crate::support::{ALICE, BOB, Cluster, inspect_cert, whoami};

#[test]
fn curl_whoami_from_the_pinned_ip_and_from_another() {
    let cluster = Cluster::start(&[
        "kind: login, proxy_protocol: off",
        "kind: tls, proxy_protocol: off",
    ]);
    let login_url = format!("https://{}", cluster.addr(0));
    let tls_port = cluster.ports[1];

    let alice = cluster.login(&login_url, ALICE, Some("127.0.0.1")).ok();
    assert!(
        alice.ran.stdout.contains("pinned to 127.0.0.1"),
        "{:?}",
        alice.ran
    );
    assert_eq!(
        alice.inspect_tls()["pinned"],
        serde_json::json!(["127.0.0.1/32"])
    );
    assert_eq!(
        inspect_cert(&alice.ssh_cert())["pinned"],
        serde_json::json!(["127.0.0.1/32"])
    );

    let ok = whoami(&cluster, &alice, tls_port, "127.0.0.1", &[]).expect(200);
    assert_eq!(ok["user"], "alice");
    assert_eq!(ok["pinned"], "127.0.0.1");
    assert_eq!(ok["via"], "direct");
    assert!(
        ok["observed"]
            .as_str()
            .unwrap_or_default()
            .starts_with("127.0.0.1:"),
        "{ok}"
    );

    let denied = whoami(&cluster, &alice, tls_port, "127.0.0.2", &[]).expect(403);
    assert_eq!(denied["error"], "pinned_ip_mismatch");
    assert!(
        denied["message"]
            .as_str()
            .unwrap_or_default()
            .contains("log in again"),
        "{denied}"
    );
    let line = cluster.wait_audit("the denied access", |v| {
        v["event"] == "access_denied" && v["reason"] == "pinned_ip_mismatch"
    });
    assert!(
        line["observed"]
            .as_str()
            .unwrap_or_default()
            .starts_with("127.0.0.2:")
    );

    // She logs in again from 127.0.0.2 and is allowed from there only.
    let again = cluster.login(&login_url, ALICE, Some("127.0.0.2")).ok();
    assert_eq!(
        again.inspect_tls()["pinned"],
        serde_json::json!(["127.0.0.2/32"])
    );
    whoami(&cluster, &again, tls_port, "127.0.0.2", &[]).expect(200);
    assert_eq!(
        whoami(&cluster, &again, tls_port, "127.0.0.1", &[]).expect(403)["error"],
        "pinned_ip_mismatch"
    );

    // bob's roles do not pin: allowed from both.
    let bob = cluster.login(&login_url, BOB, Some("127.0.0.1")).ok();
    assert_eq!(bob.inspect_tls()["pinned"], serde_json::json!([]));
    for from in ["127.0.0.1", "127.0.0.2"] {
        assert_eq!(
            whoami(&cluster, &bob, tls_port, from, &[]).expect(200)["user"],
            "bob"
        );
    }
}
