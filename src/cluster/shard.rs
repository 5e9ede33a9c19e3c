//! Rendezvous (highest random weight) hashing: which live members own a target.
//!
//! Every member computes, for a target name and each member id, a weight from a stable keyed
//! 64-bit hash; the `r` members of highest weight own the target. Every member that sees the
//! same membership reaches the same answer with no coordination, and a join or a leave moves
//! only the targets it must: a leaving member's targets go to the next member in each of their
//! own rankings, a joining member takes exactly the targets it now ranks first for (about
//! `1/n` of them), and no other target changes owner.
//!
//! The hash is FNV-1a over the bytes, finished with MurmurHash3's 64-bit mixer and a fixed
//! key: the same on every machine, build and release (std's `DefaultHasher` promises neither),
//! which members of different versions must agree on.

/// The fixed key mixed into every weight (any constant works; it must never change, or
/// members of different versions disagree on ownership).
const KEY: u64 = 0x9e37_79b9_7f4a_7c15;

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's 64-bit finaliser: a bijection whose every input bit flips each output bit
/// with probability about one half.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The stable hash of a target name, computed once per target per plan.
pub fn target_hash(name: &str) -> u64 {
    mix(fnv1a(name.as_bytes()) ^ KEY)
}

/// The stable key of a member id, computed once per membership.
pub fn member_key(id: &str) -> u64 {
    mix(fnv1a(id.as_bytes()).rotate_left(17) ^ KEY.rotate_left(29))
}

/// The weight of (member, target): the member with the highest weight owns the target.
pub fn weight(member: u64, target: u64) -> u64 {
    mix(target ^ member)
}

/// The live members, in the order of their ids, ready to answer ownership questions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// Member ids, sorted.
    ids: Vec<String>,
    /// [`member_key`] of each id, in the same order.
    keys: Vec<u64>,
    /// Members per target (at least 1; more than there are members means every member).
    replication: usize,
}

impl Shard {
    /// The shard over `ids` (order and duplicates do not matter) with `replication` owners per
    /// target (0 is taken as 1).
    pub fn new<S: AsRef<str>>(ids: &[S], replication: usize) -> Shard {
        let mut ids: Vec<String> = ids.iter().map(|s| s.as_ref().to_string()).collect();
        ids.sort();
        ids.dedup();
        let keys = ids.iter().map(|i| member_key(i)).collect();
        Shard {
            ids,
            keys,
            replication: replication.max(1),
        }
    }

    /// The member ids, sorted.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Owners per target.
    pub fn replication(&self) -> usize {
        self.replication
    }

    /// The index (into [`Shard::ids`]) of `id`, if it is a member.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.ids.binary_search_by(|m| m.as_str().cmp(id)).ok()
    }

    /// Calls `each` with the index of every owner of `target`, highest weight first: the `r`
    /// highest-weight members (all of them when there are no more than `r`). No allocation.
    pub fn for_each_owner(&self, target: &str, mut each: impl FnMut(usize)) {
        let n = self.ids.len();
        let r = self.replication.min(n);
        if r == 0 {
            return;
        }
        if r == n {
            (0..n).for_each(each);
            return;
        }
        let h = target_hash(target);
        // The r best (weight, index) pairs so far, best first; r is small (1–3 in practice).
        let mut best: [(u64, usize); 8] = [(0, usize::MAX); 8];
        if r > best.len() {
            let mut all: Vec<(u64, usize)> = self
                .keys
                .iter()
                .enumerate()
                .map(|(i, k)| (weight(*k, h), i))
                .collect();
            all.sort_unstable_by(|a, b| b.cmp(a));
            all.iter().take(r).for_each(|(_, i)| each(*i));
            return;
        }
        let mut len = 0;
        for (i, k) in self.keys.iter().enumerate() {
            let w = weight(*k, h);
            if len == r && (w, i) <= best[r - 1] {
                continue;
            }
            let mut pos = len.min(r - 1);
            while pos > 0 && best[pos - 1] < (w, i) {
                best[pos] = best[pos - 1];
                pos -= 1;
            }
            best[pos] = (w, i);
            len = (len + 1).min(r);
        }
        best[..r].iter().for_each(|(_, i)| each(*i));
    }

    /// The member of highest weight for `target` (its owner at r = 1, and its first owner at
    /// any r), whatever the replication; none without members.
    pub fn primary(&self, target: &str) -> Option<usize> {
        let h = target_hash(target);
        (0..self.keys.len()).max_by_key(|&i| (weight(self.keys[i], h), i))
    }

    /// The owners of `target`, highest weight first.
    pub fn owners(&self, target: &str) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.replication);
        self.for_each_owner(target, |i| out.push(i));
        out
    }

    /// Whether member `me` (an index into [`Shard::ids`]) owns `target`.
    pub fn owns(&self, me: usize, target: &str) -> bool {
        let mut found = false;
        self.for_each_owner(target, |i| found |= i == me);
        found
    }

    /// Targets owned by each member, in the order of [`Shard::ids`].
    pub fn counts<'a>(&self, targets: impl IntoIterator<Item = &'a str>) -> Vec<usize> {
        let mut counts = vec![0; self.ids.len()];
        for t in targets {
            self.for_each_owner(t, |i| counts[i] += 1);
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("target-{i:05}")).collect()
    }

    fn members(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("host-{i}:9115")).collect()
    }

    /// Owner sets by target, as member ids.
    fn owner_ids(s: &Shard, targets: &[String]) -> Vec<BTreeSet<String>> {
        targets
            .iter()
            .map(|t| {
                s.owners(t)
                    .into_iter()
                    .map(|i| s.ids()[i].clone())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_hash_is_the_same_on_every_build() {
        // Fixed values: a change here means members of two versions disagree on ownership.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let s = Shard::new(&["a", "b", "c"], 1);
        let firsts: Vec<usize> = ["x", "y", "z", "gateway-health"]
            .iter()
            .map(|t| s.owners(t)[0])
            .collect();
        assert_eq!(firsts, firsts_again());
        fn firsts_again() -> Vec<usize> {
            let s = Shard::new(&["c", "b", "a"], 1);
            ["x", "y", "z", "gateway-health"]
                .iter()
                .map(|t| s.owners(t)[0])
                .collect()
        }
    }

    #[test]
    fn each_of_n_members_gets_about_one_nth() {
        let targets = names(100_000);
        for n in [2, 4, 8] {
            let s = Shard::new(&members(n), 1);
            let counts = s.counts(targets.iter().map(String::as_str));
            let ideal = targets.len() as f64 / n as f64;
            for (i, c) in counts.iter().enumerate() {
                let off = (*c as f64 - ideal).abs() / ideal;
                assert!(off < 0.05, "n={n}: member {i} owns {c}, ideal {ideal}");
            }
            assert_eq!(counts.iter().sum::<usize>(), targets.len());
        }
    }

    #[test]
    fn replication_gives_each_target_r_distinct_owners() {
        let targets = names(5_000);
        let s = Shard::new(&members(5), 2);
        for t in &targets {
            let o = s.owners(t);
            assert_eq!(o.len(), 2, "{t}");
            assert_ne!(o[0], o[1], "{t}");
        }
        let counts = s.counts(targets.iter().map(String::as_str));
        assert_eq!(counts.iter().sum::<usize>(), 10_000);
        for c in counts {
            assert!((c as f64 - 2_000.0).abs() < 200.0, "{c}");
        }
    }

    #[test]
    fn fewer_members_than_replicas_means_every_member() {
        let s = Shard::new(&members(2), 3);
        assert_eq!(s.owners("t"), vec![0, 1]);
        let empty = Shard::new::<&str>(&[], 1);
        assert!(empty.owners("t").is_empty());
        assert!(!empty.owns(0, "t"));
    }

    #[test]
    fn the_first_owner_with_replication_is_the_owner_without() {
        let targets = names(2_000);
        let one = Shard::new(&members(6), 1);
        let three = Shard::new(&members(6), 3);
        for t in &targets {
            assert_eq!(one.owners(t)[0], three.owners(t)[0], "{t}");
        }
    }

    #[test]
    fn a_leave_at_r1_moves_only_the_leavers_targets() {
        let targets = names(20_000);
        let all = members(8);
        let before = Shard::new(&all, 1);
        let after = Shard::new(&all[1..], 1);
        let (b, a) = (owner_ids(&before, &targets), owner_ids(&after, &targets));
        let mut moved = 0;
        for (x, y) in b.iter().zip(&a) {
            if x != y {
                moved += 1;
                assert!(x.contains(&all[0]), "only the leaver's targets move");
            }
        }
        let share = moved as f64 / targets.len() as f64;
        assert!((share - 1.0 / 8.0).abs() < 0.0125, "moved {share}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A join moves a target only to the joiner, and at replication r only the owner set
        /// it joins changes (one member out, the joiner in).
        #[test]
        fn a_join_moves_targets_only_to_the_joiner(
            n in 1usize..10,
            r in 1usize..4,
            joiner in "[a-z]{1,8}",
            targets in proptest::collection::vec("[a-z0-9.-]{1,20}", 1..200),
        ) {
            let mut ids = members(n);
            prop_assume!(!ids.contains(&joiner));
            let before = Shard::new(&ids, r);
            ids.push(joiner.clone());
            let after = Shard::new(&ids, r);
            for (x, y) in owner_ids(&before, &targets).iter().zip(owner_ids(&after, &targets)) {
                if *x == y { continue; }
                prop_assert!(y.contains(&joiner));
                let lost: Vec<_> = x.difference(&y).collect();
                prop_assert!(lost.len() <= 1, "one owner out at most: {:?}", lost);
            }
        }

        /// A leave changes a target's owners only if the leaver was one of them.
        #[test]
        fn a_leave_moves_only_what_the_leaver_owned(
            n in 2usize..10,
            r in 1usize..4,
            leaver in 0usize..10,
            targets in proptest::collection::vec("[a-z0-9.-]{1,20}", 1..200),
        ) {
            let ids = members(n);
            let leaver = leaver % n;
            let before = Shard::new(&ids, r);
            let rest: Vec<_> = ids.iter().enumerate().filter(|(i, _)| *i != leaver).map(|(_, m)| m.clone()).collect();
            let after = Shard::new(&rest, r);
            for (x, y) in owner_ids(&before, &targets).iter().zip(owner_ids(&after, &targets)) {
                if *x != y {
                    prop_assert!(x.contains(&ids[leaver]));
                    prop_assert!(x.iter().filter(|m| **m != ids[leaver]).all(|m| y.contains(m)));
                }
            }
        }

        /// The bounded top-r selection agrees with sorting every weight.
        #[test]
        fn owners_are_the_r_heaviest(n in 1usize..12, r in 1usize..12, t in "[a-z0-9]{1,12}") {
            let s = Shard::new(&members(n), r);
            let h = target_hash(&t);
            let mut all: Vec<(u64, usize)> = s.keys.iter().enumerate().map(|(i, k)| (weight(*k, h), i)).collect();
            all.sort_unstable_by(|a, b| b.cmp(a));
            let want: Vec<usize> = if r >= n { (0..n).collect() } else { all.iter().take(r).map(|p| p.1).collect() };
            prop_assert_eq!(s.owners(&t), want);
        }
    }
}
