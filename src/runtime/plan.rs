//! What a reload changes in the target set: which running targets are kept (the same object),
//! which are made anew and which go, and which probe threads' schedules must hear of it.
//!
//! The cost is one pointer comparison per target when the config's specs are the ones already
//! running (file_sd files that did not change hand back the same `Arc`s), and one hash lookup
//! plus one spec comparison per target otherwise: never a scan of the old set per target.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::TargetSpec;

/// A running target as the plan sees it.
pub(super) trait Planned {
    /// Its spec.
    fn spec(&self) -> &Arc<TargetSpec>;
    /// The probe thread it runs on.
    fn lane(&self) -> usize;
}

/// The next target set and what changed.
pub(super) struct Plan<T> {
    /// The targets in the config's order.
    pub next: Arc<Vec<Arc<T>>>,
    /// Running targets carried over.
    pub kept: usize,
    /// Targets made anew.
    pub added: usize,
    /// Running targets that are gone (or replaced by a changed probe).
    pub removed: Vec<Arc<T>>,
    /// Per lane: whether a target came or went there, so its schedule must be replaced.
    pub lanes_changed: Vec<bool>,
}

/// Plans the target set `specs` (a config's targets, or the share of them this cluster member
/// owns) against the running `old` set; `make` builds a target whose probe is new or changed.
pub(super) fn plan_targets<T: Planned>(
    old: &Arc<Vec<Arc<T>>>,
    specs: &[Arc<TargetSpec>],
    lanes: usize,
    mut make: impl FnMut(&Arc<TargetSpec>) -> Result<Arc<T>, String>,
) -> Result<Plan<T>, String> {
    // The common reload: the same specs, in the same order, as the running targets.
    if old.len() == specs.len() && old.iter().zip(specs).all(|(t, s)| Arc::ptr_eq(t.spec(), s)) {
        return Ok(Plan {
            next: old.clone(),
            kept: old.len(),
            added: 0,
            removed: Vec::new(),
            lanes_changed: vec![false; lanes],
        });
    }
    let mut by_name: HashMap<&str, (usize, bool)> = old
        .iter()
        .enumerate()
        .map(|(i, t)| (t.spec().name.as_str(), (i, false)))
        .collect();
    let mut lanes_changed = vec![false; lanes];
    let mut next = Vec::with_capacity(specs.len());
    let (mut kept, mut added) = (0, 0);
    for spec in specs {
        let found = by_name.get_mut(spec.name.as_str());
        let reuse = found.and_then(|(i, used)| {
            let t = &old[*i];
            let same = Arc::ptr_eq(t.spec(), spec) || t.spec().same_probe(spec);
            same.then(|| {
                *used = true;
                t.clone()
            })
        });
        match reuse {
            Some(t) => {
                kept += 1;
                next.push(t);
            }
            None => {
                added += 1;
                let t = make(spec)?;
                mark(&mut lanes_changed, t.lane());
                next.push(t);
            }
        }
    }
    let mut removed = Vec::new();
    for (i, used) in by_name.into_values() {
        if !used {
            mark(&mut lanes_changed, old[i].lane());
            removed.push(old[i].clone());
        }
    }
    Ok(Plan {
        next: Arc::new(next),
        kept,
        added,
        removed,
        lanes_changed,
    })
}

/// Puts the spec of each target of `next` (the plan of `specs`, in their order) in place of
/// the equal one in `specs`: the config then holds the running specs, and the copies an inline
/// config read again made are freed at once instead of living beside them until the next load.
pub(super) fn share_specs<T: Planned>(specs: &mut [Arc<TargetSpec>], next: &[Arc<T>]) {
    if specs.len() != next.len() {
        return;
    }
    for (s, t) in specs.iter_mut().zip(next) {
        if !Arc::ptr_eq(s, t.spec()) {
            *s = t.spec().clone();
        }
    }
}

fn mark(lanes: &mut [bool], lane: usize) {
    if let Some(l) = lanes.get_mut(lane) {
        *l = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T {
        spec: Arc<TargetSpec>,
        lane: usize,
    }

    impl Planned for T {
        fn spec(&self) -> &Arc<TargetSpec> {
            &self.spec
        }
        fn lane(&self) -> usize {
            self.lane
        }
    }

    fn spec(name: &str, url: &str) -> Arc<TargetSpec> {
        Arc::new(TargetSpec::new(name, url).unwrap())
    }

    fn config(specs: &[Arc<TargetSpec>]) -> &[Arc<TargetSpec>] {
        specs
    }

    fn make(spec: &Arc<TargetSpec>) -> Result<Arc<T>, String> {
        let lane = spec.name.len() % 2;
        Ok(Arc::new(T {
            spec: spec.clone(),
            lane,
        }))
    }

    fn running(specs: &[Arc<TargetSpec>]) -> Arc<Vec<Arc<T>>> {
        Arc::new(specs.iter().map(|s| make(s).unwrap()).collect())
    }

    #[test]
    fn the_same_specs_keep_the_same_set() {
        let specs: Vec<_> = (0..100)
            .map(|i| spec(&format!("t{i}"), "http://127.0.0.1:1/"))
            .collect();
        let old = running(&specs);
        let mut made = 0;
        let plan = plan_targets(&old, config(&specs), 2, |s| {
            made += 1;
            make(s)
        })
        .unwrap();
        assert!(
            Arc::ptr_eq(&plan.next, &old),
            "the running set itself is kept"
        );
        assert_eq!((plan.kept, plan.added, made), (100, 0, 0));
        assert!(plan.removed.is_empty());
        assert_eq!(plan.lanes_changed, vec![false, false]);
    }

    #[test]
    fn equal_specs_read_again_keep_the_targets() {
        let specs: Vec<_> = (0..50)
            .map(|i| spec(&format!("t{i}"), "http://127.0.0.1:1/"))
            .collect();
        let old = running(&specs);
        // Read again: equal values in new `Arc`s, in another order.
        let mut again: Vec<_> = specs.iter().map(|s| Arc::new((**s).clone())).collect();
        again.reverse();
        let plan = plan_targets(&old, config(&again), 2, make).unwrap();
        assert_eq!((plan.kept, plan.added), (50, 0));
        assert_eq!(plan.lanes_changed, vec![false, false]);
        for t in plan.next.iter() {
            let before = old.iter().find(|o| o.spec.name == t.spec.name).unwrap();
            assert!(Arc::ptr_eq(t, before));
        }
    }

    #[test]
    fn one_changed_target_touches_only_it_and_its_lane() {
        let specs: Vec<_> = (0..1000)
            .map(|i| spec(&format!("t{i:04}"), "http://127.0.0.1:1/"))
            .collect();
        let old = running(&specs);
        let mut changed = specs.clone();
        changed[500] = spec("t0500", "http://127.0.0.1:2/");
        let mut made = Vec::new();
        let plan = plan_targets(&old, config(&changed), 3, |s| {
            made.push(s.name.clone());
            make(s)
        })
        .unwrap();
        assert_eq!(made, vec!["t0500".to_string()]);
        assert_eq!((plan.kept, plan.added, plan.removed.len()), (999, 1, 1));
        assert_eq!(plan.removed[0].spec.name, "t0500");
        // "t0500" is 5 bytes long: lane 1 of 3.
        assert_eq!(plan.lanes_changed, vec![false, true, false]);
        for (i, t) in plan.next.iter().enumerate() {
            assert_eq!(Arc::ptr_eq(t, &old[i]), i != 500, "target {i}");
        }
    }

    #[test]
    fn the_config_is_left_holding_the_running_specs() {
        let specs: Vec<_> = (0..10)
            .map(|i| spec(&format!("t{i}"), "http://127.0.0.1:1/"))
            .collect();
        let old = running(&specs);
        // Read again: equal values in new `Arc`s, one of them changed.
        let mut again: Vec<_> = specs.iter().map(|s| Arc::new((**s).clone())).collect();
        again[3] = spec("t3", "http://127.0.0.1:2/");
        let plan = plan_targets(&old, config(&again), 2, make).unwrap();
        share_specs(&mut again, &plan.next);
        for (i, s) in again.iter().enumerate() {
            assert_eq!(Arc::ptr_eq(s, &specs[i]), i != 3, "spec {i}");
            assert!(
                Arc::ptr_eq(s, &plan.next[i].spec),
                "spec {i} is the running one"
            );
        }
    }

    #[test]
    fn removed_and_added_targets_are_counted() {
        let a = spec("a", "http://127.0.0.1:1/");
        let bb = spec("bb", "http://127.0.0.1:1/");
        let old = running(&[a.clone(), bb]);
        let ccc = spec("ccc", "http://127.0.0.1:1/");
        let plan = plan_targets(&old, config(&[a, ccc]), 2, make).unwrap();
        assert_eq!((plan.kept, plan.added, plan.removed.len()), (1, 1, 1));
        assert_eq!(plan.removed[0].spec.name, "bb");
        assert_eq!(plan.lanes_changed, vec![true, true]);
    }
}
