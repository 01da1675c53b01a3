//! A small in-process SSH client for `ippin demo` and the tests: no `ssh` program needed.
//!
//! It binds its socket to a chosen loopback source address before connecting (so the server
//! observes that address), checks the server's host key against the one expected,
//! authenticates with an OpenSSH user certificate, and runs a built-in command or opens a
//! `direct-tcpip` channel. A refusal is a value carrying what the server said: the
//! disconnect message for an authentication, the channel-open failure's description for a
//! forward.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, AuthResult, DisconnectReason, Handle};
use russh::keys::PublicKeyOrCertificate;
use russh::{ChannelId, ChannelMsg, ChannelOpenFailure};
use ssh_key::{Certificate, PrivateKey, PublicKey};

use super::SshError;

/// The most output bytes kept from one command.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// How long the client waits for the reason the server sends after a refusal.
pub const REASON_WAIT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Notes {
    disconnect: Option<String>,
    open_failure: Option<String>,
}

struct Observer {
    expected: PublicKey,
    notes: Arc<Mutex<Notes>>,
}

impl client::Handler for Observer {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.key_data() == self.expected.key_data()
            }
            PublicKeyOrCertificate::Certificate(_) => false,
        })
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        match reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                if let Ok(mut n) = self.notes.lock() {
                    n.disconnect = Some(info.message);
                }
                Ok(())
            }
            DisconnectReason::Error(e) => Err(e),
        }
    }

    async fn channel_open_failure(
        &mut self,
        _channel: ChannelId,
        _reason: ChannelOpenFailure,
        description: &str,
        _language: &str,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        if let Ok(mut n) = self.notes.lock() {
            n.open_failure = Some(description.to_owned());
        }
        Ok(())
    }
}

/// A connected (and, after [`SshClient::authenticate`], authenticated) session.
pub struct SshClient {
    handle: Handle<Observer>,
    notes: Arc<Mutex<Notes>>,
}

impl std::fmt::Debug for SshClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshClient").finish_non_exhaustive()
    }
}

fn client_error(what: &str, e: impl std::fmt::Display) -> SshError {
    SshError::Client(format!("{what}: {e}"))
}

impl SshClient {
    /// Connects to `server` from `source` (the socket is bound to `source`, port chosen by
    /// the system) and completes the key exchange, accepting only `host_key`.
    ///
    /// # Errors
    /// [`SshError::Client`] when the socket cannot be bound or connected, or the key
    /// exchange fails (a different host key included).
    pub async fn connect(
        server: SocketAddr,
        source: IpAddr,
        host_key: PublicKey,
    ) -> Result<SshClient, SshError> {
        let socket = match source {
            IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .map_err(|e| client_error("socket", e))?;
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|e| client_error(&format!("bind {source}"), e))?;
        let stream = socket
            .connect(server)
            .await
            .map_err(|e| client_error(&format!("connect to {server}"), e))?;
        let notes = Arc::new(Mutex::new(Notes::default()));
        let observer = Observer {
            expected: host_key,
            notes: notes.clone(),
        };
        let config = Arc::new(client::Config::default());
        let handle = client::connect_stream(config, stream, observer)
            .await
            .map_err(|e| client_error("key exchange", e))?;
        Ok(SshClient { handle, notes })
    }

    /// Authenticates as `user` with `key` and its certificate. `Ok(Err(reason))` when the
    /// server refused: the message it sent before disconnecting, or a generic text when it
    /// sent none.
    ///
    /// # Errors
    /// [`SshError::Client`] when the connection fails.
    pub async fn authenticate(
        &mut self,
        user: &str,
        key: PrivateKey,
        cert: Certificate,
    ) -> Result<Result<(), String>, SshError> {
        let result = self
            .handle
            .authenticate_openssh_cert(user, Arc::new(key), cert)
            .await;
        match result {
            Ok(AuthResult::Success) => return Ok(Ok(())),
            Ok(AuthResult::Failure { .. }) | Err(_) => {}
        }
        // The reason, when there is one, comes in the disconnect that follows.
        let deadline = tokio::time::Instant::now() + REASON_WAIT;
        loop {
            if let Some(m) = self.notes.lock().ok().and_then(|n| n.disconnect.clone()) {
                return Ok(Err(m));
            }
            if self.handle.is_closed() || tokio::time::Instant::now() >= deadline {
                // The session can report closed a moment before the handler has
                // stored the disconnect message it carried: give it that moment.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let said = self.notes.lock().ok().and_then(|n| n.disconnect.clone());
                return Ok(Err(said.unwrap_or_else(|| {
                    "the server refused the certificate and said nothing more".to_owned()
                })));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Runs `command`; returns its exit status and standard output (at most
    /// [`MAX_OUTPUT`] bytes, lossy UTF-8).
    ///
    /// # Errors
    /// [`SshError::Client`] when the channel cannot be opened or the server refuses the
    /// command.
    pub async fn exec(&self, command: &str) -> Result<(u32, String), SshError> {
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| client_error("open a session channel", e))?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| client_error("exec", e))?;
        let mut out = Vec::new();
        let mut status = None;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    let room = MAX_OUTPUT.saturating_sub(out.len());
                    out.extend_from_slice(data.get(..data.len().min(room)).unwrap_or(&[]));
                }
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                ChannelMsg::Failure => {
                    return Err(SshError::Client(format!("the server refused `{command}`")));
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        let status =
            status.ok_or_else(|| SshError::Client(format!("`{command}`: no exit status")))?;
        Ok((status, String::from_utf8_lossy(&out).into_owned()))
    }

    /// Opens a `direct-tcpip` channel to `host:port` (what `ssh -W` and `ssh -L` do).
    /// `Ok(Err(reason))` when the server refused it, with the reason it gave.
    ///
    /// # Errors
    /// [`SshError::Client`] when the connection fails.
    pub async fn direct_tcpip(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Result<russh::ChannelStream<client::Msg>, String>, SshError> {
        match self
            .handle
            .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0)
            .await
        {
            Ok(channel) => Ok(Ok(channel.into_stream())),
            Err(russh::Error::ChannelOpenFailure(reason)) => {
                // The description reaches the observer just after the failure itself.
                let deadline = tokio::time::Instant::now() + REASON_WAIT;
                loop {
                    let said = self
                        .notes
                        .lock()
                        .ok()
                        .and_then(|mut n| n.open_failure.take());
                    if let Some(said) = said {
                        return Ok(Err(said));
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(Err(format!("refused ({reason:?})")));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            Err(e) => Err(client_error("direct-tcpip", e)),
        }
    }
}
