//! Encoding: builders that refuse what the format cannot carry.

use crate::header::{Addresses, Command, Header};
use crate::tlv::{self, PP2_TYPE_CRC32C, Tlv};
use crate::{Error, v1, v2};

fn check_ip_only(addrs: &Addresses) -> Result<(), Error> {
    let zero_extras = |a: &std::net::SocketAddrV6| a.flowinfo() == 0 && a.scope_id() == 0;
    match addrs {
        Addresses::Tcp6 { src, dst } | Addresses::Udp6 { src, dst }
            if !(zero_extras(src) && zero_extras(dst)) =>
        {
            Err(Error::Encode {
                reason: "IPv6 flow info and scope id cannot be carried in a PROXY header",
            })
        }
        _ => Ok(()),
    }
}

/// Builds a v1 line.
///
/// ```
/// use ippin_proxy_protocol::{Addresses, V1Builder};
/// let line = V1Builder::new()
///     .addresses(Addresses::Tcp4 { src: "192.0.2.1:5000".parse()?, dst: "192.0.2.2:22".parse()? })?
///     .encode()?;
/// assert_eq!(line, b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 22\r\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct V1Builder {
    addrs: Option<Addresses>,
}

impl V1Builder {
    /// A builder with no addresses yet (it encodes `PROXY UNKNOWN` until
    /// [`addresses`](Self::addresses) is called).
    pub fn new() -> Self {
        V1Builder::default()
    }

    /// Sets the addresses, once: TCP4, TCP6, or [`Addresses::Unspec`] for
    /// `UNKNOWN`.
    ///
    /// # Errors
    /// When called twice, for UDP or UNIX addresses, or for IPv6 addresses
    /// with flow info or a scope id.
    pub fn addresses(mut self, addrs: Addresses) -> Result<Self, Error> {
        if self.addrs.is_some() {
            return Err(Error::Encode {
                reason: "addresses are already set",
            });
        }
        if !matches!(
            addrs,
            Addresses::Unspec | Addresses::Tcp4 { .. } | Addresses::Tcp6 { .. }
        ) {
            return Err(Error::Encode {
                reason: "v1 carries only TCP over IPv4/IPv6 or UNKNOWN",
            });
        }
        check_ip_only(&addrs)?;
        self.addrs = Some(addrs);
        Ok(self)
    }

    /// The line, CRLF included.
    ///
    /// # Errors
    /// None in practice: the setters already refused what v1 cannot carry.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(v1::MAX_V1_LEN);
        v1::encode(&self.addrs.unwrap_or(Addresses::Unspec), &mut out)?;
        Ok(out)
    }
}

/// Builds a v2 header with optional TLVs and CRC32C.
///
/// ```
/// use ippin_proxy_protocol::{parse, Addresses, Command, Crc32cStatus, Tlv, V2Builder};
/// let bytes = V2Builder::new(Command::Proxy)
///     .addresses(Addresses::Tcp6 { src: "[2001:db8::1]:5000".parse()?, dst: "[2001:db8::2]:22".parse()? })?
///     .tlv(Tlv::Authority("example.com"))?
///     .crc32c()?
///     .encode()?;
/// let (header, used) = parse(&bytes)?;
/// assert_eq!(used, bytes.len());
/// assert_eq!(header.crc32c(), Crc32cStatus::Valid);
/// assert_eq!(header.tlvs().next(), Some(Tlv::Authority("example.com")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct V2Builder {
    command: Command,
    addrs: Option<Addresses>,
    tlvs: Vec<u8>,
    /// Offset in `tlvs` of the CRC32C value, when one was asked for.
    crc_at: Option<usize>,
}

impl V2Builder {
    /// A builder for `command`, with no addresses ([`Addresses::Unspec`])
    /// and no TLVs.
    pub fn new(command: Command) -> Self {
        V2Builder {
            command,
            addrs: None,
            tlvs: Vec::new(),
            crc_at: None,
        }
    }

    /// A builder that re-encodes a parsed header: same command, addresses
    /// and TLVs in the same order (a CRC32C TLV is recomputed). v1 headers
    /// become v2 PROXY headers.
    ///
    /// # Errors
    /// For a parsed header only when it repeats a cloud endpoint TLV (AWS
    /// `0xEA`, Azure `0xEE`, GCP `0xE0`), which the parser takes as custom
    /// TLVs but [`crate::endpoint_ids`] refuses: the builder writes no header
    /// that the endpoint readers refuse. Never otherwise.
    pub fn from_header(header: &Header<'_>) -> Result<Self, Error> {
        let mut b = V2Builder::new(header.command());
        if header.command() == Command::Proxy {
            b = b.addresses(header.addresses())?;
        }
        for t in header.tlvs() {
            b = b.tlv(t)?;
        }
        Ok(b)
    }

    /// Sets the addresses, once.
    ///
    /// # Errors
    /// When called twice, for a LOCAL header (whose addresses a receiver
    /// ignores; it is sent with family UNSPEC), or for IPv6 addresses with
    /// flow info or a scope id.
    pub fn addresses(mut self, addrs: Addresses) -> Result<Self, Error> {
        if self.addrs.is_some() {
            return Err(Error::Encode {
                reason: "addresses are already set",
            });
        }
        if self.command == Command::Local && addrs != Addresses::Unspec {
            return Err(Error::Encode {
                reason: "a LOCAL header carries no addresses",
            });
        }
        check_ip_only(&addrs)?;
        self.addrs = Some(addrs);
        Ok(self)
    }

    /// Appends a TLV. [`Tlv::Crc32c`] is the same as [`crc32c`](Self::crc32c):
    /// its value is ignored and computed by [`encode`](Self::encode).
    ///
    /// # Errors
    /// When a type that may appear once (ALPN, AUTHORITY, CRC32C, UNIQUE_ID,
    /// SSL, NETNS) is added twice, when the value breaks its type's rules
    /// (UNIQUE_ID over 128 bytes, NETNS not ASCII), or when the value is
    /// longer than 65535 bytes.
    pub fn tlv(mut self, t: Tlv<'_>) -> Result<Self, Error> {
        let start = self.tlvs.len();
        match t {
            Tlv::Crc32c(_) => return self.crc32c(),
            Tlv::Ssl(ssl) => {
                let mut value = Vec::with_capacity(5 + ssl.sub_tlv_bytes().len());
                value.push(ssl.client());
                value.extend_from_slice(&ssl.verify().to_be_bytes());
                value.extend_from_slice(ssl.sub_tlv_bytes());
                tlv::push(&mut self.tlvs, t.kind(), &value)?;
            }
            Tlv::Alpn(v) | Tlv::Noop(v) | Tlv::UniqueId(v) => {
                tlv::push(&mut self.tlvs, t.kind(), v)?
            }
            Tlv::Authority(s) | Tlv::Netns(s) => tlv::push(&mut self.tlvs, t.kind(), s.as_bytes())?,
            Tlv::Custom { kind, value } => {
                if !(tlv::PP2_TYPE_MIN_CUSTOM..=tlv::PP2_TYPE_MAX_CUSTOM).contains(&kind) {
                    return Err(Error::Encode {
                        reason: "custom TLV types are 0xE0-0xEF",
                    });
                }
                // A cloud endpoint TLV is read once; a second one makes the header
                // unreadable to `endpoint_ids` (and refused by a listener with
                // `allowed_endpoints`), as in `endpoint_id`.
                if matches!(
                    kind,
                    crate::cloud::PP2_TYPE_AWS
                        | crate::cloud::PP2_TYPE_AZURE
                        | crate::cloud::PP2_TYPE_GCP
                ) && crate::Tlvs::new(&self.tlvs).any(|t| t.kind() == kind)
                {
                    return Err(Error::Encode {
                        reason: "this cloud endpoint TLV may appear only once",
                    });
                }
                tlv::push(&mut self.tlvs, kind, value)?
            }
            Tlv::Unknown { kind, value } => {
                if !matches!(tlv::decode(kind, value, 0), Ok(Tlv::Unknown { .. })) {
                    return Err(Error::Encode {
                        reason: "an unknown TLV must not use a defined or custom type",
                    });
                }
                tlv::push(&mut self.tlvs, kind, value)?
            }
        }
        if let Err(e) = tlv::validate(&self.tlvs, 0) {
            self.tlvs.truncate(start);
            return Err(Error::Encode {
                reason: match e {
                    Error::DuplicateTlv { .. } => "this TLV type may appear only once",
                    _ => "the TLV value breaks its type's rules",
                },
            });
        }
        Ok(self)
    }

    /// Appends the TLV that carries a cloud endpoint ID (see
    /// [`crate::EndpointId`]): AWS `0xEA`, Azure `0xEE` or GCP `0xE0`.
    ///
    /// # Errors
    /// When a TLV of that type was already added: the readers refuse a
    /// repeated one.
    pub fn endpoint_id(mut self, id: &crate::EndpointId) -> Result<Self, Error> {
        let (kind, value, len) = crate::cloud::encode(id);
        if crate::Tlvs::new(&self.tlvs).any(|t| t.kind() == kind) {
            return Err(Error::Encode {
                reason: "this cloud endpoint TLV may appear only once",
            });
        }
        tlv::push(&mut self.tlvs, kind, value.get(..len).unwrap_or_default())?;
        Ok(self)
    }

    /// Appends an AWS VPC endpoint ID TLV; as [`endpoint_id`](Self::endpoint_id).
    ///
    /// # Errors
    /// As [`endpoint_id`](Self::endpoint_id).
    pub fn aws_vpce_id(self, id: &crate::AwsVpceId) -> Result<Self, Error> {
        self.endpoint_id(&crate::EndpointId::Aws(*id))
    }

    /// Appends an Azure Private Link LinkID TLV; as [`endpoint_id`](Self::endpoint_id).
    ///
    /// # Errors
    /// As [`endpoint_id`](Self::endpoint_id).
    pub fn azure_link_id(self, id: crate::AzureLinkId) -> Result<Self, Error> {
        self.endpoint_id(&crate::EndpointId::Azure(id))
    }

    /// Appends a GCP Private Service Connect TLV; as [`endpoint_id`](Self::endpoint_id).
    ///
    /// # Errors
    /// As [`endpoint_id`](Self::endpoint_id).
    pub fn gcp_psc_connection_id(self, id: crate::GcpPscConnectionId) -> Result<Self, Error> {
        self.endpoint_id(&crate::EndpointId::Gcp(id))
    }

    /// Adds a CRC32C TLV at this position; [`encode`](Self::encode) fills
    /// in the checksum.
    ///
    /// # Errors
    /// When a CRC32C TLV was already added.
    pub fn crc32c(mut self) -> Result<Self, Error> {
        if self.crc_at.is_some() {
            return Err(Error::Encode {
                reason: "this TLV type may appear only once",
            });
        }
        tlv::push(&mut self.tlvs, PP2_TYPE_CRC32C, &[0; 4])?;
        self.crc_at = Some(self.tlvs.len() - 4);
        Ok(self)
    }

    /// The header bytes.
    ///
    /// A header longer than [`DEFAULT_MAX_HEADER_LEN`](crate::DEFAULT_MAX_HEADER_LEN)
    /// (4096 bytes: large TLVs, an SSL TLV with a client certificate) is
    /// encoded, but [`parse`](crate::parse) and a default
    /// [`ListenerPolicy`](crate::ListenerPolicy) refuse it (`TooLong`): the
    /// receiver must raise its bound ([`ParseConfig`](crate::ParseConfig)) to
    /// take it.
    ///
    /// # Errors
    /// When the address block and TLVs exceed the 65535 bytes the length
    /// field can describe.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let addrs = self.addrs.unwrap_or(Addresses::Unspec);
        let mut out = Vec::with_capacity(v2::FIXED_LEN + 216 + self.tlvs.len());
        v2::encode_head(self.command, &addrs, self.tlvs.len(), &mut out)?;
        let tlv_start = out.len();
        out.extend_from_slice(&self.tlvs);
        if let Some(at) = self.crc_at {
            let crc = crc32c::crc32c(&out);
            if let Some(field) = out.get_mut(tlv_start + at..tlv_start + at + 4) {
                field.copy_from_slice(&crc.to_be_bytes());
            }
        }
        Ok(out)
    }
}
