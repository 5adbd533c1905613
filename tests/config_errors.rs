//! Invalid configurations are refused with precise messages: each file under
//! `tests/configs/broken/` is checked for every error it must produce, with its
//! line and column, through the library (`strait::check`) and the binary
//! (`strait check --config FILE`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use strait::{ConfigError, CustomRegistry};

/// One expected error: line, column, message (line 0 for file-wide problems).
type Expected = (usize, usize, &'static str);

/// Every broken file and all the errors it must produce, in report order.
const BROKEN: &[(&str, &[Expected])] = &[
    (
        "unknown_top_level_key.toml",
        &[(
            5,
            2,
            "unknown field `upstream`, expected one of `server`, `listeners`, `routes`, `upstreams`, `middlewares`, `admin`, `connect`",
        )],
    ),
    (
        "route_key_typo.toml",
        &[(
            10,
            1,
            "unknown field `upstrem`, expected one of `name`, `match`, `middlewares`, `upstream`, `timeout`, `retry`, `upgrades`, `tunnel_idle_timeout`",
        )],
    ),
    (
        "bad_listen_address.toml",
        &[(
            3,
            11,
            r#"invalid listen address "localhost:8080": expected IP:port, e.g. "127.0.0.1:8080" or "[::]:8080""#,
        )],
    ),
    (
        "duplicate_listener.toml",
        &[(
            8,
            11,
            "listener address 127.0.0.1:8080 is already used by listener 1",
        )],
    ),
    (
        "unknown_upstream.toml",
        &[(
            10,
            12,
            r#"route "api": unknown upstream "bakend": expected one of ["backend"]"#,
        )],
    ),
    (
        "unknown_middleware.toml",
        &[(
            14,
            39,
            r#"route "api": unknown middleware "auth": expected one of ["access_log", "request_id", "strip"] (define it under [middlewares.auth])"#,
        )],
    ),
    (
        "bad_duration.toml",
        &[(
            7,
            19,
            r#"upstreams.backend.connect_timeout: invalid duration "5 seconds": expected a number with a unit (ms, s, m, h), e.g. "500ms" or "30s""#,
        )],
    ),
    (
        "weight_zero.toml",
        &[(
            9,
            3,
            r#"endpoint "127.0.0.1:9000" of upstream "backend": weight 0 is out of range: expected 1 to 10000"#,
        )],
    ),
    (
        "bad_balance.toml",
        &[(
            7,
            11,
            r#"unknown balance algorithm "least_conn": expected one of "round_robin", "weighted", "random", "least_request", "peak_ewma", "ring", "maglev""#,
        )],
    ),
    (
        "two_path_forms.toml",
        &[(
            10,
            9,
            r#"route "api": a route matches one path form: expected only one of path, path_prefix, path_pattern, path_regex"#,
        )],
    ),
    (
        "bad_path_pattern.toml",
        &[(
            11,
            9,
            r#"route "users": empty parameter name in path pattern "/users/{}/posts""#,
        )],
    ),
    (
        "bad_route_match.toml",
        &[
            (
                12,
                9,
                r#"route "unclosed": invalid path_regex "/items/(?P<id>[0-9]+": unclosed group (at byte 7)"#,
            ),
            (
                17,
                9,
                r#"route "huge": path_regex "/\\w{1000}" compiles to more than the size limit of 1048576 bytes: use fewer or smaller repetitions, or ASCII classes such as (?-u:\w) instead of Unicode ones"#,
            ),
            (
                22,
                9,
                r#"route "nested": path_regex "/((a{100}){100}){100}" compiles to more than the size limit of 1048576 bytes: use fewer or smaller repetitions, or ASCII classes such as (?-u:\w) instead of Unicode ones"#,
            ),
            (
                27,
                55,
                r#"route "empty-query-name": empty query parameter name: expected a name like "version""#,
            ),
            (
                32,
                22,
                r#"route "bad-cookie-name": invalid cookie name "can ary": expected a token such as "canary""#,
            ),
            (
                37,
                22,
                r#"route "cookie-value-with-semicolon": value "1;2" of cookie "canary" can never match: it contains ';'"#,
            ),
        ],
    ),
    (
        "bad_route_match_key.toml",
        &[(10, 59, "unknown field `vaule`, expected `name` or `value`")],
    ),
    (
        "bad_header_name.toml",
        &[(
            8,
            1,
            r#"middleware "tag": invalid header name "bad header": expected a token such as "x-env""#,
        )],
    ),
    (
        "bad_ip_filter.toml",
        &[
            (
                8,
                1,
                r#"middleware "a_prefix": ip_filter allow: invalid CIDR "10.0.0.0/33": expected a prefix length from 0 to 32"#,
            ),
            (
                12,
                1,
                r#"middleware "b_host_bits": ip_filter deny: CIDR "10.0.0.1/8" has host bits set: expected the network address "10.0.0.0/8" (or "10.0.0.1" for the one address)"#,
            ),
            (
                16,
                1,
                r#"middleware "c_empty": ip_filter has no entries: expected at least one address or CIDR in allow or deny, e.g. deny = ["192.0.2.0/24"]"#,
            ),
            (
                20,
                1,
                r#"middleware "d_mapped": ip_filter deny: address "::ffff:192.0.2.0/120" is IPv4-mapped: expected it as IPv4, "192.0.2.0/24" (mapped client addresses are matched as IPv4)"#,
            ),
            (
                24,
                1,
                r#"middleware "e_garbage": ip_filter allow: invalid address "localhost": expected an IP address or CIDR, e.g. "10.0.0.0/8", "::1" or "2001:db8::/32""#,
            ),
        ],
    ),
    (
        "bad_ip_filter_key.toml",
        &[(8, 1, "unknown field `alow`, expected `allow` or `deny`")],
    ),
    (
        "bad_request_limits.toml",
        &[
            (
                8,
                1,
                r#"middleware "a_nothing": request_limits sets no limit: expected at least one of max_body, methods, max_header_count, max_header_bytes, max_url_length"#,
            ),
            (
                11,
                1,
                r#"middleware "b_zero_body": request_limits max_body = "0MiB" is out of range: expected 1 byte to 1TiB"#,
            ),
            (
                15,
                1,
                r#"middleware "c_bad_size": request_limits max_body: invalid size "10 megabytes": expected a number and a unit (B, KiB, MiB, GiB, or decimal k, KB, M, MB, G, GB), e.g. "10MiB""#,
            ),
            (
                19,
                1,
                r#"middleware "d_lowercase": request_limits method "post" is invalid: methods are case-sensitive; did you mean "POST"?"#,
            ),
            (
                23,
                1,
                r#"middleware "e_not_a_token": request_limits method "GET POST" is invalid: expected a token such as "GET""#,
            ),
            (
                27,
                1,
                r#"middleware "f_no_methods": request_limits methods is empty: expected at least one method, e.g. ["GET", "HEAD"]"#,
            ),
            (
                31,
                1,
                r#"middleware "g_zero_count": request_limits max_header_count = 0 is out of range: expected 1 to 1000"#,
            ),
            (
                35,
                1,
                r#"middleware "h_huge_url": request_limits max_url_length = 10000000 is out of range: expected 1 to 1048576"#,
            ),
            (
                39,
                1,
                r#"middleware "i_twice": request_limits method "GET" is listed twice"#,
            ),
        ],
    ),
    (
        "bad_cors.toml",
        &[
            (
                8,
                1,
                r#"middleware "a_star_credentials": cors allow_credentials = true with allow_origins = ["*"] is refused: the Fetch standard forbids "*" with credentials; list the origins instead"#,
            ),
            (
                13,
                1,
                r#"middleware "b_any_header_credentials": cors allow_credentials = true with allow_headers = ["*"] is refused: the Fetch standard forbids "*" with credentials; list the headers instead"#,
            ),
            (
                19,
                1,
                r#"middleware "c_path": cors origin "https://app.example.com/api" is invalid: expected scheme://host[:port], e.g. "https://app.example.com" (an origin has no path, not even "/")"#,
            ),
            (
                23,
                1,
                r#"middleware "d_trailing_slash": cors origin "https://app.example.com/" is invalid: expected scheme://host[:port], e.g. "https://app.example.com" (an origin has no path, not even "/")"#,
            ),
            (
                27,
                1,
                r#"middleware "e_no_scheme": cors origin "app.example.com" is invalid: expected scheme://host[:port], e.g. "https://app.example.com" (it has no scheme)"#,
            ),
            (
                31,
                1,
                r#"middleware "f_bad_port": cors origin "https://app.example.com:70000" is invalid: expected scheme://host[:port], e.g. "https://app.example.com" (the port must be 1 to 65535)"#,
            ),
            (
                35,
                1,
                r#"middleware "g_inner_wildcard": cors origin "https://api.*.example.com" is invalid: expected scheme://host[:port], e.g. "https://app.example.com" (a wildcard is only allowed as the whole first label, as in "https://*.example.com")"#,
            ),
            (
                39,
                1,
                r#"middleware "h_method": cors allow_methods entry "PO ST" is invalid: expected a token such as "GET""#,
            ),
            (
                44,
                1,
                r#"middleware "i_lowercase_method": cors allow_methods entry "put" is invalid: methods are case-sensitive; did you mean "PUT"?"#,
            ),
            (
                49,
                1,
                r#"middleware "j_header": cors allow_headers entry "x bad" is invalid: expected a header name such as "content-type""#,
            ),
            (
                54,
                1,
                r#"middleware "k_expose": cors expose_headers entry "bad:name" is invalid: expected a header name such as "content-type""#,
            ),
            (
                59,
                1,
                r#"middleware "l_no_origins": cors allow_origins is empty: expected at least one origin such as "https://app.example.com", or ["*"] for any"#,
            ),
            (
                63,
                1,
                r#"middleware "m_max_age": cors max_age: invalid duration "2d": expected a number with a unit (ms, s, m, h), e.g. "500ms" or "30s""#,
            ),
            (
                68,
                1,
                r#"middleware "n_max_age_long": cors max_age = "25h" is out of range: expected at most 24h"#,
            ),
        ],
    ),
    (
        "bad_cors_key.toml",
        &[(8, 1, "unknown field `allowed_origins`, expected one of `allow_origins`, `allow_methods`, `allow_headers`, `expose_headers`, `allow_credentials`, `max_age`")],
    ),
    (
        "bad_rate_limit.toml",
        &[
            (
                8,
                1,
                r#"middleware "a_zero_rate": rate_limit rate "0/s" is out of range: expected at least 1 request per s"#,
            ),
            (
                12,
                1,
                r#"middleware "b_not_a_rate": rate_limit rate "abc" is invalid: expected COUNT/UNIT with a unit of s, m or h, e.g. "100/s""#,
            ),
            (
                16,
                1,
                r#"middleware "c_unknown_unit": rate_limit rate "100/x" has an unknown unit "x": expected s, m or h, e.g. "100/s""#,
            ),
            (
                20,
                1,
                r#"middleware "d_negative_burst": rate_limit burst = -1 is out of range: expected 0 or more (the requests allowed above the rate at once)"#,
            ),
            (
                25,
                1,
                r#"middleware "e_delay_over_burst": rate_limit delay = 3 is out of range: expected 0 to burst = 2 (how many requests of a burst pass at once)"#,
            ),
            (
                31,
                1,
                r#"middleware "f_unknown_key": rate_limit key "ip" is invalid: expected client_ip, route, consumer, header:NAME, cookie:NAME or claim:NAME"#,
            ),
            (
                36,
                1,
                r#"middleware "g_no_keys": rate_limit max_keys = 0 is out of range: expected 1 to 16777216 (8 bytes a key)"#,
            ),
            (
                41,
                1,
                r#"middleware "h_no_rate": rate_limit needs rate: expected COUNT/UNIT with a unit of s, m or h, e.g. rate = "100/s""#,
            ),
            (
                45,
                1,
                r#"middleware "i_status": rate_limit status = 200 is invalid: expected 429 or 503"#,
            ),
            (
                50,
                1,
                r#"middleware "j_no_max": connection_limit needs max: expected the most requests in flight per key, e.g. max = 10"#,
            ),
            (
                54,
                1,
                r#"middleware "k_bad_header": connection_limit key "header:bad header" is invalid: expected client_ip, route, consumer, header:NAME, cookie:NAME or claim:NAME (not a header name)"#,
            ),
        ],
    ),
    (
        "bad_request_limits_key.toml",
        &[(
            8,
            1,
            "unknown field `max_bdy`, expected one of `max_body`, `methods`, `max_header_count`, `max_header_bytes`, `max_url_length`",
        )],
    ),
    (
        "bad_cidr.toml",
        &[(
            5,
            3,
            r#"invalid trusted proxy "10.0.0.0/33": expected an IP address or CIDR, e.g. "10.0.0.0/8""#,
        )],
    ),
    (
        "wrong_type.toml",
        &[(3, 11, r#"invalid type: string "two", expected an integer"#)],
    ),
    (
        "syntax_error.toml",
        &[(3, 26, "invalid basic string")],
    ),
    (
        "empty.toml",
        &[
            (
                0,
                0,
                r#"no [[listeners]]: expected at least one, e.g. address = "127.0.0.1:8080""#,
            ),
            (
                0,
                0,
                "no [[routes]]: every request would get 404; expected at least one route with an upstream",
            ),
        ],
    ),
    ("several_errors.toml", SEVERAL),
    ("bad_health_check.toml", BAD_HEALTH_CHECK),
    ("bad_traffic_limits.toml", BAD_TRAFFIC_LIMITS),
    (
        "bad_dns.toml",
        &[
            (
                7,
                15,
                r#"upstreams.a.dns_refresh = "100ms" is out of range: expected 1s to 1h"#,
            ),
            (
                11,
                15,
                r#"upstreams.b.dns_refresh: invalid duration "soon": expected a number with a unit (ms, s, m, h), e.g. "500ms" or "30s""#,
            ),
            (
                12,
                14,
                r#"upstreams.b.dns_family: unknown dns_family "inet6": expected "any", "ipv4" or "ipv6""#,
            ),
            (
                16,
                15,
                r#"upstreams.c.dns_refresh = "2h" is out of range: expected 1s to 1h"#,
            ),
        ],
    ),
    ("bad_hashing.toml", BAD_HASHING),
    // TLS listeners (certificate fixtures in tests/configs/broken/tls/) and
    // the https_redirect middleware.
    (
        "bad_https_redirect_tls.toml",
        &[
            (
                7,
                1,
                r#"middleware "to_https": https_redirect port = 70000 is out of range: expected 1 to 65535"#,
            ),
            (
                11,
                1,
                r#"middleware "found": https_redirect status = 200 is not a redirect status: expected 301, 302, 307 or 308"#,
            ),
        ],
    ),
    (
        "tls_certificates.toml",
        &[
            (
                9,
                8,
                r#"listener "https": certificate "tests/configs/broken/tls/expired.pem" expired on 2001-01-01 00:00:00 UTC (valid from 2000-01-01 00:00:00 UTC to 2001-01-01 00:00:00 UTC)"#,
            ),
            (
                13,
                8,
                r#"listener "https": certificate "tests/configs/broken/tls/future.pem" is not valid yet: valid from 2090-01-01 00:00:00 UTC to 2091-01-01 00:00:00 UTC"#,
            ),
            (
                19,
                25,
                r#"listener "https": name "api.example.com" is not covered by certificate "tests/configs/broken/tls/example.pem": its DNS names are ["example.com", "www.example.com"] (a mismatched certificate)"#,
            ),
            (
                19,
                44,
                r#"listener "https": name "*.example.com" is not covered by certificate "tests/configs/broken/tls/example.pem": its DNS names are ["example.com", "www.example.com"] (a mismatched certificate)"#,
            ),
            (
                24,
                24,
                r#"listener "https": name "example.com" is not covered by certificate "tests/configs/broken/tls/other.pem": its DNS names are ["other.test"] (a mismatched certificate)"#,
            ),
            (
                24,
                24,
                r#"listener "https": name "example.com" is served by certificates 3 and 4: expected each name once per listener"#,
            ),
            (
                24,
                39,
                r#"listener "https": invalid certificate name "bad name": expected a DNS name such as "example.com" or a wildcard such as "*.example.com""#,
            ),
        ],
    ),
    (
        "tls_files.toml",
        &[
            (
                9,
                8,
                r#"listener "https": cannot read certificate file "tests/configs/broken/tls/missing.pem": No such file or directory (os error 2)"#,
            ),
            (
                13,
                8,
                r#"listener "https": certificate file "tests/configs/broken/tls/example.key" has no certificate: expected a PEM "BEGIN CERTIFICATE" block"#,
            ),
            (
                18,
                7,
                r#"listener "https": key file "tests/configs/broken/tls/other.pem" has no private key: expected a PEM "BEGIN PRIVATE KEY", "BEGIN RSA PRIVATE KEY" or "BEGIN EC PRIVATE KEY" block"#,
            ),
            (
                22,
                7,
                r#"listener "https": key file "tests/configs/broken/tls/other.key" does not match certificate "tests/configs/broken/tls/example.pem": the private key is not the certificate's public key"#,
            ),
            (
                26,
                7,
                r#"listener "https": key file "tests/configs/broken/tls/weak-rsa.key" holds an unsupported or malformed private key (expected RSA of 2048 to 8192 bits, ECDSA P-256/P-384 or Ed25519): unexpected error: failed to parse private key as RSA, ECDSA, or EdDSA"#,
            ),
        ],
    ),
    (
        "tls_settings.toml",
        &[
            (
                7,
                15,
                r#"listener "a": tls.min_version = "1.1" is not supported: expected "1.2" or "1.3""#,
            ),
            (
                8,
                15,
                r#"listener "a": unknown ALPN protocol "spdy/3" in tls.alpn: expected "h2" or "http/1.1""#,
            ),
            (
                9,
                21,
                r#"listener "a": tls.handshake_timeout must be greater than zero"#,
            ),
            (
                10,
                15,
                r#"listener "a": tls.client_auth is set but tls.client_ca is not: client certificates are verified against client_ca"#,
            ),
            (
                20,
                11,
                r#"listener "a": more than one certificate has default = true (certificate 1 and 2): expected at most one"#,
            ),
            (
                26,
                1,
                r#"listener "b": [listeners.tls] has no certificates: expected at least one [[listeners.tls.certificates]] with cert and key"#,
            ),
            (
                27,
                8,
                r#"listener "b": tls.alpn is empty: expected one or both of "h2", "http/1.1" (omit it for both)"#,
            ),
            (
                28,
                13,
                r#"listener "b": client_ca file "tests/configs/broken/tls/empty.pem" has no certificate: expected a PEM "BEGIN CERTIFICATE" block"#,
            ),
            (
                29,
                15,
                r#"listener "b": tls.client_auth = "sometimes": expected "required" or "optional""#,
            ),
            (
                35,
                1,
                r#"listener "c": [listeners.tls] has no certificates: expected at least one [[listeners.tls.certificates]] with cert and key"#,
            ),
            (
                36,
                13,
                r#"listener "c": cannot read client_ca file "tests/configs/broken/tls/no-such-ca.pem": No such file or directory (os error 2)"#,
            ),
        ],
    ),
    ("bad_tunnel.toml", BAD_TUNNEL),
    ("bad_connect.toml", BAD_CONNECT),
    ("upstream_tls_errors.toml", UPSTREAM_TLS_ERRORS),
    (
        "upstream_tls_unknown_key.toml",
        &[(
            9,
            1,
            "unknown field `insecure_skip_verfy`, expected one of `ca_file`, `server_name`, `client_cert`, `client_key`, `insecure_skip_verify`",
        )],
    ),
    (
        "bad_basic_auth.toml",
        &[
            (
                11,
                1,
                r##"middleware "a_no_file": basic_auth needs htpasswd: expected the path of an htpasswd file, e.g. htpasswd = "/etc/strait/htpasswd""##,
            ),
            (
                15,
                1,
                r##"middleware "b_missing": cannot read htpasswd file "tests/configs/broken/auth/missing.htpasswd": No such file or directory (os error 2)"##,
            ),
            (
                19,
                1,
                r##"middleware "c_apr1": htpasswd file "tests/configs/broken/auth/apr1.htpasswd" line 1: user "alice" has an Apache MD5 ($apr1$) hash, which is insecure and refused: regenerate the line with htpasswd -B (bcrypt)"##,
            ),
            (
                23,
                1,
                r##"middleware "d_plain": htpasswd file "tests/configs/broken/auth/plain.htpasswd" line 2: user "bob" has a password that is not a supported hash (plain text, or an unknown format): expected bcrypt ($2y$, $2b$, $2a$) or SHA-crypt ($5$, $6$); regenerate the line with htpasswd -B (bcrypt)"##,
            ),
            (
                27,
                1,
                r##"middleware "e_realm": basic_auth realm "say \"hi\"" is invalid: expected printable ASCII without '"' or '\', at most 128 bytes (it is sent as a quoted string), e.g. "admin""##,
            ),
            (
                32,
                1,
                r##"middleware "f_reserved_header": basic_auth consumer_header "Authorization" is refused: the proxy or the credentials use that header; choose another, e.g. "x-consumer""##,
            ),
            (
                37,
                1,
                r##"middleware "g_bound": basic_auth max_verifications = 0 is out of range: expected 1 to 1024"##,
            ),
        ],
    ),
    (
        "bad_api_key.toml",
        &[
            (
                11,
                1,
                r##"middleware "a_no_keys": api_key has no keys: expected keys_file or keys = { NAME = "sha256:<64 hex digits>" }"##,
            ),
            (
                15,
                1,
                r##"middleware "b_plain_inline": api_key keys: the key of consumer "alice" is not hashed (plain keys are refused): write sha256:<64 hex digits>, made with printf %s "$KEY" | sha256sum"##,
            ),
            (
                19,
                1,
                r##"middleware "c_plain_file": api_key keys_file "tests/configs/broken/auth/plain.keys" line 2: the key of consumer "bob" is not hashed (plain keys are refused): write sha256:<64 hex digits>, made with printf %s "$KEY" | sha256sum"##,
            ),
            (
                23,
                1,
                r##"middleware "d_short_hash": api_key keys: the key of consumer "alice" has a hash of 3 hex digits: expected 64; write sha256:<64 hex digits>, made with printf %s "$KEY" | sha256sum"##,
            ),
            (
                27,
                1,
                r##"middleware "e_query": api_key query "api key" is invalid: expected a parameter name of letters, digits and - . _ ~, e.g. "api_key""##,
            ),
            (
                32,
                1,
                r##"middleware "f_consumer": api_key keys: consumer name "bad name" is invalid: expected 1 to 128 letters, digits and . _ @ + -"##,
            ),
            (
                36,
                1,
                r##"middleware "g_missing_file": cannot read api_key keys_file "tests/configs/broken/auth/missing.keys": No such file or directory (os error 2)"##,
            ),
        ],
    ),
    (
        "bad_jwt.toml",
        &[
            (
                11,
                1,
                r##"middleware "a_no_keys": jwt has no keys: expected jwks_file, jwks_url, public_keys, secret or secret_file, e.g. jwks_url = "https://idp.example/.well-known/jwks.json""##,
            ),
            (
                15,
                1,
                r##"middleware "b_none": jwt algorithms lists "none": unsigned tokens are never accepted"##,
            ),
            (
                20,
                1,
                r##"middleware "c_unknown_alg": jwt algorithm "RS1024" is not supported: expected one of HS256, HS384, HS512, ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512, EdDSA"##,
            ),
            (
                25,
                1,
                r##"middleware "d_short_secret": jwt secret is 7 bytes: expected at least 32 (RFC 7518 §3.2), e.g. made with openssl rand -base64 48"##,
            ),
            (
                29,
                1,
                r##"middleware "e_url": jwt jwks_url "ftp://idp.example/jwks.json" is invalid: the scheme must be http or https; expected e.g. "https://idp.example/.well-known/jwks.json""##,
            ),
            (
                33,
                1,
                r##"middleware "f_bad_jwks": jwt jwks_file "tests/configs/broken/auth/bad.jwks.json" key 0 (kid "a") lacks "e", which a key of kty "RSA" needs"##,
            ),
            (
                37,
                1,
                r##"middleware "g_private_pem": jwt public key "tests/configs/broken/auth/private.pem" holds a private key: give the public key only (openssl pkey -pubout)"##,
            ),
            (
                41,
                1,
                r##"middleware "h_header": jwt claims_to_headers "sub" = "authorization" is refused: the proxy or the credentials use that header; choose another, e.g. "x-user""##,
            ),
            (
                46,
                1,
                r##"middleware "i_nowhere": jwt reads the token nowhere: token_header = false needs token_cookie or token_query"##,
            ),
            (
                51,
                1,
                r##"middleware "j_missing_file": cannot read jwt jwks_file "tests/configs/broken/auth/missing.jwks.json": No such file or directory (os error 2)"##,
            ),
        ],
    ),
    (
        "bad_forward_auth.toml",
        &[
            (
                11,
                1,
                r##"middleware "a_no_url": forward_auth needs url: expected the auth service's URL, e.g. url = "http://127.0.0.1:9001/auth""##,
            ),
            (
                15,
                1,
                r##"middleware "b_scheme": forward_auth url "ftp://127.0.0.1:9001/auth" is invalid: the scheme must be http or https; expected e.g. "http://127.0.0.1:9001/auth""##,
            ),
            (
                19,
                1,
                r##"middleware "c_timeout": forward_auth timeout 300s is out of range: expected more than 0 and at most 60s"##,
            ),
            (
                24,
                1,
                r##"middleware "d_reserved": forward_auth response_headers: "content-length" is refused: the proxy sets that header itself"##,
            ),
            (
                29,
                1,
                r##"middleware "e_bad_name": forward_auth request_headers: invalid header name "bad header": expected a token such as "x-user""##,
            ),
            (
                34,
                1,
                r##"middleware "f_ca_plain": forward_auth ca_file needs an https url"##,
            ),
        ],
    ),
    (
        "bad_compress.toml",
        &[
            (
                11,
                1,
                r##"middleware "a_coding": compress encoding "deflate" is not supported: expected "zstd", "br" or "gzip""##,
            ),
            (
                15,
                1,
                r##"middleware "b_twice": compress encoding "br" is listed twice"##,
            ),
            (
                19,
                1,
                r##"middleware "c_level": compress brotli_level = 12 is out of range: expected 0 to 6"##,
            ),
            (
                23,
                1,
                r##"middleware "d_type": compress type "text" is invalid: expected type/subtype, type/* or type/*+suffix, e.g. "application/json""##,
            ),
            (
                27,
                1,
                r##"middleware "e_size": compress min_size: invalid size "1 KiB": expected a number and a unit (B, KiB, MiB, GiB, or decimal k, KB, M, MB, G, GB), e.g. "10MiB""##,
            ),
            (
                31,
                1,
                r##"middleware "f_empty": compress encodings is empty: expected some of "zstd", "br", "gzip""##,
            ),
        ],
    ),
];

/// `bad_tunnel.toml`: upgrade protocols and tunnel idle timeouts of routes.
const BAD_TUNNEL: &[Expected] = &[
    (
        10,
        26,
        r#"route "route-1": invalid upgrade protocol "web socket": expected a token such as "websocket" (or name/version)"#,
    ),
    (
        10,
        40,
        r#"route "route-1": invalid upgrade protocol "": expected a token such as "websocket" (or name/version)"#,
    ),
    (
        10,
        44,
        r#"route "route-1": invalid upgrade protocol "foo/": expected a token such as "websocket" (or name/version)"#,
    ),
    (
        11,
        23,
        r#"route "route-1": tunnel_idle_timeout: invalid duration "5 minutes": expected a number with a unit (ms, s, m, h), e.g. "500ms" or "30s""#,
    ),
    (
        17,
        23,
        r#"route "zero": tunnel_idle_timeout must be greater than zero"#,
    ),
];

/// `bad_connect.toml`: `[connect]` destinations and timeouts.
const BAD_CONNECT: &[Expected] = &[
    (
        13,
        30,
        r#"connect.allow: invalid entry "10.0.0.0/8": expected host:port, IP:port or CIDR:port with a port 1-65535, e.g. "db.internal:5432" or "10.0.0.0/8:443""#,
    ),
    (
        13,
        44,
        r#"connect.allow: invalid entry "10.0.0.0/33:443": expected host:port, IP:port or CIDR:port with a port 1-65535, e.g. "db.internal:5432" or "10.0.0.0/8:443""#,
    ),
    (
        13,
        63,
        r#"connect.allow: invalid entry "db_internal:5432": expected host:port, IP:port or CIDR:port with a port 1-65535, e.g. "db.internal:5432" or "10.0.0.0/8:443""#,
    ),
    (
        13,
        83,
        r#"connect.allow: invalid entry "127.0.0.1:0": expected host:port, IP:port or CIDR:port with a port 1-65535, e.g. "db.internal:5432" or "10.0.0.0/8:443""#,
    ),
    (
        14,
        19,
        r#"connect.connect_timeout: invalid duration "soon": expected a number with a unit (ms, s, m, h), e.g. "500ms" or "30s""#,
    ),
    (15, 16, "connect.idle_timeout must be greater than zero"),
];

/// Every error of `upstream_tls_errors.toml`: protocol and TLS keys of an
/// upstream.
const UPSTREAM_TLS_ERRORS: &[Expected] = &[
    (
        8,
        12,
        r#"upstreams.a.protocol: unknown protocol "h3": expected "http1", "h2c", "h2" or "auto""#,
    ),
    (
        12,
        12,
        r#"upstreams.b.protocol = "h2c" is cleartext HTTP/2 and cannot be used with [upstreams.b.tls]: use "h2" or "auto" for HTTP/2 over TLS"#,
    ),
    (
        17,
        12,
        r#"upstreams.c.protocol = "h2" needs TLS ([upstreams.c.tls]): for HTTP/2 without TLS use "h2c""#,
    ),
    (
        21,
        25,
        r#"upstreams.d.http2_max_connections applies only to HTTP/2: set protocol = "h2c", "h2" or "auto""#,
    ),
    (
        26,
        32,
        "upstreams.e.http2_max_concurrent_streams = 0 is out of range: expected 1 to 100000",
    ),
    (
        30,
        19,
        r#"upstreams.f.tls.ca_file: cannot read "tests/configs/broken/no-such-ca.pem": No such file or directory (os error 2)"#,
    ),
    (
        34,
        19,
        r#"upstreams.g.tls.ca_file: no certificate in "tests/configs/broken/upstream_tls_errors.toml": expected a PEM "BEGIN CERTIFICATE" block"#,
    ),
    (
        38,
        23,
        "upstreams.h.tls.client_cert needs upstreams.h.tls.client_key (the certificate's private key)",
    ),
    (
        42,
        23,
        r#"upstreams.i.tls.server_name: "bad name!" is not a valid DNS name or IP address"#,
    ),
];

/// `bad_traffic_limits.toml`: limits, outlier detection, route timeouts, retries.
const BAD_TRAFFIC_LIMITS: &[Expected] = &[
    (
        7,
        16,
        "upstreams.a.max_requests = 0 is out of range: expected 1 to 1000000",
    ),
    (
        10,
        19,
        "upstreams.a.outlier_detection.consecutive_5xx = -1 is out of range: expected 0 to 1000",
    ),
    (
        12,
        21,
        "upstreams.a.outlier_detection.max_ejection_time (10s) is shorter than base_ejection_time (60s)",
    ),
    (
        13,
        24,
        "upstreams.a.outlier_detection.max_ejection_percent = 101 is out of range: expected 0 to 100",
    ),
    (17, 11, r#"route "route-1": timeout must be greater than zero"#),
    (
        23,
        22,
        r#"route "retrying": retry.attempts = 1 is out of range: expected 2 to 10"#,
    ),
    (
        23,
        50,
        r#"route "retrying": retry.on: unknown condition "404": expected one of ["connect_failure", "reset", "timeout"] or a 5xx status like "503""#,
    ),
    (
        23,
        57,
        r#"route "retrying": retry.on: unknown condition "sometimes": expected one of ["connect_failure", "reset", "timeout"] or a 5xx status like "503""#,
    ),
    (
        23,
        106,
        r#"route "retrying": retry.backoff_max (100ms) is shorter than backoff_base (1s)"#,
    ),
    (
        27,
        28,
        "upstreams.b.retry_budget.percent = 2000 is out of range: expected 0 to 1000",
    ),
    (
        31,
        15,
        "upstreams.c.max_pending applies only with max_connections (requests wait for a connection only when that limit is reached)",
    ),
];

/// `bad_hashing.toml`: every problem of the balancing keys.
const BAD_HASHING: &[Expected] = &[
    (
        8,
        11,
        r#"upstream "a": balance = "ring" needs hash_key: expected "header:NAME", "cookie:NAME", "client_ip" or "path""#,
    ),
    (
        13,
        12,
        r#"upstreams.b.hash_key applies to balance = "ring" or "maglev" only, not "least_request""#,
    ),
    (
        14,
        17,
        r#"upstreams.b.virtual_nodes applies to balance = "ring" only, not "least_request""#,
    ),
    (
        19,
        12,
        r#"upstreams.c.hash_key: invalid hash key "query:id": expected "header:NAME", "cookie:NAME", "client_ip" or "path""#,
    ),
    (
        20,
        17,
        r#"upstreams.c.hash_fallback: unknown hash fallback "least_request": expected "round_robin" or "random""#,
    ),
    (
        21,
        21,
        "upstreams.c.maglev_table_size = 65536 is not a prime: expected a prime such as 65537 or 251",
    ),
    (
        26,
        12,
        r#"upstreams.d.hash_key: invalid header name "x user" in hash key "header:x user": expected a token such as "x-user""#,
    ),
    (
        27,
        17,
        "upstreams.d.virtual_nodes = 0 is out of range: expected 1 to 10000",
    ),
    (
        32,
        12,
        r#"upstreams.e.hash_key: invalid cookie name "" in hash key "cookie:": expected a token such as "session""#,
    ),
    (
        33,
        21,
        "upstreams.e.maglev_table_size = 11 is too small for 2 endpoints: expected at least 10 slots per endpoint",
    ),
];

/// `bad_health_check.toml`: every `[upstreams.NAME.health_check]` problem.
const BAD_HEALTH_CHECK: &[Expected] = &[
    (
        10,
        8,
        r#"upstreams.a.health_check.type: unknown type "udp": expected "http" or "tcp""#,
    ),
    (
        17,
        8,
        r#"upstreams.b.health_check.path applies to type = "http" only, not "tcp""#,
    ),
    (
        19,
        11,
        "upstreams.b.health_check.timeout (2s) is longer than the interval (1s): probes would overlap",
    ),
    (
        25,
        10,
        r#"upstreams.c.health_check.method: invalid method "G E T": expected a token like "GET""#,
    ),
    (
        26,
        8,
        r#"upstreams.c.health_check.path: invalid path "healthz": expected an absolute path like "/healthz""#,
    ),
    (
        27,
        22,
        r#"upstreams.c.health_check.expected_statuses: invalid status "200-199": expected a status like 200, a range like "200-399", or a class like "2xx""#,
    ),
    (
        27,
        33,
        r#"upstreams.c.health_check.expected_statuses: invalid status 600: expected a status from 100 to 599, a range like "200-399", or a class like "2xx""#,
    ),
    (
        28,
        23,
        "upstreams.c.health_check.unhealthy_threshold = 0 is out of range: expected 1 to 100",
    ),
];

/// `several_errors.toml`: fifteen independent problems, all reported in one run.
const SEVERAL: &[Expected] = &[
    (
        3,
        20,
        r#"invalid trusted proxy "not-an-ip": expected an IP address or CIDR, e.g. "10.0.0.0/8""#,
    ),
    (
        4,
        23,
        "server.header_read_timeout must be greater than zero",
    ),
    (
        7,
        11,
        r#"invalid listen address "127.0.0.1": expected IP:port, e.g. "127.0.0.1:8080" or "[::]:8080""#,
    ),
    (
        10,
        14,
        r#"endpoint "127.0.0.1:9000" of upstream "backend": weight 0 is out of range: expected 1 to 10000"#,
    ),
    (
        11,
        11,
        r#"unknown balance algorithm "fastest": expected one of "round_robin", "weighted", "random", "least_request", "peak_ewma", "ring", "maglev""#,
    ),
    (
        12,
        27,
        r#"upstreams.backend.response_header_timeout: invalid duration "soon": expected a number with a unit (ms, s, m, h), e.g. "500ms" or "30s""#,
    ),
    (
        17,
        1,
        r#"middleware "tag": invalid header name "bad header": expected a token such as "x-debug""#,
    ),
    (
        21,
        1,
        r#"middleware "strip": strip_prefix prefix "api/" is invalid: expected a path starting with '/' and not ending with '/', e.g. "/api""#,
    ),
    (
        27,
        9,
        r#"route "a": a route matches one path form: expected only one of path, path_prefix, path_pattern, path_regex"#,
    ),
    (
        27,
        61,
        r#"route "a": invalid method "G E T": expected a token like "GET""#,
    ),
    (
        32,
        23,
        r#"route "b": unknown middleware "auth": expected one of ["access_log", "request_id", "strip", "tag"] (define it under [middlewares.auth])"#,
    ),
    (
        33,
        12,
        r#"route "b": unknown upstream "nowhere": expected one of ["backend", "ok"]"#,
    ),
    (36, 8, r#"duplicate route name "a" (also route 1)"#),
    (
        37,
        9,
        r#"route "a": host "bad host" contains ' ': expected letters, digits, '-', '_' or '.' (use punycode for international names)"#,
    ),
    (
        37,
        9,
        r#"route "a": {*rest} must be the last segment in path pattern "/x/{*rest}/y""#,
    ),
];

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The errors `strait::check` reports for a broken file.
fn check_errors(name: &str) -> Vec<ConfigError> {
    let source = read(&configs().join("broken").join(name));
    match strait::check(name, &source, &CustomRegistry::new()) {
        Ok(_) => panic!("{name} was accepted"),
        Err(errors) => errors.0,
    }
}

#[test]
fn every_broken_file_reports_exactly_its_errors() {
    let mut failures = Vec::new();
    for (name, expected) in BROKEN {
        let got = check_errors(name);
        let got: Vec<(usize, usize, &str)> = got
            .iter()
            .map(|e| {
                assert_eq!(e.file, *name, "the error names its file");
                (e.line, e.column, e.message.as_str())
            })
            .collect();
        if got != *expected {
            failures.push(format!("{name}:\n  expected {expected:#?}\n  got {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_file_in_the_broken_directory_is_covered() {
    let mut on_disk: Vec<String> = std::fs::read_dir(configs().join("broken"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = BROKEN.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    assert!(listed.len() >= 10);
}

#[test]
fn several_errors_are_all_reported_in_one_run() {
    let errors = check_errors("several_errors.toml");
    assert_eq!(errors.len(), 15, "{errors:#?}");
    // In file order, each with a place in the file.
    let places: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
    let mut sorted = places.clone();
    sorted.sort();
    assert_eq!(places, sorted);
    assert!(places.iter().all(|&(l, c)| l > 0 && c > 0));
}

#[test]
fn errors_display_as_file_line_column_message() {
    let source = read(&configs().join("broken/bad_cidr.toml"));
    let errors = strait::check("conf/gw.toml", &source, &CustomRegistry::new())
        .err()
        .expect("refused");
    assert_eq!(
        errors.to_string(),
        r#"conf/gw.toml:5:3: invalid trusted proxy "10.0.0.0/33": expected an IP address or CIDR, e.g. "10.0.0.0/8""#
    );
    // File-wide problems have no line or column to show.
    let errors = strait::check("e.toml", "", &CustomRegistry::new())
        .err()
        .expect("refused");
    assert_eq!(errors.0.len(), 2);
    assert!(errors
        .to_string()
        .starts_with("e.toml: no [[listeners]]: expected at least one"));
}

#[test]
fn the_valid_example_passes() {
    let source = read(&configs().join("valid.toml"));
    if let Err(errors) = strait::check("valid.toml", &source, &CustomRegistry::new()) {
        panic!("valid.toml refused:\n{errors}");
    }
}

// ---------------------------------------------------------------- the binary

/// Runs `strait ARGS` from the crate root (so relative paths show in messages).
fn strait(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "off")
        .output()
        .expect("run strait")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_command_accepts_a_valid_file() {
    let out = strait(&["check", "--config", "tests/configs/valid.toml"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("tests/configs/valid.toml: ok ("),
        "{stdout}"
    );
    assert!(stdout.contains("routes: user -> api, api -> api, static -> static"));
}

#[test]
fn check_command_lists_every_error_and_fails() {
    let path = "tests/configs/broken/several_errors.toml";
    let out = strait(&["check", "--config", path]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let mut want: Vec<String> = SEVERAL
        .iter()
        .map(|(line, col, msg)| format!("{path}:{line}:{col}: {msg}"))
        .collect();
    want.push(format!("{path}: 15 error(s)"));
    let got: Vec<&str> = stderr.lines().collect();
    assert_eq!(got, want);
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

#[test]
fn check_command_fails_on_a_missing_file() {
    let out = strait(&["check", "--config", "tests/configs/no-such-file.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(r#"cannot read configuration file "tests/configs/no-such-file.toml""#),
        "{stderr}"
    );
}

#[test]
fn check_command_without_config_is_a_usage_error() {
    let out = strait(&["check"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("expected --config FILE"), "{stderr}");
}
