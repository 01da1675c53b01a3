//! Outbound connections made on a user's behalf (feature `tokio`), held to the user's network
//! restrictions.
//!
//! - [`dial`]: resolve a destination, turn each address into the one the kernel will connect
//!   to, refuse the server's own listening sockets, put each to a [`DialPolicy`], and connect
//!   only to an address it allowed.
//! - `live` (feature `yaml`): network restrictions read from a file and replaced while sessions run
//!   (`LiveRestrictions`), every dial deciding with the rules current at that moment.

pub mod dial;
#[cfg(feature = "yaml")]
#[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
pub mod live;

pub use dial::{AllowAll, DialPolicy, RelayEnd, denial_text, relay};
#[cfg(feature = "yaml")]
pub use live::{ChangeHook, LiveRestrictions, ReloadError};
