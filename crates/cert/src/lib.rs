//! The pinned source IP in OpenSSH user certificates and X.509 client certificates: issuance and strict extraction.
#![forbid(unsafe_code)]
