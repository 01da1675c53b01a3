//! SSH certificate access: the authorisation table ([`authorize`]) and the SSH audit events.
//!
//! See [`decide`] for the table, and the `russh` feature for a handler helper that runs it in
//! `auth_openssh_certificate`.

pub mod audit;
pub mod decide;
pub mod env;
pub mod refusal;

pub use audit::{
    AuthRecord, ExecRecord, ProxyRefusedRecord, SessionRecord, ShedRecord, SshAudit, SshAuditEvent,
};
pub use decide::{
    AuthContext, Authorized, CertIdentity, SshDenial, SshDenyReason, SshUser, UserDirectory,
    authorize, builtins_principal,
};
