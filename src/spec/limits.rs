//! Mastodon's rate limits, and how much of them the journeys' schedules use.
//!
//! A probe that runs into the instance's limits measures its own schedule, not
//! the instance: `check` adds up, per instance and probe account, what every journey does per run
//! times how often its schedule fires in the worst window, plus the leftover
//! sweep, times the probes that share the account or the token, and compares that
//! with the limits Mastodon enforces: from its `config/initializers/rack_attack.rb`
//! (300 API calls per 5 min per token, 1,500 per account, 300 per address without
//! a token, 30 deletes and 30 media uploads per 30 min per account) and the
//! per-account limit of 300 statuses per 3 h.
//!
//! Worst cases are counted: every attempt of a poll, every fallback poll of a
//! stream as if the stream were down for the whole wait, each journey's worst
//! window summed with the others'. A step with `if_missing` (it creates what the
//! journey keeps, such as `favourite`'s standing status) counts once per window:
//! it runs again only when what it created is gone.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::journey::{Journey, Step, StepKind};
use super::template::Var;

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Requests under `/api/` with a token.
    ApiCalls,
    /// Requests under `/api/` without a token.
    UnauthenticatedApiCalls,
    /// `POST /api/v1/statuses`.
    Statuses,
    /// `DELETE /api/v1/statuses/:id` (and `POST …/unreblog`).
    Deletes,
    /// `POST /api/v1/media`, `POST /api/v2/media`.
    Media,
}

/// Whose use a limit adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One access token: shared by the probes given the same token.
    Token,
    /// One account: shared by every probe using it, whatever their tokens.
    Account,
    /// One client address: each probe has its own (probes behind one NAT would share it).
    Address,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Token => "token",
            Scope::Account => "account",
            Scope::Address => "address",
        }
    }
}

/// One limit Mastodon enforces on a token, an account or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// What is counted, in words ("statuses posted").
    pub what: &'static str,
    pub counted: Counted,
    pub scope: Scope,
    pub max: u32,
    pub per: Duration,
}

const FIVE_MINUTES: Duration = Duration::from_secs(5 * 60);
const HALF_AN_HOUR: Duration = Duration::from_secs(30 * 60);

pub const API_CALLS: Limit =
    Limit { what: "API calls", counted: Counted::ApiCalls, scope: Scope::Token, max: 300, per: FIVE_MINUTES };
pub const ACCOUNT_API_CALLS: Limit =
    Limit { what: "API calls", counted: Counted::ApiCalls, scope: Scope::Account, max: 1_500, per: FIVE_MINUTES };
/// Calls without a token are limited per IP address: all of a probe's journeys share it.
pub const UNAUTHENTICATED_API_CALLS: Limit = Limit {
    what: "unauthenticated API calls",
    counted: Counted::UnauthenticatedApiCalls,
    scope: Scope::Address,
    max: 300,
    per: FIVE_MINUTES,
};
pub const STATUSES: Limit = Limit {
    what: "statuses posted",
    counted: Counted::Statuses,
    scope: Scope::Account,
    max: 300,
    per: Duration::from_secs(3 * 3600),
};
pub const DELETES: Limit =
    Limit { what: "statuses deleted", counted: Counted::Deletes, scope: Scope::Account, max: 30, per: HALF_AN_HOUR };
pub const MEDIA: Limit =
    Limit { what: "media uploads", counted: Counted::Media, scope: Scope::Account, max: 30, per: HALF_AN_HOUR };

/// Mastodon's defaults. An instance may have raised them (`rate_limits` in the config).
pub const LIMITS: [Limit; 6] = [API_CALLS, ACCOUNT_API_CALLS, UNAUTHENTICATED_API_CALLS, STATUSES, DELETES, MEDIA];

/// How many probes (this one included) use an instance's probe account, and
/// how many of them use the same token (`shared_by` in the config). Default 1 and 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sharing {
    pub account: u32,
    pub token: u32,
}

impl Default for Sharing {
    fn default() -> Self {
        Sharing { account: 1, token: 1 }
    }
}

impl Sharing {
    /// How many probes add up against a limit of `scope`.
    pub fn probes(&self, scope: Scope) -> u32 {
        match scope {
            Scope::Token => self.token,
            Scope::Account => self.account,
            Scope::Address => 1,
        }
    }
}

/// What one request counts against. Only `/api/` paths are throttled (`/health`
/// and the like are not); a request without a token counts per IP.
pub fn counted(method: &http::Method, path: &str, authenticated: bool) -> Vec<Counted> {
    if !path.starts_with("/api/") {
        return Vec::new();
    }
    let mut out = vec![if authenticated { Counted::ApiCalls } else { Counted::UnauthenticatedApiCalls }];
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["", "api", "v1", "statuses"]) => out.push(Counted::Statuses),
        ("DELETE", ["", "api", "v1", "statuses", _]) | ("POST", ["", "api", "v1", "statuses", _, "unreblog"]) => {
            out.push(Counted::Deletes)
        }
        ("POST", ["", "api", "v1" | "v2", "media"]) => out.push(Counted::Media),
        _ => {}
    }
    out
}

/// The most requests a step can make in one run: one, or every attempt of a poll.
pub fn worst_case_attempts(step: &Step) -> u32 {
    match &step.kind {
        StepKind::Request(_) => 1,
        StepKind::Poll(p) => polls(p.within, p.interval),
        // Opening the stream is not rate limited; its fallback polls (worst case: the
        // stream is down for the whole wait) are.
        StepKind::Stream(s) => s.fallback.as_ref().map_or(0, |f| polls(s.within, f.interval)),
        StepKind::Parallel(members) => members.iter().map(worst_case_attempts).sum(),
    }
}

fn polls(within: Duration, interval: Duration) -> u32 {
    let interval = interval.as_secs_f64().max(0.001);
    (within.as_secs_f64() / interval).ceil() as u32 + 1
}

/// One journey's use of one counter on one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    pub instance: String,
    pub counted: Counted,
    /// Uses in every run (worst case).
    pub per_run: u32,
    /// Uses of `if_missing` steps: at most once per window, however often the journey runs.
    pub once: u32,
}

/// How many times a journey uses each counter, on each instance it talks to.
pub fn usage(journey: &Journey) -> Vec<Use> {
    let mut out: Vec<Use> = Vec::new();
    for step in journey.steps.iter().chain(&journey.cleanup).flat_map(Step::leaves) {
        let instance = journey.step_instance(step);
        let Some(request) = step.kind.request() else { continue };
        let attempts = worst_case_attempts(step);
        for counted in counted(&request.method, &request.path.to_string(), request.auth) {
            let entry = match out.iter_mut().position(|u| u.instance == instance && u.counted == counted) {
                Some(i) => &mut out[i],
                None => {
                    out.push(Use { instance: instance.to_owned(), counted, per_run: 0, once: 0 });
                    out.last_mut().expect("just pushed")
                }
            };
            if step.if_missing.is_some() {
                entry.once += attempts;
            } else {
                entry.per_run += attempts;
            }
        }
    }
    out
}

/// The instances on which `journey` posts statuses marked with the run's
/// `${nonce}`: the only statuses the leftover sweep deletes, so the only
/// instances a run of it can leave a leftover on, and the ones `once` sweeps
/// after it.
pub fn leaves_statuses_on(journey: &Journey) -> Vec<String> {
    leaves_statuses_as(journey).into_iter().map(|(instance, _)| instance).collect()
}

/// [`leaves_statuses_on`] with the account the statuses are posted as on each
/// instance (`None`: the primary; see [`Journey::account_on`]): the probe
/// accounts `once` sweeps after the run.
pub fn leaves_statuses_as(journey: &Journey) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for step in journey.steps.iter().chain(&journey.cleanup).flat_map(Step::leaves) {
        let StepKind::Request(request) = &step.kind else { continue };
        let marked = request.body.as_ref().is_some_and(|body| body.vars().contains(&&Var::Nonce));
        let instance = journey.step_instance(step);
        if marked
            && counted(&request.method, &request.path.to_string(), request.auth).contains(&Counted::Statuses)
            && !out.iter().any(|(i, _)| i == instance)
        {
            out.push((instance.to_owned(), journey.account_on(instance).map(str::to_owned)));
        }
    }
    out
}

/// What one leftover sweep costs on one instance: `verify_credentials` and one
/// page of the account's statuses, then at most this many deletes (see
/// `runner::sweep`).
pub const SWEEP_READS: u32 = 2;
pub const SWEEP_MAX_DELETES: u32 = 1;
/// The long-running agent sweeps every instance at start and then this often.
pub const AGENT_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// The most leftover sweeps of the probe account `account` (`None`: the
/// primary) on `instance` in one window of `per`, whether the journeys run as
/// CronJobs or in the agent, whichever sweeps more: `fediprobe once` sweeps
/// after each run the accounts its journeys leave statuses as (a CronJob runs
/// the journeys of one schedule together), the agent sweeps every account of
/// every instance at start and then every [`AGENT_SWEEP_EVERY`]. `journeys` are
/// the runs, one copy per account ([`super::accounts::runs`]).
pub fn sweeps_in_window(
    journeys: &[Journey],
    instance: &str,
    account: Option<&str>,
    per: Duration,
    runs: &mut Runs,
) -> u64 {
    let mut schedules: Vec<&Journey> = Vec::new();
    let leaves_here = |j: &Journey| leaves_statuses_as(j).iter().any(|(i, a)| i == instance && a.as_deref() == account);
    for journey in journeys.iter().filter(|j| leaves_here(j)) {
        if !schedules.iter().any(|s| s.schedule.normalized() == journey.schedule.normalized()) {
            schedules.push(journey);
        }
    }
    let once: u64 = schedules.iter().map(|j| runs.most_in(j, per)).sum();
    let agent = per.as_secs().div_ceil(AGENT_SWEEP_EVERY.as_secs()).max(1);
    once.max(agent)
}

/// How often journeys' schedules fire in their worst windows, each schedule and
/// window length counted once: walking a week of a schedule that fires every
/// second takes a while, and `check`, `once` and the agent load configs often.
#[derive(Debug, Default)]
pub struct Runs(std::collections::HashMap<(String, Duration), u64>);

impl Runs {
    /// The most runs of `journey` in one window of `per`.
    pub fn most_in(&mut self, journey: &Journey, per: Duration) -> u64 {
        *self
            .0
            .entry((journey.schedule.normalized(), per))
            .or_insert_with(|| max_runs_in_window(&journey.schedule.cron, per, 1_000_000) as u64)
    }
}

/// What the leftover sweep counts per sweep against `counted`.
fn sweep_cost(counted: Counted) -> u32 {
    match counted {
        Counted::ApiCalls => SWEEP_READS + SWEEP_MAX_DELETES,
        Counted::Deletes => SWEEP_MAX_DELETES,
        _ => 0,
    }
}

/// A fixed reference week, so that `check` (and the generators) never read the
/// clock: a Monday at 00:00 UTC.
fn reference_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single().expect("valid date")
}

/// The shortest and the longest gap between consecutive firings of `cron` over
/// the reference week and one day more (so the wrap into the next week is seen),
/// looking at no more than `cap` firings. `None` when it fires fewer than twice.
pub fn gaps(cron: &croner::Cron, cap: usize) -> Option<(Duration, Duration)> {
    let start = reference_start();
    let end = start + chrono::Duration::days(8);
    let (mut shortest, mut longest) = (i64::MAX, 0i64);
    let mut previous: Option<i64> = None;
    for t in cron.iter_from(start, croner::Direction::Forward).take(cap) {
        if t >= end {
            break;
        }
        if let Some(p) = previous {
            shortest = shortest.min(t.timestamp() - p);
            longest = longest.max(t.timestamp() - p);
        }
        previous = Some(t.timestamp());
    }
    (longest > 0).then(|| (Duration::from_secs(shortest as u64), Duration::from_secs(longest as u64)))
}

/// The most times `cron` fires within any window of length `per`, looking at a
/// reference week (plus one window, so windows that wrap are seen). Stops counting
/// at `cap` (a schedule firing every second would otherwise take a while).
pub fn max_runs_in_window(cron: &croner::Cron, per: Duration, cap: usize) -> usize {
    let start = reference_start();
    let end = start + chrono::Duration::days(7) + chrono::Duration::from_std(per).unwrap_or_default();
    let mut times: Vec<i64> = Vec::new();
    for t in cron.iter_from(start, croner::Direction::Forward) {
        if t >= end || times.len() >= cap {
            break;
        }
        times.push(t.timestamp());
    }
    let span = per.as_secs() as i64;
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= span {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// Who uses part of a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum User {
    /// A journey, by its index.
    Journey(usize),
    /// The leftover sweep.
    Sweep,
}

/// One limit on one instance (and one of its probe accounts, for a limit per
/// token or account): how much of it this probe and the probes sharing its
/// account or token use in the worst window.
#[derive(Debug, Clone)]
pub struct Budget {
    pub instance: String,
    /// The probe account whose token or account the limit is on (`None`: the
    /// instance's primary account). A limit per address has `None` and counts
    /// every account's calls: they all leave from this probe's address.
    pub account: Option<String>,
    pub limit: Limit,
    /// This probe's most uses in one window, all journeys and the sweep together.
    pub per_probe: u64,
    /// How many probes add up against the limit (see [`Sharing`]).
    pub probes: u32,
    /// Who uses this probe's part, largest first.
    pub users: Vec<(User, u64)>,
}

impl Budget {
    /// Every probe sharing the limit together.
    pub fn total(&self) -> u64 {
        self.per_probe * u64::from(self.probes)
    }

    pub fn exceeded(&self) -> bool {
        self.total() > u64::from(self.limit.max)
    }
}

/// The limits and the sharing of an instance name and an account (`None`: the
/// primary), as [`budget`] asks for them.
pub type LimitsFor<'a> = dyn Fn(&str, Option<&str>) -> (Vec<Limit>, Sharing) + 'a;

/// Every limit of every instance the runs use, per probe account for the limits
/// per token and per account, with the limits and the sharing `limits_for`
/// gives for an instance name and an account (`None`: the primary). `runs` are
/// the journeys with one copy per account they run as
/// ([`super::accounts::runs`]); `User::Journey` indexes them.
pub fn budget(runs: &[Journey], limits_for: &LimitsFor<'_>) -> Vec<Budget> {
    let mut out: Vec<Budget> = Vec::new();
    let usages: Vec<Vec<Use>> = runs.iter().map(usage).collect();
    let mut windows = Runs::default();
    // Every (instance, account) the runs use, the primary account first.
    let mut pairs: Vec<(&str, Option<&str>)> =
        runs.iter().flat_map(|j| j.instances().into_iter().map(move |(i, _)| (i, j.account_on(i)))).collect();
    pairs.sort();
    pairs.dedup();
    for (index, &(instance, account)) in pairs.iter().enumerate() {
        let first_of_instance = index == 0 || pairs[index - 1].0 != instance;
        let (limits, sharing) = limits_for(instance, account);
        for limit in limits {
            // A limit per address is the instance's, whichever account calls: one row.
            let per_address = limit.scope == Scope::Address;
            if per_address && !first_of_instance {
                continue;
            }
            let counts = |run: &Journey| per_address || run.account_on(instance) == account;
            let mut users: Vec<(User, u64)> = Vec::new();
            for (i, usage) in usages.iter().enumerate().filter(|(i, _)| counts(&runs[*i])) {
                for u in usage.iter().filter(|u| u.instance == instance && u.counted == limit.counted) {
                    let most = windows.most_in(&runs[i], limit.per);
                    let once = if most > 0 { u64::from(u.once) } else { 0 };
                    users.push((User::Journey(i), most * u64::from(u.per_run) + once));
                }
            }
            let cost = u64::from(sweep_cost(limit.counted));
            let sweep =
                if cost > 0 { sweeps_in_window(runs, instance, account, limit.per, &mut windows) * cost } else { 0 };
            if sweep > 0 {
                users.push((User::Sweep, sweep));
            }
            users.retain(|(_, n)| *n > 0);
            // Summing each user's worst window over-estimates a little when the worst
            // windows don't coincide; for a limit, erring on the safe side is right.
            let per_probe: u64 = users.iter().map(|(_, n)| n).sum();
            users.sort_by_key(|user| std::cmp::Reverse(user.1));
            out.push(Budget {
                instance: instance.to_owned(),
                account: if per_address { None } else { account.map(str::to_owned) },
                limit,
                per_probe,
                probes: sharing.probes(limit.scope),
                users,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::journey::Schedule;

    #[test]
    fn counts_runs_in_the_worst_window() {
        let every_minute = Schedule::parse("* * * * *").unwrap();
        assert_eq!(max_runs_in_window(&every_minute, Duration::from_secs(30 * 60), usize::MAX), 30);
        let hourly = Schedule::parse("0 * * * *").unwrap();
        assert_eq!(max_runs_in_window(&hourly, Duration::from_secs(3 * 3600), usize::MAX), 3);
        let burst = Schedule::parse("0-9 3 * * *").unwrap();
        assert_eq!(max_runs_in_window(&burst, Duration::from_secs(30 * 60), usize::MAX), 10);
    }

    #[test]
    fn gaps_are_the_shortest_and_longest_between_firings() {
        let gaps = |s: &str| gaps(&Schedule::parse(s).unwrap(), usize::MAX);
        assert_eq!(gaps("*/5 * * * *"), Some((Duration::from_secs(300), Duration::from_secs(300))));
        assert_eq!(gaps("0,50 * * * *"), Some((Duration::from_secs(600), Duration::from_secs(3000))));
        assert_eq!(gaps("0 9 * * 1"), Some((Duration::from_secs(7 * 86_400), Duration::from_secs(7 * 86_400))));
        assert_eq!(gaps("0 9 1 1 *"), None);
    }

    fn journey(text: &str) -> Journey {
        let (journey, diagnostics) = crate::spec::parse_journey_str(std::path::Path::new("t.yaml"), text);
        journey.unwrap_or_else(|| panic!("{diagnostics}"))
    }

    fn row<'a>(budget: &'a [Budget], instance: &str, limit: Limit) -> &'a Budget {
        budget.iter().find(|b| b.instance == instance && b.limit == limit).expect("a row per instance and limit")
    }

    const READ_EVERY_MINUTE: &str = "name: read\ninstance: main\nschedule: '* * * * *'\nslo: { availability: 99% }\nsteps:\n  - name: home\n    request: { path: /api/v1/timelines/home }\n";

    #[test]
    fn probes_sharing_a_token_or_an_account_add_up_against_its_limits() {
        let journeys = [journey(READ_EVERY_MINUTE)];
        let sharing = Sharing { account: 3, token: 1 };
        let budget = budget(&journeys, &|_, _| (LIMITS.to_vec(), sharing));
        // Five runs in five minutes, and the agent's hourly sweep (2 reads, 1 delete).
        let per_token = row(&budget, "main", API_CALLS);
        assert_eq!((per_token.per_probe, per_token.probes, per_token.total()), (5 + 3, 1, 8));
        let per_account = row(&budget, "main", ACCOUNT_API_CALLS);
        assert_eq!((per_account.per_probe, per_account.probes, per_account.total()), (8, 3, 24));
        let shared_token = budget_for(&journeys, Sharing { account: 3, token: 3 });
        assert_eq!(row(&shared_token, "main", API_CALLS).total(), 24);
    }

    fn budget_for(journeys: &[Journey], sharing: Sharing) -> Vec<Budget> {
        budget(journeys, &|_, _| (LIMITS.to_vec(), sharing))
    }

    #[test]
    fn the_sweep_after_each_run_that_posts_marked_statuses_is_counted() {
        let marked = journey(
            "name: post\ninstance: main\nschedule: '*/10 * * * *'\nslo: { availability: 99% }\nsteps:\n  - name: post\n    request: { method: POST, path: /api/v1/statuses, form: { status: 'x ${nonce}' } }\n    capture: { id: $.id }\ncleanup:\n  - name: delete\n    request: { method: DELETE, path: '/api/v1/statuses/${id}' }\n",
        );
        assert_eq!(leaves_statuses_on(&marked), vec!["main".to_owned()]);
        let budget = budget_for(std::slice::from_ref(&marked), Sharing::default());
        let deletes = row(&budget, "main", DELETES);
        // Three runs in half an hour, each deleting its post, each followed by a sweep.
        assert_eq!(deletes.users, vec![(User::Journey(0), 3), (User::Sweep, 3 * u64::from(SWEEP_MAX_DELETES))]);
        let statuses = row(&budget, "main", STATUSES);
        assert_eq!(statuses.per_probe, 18);

        let unmarked = journey(&READ_EVERY_MINUTE.replace("name: read", "name: unmarked").replace(
            "request: { path: /api/v1/timelines/home }",
            "request: { method: POST, path: /api/v1/statuses, form: { status: 'no marker' } }",
        ));
        assert!(leaves_statuses_on(&unmarked).is_empty(), "the sweep deletes only marked statuses");
    }

    #[test]
    fn a_step_run_only_when_something_is_missing_counts_once_per_window() {
        let keeps = journey(
            "name: keeps\ninstance: main\nschedule: '* * * * *'\nslo: { availability: 99% }\nsteps:\n  - name: find\n    request: { path: /api/v1/timelines/home }\n    capture: { id: { json: '$[0].id', optional: true } }\n  - name: create\n    if_missing: id\n    request: { method: POST, path: /api/v1/statuses, form: { status: standing } }\n    capture: { id: $.id }\n",
        );
        let budget = budget_for(std::slice::from_ref(&keeps), Sharing::default());
        assert_eq!(row(&budget, "main", STATUSES).per_probe, 1, "one standing status per window, not one per run");
        assert_eq!(row(&budget, "main", API_CALLS).users[0], (User::Journey(0), 5 + 1));
    }

    #[test]
    fn the_bundled_journeys_fit_three_regions_sharing_each_account_with_a_token_each() {
        let journeys = crate::spec::bundled::journeys().unwrap_or_else(|d| panic!("{d}"));
        let budget = budget_for(&journeys, Sharing { account: 3, token: 1 });
        let over: Vec<String> = budget
            .iter()
            .filter(|b| b.exceeded())
            .map(|b| format!("{} {} per {}: {}", b.instance, b.limit.what, b.limit.scope.as_str(), b.total()))
            .collect();
        assert!(over.is_empty(), "{over:?}");
        // And the check can fail: three regions on one token is too much.
        let shared = budget_for(&journeys, Sharing { account: 3, token: 3 });
        assert!(shared.iter().any(|b| b.exceeded() && b.limit == API_CALLS));
    }

    #[test]
    fn each_probe_account_has_its_own_budget_and_the_address_is_shared_by_all() {
        let posting = journey(
            "name: post\ninstance: main\naccounts: all\nschedule: '*/10 * * * *'\nslo: { availability: 99% }\nsteps:\n  - name: instance\n    request: { path: /api/v2/instance, auth: false }\n  - name: post\n    request: { method: POST, path: /api/v1/statuses, form: { status: 'x ${nonce}' } }\n    capture: { id: $.id }\ncleanup:\n  - name: delete\n    request: { method: DELETE, path: '/api/v1/statuses/${id}' }\n",
        );
        let reading = journey(&READ_EVERY_MINUTE.replace("instance: main\n", "instance: main\naccounts: [busy]\n"));
        let runs = crate::spec::accounts::runs(&[posting, reading], &|_| vec!["probe".to_owned(), "busy".to_owned()]);
        // busy is shared by three regions, the primary account by one.
        let sharing = |_: &str, account: Option<&str>| {
            let probes = if account == Some("busy") { 3 } else { 1 };
            (LIMITS.to_vec(), Sharing { account: probes, token: 1 })
        };
        let budget = budget(&runs, &sharing);
        let row = |account: Option<&str>, limit: Limit| {
            budget
                .iter()
                .find(|b| b.account.as_deref() == account && b.limit == limit)
                .unwrap_or_else(|| panic!("a row for {account:?} {}", limit.what))
        };
        // Each account posts three times in half an hour and is swept after each run.
        assert_eq!(row(None, DELETES).per_probe, 3 + 3);
        assert_eq!((row(Some("busy"), DELETES).per_probe, row(Some("busy"), DELETES).total()), (6, 18));
        // busy also reads every minute: 5 calls in 5 minutes more than the primary account.
        let (primary_calls, busy_calls) = (row(None, API_CALLS).per_probe, row(Some("busy"), API_CALLS).per_probe);
        assert_eq!(busy_calls, primary_calls + 5, "{budget:#?}");
        assert_eq!(row(Some("busy"), ACCOUNT_API_CALLS).total(), 3 * busy_calls);
        // Calls without a token leave from the probe's one address, whichever account's run makes them.
        let per_address: Vec<&Budget> = budget.iter().filter(|b| b.limit == UNAUTHENTICATED_API_CALLS).collect();
        assert_eq!(per_address.len(), 1);
        assert_eq!((per_address[0].account.as_deref(), per_address[0].per_probe), (None, 2));
        assert_eq!(leaves_statuses_as(&runs[1]), vec![("main".to_owned(), Some("busy".to_owned()))]);
    }

    #[test]
    fn classifies_requests_like_mastodon() {
        use http::Method;
        assert!(counted(&Method::POST, "/api/v1/statuses", true).contains(&Counted::Statuses));
        assert!(counted(&Method::DELETE, "/api/v1/statuses/${id}", true).contains(&Counted::Deletes));
        assert!(counted(&Method::POST, "/api/v1/statuses/${id}/unreblog", true).contains(&Counted::Deletes));
        assert!(counted(&Method::POST, "/api/v2/media", true).contains(&Counted::Media));
        assert_eq!(counted(&Method::GET, "/api/v1/timelines/home", true), vec![Counted::ApiCalls]);
        assert_eq!(counted(&Method::POST, "/api/v1/statuses/${id}/favourite", true), vec![Counted::ApiCalls]);
        assert_eq!(counted(&Method::POST, "/api/v1/statuses/${id}/unfavourite", true), vec![Counted::ApiCalls]);
        assert_eq!(counted(&Method::GET, "/api/v2/instance", false), vec![Counted::UnauthenticatedApiCalls]);
        assert!(counted(&Method::GET, "/health", false).is_empty());
    }
}
