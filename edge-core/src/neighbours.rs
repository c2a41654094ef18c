//! Recipients of neighbouring cells, as the hub feeds them: which entries
//! change this edge's registry and which are repeats. I/O-free: the shell
//! writes the rows the returned [`Imported`] names.
//!
//! Rules: an entry this edge owns is its own (it is never imported back); an
//! erased entry makes the edge forget a recipient it knows (its pending
//! offers are declined, so the food is rematched); an entry identical to what
//! is known (same recipient, same cell) is a repeat and skipped; anything
//! else is imported or updated, until the registry is full.

use sync_protocol::session::RegistryEntry;
use sync_protocol::{EdgeId, Recipient, RecipientId, SealedContact, Timestamp};

use crate::engine::Engine;

/// One change to the registry, for the shell to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new or changed neighbour, placed in `cell`, owned by `owner`.
    Upserted {
        recipient: Recipient,
        cell: u64,
        owner: EdgeId,
    },
    /// A neighbour its owner erased, forgotten here.
    Forgotten(RecipientId),
}

/// What one slice of the feed changed, in order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Imported {
    pub changes: Vec<Change>,
    /// The registry filled up: the rest of the slice was not imported.
    pub registry_full: bool,
}

impl Imported {
    /// Entries that changed the registry.
    pub fn changed(&self) -> usize {
        self.changes.len()
    }

    /// Whether a recipient was forgotten (its offers were declined: the
    /// engine has events to write).
    pub fn forgot_any(&self) -> bool {
        self.changes
            .iter()
            .any(|c| matches!(c, Change::Forgotten(_)))
    }
}

/// Applies one slice of the hub's registry feed to the engine, in order (a
/// repeat within the slice is a repeat too).
pub fn import(
    engine: &mut Engine,
    now: Timestamp,
    own: &EdgeId,
    entries: Vec<RegistryEntry>,
) -> Imported {
    let mut out = Imported::default();
    for e in entries {
        if e.owner == *own {
            continue;
        }
        if e.erased {
            if engine.forget_recipient(now, &e.id) {
                out.changes.push(Change::Forgotten(e.id));
            }
            continue;
        }
        let (cell, owner) = (e.cell, e.owner.clone());
        let r = recipient_of(e);
        let known = engine
            .recipients()
            .get(&r.id)
            .is_some_and(|x| x.recipient == r && x.cell == cell);
        if known {
            continue;
        }
        if engine.import_recipient(r.clone(), cell).is_err() {
            out.registry_full = true;
            break;
        }
        out.changes.push(Change::Upserted {
            recipient: r,
            cell,
            owner,
        });
    }
    out
}

/// A neighbour's recipient as this edge holds it: no contact data (that
/// stays with its owner).
fn recipient_of(e: RegistryEntry) -> Recipient {
    Recipient {
        id: e.id,
        name: e.name,
        location: e.location,
        capacity_per_day: e.capacity_per_day,
        accepted_food_types: e.accepted_food_types,
        is_fallback: e.is_fallback,
        contact: SealedContact::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use sync_protocol::{FoodTypeSet, GeoPoint, Mass};

    const T0: Timestamp = Timestamp::from_unix_ms(1_795_539_600_000);

    fn edge(name: &str) -> EdgeId {
        EdgeId::new(name).expect("a valid edge id")
    }

    fn entry(n: u8, owner: &str) -> RegistryEntry {
        RegistryEntry {
            id: RecipientId::from_bytes([n; 16]),
            owner: edge(owner),
            cell: 7,
            name: format!("r{n}"),
            location: GeoPoint::new(-6.2, 106.8).expect("valid"),
            capacity_per_day: Mass::from_grams(10_000),
            accepted_food_types: FoodTypeSet::all(),
            is_fallback: false,
            erased: false,
        }
    }

    fn erased(n: u8, owner: &str) -> RegistryEntry {
        RegistryEntry {
            erased: true,
            name: String::new(),
            ..entry(n, owner)
        }
    }

    /// The first id byte of each upserted recipient.
    fn upserted(out: &Imported) -> Vec<u8> {
        out.changes
            .iter()
            .filter_map(|c| match c {
                Change::Upserted { recipient, .. } => Some(recipient.id.as_bytes()[0]),
                Change::Forgotten(_) => None,
            })
            .collect()
    }

    #[test]
    fn own_entries_and_repeats_are_skipped_changes_are_imported() {
        let me = edge("jakarta-1");
        let mut e = Engine::new(EngineConfig::default());
        let first = import(
            &mut e,
            T0,
            &me,
            vec![
                entry(1, "bogor-1"),
                entry(2, "jakarta-1"),
                entry(1, "bogor-1"),
            ],
        );
        assert_eq!(
            upserted(&first),
            [1],
            "own entry and in-slice repeat skipped"
        );
        let Change::Upserted {
            recipient,
            owner,
            cell,
        } = &first.changes[0]
        else {
            panic!("{first:?}");
        };
        assert_eq!((owner, *cell), (&edge("bogor-1"), 7));
        assert!(recipient.contact.is_empty(), "no contact data");
        // The same entry again (the feed's overlap window): a repeat.
        assert_eq!(
            import(&mut e, T0, &me, vec![entry(1, "bogor-1")]).changed(),
            0
        );
        // A changed entry (it moved cell, or its capacity changed) is news.
        let mut moved = entry(1, "bogor-1");
        moved.cell = 8;
        let mut bigger = entry(1, "bogor-1");
        bigger.capacity_per_day = Mass::from_grams(20_000);
        for changed in [moved, bigger] {
            let out = import(&mut e, T0, &me, vec![changed.clone()]);
            assert_eq!(upserted(&out), [1], "{changed:?}");
        }
        assert_eq!(
            e.recipients()
                .get(&RecipientId::from_bytes([1; 16]))
                .map(|x| x.cell),
            Some(7)
        );
        assert_eq!(e.recipients().len(), 1);
    }

    #[test]
    fn an_erased_neighbour_is_forgotten_once_and_an_unknown_one_ignored() {
        let me = edge("jakarta-1");
        let mut e = Engine::new(EngineConfig::default());
        import(&mut e, T0, &me, vec![entry(1, "bogor-1")]);
        let out = import(
            &mut e,
            T0,
            &me,
            vec![erased(1, "bogor-1"), erased(3, "bogor-1")],
        );
        assert_eq!(
            out.changes,
            [Change::Forgotten(RecipientId::from_bytes([1; 16]))],
            "the unknown one is ignored"
        );
        assert!(out.forgot_any());
        let again = import(&mut e, T0, &me, vec![erased(1, "bogor-1")]);
        assert_eq!(again.changed(), 0, "forgotten once");
    }

    #[test]
    fn a_full_registry_stops_the_slice() {
        let me = edge("jakarta-1");
        let mut e = Engine::new(EngineConfig {
            max_recipients: 2,
            ..EngineConfig::default()
        });
        let out = import(
            &mut e,
            T0,
            &me,
            vec![
                entry(1, "bogor-1"),
                entry(2, "bogor-1"),
                entry(3, "bogor-1"),
                entry(4, "bogor-1"),
            ],
        );
        assert_eq!(upserted(&out), [1, 2]);
        assert!(out.registry_full);
        // An update of a known one still fits.
        let mut changed = entry(2, "bogor-1");
        changed.name = "renamed".into();
        let out = import(&mut e, T0, &me, vec![changed]);
        assert_eq!((upserted(&out), out.registry_full), (vec![2], false));
    }
}
