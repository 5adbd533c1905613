//! Which coding a client takes: its `Accept-Encoding` (RFC 9110 §12.5.3)
//! read with q-values, the server's preference breaking ties.

/// The codings this gateway writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Gzip,
    Brotli,
    Zstd,
}

impl Coding {
    pub(crate) const ALL: [Coding; 3] = [Coding::Zstd, Coding::Brotli, Coding::Gzip];

    /// As `Content-Encoding` and `Accept-Encoding` name it.
    pub(crate) fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }

    pub(crate) fn from_token(t: &str) -> Option<Coding> {
        Coding::ALL
            .into_iter()
            .find(|c| c.token().eq_ignore_ascii_case(t))
    }
}

/// The longest `Accept-Encoding` read (longer: no compression).
const MAX_FIELD: usize = 1024;

/// The q-value of one list member, in thousandths (`q=0.5` is 500); a
/// member without one is 1000; a malformed one is not acceptable (0).
fn qvalue(params: &str) -> u16 {
    let mut q = 1000;
    for p in params.split(';') {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let Some((name, value)) = p.split_once('=') else {
            return 0;
        };
        if !name.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        q = parse_q(value.trim()).unwrap_or(0);
    }
    q
}

/// `0`, `0.5`, `1.000` (RFC 9110 §12.4.2: at most three decimals).
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

/// The coding to use for a client that sent these `Accept-Encoding`
/// fields, among `offered` (in the server's order of preference): the
/// highest q-value, ties to the earlier in `offered`; a coding listed
/// with `q=0` is never chosen, `*` stands for codings not listed.
pub(crate) fn choose<'f>(
    fields: impl Iterator<Item = &'f [u8]>,
    offered: &[Coding],
) -> Option<Coding> {
    let mut q: [Option<u16>; 3] = [None; 3];
    let mut star: Option<u16> = None;
    let mut total = 0;
    for field in fields {
        total += field.len();
        if total > MAX_FIELD {
            return None;
        }
        let Ok(text) = std::str::from_utf8(field) else {
            return None;
        };
        for member in text.split(',') {
            let (name, params) = member.split_once(';').unwrap_or((member, ""));
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            let value = qvalue(params);
            if name == "*" {
                star = Some(value);
            } else if let Some(c) = Coding::from_token(name) {
                let i = Coding::ALL.iter().position(|x| *x == c).unwrap_or(0);
                q[i] = Some(value);
            }
        }
    }
    let mut best: Option<(u16, Coding)> = None;
    for &c in offered {
        let i = Coding::ALL.iter().position(|x| *x == c).unwrap_or(0);
        let value = q[i].or(star).unwrap_or(0);
        if value > 0 && best.map_or(true, |(b, _)| value > b) {
            best = Some((value, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Coding::*;

    fn pick(fields: &[&str], offered: &[Coding]) -> Option<Coding> {
        choose(fields.iter().map(|f| f.as_bytes()), offered)
    }

    #[test]
    fn q_values_then_the_server_s_order_decide() {
        let all = [Zstd, Brotli, Gzip];
        assert_eq!(pick(&["gzip, deflate, br, zstd"], &all), Some(Zstd));
        assert_eq!(
            pick(&["gzip, deflate, br, zstd"], &[Gzip, Brotli]),
            Some(Gzip)
        );
        assert_eq!(pick(&["gzip;q=1.0, br;q=0.9"], &all), Some(Gzip));
        assert_eq!(pick(&["br;q=0.5", "gzip;q=0.8"], &all), Some(Gzip));
        assert_eq!(pick(&["GZIP"], &all), Some(Gzip));
        assert_eq!(pick(&["gzip ; q=0.001"], &all), Some(Gzip));
        // Refused outright, or only through a refused `*`.
        assert_eq!(pick(&["gzip;q=0, br;q=0.000"], &all), None);
        assert_eq!(pick(&["*;q=0"], &all), None);
        assert_eq!(pick(&["identity"], &all), None);
        assert_eq!(pick(&[""], &all), None);
        // `*` covers what is not listed, not what is.
        assert_eq!(pick(&["*"], &[Gzip]), Some(Gzip));
        assert_eq!(pick(&["gzip;q=0, *"], &[Gzip, Brotli]), Some(Brotli));
        assert_eq!(pick(&["*;q=0.1, br"], &all), Some(Brotli));
        // Malformed q-values make a member unacceptable.
        for bad in [
            "gzip;q=2",
            "gzip;q=1.5",
            "gzip;q=0.1234",
            "gzip;q=abc",
            "gzip;q",
            "gzip;q=-1",
        ] {
            assert_eq!(pick(&[bad], &all), None, "{bad}");
        }
        let long = format!("gzip, {}", "x".repeat(2000));
        assert_eq!(pick(&[&long], &all), None);
    }
}
