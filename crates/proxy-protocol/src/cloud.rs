//! Cloud load-balancer TLVs: typed, strict readers for the endpoint IDs
//! that AWS, Azure and GCP load balancers put in PROXY v2 headers.
//!
//! | vendor | type | value | reader |
//! |--------|------|-------|--------|
//! | AWS (NLB, VPC endpoint service) | `0xEA` | subtype `0x01`, then the VPC endpoint ID in ASCII: `vpce-` and 8 or 17 lowercase hex digits | [`aws_vpce_id`] |
//! | Azure (Private Link service) | `0xEE` | subtype `0x01`, then the LinkID, u32 little-endian (5 bytes in all) | [`azure_link_id`] |
//! | GCP (Private Service Connect) | `0xE0` | the PSC connection ID, u64 big-endian (8 bytes) | [`gcp_psc_connection_id`] |
//!
//! Each reader returns `Ok(None)` when the TLV is absent and refuses a TLV
//! that appears twice, has another length or subtype, or (AWS) another
//! character set. `0xE0`–`0xEF` is the range the specification leaves to
//! applications: a header from a proxy that uses `0xE0` for something else
//! is refused by [`gcp_psc_connection_id`], as it should be on a listener
//! that expects GCP's.
//!
//! ```
//! use ippin_proxy_protocol::{AwsVpceId, Command, V2Builder, aws_vpce_id, parse};
//!
//! let id: AwsVpceId = "vpce-0123456789abcdef0".parse()?;
//! let bytes = V2Builder::new(Command::Local).aws_vpce_id(&id)?.encode()?;
//! let (header, _) = parse(&bytes)?;
//! assert_eq!(aws_vpce_id(header.tlvs())?, Some(id));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::str::FromStr;

use crate::Tlvs;

/// `PP2_TYPE_AWS`: AWS's TLV type.
pub const PP2_TYPE_AWS: u8 = 0xEA;
/// `PP2_SUBTYPE_AWS_VPCE_ID`: the first value byte of an AWS VPC endpoint ID TLV.
pub const PP2_SUBTYPE_AWS_VPCE_ID: u8 = 0x01;
/// `PP2_TYPE_AZURE`: Azure's TLV type.
pub const PP2_TYPE_AZURE: u8 = 0xEE;
/// `PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID`: the first value byte of an
/// Azure Private Link LinkID TLV.
pub const PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID: u8 = 0x01;
/// The TLV type GCP's Private Service Connect uses for the connection ID.
pub const PP2_TYPE_GCP: u8 = 0xE0;

/// The AWS VPC endpoint ID prefix.
const VPCE_PREFIX: &[u8] = b"vpce-";
/// The longest VPC endpoint ID: the prefix and 17 hex digits.
const VPCE_MAX: usize = 5 + 17;

/// An AWS VPC endpoint ID: `vpce-` then 8 or 17 lowercase hex digits.
/// Stored inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AwsVpceId {
    buf: [u8; VPCE_MAX],
    len: u8,
}

impl AwsVpceId {
    /// Checks `bytes` as a VPC endpoint ID.
    ///
    /// # Errors
    /// [`CloudTlvProblem::Length`] for another length,
    /// [`CloudTlvProblem::Prefix`] without `vpce-`,
    /// [`CloudTlvProblem::Charset`] for a byte that is not a lowercase hex digit.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CloudTlvProblem> {
        if bytes.len() != 5 + 8 && bytes.len() != VPCE_MAX {
            return Err(CloudTlvProblem::Length { len: bytes.len() });
        }
        let Some(digits) = bytes.strip_prefix(VPCE_PREFIX) else {
            return Err(CloudTlvProblem::Prefix);
        };
        if let Some(at) = digits
            .iter()
            .position(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(CloudTlvProblem::Charset {
                at: at + VPCE_PREFIX.len(),
            });
        }
        let mut buf = [0; VPCE_MAX];
        buf.get_mut(..bytes.len())
            .ok_or(CloudTlvProblem::Length { len: bytes.len() })?
            .copy_from_slice(bytes);
        Ok(AwsVpceId {
            buf,
            len: bytes.len() as u8,
        })
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        // Only lowercase hex and `vpce-` were stored: ASCII, hence UTF-8.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The ID's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl FromStr for AwsVpceId {
    type Err = CloudTlvProblem;

    fn from_str(s: &str) -> Result<Self, CloudTlvProblem> {
        AwsVpceId::from_bytes(s.as_bytes())
    }
}

impl fmt::Display for AwsVpceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for AwsVpceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AwsVpceId({:?})", self.as_str())
    }
}

/// An Azure Private Link LinkID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AzureLinkId(pub u32);

/// A GCP Private Service Connect connection ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GcpPscConnectionId(pub u64);

/// An endpoint ID of any of the three vendors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndpointId {
    /// An AWS VPC endpoint ID.
    Aws(AwsVpceId),
    /// An Azure Private Link LinkID.
    Azure(AzureLinkId),
    /// A GCP Private Service Connect connection ID.
    Gcp(GcpPscConnectionId),
}

impl fmt::Display for EndpointId {
    /// `vpce-…`, `azure:<LinkID>` or `gcp:<connection ID>` (decimal), the
    /// syntax the server's `allowed_endpoints` uses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointId::Aws(id) => write!(f, "{id}"),
            EndpointId::Azure(AzureLinkId(id)) => write!(f, "azure:{id}"),
            EndpointId::Gcp(GcpPscConnectionId(id)) => write!(f, "gcp:{id}"),
        }
    }
}

/// What is wrong with a cloud TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloudTlvProblem {
    /// The TLV appears more than once in the header.
    #[error("appears more than once")]
    Repeated,
    /// The value (subtype included) has another length than the format's.
    #[error("has the wrong length ({len} bytes)")]
    Length {
        /// The length found (for AWS, of the ID text; else of the value).
        len: usize,
    },
    /// The first value byte is not the expected subtype.
    #[error("has subtype {subtype:#04x}, not 0x01")]
    Subtype {
        /// The subtype found.
        subtype: u8,
    },
    /// An AWS ID does not start with `vpce-`.
    #[error("does not start with `vpce-`")]
    Prefix,
    /// An AWS ID has a byte that is not a lowercase hex digit.
    #[error("has a byte that is not a lowercase hex digit at offset {at} of the ID")]
    Charset {
        /// Offset in the ID text.
        at: usize,
    },
}

/// A cloud TLV that is present but not valid; names the TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloudTlvError {
    /// The AWS VPC endpoint ID TLV (`0xEA`).
    #[error("AWS VPC endpoint ID TLV (0xEA) {problem}")]
    Aws {
        /// What is wrong.
        problem: CloudTlvProblem,
    },
    /// The Azure Private Link LinkID TLV (`0xEE`).
    #[error("Azure Private Link LinkID TLV (0xEE) {problem}")]
    Azure {
        /// What is wrong.
        problem: CloudTlvProblem,
    },
    /// The GCP Private Service Connect TLV (`0xE0`).
    #[error("GCP Private Service Connect TLV (0xE0) {problem}")]
    Gcp {
        /// What is wrong.
        problem: CloudTlvProblem,
    },
}

/// The value of the only TLV of type `kind`: `Ok(None)` when absent,
/// `Err(Repeated)` when there are two.
fn only(tlvs: Tlvs<'_>, kind: u8) -> Result<Option<&[u8]>, CloudTlvProblem> {
    let mut found = None;
    for t in tlvs {
        if t.kind() != kind {
            continue;
        }
        let crate::Tlv::Custom { value, .. } = t else {
            // Every type in 0xE0-0xEF decodes as custom; keep this total.
            return Err(CloudTlvProblem::Length { len: 0 });
        };
        if found.replace(value).is_some() {
            return Err(CloudTlvProblem::Repeated);
        }
    }
    Ok(found)
}

/// Splits off the subtype byte, which must be `0x01`.
fn subtype_01(value: &[u8]) -> Result<&[u8], CloudTlvProblem> {
    match value.split_first() {
        None => Err(CloudTlvProblem::Length { len: 0 }),
        Some((&0x01, rest)) => Ok(rest),
        Some((&subtype, _)) => Err(CloudTlvProblem::Subtype { subtype }),
    }
}

/// Reads the AWS VPC endpoint ID TLV (`0xEA`, subtype `0x01`).
///
/// # Errors
/// [`CloudTlvError::Aws`] when the TLV repeats, has another subtype, or its
/// ID is not `vpce-` and 8 or 17 lowercase hex digits.
pub fn aws_vpce_id(tlvs: Tlvs<'_>) -> Result<Option<AwsVpceId>, CloudTlvError> {
    let read = || -> Result<Option<AwsVpceId>, CloudTlvProblem> {
        let Some(value) = only(tlvs, PP2_TYPE_AWS)? else {
            return Ok(None);
        };
        AwsVpceId::from_bytes(subtype_01(value)?).map(Some)
    };
    read().map_err(|problem| CloudTlvError::Aws { problem })
}

/// Reads the Azure Private Link LinkID TLV (`0xEE`, subtype `0x01`, u32
/// little-endian).
///
/// # Errors
/// [`CloudTlvError::Azure`] when the TLV repeats, has another subtype or a
/// value other than 5 bytes long.
pub fn azure_link_id(tlvs: Tlvs<'_>) -> Result<Option<AzureLinkId>, CloudTlvError> {
    let read = || -> Result<Option<AzureLinkId>, CloudTlvProblem> {
        let Some(value) = only(tlvs, PP2_TYPE_AZURE)? else {
            return Ok(None);
        };
        // Length first: a 1-byte value with another subtype is a length error.
        if value.len() != 5 {
            return Err(CloudTlvProblem::Length { len: value.len() });
        }
        let id = <[u8; 4]>::try_from(subtype_01(value)?)
            .map_err(|_| CloudTlvProblem::Length { len: value.len() })?;
        Ok(Some(AzureLinkId(u32::from_le_bytes(id))))
    };
    read().map_err(|problem| CloudTlvError::Azure { problem })
}

/// Reads the GCP Private Service Connect TLV (`0xE0`, u64 big-endian).
///
/// # Errors
/// [`CloudTlvError::Gcp`] when the TLV repeats or its value is not 8 bytes.
pub fn gcp_psc_connection_id(tlvs: Tlvs<'_>) -> Result<Option<GcpPscConnectionId>, CloudTlvError> {
    let read = || -> Result<Option<GcpPscConnectionId>, CloudTlvProblem> {
        let Some(value) = only(tlvs, PP2_TYPE_GCP)? else {
            return Ok(None);
        };
        let id =
            <[u8; 8]>::try_from(value).map_err(|_| CloudTlvProblem::Length { len: value.len() })?;
        Ok(Some(GcpPscConnectionId(u64::from_be_bytes(id))))
    };
    read().map_err(|problem| CloudTlvError::Gcp { problem })
}

/// The endpoint IDs of all three vendors, each `None` when absent.
/// Fails on the first vendor TLV that is present and not valid.
///
/// # Errors
/// As [`aws_vpce_id`], [`azure_link_id`] and [`gcp_psc_connection_id`].
pub fn endpoint_ids(tlvs: Tlvs<'_>) -> Result<[Option<EndpointId>; 3], CloudTlvError> {
    Ok([
        aws_vpce_id(tlvs.clone())?.map(EndpointId::Aws),
        azure_link_id(tlvs.clone())?.map(EndpointId::Azure),
        gcp_psc_connection_id(tlvs)?.map(EndpointId::Gcp),
    ])
}

/// The TLV (type, value) carrying `id`, for a builder. The value is at most
/// 23 bytes and built inline.
pub(crate) fn encode(id: &EndpointId) -> (u8, [u8; 1 + VPCE_MAX], usize) {
    let mut v = [0u8; 1 + VPCE_MAX];
    match id {
        EndpointId::Aws(a) => {
            let b = a.as_bytes();
            v[0] = PP2_SUBTYPE_AWS_VPCE_ID;
            if let Some(dst) = v.get_mut(1..1 + b.len()) {
                dst.copy_from_slice(b);
            }
            (PP2_TYPE_AWS, v, 1 + b.len())
        }
        EndpointId::Azure(AzureLinkId(n)) => {
            v[0] = PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID;
            v[1..5].copy_from_slice(&n.to_le_bytes());
            (PP2_TYPE_AZURE, v, 5)
        }
        EndpointId::Gcp(GcpPscConnectionId(n)) => {
            v[..8].copy_from_slice(&n.to_be_bytes());
            (PP2_TYPE_GCP, v, 8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, V2Builder, parse};

    const AWS17: &str = "vpce-0123456789abcdef0";
    const AWS8: &str = "vpce-0a1b2c3d";

    /// A LOCAL v2 header with these raw TLVs (written by hand: the builder refuses a
    /// repeated vendor TLV).
    fn header(tlvs: &[(u8, &[u8])]) -> Vec<u8> {
        let mut h = V2Builder::new(Command::Local).encode().unwrap();
        for (kind, value) in tlvs {
            h.push(*kind);
            h.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
            h.extend_from_slice(value);
        }
        let len = u16::try_from(h.len() - 16).unwrap().to_be_bytes();
        h[14..16].copy_from_slice(&len);
        h
    }

    fn aws(tlvs: &[(u8, &[u8])]) -> Result<Option<AwsVpceId>, CloudTlvError> {
        let h = header(tlvs);
        aws_vpce_id(parse(&h).unwrap().0.tlvs())
    }
    fn azure(tlvs: &[(u8, &[u8])]) -> Result<Option<AzureLinkId>, CloudTlvError> {
        let h = header(tlvs);
        azure_link_id(parse(&h).unwrap().0.tlvs())
    }
    fn gcp(tlvs: &[(u8, &[u8])]) -> Result<Option<GcpPscConnectionId>, CloudTlvError> {
        let h = header(tlvs);
        gcp_psc_connection_id(parse(&h).unwrap().0.tlvs())
    }

    fn aws_value(id: &str) -> Vec<u8> {
        let mut v = vec![0x01];
        v.extend_from_slice(id.as_bytes());
        v
    }

    #[test]
    fn aws_vectors() {
        for id in [AWS17, AWS8] {
            let v = aws_value(id);
            let got = aws(&[(0xEA, &v)]).unwrap().unwrap();
            assert_eq!(got.as_str(), id);
            assert_eq!(got.to_string(), id);
        }
        // Byte-exact wire form of the 17-digit ID.
        let wire = header(&[(0xEA, &aws_value(AWS17))]);
        let tlv_area = &wire[16..];
        assert_eq!(&tlv_area[..4], &[0xEA, 0x00, 23, 0x01]);
        assert_eq!(&tlv_area[4..], AWS17.as_bytes());
        assert_eq!(aws(&[]), Ok(None));
        // Other TLVs do not matter.
        assert_eq!(aws(&[(0xEE, &[1, 2, 3, 4, 5])]), Ok(None));
    }

    #[test]
    fn aws_every_truncation_refused() {
        let v = aws_value(AWS17);
        for n in 0..v.len() {
            let got = aws(&[(0xEA, &v[..n])]);
            // `vpce-` and its first 8 digits is itself a valid short ID.
            if n == 1 + 5 + 8 {
                assert_eq!(got.unwrap().unwrap().as_str(), "vpce-01234567");
                continue;
            }
            let Err(CloudTlvError::Aws { problem }) = got else {
                panic!("truncation to {n} accepted: {got:?}");
            };
            let want = if n == 0 {
                CloudTlvProblem::Length { len: 0 }
            } else {
                CloudTlvProblem::Length { len: n - 1 }
            };
            assert_eq!(problem, want, "n = {n}");
        }
        let v = aws_value(AWS8);
        for n in 0..v.len() {
            assert!(aws(&[(0xEA, &v[..n])]).is_err(), "n = {n}");
        }
    }

    #[test]
    fn aws_refusals() {
        let p = |v: &[u8]| match aws(&[(0xEA, v)]) {
            Err(CloudTlvError::Aws { problem }) => problem,
            other => panic!("{other:?}"),
        };
        let mut wrong_sub = aws_value(AWS17);
        wrong_sub[0] = 0x02;
        assert_eq!(p(&wrong_sub), CloudTlvProblem::Subtype { subtype: 0x02 });
        assert_eq!(
            p(&aws_value("vpce-0123456789ABCDEF0")),
            CloudTlvProblem::Charset { at: 15 }
        );
        assert_eq!(
            p(&aws_value("vpce-0123456789abcdefg")),
            CloudTlvProblem::Charset { at: 21 }
        );
        assert_eq!(
            p(&aws_value("vpce-0123456789abcdef\u{e9}")),
            CloudTlvProblem::Length { len: 23 }
        );
        assert_eq!(p(&aws_value("VPCE-01234567")), CloudTlvProblem::Prefix);
        assert_eq!(
            p(&aws_value("vpce_0123456789abcdef0")),
            CloudTlvProblem::Prefix
        );
        assert_eq!(
            p(&aws_value("vpce-0123456789abcdef01")),
            CloudTlvProblem::Length { len: 23 }
        );
        assert_eq!(
            p(&aws_value("vpce-0123456789")),
            CloudTlvProblem::Length { len: 15 }
        );
        assert_eq!(
            p(&aws_value("vpce-0123456789abcdef\0")),
            CloudTlvProblem::Charset { at: 21 }
        );
        let v = aws_value(AWS17);
        assert_eq!(
            aws(&[(0xEA, &v), (0xE5, b""), (0xEA, &v)]),
            Err(CloudTlvError::Aws {
                problem: CloudTlvProblem::Repeated
            })
        );
        assert!("vpce-01234567 ".parse::<AwsVpceId>().is_err());
        assert!(" vpce-01234567".parse::<AwsVpceId>().is_err());
    }

    #[test]
    fn azure_vectors() {
        let v = [0x01, 0x78, 0x56, 0x34, 0x12];
        assert_eq!(azure(&[(0xEE, &v)]), Ok(Some(AzureLinkId(0x1234_5678))));
        assert_eq!(
            azure(&[(0xEE, &[0x01, 0xFF, 0xFF, 0xFF, 0xFF])]),
            Ok(Some(AzureLinkId(u32::MAX)))
        );
        assert_eq!(azure(&[(0xEA, &aws_value(AWS8))]), Ok(None));
        for n in 0..v.len() {
            assert_eq!(
                azure(&[(0xEE, &v[..n])]),
                Err(CloudTlvError::Azure {
                    problem: CloudTlvProblem::Length { len: n }
                }),
                "n = {n}"
            );
        }
        assert_eq!(
            azure(&[(0xEE, &[0x02, 0x78, 0x56, 0x34, 0x12])]),
            Err(CloudTlvError::Azure {
                problem: CloudTlvProblem::Subtype { subtype: 0x02 }
            })
        );
        assert_eq!(
            azure(&[(0xEE, &[0x01, 0x78, 0x56, 0x34, 0x12, 0x00])]),
            Err(CloudTlvError::Azure {
                problem: CloudTlvProblem::Length { len: 6 }
            })
        );
        assert_eq!(
            azure(&[(0xEE, &v), (0xEE, &v)]),
            Err(CloudTlvError::Azure {
                problem: CloudTlvProblem::Repeated
            })
        );
    }

    #[test]
    fn gcp_vectors() {
        let v = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
        assert_eq!(
            gcp(&[(0xE0, &v)]),
            Ok(Some(GcpPscConnectionId(0x0102_0304_0506_0708)))
        );
        assert_eq!(gcp(&[(0xE1, &v)]), Ok(None));
        for n in 0..v.len() {
            assert_eq!(
                gcp(&[(0xE0, &v[..n])]),
                Err(CloudTlvError::Gcp {
                    problem: CloudTlvProblem::Length { len: n }
                }),
                "n = {n}"
            );
        }
        assert_eq!(
            gcp(&[(0xE0, &[0; 9])]),
            Err(CloudTlvError::Gcp {
                problem: CloudTlvProblem::Length { len: 9 }
            })
        );
        assert_eq!(
            gcp(&[(0xE0, &v), (0xE0, &v)]),
            Err(CloudTlvError::Gcp {
                problem: CloudTlvProblem::Repeated
            })
        );
    }

    #[test]
    fn every_truncation_of_a_header_is_refused_by_the_parser() {
        let id: AwsVpceId = AWS17.parse().unwrap();
        let h = V2Builder::new(Command::Local)
            .aws_vpce_id(&id)
            .unwrap()
            .azure_link_id(AzureLinkId(7))
            .unwrap()
            .gcp_psc_connection_id(GcpPscConnectionId(9))
            .unwrap()
            .encode()
            .unwrap();
        for n in 0..h.len() {
            assert!(parse(&h[..n]).is_err(), "n = {n}");
        }
        // The builder refuses a second TLV of the same vendor.
        assert!(
            V2Builder::new(Command::Local)
                .aws_vpce_id(&id)
                .unwrap()
                .aws_vpce_id(&id)
                .is_err()
        );
        let tlvs = parse(&h).unwrap().0.tlvs();
        assert_eq!(
            endpoint_ids(tlvs),
            Ok([
                Some(EndpointId::Aws(id)),
                Some(EndpointId::Azure(AzureLinkId(7))),
                Some(EndpointId::Gcp(GcpPscConnectionId(9)))
            ])
        );
    }

    #[test]
    fn display_names_the_tlv() {
        let e = CloudTlvError::Azure {
            problem: CloudTlvProblem::Length { len: 3 },
        };
        assert_eq!(
            e.to_string(),
            "Azure Private Link LinkID TLV (0xEE) has the wrong length (3 bytes)"
        );
        assert_eq!(
            EndpointId::Gcp(GcpPscConnectionId(456)).to_string(),
            "gcp:456"
        );
        assert_eq!(EndpointId::Azure(AzureLinkId(123)).to_string(), "azure:123");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn no_panic_on_arbitrary_values(
                kind in prop_oneof![Just(0xEAu8), Just(0xEE), Just(0xE0), 0xE0u8..=0xEF],
                value in proptest::collection::vec(any::<u8>(), 0..40),
                twice in any::<bool>(),
            ) {
                let mut tlvs: Vec<(u8, &[u8])> = vec![(kind, &value)];
                if twice {
                    tlvs.push((kind, &value));
                }
                let h = header(&tlvs);
                let t = parse(&h).unwrap().0.tlvs();
                let a = aws_vpce_id(t.clone());
                let z = azure_link_id(t.clone());
                let g = gcp_psc_connection_id(t.clone());
                let _ = endpoint_ids(t);
                if twice {
                    prop_assert!(kind != 0xEA || a.is_err());
                    prop_assert!(kind != 0xEE || z.is_err());
                    prop_assert!(kind != 0xE0 || g.is_err());
                }
                if let Ok(Some(id)) = a {
                    prop_assert_eq!(id.as_bytes(), value.get(1..).unwrap_or_default());
                }
                if let Ok(Some(AzureLinkId(n))) = z {
                    prop_assert_eq!(value.len(), 5);
                    prop_assert_eq!(&n.to_le_bytes()[..], &value[1..]);
                }
                if let Ok(Some(GcpPscConnectionId(n))) = g {
                    prop_assert_eq!(&n.to_be_bytes()[..], &value[..]);
                }
            }

            #[test]
            fn round_trip(
                long in any::<bool>(),
                digits in proptest::collection::vec(0u8..16, 17),
                azure in any::<u32>(),
                gcp in any::<u64>(),
            ) {
                let n = if long { 17 } else { 8 };
                let mut text = String::from("vpce-");
                for d in &digits[..n] {
                    text.push(char::from_digit(u32::from(*d), 16).unwrap());
                }
                let id: AwsVpceId = text.parse().unwrap();
                prop_assert_eq!(id.as_str(), text.as_str());
                let h = V2Builder::new(Command::Proxy)
                    .endpoint_id(&EndpointId::Gcp(GcpPscConnectionId(gcp)))
                    .unwrap()
                    .endpoint_id(&EndpointId::Aws(id))
                    .unwrap()
                    .endpoint_id(&EndpointId::Azure(AzureLinkId(azure)))
                    .unwrap()
                    .encode()
                    .unwrap();
                let t = parse(&h).unwrap().0.tlvs();
                prop_assert_eq!(aws_vpce_id(t.clone()), Ok(Some(id)));
                prop_assert_eq!(azure_link_id(t.clone()), Ok(Some(AzureLinkId(azure))));
                prop_assert_eq!(gcp_psc_connection_id(t), Ok(Some(GcpPscConnectionId(gcp))));
            }
        }
    }
}
