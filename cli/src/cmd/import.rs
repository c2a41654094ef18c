//! `recipients|providers add`, `import FILE.csv` and `export`: registering
//! entries on a running edge one at a time or from a spreadsheet. Every
//! CSV row is validated first — by the edge's own request validators and
//! its owned cells — and bad rows are reported with their line numbers;
//! nothing is imported unless `--skip-bad` (then the good rows are).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};

use super::edge::Target;
use super::registry::Kind;
use crate::client::Admin;
use crate::exit;
use crate::output::{Out, fields};

/// The most rows one import takes.
pub const MAX_IMPORT_ROWS: usize = 100_000;

#[derive(Args)]
pub struct AddArgs {
    #[arg(long)]
    name: String,
    #[arg(long, allow_hyphen_values = true)]
    lat: f64,
    #[arg(long, allow_hyphen_values = true)]
    lon: f64,
    #[arg(long)]
    phone: String,
    #[arg(long)]
    email: String,
    /// Recipients: kilograms a day it can take.
    #[arg(long)]
    capacity_kg_per_day: Option<f64>,
    /// Recipients: the food types it accepts, comma-separated
    /// (prepared_meals, bakery, produce, dairy, …).
    #[arg(long, value_delimiter = ',')]
    food_types: Vec<String>,
    /// Recipients: the cell's food bank of last resort.
    #[arg(long)]
    fallback: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct ImportArgs {
    /// The CSV file. Recipients: name,lat,lon,capacity_kg_per_day,
    /// accepted_food_types (separated by ;),is_fallback,contact_phone,
    /// contact_email. Providers: name,lat,lon,contact_phone,contact_email.
    file: PathBuf,
    /// Import the good rows even if some are bad (the bad ones are listed).
    #[arg(long)]
    skip_bad: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    target: Target,
}

/// The request body an `add` or a CSV row makes.
fn body(
    kind: Kind,
    fields: &csv::StringRecord,
    header: &csv::StringRecord,
) -> Result<Value, String> {
    let get = |name: &str| -> Result<&str, String> {
        header
            .iter()
            .position(|h| h.trim() == name)
            .and_then(|i| fields.get(i))
            .map(str::trim)
            .ok_or_else(|| format!("no {name} column"))
    };
    let num = |name: &str| -> Result<f64, String> {
        get(name)?
            .parse::<f64>()
            .map_err(|_| format!("{name} is not a number"))
    };
    let mut b = json!({
        "name": get("name")?, "lat": num("lat")?, "lon": num("lon")?,
        "contact_phone": get("contact_phone")?, "contact_email": get("contact_email")?,
    });
    if kind == Kind::Recipients {
        let types: Vec<&str> = get("accepted_food_types")?
            .split(';')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        let fallback = match get("is_fallback")?.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => true,
            "false" | "no" | "0" | "" => false,
            other => return Err(format!("is_fallback {other:?} is not true or false")),
        };
        b["capacity_kg_per_day"] = json!(num("capacity_kg_per_day")?);
        b["accepted_food_types"] = json!(types);
        b["is_fallback"] = json!(fallback);
    }
    Ok(b)
}

/// What the edge will say of `body`: its validators, then its cells.
fn check(kind: Kind, body: &Value, cells: &edge_node::cells::CellSet) -> Result<(), String> {
    use edge_node::api::dto::{NewProviderRequest, NewRecipientRequest};
    let location = match kind {
        Kind::Recipients => serde_json::from_value::<NewRecipientRequest>(body.clone())
            .map_err(|e| e.to_string())?
            .validate()
            .map(|r| r.location),
        Kind::Providers => serde_json::from_value::<NewProviderRequest>(body.clone())
            .map_err(|e| e.to_string())?
            .validate()
            .map(|p| p.location),
    }
    .map_err(|e| format!("{}: {}", e.code, e.message))?;
    cells.owner_cell(&location).map(|_| ()).map_err(|cell| {
        format!(
            "({}, {}) lies in cell {}, which this edge does not own",
            location.lat(),
            location.lon(),
            edge_node::cells::token(cell)
        )
    })
}

/// The edge's owned cells, from `GET /admin/cells`.
async fn owned_cells(admin: &Admin) -> anyhow::Result<edge_node::cells::CellSet> {
    let c = admin.get("/admin/cells").await?;
    let level = c["level"]
        .as_u64()
        .and_then(|l| u8::try_from(l).ok())
        .unwrap_or(0);
    let tokens: Vec<String> = c["cells"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["token"].as_str().map(str::to_string))
        .collect();
    edge_node::cells::CellSet::from_tokens(level, &tokens).context("the edge's cells")
}

pub async fn add(kind: Kind, args: AddArgs, out: Out) -> anyhow::Result<()> {
    let header = csv::StringRecord::from(vec![
        "name",
        "lat",
        "lon",
        "contact_phone",
        "contact_email",
        "capacity_kg_per_day",
        "accepted_food_types",
        "is_fallback",
    ]);
    if kind == Kind::Recipients
        && (args.capacity_kg_per_day.is_none() || args.food_types.is_empty())
    {
        return Err(exit::usage(
            "a recipient needs --capacity-kg-per-day and --food-types",
        ));
    }
    let row = csv::StringRecord::from(vec![
        args.name.clone(),
        args.lat.to_string(),
        args.lon.to_string(),
        args.phone.clone(),
        args.email.clone(),
        args.capacity_kg_per_day.unwrap_or_default().to_string(),
        args.food_types.join(";"),
        args.fallback.to_string(),
    ]);
    let body = body(kind, &row, &header).map_err(exit::usage)?;
    let admin = args.target.admin()?;
    let path = match kind {
        Kind::Recipients => "/recipients",
        Kind::Providers => "/providers",
    };
    let created = admin.post(path, &body).await?;
    out.show(&created, |c| {
        fields(&[("registered", crate::output::cell(&c["id"]))])
    })
}

/// Rows of `file`, each with its line number: good bodies and bad rows.
type Checked = (Vec<(u64, Value)>, Vec<(u64, String)>);

fn read_rows(
    kind: Kind,
    file: &Path,
    cells: &edge_node::cells::CellSet,
) -> anyhow::Result<Checked> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(file)
        .with_context(|| format!("reading {}", file.display()))?;
    let header = reader
        .headers()
        .with_context(|| format!("{}: no header line", file.display()))?
        .clone();
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for (i, record) in reader.records().enumerate() {
        if i >= MAX_IMPORT_ROWS {
            anyhow::bail!(
                "{}: more than {MAX_IMPORT_ROWS} rows; split the file",
                file.display()
            );
        }
        let (line, result) = match record {
            Ok(r) => {
                let line = r.position().map_or(0, |p| p.line());
                (
                    line,
                    body(kind, &r, &header).and_then(|b| check(kind, &b, cells).map(|()| b)),
                )
            }
            Err(e) => (e.position().map_or(0, |p| p.line()), Err(e.to_string())),
        };
        match result {
            Ok(b) => good.push((line, b)),
            Err(why) => bad.push((line, why)),
        }
    }
    Ok((good, bad))
}

pub async fn import(kind: Kind, args: ImportArgs, out: Out) -> anyhow::Result<()> {
    let admin = args.target.admin()?;
    let cells = owned_cells(&admin).await?;
    let (good, bad) = read_rows(kind, &args.file, &cells)?;
    let listed: Vec<String> = bad
        .iter()
        .map(|(l, why)| format!("line {l}: {why}"))
        .collect();
    if !bad.is_empty() && !args.skip_bad {
        anyhow::bail!(
            "{}: {} bad row(s), nothing imported (--skip-bad imports the rest): {}",
            args.file.display(),
            bad.len(),
            listed.join("; ")
        );
    }
    let path = match kind {
        Kind::Recipients => "/recipients",
        Kind::Providers => "/providers",
    };
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(good.len() as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let mut ids = Vec::with_capacity(good.len());
    for (line, b) in &good {
        let created = admin.post(path, b).await.with_context(|| {
            format!(
                "line {line} was refused after {} row(s) were imported",
                ids.len()
            )
        })?;
        ids.push(created["id"].clone());
        bar.inc(1);
    }
    bar.finish_and_clear();
    let shown = json!({
        "imported": ids.len(), "ids": ids,
        "skipped": bad.iter().map(|(l, why)| json!({"line": l, "error": why})).collect::<Vec<_>>(),
    });
    out.show(&shown, |_| {
        let mut text = fields(&[
            ("imported", ids.len().to_string()),
            ("skipped", bad.len().to_string()),
        ]);
        for l in &listed {
            text.push_str(&format!("  {l}\n"));
        }
        text
    })
}

pub async fn export(kind: Kind, args: ExportArgs) -> anyhow::Result<()> {
    let admin = args.target.admin()?;
    let columns: &[&str] = match kind {
        Kind::Recipients => &[
            "id",
            "name",
            "lat",
            "lon",
            "cell",
            "capacity_kg_per_day",
            "accepted_food_types",
            "is_fallback",
        ],
        Kind::Providers => &["id", "name", "lat", "lon"],
    };
    let mut w = csv::Writer::from_writer(std::io::stdout());
    w.write_record(columns)?;
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/admin/{}?limit=500", kind.path());
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let page = admin.get(&path).await?;
        for item in page["items"].as_array().into_iter().flatten() {
            let row: Vec<String> = columns
                .iter()
                .map(|c| match &item[*c] {
                    Value::Array(a) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(";"),
                    v => crate::output::cell(v),
                })
                .collect();
            w.write_record(&row)?;
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    w.flush()?;
    Ok(())
}
