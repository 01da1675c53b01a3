//! `allowed_endpoints`: a listener behind a cloud load balancer serves only connections
//! whose PROXY v2 header names an allowed VPC endpoint (AWS `0xEA` TLV), even though the
//! balancer itself is a trusted proxy.

use std::net::SocketAddr;

use ippin::client::{Endpoint, login};
use ippin_proxy_protocol::{Addresses, AwsVpceId, Command, V2Builder};
use ippin_test_support::free_port;

use crate::attacks::{serve, site, wait_audit};
use crate::ssh::harness::ip;

const ALLOWED: &str = "vpce-0123456789abcdef0";
const OTHER: &str = "vpce-0123456789abcdef1";

/// A PROXY v2 header for client 198.51.100.7, through VPC endpoint `vpce`.
fn header(vpce: &str) -> Vec<u8> {
    let id: AwsVpceId = vpce.parse().expect("VPC endpoint ID");
    V2Builder::new(Command::Proxy)
        .addresses(Addresses::Tcp4 {
            src: "198.51.100.7:5000".parse().expect("src"),
            dst: "127.0.0.1:443".parse().expect("dst"),
        })
        .expect("addresses")
        .aws_vpce_id(&id)
        .expect("TLV")
        .encode()
        .expect("encode")
}

#[tokio::test(flavor = "multi_thread")]
async fn only_allowed_vpc_endpoints_are_served() {
    ippin::install_crypto_provider();
    let lo = ip("127.0.0.1");
    let port = free_port(lo);
    let (tmp, config) = site(
        &format!(
            "  - {{kind: login, listen: 127.0.0.1:{port}, proxy_protocol: on, \
             trusted_proxies: [127.0.0.1/32], allowed_endpoints: [{ALLOWED}, azure:7]}}\n"
        ),
        "",
    );
    let addr = SocketAddr::new(lo, port);
    let _server = serve(&config, &[addr]);
    let ca = std::fs::read_to_string(tmp.path().join("ca/tls_ca.pem")).expect("CA");

    // Through the allowed endpoint, from the trusted balancer: served.
    let ep = Endpoint::new(addr, &ca).with_proxy_header(header(ALLOWED));
    login(&ep, "bob", "secret")
        .await
        .expect("bob logs in through the allowed endpoint");

    // Through another endpoint of the same balancer: refused before TLS, audited.
    let ep = Endpoint::new(addr, &ca).with_proxy_header(header(OTHER));
    let refused = login(&ep, "bob", "secret").await;
    assert!(refused.is_err(), "served through {OTHER}: {refused:?}");
    let line = wait_audit(tmp.path(), "the refused endpoint", |v| {
        v["event"] == "proxy_refused" && v["reason"] == "endpoint_not_allowed"
    });
    assert_eq!(line["listener"], "login", "{line}");
    // The line names the endpoint the connection came through.
    assert!(
        line["detail"].as_str().is_some_and(|d| d.contains(OTHER)),
        "{line}"
    );
    assert!(
        line["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{line}"
    );

    // A header that names no endpoint: refused with the same reason (one more line).
    let count = |tmp: &std::path::Path| {
        std::fs::read_to_string(tmp.join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("endpoint_not_allowed"))
            .count()
    };
    let before = count(tmp.path());
    let bare = V2Builder::new(Command::Proxy)
        .addresses(Addresses::Tcp4 {
            src: "198.51.100.7:5000".parse().expect("src"),
            dst: "127.0.0.1:443".parse().expect("dst"),
        })
        .expect("addresses")
        .encode()
        .expect("encode");
    let ep = Endpoint::new(addr, &ca).with_proxy_header(bare);
    assert!(login(&ep, "bob", "secret").await.is_err());
    assert!(
        ippin_test_support::wait_until(std::time::Duration::from_secs(10), || {
            count(tmp.path()) > before
        }),
        "no second endpoint_not_allowed line"
    );
}

/// Behind a private endpoint the client's address is one of the consumer's own network, and
/// another consumer may use the same address behind another endpoint: a pin issued through
/// one endpoint is bound to it. Alice (a pinning role) logs in through `ALLOWED` from
/// 198.51.100.7; a thief with her certificates and the same address, through `SECOND` (also
/// allowed on the listeners), is refused `pinned_endpoint_mismatch` on access and renewal,
/// while alice herself is served and renews, and the renewed certificates keep the binding.
/// Both certificates carry it, and `ippin inspect` shows it.
#[tokio::test(flavor = "multi_thread")]
async fn a_pin_issued_through_an_endpoint_holds_only_through_it() {
    use ippin::client::{ClientError, renew, whoami};
    const SECOND: &str = "vpce-0123456789abcdef2";
    ippin::install_crypto_provider();
    let lo = ip("127.0.0.1");
    let (login_port, tls_port) = (free_port(lo), free_port(lo));
    let (tmp, config) = site(
        &format!(
            "  - {{kind: login, listen: 127.0.0.1:{login_port}, proxy_protocol: on, \
             trusted_proxies: [127.0.0.1/32], allowed_endpoints: [{ALLOWED}, {SECOND}]}}\n  \
             - {{kind: tls, listen: 127.0.0.1:{tls_port}, proxy_protocol: on, \
             trusted_proxies: [127.0.0.1/32], allowed_endpoints: [{ALLOWED}, {SECOND}]}}\n"
        ),
        "",
    );
    let login_addr = SocketAddr::new(lo, login_port);
    let tls_addr = SocketAddr::new(lo, tls_port);
    let _server = serve(&config, &[login_addr, tls_addr]);
    let ca = std::fs::read_to_string(tmp.path().join("ca/tls_ca.pem")).expect("CA");
    let through =
        |addr: SocketAddr, vpce: &str| Endpoint::new(addr, &ca).with_proxy_header(header(vpce));

    let creds = login(&through(login_addr, ALLOWED), "alice", "secret")
        .await
        .expect("alice logs in through her endpoint");
    // Both certificates are bound to the endpoint.
    let der = ippin::ca::pem_to_der(&creds.tls_cert_pem, "CERTIFICATE").expect("pem");
    let id = ippin_cert::x509::client_identity(&der).expect("identity");
    assert_eq!(id.pin, Some("198.51.100.7/32".parse().unwrap()));
    assert_eq!(id.pinned_endpoint.as_deref(), Some(ALLOWED));
    let ssh = ippin_cert::ssh::parse_certificate(&creds.ssh_certificate).expect("ssh certificate");
    let options = ippin_cert::ssh::read_options(&ssh).expect("options");
    assert_eq!(options.pinned_endpoint.as_deref(), Some(ALLOWED));
    assert_eq!(
        options.source_address.map(|s| s.to_string()).as_deref(),
        Some("198.51.100.7/32")
    );
    let shown = ippin::inspect::cert(creds.tls_cert_pem.as_bytes());
    assert!(shown.stdout.contains(ALLOWED), "{}", shown.stdout);
    // A refused login names the endpoint it came through too.
    login(&through(login_addr, SECOND), "alice", "wrong")
        .await
        .expect_err("a wrong password");
    let refused = wait_audit(tmp.path(), "the refused login", |v| {
        v["event"] == "login_refused"
    });
    assert_eq!(refused["endpoint"], SECOND, "{refused}");

    // Alice, through her endpoint: served.
    whoami(&through(tls_addr, ALLOWED), &creds)
        .await
        .expect("alice through her endpoint");
    // The same address through another endpoint: refused, and told why.
    let code = |e: ClientError| match e {
        ClientError::Refused { error, .. } => error,
        other => format!("{other:?}"),
    };
    let stolen = whoami(&through(tls_addr, SECOND), &creds)
        .await
        .unwrap_err();
    assert_eq!(code(stolen), "pinned_endpoint_mismatch");
    let line = wait_audit(tmp.path(), "the refusal", |v| {
        v["event"] == "access_denied" && v["reason"] == "pinned_endpoint_mismatch"
    });
    assert_eq!(line["user"], "alice", "{line}");
    // The audit lines say which endpoint: the refusal's, and the login's binding.
    assert_eq!(line["endpoint"], SECOND, "{line}");
    let issued = wait_audit(tmp.path(), "the login", |v| v["event"] == "login_issued");
    assert_eq!(issued["pinned_endpoint"], ALLOWED, "{issued}");
    let stolen = renew(&through(tls_addr, SECOND), &creds).await.unwrap_err();
    assert_eq!(code(stolen), "pinned_endpoint_mismatch");

    // Alice renews through her endpoint: the binding is kept.
    let renewed = renew(&through(tls_addr, ALLOWED), &creds)
        .await
        .expect("alice renews");
    let der = ippin::ca::pem_to_der(&renewed.tls_cert_pem, "CERTIFICATE").expect("pem");
    let id = ippin_cert::x509::client_identity(&der).expect("identity");
    assert_eq!(id.pinned_endpoint.as_deref(), Some(ALLOWED));
    let ssh =
        ippin_cert::ssh::parse_certificate(&renewed.ssh_certificate).expect("ssh certificate");
    assert_eq!(
        ippin_cert::ssh::read_options(&ssh)
            .expect("options")
            .pinned_endpoint
            .as_deref(),
        Some(ALLOWED)
    );
    let stolen = whoami(&through(tls_addr, SECOND), &renewed)
        .await
        .unwrap_err();
    assert_eq!(code(stolen), "pinned_endpoint_mismatch");
}
