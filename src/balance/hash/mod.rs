//! Consistent hashing: a ring with virtual nodes (Karger et al., as in
//! Envoy's `RING_HASH` and nginx's `hash ... consistent`) and Maglev (Eisenbud
//! et al., NSDI 2016). The table is built once by the control plane when the
//! configuration is compiled and stored in the snapshot, so every worker
//! reads the same table and a key lands on the same endpoint whichever worker
//! serves it. A pick is a lookup (binary search on the ring, one slot in the
//! Maglev table) plus one health load; nothing is written or allocated.
//!
//! Keys and endpoints are hashed with FNV-1a followed by the murmur3
//! finaliser: fast, non-keyed and the same in every process, so several
//! Strait instances given the same configuration agree on where each key
//! goes. Keys may be chosen by clients; that is harmless here because the
//! hash only chooses among the configured endpoints (there is no hash table
//! whose buckets a client could flood): a client that crafts keys can only
//! pick which endpoint it talks to, which it could also do by sending a
//! different key value.
//!
//! An unhealthy endpoint is skipped by walking on: to the next point of
//! another endpoint on the ring (exactly where its keys would go if it were
//! removed), or to the next slot of the key's own Maglev probe sequence. A
//! walk is bounded (`MAX_WALK` candidates); past it the key goes to the
//! healthy endpoint with the highest rendezvous score `mix(key ^ endpoint)`,
//! which is still stable per key.

use std::net::IpAddr;

use http::HeaderName;

use super::random::mix64;
use crate::context::Headers;
use crate::upstream::EndpointSpec;

/// Virtual nodes per unit of weight on a ring, by default.
pub const DEFAULT_VIRTUAL_NODES: u32 = 160;
/// Largest ring: virtual nodes × total weight.
pub(crate) const MAX_RING_POINTS: u64 = 1 << 20;
/// Maglev lookup table size by default (a prime).
pub const DEFAULT_MAGLEV_TABLE_SIZE: u32 = 65_537;
/// Largest Maglev table (a prime, 4 MiB of slots).
pub(crate) const MAX_MAGLEV_TABLE_SIZE: u32 = 1_048_573;
/// Candidates a health walk looks at before it falls back to rendezvous.
const MAX_WALK: usize = 64;

/// 64-bit FNV-1a of `bytes`, then the murmur3 finaliser for avalanche.
#[inline]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// What the hash of a request is computed from (`hash_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HashKey {
    /// `"header:NAME"`: the first value of that request header.
    Header(HeaderName),
    /// `"cookie:NAME"`: the value of that cookie in the `Cookie` headers.
    Cookie(Box<str>),
    /// `"client_ip"`: the IP address of the client's TCP connection.
    ClientIp,
    /// `"path"`: the request path as received, without the query.
    Path,
}

impl HashKey {
    /// Parses a `hash_key` value, or says what was expected.
    pub(crate) fn parse(s: &str) -> Result<HashKey, String> {
        const EXPECTED: &str = r#"expected "header:NAME", "cookie:NAME", "client_ip" or "path""#;
        if let Some(name) = s.strip_prefix("header:") {
            return HeaderName::from_bytes(name.as_bytes())
                .map(HashKey::Header)
                .map_err(|_| {
                    format!("invalid header name {name:?} in hash key {s:?}: expected a token such as \"x-user\"")
                });
        }
        if let Some(name) = s.strip_prefix("cookie:") {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
            return if valid {
                Ok(HashKey::Cookie(name.into()))
            } else {
                Err(format!(
                    "invalid cookie name {name:?} in hash key {s:?}: expected a token such as \"session\""
                ))
            };
        }
        match s {
            "client_ip" => Ok(HashKey::ClientIp),
            "path" => Ok(HashKey::Path),
            _ => Err(format!("invalid hash key {s:?}: {EXPECTED}")),
        }
    }

    /// The key as written in the configuration.
    pub(crate) fn describe(&self) -> String {
        match self {
            HashKey::Header(n) => format!("header:{n}"),
            HashKey::Cookie(n) => format!("cookie:{n}"),
            HashKey::ClientIp => "client_ip".into(),
            HashKey::Path => "path".into(),
        }
    }

    /// The hash of this request's key, or `None` if the request has none (no
    /// such header or cookie, or an empty value). Reads the borrowed request
    /// data in place: no copy, no allocation.
    #[inline]
    pub(crate) fn hash(&self, path: &str, client: IpAddr, headers: &Headers<'_>) -> Option<u64> {
        let bytes = match self {
            HashKey::Header(name) => headers.get(name)?,
            HashKey::Cookie(name) => headers.cookie(name)?,
            HashKey::ClientIp => {
                return Some(match client {
                    IpAddr::V4(ip) => hash_bytes(&ip.octets()),
                    IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                        Some(v4) => hash_bytes(&v4.octets()),
                        None => hash_bytes(&ip.octets()),
                    },
                })
            }
            HashKey::Path => path.as_bytes(),
        };
        (!bytes.is_empty()).then(|| hash_bytes(bytes))
    }
}

/// What a hashed upstream does with a request that has no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HashFallback {
    /// `"round_robin"` (the default).
    RoundRobin,
    /// `"random"`.
    Random,
}

impl HashFallback {
    /// Parses `hash_fallback`, or says what was expected.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        match s {
            "round_robin" => Ok(HashFallback::RoundRobin),
            "random" => Ok(HashFallback::Random),
            other => Err(format!(
                "unknown hash fallback {other:?}: expected \"round_robin\" or \"random\""
            )),
        }
    }

    /// The balancer that picks for requests without a key.
    pub(crate) fn kind(self) -> super::BalanceKind {
        match self {
            HashFallback::RoundRobin => super::BalanceKind::RoundRobin,
            HashFallback::Random => super::BalanceKind::Random,
        }
    }

    /// The name as configured.
    pub(crate) fn name(self) -> &'static str {
        match self {
            HashFallback::RoundRobin => "round_robin",
            HashFallback::Random => "random",
        }
    }
}

/// A consistent-hash lookup table over an upstream's endpoints (immutable).
#[derive(Debug)]
pub struct HashTable {
    /// Each endpoint's identity: the hash of its address (for rendezvous).
    ids: Box<[u64]>,
    lookup: Lookup,
}

#[derive(Debug)]
enum Lookup {
    /// Sorted points and, at the same index, the endpoint owning each.
    Ring {
        points: Box<[u64]>,
        owners: Box<[u32]>,
    },
    /// A prime number of slots, each naming an endpoint.
    Maglev { slots: Box<[u32]> },
}

fn endpoint_ids(endpoints: &[EndpointSpec]) -> Box<[u64]> {
    endpoints
        .iter()
        .map(|e| hash_bytes(e.addr.to_string().as_bytes()))
        .collect()
}

impl HashTable {
    /// A ring with `virtual_nodes × weight` points per endpoint. An endpoint's
    /// points depend only on its address, so adding or removing an endpoint
    /// moves only the keys that land on its points.
    pub fn ring(endpoints: &[EndpointSpec], virtual_nodes: u32) -> HashTable {
        let ids = endpoint_ids(endpoints);
        let mut points: Vec<(u64, u32)> = Vec::new();
        for (i, (e, &id)) in endpoints.iter().zip(ids.iter()).enumerate() {
            for v in 0..u64::from(virtual_nodes) * u64::from(e.weight) {
                points.push((mix64(id ^ mix64(v.wrapping_add(1))), i as u32));
            }
        }
        points.sort_unstable();
        HashTable {
            ids,
            lookup: Lookup::Ring {
                points: points.iter().map(|p| p.0).collect(),
                owners: points.iter().map(|p| p.1).collect(),
            },
        }
    }

    /// A Maglev table of `size` slots (a prime larger than the number of
    /// endpoints; a size that is not prime is rounded up to the next prime). Each endpoint walks its own permutation of the slots
    /// (offset and skip from its address) and the endpoints take turns
    /// claiming their next free slot, a heavier endpoint taking more turns
    /// (weight / largest weight per round), until every slot is taken.
    pub fn maglev(endpoints: &[EndpointSpec], size: u32) -> HashTable {
        let ids = endpoint_ids(endpoints);
        // Each endpoint's walk visits every slot only if the size is prime:
        // round a size that is not up to the next prime.
        let mut m = u64::from(size.max(2));
        while !is_prime(m) {
            m += 1;
        }
        let mut slots = vec![u32::MAX; m as usize];
        if !endpoints.is_empty() {
            // Fill order by identity, so the table does not depend on the
            // order the endpoints are listed in.
            let mut order: Vec<usize> = (0..endpoints.len()).collect();
            order.sort_by_key(|&i| (ids[i], i));
            let perm: Vec<(u64, u64)> = ids
                .iter()
                .map(|&id| {
                    (
                        mix64(id ^ 0x6a09_e667_f3bc_c908) % m,
                        mix64(id ^ 0xbb67_ae85_84ca_a73b) % (m - 1) + 1,
                    )
                })
                .collect();
            let max_w = endpoints
                .iter()
                .map(|e| u64::from(e.weight))
                .max()
                .unwrap_or(1);
            let mut next = vec![0u64; endpoints.len()];
            let mut credit = vec![0u64; endpoints.len()];
            let mut filled = 0u64;
            'fill: loop {
                for &i in &order {
                    credit[i] += u64::from(endpoints[i].weight);
                    while credit[i] >= max_w {
                        credit[i] -= max_w;
                        let (offset, skip) = perm[i];
                        loop {
                            let c = ((offset + next[i] * skip) % m) as usize;
                            next[i] += 1;
                            if slots[c] == u32::MAX {
                                slots[c] = i as u32;
                                filled += 1;
                                break;
                            }
                        }
                        if filled == m {
                            break 'fill;
                        }
                    }
                }
            }
        }
        HashTable {
            ids,
            lookup: Lookup::Maglev {
                slots: slots.into(),
            },
        }
    }

    /// The endpoint for `key` among those `healthy` accepts; `None` if there
    /// is none. The first candidate is the key's own; then the walk.
    #[inline]
    pub fn pick(&self, key: u64, healthy: impl Fn(usize) -> bool) -> Option<usize> {
        match &self.lookup {
            Lookup::Ring { points, owners } => {
                if points.is_empty() {
                    return None;
                }
                let mut at = points.partition_point(|&p| p < key);
                if at == points.len() {
                    at = 0;
                }
                let first = owners[at] as usize;
                if healthy(first) {
                    return Some(first);
                }
                // Clockwise to the next points of other endpoints.
                let mut last = first;
                let mut asked = 1;
                for step in 1..points.len() {
                    let owner = owners[(at + step) % points.len()] as usize;
                    if owner == last || owner == first {
                        continue;
                    }
                    if healthy(owner) {
                        return Some(owner);
                    }
                    last = owner;
                    asked += 1;
                    if asked >= MAX_WALK {
                        break;
                    }
                }
                self.rendezvous(key, healthy)
            }
            Lookup::Maglev { slots } => {
                if self.ids.is_empty() {
                    return None;
                }
                let m = slots.len() as u64;
                let mut slot = key % m;
                let first = slots[slot as usize] as usize;
                if healthy(first) {
                    return Some(first);
                }
                // The key's own probe sequence: a step from its other bits.
                let step = mix64(key) % (m - 1) + 1;
                let mut last = first;
                for _ in 1..MAX_WALK {
                    slot = (slot + step) % m;
                    let owner = slots[slot as usize] as usize;
                    if owner == last || owner == first {
                        continue;
                    }
                    if healthy(owner) {
                        return Some(owner);
                    }
                    last = owner;
                }
                self.rendezvous(key, healthy)
            }
        }
    }

    /// The healthy endpoint with the highest `mix(key ^ id)`.
    fn rendezvous(&self, key: u64, healthy: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for (i, &id) in self.ids.iter().enumerate() {
            let score = mix64(key ^ id);
            if best.map_or(true, |(s, _)| score > s) && healthy(i) {
                best = Some((score, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// Bytes the table holds (for the documentation's memory figures).
    pub fn heap_bytes(&self) -> usize {
        self.ids.len() * 8
            + match &self.lookup {
                Lookup::Ring { points, owners } => points.len() * 8 + owners.len() * 4,
                Lookup::Maglev { slots } => slots.len() * 4,
            }
    }
}

/// Whether `n` is prime (trial division; configuration time only).
pub(crate) fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod tests;
