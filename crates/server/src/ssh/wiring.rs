//! Building the SSH service from the server's loaded state, for a `kind: ssh` listener.

use std::collections::HashMap;
use std::sync::Arc;

use super::{DialPolicy, SshAudit, SshError, SshService, SshSettings, SshUser};
use crate::server::State;

/// The users of the configuration with their roles resolved: the role names and whether any
/// of them sets `pin_source_ip`. A user whose roles do not resolve is left out, so a
/// certificate for them is refused (`unknown_user`) rather than let in without a pin check.
pub fn users_of(state: &State) -> HashMap<String, SshUser> {
    let mut users = HashMap::new();
    for u in &state.config.users {
        if let Ok(roles) = state.roles.select(&u.roles) {
            users.insert(
                u.name.clone(),
                SshUser {
                    requires_pin: roles.requires_pin(),
                    roles: roles.names().to_vec(),
                },
            );
        }
    }
    users
}

/// The SSH service of a server: trusts the server's SSH user CA, knows the configured users
/// and their roles, dials through `dial_policy`, audits to `audit`. The host key is
/// `host_key` when given, else a fresh Ed25519 key.
///
/// # Errors
/// When the CA's public key cannot be read back, or the host key cannot be generated.
pub fn service_for(
    state: &State,
    host_key: Option<ssh_key::PrivateKey>,
    dial_policy: Arc<dyn DialPolicy>,
    audit: Arc<dyn SshAudit>,
) -> Result<SshService, SshError> {
    let ca = ssh_key::PublicKey::from_openssh(state.ca.ssh_public_key().trim())
        .map_err(|e| SshError::TrustedCa(e.to_string()))?;
    let mut settings = SshSettings::new(vec![ca], Arc::new(users_of(state)), audit);
    settings.host_key = host_key;
    settings.dial_policy = dial_policy;
    SshService::new(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn users_and_roles_come_from_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let config_path = crate::ca::init(dir.path()).unwrap();
        let hash = crate::users::hash_password_light("pw").unwrap();
        crate::users::add_user(&config_path, "alice", &["pinned-ip".to_owned()], &hash).unwrap();
        crate::users::add_user(&config_path, "bob", &["dev".to_owned()], &hash).unwrap();
        let state = State::load(Config::load(&config_path).unwrap()).unwrap();

        let users = users_of(&state);
        assert_eq!(users.get("alice").map(|u| u.requires_pin), Some(true));
        assert_eq!(users.get("bob").map(|u| u.requires_pin), Some(false));
        assert_eq!(
            users.get("bob").map(|u| u.roles.clone()),
            Some(vec!["dev".to_owned()])
        );

        let service = service_for(
            &state,
            None,
            Arc::new(super::super::AllowAll),
            Arc::new(|_: super::super::SshAuditEvent| {}),
        )
        .unwrap();
        assert_eq!(
            service.host_public_key().algorithm(),
            ssh_key::Algorithm::Ed25519
        );
    }
}
