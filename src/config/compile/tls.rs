//! Compiles the TLS tables: `[listeners.tls]` into a rustls server configuration,
//! `[upstreams.NAME.tls]` into client configurations and pool keys. Reading and
//! checking certificate and key files is left to `crate::tls`.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use toml::Spanned;

use super::upstreams::transport_key;
use super::{span, Compiler};
use crate::config::raw::{RawListenerTls, RawUpstream};
use crate::config::snapshot::ServerSettings;
use crate::tls::server as tls;
use crate::upstream::{EndpointSpec, Protocol, UpstreamTls, UpstreamTlsSummary};

impl Compiler<'_, '_> {
    /// `[listeners.tls]`: reads and checks every certificate, key and client
    /// CA, and builds the listener's rustls configuration.
    pub(super) fn listener_tls(
        &mut self,
        listener: &str,
        raw: &Spanned<RawListenerTls>,
        server: &ServerSettings,
    ) -> Option<Arc<tls::ServerTls>> {
        let before = self.error_count();
        let t = raw.get_ref();
        let at = |what: &str| format!("listener {listener:?}: {what}");
        let tls13_only = match &t.min_version {
            None => false,
            Some(v) => match v.get_ref().as_str() {
                "1.2" => false,
                "1.3" => true,
                other => {
                    self.d.at(
                        span(v),
                        at(&format!("tls.min_version = {other:?} is not supported: expected \"1.2\" or \"1.3\"")),
                    );
                    false
                }
            },
        };
        let alpn = match &t.alpn {
            None => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Some(list) => {
                if list.get_ref().is_empty() {
                    self.d.at(
                        span(list),
                        at("tls.alpn is empty: expected one or both of \"h2\", \"http/1.1\" (omit it for both)"),
                    );
                }
                let mut alpn: Vec<Vec<u8>> = Vec::new();
                for p in list.get_ref() {
                    match p.get_ref().as_str() {
                        proto @ ("h2" | "http/1.1") => {
                            if !alpn.iter().any(|a| a == proto.as_bytes()) {
                                alpn.push(proto.as_bytes().to_vec());
                            }
                        }
                        other => self.d.at(
                            span(p),
                            at(&format!("unknown ALPN protocol {other:?} in tls.alpn: expected \"h2\" or \"http/1.1\"")),
                        ),
                    }
                }
                alpn
            }
        };
        let handshake_timeout = self.duration(
            &t.handshake_timeout,
            server.header_read_timeout,
            &at("tls.handshake_timeout"),
        );
        let required = match (&t.client_auth, &t.client_ca) {
            (Some(a), None) => {
                self.d.at(
                    span(a),
                    at("tls.client_auth is set but tls.client_ca is not: client certificates are verified against client_ca"),
                );
                true
            }
            (Some(a), Some(_)) => {
                match a.get_ref().as_str() {
                    "required" => true,
                    "optional" => false,
                    other => {
                        self.d.at(
                        span(a),
                        at(&format!("tls.client_auth = {other:?}: expected \"required\" or \"optional\"")),
                    );
                        true
                    }
                }
            }
            (None, _) => true,
        };
        let client_auth_name = match (&t.client_ca, required) {
            (None, _) => "none",
            (Some(_), true) => "required",
            (Some(_), false) => "optional",
        };
        let client_auth =
            t.client_ca
                .as_ref()
                .and_then(|ca| match tls::read_client_roots(ca.get_ref()) {
                    Ok(roots) => Some(tls::ClientAuth { roots, required }),
                    Err(msg) => {
                        self.d.at(span(ca), at(&msg));
                        None
                    }
                });

        if t.certificates.is_empty() {
            self.d.at(
                span(raw),
                at("[listeners.tls] has no certificates: expected at least one [[listeners.tls.certificates]] with cert and key"),
            );
        }
        // The default: the one marked `default = true`, else the first.
        let mut default = None;
        for (i, c) in t.certificates.iter().enumerate() {
            if let Some(d) = &c.get_ref().default {
                if *d.get_ref() {
                    match default {
                        Some(first) => self.d.at(
                            span(d),
                            at(&format!("more than one certificate has default = true (certificate {} and {}): expected at most one", first + 1, i + 1)),
                        ),
                        None => default = Some(i),
                    }
                }
            }
        }
        let default = default.unwrap_or(0);
        let now = tls::now();
        let mut certs = Vec::new();
        let mut summaries = Vec::new();
        // Name → the certificate (1-based) that serves it.
        let mut served: HashMap<String, usize> = HashMap::new();
        for (i, c) in t.certificates.iter().enumerate() {
            let c = c.get_ref();
            let cert_path = c.cert.get_ref().as_str();
            let mut names: Vec<(String, Option<Range<usize>>)> = Vec::new();
            for n in c.names.iter().flatten() {
                match tls::parse_name(n.get_ref()) {
                    Ok(name) => names.push((name, Some(span(n)))),
                    Err(msg) => self.d.at(span(n), at(&msg)),
                }
            }
            let chain = tls::read_certificates(cert_path, "certificate")
                .map_err(|msg| self.d.at(span(&c.cert), at(&msg)))
                .ok();
            let key = tls::read_private_key(c.key.get_ref())
                .map_err(|msg| self.d.at(span(&c.key), at(&msg)))
                .ok();
            let (Some(chain), Some(key)) = (chain, key) else {
                continue;
            };
            let leaf = match tls::inspect(&chain[0], cert_path) {
                Ok(leaf) => leaf,
                Err(msg) => {
                    self.d.at(span(&c.cert), at(&msg));
                    continue;
                }
            };
            if let Some(msg) = leaf.validity_error(now, cert_path) {
                self.d.at(span(&c.cert), at(&msg));
            }
            for (name, name_at) in &names {
                if !leaf.covers(name) {
                    let at_name = name_at.clone().unwrap_or_else(|| span(&c.cert));
                    self.d.at(
                        at_name,
                        at(&format!(
                            "name {name:?} is not covered by certificate {cert_path:?}: its DNS names are {:?} (a mismatched certificate)",
                            leaf.dns_names
                        )),
                    );
                }
            }
            if c.names.is_none() {
                names = leaf.dns_names.iter().map(|n| (n.clone(), None)).collect();
                if names.is_empty() && i != default {
                    self.d.at(
                        span(&c.cert),
                        at(&format!("certificate {cert_path:?} has no DNS names (subjectAltName) and no names: it would never be chosen; set names or make it the default")),
                    );
                }
            }
            for (name, name_at) in &names {
                if let Some(prev) = served.insert(name.clone(), i + 1) {
                    if prev != i + 1 {
                        self.d.at(
                            name_at.clone().unwrap_or_else(|| span(&c.cert)),
                            at(&format!("name {name:?} is served by certificates {prev} and {}: expected each name once per listener", i + 1)),
                        );
                    }
                }
            }
            let names: Vec<String> = names.into_iter().map(|(n, _)| n).collect();
            summaries.push(tls::CertificateSummary {
                cert: cert_path.to_string(),
                names: names.clone(),
                default: i == default,
                not_after: leaf.not_after,
            });
            match tls::certified_key(chain, key, c.key.get_ref(), cert_path) {
                Ok(key) => certs.push((key, names)),
                Err(msg) => self.d.at(span(&c.key), at(&msg)),
            }
        }
        if self.error_count() > before {
            return None;
        }
        let summary = tls::ServerTlsSummary {
            min_version: if tls13_only { "1.3" } else { "1.2" },
            alpn: alpn
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect(),
            client_auth: client_auth_name,
            client_ca: t.client_ca.as_ref().map(|ca| ca.get_ref().clone()),
            certificates: summaries,
        };
        let resolver = tls::CertResolver::new(certs, default);
        match tls::server_config(resolver, tls13_only, alpn, client_auth) {
            Ok(config) => Some(Arc::new(tls::ServerTls {
                config: Arc::new(config),
                handshake_timeout,
                listener: listener.into(),
                summary,
            })),
            Err(msg) => {
                self.d.at(span(raw), at(&msg));
                None
            }
        }
    }

    /// `[upstreams.NAME.tls]`: the client configuration and, per endpoint,
    /// the name it is verified against and its pool key; and the pool key
    /// of cleartext connections. Also checks that `protocol` fits (h2c is
    /// cleartext, h2 needs TLS).
    pub(super) fn upstream_tls(
        &mut self,
        name: &str,
        up: &RawUpstream,
        protocol: Protocol,
        endpoints: &[EndpointSpec],
        hosts: &[Option<Box<str>>],
    ) -> (Option<Box<UpstreamTls>>, u64) {
        let cleartext = transport_key(protocol, None);
        let what = |k: &str| format!("upstreams.{name}.tls.{k}");
        let Some(raw) = &up.tls else {
            if let (Protocol::H2, Some(p)) = (protocol, &up.protocol) {
                self.d.at(
                    span(p),
                    format!("upstreams.{name}.protocol = \"h2\" needs TLS ([upstreams.{name}.tls]): for HTTP/2 without TLS use \"h2c\""),
                );
            }
            return (None, cleartext);
        };
        if let (Protocol::H2c, Some(p)) = (protocol, &up.protocol) {
            self.d.at(
                span(p),
                format!("upstreams.{name}.protocol = \"h2c\" is cleartext HTTP/2 and cannot be used with [upstreams.{name}.tls]: use \"h2\" or \"auto\" for HTTP/2 over TLS"),
            );
            return (None, cleartext);
        }
        let t = raw.get_ref();
        let client_auth = match (&t.client_cert, &t.client_key) {
            (Some(cert), Some(key)) => Some((cert.get_ref().as_str(), key.get_ref().as_str())),
            (None, None) => None,
            (Some(cert), None) => {
                self.d.at(
                    span(cert),
                    format!(
                        "{} needs {} (the certificate's private key)",
                        what("client_cert"),
                        what("client_key")
                    ),
                );
                return (None, cleartext);
            }
            (None, Some(key)) => {
                self.d.at(
                    span(key),
                    format!(
                        "{} needs {} (the certificate it belongs to)",
                        what("client_key"),
                        what("client_cert")
                    ),
                );
                return (None, cleartext);
            }
        };
        let configured = match &t.server_name {
            None => None,
            Some(n) => match crate::tls::client::server_name(n.get_ref()) {
                Ok(sn) => Some(sn),
                Err(msg) => {
                    self.d
                        .at(span(n), format!("{}: {msg}", what("server_name")));
                    return (None, cleartext);
                }
            },
        };
        let insecure = t.insecure_skip_verify.unwrap_or(false);
        let settings = crate::tls::client::ClientSettings {
            ca_file: t.ca_file.as_ref().map(|f| f.get_ref().as_str()),
            client_auth,
            insecure_skip_verify: insecure,
            alpn: protocol.alpn(),
        };
        let config = match crate::tls::client::client_config(&settings) {
            Ok(config) => config,
            Err(e) => {
                let at = match e.key {
                    "ca_file" => t.ca_file.as_ref().map(span),
                    "client_cert" => t.client_cert.as_ref().map(span),
                    "client_key" => t.client_key.as_ref().map(span),
                    _ => None,
                }
                .unwrap_or_else(|| span(raw));
                self.d.at(at, format!("{}: {}", what(e.key), e.message));
                return (None, cleartext);
            }
        };
        if insecure {
            tracing::warn!(
                upstream = name,
                "upstreams.{name}.tls.insecure_skip_verify = true: the endpoints' certificates are NOT verified (for test setups only)"
            );
        }
        // What the pool key distinguishes: the settings as written.
        let identity = format!(
            "{:?} {:?} {:?} {insecure}",
            settings.ca_file,
            t.client_cert.as_ref().map(|c| c.get_ref()),
            t.client_key.as_ref().map(|k| k.get_ref())
        );
        let mut server_names = Vec::with_capacity(endpoints.len());
        let mut keys = Vec::with_capacity(endpoints.len());
        for (ep, host) in endpoints.iter().zip(hosts) {
            let sn = match (&configured, host) {
                (Some(sn), _) => sn.clone(),
                (None, Some(host)) => match crate::tls::client::server_name(host) {
                    Ok(sn) => sn,
                    Err(msg) => {
                        self.d.at(
                            span(raw),
                            format!(
                                "upstream {name:?}: endpoint host {msg}: set {}",
                                what("server_name")
                            ),
                        );
                        return (None, cleartext);
                    }
                },
                (None, None) => rustls::pki_types::ServerName::IpAddress(ep.addr.ip().into()),
            };
            keys.push(transport_key(
                protocol,
                Some(&format!("{identity} {}", sn.to_str())),
            ));
            server_names.push(sn);
        }
        // Upgrades (WebSocket) need HTTP/1.1 whatever the upstream's
        // protocol: the same settings with ALPN offering only http/1.1.
        let http1_config = {
            let mut c = (*config).clone();
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            std::sync::Arc::new(c)
        };
        let tls = UpstreamTls {
            config,
            http1_config,
            server_names: server_names.into(),
            keys: keys.into(),
            summary: UpstreamTlsSummary {
                ca_file: settings.ca_file.map(str::to_string),
                server_name: t.server_name.as_ref().map(|n| n.get_ref().clone()),
                client_cert: t.client_cert.as_ref().map(|c| c.get_ref().clone()),
                insecure_skip_verify: insecure,
            },
        };
        (Some(Box::new(tls)), cleartext)
    }
}

/// The TLS client configuration of a control-plane or middleware HTTPS
/// client (a JWKS fetch, an auth service): HTTP/1.1, the public roots or
/// `ca_file`'s, no client certificate; errors start with `what`.
pub(super) fn https_client(
    ca_file: Option<&str>,
    what: &str,
) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    let settings = crate::tls::client::ClientSettings {
        ca_file,
        client_auth: None,
        insecure_skip_verify: false,
        alpn: vec![b"http/1.1".to_vec()],
    };
    crate::tls::client::client_config(&settings).map_err(|e| format!("{what}: {}", e.message))
}
