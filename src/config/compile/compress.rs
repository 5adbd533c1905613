//! Compiles `type = "compress"`: the codings in their order of
//! preference, the least size, the content types, the levels.

use crate::config::parse::parse_size;
use crate::config::raw::RawMiddleware;
use crate::middleware::compress::{Coding, Levels, Settings, DEFAULT_TYPES};
use crate::middleware::{Compress, Middleware};

const DEFAULT_MIN_SIZE: u64 = 1024;
/// Per worker: at about 1 MiB each at the default levels, 256 MiB.
const DEFAULT_MAX_STREAMS: i64 = 256;

/// `type = "compress"`.
pub(super) fn compile(raw: &RawMiddleware) -> Result<Middleware, String> {
    let RawMiddleware::Compress {
        encodings,
        min_size,
        types,
        gzip_level,
        brotli_level,
        zstd_level,
        max_streams,
    } = raw
    else {
        return Err("not a compress middleware".into());
    };
    let codings = match encodings {
        None => Coding::ALL.to_vec(),
        Some(list) => {
            if list.is_empty() {
                return Err(
                    "compress encodings is empty: expected some of \"zstd\", \"br\", \"gzip\""
                        .into(),
                );
            }
            let mut out = Vec::new();
            for name in list {
                let c = Coding::from_token(name).ok_or_else(|| {
                    format!("compress encoding {name:?} is not supported: expected \"zstd\", \"br\" or \"gzip\"")
                })?;
                if out.contains(&c) {
                    return Err(format!("compress encoding {name:?} is listed twice"));
                }
                out.push(c);
            }
            out
        }
    };
    let min_size = match min_size {
        None => DEFAULT_MIN_SIZE,
        Some(v) => parse_size(v).map_err(|e| format!("compress min_size: {e}"))?,
    };
    let types: Vec<Box<str>> = match types {
        None => DEFAULT_TYPES.iter().map(|t| (*t).into()).collect(),
        Some(list) => {
            if list.is_empty() {
                return Err("compress types is empty: leave it out for the default list".into());
            }
            list.iter()
                .map(|t| content_type(t))
                .collect::<Result<_, _>>()?
        }
    };
    let level =
        |v: &Option<i64>, name: &str, range: std::ops::RangeInclusive<i64>, default: i64| {
            let l = v.unwrap_or(default);
            if !range.contains(&l) {
                return Err(format!(
                    "compress {name} = {l} is out of range: expected {} to {}",
                    range.start(),
                    range.end()
                ));
            }
            Ok(l as i32)
        };
    let levels = Levels {
        gzip: level(gzip_level, "gzip_level", 1..=9, 5)?,
        brotli: level(brotli_level, "brotli_level", 0..=6, 3)?,
        zstd: level(zstd_level, "zstd_level", 1..=9, 3)?,
    };
    let max_streams = max_streams.unwrap_or(DEFAULT_MAX_STREAMS);
    if !(1..=100_000).contains(&max_streams) {
        return Err(format!(
            "compress max_streams = {max_streams} is out of range: expected 1 to 100000"
        ));
    }
    Ok(Middleware::Compress(Compress::new(Settings {
        codings,
        min_size,
        types,
        levels,
        max_streams: max_streams as usize,
    })))
}

/// `type/subtype`, `type/*` or `type/*+suffix`, made lowercase.
fn content_type(t: &str) -> Result<Box<str>, String> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let lower = t.trim().to_ascii_lowercase();
    let ok = match lower.split_once('/') {
        Some((top, "*")) => token(top),
        Some((top, sub)) => token(top) && token(sub.strip_prefix("*+").unwrap_or(sub)),
        None => false,
    };
    if !ok {
        return Err(format!(
            "compress type {t:?} is invalid: expected type/subtype, type/* or type/*+suffix, e.g. \"application/json\""
        ));
    }
    Ok(lower.into())
}
