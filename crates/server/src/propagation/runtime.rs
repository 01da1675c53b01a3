//! The run-time half of a listener's `propagation` settings: the verifier the
//! server arms when it starts the listener. It imports nothing of the crate,
//! so the configuration can carry the (empty) slot without importing the
//! running service.

use std::sync::{Arc, OnceLock};
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

/// The run-time half of a listener's `propagation` settings, shared by
/// the clones of its configuration. It compares equal to every other: it
/// is state, not configuration.
#[derive(Clone, Default)]
pub struct Runtime(pub(crate) Arc<OnceLock<Armed>>);

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Runtime(armed)"
        } else {
            "Runtime(unarmed)"
        })
    }
}

impl PartialEq for Runtime {
    fn eq(&self, _: &Runtime) -> bool {
        true
    }
}

impl Eq for Runtime {}

impl Runtime {
    /// The armed verifier, once the server started the listener.
    pub fn get(&self) -> Option<&Armed> {
        self.0.get()
    }
}
