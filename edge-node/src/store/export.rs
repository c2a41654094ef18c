//! Everything the edge holds on one data subject (GDPR access): the
//! surplus a provider posted or a recipient claimed, the offers made to a
//! recipient, and the audit records of what the subject did or what was done
//! to its data.

use rusqlite::{Connection, params};
use sync_protocol::{Subject, Surplus, SurplusId};

use super::StoreError;
use super::rows::read_surplus_view;

/// One offer made to a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferRow {
    pub surplus_id: SurplusId,
    pub made_at_ms: i64,
    pub outcome: String,
    pub fallback: bool,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub at_ms: i64,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub resource: String,
    pub status: u16,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubjectRows {
    pub surplus: Vec<Surplus>,
    pub offers: Vec<OfferRow>,
    pub audit: Vec<AuditRow>,
}

fn id16(v: Vec<u8>) -> Result<[u8; 16], StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt("id is not 16 bytes".into()))
}

pub fn subject_rows(conn: &Connection, subject: &Subject) -> Result<SubjectRows, StoreError> {
    let id = subject.id_bytes();
    let mut out = SubjectRows::default();
    let ids: Vec<Vec<u8>> = {
        let sql = match subject {
            Subject::Provider(_) => "SELECT id FROM surplus WHERE provider_id = ?1 ORDER BY id",
            Subject::Recipient(_) => "SELECT id FROM surplus WHERE claimed_by = ?1 ORDER BY id",
        };
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map([id], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for sid in ids {
        let sid = SurplusId::from_bytes(id16(sid)?);
        if let Some(view) = read_surplus_view(conn, &sid)? {
            out.surplus.push(view);
        }
    }
    if let Subject::Recipient(_) = subject {
        let mut stmt = conn.prepare(
            "SELECT surplus_id, made_at, outcome, fallback FROM offers
             WHERE recipient_id = ?1 ORDER BY made_at",
        )?;
        let mut rows = stmt.query([id])?;
        while let Some(row) = rows.next()? {
            out.offers.push(OfferRow {
                surplus_id: SurplusId::from_bytes(id16(row.get(0)?)?),
                made_at_ms: row.get(1)?,
                outcome: row.get(2)?,
                fallback: row.get(3)?,
            });
        }
    }
    let uuid = uuid::Uuid::from_bytes(*id).to_string();
    let resource = subject.to_string();
    let mut stmt = conn.prepare(
        "SELECT at, actor, role, action, resource, status, ip, user_agent FROM audit_log
         WHERE actor = ?1 OR resource = ?2 ORDER BY id",
    )?;
    let mut rows = stmt.query(params![uuid, resource])?;
    while let Some(row) = rows.next()? {
        out.audit.push(AuditRow {
            at_ms: row.get(0)?,
            actor: row.get(1)?,
            role: row.get(2)?,
            action: row.get(3)?,
            resource: row.get(4)?,
            status: row.get(5)?,
            ip: row.get(6)?,
            user_agent: row.get(7)?,
        });
    }
    Ok(out)
}
