//! A tiny OpenSSH wire-format editor, to make certificates a correct CA
//! never issues (duplicate or unsorted options, data after an option's
//! inner string, odd CA keys) and sign their exact bytes.

use ippin_cert::ssh_key::encoding::Encode;
use ippin_cert::ssh_key::{Certificate, PrivateKey, Signature};
use signature::Signer;

/// The fields of an Ed25519 user certificate, in wire order.
pub(crate) const KEY_ID: usize = 5;
pub(crate) const PRINCIPALS: usize = 6;
pub(crate) const CRITICAL: usize = 9;
pub(crate) const EXTENSIONS: usize = 10;
pub(crate) const SIGNATURE_KEY: usize = 12;
pub(crate) const SIGNATURE: usize = 13;

/// `string` fields are stored without their length prefix; `u64`/`u32`
/// fields as their big-endian bytes.
#[derive(Clone, Debug)]
pub(crate) struct Wire {
    pub(crate) fields: Vec<Vec<u8>>,
}

/// Field widths of an `ssh-ed25519-cert-v01@openssh.com` certificate:
/// 0 = string, n = fixed n bytes.
const LAYOUT: [usize; 14] = [0, 0, 0, 8, 4, 0, 0, 8, 8, 0, 0, 0, 0, 0];

pub(crate) fn string(bytes: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// An options list body: `(name, raw data field)` pairs, in the given order.
pub(crate) fn options(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    entries
        .iter()
        .flat_map(|(name, data)| [string(name.as_bytes()), string(data)].concat())
        .collect()
}

impl Wire {
    /// Splits an Ed25519 user certificate made by `ssh-key`.
    pub(crate) fn of(cert: &Certificate) -> Wire {
        let bytes = cert.to_bytes().unwrap();
        let mut rest = bytes.as_slice();
        let mut fields = Vec::new();
        for width in LAYOUT {
            let (field, after) = if width == 0 {
                let (len, after) = rest.split_at(4);
                let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
                after.split_at(len)
            } else {
                rest.split_at(width)
            };
            fields.push(field.to_vec());
            rest = after;
        }
        assert!(rest.is_empty());
        Wire { fields }
    }

    fn encode(&self, upto: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for (field, width) in self.fields.iter().zip(LAYOUT).take(upto) {
            if width == 0 {
                out.extend(string(field));
            } else {
                out.extend_from_slice(field);
            }
        }
        out
    }

    /// Re-signs the exact to-be-signed bytes with `ca` (also replacing the
    /// signature key field with `ca`'s public key).
    pub(crate) fn sign(mut self, ca: &PrivateKey) -> Wire {
        self.fields[SIGNATURE_KEY] = ca.public_key().key_data().encode_vec().unwrap();
        let sig: Signature = ca.try_sign(&self.encode(SIGNATURE)).unwrap();
        self.fields[SIGNATURE] = sig.encode_vec().unwrap();
        self
    }

    /// The binary certificate.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.encode(LAYOUT.len())
    }

    /// The OpenSSH one-line form.
    pub(crate) fn line(&self) -> String {
        use base64::Engine as _;
        format!(
            "ssh-ed25519-cert-v01@openssh.com {} crafted",
            base64::engine::general_purpose::STANDARD.encode(self.bytes())
        )
    }
}
