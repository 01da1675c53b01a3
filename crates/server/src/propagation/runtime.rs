//! The run-time half of a listener's `propagation` settings: the verifier the
//! server arms when it starts the listener ([`super::serve::arm`]), handed to the
//! listener's observation beside its configuration (which holds data only).

use std::sync::Arc;
use std::time::SystemTime;

use ippin_propagation::verify::Verifier;

/// A listener's verifier and clock, set when the server starts it.
#[derive(Clone)]
pub struct Armed {
    /// The verifier (trust anchor, audience, window, caches).
    pub verifier: Arc<Verifier>,
    /// The server's clock (`server::Clock`).
    pub clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
}

impl std::fmt::Debug for Armed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Armed")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}
