//! The client side: `ippin login`, and the calls the demo and the tests use
//! (login, `GET /whoami`, renewal), over real sockets, optionally from a
//! chosen local IP and behind a PROXY header.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use ippin_cert::ssh_key;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

use crate::Outcome;
use crate::server::{CertResponse, LoginRequest, RenewRequest};

/// Time allowed to connect, handshake, and get the whole answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// Upper bound on an answer body.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Client errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting, binding or writing failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The connection was closed or reset before an answer (a refusal at the
    /// PROXY stage, a failed TLS handshake, a client certificate refused).
    #[error("connection refused or closed by the server: {0}")]
    Closed(String),
    /// The server answered with an error status.
    #[error("HTTP {status}: {error}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The `error` code of the body.
        error: String,
        /// The `message` of the body.
        message: String,
    },
    /// Something local is wrong (a key, a file, an argument).
    #[error("{0}")]
    Local(String),
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The server's address.
    pub addr: SocketAddr,
    /// The TLS server name to verify (`localhost` or an IP literal).
    pub server_name: String,
    /// The CA that signed the server's certificate, PEM.
    pub ca_pem: String,
    /// Bind the client socket to this local IP first.
    pub bind: Option<IpAddr>,
    /// Bytes sent right after connecting, before TLS (a PROXY header: the
    /// demo's simulated load balancer and spoofing client).
    pub proxy_header: Option<Vec<u8>>,
    /// Extra HTTP request headers (name, value), e.g. `X-Forwarded-For`.
    pub headers: Vec<(String, String)>,
}

impl Endpoint {
    /// An endpoint at `addr` verified with `ca_pem` as `localhost`, direct,
    /// from the default source address.
    pub fn new(addr: SocketAddr, ca_pem: impl Into<String>) -> Endpoint {
        Endpoint {
            addr,
            server_name: "localhost".into(),
            ca_pem: ca_pem.into(),
            bind: None,
            proxy_header: None,
            headers: Vec::new(),
        }
    }

    /// The same endpoint with the client socket bound to `ip`.
    pub fn from_ip(mut self, ip: IpAddr) -> Endpoint {
        self.bind = Some(ip);
        self
    }

    /// The same endpoint sending `header` before TLS.
    pub fn with_proxy_header(mut self, header: Vec<u8>) -> Endpoint {
        self.proxy_header = Some(header);
        self
    }

    /// The same endpoint adding an HTTP request header.
    pub fn with_header(mut self, name: &str, value: &str) -> Endpoint {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Keys and certificates from a login or renewal.
#[derive(Clone)]
pub struct Credentials {
    /// SSH private key, OpenSSH format.
    pub ssh_private_key: String,
    /// SSH public key, OpenSSH text.
    pub ssh_public_key: String,
    /// SSH certificate, OpenSSH text.
    pub ssh_certificate: String,
    /// TLS private key, PKCS#8 PEM.
    pub tls_key_pem: String,
    /// TLS client certificate, PEM.
    pub tls_cert_pem: String,
    /// The pinned IP the server reported.
    pub pinned_ip: Option<String>,
    /// Expiry, RFC 3339.
    pub expires: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("pinned_ip", &self.pinned_ip)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Fresh key pairs: SSH Ed25519 and TLS P-256.
struct Keys {
    ssh_private: String,
    ssh_public: String,
    tls_key_pem: String,
    tls_spki_pem: String,
}

fn new_keys() -> Result<Keys, ClientError> {
    let mut rng = crate::rng();
    let ssh = ssh_key::PrivateKey::random(&mut rng, ssh_key::Algorithm::Ed25519)
        .map_err(|e| ClientError::Local(format!("cannot make an SSH key: {e}")))?;
    let ssh_private = ssh
        .to_openssh(ssh_key::LineEnding::LF)
        .map_err(|e| ClientError::Local(format!("cannot encode the SSH key: {e}")))?
        .to_string();
    let ssh_public = ssh
        .public_key()
        .to_openssh()
        .map_err(|e| ClientError::Local(format!("cannot encode the SSH key: {e}")))?;
    let (tls_key_pem, tls_spki_pem) = ippin_cert::x509::generate_key_pair_p256(&mut rng)
        .map_err(|e| ClientError::Local(format!("cannot make a TLS key: {e}")))?;
    Ok(Keys {
        ssh_private,
        ssh_public,
        tls_key_pem,
        tls_spki_pem,
    })
}

/// A client certificate and its key, PEM.
#[derive(Debug, Clone, Copy)]
pub struct ClientAuth<'a> {
    /// Certificate, PEM.
    pub cert_pem: &'a str,
    /// Key, PKCS#8 PEM.
    pub key_pem: &'a str,
}

impl<'a> From<&'a Credentials> for ClientAuth<'a> {
    fn from(c: &'a Credentials) -> Self {
        ClientAuth {
            cert_pem: &c.tls_cert_pem,
            key_pem: &c.tls_key_pem,
        }
    }
}

fn tls_config(
    ca_pem: &str,
    auth: Option<ClientAuth<'_>>,
) -> Result<rustls::ClientConfig, ClientError> {
    crate::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let c = c.map_err(|e| ClientError::Local(format!("CA certificate: {e}")))?;
        roots
            .add(c)
            .map_err(|e| ClientError::Local(format!("CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Local("CA file: no CERTIFICATE block".into()));
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match auth {
        None => builder.with_no_client_auth(),
        Some(a) => {
            let chain = CertificateDer::pem_slice_iter(a.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ClientError::Local(format!("client certificate: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(a.key_pem.as_bytes())
                .map_err(|e| ClientError::Local(format!("client key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ClientError::Local(format!("client certificate: {e}")))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// One HTTPS request: connect (bound to `ep.bind`), send `ep.proxy_header`,
/// TLS (with `auth` as client certificate), one HTTP/1.1 exchange. Returns
/// the status and the body.
pub async fn request(
    ep: &Endpoint,
    auth: Option<ClientAuth<'_>>,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Vec<u8>), ClientError> {
    request_bounded(ep, auth, method, path, body, MAX_ANSWER_BYTES).await
}

/// [`request`] with an answer body of at most `limit` bytes (a larger one is an error).
pub async fn request_bounded(
    ep: &Endpoint,
    auth: Option<ClientAuth<'_>>,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    limit: usize,
) -> Result<(StatusCode, Vec<u8>), ClientError> {
    let exchange = request_inner(ep, auth, method, path, body, limit);
    match tokio::time::timeout(CLIENT_TIMEOUT, exchange).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout(CLIENT_TIMEOUT)),
    }
}

async fn request_inner(
    ep: &Endpoint,
    auth: Option<ClientAuth<'_>>,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    limit: usize,
) -> Result<(StatusCode, Vec<u8>), ClientError> {
    let io = |what: String| move |source| ClientError::Io { what, source };
    // Everything local first: once connected, the server's header timeout runs.
    let config = tls_config(&ep.ca_pem, auth)?;
    let name = ServerName::try_from(ep.server_name.clone())
        .map_err(|e| ClientError::Local(format!("server name `{}`: {e}", ep.server_name)))?;
    let socket = match ep.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(io("socket".into()))?;
    if let Some(ip) = ep.bind {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(io(format!("bind {ip}")))?;
    }
    let mut tcp = socket
        .connect(ep.addr)
        .await
        .map_err(io(format!("connect {}", ep.addr)))?;
    let _ = tcp.set_nodelay(true);
    if let Some(h) = &ep.proxy_header {
        tcp.write_all(h)
            .await
            .map_err(io("send the PROXY header".into()))?;
    }
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| ClientError::Closed(format!("TLS: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| ClientError::Closed(format!("HTTP: {e}")))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, ep.server_name.as_str());
    let typed = ep
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    if body.is_some() && !typed {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in &ep.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let req = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| ClientError::Local(format!("request: {e}")))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Closed(format!("HTTP: {e}")))?;
    let status = resp.status();
    let bytes = Limited::new(resp.into_body(), limit)
        .collect()
        .await
        .map_err(|e| ClientError::Closed(format!("HTTP body: {e}")))?
        .to_bytes();
    driver.abort();
    Ok((status, bytes.to_vec()))
}

/// A refusal as the server wrote it, made safe for the user's terminal: the server's text
/// is printed, and a server (or whoever holds a certificate of the CA given with `--ca`)
/// must not be able to write escape sequences to it.
fn refused(status: StatusCode, body: &[u8]) -> ClientError {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    ClientError::Refused {
        status: status.as_u16(),
        error: printable(v["error"].as_str().unwrap_or("unknown")),
        message: printable(v["message"].as_str().unwrap_or("")),
    }
}

fn printable(text: &str) -> String {
    crate::ssh::text::printable(text)
}

fn credentials(keys: Keys, body: &[u8]) -> Result<Credentials, ClientError> {
    let r: CertResponse = serde_json::from_slice(body)
        .map_err(|e| ClientError::Local(format!("unexpected answer: {e}")))?;
    Ok(Credentials {
        ssh_private_key: keys.ssh_private,
        ssh_public_key: keys.ssh_public,
        ssh_certificate: r.ssh_certificate,
        tls_key_pem: keys.tls_key_pem,
        tls_cert_pem: r.tls_certificate,
        pinned_ip: r.pinned_ip.as_deref().map(printable),
        expires: printable(&r.expires),
    })
}

/// `POST /v1/login` with fresh keys.
pub async fn login(ep: &Endpoint, user: &str, password: &str) -> Result<Credentials, ClientError> {
    let keys = new_keys()?;
    let body = serde_json::to_vec(&LoginRequest {
        user: user.to_owned(),
        password: password.to_owned(),
        ssh_public_key: keys.ssh_public.clone(),
        tls_public_key: keys.tls_spki_pem.clone(),
    })
    .map_err(|e| ClientError::Local(e.to_string()))?;
    let (status, answer) = request(ep, None, Method::POST, "/v1/login", Some(body)).await?;
    if status != StatusCode::OK {
        return Err(refused(status, &answer));
    }
    credentials(keys, &answer)
}

/// `POST /v1/renew` with fresh keys, authenticated by `current`.
pub async fn renew(ep: &Endpoint, current: &Credentials) -> Result<Credentials, ClientError> {
    let keys = new_keys()?;
    let body = serde_json::to_vec(&RenewRequest {
        ssh_public_key: keys.ssh_public.clone(),
        tls_public_key: keys.tls_spki_pem.clone(),
    })
    .map_err(|e| ClientError::Local(e.to_string()))?;
    let (status, answer) = request(
        ep,
        Some(current.into()),
        Method::POST,
        "/v1/renew",
        Some(body),
    )
    .await?;
    if status != StatusCode::OK {
        return Err(refused(status, &answer));
    }
    credentials(keys, &answer)
}

/// `GET /whoami` with `creds`: the parsed JSON on 200, the refusal otherwise.
pub async fn whoami(
    ep: &Endpoint,
    creds: &Credentials,
) -> Result<crate::server::Whoami, ClientError> {
    let (status, answer) = request(ep, Some(creds.into()), Method::GET, "/whoami", None).await?;
    if status != StatusCode::OK {
        return Err(refused(status, &answer));
    }
    serde_json::from_slice(&answer).map_err(|e| ClientError::Local(format!("whoami: {e}")))
}

/// Splits `https://HOST:PORT` into host and port.
pub(crate) fn parse_server(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("server `{url}`: expected https://HOST:PORT"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, p) = v6
            .split_once("]:")
            .ok_or_else(|| format!("server `{url}`: expected https://[V6]:PORT"))?;
        (h.to_owned(), p)
    } else {
        let (h, p) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("server `{url}`: the port is missing"))?;
        (h.to_owned(), p)
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("server `{url}`: bad port `{port}`"))?;
    if host.is_empty() {
        return Err(format!("server `{url}`: the host is missing"));
    }
    Ok((host, port))
}

/// Writes `text` to `dir/name` as a NEW file (mode 0600 for a private key, 0644
/// otherwise) renamed over the old one ([`crate::files::replace`]): an existing file's
/// mode (a 0644 key OpenSSH would refuse), inode and links are never reused.
fn write_out(dir: &Path, name: &str, text: &str, private: bool) -> Result<PathBuf, String> {
    let path = dir.join(name);
    let mut text = text.to_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    crate::files::replace(&path, text.as_bytes(), if private { 0o600 } else { 0o644 })
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Writes `creds` into `dir`: `ippin_ed25519` (+ `.pub`, `-cert.pub`, as
/// OpenSSH looks for them), `ippin_tls.key`, `ippin_tls.pem`.
pub fn save(dir: &Path, creds: &Credentials) -> Result<Vec<PathBuf>, String> {
    save_waiting(dir, creds, SAVE_LOCK_WAIT)
}

/// [`save`], waiting at most `wait` for another login writing into `dir`.
fn save_waiting(
    dir: &Path,
    creds: &Credentials,
    wait: std::time::Duration,
) -> Result<Vec<PathBuf>, String> {
    // A folder made here is the user's alone (0700); an existing one is left as it is.
    let mut folder = std::fs::DirBuilder::new();
    folder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        folder.mode(0o700);
    }
    folder
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    check_own_folder(dir)?;
    // One writer at a time: two logins into one folder at once (two `ippin ssh` relogins)
    // would otherwise leave one's key beside the other's certificate. (OpenSSH reads
    // without the lock: while a save runs, it may still see the old pair half replaced.)
    let _lock = lock_folder(dir, wait)?;
    Ok(vec![
        write_out(dir, "ippin_ed25519", &creds.ssh_private_key, true)?,
        write_out(dir, "ippin_ed25519.pub", &creds.ssh_public_key, false)?,
        write_out(dir, "ippin_ed25519-cert.pub", &creds.ssh_certificate, false)?,
        write_out(dir, "ippin_tls.key", &creds.tls_key_pem, true)?,
        write_out(dir, "ippin_tls.pem", &creds.tls_cert_pem, false)?,
    ])
}

/// Refuses an identity folder that is not this user's alone: a symbolic link (its target
/// can be swapped), a folder another user owns, or one group or others may write. Whoever
/// can rename files in it could put their own key and certificate where this user's `ssh`
/// (and `ippin ssh`) will take them, and have this user log in to their account.
pub(crate) fn check_own_folder(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let (mode, owner) = (meta.mode() & 0o7777, meta.uid());
        let me = nix::unistd::geteuid().as_raw();
        if !meta.is_dir() || owner != me || mode & 0o022 != 0 {
            return Err(format!(
                "{}: {} (owner uid {owner}, mode {mode:04o}); the identity folder must be a \
                 folder of this user's (uid {me}) that no one else may write",
                dir.display(),
                if meta.file_type().is_symlink() {
                    "a symbolic link"
                } else if !meta.is_dir() {
                    "not a folder"
                } else {
                    "not this user's alone"
                }
            ));
        }
    }
    Ok(())
}

/// Whether `meta` (of `file`, in the identity folder `dir`) is a file of this user's that no
/// one else may write (`private`: nor read); the refusal names it.
#[cfg(unix)]
fn identity_file_is_own(
    meta: &std::fs::Metadata,
    file: &Path,
    dir: &Path,
    private: bool,
) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let (mode, owner) = (meta.mode() & 0o7777, meta.uid());
    let open = if private { 0o077 } else { 0o022 };
    if !meta.is_file() || owner != nix::unistd::geteuid().as_raw() || mode & open != 0 {
        return Err(format!(
            "{}: not a file of this user's that no one else may {} (owner uid {owner}, \
             mode {mode:04o}); run `ippin login --out {}` again",
            file.display(),
            if private { "read or write" } else { "write" },
            dir.display()
        ));
    }
    Ok(())
}

/// Checks the file `name` of the identity folder `dir` (what `ippin login` wrote) for a
/// program that reads it itself (OpenSSH): the folder this user's alone
/// ([`check_own_folder`]), the file not a link, this user's, and no one else may write it.
pub(crate) fn check_identity_file(dir: &Path, name: &str) -> Result<std::path::PathBuf, String> {
    check_own_folder(dir)?;
    let f = dir.join(name);
    #[cfg(unix)]
    {
        let meta = std::fs::symlink_metadata(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        identity_file_is_own(&meta, &f, dir, false)?;
    }
    Ok(f)
}

/// Reads the file `name` of the identity folder `dir`, refusing one that is not this user's
/// alone: a folder others control ([`check_own_folder`]), a symbolic link (not followed), a
/// file another user owns or group or others may write, and (`private`, a key) one they may
/// read; checked on the descriptor read. Whoever could plant the key and certificate would
/// have this user act under their identity (`ippin ctl`'s changes made, and audited, as
/// theirs).
pub(crate) fn read_identity_file(dir: &Path, name: &str, private: bool) -> Result<String, String> {
    use std::io::Read;
    check_own_folder(dir)?;
    let f = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK);
    }
    let file = options
        .open(&f)
        .map_err(|e| format!("{}: {e}", f.display()))?;
    #[cfg(unix)]
    {
        let meta = file
            .metadata()
            .map_err(|e| format!("{}: {e}", f.display()))?;
        identity_file_is_own(&meta, &f, dir, private)?;
    }
    let limit = crate::config::MAX_CONFIG_BYTES;
    let mut text = String::new();
    file.take(limit + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", f.display()))?;
    if text.len() as u64 > limit {
        return Err(format!("{}: larger than {limit} bytes", f.display()));
    }
    Ok(text)
}

/// How long [`save`] waits for another login writing into the same folder.
const SAVE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The lock file [`save`] holds in the identity folder.
const LOCK_FILE: &str = ".ippin.lock";

/// An exclusive `flock` on `dir/.ippin.lock`, held until dropped; waits at most `wait` for
/// another holder. The file is the user's own, mode 0600, so no other user can open it to
/// hold the lock against them (a lock on the folder itself could be taken by anyone who
/// may read the folder); it is never opened through a symbolic link. One the user cannot
/// open (left by a login run as root), or a file system without `flock` (some NFS and FUSE
/// mounts): the save goes on unlocked, with a warning.
fn lock_folder(
    dir: &Path,
    wait: std::time::Duration,
) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, String> {
    use nix::errno::Errno;
    use nix::fcntl::{Flock, FlockArg};
    let path = dir.join(LOCK_FILE);
    let mut open = std::fs::OpenOptions::new();
    open.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(0o600).custom_flags(nix::libc::O_NOFOLLOW);
    }
    let mut file = match open.open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::warn!("{}: {e}; writing without the lock", path.display());
            return Ok(None);
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    // A lock file someone else made (a folder others may write in) is theirs to hold
    // against us: not used, as one that cannot be opened is not.
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = file
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o077 != 0 {
            tracing::warn!(
                "{}: not this user's own (owner uid {}, mode {:o}); writing without the lock",
                path.display(),
                meta.uid(),
                meta.mode() & 0o7777
            );
            return Ok(None);
        }
    }
    let deadline = std::time::Instant::now() + wait;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(Some(lock)),
            Err((f, Errno::EWOULDBLOCK)) if std::time::Instant::now() < deadline => {
                file = f;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(format!(
                    "{}: another login is still writing into this folder (waited {wait:?})",
                    dir.display()
                ));
            }
            Err((_, e @ (Errno::ENOLCK | Errno::EOPNOTSUPP | Errno::ENOSYS))) => {
                tracing::warn!(
                    "{}: cannot lock the folder ({e}); writing without the lock",
                    dir.display()
                );
                return Ok(None);
            }
            Err((_, e)) => return Err(format!("{}: locking the folder: {e}", dir.display())),
        }
    }
}

/// `ippin login …`
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The login listener, as `https://HOST:PORT`.
    #[arg(long)]
    pub server: String,
    /// The user name.
    #[arg(long)]
    pub user: String,
    /// The CA certificate that signed the listener's certificate (PEM).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Where to write the keys and certificates.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Bind the client socket to this local IP before connecting (choose
    /// the source address, e.g. 127.0.0.2).
    #[arg(long)]
    pub bind: Option<IpAddr>,
}

/// `ippin login`.
pub async fn login_command(args: &LoginArgs) -> Outcome {
    let fail = |m: String| Outcome::fail(1, format!("error: {m}\n"));
    let (host, port) = match parse_server(&args.server) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let Some(ca) = &args.ca else {
        return fail(
            "the CA that signed the server's certificate is needed: pass --ca FILE \
             (ca/tls_ca.pem from `ippin ca init`)"
                .into(),
        );
    };
    let ca_pem = match crate::config::read_bounded(ca, crate::config::MAX_CONFIG_BYTES) {
        Ok(t) => t,
        Err(e) => return fail(e.to_string()),
    };
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addrs) => addrs.take(8).collect(),
            Err(e) => return fail(format!("{host}: {e}")),
        },
    };
    if addrs.is_empty() {
        return fail(format!("{host}: no address"));
    }
    let password = match crate::users::read_password(&format!("password for {}: ", args.user)) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    // Try each address the name resolves to (`localhost` may give ::1
    // first while the server listens on 127.0.0.1); stop at the first that
    // connects, whatever its answer.
    // With `--bind`, only addresses of the same family: connecting from
    // another source than the one asked for would defeat its purpose.
    let mut last = None;
    for addr in addrs {
        if args.bind.is_some_and(|ip| ip.is_ipv4() != addr.is_ipv4()) {
            continue;
        }
        let ep = Endpoint {
            addr,
            server_name: host.clone(),
            ca_pem: ca_pem.clone(),
            bind: args.bind,
            proxy_header: None,
            headers: Vec::new(),
        };
        match login(&ep, &args.user, &password).await {
            Ok(creds) => return finish_login(args, &creds),
            Err(e @ ClientError::Io { .. }) => last = Some(e),
            Err(e) => return fail(e.to_string()),
        }
    }
    fail(last.map_or_else(
        || format!("{host}: no address of the --bind address's family"),
        |e| e.to_string(),
    ))
}

fn finish_login(args: &LoginArgs, creds: &Credentials) -> Outcome {
    let fail = |m: String| Outcome::fail(1, format!("error: {m}\n"));
    let files = match save(&args.out, creds) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let mut out = String::new();
    match &creds.pinned_ip {
        Some(pin) if pin.contains('/') => out.push_str(&format!(
            "pinned to {pin}: these certificates work only from addresses inside {pin} (log in again from elsewhere)\n"
        )),
        Some(ip) => out.push_str(&format!(
            "pinned to {ip}: these certificates work only from {ip} (log in again from elsewhere)\n"
        )),
        None => out.push_str("not pinned: your roles do not require a pinned source IP\n"),
    }
    out.push_str(&format!("expires {}\n", creds.expires));
    for f in files {
        out.push_str(&format!("wrote {}\n", f.display()));
    }
    Outcome::ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(tag: &str) -> Credentials {
        Credentials {
            ssh_private_key: format!("key {tag}"),
            ssh_public_key: format!("pub {tag}"),
            ssh_certificate: format!("cert {tag}"),
            tls_key_pem: format!("tls key {tag}"),
            tls_cert_pem: format!("tls cert {tag}"),
            pinned_ip: None,
            expires: String::new(),
        }
    }

    /// What the server writes is shown with its escape sequences written out: a server
    /// (or anyone with a certificate of the `--ca` CA) cannot drive the user's terminal.
    #[test]
    fn server_text_reaches_the_terminal_escaped() {
        let body = br#"{"error":"x\u001b[2J","message":"see \u001b]0;pwned\u0007 \u202e here"}"#;
        let ClientError::Refused { error, message, .. } = refused(StatusCode::FORBIDDEN, body)
        else {
            panic!("not a refusal");
        };
        assert!(
            !error.contains('\u{1b}') && !message.contains('\u{1b}'),
            "{message}"
        );
        assert!(
            !message.contains('\u{202e}') && !message.contains('\u{7}'),
            "{message}"
        );
        assert!(message.contains("pwned"), "{message}");
        let keys = new_keys().unwrap();
        let answer = serde_json::json!({
            "ssh_certificate": "c",
            "tls_certificate": "t",
            "pinned_ip": "127.0.0.1\u{1b}[31m",
            "expires": "soon\u{9b}2J",
        });
        let creds = credentials(keys, answer.to_string().as_bytes()).unwrap();
        assert!(!creds.pinned_ip.unwrap().contains('\u{1b}'));
        assert!(!creds.expires.contains('\u{9b}'));
    }

    /// A login writing into a folder holds its lock: another one waits for it (here: not
    /// at all, so it is refused and writes nothing), then writes once it is released. The
    /// lock file is the user's alone (0600).
    #[test]
    fn one_login_at_a_time_writes_into_a_folder() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let held = lock_folder(dir.path(), std::time::Duration::ZERO).unwrap();
        assert!(held.is_some(), "tmpfs has flock");
        let err = save_waiting(dir.path(), &creds("b"), std::time::Duration::ZERO).unwrap_err();
        assert!(err.contains("another login is still writing"), "{err}");
        assert!(!dir.path().join("ippin_ed25519").exists());
        drop(held);
        save_waiting(dir.path(), &creds("b"), std::time::Duration::ZERO).unwrap();
        let key = std::fs::read_to_string(dir.path().join("ippin_ed25519")).unwrap();
        assert_eq!(key, "key b\n");
        let lock = std::fs::metadata(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(lock.permissions().mode() & 0o777, 0o600);
    }

    /// The lock file is never opened through a symbolic link (whoever planted it could
    /// make the login create or lock a file elsewhere).
    #[test]
    fn the_lock_file_is_not_followed_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, dir.path().join(LOCK_FILE)).unwrap();
        assert!(save(dir.path(), &creds("a")).is_err());
        assert!(!target.exists());
    }

    /// A lock file this user does not own (made by another user in a folder they may write
    /// in), or that others may open, is not waited for: the login goes on without it.
    #[test]
    fn a_lock_file_someone_else_holds_is_not_waited_for() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        for (uid, mode) in [
            (65_534u32, 0o600u32),
            (nix::unistd::geteuid().as_raw(), 0o666),
        ] {
            let file = std::fs::File::create(&path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            std::os::unix::fs::chown(&path, Some(uid), None).unwrap();
            // Held by "them", as long as this test runs.
            let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).unwrap();
            let started = std::time::Instant::now();
            let got = lock_folder(dir.path(), std::time::Duration::from_secs(30)).unwrap();
            assert!(got.is_none(), "uid {uid} mode {mode:o}: locked");
            assert!(started.elapsed() < std::time::Duration::from_secs(5));
            drop(held);
            std::fs::remove_file(&path).unwrap();
        }
        // This user's own 0600 lock file is used.
        assert!(
            lock_folder(dir.path(), std::time::Duration::from_secs(1))
                .unwrap()
                .is_some()
        );
    }

    /// The identity folder must be this user's alone: one another user owns, or may write,
    /// or a symbolic link (its target can be swapped) is refused before anything is written,
    /// as whoever can rename files in it could put their own key and certificate there.
    #[test]
    fn an_identity_folder_others_control_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let creds = Credentials {
            ssh_private_key: "k".into(),
            ssh_public_key: "p".into(),
            ssh_certificate: "c".into(),
            tls_key_pem: "t".into(),
            tls_cert_pem: "x".into(),
            pinned_ip: None,
            expires: String::new(),
        };
        let root = tempfile::tempdir().unwrap();
        let theirs = root.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65_534), None).unwrap();
        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let mine = root.path().join("mine");
        std::fs::create_dir(&mine).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&mine, &link).unwrap();
        for dir in [&theirs, &open, &link] {
            let refused = save(dir, &creds).unwrap_err();
            assert!(refused.contains("identity folder"), "{refused}");
            assert!(
                std::fs::read_dir(dir).unwrap().next().is_none(),
                "{}: written to",
                dir.display()
            );
        }
        assert_eq!(save(&mine, &creds).unwrap().len(), 5);
    }

    #[test]
    fn server_urls() {
        assert_eq!(
            parse_server("https://127.0.0.1:3080"),
            Ok(("127.0.0.1".into(), 3080))
        );
        assert_eq!(
            parse_server("https://localhost:3080/"),
            Ok(("localhost".into(), 3080))
        );
        assert_eq!(parse_server("https://[::1]:443"), Ok(("::1".into(), 443)));
        assert!(parse_server("http://127.0.0.1:1").is_err());
        assert!(parse_server("https://127.0.0.1").is_err());
        assert!(parse_server("https://:80").is_err());
        assert!(parse_server("https://h:99999").is_err());
    }
}
