//! The status page's view model, computed from plain inputs with no I/O: what each component's
//! state is now, its 90 daily bars and uptime, which incidents and maintenance windows concern
//! it. Every page, JSON view, feed and badge renders a [`View`].

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::config::status_page::StatusPage;
use crate::state::Health;
use crate::store::model::Window;
use crate::store::{Days, GroupRollup, Impact, Incident, IncidentUpdate, Millis, Rollup};

/// Days of history shown per component.
pub const DAYS: usize = 90;
/// One day, in milliseconds.
pub const DAY_MS: Millis = 86_400_000;
/// Downtime in one day from which its bar shows a major outage rather than a minor one.
pub const MAJOR_DOWN_MS: i64 = 30 * 60_000;
/// Days of resolved incidents listed under "Past incidents".
pub const PAST_DAYS: usize = 14;

/// A component's state, from best to worst (the order worst-of uses); Statuspage's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// No probe has decided yet.
    Unknown,
    /// Everything up.
    Operational,
    /// Inside a maintenance window.
    Maintenance,
    /// Serving, but on a backup instance or with an instance down.
    Degraded,
    /// Some of its targets down.
    Partial,
    /// All of it down.
    Major,
}

impl State {
    /// Statuspage's component status (`Unknown` reads as `operational`: nothing is known to be
    /// wrong).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown | State::Operational => "operational",
            State::Maintenance => "under_maintenance",
            State::Degraded => "degraded_performance",
            State::Partial => "partial_outage",
            State::Major => "major_outage",
        }
    }

    /// Words for people.
    pub fn label(self) -> &'static str {
        match self {
            State::Unknown => "No data yet",
            State::Operational => "Operational",
            State::Maintenance => "Under maintenance",
            State::Degraded => "Degraded performance",
            State::Partial => "Partial outage",
            State::Major => "Major outage",
        }
    }

    /// The least state an open incident of `impact` puts its components in.
    fn of_impact(impact: Impact) -> State {
        match impact {
            Impact::None => State::Unknown,
            Impact::Minor => State::Degraded,
            Impact::Major => State::Partial,
            Impact::Critical => State::Major,
        }
    }
}

/// The page's overall indicator, as Statuspage's `status` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Indicator {
    /// `none`, `minor`, `major` or `critical`.
    pub indicator: &'static str,
    /// Words for people ("All Systems Operational").
    pub description: &'static str,
}

/// A failover group as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLive {
    /// The instance receiving traffic, none when none can.
    pub active: Option<usize>,
    /// Its instances' health, primary first.
    pub instances: Vec<Health>,
}

/// The live state the page shows: each target's health and each group's selection.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// Target name → health.
    pub targets: HashMap<String, Health>,
    /// Group name → state.
    pub groups: HashMap<String, GroupLive>,
}

/// Everything a view is computed from; gathered with a fixed number of store queries.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The page in force.
    pub page: StatusPage,
    /// Now.
    pub now: Millis,
    /// The live state.
    pub live: Live,
    /// Day rollups of every target and failover group over the last [`DAYS`] days before
    /// today (shared: the store caches this read).
    pub past: Days,
    /// Targets' day rollups of today, or of any day (the tests give every day here).
    pub rollups: Vec<Rollup>,
    /// Failover groups' day rollups of today, or of any day.
    pub group_rollups: Vec<GroupRollup>,
    /// Incidents: every open one and those started in the last [`PAST_DAYS`] days.
    pub incidents: Vec<Incident>,
    /// The updates of those incidents.
    pub updates: Vec<IncidentUpdate>,
    /// Maintenance windows around now (past week to the month ahead).
    pub windows: Vec<Window>,
}

/// One day's figures for one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Day {
    /// Start of the (UTC) day.
    pub start: Millis,
    /// Whether anything was recorded that day.
    pub data: bool,
    /// Probes, summed over the component's targets.
    pub probes: u64,
    /// Failed probes.
    pub failures: u64,
    /// Down time outside maintenance (the worst member's).
    pub down_ms: i64,
    /// Time in maintenance (the worst member's).
    pub maintenance_ms: i64,
    /// The time the day counts for: the whole day, today up to now.
    pub period_ms: i64,
}

/// The colour class of a day's bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bar {
    /// Nothing recorded.
    NoData,
    /// No downtime.
    Operational,
    /// Some downtime, under [`MAJOR_DOWN_MS`].
    Minor,
    /// [`MAJOR_DOWN_MS`] of downtime or more.
    Major,
    /// Maintenance and no downtime outside it.
    Maintenance,
}

impl Day {
    /// The bar's colour class.
    pub fn bar(&self) -> Bar {
        if !self.data {
            Bar::NoData
        } else if self.down_ms >= MAJOR_DOWN_MS {
            Bar::Major
        } else if self.down_ms > 0 {
            Bar::Minor
        } else if self.maintenance_ms > 0 {
            Bar::Maintenance
        } else {
            Bar::Operational
        }
    }

    /// Uptime of the day outside maintenance, none without data.
    pub fn uptime(&self) -> Option<f64> {
        uptime(std::slice::from_ref(self))
    }
}

/// Uptime over `days`: 1 − down / (period − maintenance), counting only days with data; none
/// when no day has data (or all of it was maintenance).
pub fn uptime(days: &[Day]) -> Option<f64> {
    let (mut down, mut counted) = (0i64, 0i64);
    for d in days.iter().filter(|d| d.data) {
        down += d.down_ms;
        counted += (d.period_ms - d.maintenance_ms).max(0);
    }
    (counted > 0).then(|| (1.0 - down as f64 / counted as f64).clamp(0.0, 1.0))
}

/// A component (or a group of components) as shown.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentView {
    /// Name.
    pub name: String,
    /// A line under the name.
    pub description: Option<String>,
    /// State now.
    pub state: State,
    /// The last [`DAYS`] days, oldest first.
    pub days: Vec<Day>,
    /// Uptime over those days.
    pub uptime: Option<f64>,
    /// Indices into [`View::incidents`] of the incidents that concern it.
    pub incidents: Vec<usize>,
    /// For a group, its members' indices into [`View::components`]; empty for a component.
    pub members: Vec<usize>,
    /// The group it belongs to, an index into [`View::groups`].
    pub group: Option<usize>,
}

/// An incident with its timeline, newest update first.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentView {
    /// The incident.
    pub incident: Incident,
    /// Its updates, newest first.
    pub updates: Vec<IncidentUpdate>,
    /// Names of the components it concerns.
    pub components: Vec<String>,
}

/// A maintenance window's Statuspage status.
pub fn window_status(w: &Window, now: Millis) -> &'static str {
    if now < w.start {
        "scheduled"
    } else if now < w.end {
        "in_progress"
    } else {
        "completed"
    }
}

/// The whole page.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// The page's config.
    pub page: StatusPage,
    /// Now.
    pub now: Millis,
    /// Components in page order.
    pub components: Vec<ComponentView>,
    /// Groups of components (worst-of their members).
    pub groups: Vec<ComponentView>,
    /// Incidents, newest first.
    pub incidents: Vec<IncidentView>,
    /// Maintenance windows around now, by start.
    pub windows: Vec<Window>,
    /// The page's overall state.
    pub state: State,
    /// Cluster mode's locations and their state (empty outside it).
    pub locations: Vec<LocationRow>,
}

/// One location of cluster mode on the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationRow {
    /// The location's name.
    pub name: String,
    /// `ok`, `degraded` or `stale`.
    pub state: &'static str,
    /// Targets it has a view of.
    pub targets: usize,
    /// Of those, the ones it sees down.
    pub down: usize,
}

impl View {
    /// The page's indicator, as Statuspage's `status` object.
    pub fn indicator(&self) -> Indicator {
        let impact = self
            .incidents
            .iter()
            .filter(|i| i.incident.resolved.is_none())
            .map(|i| State::of_impact(i.incident.impact))
            .max()
            .unwrap_or(State::Unknown);
        let (indicator, description) = match self.state.max(impact) {
            State::Major => ("critical", "Major System Outage"),
            State::Partial => ("major", "Partial System Outage"),
            State::Degraded => ("minor", "Minor Service Outage"),
            State::Maintenance => ("none", "Service Under Maintenance"),
            State::Unknown | State::Operational => ("none", "All Systems Operational"),
        };
        Indicator {
            indicator,
            description,
        }
    }

    /// The component or group named `name`.
    pub fn find(&self, name: &str) -> Option<&ComponentView> {
        self.components
            .iter()
            .chain(&self.groups)
            .find(|c| c.name == name)
    }

    /// Open incidents.
    pub fn active_incidents(&self) -> impl Iterator<Item = &IncidentView> {
        self.incidents
            .iter()
            .filter(|i| i.incident.resolved.is_none())
    }

    /// Windows in progress or to come.
    pub fn scheduled_windows(&self) -> impl Iterator<Item = &Window> {
        self.windows.iter().filter(|w| w.end > self.now)
    }
}

/// The start of the UTC day holding `t`.
pub fn day_start(t: Millis) -> Millis {
    t - t.rem_euclid(DAY_MS)
}

/// The first day shown: [`DAYS`] days ending with today.
pub fn first_day(now: Millis) -> Millis {
    day_start(now) - (DAYS as i64 - 1) * DAY_MS
}

/// Builds the view.
pub fn build(inputs: Inputs) -> View {
    let Inputs {
        page,
        now,
        live,
        past,
        rollups,
        group_rollups,
        incidents,
        updates,
        windows,
    } = inputs;
    let history = History::new(
        past.targets.iter().chain(&rollups),
        past.groups.iter().chain(&group_rollups),
        now,
    );
    let incidents = incident_views(incidents, updates);
    let mut components: Vec<ComponentView> = page
        .components
        .iter()
        .map(|c| {
            let subjects = subjects(c, &live);
            let days = history.component(&subjects);
            let mut state = live_state(&subjects, &live);
            if in_maintenance(&windows, now, &subjects.names) {
                state = State::Maintenance;
            }
            ComponentView {
                name: c.name.clone(),
                description: c.description.clone(),
                state,
                uptime: uptime(&days),
                days,
                incidents: Vec::new(),
                members: Vec::new(),
                group: None,
            }
        })
        .collect();
    let mut incidents = incidents;
    attach_incidents(&page, &mut components, &mut incidents, &live);
    let groups = group_views(&page, &mut components);
    let state = components
        .iter()
        .map(|c| c.state)
        .max()
        .unwrap_or(State::Unknown);
    View {
        page,
        now,
        components,
        groups,
        incidents,
        windows,
        state,
        locations: Vec::new(),
    }
}

/// What a component is made of: names its incidents and windows may use, its targets, its
/// groups with their check targets.
struct Subjects {
    names: HashSet<String>,
    targets: Vec<String>,
    groups: Vec<(String, Vec<String>)>,
}

fn subjects(c: &crate::config::status_page::PageComponent, live: &Live) -> Subjects {
    let groups: Vec<(String, Vec<String>)> = c
        .groups
        .iter()
        .map(|g| {
            let n = live.groups.get(g).map(|l| l.instances.len()).unwrap_or(0);
            (g.clone(), (0..n).map(|i| format!("{g}/{i}")).collect())
        })
        .collect();
    let mut names: HashSet<String> = c.targets.iter().cloned().collect();
    names.insert(c.name.clone());
    for (g, checks) in &groups {
        names.insert(g.clone());
        names.extend(checks.iter().cloned());
    }
    Subjects {
        names,
        targets: c.targets.clone(),
        groups,
    }
}

/// The component's state from its members: all of them down is a major outage, some a partial
/// one; a group on a backup or with an instance down is degraded.
fn live_state(s: &Subjects, live: &Live) -> State {
    let mut members = Vec::new();
    for t in &s.targets {
        members.push(match live.targets.get(t) {
            Some(Health::Up) => State::Operational,
            Some(Health::Down) => State::Major,
            Some(Health::Unknown) | None => State::Unknown,
        });
    }
    for (g, _) in &s.groups {
        members.push(match live.groups.get(g) {
            None => State::Unknown,
            Some(l) => group_state(l),
        });
    }
    let known: Vec<State> = members
        .into_iter()
        .filter(|m| *m != State::Unknown)
        .collect();
    let worst = known.iter().copied().max().unwrap_or(State::Unknown);
    if worst == State::Major && known.iter().any(|m| *m != State::Major) {
        State::Partial
    } else {
        worst
    }
}

fn group_state(l: &GroupLive) -> State {
    if l.instances.iter().all(|h| *h == Health::Unknown) {
        return State::Unknown;
    }
    match l.active {
        None => State::Major,
        Some(0) if l.instances.iter().all(|h| *h != Health::Down) => State::Operational,
        Some(_) => State::Degraded,
    }
}

/// Whether a window in progress covers any of `names` (or everything).
fn in_maintenance(windows: &[Window], now: Millis, names: &HashSet<String>) -> bool {
    windows.iter().any(|w| {
        w.start <= now
            && now < w.end
            && (w.components.is_empty() || w.components.iter().any(|c| names.contains(c)))
    })
}

/// The day rollups of every target and failover group, by name, one slot per day shown.
struct History<'a> {
    first: Millis,
    now: Millis,
    by_target: HashMap<&'a str, Vec<Option<&'a Rollup>>>,
    by_group: HashMap<&'a str, Vec<Option<&'a GroupRollup>>>,
}

/// Rows (name, start, row) by name, one slot per day from `first`.
fn by_day<'a, T>(
    rows: impl Iterator<Item = (&'a str, Millis, &'a T)>,
    first: Millis,
) -> HashMap<&'a str, Vec<Option<&'a T>>> {
    let mut out: HashMap<&str, Vec<Option<&T>>> = HashMap::new();
    for (name, start, r) in rows {
        let i = (start - first).div_euclid(DAY_MS);
        if !(0..DAYS as i64).contains(&i) {
            continue;
        }
        out.entry(name).or_insert_with(|| vec![None; DAYS])[i as usize] = Some(r);
    }
    out
}

impl<'a> History<'a> {
    fn new(
        rollups: impl Iterator<Item = &'a Rollup>,
        groups: impl Iterator<Item = &'a GroupRollup>,
        now: Millis,
    ) -> History<'a> {
        let first = first_day(now);
        History {
            first,
            now,
            by_target: by_day(rollups.map(|r| (r.target.as_str(), r.start, r)), first),
            by_group: by_day(groups.map(|r| (r.group.as_str(), r.start, r)), first),
        }
    }

    /// One target's (or group's) day `i`, none without a row.
    fn day(&self, name: &str, i: usize) -> Option<Day> {
        let r = (*self.by_target.get(name)?.get(i)?)?;
        Some(Day {
            start: r.start,
            data: true,
            probes: r.probes,
            failures: r.failures,
            down_ms: r.down_ms,
            maintenance_ms: r.maintenance_ms,
            period_ms: 0,
        })
    }

    /// A failover group's day `i`: probes summed over its instances' checks; down and
    /// maintenance time from the group's own row (no instance could take traffic) when the
    /// store keeps one, else from its instances' (it was down at most as long as its
    /// least-down instance: rows written before the groups had rollups).
    fn group_day(&self, group: &str, checks: &[String], i: usize) -> Option<Day> {
        let own = self
            .by_group
            .get(group)
            .and_then(|v| v.get(i).copied().flatten());
        let days: Vec<Day> = checks.iter().filter_map(|c| self.day(c, i)).collect();
        let mut acc = match (days.first(), own) {
            (None, None) => return None,
            (Some(first), _) => days.iter().skip(1).fold(*first, |mut acc, d| {
                acc.probes += d.probes;
                acc.failures += d.failures;
                acc.down_ms = acc.down_ms.min(d.down_ms);
                acc.maintenance_ms = acc.maintenance_ms.min(d.maintenance_ms);
                acc
            }),
            (None, Some(g)) => Day {
                start: g.start,
                data: true,
                ..Day::default()
            },
        };
        if let Some(g) = own {
            acc.down_ms = g.down_ms;
            acc.maintenance_ms = g.maintenance_ms;
        }
        Some(acc)
    }

    /// A component's days: probes summed, downtime and maintenance the worst member's.
    fn component(&self, s: &Subjects) -> Vec<Day> {
        (0..DAYS)
            .map(|i| {
                let start = self.first + i as i64 * DAY_MS;
                let mut day = Day {
                    start,
                    period_ms: (self.now - start).clamp(0, DAY_MS),
                    ..Day::default()
                };
                let members = s
                    .targets
                    .iter()
                    .filter_map(|t| self.day(t, i))
                    .chain(s.groups.iter().filter_map(|(g, c)| self.group_day(g, c, i)));
                for d in members {
                    day.data = true;
                    day.probes += d.probes;
                    day.failures += d.failures;
                    day.down_ms = day.down_ms.max(d.down_ms);
                    day.maintenance_ms = day.maintenance_ms.max(d.maintenance_ms);
                }
                day
            })
            .collect()
    }
}

/// Incidents newest first, each with its updates newest first.
fn incident_views(mut incidents: Vec<Incident>, updates: Vec<IncidentUpdate>) -> Vec<IncidentView> {
    incidents.sort_by(|a, b| b.started.cmp(&a.started).then(b.id.cmp(&a.id)));
    incidents.dedup_by_key(|i| i.id);
    let mut by_incident: BTreeMap<i64, Vec<IncidentUpdate>> = BTreeMap::new();
    for u in updates {
        by_incident.entry(u.incident).or_default().push(u);
    }
    incidents
        .into_iter()
        .map(|incident| {
            let mut updates = by_incident.remove(&incident.id).unwrap_or_default();
            updates.sort_by(|a, b| b.at.cmp(&a.at).then(b.id.cmp(&a.id)));
            IncidentView {
                incident,
                updates,
                components: Vec::new(),
            }
        })
        .collect()
}

/// Links incidents and components: an incident concerns a component when its `component` is
/// the component's name, one of its targets or groups, or when its targets meet the
/// component's. An open incident's impact is the least state of its components.
fn attach_incidents(
    page: &StatusPage,
    components: &mut [ComponentView],
    incidents: &mut [IncidentView],
    live: &Live,
) {
    let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
    for (ci, c) in page.components.iter().enumerate() {
        for n in subjects(c, live).names {
            by_name.entry(n).or_default().push(ci);
        }
    }
    for (ii, inc) in incidents.iter_mut().enumerate() {
        let mut hit: Vec<usize> = std::iter::once(&inc.incident.component)
            .chain(&inc.incident.targets)
            .filter_map(|n| by_name.get(n))
            .flatten()
            .copied()
            .collect();
        hit.sort_unstable();
        hit.dedup();
        for ci in hit {
            let c = &mut components[ci];
            c.incidents.push(ii);
            inc.components.push(c.name.clone());
            if inc.incident.resolved.is_none() && c.state != State::Maintenance {
                c.state = c.state.max(State::of_impact(inc.incident.impact));
            }
        }
    }
}

/// Groups of components: the worst state of their members, the worst day of each member,
/// their members' incidents.
fn group_views(page: &StatusPage, components: &mut [ComponentView]) -> Vec<ComponentView> {
    let index: HashMap<String, usize> = components
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect();
    let mut groups = Vec::new();
    for (gi, g) in page.groups.iter().enumerate() {
        let members: Vec<usize> = g
            .components
            .iter()
            .filter_map(|m| index.get(m.as_str()).copied())
            .collect();
        let mut days = vec![Day::default(); DAYS];
        let mut state = State::Unknown;
        let mut incs = Vec::new();
        for &m in &members {
            let c = &mut components[m];
            c.group = Some(gi);
            state = state.max(c.state);
            incs.extend(c.incidents.iter().copied());
            for (d, md) in days.iter_mut().zip(&c.days) {
                d.start = md.start;
                d.period_ms = md.period_ms;
                d.data |= md.data;
                d.probes += md.probes;
                d.failures += md.failures;
                d.down_ms = d.down_ms.max(md.down_ms);
                d.maintenance_ms = d.maintenance_ms.max(md.maintenance_ms);
            }
        }
        incs.sort_unstable();
        incs.dedup();
        groups.push(ComponentView {
            name: g.name.clone(),
            description: g.description.clone(),
            state,
            uptime: uptime(&days),
            days,
            incidents: incs,
            members,
            group: None,
        });
    }
    groups
}

/// One target's (or group's) figures summed over a span, for the uptime badges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Whether any period had a row.
    pub data: bool,
    /// Down time outside maintenance.
    pub down_ms: i64,
    /// Time in maintenance.
    pub maintenance_ms: i64,
}

impl Totals {
    /// The sums of `rows`.
    pub fn of(rows: &[Rollup]) -> Totals {
        rows.iter().fold(Totals::default(), |t, r| Totals {
            data: true,
            down_ms: t.down_ms + r.down_ms,
            maintenance_ms: t.maintenance_ms + r.maintenance_ms,
        })
    }

    /// A failover group's from its own rollups.
    pub fn of_group(rows: &[GroupRollup]) -> Totals {
        rows.iter().fold(Totals::default(), |t, r| Totals {
            data: true,
            down_ms: t.down_ms + r.down_ms,
            maintenance_ms: t.maintenance_ms + r.maintenance_ms,
        })
    }

    /// A failover group's from its instances': down at most as long as the least-down one.
    pub fn least(each: &[Totals]) -> Totals {
        let with: Vec<&Totals> = each.iter().filter(|t| t.data).collect();
        match with.first() {
            None => Totals::default(),
            Some(first) => with.iter().fold(**first, |a, t| Totals {
                data: true,
                down_ms: a.down_ms.min(t.down_ms),
                maintenance_ms: a.maintenance_ms.min(t.maintenance_ms),
            }),
        }
    }

    /// A component's from its members': the worst member's downtime and maintenance.
    pub fn worst(each: &[Totals]) -> Totals {
        each.iter()
            .filter(|t| t.data)
            .fold(Totals::default(), |a, t| Totals {
                data: true,
                down_ms: a.down_ms.max(t.down_ms),
                maintenance_ms: a.maintenance_ms.max(t.maintenance_ms),
            })
    }

    /// Uptime over a span of `period_ms`: 1 − down / (period − maintenance); none without
    /// data.
    pub fn uptime(&self, period_ms: i64) -> Option<f64> {
        let day = Day {
            data: self.data,
            down_ms: self.down_ms,
            maintenance_ms: self.maintenance_ms,
            period_ms,
            ..Day::default()
        };
        day.uptime()
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
