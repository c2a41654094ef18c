//! A validated geographic point and great-circle distance.

use core::fmt;

use serde::{Deserialize, Serialize};

/// Mean Earth radius used for every distance in the system.
pub const EARTH_RADIUS_KM: f64 = 6_371.008_8;

/// A point on Earth in WGS84 degrees. Always finite, `lat` in [-90, 90] and
/// `lon` in [-180, 180]: the only way to build one is through validation.
#[derive(Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawPoint", into = "RawPoint")]
pub struct GeoPoint {
    lat: f64,
    lon: f64,
}

#[derive(Serialize, Deserialize)]
struct RawPoint {
    lat: f64,
    lon: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GeoError {
    #[error("latitude must be a finite number between -90 and 90")]
    Latitude,
    #[error("longitude must be a finite number between -180 and 180")]
    Longitude,
}

impl GeoPoint {
    pub fn new(lat: f64, lon: f64) -> Result<GeoPoint, GeoError> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(GeoError::Latitude);
        }
        if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
            return Err(GeoError::Longitude);
        }
        Ok(GeoPoint { lat, lon })
    }

    pub const fn lat(&self) -> f64 {
        self.lat
    }

    pub const fn lon(&self) -> f64 {
        self.lon
    }

    /// Great-circle distance by the haversine formula.
    pub fn haversine_km(&self, other: &GeoPoint) -> f64 {
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.lon - self.lon).to_radians();
        let s_lat = libm::sin(dlat / 2.0);
        let s_lon = libm::sin(dlon / 2.0);
        let a = s_lat * s_lat + libm::cos(lat1) * libm::cos(lat2) * s_lon * s_lon;
        2.0 * EARTH_RADIUS_KM * libm::asin(libm::sqrt(a.clamp(0.0, 1.0)))
    }

    /// The point as a unit vector on the sphere. Euclidean distance between
    /// unit vectors is monotonic in great-circle distance, so a 3-D R-tree over
    /// them answers "nearest on Earth" exactly, poles and antimeridian included.
    pub fn unit_vector(&self) -> [f64; 3] {
        let (lat, lon) = (self.lat.to_radians(), self.lon.to_radians());
        let c = libm::cos(lat);
        [c * libm::cos(lon), c * libm::sin(lon), libm::sin(lat)]
    }
}

/// Great-circle distance from the squared chord between two unit vectors
/// (what a 3-D R-tree query yields): exact on the sphere, like haversine,
/// with one square root and one arcsine.
pub fn km_from_chord_squared(chord_squared: f64) -> f64 {
    let half_chord = (libm::sqrt(chord_squared.max(0.0)) / 2.0).min(1.0);
    2.0 * EARTH_RADIUS_KM * libm::asin(half_chord)
}

/// The squared chord length between two unit vectors `distance_km` apart on
/// the surface: the R-tree radius for "within `distance_km`".
pub fn chord_squared_for_km(distance_km: f64) -> f64 {
    let angle = (distance_km / EARTH_RADIUS_KM).min(core::f64::consts::PI);
    let chord = 2.0 * libm::sin(angle / 2.0);
    chord * chord
}

impl TryFrom<RawPoint> for GeoPoint {
    type Error = GeoError;
    fn try_from(r: RawPoint) -> Result<Self, GeoError> {
        GeoPoint::new(r.lat, r.lon)
    }
}

impl From<GeoPoint> for RawPoint {
    fn from(p: GeoPoint) -> RawPoint {
        RawPoint {
            lat: p.lat,
            lon: p.lon,
        }
    }
}

impl fmt::Debug for GeoPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:.6}, {:.6})", self.lat, self.lon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_out_of_range_and_non_finite() {
        let table = [
            (91.0, 0.0, GeoError::Latitude),
            (-90.5, 0.0, GeoError::Latitude),
            (f64::NAN, 0.0, GeoError::Latitude),
            (f64::INFINITY, 0.0, GeoError::Latitude),
            (0.0, 180.1, GeoError::Longitude),
            (0.0, f64::NEG_INFINITY, GeoError::Longitude),
            (0.0, f64::NAN, GeoError::Longitude),
        ];
        for (lat, lon, err) in table {
            assert_eq!(GeoPoint::new(lat, lon), Err(err), "({lat}, {lon})");
        }
        assert!(GeoPoint::new(90.0, -180.0).is_ok());
    }

    #[test]
    fn haversine_matches_a_known_distance() {
        // Monas (Jakarta) to Bogor Botanical Gardens: about 47 km.
        let monas = GeoPoint::new(-6.1754, 106.8272).expect("valid");
        let bogor = GeoPoint::new(-6.5976, 106.7996).expect("valid");
        let d = monas.haversine_km(&bogor);
        assert!((d - 47.0).abs() < 3.5, "{d}");
        assert_eq!(monas.haversine_km(&monas), 0.0);
    }

    #[test]
    fn chord_radius_agrees_with_haversine() {
        let a = GeoPoint::new(-6.2, 106.8).expect("valid");
        let b = GeoPoint::new(-6.3, 106.85).expect("valid");
        let (va, vb) = (a.unit_vector(), b.unit_vector());
        let d2: f64 = (0..3).map(|i| (va[i] - vb[i]).powi(2)).sum();
        let km = a.haversine_km(&b);
        assert!(d2 <= chord_squared_for_km(km + 0.001));
        assert!(d2 >= chord_squared_for_km(km - 0.001));
        assert!((km_from_chord_squared(d2) - km).abs() < 1e-6);
    }

    #[test]
    fn deserialising_validates() {
        let bad: Result<GeoPoint, _> = postcard::from_bytes(
            &postcard::to_allocvec(&RawPoint {
                lat: 200.0,
                lon: 0.0,
            })
            .expect("encodes"),
        );
        assert!(bad.is_err());
    }
}
