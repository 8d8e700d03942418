//! The target assignment of units to live instances: deterministic (every instance computes the
//! same target from the same snapshot) and balanced (no instance above `ceil(units/instances)`,
//! its share plus less than one).

use std::collections::{BTreeMap, HashMap};

use super::Unit;

/// The category label of a unit (`private` for the private stream), for grouping.
fn group(unit: &Unit) -> &'static str {
    match unit {
        Unit::Private => "private",
        Unit::Topic(k) => k.endpoint.label(),
    }
}

/// Assigns every unit of `units` to one of `instances`.
///
/// A unit stays with its `current` owner while that owner is live and under the cap (so a
/// stable cluster moves nothing); the others go, in unit order, to the instance under the cap
/// that already has units of the same category (public topics of one category share
/// connections), else to the least loaded one, ties broken by id.
pub fn assign(
    instances: &[String],
    units: &[Unit],
    current: &HashMap<Unit, String>,
) -> BTreeMap<Unit, String> {
    let mut ids: Vec<&String> = instances.iter().collect();
    ids.sort();
    ids.dedup();
    let mut units: Vec<&Unit> = units.iter().collect();
    units.sort();
    units.dedup();
    let mut out = BTreeMap::new();
    if ids.is_empty() {
        return out;
    }
    let cap = units.len().div_ceil(ids.len());
    let mut load: BTreeMap<&String, usize> = ids.iter().map(|i| (*i, 0)).collect();
    let mut groups: BTreeMap<(&String, &'static str), usize> = BTreeMap::new();
    let mut rest = Vec::new();
    for unit in units {
        match current.get(unit).and_then(|o| load.get_key_value(o)) {
            Some((owner, n)) if *n < cap => {
                let owner: &String = owner;
                *load.entry(owner).or_default() += 1;
                *groups.entry((owner, group(unit))).or_default() += 1;
                out.insert(unit.clone(), owner.clone());
            }
            _ => rest.push(unit),
        }
    }
    for unit in rest {
        let g = group(unit);
        let pick = ids
            .iter()
            .filter(|i| load[*i] < cap)
            .min_by_key(|i| {
                let same = groups.get(&(**i, g)).copied().unwrap_or(0);
                (same == 0, load[*i], **i)
            })
            .copied();
        let Some(owner) = pick else { continue };
        *load.entry(owner).or_default() += 1;
        *groups.entry((owner, g)).or_default() += 1;
        out.insert(unit.clone(), owner.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Category, Endpoint},
        subscriptions::TopicKey,
    };

    fn topics(n: usize) -> Vec<Unit> {
        (0..n)
            .map(|i| {
                let c = Category::ALL[i % 2];
                Unit::Topic(TopicKey::new(
                    Endpoint::Public(c),
                    format!("publicTrade.S{i}"),
                ))
            })
            .chain([Unit::Private])
            .collect()
    }

    #[test]
    fn balanced_deterministic_and_sticky() {
        let ids: Vec<String> = ["c", "a", "b"].map(String::from).to_vec();
        let units = topics(60);
        let a = assign(&ids, &units, &HashMap::new());
        assert_eq!(a.len(), 61);
        let mut rev = ids.clone();
        rev.reverse();
        assert_eq!(a, assign(&rev, &units, &HashMap::new()));
        let mut load: HashMap<&String, usize> = HashMap::new();
        for o in a.values() {
            *load.entry(o).or_default() += 1;
        }
        assert!(load.values().all(|n| *n <= 21), "{load:?}");
        // Stable: the same snapshot with its own result as the current owners moves nothing.
        let current: HashMap<Unit, String> = a.clone().into_iter().collect();
        assert_eq!(a, assign(&ids, &units, &current));
        // A fourth instance: each keeps at most the new cap (16), the newcomer gets the rest.
        let four: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let b = assign(&four, &units, &current);
        let moved = b.iter().filter(|(u, o)| a[*u] != **o).count();
        assert!(b.values().filter(|o| *o == "d").count() == moved);
        let mut load: HashMap<&String, usize> = HashMap::new();
        for o in b.values() {
            *load.entry(o).or_default() += 1;
        }
        assert!(load.values().all(|n| *n <= 16), "{load:?}");
        assert!(assign(&[], &units, &current).is_empty());
    }
}
