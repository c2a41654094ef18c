//! Where the matchable recipients are, for asking a routing service about
//! the ones a match will consider before the writer matches. Rebuilt from
//! what the writer committed after a group that changed recipients (only
//! when a routing service is configured).

use rstar::RTree;
use rstar::primitives::GeomWithData;
use sync_protocol::geo::chord_squared_for_km;
use sync_protocol::{FoodType, FoodTypeSet, GeoPoint, RecipientId};

use super::{Source, TravelTimes};
use crate::commands::NewSurplus;
use edge_core::matching::{MatchParams, TravelHints};

#[derive(Debug, Default)]
pub struct RecipientDirectory {
    tree: RTree<GeomWithData<[f64; 3], (RecipientId, GeoPoint, FoodTypeSet)>>,
}

impl RecipientDirectory {
    pub fn new(
        entries: impl IntoIterator<Item = (RecipientId, GeoPoint, FoodTypeSet)>,
    ) -> RecipientDirectory {
        RecipientDirectory {
            tree: RTree::bulk_load(
                entries
                    .into_iter()
                    .map(|(id, p, f)| GeomWithData::new(p.unit_vector(), (id, p, f)))
                    .collect(),
            ),
        }
    }

    /// Up to `limit` recipients taking `food` within `radius_km`, nearest first.
    pub fn nearest(
        &self,
        point: &GeoPoint,
        radius_km: f64,
        food: FoodType,
        limit: usize,
    ) -> Vec<(RecipientId, GeoPoint)> {
        let max = chord_squared_for_km(radius_km);
        self.tree
            .nearest_neighbor_iter_with_distance_2(&point.unit_vector())
            .take_while(|(_, d2)| *d2 <= max)
            .filter(|(n, _)| n.data.2.contains(food))
            .take(limit)
            .map(|(n, _)| (n.data.0, n.data.1))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.tree.size()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.size() == 0
    }
}

/// Routed travel times from a new surplus to the recipients its match will
/// consider (twice as many as it keeps), or `None` when the service did not
/// answer (matching then estimates from the distance). Never fails; waits
/// at most the routing deadline.
pub async fn hints(
    travel: &TravelTimes,
    directory: &RecipientDirectory,
    params: &MatchParams,
    new: &NewSurplus,
) -> Option<TravelHints> {
    let near = directory.nearest(
        &new.location,
        params.radius_km,
        new.food_type,
        params.max_feasible.max(1) * 2,
    );
    if near.is_empty() {
        return None;
    }
    let points: Vec<GeoPoint> = near.iter().map(|(_, p)| *p).collect();
    let estimate = travel
        .travel_times(new.location, &points, params.speed_kmh)
        .await;
    (estimate.source == Source::Osrm).then(|| {
        TravelHints::new(
            near.iter()
                .map(|(id, _)| *id)
                .zip(estimate.durations)
                .collect(),
        )
    })
}
