//! TLS to upstreams: the rustls client configuration of an upstream, built
//! once by the control plane when it compiles the configuration (files read,
//! certificates and keys checked) and shared by every worker through the
//! snapshot. Which name each endpoint is verified against is the
//! compiler's business (`config/compile.rs`); connecting is `upstream/connect.rs`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// `[upstreams.NAME.tls]` as read, file paths resolved.
pub(crate) struct ClientSettings<'a> {
    /// PEM file of the CA certificates to trust instead of the Mozilla roots.
    pub(crate) ca_file: Option<&'a str>,
    /// PEM certificate chain and private key presented when asked.
    pub(crate) client_auth: Option<(&'a str, &'a str)>,
    pub(crate) insecure_skip_verify: bool,
    /// ALPN protocols offered, in order of preference.
    pub(crate) alpn: Vec<Vec<u8>>,
}

/// What is wrong with a TLS setting, and which key it is about.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SettingError {
    pub(crate) key: &'static str,
    pub(crate) message: String,
}

fn error(key: &'static str, message: String) -> SettingError {
    SettingError { key, message }
}

/// Builds the client configuration: ring provider, TLS 1.2 and 1.3, roots
/// from webpki-roots or the CA file, the client certificate if any, ALPN.
pub(crate) fn client_config(s: &ClientSettings<'_>) -> Result<Arc<ClientConfig>, SettingError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| error("tls", format!("no TLS protocol version available: {e}")))?;
    let roots = match s.ca_file {
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("ca_file", path)? {
                roots.add(cert).map_err(|e| {
                    error(
                        "ca_file",
                        format!("invalid CA certificate in {path:?}: {e}"),
                    )
                })?;
            }
            roots
        }
    };
    let builder = if s.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCertificate { provider }))
    } else {
        builder.with_root_certificates(roots)
    };
    let mut config = match s.client_auth {
        None => builder.with_no_client_auth(),
        Some((cert_path, key_path)) => {
            let chain = certificates("client_cert", cert_path)?;
            let key = private_key(key_path)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => error(
                        "client_key",
                        format!(
                            "the private key in {key_path:?} does not match the certificate in {cert_path:?}"
                        ),
                    ),
                    e => error(
                        "client_key",
                        format!("unusable private key in {key_path:?}: {e}"),
                    ),
                })?
        }
    };
    config.alpn_protocols = s.alpn.clone();
    // rustls' client session store is a mutex that every worker would take
    // on each new upstream connection; connections are pooled, so a full
    // handshake on the rare new one is the cheaper price (law 1: no lock on
    // the data plane).
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Parses `server_name`: a DNS name or an IP address.
pub(crate) fn server_name(text: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(text.to_string())
        .map_err(|_| format!("{text:?} is not a valid DNS name or IP address"))
}

fn read(key: &'static str, path: &str) -> Result<Vec<u8>, SettingError> {
    std::fs::read(path).map_err(|e| error(key, format!("cannot read {path:?}: {e}")))
}

/// Every certificate of a PEM file; none is an error.
fn certificates(
    key: &'static str,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, SettingError> {
    let pem = read(key, path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| error(key, format!("invalid PEM in {path:?}: {e}")))?;
    if certs.is_empty() {
        return Err(error(
            key,
            format!("no certificate in {path:?}: expected a PEM \"BEGIN CERTIFICATE\" block"),
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn private_key(path: &str) -> Result<PrivateKeyDer<'static>, SettingError> {
    let pem = read("client_key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        error(
            "client_key",
            match e {
                rustls::pki_types::pem::Error::NoItemsFound => format!(
                    "no private key in {path:?}: expected a PEM \"PRIVATE KEY\" block (PKCS#8, RSA or EC)"
                ),
                e => format!("invalid private key in {path:?}: {e}"),
            },
        )
    })
}

/// `insecure_skip_verify = true`: accepts any certificate for any name,
/// whoever issued it, but still checks that the handshake is signed by the
/// key of the certificate presented. For test setups only.
#[derive(Debug)]
struct AcceptAnyServerCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_are_dns_names_or_ips() {
        assert!(matches!(
            server_name("api.internal"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("10.0.0.7"),
            Ok(ServerName::IpAddress(_))
        ));
        assert_eq!(
            server_name("bad name!"),
            Err("\"bad name!\" is not a valid DNS name or IP address".into())
        );
    }

    #[test]
    fn defaults_use_the_mozilla_roots_and_the_given_alpn() {
        let config = client_config(&ClientSettings {
            ca_file: None,
            client_auth: None,
            insecure_skip_verify: false,
            alpn: vec![b"h2".to_vec()],
        })
        .unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    }
}
