//! The hub's certificate authority (`pahlawan certs init`), edge
//! certificates (`pahlawan certs issue-edge`) and HTTPS certificates for an
//! edge's or the hub's web listener (`pahlawan certs issue-web`). An edge's
//! identity is the common name of a certificate this CA signed.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use sync_protocol::EdgeId;
use time::{Duration, OffsetDateTime};

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const HUB_CERT: &str = "hub.crt";
pub const HUB_KEY: &str = "hub.key";
/// The name edges use for the hub in TLS unless configured otherwise.
pub const DEFAULT_HUB_NAME: &str = "pahlawan-hub";

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0} already exists; refusing to overwrite a CA (use --force to replace it)")]
    Exists(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("a web certificate needs at least one --name or --ip")]
    NoNames,
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes a file; private keys get mode 0600.
fn write(path: &Path, contents: &str, private: bool) -> Result<(), CertError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(contents.as_bytes()).map_err(io_err(path))
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(days);
}

#[derive(Debug, Clone)]
pub struct Created {
    pub files: Vec<PathBuf>,
}

/// Creates the CA and the hub's own certificate (valid for `hub_names`:
/// DNS names or IP addresses edges use to reach it).
pub fn init(dir: &Path, hub_names: &[String], force: bool) -> Result<Created, CertError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let ca_cert_path = dir.join(CA_CERT);
    if ca_cert_path.exists() && !force {
        return Err(CertError::Exists(ca_cert_path.display().to_string()));
    }
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "Pahlawan Pangan hub CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca, 3_650);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    write(&ca_cert_path, &ca_cert.pem(), false)?;
    write(&dir.join(CA_KEY), &ca_key.serialize_pem(), true)?;

    let mut names: Vec<String> = hub_names.to_vec();
    if names.is_empty() {
        names = vec![
            DEFAULT_HUB_NAME.into(),
            "localhost".into(),
            "127.0.0.1".into(),
        ];
    }
    let mut hub = CertificateParams::new(names)?;
    hub.distinguished_name
        .push(DnType::CommonName, DEFAULT_HUB_NAME);
    hub.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    hub.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut hub, 825);
    let hub_key = KeyPair::generate()?;
    let issuer = Issuer::new(ca, ca_key);
    let hub_cert = hub.signed_by(&hub_key, &issuer)?;
    write(&dir.join(HUB_CERT), &hub_cert.pem(), false)?;
    write(&dir.join(HUB_KEY), &hub_key.serialize_pem(), true)?;
    Ok(Created {
        files: [CA_CERT, CA_KEY, HUB_CERT, HUB_KEY]
            .iter()
            .map(|f| dir.join(f))
            .collect(),
    })
}

pub fn edge_cert_path(dir: &Path, edge: &EdgeId) -> PathBuf {
    dir.join(format!("edge-{edge}.crt"))
}

pub fn edge_key_path(dir: &Path, edge: &EdgeId) -> PathBuf {
    dir.join(format!("edge-{edge}.key"))
}

/// Issues `edge`'s client certificate and key, signed by the CA in `dir`.
pub fn issue_edge(dir: &Path, edge: &EdgeId) -> Result<Created, CertError> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(io_err(&p))
    };
    let ca_key = KeyPair::from_pem(&read(CA_KEY)?)?;
    let issuer = Issuer::from_ca_cert_pem(&read(CA_CERT)?, ca_key)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, edge.as_str());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut params, 825);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let (cert_path, key_path) = (edge_cert_path(dir, edge), edge_key_path(dir, edge));
    write(&cert_path, &cert.pem(), false)?;
    write(&key_path, &key.serialize_pem(), true)?;
    Ok(Created {
        files: vec![cert_path, key_path],
    })
}

/// A web certificate's files: `web-<first name>.crt` and `.key`.
pub fn web_cert_paths(dir: &Path, first: &str) -> (PathBuf, PathBuf) {
    let stem: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    (
        dir.join(format!("web-{stem}.crt")),
        dir.join(format!("web-{stem}.key")),
    )
}

/// Issues an HTTPS server certificate for `names` (DNS names) and `ips`,
/// signed by the CA in `dir`, valid for `days`: what `[http.tls]` takes on
/// an edge serving kiosks on a LAN (clients trust `ca.crt`). Refuses to
/// overwrite files unless `force`.
pub fn issue_web(
    dir: &Path,
    names: &[String],
    ips: &[std::net::IpAddr],
    days: i64,
    force: bool,
) -> Result<Created, CertError> {
    let sans: Vec<String> = names
        .iter()
        .cloned()
        .chain(ips.iter().map(ToString::to_string))
        .collect();
    let first = sans.first().ok_or(CertError::NoNames)?.clone();
    let (cert_path, key_path) = web_cert_paths(dir, &first);
    if cert_path.exists() && !force {
        return Err(CertError::Exists(cert_path.display().to_string()));
    }
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(io_err(&p))
    };
    let ca_key = KeyPair::from_pem(&read(CA_KEY)?)?;
    let issuer = Issuer::from_ca_cert_pem(&read(CA_CERT)?, ca_key)?;
    // rcgen reads a SAN that parses as an IP address as one.
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name.push(DnType::CommonName, first);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut params, days);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write(&key_path, &key.serialize_pem(), true)?;
    write(&cert_path, &cert.pem(), false)?;
    Ok(Created {
        files: vec![cert_path, key_path],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_link::tls::{edge_id_of, read_certs};
    use x509_parser::prelude::{FromDer, X509Certificate};

    #[test]
    fn init_then_issue_names_the_edge_and_refuses_to_clobber() {
        let dir = tempfile::tempdir().expect("tempdir");
        init(dir.path(), &[], false).expect("init");
        assert!(matches!(
            init(dir.path(), &[], false),
            Err(CertError::Exists(_))
        ));
        let edge = EdgeId::new("jkt-1").expect("valid");
        issue_edge(dir.path(), &edge).expect("issue");
        let der = read_certs(&edge_cert_path(dir.path(), &edge)).expect("read")[0].clone();
        assert_eq!(edge_id_of(&der).expect("identity"), edge);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(edge_key_path(dir.path(), &edge))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "private keys are private");
        }
    }

    #[test]
    fn a_web_certificate_names_its_hosts_and_addresses_for_server_auth() {
        let dir = tempfile::tempdir().expect("tempdir");
        init(dir.path(), &[], false).expect("init");
        let ip: std::net::IpAddr = "192.168.1.10".parse().expect("ip");
        let created =
            issue_web(dir.path(), &["edge.local".into()], &[ip], 30, false).expect("issue");
        assert_eq!(created.files, {
            let (c, k) = web_cert_paths(dir.path(), "edge.local");
            vec![c, k]
        });
        let der = read_certs(&created.files[0]).expect("read")[0].clone();
        let (_, cert) = X509Certificate::from_der(&der).expect("x509");
        let san = cert
            .subject_alternative_name()
            .expect("parses")
            .expect("has SANs");
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert!(names.iter().any(|n| n.contains("edge.local")), "{names:?}");
        // x509-parser prints an address as hex bytes: compare the bytes.
        assert!(
            san.value.general_names.iter().any(|n| matches!(
                n,
                x509_parser::extensions::GeneralName::IPAddress(b) if *b == [192, 168, 1, 10]
            )),
            "{names:?}"
        );
        let eku = cert.extended_key_usage().expect("parses").expect("has EKU");
        assert!(eku.value.server_auth && !eku.value.client_auth);
        assert!(matches!(
            issue_web(dir.path(), &["edge.local".into()], &[], 30, false),
            Err(CertError::Exists(_))
        ));
        assert!(matches!(
            issue_web(dir.path(), &[], &[], 30, false),
            Err(CertError::NoNames)
        ));
    }

    #[test]
    fn issuing_without_a_ca_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = issue_edge(dir.path(), &EdgeId::new("x").expect("valid")).expect_err("no CA");
        assert!(err.to_string().contains("ca.key"), "{err}");
    }
}
