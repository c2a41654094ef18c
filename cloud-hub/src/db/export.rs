//! The cold tier: `pahlawan hub export --before DATE --to DIR` writes every
//! month partition of `event_log` and `surplus` that ended by `DATE` as
//! Parquet — one file per month and region, `DIR/<table>/<YYYY-MM>/
//! region-<id>.parquet` (the id is the region's S2 cell id, unsigned) —
//! reads each file back to check its row count, folds the month's surplus
//! into `impact_daily`, then detaches the partition and drops it: the files
//! are the copy. Rows are streamed, [`ROWS_PER_GROUP`] at a time (one
//! Parquet row group each), so memory stays bounded whatever the month holds.
//!
//! Schema (Parquet logical types; `?` = nullable), the same as the tables':
//! - `event_log`: geo_region_id INT64, edge_id STRING, seq INT64, cell INT64
//!   (S2 cell id, signed), kind STRING, at TIMESTAMP(µs, UTC), lease_epoch
//!   INT64, trace_id BINARY?, fenced BOOLEAN, envelope BINARY (the wire
//!   bytes: version byte, then postcard), subject_id STRING? (UUID),
//!   received_at TIMESTAMP(µs, UTC).
//! - `surplus`: geo_region_id INT64, id STRING (UUID), edge_id STRING,
//!   provider_id STRING (UUID), lat DOUBLE, lon DOUBLE, cell INT64,
//!   quantity_g INT64, food_type STRING, description STRING, expires_at,
//!   posted_at TIMESTAMP(µs, UTC), status STRING, version INT64, claimed_by
//!   STRING? (UUID), delivered_g INT64?, updated_at, received_at
//!   TIMESTAMP(µs, UTC).
//!
//! Snappy-compressed; DuckDB (`read_parquet('DIR/event_log/*/*.parquet')`),
//! pandas and pyarrow read them as they are.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use futures::TryStreamExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use time::OffsetDateTime;
use tokio_postgres::{Client, Row};

use super::DbError;
use super::partitions::{self, Month};
use super::retention::{sequential, take_month};

/// Rows per Parquet row group, and the most held in memory at once.
pub const ROWS_PER_GROUP: usize = 10_000;

/// A partition's month may still see updates (a surplus received on its
/// last day and delivered later) for up to its longest life: 14 days to
/// expiry, and a day to spare. Exports end at least this long ago.
pub const SETTLED: time::Duration = time::Duration::days(15);

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: writing Parquet: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("{path} already exists: move it away first (export never overwrites)")]
    Exists { path: PathBuf },
    #[error(
        "--before {before} is too recent: months ending after {latest} may still change (surplus lives up to 15 days)"
    )]
    TooRecent { before: String, latest: String },
    #[error("{path}: read back {read} rows, wrote {written}")]
    Mismatch {
        path: PathBuf,
        written: u64,
        read: u64,
    },
}

/// One file written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub rows: u64,
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exported {
    pub files: Vec<Written>,
    /// Partitions detached (and dropped) after their files were checked.
    pub detached: Vec<String>,
}

#[derive(Clone, Copy)]
enum Col {
    I64,
    F64,
    Bool,
    Text,
    Bytes,
    Time,
    Uuid,
}

struct Column {
    name: &'static str,
    ty: Col,
    nullable: bool,
}

const fn col(name: &'static str, ty: Col) -> Column {
    Column {
        name,
        ty,
        nullable: false,
    }
}

const fn opt(name: &'static str, ty: Col) -> Column {
    Column {
        name,
        ty,
        nullable: true,
    }
}

/// The columns exported from `table`, and the order rows are written in.
fn spec(table: &str) -> (&'static [Column], &'static str) {
    const LOG: &[Column] = &[
        col("geo_region_id", Col::I64),
        col("edge_id", Col::Text),
        col("seq", Col::I64),
        col("cell", Col::I64),
        col("kind", Col::Text),
        col("at", Col::Time),
        col("lease_epoch", Col::I64),
        opt("trace_id", Col::Bytes),
        col("fenced", Col::Bool),
        col("envelope", Col::Bytes),
        opt("subject_id", Col::Uuid),
        col("received_at", Col::Time),
    ];
    const SURPLUS: &[Column] = &[
        col("geo_region_id", Col::I64),
        col("id", Col::Uuid),
        col("edge_id", Col::Text),
        col("provider_id", Col::Uuid),
        col("lat", Col::F64),
        col("lon", Col::F64),
        col("cell", Col::I64),
        col("quantity_g", Col::I64),
        col("food_type", Col::Text),
        col("description", Col::Text),
        col("expires_at", Col::Time),
        col("posted_at", Col::Time),
        col("status", Col::Text),
        col("version", Col::I64),
        opt("claimed_by", Col::Uuid),
        opt("delivered_g", Col::I64),
        col("updated_at", Col::Time),
        col("received_at", Col::Time),
    ];
    if table == "event_log" {
        (LOG, "edge_id, seq")
    } else {
        (SURPLUS, "id")
    }
}

fn schema(columns: &[Column]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            let ty = match c.ty {
                Col::I64 => DataType::Int64,
                Col::F64 => DataType::Float64,
                Col::Bool => DataType::Boolean,
                Col::Text | Col::Uuid => DataType::Utf8,
                Col::Bytes => DataType::Binary,
                Col::Time => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            };
            Field::new(c.name, ty, c.nullable)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// One column of `rows` as an Arrow array.
fn array(rows: &[Row], i: usize, ty: Col) -> ArrayRef {
    match ty {
        Col::I64 => {
            let mut b = Int64Builder::with_capacity(rows.len());
            rows.iter()
                .for_each(|r| b.append_option(r.get::<_, Option<i64>>(i)));
            Arc::new(b.finish())
        }
        Col::F64 => {
            let mut b = Float64Builder::with_capacity(rows.len());
            rows.iter()
                .for_each(|r| b.append_option(r.get::<_, Option<f64>>(i)));
            Arc::new(b.finish())
        }
        Col::Bool => {
            let mut b = BooleanBuilder::with_capacity(rows.len());
            rows.iter()
                .for_each(|r| b.append_option(r.get::<_, Option<bool>>(i)));
            Arc::new(b.finish())
        }
        Col::Text => {
            let mut b = StringBuilder::new();
            rows.iter()
                .for_each(|r| b.append_option(r.get::<_, Option<&str>>(i)));
            Arc::new(b.finish())
        }
        Col::Uuid => {
            let mut b = StringBuilder::new();
            rows.iter().for_each(|r| {
                b.append_option(r.get::<_, Option<uuid::Uuid>>(i).map(|u| u.to_string()))
            });
            Arc::new(b.finish())
        }
        Col::Bytes => {
            let mut b = BinaryBuilder::new();
            rows.iter()
                .for_each(|r| b.append_option(r.get::<_, Option<&[u8]>>(i)));
            Arc::new(b.finish())
        }
        Col::Time => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
            rows.iter().for_each(|r| {
                let t = r.get::<_, Option<OffsetDateTime>>(i);
                b.append_option(t.map(|t| (t.unix_timestamp_nanos() / 1_000) as i64))
            });
            Arc::new(b.finish())
        }
    }
}

fn batch(columns: &[Column], schema: &SchemaRef, rows: &[Row]) -> Result<RecordBatch, String> {
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| array(rows, i, c.ty))
        .collect();
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())
}

/// Exports every partition that ended by `before` (midnight UTC), as of
/// `now`, into `dir`.
pub async fn export(
    client: &mut Client,
    before: OffsetDateTime,
    dir: &Path,
    now: OffsetDateTime,
) -> Result<Exported, ExportError> {
    let latest = now - SETTLED;
    if before > latest {
        return Err(ExportError::TooRecent {
            before: before.date().to_string(),
            latest: latest.date().to_string(),
        });
    }
    let mut out = Exported::default();
    for table in partitions::PARTITIONED {
        for month in partitions::list(client, table).await? {
            if month.end() > before {
                continue;
            }
            out.files
                .extend(export_month(client, table, month, dir).await?);
            let tx = sequential(client).await.map_err(ExportError::Db)?;
            take_month(&tx, table, month, None).await?;
            let partition = month.partition_of(table);
            // One statement each: Citus propagates DDL statement by statement.
            for ddl in [
                format!("ALTER TABLE {table} DETACH PARTITION {partition}"),
                format!("DROP TABLE {partition}"),
            ] {
                tx.batch_execute(&ddl).await.map_err(DbError::from)?;
            }
            tx.commit().await.map_err(DbError::from)?;
            tracing::info!(partition, "exported and detached");
            out.detached.push(partition);
        }
    }
    Ok(out)
}

/// One file per region of `table`'s `month`.
async fn export_month(
    client: &Client,
    table: &str,
    month: Month,
    dir: &Path,
) -> Result<Vec<Written>, ExportError> {
    let partition = month.partition_of(table);
    let regions: Vec<i64> = client
        .query(
            &format!("SELECT DISTINCT geo_region_id FROM {partition} ORDER BY 1"),
            &[],
        )
        .await
        .map_err(DbError::from)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let folder = dir.join(table).join(month.label());
    std::fs::create_dir_all(&folder).map_err(|source| ExportError::Io {
        path: folder.clone(),
        source,
    })?;
    let mut written = Vec::with_capacity(regions.len());
    for region in regions {
        let path = folder.join(format!("region-{}.parquet", region as u64));
        written.push(export_region(client, table, &partition, region, &path).await?);
    }
    Ok(written)
}

/// Streams one region's rows of `partition` (one shard under Citus) into
/// `path`, through a temporary file renamed once complete, synced and read
/// back.
async fn export_region(
    client: &Client,
    table: &str,
    partition: &str,
    region: i64,
    path: &Path,
) -> Result<Written, ExportError> {
    if path.exists() {
        return Err(ExportError::Exists { path: path.into() });
    }
    let (columns, order) = spec(table);
    let schema = schema(columns);
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    let sql = format!(
        "SELECT {} FROM {partition} WHERE geo_region_id = $1 ORDER BY {order}",
        names.join(", ")
    );
    let tmp = path.with_extension("parquet.tmp");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Io { path, source }
    };
    let pq = |source| ExportError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(&tmp).map_err(io(&tmp))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
        .build();
    let mut writer = ArrowWriter::try_new(&file, schema.clone(), Some(props)).map_err(pq)?;
    let stream = client
        .query_raw(sql.as_str(), [region])
        .await
        .map_err(DbError::from)?;
    futures::pin_mut!(stream);
    let mut rows: Vec<Row> = Vec::with_capacity(ROWS_PER_GROUP);
    let mut total = 0u64;
    while let Some(row) = stream.try_next().await.map_err(DbError::from)? {
        rows.push(row);
        if rows.len() == ROWS_PER_GROUP {
            total += write_rows(&mut writer, columns, &schema, &mut rows).map_err(pq)?;
        }
    }
    total += write_rows(&mut writer, columns, &schema, &mut rows).map_err(pq)?;
    writer.close().map_err(pq)?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io(parent))?;
    }
    let read = rows_in(path).map_err(pq)?;
    if read != total {
        return Err(ExportError::Mismatch {
            path: path.into(),
            written: total,
            read,
        });
    }
    Ok(Written {
        path: path.into(),
        rows: total,
    })
}

fn write_rows(
    writer: &mut ArrowWriter<&File>,
    columns: &[Column],
    schema: &SchemaRef,
    rows: &mut Vec<Row>,
) -> Result<u64, parquet::errors::ParquetError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let b = batch(columns, schema, rows).map_err(parquet::errors::ParquetError::General)?;
    writer.write(&b)?;
    let n = rows.len() as u64;
    rows.clear();
    Ok(n)
}

/// The row count a Parquet file's footer states.
pub fn rows_in(path: &Path) -> Result<u64, parquet::errors::ParquetError> {
    use parquet::file::reader::FileReader;
    let file =
        File::open(path).map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
    let reader = parquet::file::reader::SerializedFileReader::new(file)?;
    Ok(reader.metadata().file_metadata().num_rows().max(0) as u64)
}
