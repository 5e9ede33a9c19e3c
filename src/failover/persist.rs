//! A group's state through the store: what is saved on every switch (the active instance, the
//! switch times flap dampening counts, whether an operator put traffic where it is) and how a
//! group resumes it on start, with no switch, hook or transition.

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::select::{Recent, Selection, Switch, SwitchReason};
use crate::store::{now_millis, GroupState, Millis, Subject, TransitionRecord};

/// A group's selection as saved (the store keeps it as the group's own JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// Index of the instance receiving traffic, none when every instance is down.
    pub active: Option<usize>,
    /// When traffic last moved (Unix ms).
    pub last_switch: Option<Millis>,
    /// When the recent switches happened (Unix ms), for flap dampening.
    pub recent: Vec<Millis>,
    /// Whether an operator moved traffic last (a manual pin: with the `manual` policy it holds
    /// until an operator moves it again or the instance fails).
    pub pinned: bool,
    /// Why traffic last moved.
    pub reason: Option<String>,
}

/// Unix milliseconds of a monotonic instant, reckoned from now.
fn millis_at(t: Instant, now: Instant, now_ms: Millis) -> Millis {
    now_ms - now.saturating_duration_since(t).as_millis() as Millis
}

/// The monotonic instant of Unix milliseconds, reckoned from now (none when the monotonic
/// clock does not reach back that far).
fn instant_at(ms: Millis, now: Instant, now_ms: Millis) -> Option<Instant> {
    let back = std::time::Duration::from_millis((now_ms - ms).max(0) as u64);
    now.checked_sub(back)
}

/// The state to save of a selection.
pub fn save(name: &str, sel: &Selection, reason: Option<SwitchReason>) -> GroupState {
    let (now, now_ms) = (Instant::now(), now_millis());
    let saved = Saved {
        active: sel.active,
        last_switch: sel.last_switch.map(|t| millis_at(t, now, now_ms)),
        recent: sel
            .recent
            .times()
            .map(|t| millis_at(t, now, now_ms))
            .collect(),
        pinned: reason == Some(SwitchReason::Manual),
        reason: reason.map(|r| r.as_str().to_string()),
    };
    GroupState {
        group: name.to_string(),
        active: sel.active.and_then(|a| u32::try_from(a).ok()),
        json: serde_json::to_string(&saved).unwrap_or_default(),
        updated: now_ms,
    }
}

/// The selection a saved state describes, for a group of `n` instances; none when the JSON is
/// not a saved selection or names an instance the group no longer has.
pub fn restore(stored: &GroupState, n: usize) -> Option<(Selection, Saved)> {
    let saved: Saved = serde_json::from_str(&stored.json).ok()?;
    if saved.active.is_some_and(|a| a >= n) {
        return None;
    }
    let (now, now_ms) = (Instant::now(), now_millis());
    let sel = Selection {
        active: saved.active,
        last_switch: saved
            .last_switch
            .map(|ms| instant_at(ms, now, now_ms).unwrap_or(now)),
        recent: Recent::from_times(
            saved
                .recent
                .iter()
                .filter_map(|&ms| instant_at(ms, now, now_ms)),
        ),
    };
    Some((sel, saved))
}

/// A switch as the history keeps it.
pub fn transition(
    group: &str,
    sw: &Switch,
    from: Option<&str>,
    to: Option<&str>,
    detail: Option<&str>,
) -> TransitionRecord {
    let name = |i: Option<&str>| {
        i.map(|u| crate::redact::url(u).into_owned())
            .unwrap_or_else(|| "none".into())
    };
    TransitionRecord {
        at: now_millis(),
        subject: Subject::Group,
        name: group.to_string(),
        from: name(from),
        to: name(to),
        reason: Some(sw.reason.as_str().to_string()),
        detail: detail.map(|d| crate::redact::urls_in(d).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_saved_selection_comes_back_the_same() {
        let now = Instant::now();
        let sel = Selection {
            active: Some(1),
            last_switch: Some(now),
            recent: Recent::from_times([now]),
        };
        let state = save("g", &sel, Some(SwitchReason::Manual));
        assert_eq!(state.active, Some(1));
        let (back, saved) = restore(&state, 2).expect("restores");
        assert!(saved.pinned);
        assert_eq!(back.active, Some(1));
        assert_eq!(back.recent.times().count(), 1);
        let drift = back
            .last_switch
            .expect("last switch")
            .saturating_duration_since(now);
        assert!(drift < std::time::Duration::from_millis(5), "{drift:?}");
        assert!(restore(&state, 1).is_none(), "instance 1 is gone");
    }
}
