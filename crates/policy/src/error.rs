//! The crate's error type.

/// Everything that can go wrong reading policy input. Denials are not errors: see
/// [`crate::Decision`] and [`crate::Denial`].
///
/// YAML errors display as `file:line: field.path: what`, for example
/// `roles.yaml:7: spec.options.pin_source_ip: expected a boolean, found string "yes"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The YAML text is not well formed.
    #[error("{file}:{line}: YAML syntax error: {message}")]
    Syntax {
        /// The file name given by the caller.
        file: String,
        /// 1-based line of the problem.
        line: usize,
        /// What the YAML parser reported.
        message: String,
    },
    /// A field has the wrong type, a required field is missing, or a value is not allowed.
    #[error("{file}:{line}: {field}: {message}")]
    Field {
        /// The file name given by the caller.
        file: String,
        /// 1-based line of the offending value (or of the enclosing mapping when missing).
        line: usize,
        /// Dotted path to the field, e.g. `spec.options.pin_source_ip` or `spec.allow[2].cidr`.
        field: String,
        /// What is wrong, e.g. `expected a boolean, found string "yes"`.
        message: String,
    },
    /// A document's `kind` or `version` is not one this parser reads.
    #[error(
        "{file}:{line}: unsupported resource: kind `{kind}` version `{version}` (expected {expected})"
    )]
    Unsupported {
        /// The file name given by the caller.
        file: String,
        /// 1-based line of the document.
        line: usize,
        /// The `kind` found.
        kind: String,
        /// The `version` found.
        version: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// The input exceeds a bound (size, documents, nesting, alias expansion, header length, hops).
    #[error("{file}:{line}: limit exceeded: {what}")]
    Limit {
        /// The file name given by the caller (or the header name).
        file: String,
        /// 1-based line where the limit was hit (0 when not line-based).
        line: usize,
        /// Which limit, with its value.
        what: String,
    },
    /// Two roles in one role set have the same name.
    #[error("duplicate role {name:?}")]
    DuplicateRole {
        /// The repeated name.
        name: String,
    },
    /// A user's role name is not in the role set.
    #[error("unknown role {name:?}")]
    UnknownRole {
        /// The name that was not found.
        name: String,
    },
    /// An OS login name is not acceptable ([`crate::check_login`]).
    #[error("login {login}: {message}")]
    InvalidLogin {
        /// The login, quoted (clipped to 60 characters).
        login: String,
        /// What is wrong, e.g. that templates are not supported.
        message: String,
    },
    /// A pin prefix length is out of range ([`crate::PinPrefix::new`]).
    #[error("pin prefix: {message}")]
    PinPrefix {
        /// Which length, and its range.
        message: String,
    },
    /// An `X-Forwarded-For` or `Forwarded` header cannot be read: a client error.
    #[error("{header} header: {reason}")]
    Forwarded {
        /// `X-Forwarded-For` or `Forwarded`.
        header: &'static str,
        /// What is wrong, quoting the offending value.
        reason: String,
    },
}

impl Error {
    pub(crate) fn field(
        file: &str,
        line: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Field {
            file: file.to_owned(),
            line,
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn limit(file: &str, line: usize, what: impl Into<String>) -> Self {
        Error::Limit {
            file: file.to_owned(),
            line,
            what: what.into(),
        }
    }
}
