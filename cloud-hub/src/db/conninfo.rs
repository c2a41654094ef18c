//! libpq's TLS settings in a connection string: `sslmode`, `sslrootcert`,
//! `sslcert` and `sslkey` are taken out of a URL (`postgres://…?sslmode=…`)
//! or a key-value string (`host=… sslmode=…`) and the rest is left for
//! tokio-postgres, which knows only `disable`/`prefer`/`require` and none of
//! the file settings. Pure: no I/O (the files are read by [`super::tls`]).

use std::path::PathBuf;

/// `sslmode`, with libpq's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, the certificate not checked (libpq's default).
    #[default]
    Prefer,
    /// TLS or no connection; the certificate not checked.
    Require,
    /// TLS, the certificate chain checked against the root certificates.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, ConnInfoError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(ConnInfoError::SslMode(other.to_string())),
        })
    }

    /// Whether the server's certificate chain is checked.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// Where the roots for `verify-ca`/`verify-full` come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RootCert {
    /// `sslrootcert` unset: `~/.postgresql/root.crt` if it exists, else the
    /// system's roots.
    #[default]
    Default,
    /// `sslrootcert=system`: the operating system's roots.
    System,
    /// `sslrootcert=FILE`: the PEM certificates in the file.
    File(PathBuf),
}

/// The TLS half of a connection string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: RootCert,
    /// `sslcert` / `sslkey`: a client certificate and its key (PEM).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A connection string split in two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The connection string without the TLS settings, in its own form.
    pub rest: String,
    pub tls: TlsSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnInfoError {
    #[error(
        "sslmode {0:?} is not one of disable, prefer, require, verify-ca, verify-full (`allow` is not supported)"
    )]
    SslMode(String),
    #[error("sslcert and sslkey go together: {0} is set without the other")]
    HalfClientCert(&'static str),
    #[error("malformed connection string: {0}")]
    Malformed(&'static str),
}

/// Splits `conn` into the TLS settings and the rest.
pub fn split(conn: &str) -> Result<ConnInfo, ConnInfoError> {
    let trimmed = conn.trim();
    let (rest, pairs) =
        if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            split_url(trimmed)?
        } else {
            split_key_value(trimmed)?
        };
    let mut tls = TlsSettings::default();
    for (key, value) in pairs {
        match key.as_str() {
            "sslmode" => tls.mode = SslMode::parse(&value)?,
            "sslrootcert" if value == "system" => tls.root_cert = RootCert::System,
            "sslrootcert" if value.is_empty() => tls.root_cert = RootCert::Default,
            "sslrootcert" => tls.root_cert = RootCert::File(PathBuf::from(value)),
            "sslcert" => tls.cert = (!value.is_empty()).then(|| PathBuf::from(value)),
            "sslkey" => tls.key = (!value.is_empty()).then(|| PathBuf::from(value)),
            _ => unreachable!("only TLS keys are taken out"),
        }
    }
    match (&tls.cert, &tls.key) {
        (Some(_), None) => return Err(ConnInfoError::HalfClientCert("sslcert")),
        (None, Some(_)) => return Err(ConnInfoError::HalfClientCert("sslkey")),
        _ => {}
    }
    Ok(ConnInfo { rest, tls })
}

const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

type Pairs = Vec<(String, String)>;

/// `postgres://…?a=1&sslmode=x&b=2` → (`postgres://…?a=1&b=2`, [(sslmode, x)]).
fn split_url(url: &str) -> Result<(String, Pairs), ConnInfoError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let key = percent_decode(k)?;
        if TLS_KEYS.contains(&key.as_str()) {
            taken.push((key, percent_decode(v)?));
        } else {
            kept.push(part);
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, taken))
}

fn percent_decode(s: &str) -> Result<String, ConnInfoError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(ConnInfoError::Malformed("a bad %-escape in the URL"))?;
                out.push(hex);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ConnInfoError::Malformed("a %-escape that is not UTF-8"))
}

/// libpq's key-value form: `key = value` pairs separated by white space, a
/// value in single quotes may hold spaces, `\` escapes the next character.
fn split_key_value(conn: &str) -> Result<(String, Pairs), ConnInfoError> {
    let mut kept: Vec<String> = Vec::new();
    let mut taken = Vec::new();
    let mut chars = conn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(ConnInfoError::Malformed("a key without `=` and a value"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let value = read_value(&mut chars)?;
        if TLS_KEYS.contains(&key.as_str()) {
            taken.push((key, value));
        } else {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{quoted}'"));
        }
    }
    Ok((kept.join(" "), taken))
}

fn read_value(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<String, ConnInfoError> {
    let mut value = String::new();
    if chars.next_if_eq(&'\'').is_some() {
        loop {
            match chars.next() {
                Some('\'') => return Ok(value),
                Some('\\') => value.push(
                    chars
                        .next()
                        .ok_or(ConnInfoError::Malformed("a `\\` at the end"))?,
                ),
                Some(c) => value.push(c),
                None => return Err(ConnInfoError::Malformed("an unterminated quoted value")),
            }
        }
    }
    while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
        if c == '\\' {
            value.push(
                chars
                    .next()
                    .ok_or(ConnInfoError::Malformed("a `\\` at the end"))?,
            );
        } else {
            value.push(c);
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(mode: SslMode, root: RootCert, cert: Option<&str>, key: Option<&str>) -> TlsSettings {
        TlsSettings {
            mode,
            root_cert: root,
            cert: cert.map(PathBuf::from),
            key: key.map(PathBuf::from),
        }
    }

    #[test]
    fn tls_settings_come_out_and_the_rest_stays() {
        use SslMode::*;
        let file = |p: &str| RootCert::File(PathBuf::from(p));
        let cases: Vec<(&str, &str, TlsSettings)> = vec![
            (
                "postgres://hub@db/p",
                "postgres://hub@db/p",
                TlsSettings::default(),
            ),
            (
                "postgres://hub@db/p?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.crt&application_name=hub",
                "postgres://hub@db/p?application_name=hub",
                tls(VerifyFull, file("/etc/ca.crt"), None, None),
            ),
            (
                "postgresql://db/p?connect_timeout=3&sslmode=disable",
                "postgresql://db/p?connect_timeout=3",
                tls(Disable, RootCert::Default, None, None),
            ),
            (
                "postgres://db/p?sslmode=require&sslcert=/c.crt&sslkey=/c.key",
                "postgres://db/p",
                tls(Require, RootCert::Default, Some("/c.crt"), Some("/c.key")),
            ),
            (
                "postgres://db/p?sslmode=verify-ca&sslrootcert=system",
                "postgres://db/p",
                tls(VerifyCa, RootCert::System, None, None),
            ),
            (
                "host=127.0.0.1 port=5432 sslmode=verify-ca user=hub",
                "host='127.0.0.1' port='5432' user='hub'",
                tls(VerifyCa, RootCert::Default, None, None),
            ),
            (
                "  host = db  sslrootcert = '/a dir/ca.crt' password='it\\'s' dbname=p ",
                "host='db' password='it\\'s' dbname='p'",
                tls(Prefer, file("/a dir/ca.crt"), None, None),
            ),
            (
                "sslmode=prefer",
                "",
                tls(Prefer, RootCert::Default, None, None),
            ),
        ];
        for (input, rest, expected) in cases {
            let got = split(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got.rest, rest, "{input}");
            assert_eq!(got.tls, expected, "{input}");
            assert!(
                got.rest.is_empty() || got.rest.parse::<tokio_postgres::Config>().is_ok(),
                "tokio-postgres takes what is left of {input}: {}",
                got.rest
            );
        }
    }

    #[test]
    fn bad_tls_settings_are_refused_by_name() {
        let cases: [(&str, &str); 7] = [
            ("postgres://db/p?sslmode=verify", "\"verify\""),
            ("postgres://db/p?sslmode=allow", "`allow` is not supported"),
            ("host=db sslmode=VERIFY-FULL", "\"VERIFY-FULL\""),
            ("postgres://db/p?sslcert=/c.crt", "sslcert is set without"),
            ("host=db sslkey=/c.key", "sslkey is set without"),
            ("host=db password='open", "unterminated"),
            ("postgres://db/p?sslrootcert=%zz", "%-escape"),
        ];
        for (input, needle) in cases {
            match split(input) {
                Ok(c) => panic!("{input} was accepted: {c:?}"),
                Err(e) => assert!(e.to_string().contains(needle), "{input}: {e}"),
            }
        }
        assert!(split("host").is_err(), "a key without a value");
    }
}
