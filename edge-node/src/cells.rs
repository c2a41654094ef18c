//! S2 cells: which cells this edge owns, and which cell a point lies in.
//! A request about a point outside the owned cells is misdirected (HTTP 421).

use std::collections::BTreeSet;

use s2::cellid::CellID;
use s2::latlng::LatLng;
use s2::rect::Rect;
use s2::region::RegionCoverer;
use sync_protocol::GeoPoint;

/// The deepest level accepted for ownership (level-16 cells are ~150 m
/// across; finer ownership makes no sense for a city edge, and covering a
/// city at deeper levels takes the coverer seconds).
pub const MAX_LEVEL: u8 = 16;
/// A covering larger than this is a configuration mistake.
pub const MAX_OWNED_CELLS: usize = 10_000;

/// Greater Jakarta (Jabodetabek): lat_lo, lon_lo, lat_hi, lon_hi.
pub const GREATER_JAKARTA: [f64; 4] = [-6.75, 106.35, -5.95, 107.25];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CellError {
    #[error("cell level {0} is out of range (0..={MAX_LEVEL})")]
    Level(u8),
    #[error("{0:?} is not a valid S2 cell token")]
    Token(String),
    #[error("cell {token} is at level {actual}, but the edge owns cells at level {expected}")]
    WrongLevel {
        token: String,
        actual: u64,
        expected: u8,
    },
    #[error("the bounding box is invalid: {0}")]
    BoundingBox(String),
    #[error("the edge must own between 1 and {MAX_OWNED_CELLS} cells, not {0}")]
    Count(usize),
}

/// The cells an edge owns, all at one level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellSet {
    level: u8,
    cells: BTreeSet<u64>,
}

impl CellSet {
    pub fn from_tokens(level: u8, tokens: &[String]) -> Result<CellSet, CellError> {
        check_level(level)?;
        let mut cells = BTreeSet::new();
        for t in tokens {
            let valid_chars =
                !t.is_empty() && t.len() <= 16 && t.bytes().all(|b| b.is_ascii_hexdigit());
            let id = CellID::from_token(t);
            // `is_valid` negates the id as an i64: `1 << 63` (token "8", no
            // cell) would overflow, so it is refused before.
            if !valid_chars || id.0 == 1 << 63 || !id.is_valid() {
                return Err(CellError::Token(t.clone()));
            }
            if id.level() != u64::from(level) {
                return Err(CellError::WrongLevel {
                    token: t.clone(),
                    actual: id.level(),
                    expected: level,
                });
            }
            cells.insert(id.0);
        }
        CellSet::checked(level, cells)
    }

    /// The level-`level` cells covering a lat/lon box.
    pub fn covering(level: u8, bbox: [f64; 4]) -> Result<CellSet, CellError> {
        check_level(level)?;
        let [lat_lo, lon_lo, lat_hi, lon_hi] = bbox;
        let lo =
            GeoPoint::new(lat_lo, lon_lo).map_err(|e| CellError::BoundingBox(e.to_string()))?;
        let hi =
            GeoPoint::new(lat_hi, lon_hi).map_err(|e| CellError::BoundingBox(e.to_string()))?;
        if lo.lat() > hi.lat() || lo.lon() > hi.lon() {
            return Err(CellError::BoundingBox(
                "lower corner above or east of the upper corner".into(),
            ));
        }
        let coverer = RegionCoverer {
            min_level: level,
            max_level: level,
            level_mod: 1,
            max_cells: MAX_OWNED_CELLS,
        };
        let rect = Rect::from_degrees(lo.lat(), lo.lon(), hi.lat(), hi.lon());
        let union = coverer.covering(&rect);
        // The coverer may merge four children into their parent; count what
        // expanding would produce before doing it.
        let expanded: u64 = union
            .0
            .iter()
            .map(|id| 1u64 << (2 * (u64::from(level).saturating_sub(id.level())).min(31)))
            .sum();
        if expanded > MAX_OWNED_CELLS as u64 {
            return Err(CellError::Count(
                usize::try_from(expanded).unwrap_or(usize::MAX),
            ));
        }
        let mut cells = BTreeSet::new();
        for id in union.0 {
            if id.level() == u64::from(level) {
                cells.insert(id.0);
            } else {
                let mut c = id.child_begin_at_level(u64::from(level));
                let end = id.child_end_at_level(u64::from(level));
                while c != end {
                    cells.insert(c.0);
                    c = c.next();
                }
            }
        }
        CellSet::checked(level, cells)
    }

    fn checked(level: u8, cells: BTreeSet<u64>) -> Result<CellSet, CellError> {
        if cells.is_empty() || cells.len() > MAX_OWNED_CELLS {
            return Err(CellError::Count(cells.len()));
        }
        Ok(CellSet { level, cells })
    }

    pub fn level(&self) -> u8 {
        self.level
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.cells.iter().copied()
    }

    /// The cell (at the ownership level) containing `p`.
    pub fn cell_of(&self, p: &GeoPoint) -> u64 {
        cell_at(self.level, p)
    }

    /// The owned cell containing `p`, or the foreign cell it lies in.
    pub fn owner_cell(&self, p: &GeoPoint) -> Result<u64, u64> {
        let c = self.cell_of(p);
        if self.cells.contains(&c) {
            Ok(c)
        } else {
            Err(c)
        }
    }
}

/// The level-`level` cell containing `p`.
pub fn cell_at(level: u8, p: &GeoPoint) -> u64 {
    CellID::from(LatLng::from_degrees(p.lat(), p.lon()))
        .parent(u64::from(level))
        .0
}

/// The centre of a cell.
pub fn center(cell: u64) -> Option<GeoPoint> {
    let ll = LatLng::from(CellID(cell));
    GeoPoint::new(ll.lat.deg(), ll.lng.deg()).ok()
}

/// The token of a cell id, as used in JSON and configuration.
pub fn token(cell: u64) -> String {
    CellID(cell).to_token()
}

fn check_level(level: u8) -> Result<(), CellError> {
    if level > MAX_LEVEL {
        return Err(CellError::Level(level));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lat: f64, lon: f64) -> GeoPoint {
        GeoPoint::new(lat, lon).expect("valid")
    }

    #[test]
    fn greater_jakarta_covers_jakarta_but_not_bandung() {
        let cells = CellSet::covering(9, GREATER_JAKARTA).expect("covers");
        assert!(cells.len() > 4 && cells.len() < 200, "{}", cells.len());
        for (lat, lon) in [
            (-6.1754, 106.8272),
            (-6.5976, 106.7996),
            (-6.2383, 106.9756),
            (-6.1783, 106.6319),
        ] {
            assert!(cells.owner_cell(&p(lat, lon)).is_ok(), "({lat}, {lon})");
        }
        let bandung = cells.owner_cell(&p(-6.9175, 107.6191));
        assert!(bandung.is_err());
    }

    #[test]
    fn tokens_round_trip_and_bad_tokens_are_refused() {
        let cells = CellSet::covering(9, GREATER_JAKARTA).expect("covers");
        let tokens: Vec<String> = cells.iter().map(token).collect();
        assert_eq!(CellSet::from_tokens(9, &tokens), Ok(cells.clone()));
        assert!(matches!(
            CellSet::from_tokens(10, &tokens),
            Err(CellError::WrongLevel { .. })
        ));
        for bad in ["", "zz", "X", "0123456789abcdef0", "8"] {
            assert!(
                matches!(
                    CellSet::from_tokens(9, &[bad.to_string()]),
                    Err(CellError::Token(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(CellSet::from_tokens(17, &tokens), Err(CellError::Level(17)));
        assert_eq!(CellSet::from_tokens(9, &[]), Err(CellError::Count(0)));
    }

    #[test]
    fn bad_boxes_are_refused() {
        assert!(CellSet::covering(9, [-5.0, 106.0, -6.0, 107.0]).is_err());
        assert!(CellSet::covering(9, [f64::NAN, 106.0, -6.0, 107.0]).is_err());
        assert!(
            matches!(CellSet::covering(14, GREATER_JAKARTA), Err(CellError::Count(n)) if n > MAX_OWNED_CELLS)
        );
    }
}
