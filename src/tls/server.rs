//! TLS termination: the rustls server configuration of a listener. The
//! control plane reads and checks certificates, keys and client CAs here while
//! it compiles a configuration, and builds one `ServerConfig` per TLS listener
//! with a certificate resolver that picks by SNI. The data plane only runs
//! handshakes with it (`data::connection`) and classifies their failures.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use crate::context::TlsInfo;

/// A TLS listener as compiled: what a worker needs to accept on it.
#[derive(Debug)]
pub(crate) struct ServerTls {
    /// Shared by every worker. Resumption takes no lock: session tickets
    /// sealed with this configuration's own key ([`Tickets`]), no
    /// server-side session cache.
    pub(crate) config: Arc<ServerConfig>,
    /// A client that has not finished its handshake by then is closed.
    pub(crate) handshake_timeout: Duration,
    /// The listener's name, for logs.
    pub(crate) listener: Box<str>,
    /// The settings as configured, for the admin API (never read by a
    /// worker).
    pub(crate) summary: ServerTlsSummary,
}

/// What the admin API shows of a TLS listener: its settings as compiled,
/// file paths and certificate facts only (never key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerTlsSummary {
    /// `"1.2"` or `"1.3"`.
    pub(crate) min_version: &'static str,
    /// The ALPN protocols offered, in order.
    pub(crate) alpn: Vec<String>,
    /// `"none"`, `"required"` or `"optional"`.
    pub(crate) client_auth: &'static str,
    /// The client CA file, if any.
    pub(crate) client_ca: Option<String>,
    /// One per `[[listeners.tls.certificates]]`, in order.
    pub(crate) certificates: Vec<CertificateSummary>,
}

/// One certificate of a TLS listener, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertificateSummary {
    /// The certificate file's path.
    pub(crate) cert: String,
    /// The names it is chosen for (configured, else its DNS names).
    pub(crate) names: Vec<String>,
    /// Whether it is served when no name matches.
    pub(crate) default: bool,
    /// The leaf's expiry, Unix seconds.
    pub(crate) not_after: i64,
}

/// How long a client may keep a session ticket (a hint; the key lives as
/// long as the configuration, see [`Tickets`]).
const TICKET_LIFETIME_SECS: u32 = 6 * 60 * 60;

/// Session tickets (TLS 1.3, and the TLS 1.2 ticket extension), sealed with
/// AES-256-GCM under a key made by the control plane when it compiles the
/// configuration. It replaces rustls' session cache and ticket rotator, which
/// both take a lock on every handshake: this needs none, is shared by every
/// worker (a client resumes on whichever worker it reaches), and is renewed
/// with the configuration (every reload), as nginx makes its ticket keys at
/// start-up unless given some.
struct Tickets {
    key: ring::aead::LessSafeKey,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tickets")
    }
}

impl Tickets {
    fn new() -> Result<Tickets, String> {
        use ring::rand::SecureRandom;
        let rng = ring::rand::SystemRandom::new();
        let mut key = [0u8; 32];
        rng.fill(&mut key)
            .map_err(|_| "cannot make a session ticket key: no system randomness".to_string())?;
        let key = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key)
            .map_err(|_| "cannot make a session ticket key".to_string())?;
        Ok(Tickets {
            key: ring::aead::LessSafeKey::new(key),
            rng,
        })
    }
}

impl rustls::server::ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_LIFETIME_SECS
    }

    /// A random nonce, then the sealed session and its tag.
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        use ring::aead::{Aad, Nonce, NONCE_LEN};
        use ring::rand::SecureRandom;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + self.key.algorithm().tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut out[NONCE_LEN..],
            )
            .ok()?;
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    /// Any input (it comes from the client): too short, forged or sealed
    /// under another configuration's key gives `None`, a full handshake.
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        use ring::aead::{Aad, Nonce, NONCE_LEN};
        if cipher.len() < NONCE_LEN + self.key.algorithm().tag_len() {
            return None;
        }
        let (nonce, sealed) = cipher.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let len = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut buf)
            .ok()?
            .len();
        buf.truncate(len);
        Some(buf)
    }
}

/// The crypto provider of every TLS configuration: ring, never a process default.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ---------------------------------------------------------------- loading

/// Reads `path` whole, or says which file and why not.
fn read_file(path: &str, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} file {path:?}: {e}"))
}

/// The certificates of a PEM file (a chain, leaf first).
pub(crate) fn read_certificates(
    path: &str,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_file(path, what)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} file {path:?} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} file {path:?} has no certificate: expected a PEM \"BEGIN CERTIFICATE\" block"
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file: PKCS#8, RSA (PKCS#1) or EC (SEC1).
pub(crate) fn read_private_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read_file(path, "key")?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Ok(key),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => Err(format!(
            "key file {path:?} has no private key: expected a PEM \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" block"
        )),
        Err(e) => Err(format!("key file {path:?} is not valid PEM: {e}")),
    }
}

/// Pairs a chain with its key, checking that the key is usable and belongs
/// to the leaf certificate.
pub(crate) fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    key_path: &str,
    cert_path: &str,
) -> Result<Arc<CertifiedKey>, String> {
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| {
            format!("key file {key_path:?} holds an unsupported or malformed private key (expected RSA of 2048 to 8192 bits, ECDSA P-256/P-384 or Ed25519): {e}")
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(format!(
            "key file {key_path:?} does not match certificate {cert_path:?}: the private key is not the certificate's public key"
        )),
        Err(e) => Err(format!("certificate {cert_path:?} cannot be used: {e}")),
    }
}

/// What the configuration checks of a leaf certificate.
#[derive(Debug)]
pub(crate) struct Leaf {
    /// Its DNS subject alternative names, lowercase.
    pub(crate) dns_names: Vec<String>,
    /// Seconds since the Unix epoch.
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

/// Parses the leaf certificate's SANs and validity.
pub(crate) fn inspect(der: &CertificateDer<'_>, path: &str) -> Result<Leaf, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| {
        format!("certificate file {path:?}: the first certificate cannot be parsed: {e}")
    })?;
    let mut dns_names = Vec::new();
    match cert.subject_alternative_name() {
        Ok(Some(san)) => {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(n) = name {
                    dns_names.push(n.to_ascii_lowercase());
                }
            }
        }
        Ok(None) => {}
        Err(e) => {
            return Err(format!(
                "certificate file {path:?}: its subjectAltName cannot be parsed: {e}"
            ))
        }
    }
    let validity = cert.validity();
    Ok(Leaf {
        dns_names,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

impl Leaf {
    /// Why the certificate is not valid at `now` (Unix seconds), if it is not.
    pub(crate) fn validity_error(&self, now: i64, path: &str) -> Option<String> {
        if now > self.not_after {
            Some(format!(
                "certificate {path:?} expired on {} (valid from {} to {})",
                date(self.not_after),
                date(self.not_before),
                date(self.not_after)
            ))
        } else if now < self.not_before {
            Some(format!(
                "certificate {path:?} is not valid yet: valid from {} to {}",
                date(self.not_before),
                date(self.not_after)
            ))
        } else {
            None
        }
    }

    /// Whether one of the certificate's names covers `name` (a host name or
    /// a `*.` wildcard, lowercase).
    pub(crate) fn covers(&self, name: &str) -> bool {
        self.dns_names.iter().any(|san| san_covers(san, name))
    }
}

/// Whether the SAN `san` covers `name`: equal, or a wildcard SAN standing for
/// exactly the first label of `name` (RFC 6125 §6.4.3).
fn san_covers(san: &str, name: &str) -> bool {
    if san == name {
        return true;
    }
    match (san.strip_prefix("*."), name.split_once('.')) {
        (Some(suffix), Some((label, rest))) => !label.is_empty() && label != "*" && rest == suffix,
        _ => false,
    }
}

/// Checks a configured `names` entry and returns it lowercase: a DNS name, or
/// `*.` and a DNS name.
pub(crate) fn parse_name(name: &str) -> Result<String, String> {
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    let host = lower.strip_prefix("*.").unwrap_or(&lower);
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(valid_label) {
        return Err(format!(
            "invalid certificate name {name:?}: expected a DNS name such as \"example.com\" or a wildcard such as \"*.example.com\""
        ));
    }
    Ok(lower)
}

/// `2001-02-03 04:05:06 UTC` for Unix seconds.
fn date(secs: i64) -> String {
    let t = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    // `2001-02-03T04:05:06.000Z`: whole seconds, so drop the fraction.
    let s = crate::util::time::iso_string(t);
    let (day, time) = s.split_once('T').unwrap_or((&s, ""));
    format!("{day} {} UTC", time.get(..8).unwrap_or(time))
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The trust anchors client certificates are verified against.
pub(crate) fn read_client_roots(path: &str) -> Result<Arc<RootCertStore>, String> {
    let certs = read_certificates(path, "client_ca")?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            format!(
                "client_ca file {path:?}: certificate {} is not a usable CA certificate: {e}",
                i + 1
            )
        })?;
    }
    Ok(Arc::new(roots))
}

// ---------------------------------------------------------------- choosing

/// Picks a certificate by SNI: an exact name, then a wildcard for the name's
/// parent domain, else the default (also for clients that send no SNI).
/// rustls hands the SNI over lowercase, so a lookup is one or two hash-map
/// probes and allocates nothing.
#[derive(Debug)]
pub(crate) struct CertResolver {
    keys: Box<[Arc<CertifiedKey>]>,
    /// Host name → index into `keys`.
    exact: HashMap<Box<str>, usize>,
    /// Parent domain (`example.com` for `*.example.com`) → index.
    wildcard: HashMap<Box<str>, usize>,
    default: usize,
}

impl CertResolver {
    /// `certs`: each key with its (lowercase, checked, unique) names.
    pub(crate) fn new(certs: Vec<(Arc<CertifiedKey>, Vec<String>)>, default: usize) -> Self {
        let mut keys = Vec::with_capacity(certs.len());
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, (key, names)) in certs.into_iter().enumerate() {
            keys.push(key);
            for name in names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.into()).or_insert(i),
                    None => exact.entry(name.into_boxed_str()).or_insert(i),
                };
            }
        }
        CertResolver {
            keys: keys.into(),
            exact,
            wildcard,
            default,
        }
    }

    /// The index of the certificate for `sni`.
    fn pick(&self, sni: Option<&str>) -> usize {
        let Some(name) = sni else {
            return self.default;
        };
        if let Some(&i) = self.exact.get(name) {
            return i;
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(&i) = self.wildcard.get(parent) {
                return i;
            }
        }
        self.default
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.keys.get(self.pick(hello.server_name())).cloned()
    }
}

// ---------------------------------------------------------------- building

/// Client-certificate verification of a listener.
pub(crate) struct ClientAuth {
    pub(crate) roots: Arc<RootCertStore>,
    /// `client_auth = "required"`: no certificate, no connection.
    pub(crate) required: bool,
}

/// Builds a listener's rustls configuration.
pub(crate) fn server_config(
    resolver: CertResolver,
    tls13_only: bool,
    alpn: Vec<Vec<u8>>,
    client_auth: Option<ClientAuth>,
) -> Result<ServerConfig, String> {
    let provider = provider();
    let versions: &[&'static rustls::SupportedProtocolVersion] = if tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("cannot build the TLS configuration: {e}"))?;
    let builder = match client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let mut verifier = WebPkiClientVerifier::builder_with_provider(auth.roots, provider);
            if !auth.required {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| format!("cannot verify client certificates: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = alpn;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.ticketer = Arc::new(Tickets::new()?);
    Ok(config)
}

// ---------------------------------------------------------------- handshakes

/// Why a handshake failed: a small fixed set, one metric label each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeFailure {
    /// Not finished within `handshake_timeout`.
    Timeout,
    /// `client_auth = "required"` and the client sent no certificate.
    NoCertificate,
    /// The client's certificate did not verify.
    BadCertificate,
    /// The client aborted with an alert (e.g. it does not trust ours).
    Alert,
    /// Not TLS, or TLS we do not speak (version, cipher suites, ALPN).
    Protocol,
    /// The client closed the connection mid-handshake.
    Eof,
    /// Anything else (socket errors).
    Other,
}

impl HandshakeFailure {
    /// Every reason, in metric order.
    pub(crate) const ALL: [HandshakeFailure; 7] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::NoCertificate,
        HandshakeFailure::BadCertificate,
        HandshakeFailure::Alert,
        HandshakeFailure::Protocol,
        HandshakeFailure::Eof,
        HandshakeFailure::Other,
    ];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::NoCertificate => "no_certificate",
            HandshakeFailure::BadCertificate => "bad_certificate",
            HandshakeFailure::Alert => "alert",
            HandshakeFailure::Protocol => "protocol",
            HandshakeFailure::Eof => "eof",
            HandshakeFailure::Other => "other",
        }
    }

    /// Classifies the error tokio-rustls returned from a handshake.
    pub(crate) fn of(e: &io::Error) -> HandshakeFailure {
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return match tls {
                rustls::Error::NoCertificatesPresented => HandshakeFailure::NoCertificate,
                rustls::Error::InvalidCertificate(_) => HandshakeFailure::BadCertificate,
                rustls::Error::AlertReceived(_) => HandshakeFailure::Alert,
                rustls::Error::InappropriateMessage { .. }
                | rustls::Error::InappropriateHandshakeMessage { .. }
                | rustls::Error::InvalidMessage(_)
                | rustls::Error::PeerIncompatible(_)
                | rustls::Error::PeerMisbehaved(_)
                | rustls::Error::NoApplicationProtocol
                | rustls::Error::PeerSentOversizedRecord
                | rustls::Error::DecryptError => HandshakeFailure::Protocol,
                _ => HandshakeFailure::Other,
            };
        }
        match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => HandshakeFailure::Eof,
            io::ErrorKind::InvalidData => HandshakeFailure::Protocol,
            _ => HandshakeFailure::Other,
        }
    }
}

/// What a finished handshake tells the requests of its connection.
pub(crate) fn connection_info(conn: &ServerConnection) -> TlsInfo {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    let alpn = match conn.alpn_protocol() {
        Some(b"h2") => Some("h2"),
        Some(b"http/1.1") => Some("http/1.1"),
        _ => None,
    };
    let client_subject = conn.peer_certificates().and_then(|chain| {
        let (_, cert) = x509_parser::parse_x509_certificate(chain.first()?.as_ref()).ok()?;
        Some(cert.subject().to_string().into_boxed_str())
    });
    TlsInfo {
        server_name: conn.server_name().map(Box::from),
        version,
        alpn,
        client_subject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(san_covers("example.com", "example.com"));
        assert!(san_covers("*.example.com", "a.example.com"));
        assert!(san_covers("*.example.com", "*.example.com"));
        assert!(!san_covers("*.example.com", "a.b.example.com"));
        assert!(!san_covers("*.example.com", "example.com"));
        assert!(!san_covers("a.example.com", "*.example.com"));
    }

    #[test]
    fn names_are_checked_and_lowercased() {
        assert_eq!(parse_name("WWW.Example.com").unwrap(), "www.example.com");
        assert_eq!(parse_name("*.example.com").unwrap(), "*.example.com");
        assert!(parse_name("a.*.com").is_err());
        assert!(parse_name("*").is_err());
        assert!(parse_name("exa mple.com").is_err());
        assert!(parse_name("").is_err());
    }

    #[test]
    fn dates_read_well() {
        assert_eq!(date(971_186_136), "2000-10-10 13:55:36 UTC");
    }

    #[test]
    fn picks_exact_then_wildcard_then_default() {
        let key = |_: u8| -> Arc<CertifiedKey> {
            let kp = rcgen_free_key();
            Arc::new(CertifiedKey::new(vec![], kp))
        };
        let r = CertResolver::new(
            vec![
                (key(0), vec!["a.example.com".into()]),
                (key(1), vec!["*.example.com".into(), "b.test".into()]),
                (key(2), vec![]),
            ],
            2,
        );
        assert_eq!(r.pick(Some("a.example.com")), 0);
        assert_eq!(r.pick(Some("z.example.com")), 1);
        assert_eq!(r.pick(Some("b.test")), 1);
        assert_eq!(r.pick(Some("x.z.example.com")), 2);
        assert_eq!(r.pick(Some("example.com")), 2);
        assert_eq!(r.pick(None), 2);
    }

    /// A signing key for the resolver test (never used to sign).
    fn rcgen_free_key() -> Arc<dyn rustls::sign::SigningKey> {
        let pkcs8 = rcgen::KeyPair::generate().unwrap().serialize_der();
        provider()
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(pkcs8.into()))
            .unwrap()
    }
}
