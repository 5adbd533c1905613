//! The request's headers as every phase sees them, whatever the client's
//! protocol: [`Headers`], one interface over an owned `HeaderMap` (HTTP/2, and
//! any head hyper parsed) and over views of an HTTP/1.1 head's own bytes with
//! the edits kept beside them in the request's arena. Parsing the head and
//! writing the upstream's are the HTTP/1.1 path's; this module only holds the
//! fields between the two.

use std::fmt;

use bumpalo::collections::Vec as BumpVec;
use bumpalo::Bump;
use http::header::{GetAll, InvalidHeaderValue};
use http::{HeaderMap, HeaderName, HeaderValue};

/// A received header field, as views of the head's bytes: `name` as the
/// client spelled it, `value` without the surrounding whitespace. The
/// codec's own type (httparse's), so the field list a parsed head keeps is
/// the one the headers borrow, not a copy of it.
pub use crate::http1::Field;

/// The headers of the request that goes upstream. Lookups take a name in any
/// case (`"x-api-key"`, `&HeaderName`, `header::HOST`); edits take a
/// `HeaderName` and a value. Iteration yields each field once: on an HTTP/1.1
/// request the fields received (less those removed) in the client's order,
/// then those added, in order; on an HTTP/2 one, the map's order.
pub struct Headers<'a> {
    repr: Repr<'a>,
}

enum Repr<'a> {
    /// HTTP/2 (and any message built as a map): owned, moved out of the request.
    Map(HeaderMap),
    /// HTTP/1.1: the received fields, views into the client's buffer, plus
    /// edits in the arena.
    Wire(Wire<'a>),
}

/// HTTP/1.1 fields: nothing received is copied; a removal is a bit, an
/// addition a field whose bytes live in the arena.
struct Wire<'a> {
    arena: &'a Bump,
    received: &'a [Field<'a>],
    /// One bit per received field (bit `i % 64` of word `i / 64`); words are
    /// added only as far as the highest removal, so most requests have none.
    removed: BumpVec<'a, u64>,
    /// Fields added by the phases; names and values copied into the arena.
    added: BumpVec<'a, Field<'a>>,
}

mod sealed {
    pub trait Sealed {}
}

/// A header name as lookups take it: a `&str` in any case, or a
/// `HeaderName` (by value or reference, the cheaper lookup in a map).
pub trait HeaderKey: sealed::Sealed {
    #[doc(hidden)]
    fn name(&self) -> &str;
    #[doc(hidden)]
    fn get_in<'m>(&self, map: &'m HeaderMap) -> Option<&'m HeaderValue>;
    #[doc(hidden)]
    fn all_in<'m>(&self, map: &'m HeaderMap) -> GetAll<'m, HeaderValue>;
    #[doc(hidden)]
    fn remove_from(&self, map: &mut HeaderMap) -> bool;
}

macro_rules! header_key {
    ($($t:ty),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl HeaderKey for $t {
            #[inline]
            fn name(&self) -> &str {
                AsRef::<str>::as_ref(&**self)
            }
            #[inline]
            fn get_in<'m>(&self, map: &'m HeaderMap) -> Option<&'m HeaderValue> {
                map.get(&**self)
            }
            #[inline]
            fn all_in<'m>(&self, map: &'m HeaderMap) -> GetAll<'m, HeaderValue> {
                map.get_all(&**self)
            }
            #[inline]
            fn remove_from(&self, map: &mut HeaderMap) -> bool {
                map.remove(&**self).is_some()
            }
        }
    )*};
}

header_key!(&str, &String, &HeaderName);

impl sealed::Sealed for HeaderName {}
impl HeaderKey for HeaderName {
    #[inline]
    fn name(&self) -> &str {
        self.as_str()
    }
    #[inline]
    fn get_in<'m>(&self, map: &'m HeaderMap) -> Option<&'m HeaderValue> {
        map.get(self)
    }
    #[inline]
    fn all_in<'m>(&self, map: &'m HeaderMap) -> GetAll<'m, HeaderValue> {
        map.get_all(self)
    }
    #[inline]
    fn remove_from(&self, map: &mut HeaderMap) -> bool {
        map.remove(self).is_some()
    }
}

/// `value` as text if it is visible ASCII (tab included), as
/// `HeaderValue::to_str` has it.
#[inline]
pub(crate) fn visible_str(value: &[u8]) -> Option<&str> {
    let mut bad = false;
    for &b in value {
        bad |= !((32..127).contains(&b) || b == b'\t');
    }
    match bad {
        true => None,
        false => std::str::from_utf8(value).ok(),
    }
}

/// Refuses what `HeaderValue::from_bytes` refuses (control characters other
/// than tab, DEL), with its error.
fn check_value(value: &[u8]) -> Result<(), InvalidHeaderValue> {
    if value.iter().all(|&b| b >= 32 && b != 127 || b == b'\t') {
        return Ok(());
    }
    // Fails without allocating (it checks before it copies), with http's error.
    HeaderValue::from_bytes(value).map(drop)
}

/// The added fields a wire head has room for at first (see [`Headers::wire`]).
const ADDED_ROOM: usize = 6;

impl<'a> Wire<'a> {
    #[inline]
    fn is_removed(&self, i: usize) -> bool {
        self.removed
            .get(i / 64)
            .is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    fn mark(&mut self, i: usize) {
        if self.removed.len() <= i / 64 {
            self.removed.resize(i / 64 + 1, 0);
        }
        self.removed[i / 64] |= 1 << (i % 64);
    }

    fn fields(&self) -> WireFields<'_, 'a> {
        WireFields {
            wire: self,
            next: 0,
        }
    }

    fn remove(&mut self, name: &str) -> bool {
        let mut any = false;
        let received = self.received;
        for (i, f) in received.iter().enumerate() {
            if f.name.eq_ignore_ascii_case(name) && !self.is_removed(i) {
                self.mark(i);
                any = true;
            }
        }
        // Most removals find nothing among the added fields (often none
        // were): no `retain` pass then.
        let matches = |f: &Field<'_>| f.name.eq_ignore_ascii_case(name);
        if !self.added.iter().any(matches) {
            return any;
        }
        self.added.retain(|f| !matches(f));
        true
    }

    fn push(&mut self, name: &HeaderName, value: &[u8]) {
        let name = &*self.arena.alloc_str(name.as_str());
        let value = &*self.arena.alloc_slice_copy(value);
        self.added.push(Field { name, value });
    }
}

/// The fields of a wire head still present, received then added.
struct WireFields<'h, 'a> {
    wire: &'h Wire<'a>,
    next: usize,
}

impl<'h> Iterator for WireFields<'h, '_> {
    type Item = Field<'h>;

    fn next(&mut self) -> Option<Field<'h>> {
        let received = self.wire.received;
        while self.next < received.len() {
            let i = self.next;
            self.next += 1;
            if !self.wire.is_removed(i) {
                return Some(received[i]);
            }
        }
        let f = self.wire.added.get(self.next - received.len())?;
        self.next += 1;
        Some(*f)
    }
}

/// The values of one name, in order (a wire head's iterator keeps the key).
enum Values<'h, K> {
    Map(http::header::ValueIter<'h, HeaderValue>),
    Wire(WireFields<'h, 'h>, K),
}

impl<'h, K: HeaderKey> Iterator for Values<'h, K> {
    type Item = &'h [u8];

    #[inline]
    fn next(&mut self) -> Option<&'h [u8]> {
        match self {
            Values::Map(values) => values.next().map(HeaderValue::as_bytes),
            Values::Wire(fields, key) => {
                let name = key.name();
                fields
                    .find(|f| f.name.eq_ignore_ascii_case(name))
                    .map(|f| f.value)
            }
        }
    }
}

/// Every field, as name and value.
enum Iter<'h> {
    Map(http::header::Iter<'h, HeaderValue>),
    Wire(WireFields<'h, 'h>),
}

impl<'h> Iterator for Iter<'h> {
    type Item = (&'h str, &'h [u8]);

    #[inline]
    fn next(&mut self) -> Option<(&'h str, &'h [u8])> {
        match self {
            Iter::Map(fields) => fields.next().map(|(n, v)| (n.as_str(), v.as_bytes())),
            Iter::Wire(fields) => fields.next().map(|f| (f.name, f.value)),
        }
    }
}

impl<'a> Headers<'a> {
    /// Headers held as a map, moved in (not copied).
    pub fn from_map(map: HeaderMap) -> Self {
        Headers {
            repr: Repr::Map(map),
        }
    }

    /// The fields of an HTTP/1.1 head, borrowed from its buffer; edits go
    /// into `arena`.
    #[allow(dead_code)] // The HTTP/1.1 path of our own (issue 12) builds these.
    pub(crate) fn wire(received: &'a [Field<'a>], arena: &'a Bump) -> Self {
        Headers {
            repr: Repr::Wire(Wire {
                arena,
                received,
                removed: BumpVec::new_in(arena),
                // Room for what the proxy adds to every request (three
                // X-Forwarded-* fields, a request id, a Host) without
                // growing the list in the arena on the way.
                added: BumpVec::with_capacity_in(ADDED_ROOM, arena),
            }),
        }
    }

    /// The first value of `name`.
    #[inline]
    pub fn get<K: HeaderKey>(&self, name: K) -> Option<&[u8]> {
        match &self.repr {
            Repr::Map(map) => name.get_in(map).map(HeaderValue::as_bytes),
            Repr::Wire(wire) => {
                let name = name.name();
                wire.fields()
                    .find(|f| f.name.eq_ignore_ascii_case(name))
                    .map(|f| f.value)
            }
        }
    }

    /// The first value of `name` as text, if it is visible ASCII (as
    /// `HeaderValue::to_str`).
    #[inline]
    pub fn get_str<K: HeaderKey>(&self, name: K) -> Option<&str> {
        self.get(name).and_then(visible_str)
    }

    /// Every value of `name`, in order.
    #[inline]
    pub fn get_all<K: HeaderKey>(&self, name: K) -> impl Iterator<Item = &[u8]> {
        match &self.repr {
            Repr::Map(map) => Values::Map(name.all_in(map).iter()),
            Repr::Wire(wire) => Values::Wire(wire.fields(), name),
        }
    }

    /// The value of cookie `name` in the `Cookie` fields (`a=1; b=2`, RFC
    /// 6265 §4.2.1; several fields, as HTTP/2 sends them, are all
    /// searched; a quoted value is the same value), borrowed.
    pub fn cookie(&self, name: &str) -> Option<&[u8]> {
        for value in self.get_all(http::header::COOKIE) {
            for pair in value.split(|&b| b == b';') {
                let pair = pair.trim_ascii_start();
                if let Some(rest) = pair.strip_prefix(name.as_bytes()) {
                    if let Some(v) = rest.strip_prefix(b"=") {
                        let v = v.trim_ascii_end();
                        let v = v
                            .strip_prefix(b"\"")
                            .and_then(|v| v.strip_suffix(b"\""))
                            .unwrap_or(v);
                        return Some(v);
                    }
                }
            }
        }
        None
    }

    /// Whether a field named `name` is present.
    #[inline]
    pub fn contains<K: HeaderKey>(&self, name: K) -> bool {
        self.get(name).is_some()
    }

    /// Every field, as name and value (see [`Headers`] for the order).
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        match &self.repr {
            Repr::Map(map) => Iter::Map(map.iter()),
            Repr::Wire(wire) => Iter::Wire(wire.fields()),
        }
    }

    /// How many fields there are (a name sent twice counts twice).
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Map(map) => map.len(),
            Repr::Wire(wire) => {
                let removed: usize = wire.removed.iter().map(|w| w.count_ones() as usize).sum();
                wire.received.len() - removed + wire.added.len()
            }
        }
    }

    /// The fields as the client sent them, for limits on what it sent:
    /// their number and the bytes of their names and values. An HTTP/1.1
    /// head's are its received fields (those the phases removed included,
    /// those they added not); a map's are the map as it is when asked.
    pub(crate) fn sent_size(&self) -> (usize, usize) {
        match &self.repr {
            Repr::Map(map) => {
                let bytes = map.iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
                (map.len(), bytes)
            }
            Repr::Wire(wire) => {
                let fields = wire.received.iter();
                let bytes = fields.map(|f| f.name.len() + f.value.len()).sum();
                (wire.received.len(), bytes)
            }
        }
    }

    /// Whether there is no field at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every field named `name`; returns whether there was one.
    pub fn remove<K: HeaderKey>(&mut self, name: K) -> bool {
        match &mut self.repr {
            Repr::Map(map) => name.remove_from(map),
            Repr::Wire(wire) => wire.remove(name.name()),
        }
    }

    /// Replaces every field named `name` with one of `value`.
    pub fn insert(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.insert_owned(name.clone(), value.clone());
    }

    /// Adds a field, after any of the same name.
    pub fn append(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.append_owned(name.clone(), value.clone());
    }

    /// [`insert`](Self::insert) with a value made up of bytes; refused as
    /// `HeaderValue::from_bytes` refuses it.
    pub fn insert_bytes(
        &mut self,
        name: &HeaderName,
        value: &[u8],
    ) -> Result<(), InvalidHeaderValue> {
        check_value(value)?;
        self.remove(name);
        self.push_bytes(name, value)
    }

    /// [`append`](Self::append) with a value made up of bytes; refused as
    /// `HeaderValue::from_bytes` refuses it.
    pub fn append_bytes(
        &mut self,
        name: &HeaderName,
        value: &[u8],
    ) -> Result<(), InvalidHeaderValue> {
        check_value(value)?;
        self.push_bytes(name, value)
    }

    fn push_bytes(&mut self, name: &HeaderName, value: &[u8]) -> Result<(), InvalidHeaderValue> {
        match &mut self.repr {
            Repr::Map(map) => {
                map.append(name.clone(), HeaderValue::from_bytes(value)?);
            }
            Repr::Wire(wire) => wire.push(name, value),
        }
        Ok(())
    }

    /// [`insert`](Self::insert) taking the name and value by value: a map
    /// keeps them (no reference count touched), a wire head copies them.
    pub(crate) fn insert_owned(&mut self, name: HeaderName, value: HeaderValue) {
        match &mut self.repr {
            Repr::Map(map) => {
                map.insert(name, value);
            }
            Repr::Wire(wire) => {
                wire.remove(name.as_str());
                wire.push(&name, value.as_bytes());
            }
        }
    }

    /// [`insert`](Self::insert) with a value that lives as long as the
    /// request (bytes of its head, or of its arena): a wire head keeps the
    /// reference and the name's static text, nothing copied; a map takes a
    /// copy (a value a map refuses is left out, as `to_map` leaves it).
    pub(crate) fn insert_lasting(&mut self, name: &'static HeaderName, value: &'a [u8]) {
        match &mut self.repr {
            Repr::Map(map) => {
                if let Ok(value) = HeaderValue::from_bytes(value) {
                    map.insert(name.clone(), value);
                }
            }
            Repr::Wire(wire) => {
                let name = name.as_str();
                wire.remove(name);
                wire.added.push(Field { name, value });
            }
        }
    }

    /// The first value of `name`, for as long as the request: a wire
    /// head's own bytes (no copy), a map's copied into `arena`.
    pub(crate) fn get_lasting<K: HeaderKey>(&self, name: K, arena: &'a Bump) -> Option<&'a [u8]> {
        match &self.repr {
            Repr::Map(map) => name
                .get_in(map)
                .map(|v| &*arena.alloc_slice_copy(v.as_bytes())),
            Repr::Wire(wire) => {
                let name = name.name();
                let mut received = wire.received.iter().enumerate();
                let received = received
                    .find(|(i, f)| f.name.eq_ignore_ascii_case(name) && !wire.is_removed(*i));
                match received {
                    Some((_, f)) => Some(f.value),
                    None => wire
                        .added
                        .iter()
                        .find(|f| f.name.eq_ignore_ascii_case(name))
                        .map(|f| f.value),
                }
            }
        }
    }

    /// [`append`](Self::append) taking the name and value by value.
    pub(crate) fn append_owned(&mut self, name: HeaderName, value: HeaderValue) {
        match &mut self.repr {
            Repr::Map(map) => {
                map.append(name, value);
            }
            Repr::Wire(wire) => wire.push(&name, value.as_bytes()),
        }
    }

    /// The map, if the headers are held as one.
    #[inline]
    pub fn as_map(&self) -> Option<&HeaderMap> {
        match &self.repr {
            Repr::Map(map) => Some(map),
            Repr::Wire(_) => None,
        }
    }

    /// The map, if the headers are held as one, to edit in place.
    #[inline]
    pub fn as_map_mut(&mut self) -> Option<&mut HeaderMap> {
        match &mut self.repr {
            Repr::Map(map) => Some(map),
            Repr::Wire(_) => None,
        }
    }

    /// The headers as a map: moved out if held as one (no copy), else built.
    #[inline]
    pub fn into_map(self) -> HeaderMap {
        match self.repr {
            Repr::Map(map) => map,
            Repr::Wire(_) => self.to_map(),
        }
    }

    /// A copy of the headers as a map. A field a map cannot hold (a name
    /// that is no token: the HTTP/1.1 parser refuses those) is left out, as
    /// are fields past the map's limit of 32,768.
    pub fn to_map(&self) -> HeaderMap {
        if let Repr::Map(map) = &self.repr {
            return map.clone();
        }
        let mut map = HeaderMap::try_with_capacity(self.len()).unwrap_or_default();
        for (name, value) in self.iter() {
            let name = HeaderName::from_bytes(name.as_bytes());
            let value = HeaderValue::from_bytes(value);
            if let (Ok(name), Ok(value)) = (name, value) {
                if map.try_append(name, value).is_err() {
                    break;
                }
            }
        }
        map
    }

    /// Writes every field as `name: value\r\n`, in iteration order, names
    /// as stored (the client's case for a received field).
    pub(crate) fn write_http1(&self, out: &mut impl bytes::BufMut) {
        let mut put = |name: &str, value: &[u8]| {
            out.put_slice(name.as_bytes());
            out.put_slice(b": ");
            out.put_slice(value);
            out.put_slice(b"\r\n");
        };
        match &self.repr {
            Repr::Map(map) => map.iter().for_each(|(n, v)| put(n.as_str(), v.as_bytes())),
            // The received fields and the added ones in two plain loops: no
            // iterator state to step through per field.
            Repr::Wire(wire) => {
                for (i, f) in wire.received.iter().enumerate() {
                    if !wire.is_removed(i) {
                        put(f.name, f.value);
                    }
                }
                wire.added.iter().for_each(|f| put(f.name, f.value));
            }
        }
    }
}

impl Default for Headers<'_> {
    /// No field, as an empty map (which does not allocate).
    fn default() -> Self {
        Headers::from_map(HeaderMap::new())
    }
}

impl Clone for Headers<'_> {
    fn clone(&self) -> Self {
        let repr = match &self.repr {
            Repr::Map(map) => Repr::Map(map.clone()),
            Repr::Wire(wire) => Repr::Wire(Wire {
                arena: wire.arena,
                received: wire.received,
                removed: wire.removed.clone(),
                added: wire.added.clone(),
            }),
        };
        Headers { repr }
    }
}

impl From<HeaderMap> for Headers<'_> {
    fn from(map: HeaderMap) -> Self {
        Headers::from_map(map)
    }
}

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(n, v)| (n, String::from_utf8_lossy(v))))
            .finish()
    }
}

#[cfg(test)]
mod tests;
