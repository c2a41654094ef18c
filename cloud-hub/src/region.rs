//! `geo_region_id`: the distribution key of region-scoped tables — the S2
//! parent of a row's cell at a coarse level, so a city's rows share a shard.

use s2::cellid::CellID;
use s2::latlng::LatLng;
use sync_protocol::GeoPoint;

/// Level-4 S2 cells are ~600 km across: one region holds a metropolitan area.
pub const REGION_LEVEL: u64 = 4;

/// Whether `cell` is a valid S2 cell id. `CellID::is_valid` negates the id
/// as an `i64`, which overflows (a panic where overflow checks are on) for
/// `1 << 63` — no valid cell — so that one is refused first.
pub fn valid_cell(cell: u64) -> bool {
    cell != 1 << 63 && CellID(cell).is_valid()
}

/// The region of a cell (0, "no cell", maps to region 0).
pub fn region_of(cell: u64) -> i64 {
    let id = CellID(cell);
    if cell == 0 || !valid_cell(cell) || id.level() < REGION_LEVEL {
        return 0;
    }
    id.parent(REGION_LEVEL).0 as i64
}

/// Whether `cell` (any level) is a valid cell that contains `at`: the hub
/// checks the cells edges ship against the locations in the events rather
/// than trusting them.
pub fn located(cell: u64, at: &GeoPoint) -> bool {
    let id = CellID(cell);
    valid_cell(cell)
        && CellID::from(LatLng::from_degrees(at.lat(), at.lon())).parent(id.level()) == id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_whose_negation_overflows_is_no_cell_and_no_panic() {
        assert!(!valid_cell(1 << 63));
        assert_eq!(region_of(1 << 63), 0);
        assert!(!located(
            1 << 63,
            &GeoPoint::new(-6.2, 106.8).expect("a point")
        ));
        assert!(valid_cell(
            CellID::from(LatLng::from_degrees(-6.2, 106.8)).0
        ));
    }

    fn cell(lat: f64, lon: f64) -> u64 {
        CellID::from(LatLng::from_degrees(lat, lon)).parent(9).0
    }

    #[test]
    fn a_city_is_one_region_and_far_cities_are_not() {
        let jakarta = region_of(cell(-6.2, 106.8));
        assert_eq!(jakarta, region_of(cell(-6.3, 106.9)));
        assert_ne!(jakarta, region_of(cell(52.5, 13.4)));
        assert_eq!(region_of(0), 0);
        assert_eq!(region_of(u64::MAX), 0);
    }

    #[test]
    fn a_cell_contains_its_points_and_not_others() {
        let monas = GeoPoint::new(-6.1754, 106.8272).unwrap();
        let berlin = GeoPoint::new(52.52, 13.405).unwrap();
        let c = cell(-6.1754, 106.8272);
        assert!(located(c, &monas));
        assert!(located(CellID(c).parent(4).0, &monas), "any level");
        assert!(!located(c, &berlin));
        assert!(!located(0, &monas));
        assert!(!located(u64::MAX, &monas));
    }
}
