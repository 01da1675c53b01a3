//! Network pins (a role's `pin_source_ip_prefix`): the CIDR form of the
//! X.509 extension, `source-address=<net>/<len>` in SSH certificates, and
//! the Teleport layout's refusal.

use ipnet::IpNet;
use ippin_cert::ssh::{SshCa, SshCertRequest, SshValidation, validate_user_cert};
use ippin_cert::ssh_key::{Algorithm, PrivateKey};
use ippin_cert::x509::{
    self, ClientCertRequest, PinnedNetwork, Profile, X509Ca, client_identity, pin, pin_fast,
    pinned_ip, pinned_ip_fast,
};

use crate::support::{NOW, rng};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn request(pin: &str, profile: Profile) -> Result<ClientCertRequest, ippin_cert::Error> {
    ClientCertRequest::builder("alice", crate::x509::spki())
        .role("dev")
        .validity(NOW - 60, NOW + 3600)
        .serial(9)
        .profile(profile)
        .pinned_network(net(pin))
        .build()
}

pub(crate) fn client_net(ca: &X509Ca, pin: &str, profile: Profile) -> Vec<u8> {
    ca.issue_client(&request(pin, profile).unwrap(), &mut rng())
        .unwrap()
}

/// The extension's value as issued: a DER PrintableString of the text.
fn extension_text(der: &[u8]) -> String {
    let cert = <x509_cert::Certificate as der::Decode>::from_der(der).unwrap();
    let ext = cert
        .tbs_certificate()
        .extensions()
        .unwrap()
        .iter()
        .find(|e| e.extn_id == x509::PINNED_IP_OID)
        .unwrap()
        .clone();
    let value = ext.extn_value.as_bytes();
    assert_eq!(value[0], 0x13, "PrintableString");
    assert_eq!(usize::from(value[1]), value.len() - 2);
    String::from_utf8(value[2..].to_vec()).unwrap()
}

#[test]
fn x509_network_pins_round_trip_in_both_readers() {
    let ca = crate::x509::ca();
    for (pin_text, text) in [
        ("2001:db8:1:2::/64", "2001:db8:1:2::/64"),
        ("198.51.100.0/24", "198.51.100.0/24"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        // one address: written without a length, readable by pinned_ip
        ("192.0.2.7/32", "192.0.2.7"),
        ("2001:db8::7/128", "2001:db8::7"),
        // IPv4-mapped networks are written as IPv4
        ("::ffff:198.51.100.0/120", "198.51.100.0/24"),
    ] {
        let der = client_net(&ca, pin_text, Profile::Ippin);
        assert_eq!(extension_text(&der), text, "{pin_text}");
        let want: IpNet = text
            .parse()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
            .unwrap();
        assert_eq!(pin(&der).unwrap(), Some(want), "{pin_text}");
        assert_eq!(pin_fast(&der).unwrap(), Some(want), "{pin_text}");
        assert_eq!(client_identity(&der).unwrap().pin, Some(want));
        let one = want.prefix_len() == want.max_prefix_len();
        for got in [pinned_ip(&der), pinned_ip_fast(&der)] {
            match got {
                Ok(Some(ip)) if one => assert_eq!(ip, want.addr()),
                Err(e) if !one => assert_eq!(e.code(), "pin_is_network"),
                other => panic!("{pin_text}: {other:?}"),
            }
        }
        crate::props::check_agreement(&der);
        // every truncation is refused by both readers, never read as unpinned
        for cut in 0..der.len() {
            let short = &der[..cut];
            assert!(pin(short).is_err() && pin_fast(short).is_err(), "{cut}");
        }
    }
}

#[test]
fn the_value_type_decodes_strictly() {
    let enc = |t: &str| {
        let mut v = vec![0x13, t.len() as u8];
        v.extend_from_slice(t.as_bytes());
        v
    };
    assert_eq!(
        PinnedNetwork::from_extension_value(&enc("2001:db8::/32"))
            .unwrap()
            .net(),
        net("2001:db8::/32")
    );
    for bad in [
        "2001:db8::1/32",
        "2001:db8::/032",
        "2001:DB8::/32",
        "192.0.2.7/32",
        "0.0.0.0/0",
        "::/0",
        "192.0.2.0/33",
        "192.0.2.0/24/24",
        "192.0.2.0/",
        "::ffff:192.0.2.0/120",
    ] {
        let e = PinnedNetwork::from_extension_value(&enc(bad)).unwrap_err();
        assert_eq!(e.code(), "extension_value", "{bad}");
    }
}

#[test]
fn the_teleport_layout_refuses_a_network_pin() {
    for profile in [Profile::Teleport, Profile::Both] {
        let e = request("2001:db8:1:2::/64", profile).unwrap_err();
        assert_eq!(e.code(), "profile_cannot_pin_network", "{profile:?}");
        assert!(e.to_string().contains("2001:db8:1:2::/64"), "{e}");
        // one address is fine in every layout
        let ca = crate::x509::ca();
        let der = client_net(&ca, "2001:db8::9/128", profile);
        assert_eq!(pin(&der).unwrap(), Some(net("2001:db8::9/128")));
    }
    // and the builder refuses what is not a canonical network
    for bad in ["192.0.2.1/24", "0.0.0.0/0"] {
        let e = request(bad, Profile::Ippin).unwrap_err();
        assert_eq!(e.code(), "bad_request", "{bad}");
    }
}

#[test]
fn an_ippin_network_beside_a_teleport_address_is_a_layout_mismatch() {
    // A Both-layout certificate pinned to 10.0.0.100, whose ippin extension
    // text is then replaced by the network holding it, 10.0.0.0/8 (same
    // length), and signed again: a reader must take neither silently.
    let ca = crate::x509::ca();
    let both = client_net(&ca, "10.0.0.100/32", Profile::Both);
    let cert = <x509_cert::Certificate as der::Decode>::from_der(&both).unwrap();
    let mut tbs = der::Encode::to_der(cert.tbs_certificate()).unwrap();
    let at = tbs.windows(10).rposition(|w| w == b"10.0.0.100").unwrap();
    tbs[at..at + 10].copy_from_slice(b"10.0.0.0/8");
    let der = ca.danger_sign_tbs(&tbs, &mut rng()).unwrap();
    assert_eq!(pin(&der).unwrap_err().code(), "layout_mismatch");
    assert_eq!(pin_fast(&der).unwrap_err().code(), "layout_mismatch");
    // and with the Teleport attribute alone the same bytes read as one address
    let teleport = client_net(&ca, "10.0.0.100/32", Profile::Teleport);
    assert_eq!(pin_fast(&teleport).unwrap(), Some(net("10.0.0.100/32")));
}

#[test]
fn ssh_network_pins_are_source_address_networks() {
    let ca = SshCa::generate_ed25519(&mut rng()).unwrap();
    let user = PrivateKey::random(&mut rng(), Algorithm::Ed25519).unwrap();
    let issue = |pin: &str| {
        SshCertRequest::builder(user.public_key().key_data().clone())
            .key_id("alice@ippin")
            .principal("alice")
            .validity(NOW - 60, NOW + 3600)
            .pinned_network(net(pin))
            .build()
    };
    let req = issue("2001:db8:1:2::/64").unwrap();
    assert_eq!(req.pin(), Some(net("2001:db8:1:2::/64")));
    assert_eq!(req.pinned_ip(), None);
    let cert = ca.issue(&req, &mut rng()).unwrap();
    let text = cert.critical_options().get("source-address").unwrap();
    assert_eq!(text, "2001:db8:1:2::/64");
    let trusted = [ca.fingerprint()];
    let v = validate_user_cert(&cert, &SshValidation::new(&trusted, "alice", NOW)).unwrap();
    assert!(v.check_source("2001:db8:1:2::1".parse().unwrap()).is_ok());
    assert!(
        v.check_source("2001:db8:1:2:ffff::9".parse().unwrap())
            .is_ok()
    );
    assert!(v.check_source("2001:db8:1:3::1".parse().unwrap()).is_err());
    assert_eq!(
        v.pinned_ip().unwrap_err().code(),
        "pin_is_network",
        "a network is not one address"
    );
    // mapped networks are written as IPv4
    let req = issue("::ffff:198.51.100.0/120").unwrap();
    assert_eq!(req.pin(), Some(net("198.51.100.0/24")));
    // refused: host bits, prefix 0
    assert_eq!(
        issue("2001:db8:1:2::1/64").unwrap_err().code(),
        "bad_request"
    );
    assert_eq!(
        issue("::/0").unwrap_err().code(),
        "source_address_malformed"
    );
}
