//! Origins for the upstream protocol tests (`upstream_tls.rs`,
//! `upstream_h2.rs`): hyper servers on 127.0.0.1 that speak HTTP/1.1 and
//! HTTP/2 (h2c with prior knowledge, or over TLS by ALPN), record what they
//! saw (SNI, ALPN, HTTP version, connections, streams in flight), and can
//! send GOAWAY to or drop their open connections on demand; a test CA
//! made with rcgen, its certificates, and their PEM written to files.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::common::Server;

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

/// A certificate and its key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Where a certificate and its key were written, for a configuration.
pub struct PemFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Leaf {
    /// The certificates of `cert_pem`, for rustls.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }

    /// The certificate's DER, to compare with what a peer presented.
    pub fn der(&self) -> Vec<u8> {
        self.chain()[0].to_vec()
    }

    /// Writes `NAME.pem` and `NAME.key` in `dir`.
    pub fn write(&self, dir: &crate::common::TempDir, name: &str) -> PemFiles {
        PemFiles {
            cert: dir.write(&format!("{name}.pem"), &self.cert_pem),
            key: dir.write(&format!("{name}.key"), &self.key_pem),
        }
    }
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.leaf(names, false, false)
    }

    /// A certificate for `names`; `expired`: valid only in 2020; `client`:
    /// for client authentication.
    pub fn leaf(&self, names: &[&str], expired: bool, client: bool) -> Leaf {
        let subject = [(DnType::CommonName, if client { "proxy" } else { "origin" })];
        self.issue(names, &subject, expired, client)
    }

    /// A client certificate with no names and the subject `CN=cn, O=org`
    /// (what a server logs of its client).
    pub fn client(&self, cn: &str, org: &str) -> Leaf {
        let subject = [(DnType::CommonName, cn), (DnType::OrganizationName, org)];
        self.issue(&[], &subject, false, true)
    }

    fn issue(
        &self,
        names: &[&str],
        subject: &[(DnType, &str)],
        expired: bool,
        client: bool,
    ) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A rustls server configuration for `leaf` offering `alpn`; with
/// `client_ca`, client certificates signed by it are required.
pub fn server_tls(
    leaf: &Leaf,
    alpn: &[&str],
    client_ca: Option<&TestCa>,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.cert_pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(leaf.chain(), leaf.key()).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// What the origin saw of one connection.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub sni: Option<String>,
    pub alpn: Option<String>,
    /// Whether the client presented a certificate.
    pub client_cert: bool,
}

/// A real origin speaking HTTP/1.1 and HTTP/2 (cleartext: by the preface;
/// TLS: by ALPN), on its own runtime thread.
///
/// Its answer: 200 with `x-version` (the request's HTTP version),
/// `x-authority` (the URI authority, else the Host header) and the path as
/// body. `/slow` waits 200 ms first; `/trailers` ends its body with the
/// trailer `x-checksum: 42`.
pub struct ProtoOrigin {
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    /// The most streams one connection had in flight at once.
    max_in_flight: Arc<AtomicUsize>,
    /// The TLS connections' SNI, ALPN and client certificates, in order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Bumped to gracefully shut down (GOAWAY) every open connection.
    goaway: watch::Sender<u64>,
    /// Bumped to drop every open connection at once.
    kill: watch::Sender<u64>,
    server: Server,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl ProtoOrigin {
    /// A cleartext origin (HTTP/1.1 and h2c with prior knowledge).
    pub fn cleartext() -> ProtoOrigin {
        ProtoOrigin::start(None)
    }

    /// A TLS origin.
    pub fn tls(config: Arc<rustls::ServerConfig>) -> ProtoOrigin {
        ProtoOrigin::start(Some(config))
    }

    fn start(tls: Option<Arc<rustls::ServerConfig>>) -> ProtoOrigin {
        let requests = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (goaway, goaway_rx) = watch::channel(0u64);
        let (kill, kill_rx) = watch::channel(0u64);
        let (reqs, max, seen_by) = (requests.clone(), max_in_flight.clone(), seen.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = Server::on(listener, 2, move |stream, _| {
            let conn = Connection {
                tls: tls.clone(),
                requests: reqs.clone(),
                max_in_flight: max.clone(),
                seen: seen_by.clone(),
                goaway: goaway_rx.clone(),
                kill: kill_rx.clone(),
            };
            conn.serve(stream)
        });
        ProtoOrigin {
            addr: server.addr,
            requests,
            max_in_flight,
            seen,
            goaway,
            kill,
            server,
        }
    }

    pub fn connections(&self) -> usize {
        self.server.connections()
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Every open connection shuts down gracefully (HTTP/2: GOAWAY, then
    /// the streams in flight finish).
    pub fn goaway_all(&self) {
        self.goaway.send_modify(|n| *n += 1);
    }

    /// Every open connection is dropped (TCP close, nothing more sent).
    pub fn kill_all(&self) {
        self.kill.send_modify(|n| *n += 1);
    }
}

struct Connection {
    tls: Option<Arc<rustls::ServerConfig>>,
    requests: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    goaway: watch::Receiver<u64>,
    kill: watch::Receiver<u64>,
}

impl Connection {
    async fn serve(mut self, stream: tokio::net::TcpStream) {
        self.goaway.mark_unchanged();
        self.kill.mark_unchanged();
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(stream),
            Some(config) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let (_, session) = tls.get_ref();
                self.seen.lock().unwrap().push(Seen {
                    sni: session.server_name().map(str::to_string),
                    alpn: session
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned()),
                    client_cert: session.peer_certificates().is_some_and(|c| !c.is_empty()),
                });
                Box::new(tls)
            }
        };
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (requests, max) = (self.requests.clone(), self.max_in_flight.clone());
        let service = hyper::service::service_fn(move |req| {
            requests.fetch_add(1, Ordering::SeqCst);
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            let in_flight = in_flight.clone();
            async move {
                let resp = answer(req).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, Infallible>(resp)
            }
        });
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = self.kill.changed() => {}
            _ = self.goaway.changed() => {
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = self.kill.changed() => {}
                }
            }
        }
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(req: Request<Incoming>) -> Response<Body> {
    let version = format!("{:?}", req.version());
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get("host")
                .map(|h| h.to_str().unwrap_or("").to_string())
        })
        .unwrap_or_default();
    let path = req.uri().path().to_string();
    let _ = req.into_body().collect().await;
    if path == "/slow" {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let body: Body = if path == "/trailers" {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "42".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
            Ok(Frame::data(Bytes::from(path.clone()))),
            Ok(Frame::trailers(trailers)),
        ];
        StreamBody::new(futures_util::stream::iter(frames)).boxed()
    } else {
        http_body_util::Full::new(Bytes::from(path)).boxed()
    };
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert("x-version", version.parse().unwrap());
    resp.headers_mut()
        .insert("x-authority", authority.parse().unwrap());
    resp
}

/// A gateway whose one route goes to the upstream `backend` at `endpoint`,
/// with `upstream` (TOML lines) added to its table.
pub fn backend_config(endpoint: &str, upstream: &str) -> String {
    format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[upstreams.backend]
endpoints = ["{endpoint}"]
connect_timeout = "2s"
response_header_timeout = "5s"
{upstream}

[[routes]]
upstream = "backend"
"#
    )
}

/// The version an origin answer names (`HTTP/1.1`, `HTTP/2.0`).
pub fn origin_version(headers: &HeaderMap) -> Version {
    match headers.get("x-version").and_then(|v| v.to_str().ok()) {
        Some("HTTP/2.0") => Version::HTTP_2,
        Some("HTTP/1.1") => Version::HTTP_11,
        other => panic!("unexpected x-version {other:?}"),
    }
}
