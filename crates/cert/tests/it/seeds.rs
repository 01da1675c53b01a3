//! Writes the hand-picked fuzz seeds for the hardening cases into
//! `fuzz/corpus/cert_*/seed-*`. Not run by default; this records how the
//! committed seeds were made:
//!
//! `cargo test -p ippin-cert --test it -- --ignored write_fuzz_seeds`

use std::fs;
use std::path::PathBuf;

use ippin_cert::ssh::SshCa;
use ippin_cert::ssh_key::certificate::{Builder, CertType};
use ippin_cert::ssh_key::{Algorithm, PrivateKey};

use crate::sshwire::{self, CRITICAL, SIGNATURE_KEY, Wire};
use crate::support::{NOW, rng};
use crate::x509::{attr, ca, crafted, ext, printable};

fn corpus(target: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn ssh_wire(key: &PrivateKey) -> Wire {
    let user = PrivateKey::random(&mut rng(), Algorithm::Ed25519).unwrap();
    let mut b = Builder::new(
        vec![7; 32],
        user.public_key().key_data().clone(),
        NOW,
        NOW + 60,
    )
    .unwrap();
    b.cert_type(CertType::User).unwrap();
    b.key_id("seed").unwrap();
    b.valid_principal("alice").unwrap();
    b.critical_option("source-address", "10.0.0.1/32").unwrap();
    Wire::of(&b.sign(key).unwrap())
}

#[test]
#[ignore = "writes into fuzz/corpus; run by hand to regenerate the seeds"]
fn write_fuzz_seeds() {
    let dir = corpus("cert_source_address");
    for (name, text) in [
        ("zero-prefix", "10.0.0.0/8,0.0.0.0/0"),
        ("shorthand-v4", "127.1"),
        ("octal-v4", "0177.0.0.1"),
        ("upper-v6", "2001:DB8::A/128,192.0.2.0/24"),
        ("double-prefix", "1.2.3.4/32/32"),
    ] {
        fs::write(dir.join(format!("seed-{name}")), text).unwrap();
    }

    let dir = corpus("cert_ssh_parse");
    let key = PrivateKey::random(&mut rng(), Algorithm::Ed25519).unwrap();
    let _ = SshCa::from_openssh(&key.to_openssh(Default::default()).unwrap()).unwrap();
    let s = |t: &str| sshwire::string(t.as_bytes());
    let mut w = ssh_wire(&key);
    w.fields[CRITICAL] = sshwire::options(&[(
        "source-address",
        [s("10.0.0.1/32"), s("10.0.0.2/32")].concat(),
    )]);
    fs::write(dir.join("seed-inner-trailing"), w.sign(&key).line()).unwrap();
    let mut w = ssh_wire(&key);
    w.fields[CRITICAL] = sshwire::options(&[
        ("source-address", s("10.0.0.1/32")),
        ("source-address", s("10.0.0.2/32")),
    ]);
    fs::write(dir.join("seed-duplicate-option"), w.sign(&key).bytes()).unwrap();
    let inner = ssh_wire(&key).sign(&key).bytes();
    let mut w = ssh_wire(&key).sign(&key);
    w.fields[SIGNATURE_KEY] = inner;
    fs::write(dir.join("seed-nested-ca"), w.line()).unwrap();

    let dir = corpus("cert_x509_pin");
    let ca = ca();
    let pin = ext("1.3.9999.1.9", None, &printable("10.0.0.1"));
    let eku = ext("2.5.29.37", None, &[0x30, 0x00]);
    fs::write(
        dir.join("seed-duplicate-other-ext"),
        crafted(&ca, &[], &[eku.clone(), pin.clone(), eku]),
    )
    .unwrap();
    let padded = [
        &[
            0x30u8, 0x14, 0x06, 0x06, 0x2b, 0x80, 0xce, 0x0f, 0x01, 0x09, 0x04, 0x0a,
        ][..],
        &printable("10.0.0.1"),
    ]
    .concat();
    fs::write(dir.join("seed-padded-oid"), crafted(&ca, &[], &[padded])).unwrap();
    fs::write(
        dir.join("seed-teleport-utf8-v6"),
        crafted(&ca, &[attr("1.3.9999.2.15", 0x0c, b"2001:db8::1")], &[pin]),
    )
    .unwrap();
}

/// The network-pin seeds (issue 17, prefix pins), written on their own so that the seeds
/// above keep their bytes:
///
/// `cargo test -p ippin-cert --test it -- --ignored write_network_pin_seeds`
#[test]
#[ignore = "writes fuzz seeds"]
fn write_network_pin_seeds() {
    let dir = corpus("cert_x509_pin");
    let ca = ca();
    for (name, text) in [
        ("net-v6-64", "2001:db8:1:2::/64"),
        ("net-v4-24", "198.51.100.0/24"),
        ("net-host-bits", "2001:db8:1:2::1/64"),
        ("net-full-length", "192.0.2.7/32"),
        ("net-leading-zero", "198.51.100.0/024"),
    ] {
        let pin = ext("1.3.9999.1.9", None, &printable(text));
        fs::write(dir.join(format!("seed-{name}")), crafted(&ca, &[], &[pin])).unwrap();
    }
    let pin = ext("1.3.9999.1.9", None, &printable("10.0.0.0/8"));
    fs::write(
        dir.join("seed-net-beside-teleport"),
        crafted(&ca, &[attr("1.3.9999.2.15", 0x13, b"10.0.0.100")], &[pin]),
    )
    .unwrap();
}
