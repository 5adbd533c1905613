//! The client-address filter (`type = "ip_filter"`): a request whose client
//! (the TCP peer, or the address a trusted proxy forwarded,
//! `RequestContext::client_ip`) is denied, or not allowed when an allow
//! list is set, is answered 403 and goes nowhere. The lists are compiled
//! into sorted ranges, so a lookup is a binary search whatever their size.

use std::net::IpAddr;
use std::sync::Arc;

use http::StatusCode;
use ipnet::IpNet;

use super::refusal;
use crate::context::{Flow, RequestContext, UpstreamRequest};
use crate::metrics::Refusal;

/// What a refused client reads.
const FORBIDDEN: &str = "403 Forbidden: the client address is not allowed on this route\n";

/// `type = "ip_filter"`. Cloned into every route that lists it: the lists
/// are shared.
#[derive(Clone)]
pub(crate) struct IpFilter {
    lists: Arc<Lists>,
    /// Its index in the snapshot's policies (where refusals count).
    policy: u16,
}

struct Lists {
    allow: Ranges,
    deny: Ranges,
    /// `server.trusted_proxies`, which decide the client address.
    trusted: Box<[IpNet]>,
    /// The entries as configured (for the admin API).
    allow_nets: Box<[IpNet]>,
    deny_nets: Box<[IpNet]>,
}

impl IpFilter {
    /// At least one of the lists is non-empty (checked at load).
    pub(crate) fn new(allow: Vec<IpNet>, deny: Vec<IpNet>, trusted: &[IpNet], policy: u16) -> Self {
        IpFilter {
            lists: Arc::new(Lists {
                allow: Ranges::new(&allow),
                deny: Ranges::new(&deny),
                trusted: trusted.into(),
                allow_nets: allow.into(),
                deny_nets: deny.into(),
            }),
            policy,
        }
    }

    pub(crate) fn allow(&self) -> &[IpNet] {
        &self.lists.allow_nets
    }

    pub(crate) fn deny(&self) -> &[IpNet] {
        &self.lists.deny_nets
    }

    pub(crate) fn on_request(
        &self,
        ctx: &mut RequestContext<'_>,
        req: &UpstreamRequest<'_>,
    ) -> Flow {
        let lists = &*self.lists;
        let ip = ctx.client_ip(&req.headers, &lists.trusted);
        let reason = match self.decide(ip) {
            None => return Flow::Continue,
            Some(reason) => reason,
        };
        ctx.ids.set_refusal(self.policy, reason);
        ctx.log.cause = Some(reason.label());
        Flow::respond(refusal(StatusCode::FORBIDDEN, FORBIDDEN))
    }

    /// Why `ip` is refused, if it is: `deny` wins over `allow`; a non-empty
    /// `allow` refuses what it does not list.
    fn decide(&self, ip: IpAddr) -> Option<Refusal> {
        let lists = &*self.lists;
        if lists.deny.contains(ip) {
            Some(Refusal::Denied)
        } else if !lists.allow.is_empty() && !lists.allow.contains(ip) {
            Some(Refusal::NotAllowed)
        } else {
            None
        }
    }
}

/// Addresses as sorted, disjoint, inclusive ranges per family, so that
/// `contains` is one binary search (overlapping entries merged at load).
#[derive(Debug, Default, PartialEq)]
struct Ranges {
    v4: Box<[(u32, u32)]>,
    v6: Box<[(u128, u128)]>,
}

impl Ranges {
    fn new(nets: &[IpNet]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        Ranges {
            v4: merged(v4),
            v6: merged(v6),
        }
    }

    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// `ip` must be canonical (an IPv4-mapped address as IPv4), as
    /// `RequestContext::client_ip` gives it.
    fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => within(&self.v4, u32::from(a)),
            IpAddr::V6(a) => within(&self.v6, u128::from(a)),
        }
    }
}

fn merged<T: Ord + Copy>(mut ranges: Vec<(T, T)>) -> Box<[(T, T)]> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out.into()
}

fn within<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let after = ranges.partition_point(|&(start, _)| start <= x);
    after > 0 && x <= ranges[after - 1].1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn filter(allow: &[&str], deny: &[&str]) -> IpFilter {
        IpFilter::new(nets(allow), nets(deny), &[], 0)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_are_merged_and_searched() {
        let r = Ranges::new(&nets(&[
            "10.0.0.0/8",
            "10.1.0.0/16",
            "192.168.1.7/32",
            "::1/128",
        ]));
        assert_eq!(r.v4.len(), 2);
        for inside in [
            "10.0.0.0",
            "10.255.255.255",
            "10.1.2.3",
            "192.168.1.7",
            "::1",
        ] {
            assert!(r.contains(ip(inside)), "{inside}");
        }
        for outside in [
            "9.255.255.255",
            "11.0.0.0",
            "192.168.1.6",
            "192.168.1.8",
            "::2",
        ] {
            assert!(!r.contains(ip(outside)), "{outside}");
        }
        let all = Ranges::new(&nets(&["0.0.0.0/0", "::/0"]));
        assert!(all.contains(ip("255.255.255.255")) && all.contains(ip("ffff::1")));
    }

    #[test]
    fn deny_wins_and_a_set_allow_list_refuses_the_rest() {
        let f = filter(&["10.0.0.0/8"], &["10.9.0.0/16"]);
        assert_eq!(f.decide(ip("10.1.1.1")), None);
        assert_eq!(f.decide(ip("10.9.1.1")), Some(Refusal::Denied));
        assert_eq!(f.decide(ip("192.0.2.1")), Some(Refusal::NotAllowed));
        let deny_only = filter(&[], &["127.0.0.1/32"]);
        assert_eq!(deny_only.decide(ip("127.0.0.2")), None);
        assert_eq!(deny_only.decide(ip("127.0.0.1")), Some(Refusal::Denied));
        // IPv6 entries never match an IPv4 client, and the other way round.
        let v6 = filter(&["::/0"], &[]);
        assert_eq!(v6.decide(ip("127.0.0.1")), Some(Refusal::NotAllowed));
    }
}
