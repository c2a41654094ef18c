//! `pahlawan certs init|issue-edge|issue-web`: the hub's certificate
//! authority, edge certificates and HTTPS certificates.

use std::path::PathBuf;

use clap::Subcommand;

use crate::exit;

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Create the CA and the hub's certificate, and the hub's token keys
    /// in tokens/ (kept if they exist).
    #[command(
        after_help = "Example:\n  pahlawan certs init --dir certs --hub-name hub.example.org"
    )]
    Init {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// DNS names or IPs edges use to reach the hub (repeatable);
        /// default: pahlawan-hub, localhost, 127.0.0.1.
        #[arg(long = "hub-name")]
        hub_names: Vec<String>,
        /// Replace an existing CA (every edge certificate must then be reissued).
        #[arg(long)]
        force: bool,
    },
    /// Issue an edge's client certificate and key, signed by the CA.
    #[command(after_help = "Example:\n  pahlawan certs issue-edge --dir certs --edge-id jakarta-1")]
    IssueEdge {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        #[arg(long)]
        edge_id: String,
    },
    /// Issue an HTTPS certificate for an edge's (or the hub's) web
    /// listener, signed by the CA: `web-<first name>.crt` and `.key`, for
    /// `[http.tls]`. Clients trust `ca.crt`.
    #[command(
        after_help = "Example:\n  pahlawan certs issue-web --dir certs --name edge.local --ip 192.168.1.10"
    )]
    IssueWeb {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// A DNS name clients use, e.g. edge.local (repeatable).
        #[arg(long = "name")]
        names: Vec<String>,
        /// An IP address clients use, e.g. 192.168.1.10 (repeatable).
        #[arg(long = "ip")]
        ips: Vec<std::net::IpAddr>,
        /// Days of validity.
        #[arg(long, default_value_t = 825)]
        days: i64,
        /// Replace existing files of the same name.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    let created = match command {
        CertsCommand::Init {
            dir,
            hub_names,
            force,
        } => {
            let mut created = cloud_hub::certs::init(&dir, &hub_names, force)?;
            // The hub's token keys too, where the hub looks by default
            // (kept if they exist: tokens already issued stay good).
            created
                .files
                .extend(jwt_auth::keys::init(&dir.join("tokens"))?.files);
            created
        }
        CertsCommand::IssueEdge { dir, edge_id } => {
            let edge = sync_protocol::EdgeId::new(&edge_id)
                .map_err(|e| exit::usage(format!("--edge-id {edge_id:?}: {e}")))?;
            cloud_hub::certs::issue_edge(&dir, &edge)?
        }
        CertsCommand::IssueWeb {
            dir,
            names,
            ips,
            days,
            force,
        } => {
            if !(1..=3_650).contains(&days) {
                return Err(exit::usage("--days must be 1 to 3650"));
            }
            cloud_hub::certs::issue_web(&dir, &names, &ips, days, force)?
        }
    };
    for f in created.files {
        println!("{}", f.display());
    }
    Ok(())
}
