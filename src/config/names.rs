//! How the compiler learns the addresses of endpoint names: the [`Resolve`]
//! trait (the system's resolver by default; embedders and tests inject
//! their own), and [`Names`], the look-ups of one compile, with the last good
//! answers a reload or a DNS refresh falls back on. Which names exist and
//! when they are refreshed is the control plane's business (`control/dns.rs`).

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use crate::upstream::Family;

/// Resolves a host name to socket addresses. Called only by the control
/// plane, on a blocking thread; may block and may be slow.
pub trait Resolve: Send + Sync {
    /// Every address `host` resolves to, with `port`.
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The operating system's resolver (`getaddrinfo`: `/etc/hosts`,
/// `/etc/resolv.conf`, nsswitch). It gives no TTL.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        (host, port).to_socket_addrs().map(Iterator::collect)
    }
}

impl<F> Resolve for F
where
    F: Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync,
{
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        self(host, port)
    }
}

/// One name of one upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct NameKey {
    pub(crate) upstream: Box<str>,
    pub(crate) host: Box<str>,
    pub(crate) port: u16,
}

impl NameKey {
    /// `host:port` as written in the configuration.
    pub(crate) fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// How the compiler gets the addresses of the names it meets.
pub(crate) struct Names<'a> {
    resolver: &'a dyn Resolve,
    /// The last good answer of each name.
    known: HashMap<NameKey, Box<[SocketAddr]>>,
    /// Use `known` without asking the resolver (a DNS refresh recompiling);
    /// otherwise ask, and fall back to `known` when the name fails (a reload).
    prefer_known: bool,
}

impl<'a> Names<'a> {
    /// Resolves every name (start, `strait check`).
    pub(crate) fn fresh(resolver: &'a dyn Resolve) -> Self {
        Names {
            resolver,
            known: HashMap::new(),
            prefer_known: false,
        }
    }

    /// Resolves every name, keeping `known` answers for names that fail (a reload).
    pub(crate) fn reload(
        resolver: &'a dyn Resolve,
        known: HashMap<NameKey, Box<[SocketAddr]>>,
    ) -> Self {
        Names {
            resolver,
            known,
            prefer_known: false,
        }
    }

    /// The `known` answers; only names not among them are resolved (a refresh).
    pub(crate) fn known(
        resolver: &'a dyn Resolve,
        known: HashMap<NameKey, Box<[SocketAddr]>>,
    ) -> Self {
        Names {
            resolver,
            known,
            prefer_known: true,
        }
    }

    /// The addresses of `host:port` for `upstream`, or why there are none.
    pub(crate) fn lookup(
        &self,
        upstream: &str,
        host: &str,
        port: u16,
        family: Family,
    ) -> Result<Vec<SocketAddr>, String> {
        let key = NameKey {
            upstream: upstream.into(),
            host: host.into(),
            port,
        };
        let known = self.known.get(&key);
        if let (true, Some(addrs)) = (self.prefer_known, known) {
            return Ok(addrs.to_vec());
        }
        match resolve(self.resolver, host, port, family) {
            Ok(addrs) => Ok(addrs),
            Err(e) => match known {
                Some(addrs) => {
                    tracing::warn!(
                        upstream,
                        host = %format_args!("{host}:{port}"),
                        error = %e,
                        "keeping the last good addresses of an endpoint name"
                    );
                    Ok(addrs.to_vec())
                }
                None => Err(e),
            },
        }
    }
}

/// Resolves `host:port` and keeps the addresses of `family`; an answer with
/// none is an error.
pub(crate) fn resolve(
    resolver: &dyn Resolve,
    host: &str,
    port: u16,
    family: Family,
) -> Result<Vec<SocketAddr>, String> {
    let answer = resolver
        .resolve(host, port)
        .map_err(|e| format!("cannot resolve endpoint host {host:?}: {e}"))?;
    let addrs = family.select(answer);
    if addrs.is_empty() {
        return Err(match family {
            Family::Any => format!("endpoint host {host:?} resolved to no address"),
            Family::Ipv4 => format!(
                "endpoint host {host:?} resolved to no IPv4 address (dns_family = \"ipv4\")"
            ),
            Family::Ipv6 => format!(
                "endpoint host {host:?} resolved to no IPv6 address (dns_family = \"ipv6\")"
            ),
        });
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_reload_keeps_the_last_good_answer_of_a_failing_name_and_a_refresh_does_not_ask() {
        let failing =
            |_: &str, _: u16| -> io::Result<Vec<SocketAddr>> { Err(io::Error::other("SERVFAIL")) };
        let key = NameKey {
            upstream: "u".into(),
            host: "h".into(),
            port: 80,
        };
        let known = HashMap::from([(key, vec![addr("10.0.0.1:80")].into_boxed_slice())]);
        let names = Names::reload(&failing, known.clone());
        assert_eq!(
            names.lookup("u", "h", 80, Family::Any),
            Ok(vec![addr("10.0.0.1:80")])
        );
        // Another upstream's name is not known: the failure is an error.
        assert_eq!(
            names.lookup("v", "h", 80, Family::Any),
            Err("cannot resolve endpoint host \"h\": SERVFAIL".into())
        );
        let answering = |_: &str, port: u16| -> io::Result<Vec<SocketAddr>> {
            Ok(vec![SocketAddr::from(([10, 0, 0, 9], port))])
        };
        let names = Names::known(&answering, known);
        assert_eq!(
            names.lookup("u", "h", 80, Family::Any),
            Ok(vec![addr("10.0.0.1:80")])
        );
        assert_eq!(
            Names::fresh(&answering).lookup("u", "h", 80, Family::Ipv6),
            Err("endpoint host \"h\" resolved to no IPv6 address (dns_family = \"ipv6\")".into())
        );
    }
}
