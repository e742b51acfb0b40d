//! The arithmetic of the gateway's served traffic: requests counted by status ([`Tally`]), one
//! scrape summed ([`Scrape`]), the increase from one scrape to the next and over a window
//! ([`Counts`]), the shares and quantiles SPEC names, and the wording of a warn.
//!
//! Memory is bounded whatever the gateway sends: a scrape is summed into at most
//! [`MAX_TRACKED_GROUPS`] routes (the rest straight into `other`), route names are cut to
//! [`MAX_GROUP_NAME`] bytes, a histogram to [`MAX_BUCKETS`] bounds; what a step or a window keeps
//! is at most [`MAX_GROUPS`] routes.

use std::borrow::Cow;
use std::collections::HashMap;

/// The most routes (upstreams, services) a step or a window names; the rest are summed as
/// `other` (SPEC: "at most 10 groups are kept").
pub(crate) const MAX_GROUPS: usize = 10;

/// The most distinct route values one scrape is summed into; samples of further values go to
/// `other`. With 100k routes in an exposition the map stays this size, and it is what ranks the
/// routes by what they served since the previous scrape.
pub(crate) const MAX_TRACKED_GROUPS: usize = 1024;

/// A route's name as kept and shown, in bytes: label values come from the gateway and end up
/// in reasons, which are one short line.
pub(crate) const MAX_GROUP_NAME: usize = 128;

/// The most distinct `le` bounds of a latency histogram (classic histograms have a few dozen;
/// Micrometer's percentile histograms about 70): past this no quantile is computed.
pub(crate) const MAX_BUCKETS: usize = 128;

/// What a status label's value says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Code(u16),
    /// 1 to 5.
    Class(u8),
    /// No status: HAProxy's `other`, Spring's `NA`, an empty or odd value.
    Unknown,
}

/// Reads a status value: `503`, `5xx` / `5XX`, or Envoy's bare class digit `5`.
pub(crate) fn classify(value: &str) -> Status {
    match value.as_bytes() {
        [b'1'..=b'5', b'0'..=b'9', b'0'..=b'9'] => value.parse().map_or(Status::Unknown, Status::Code),
        [c @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] | [c @ b'1'..=b'5'] => Status::Class(c - b'0'),
        _ => Status::Unknown,
    }
}

/// Requests counted by status: one scrape's cumulative counts, or the increase over a step or
/// a window. Every field is a count of requests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Tally {
    /// Every request, those without a known status included.
    pub(crate) requests: f64,
    /// By class, 1xx to 5xx.
    pub(crate) classes: [f64; 5],
    pub(crate) unauthorized: f64,
    pub(crate) forbidden: f64,
    pub(crate) throttled: f64,
    /// Requests whose status came only as a class: while there are any, 401, 403 and 429 are
    /// not known.
    pub(crate) class_only: f64,
    /// Requests of no known status (HAProxy's `other`, Caddy 2.6's handler errors).
    pub(crate) no_status: f64,
}

impl Tally {
    pub(super) fn count(&mut self, status: Status, n: f64) {
        self.requests += n;
        match status {
            Status::Code(code) => {
                self.classes[usize::from(code / 100 - 1)] += n;
                match code {
                    401 => self.unauthorized += n,
                    403 => self.forbidden += n,
                    429 => self.throttled += n,
                    _ => {}
                }
            }
            Status::Class(class) => {
                self.classes[usize::from(class - 1)] += n;
                self.class_only += n;
            }
            Status::Unknown => self.no_status += n,
        }
    }

    fn fields(&self) -> [f64; 11] {
        let [a, b, c, d, e] = self.classes;
        [
            self.requests,
            a,
            b,
            c,
            d,
            e,
            self.unauthorized,
            self.forbidden,
            self.throttled,
            self.class_only,
            self.no_status,
        ]
    }

    fn from_fields(f: [f64; 11]) -> Tally {
        Tally {
            requests: f[0],
            classes: [f[1], f[2], f[3], f[4], f[5]],
            unauthorized: f[6],
            forbidden: f[7],
            throttled: f[8],
            class_only: f[9],
            no_status: f[10],
        }
    }

    fn zip(&self, other: &Tally, f: impl Fn(f64, f64) -> f64) -> Tally {
        let (a, b) = (self.fields(), other.fields());
        Tally::from_fields(std::array::from_fn(|i| f(a[i], b[i])))
    }

    fn add(&mut self, other: &Tally) {
        *self = self.zip(other, |a, b| a + b);
    }

    /// What was counted from `before` to `self`. Fewer requests than before means the gateway
    /// restarted and counts from zero (as Prometheus' `increase`): all of `self` is new.
    fn since(&self, before: &Tally) -> Tally {
        if self.requests < before.requests {
            return *self;
        }
        self.zip(before, |now, then| (now - then).max(0.0))
    }

    /// `self` without `part`, never below zero (sums of floats, or a route that restarted on
    /// its own, must not make `other` negative).
    fn without(&self, part: &Tally) -> Tally {
        self.zip(part, |a, b| (a - b).max(0.0))
    }

    /// What ranks routes: the errors they served first, then their traffic.
    fn errors(&self) -> f64 {
        self.classes[3] + self.classes[4] + self.no_status
    }
}

/// A latency histogram's cumulative buckets in one scrape, or their increase.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) enum Buckets {
    /// The gateway exported no buckets (or none is configured).
    #[default]
    Missing,
    /// More than [`MAX_BUCKETS`] distinct bounds: not read.
    TooMany,
    /// `(le in seconds, cumulative count)` summed over every series, sorted by `le`.
    Bounds(Vec<(f64, f64)>),
}

impl Buckets {
    /// The increase from `before`. Buckets absent before count from zero: gateways create
    /// their series on first use.
    fn since(&self, before: &Buckets) -> Buckets {
        let (Buckets::Bounds(now), Buckets::Bounds(then)) = (self, before) else {
            return self.clone();
        };
        let find = |le: f64| {
            then.binary_search_by(|(b, _)| b.total_cmp(&le))
                .ok()
                .map(|at| then[at].1)
        };
        // A bucket that went down means a restart: everything counted now is new.
        let reset = now.iter().any(|&(le, c)| find(le).is_some_and(|before| c < before));
        Buckets::Bounds(
            now.iter()
                .map(|&(le, c)| (le, if reset { c } else { c - find(le).unwrap_or(0.0) }))
                .collect(),
        )
    }

    fn add(&mut self, other: &Buckets) {
        match (&mut *self, other) {
            (_, Buckets::Missing) | (Buckets::TooMany, _) => {}
            (Buckets::Missing, _) | (_, Buckets::TooMany) => *self = other.clone(),
            // The usual case: every step of a window has the same bounds, added in one pass.
            (Buckets::Bounds(sum), Buckets::Bounds(more))
                if sum.len() == more.len() && sum.iter().zip(more).all(|(a, b)| a.0 == b.0) =>
            {
                for (into, (_, count)) in sum.iter_mut().zip(more) {
                    into.1 += count;
                }
            }
            (Buckets::Bounds(sum), Buckets::Bounds(more)) => {
                if !more.iter().all(|&(le, c)| add_bound(sum, le, c)) {
                    *self = Buckets::TooMany;
                }
            }
        }
    }
}

/// Adds `count` to the bucket `le` of sorted `bounds`; false when that needs a bound past
/// [`MAX_BUCKETS`]. Binary search: a scrape's buckets cost O(samples × log bounds).
pub(super) fn add_bound(bounds: &mut Vec<(f64, f64)>, le: f64, count: f64) -> bool {
    match bounds.binary_search_by(|(b, _)| b.total_cmp(&le)) {
        Ok(at) => bounds[at].1 += count,
        Err(_) if bounds.len() >= MAX_BUCKETS => return false,
        Err(at) => bounds.insert(at, (le, count)),
    }
    true
}

/// One scrape summed: the requests in total and per route, and the latency buckets.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scrape {
    /// The requests metric had a sample. Without one the counts are 0 (gateways create their
    /// series on first use), but a gateway that never exports it has no request rate at all.
    pub(crate) seen: bool,
    pub(crate) total: Tally,
    /// At most [`MAX_TRACKED_GROUPS`] routes; empty without `group_by`.
    pub(super) groups: HashMap<String, Tally>,
    /// Requests of routes past the cap: in `total`, in no group.
    pub(super) untracked: Tally,
    pub(crate) buckets: Buckets,
}

impl Scrape {
    /// The tally of one route, created while there is room; past [`MAX_TRACKED_GROUPS`] the
    /// requests go to `untracked`.
    pub(super) fn tally_for(&mut self, raw: &str) -> &mut Tally {
        let name = group_name(raw);
        if !self.groups.contains_key(name.as_ref()) && self.groups.len() >= MAX_TRACKED_GROUPS {
            return &mut self.untracked;
        }
        self.groups.entry(name.into_owned()).or_default()
    }

    fn saturated(&self) -> bool {
        self.groups.len() >= MAX_TRACKED_GROUPS || self.untracked.requests > 0.0
    }

    /// What the gateway served from `before` to this scrape: the total, the [`MAX_GROUPS`]
    /// routes with the most errors (then the most requests), and the rest as `other`. A route
    /// absent from `before` started from zero (gateways create series on first use), unless
    /// `before` had run out of room for routes: then its count is not known and it stays in
    /// `other`.
    pub(crate) fn since(&self, before: &Scrape) -> Counts {
        let buckets = self.buckets.since(&before.buckets);
        let total = self.total.since(&before.total);
        let restarted = self.total.requests < before.total.requests;
        let groups = self.groups.iter().filter_map(|(name, now)| {
            let increase = match before.groups.get(name) {
                _ if restarted => *now,
                Some(then) => now.since(then),
                None if before.saturated() => return None,
                None => *now,
            };
            Some((name.as_str(), increase))
        });
        Counts {
            seen: self.seen,
            ..Counts::ranked(total, groups, buckets)
        }
    }

    /// This scrape as the next step's start: a histogram that was not read (more than
    /// [`MAX_BUCKETS`] bounds) keeps the buckets read before it, so that the next step counts
    /// from those rather than from zero.
    pub(crate) fn keeping_buckets_of(mut self, before: Scrape) -> Scrape {
        if self.buckets == Buckets::TooMany && matches!(before.buckets, Buckets::Bounds(_)) {
            self.buckets = before.buckets;
        }
        self
    }
}

/// Requests over a step or a window: the total, at most [`MAX_GROUPS`] routes by name (most
/// errors first), the rest summed as `other`, and the latency buckets' increase.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Counts {
    /// The gateway exported its requests metric (at the end of a step, in some step of a
    /// window): `total` is a count, maybe 0, rather than nothing known.
    pub(crate) seen: bool,
    pub(crate) total: Tally,
    pub(crate) groups: Vec<(String, Tally)>,
    pub(crate) other: Tally,
    pub(crate) buckets: Buckets,
}

impl Counts {
    /// Keeps the [`MAX_GROUPS`] routes that matter most; `other` gets the rest, and whatever
    /// of `total` no kept route accounts for.
    fn ranked<'a>(total: Tally, groups: impl Iterator<Item = (&'a str, Tally)>, buckets: Buckets) -> Counts {
        let mut all: Vec<(&str, Tally)> = groups.collect();
        all.sort_by(|(an, a), (bn, b)| {
            b.errors()
                .total_cmp(&a.errors())
                .then(b.requests.total_cmp(&a.requests))
                .then(an.cmp(bn))
        });
        all.truncate(MAX_GROUPS);
        let mut kept = Tally::default();
        for (_, tally) in &all {
            kept.add(tally);
        }
        Counts {
            seen: false,
            total,
            other: total.without(&kept),
            groups: all.into_iter().map(|(n, t)| (n.to_owned(), t)).collect(),
            buckets,
        }
    }

    /// The sum of several steps (a window). A route kept in some steps and not in others
    /// counts by name only where it was kept: the steps rank by what each served, so a
    /// route that fails now is named from the step it starts failing.
    pub(crate) fn merge<'a>(steps: impl IntoIterator<Item = &'a Counts>) -> Counts {
        let mut total = Tally::default();
        let mut buckets = Buckets::Missing;
        let mut seen = false;
        let mut by_name: HashMap<&str, Tally> = HashMap::new();
        for step in steps {
            seen |= step.seen;
            total.add(&step.total);
            buckets.add(&step.buckets);
            for (name, tally) in &step.groups {
                by_name.entry(name.as_str()).or_default().add(tally);
            }
        }
        Counts {
            seen,
            ..Counts::ranked(total, by_name.into_iter(), buckets)
        }
    }

    /// The route with the most of `warned` and its part of them; none without routes or
    /// without any such request.
    pub(crate) fn top(&self, warned: Warned) -> Option<(&str, f64)> {
        let all = warned.count(&self.total);
        if all <= 0.0 {
            return None;
        }
        self.groups
            .iter()
            .map(|(name, tally)| (name.as_str(), warned.count(tally)))
            .filter(|(_, n)| *n > 0.0)
            .max_by(|(an, a), (bn, b)| a.total_cmp(b).then(bn.cmp(an)))
            .map(|(name, n)| (name, n / all))
    }
}

/// The shares SPEC names (`vigil_gateway_response_ratio{class}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ratio {
    Server5xx,
    Client4xx,
    Unauthorized401,
    Forbidden403,
    Throttled429,
}

impl Ratio {
    pub(crate) const ALL: [Ratio; 5] = [
        Ratio::Server5xx,
        Ratio::Client4xx,
        Ratio::Unauthorized401,
        Ratio::Forbidden403,
        Ratio::Throttled429,
    ];
    pub(super) const CODES: [Ratio; 3] = [Ratio::Unauthorized401, Ratio::Forbidden403, Ratio::Throttled429];

    /// The `class` label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Ratio::Server5xx => "5xx",
            Ratio::Client4xx => "4xx",
            Ratio::Unauthorized401 => "401",
            Ratio::Forbidden403 => "403",
            Ratio::Throttled429 => "429",
        }
    }

    pub(super) fn needs_codes(self) -> bool {
        Ratio::CODES.contains(&self)
    }

    pub(crate) fn count(self, tally: &Tally) -> f64 {
        match self {
            Ratio::Server5xx => tally.classes[4],
            Ratio::Client4xx => tally.classes[3],
            Ratio::Unauthorized401 => tally.unauthorized,
            Ratio::Forbidden403 => tally.forbidden,
            Ratio::Throttled429 => tally.throttled,
        }
    }
}

/// The quantiles SPEC names (`vigil_gateway_request_duration_quantile_seconds{quantile}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quantile {
    P50,
    P95,
    P99,
}

impl Quantile {
    pub(crate) const ALL: [Quantile; 3] = [Quantile::P50, Quantile::P95, Quantile::P99];

    /// The `quantile` label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Quantile::P50 => "0.5",
            Quantile::P95 => "0.95",
            Quantile::P99 => "0.99",
        }
    }

    pub(crate) fn value(self) -> f64 {
        match self {
            Quantile::P50 => 0.5,
            Quantile::P95 => 0.95,
            Quantile::P99 => 0.99,
        }
    }
}

/// A figure of the gateway's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrafficFigure {
    Ratio(Ratio),
    Quantile(Quantile),
}

/// A share or a quantile, or why there is none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Share {
    Value(f64),
    /// No request over the window: nothing to divide by.
    NoRequests,
    /// The gateway cannot give it (shown as "unavailable", never as 0).
    Unavailable(&'static str),
}

/// What a warn is about, and how its reason names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Warned {
    /// `error_ratio_warn`.
    Errors5xx,
    /// `unauthorized_ratio_warn`: 401 and 403 together.
    Unauthorized,
    /// `throttled_ratio_warn`.
    Throttled,
}

impl Warned {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Warned::Errors5xx => "5xx",
            Warned::Unauthorized => "401/403",
            Warned::Throttled => "429",
        }
    }

    pub(crate) fn count(self, tally: &Tally) -> f64 {
        match self {
            Warned::Errors5xx => tally.classes[4],
            Warned::Unauthorized => tally.unauthorized + tally.forbidden,
            Warned::Throttled => tally.throttled,
        }
    }
}

/// `5xx 8.1% of requests over 5m (route /orders: 92% of them)`: the SPEC's form, the
/// contributor part only with `group_by` and a route that had some.
pub(crate) fn describe(
    warned: Warned,
    share: f64,
    window: &str,
    group_by: Option<&str>,
    top: Option<(&str, f64)>,
) -> String {
    let mut reason = format!("{} {:.1}% of requests over {window}", warned.label(), share * 100.0);
    if let (Some(label), Some((name, part))) = (group_by, top) {
        let name = if name.is_empty() { "(none)" } else { name };
        reason.push_str(&format!(" ({label} {name}: {:.0}% of them)", part * 100.0));
    }
    reason
}

/// `histogram_quantile`: linear interpolation inside the bucket holding the rank; the highest
/// finite bound when the rank falls in `+Inf`; none without requests or without a finite bound.
pub(crate) fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last().map(|(_, c)| *c)?;
    if total <= 0.0 || buckets.iter().all(|(le, _)| le.is_infinite()) {
        return None;
    }
    let rank = q * total;
    let mut previous = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(previous.0);
            }
            let in_bucket = count - previous.1;
            let fraction = if in_bucket > 0.0 {
                (rank - previous.1) / in_bucket
            } else {
                1.0
            };
            return Some(previous.0 + (le - previous.0) * fraction);
        }
        previous = (le, count);
    }
    Some(previous.0)
}

/// A counter's value as a count: a negative, NaN or infinite value (a broken or hostile
/// exposition) counts nothing rather than poisoning every sum.
pub(super) fn counter_value(value: f64) -> Option<f64> {
    (value.is_finite() && value >= 0.0).then_some(value)
}

pub(super) fn parse_le(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        text => text.parse::<f64>().ok().filter(|le| le.is_finite()),
    }
}

/// A route's name as kept: control characters replaced, at most [`MAX_GROUP_NAME`] bytes (cut on
/// a character boundary, with `…`). Borrowed when nothing needs changing, the usual case.
fn group_name(raw: &str) -> Cow<'_, str> {
    if raw.len() <= MAX_GROUP_NAME && !raw.chars().any(char::is_control) {
        return Cow::Borrowed(raw);
    }
    let mut name = String::with_capacity(MAX_GROUP_NAME + 3);
    for c in raw.chars() {
        if name.len() + c.len_utf8() > MAX_GROUP_NAME {
            name.push('…');
            break;
        }
        name.push(if c.is_control() { ' ' } else { c });
    }
    Cow::Owned(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_like_prometheus() {
        let buckets = [(0.5, 50.0), (1.0, 90.0), (2.0, 100.0), (f64::INFINITY, 100.0)];
        let p95 = quantile(0.95, &buckets).unwrap();
        assert!((p95 - 1.5).abs() < 1e-9, "{p95}");
        assert_eq!(quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 10.0)]), Some(1.0));
        assert_eq!(quantile(0.5, &[(f64::INFINITY, 0.0)]), None);
        assert_eq!(
            quantile(0.95, &[(f64::INFINITY, 10.0)]),
            None,
            "a lone +Inf is no latency"
        );
    }

    /// Steps with the same bounds are added in one pass; others bound by bound; the sums agree.
    #[test]
    fn buckets_add_up_whatever_their_bounds() {
        let mut same = Buckets::Bounds(vec![(0.1, 1.0), (f64::INFINITY, 2.0)]);
        same.add(&Buckets::Bounds(vec![(0.1, 3.0), (f64::INFINITY, 5.0)]));
        assert_eq!(same, Buckets::Bounds(vec![(0.1, 4.0), (f64::INFINITY, 7.0)]));
        let mut other = Buckets::Bounds(vec![(0.1, 1.0), (f64::INFINITY, 2.0)]);
        other.add(&Buckets::Bounds(vec![(0.05, 1.0), (0.1, 3.0), (f64::INFINITY, 5.0)]));
        assert_eq!(
            other,
            Buckets::Bounds(vec![(0.05, 1.0), (0.1, 4.0), (f64::INFINITY, 7.0)])
        );
        let mut missing = Buckets::Missing;
        missing.add(&same);
        assert_eq!(missing, same);
        missing.add(&Buckets::TooMany);
        assert_eq!(
            missing,
            Buckets::TooMany,
            "a step that could not be read spoils the window's"
        );
    }

    /// A scrape whose histogram had too many bounds leaves the previous buckets as the next
    /// step's start; a histogram that is missing counts from zero (a restart, a first use).
    #[test]
    fn an_unread_histogram_keeps_the_buckets_before_it() {
        let bounds = |n: f64| Buckets::Bounds(vec![(0.1, n), (f64::INFINITY, n)]);
        let scrape = |buckets: Buckets| Scrape {
            buckets,
            ..Scrape::default()
        };
        let kept = scrape(Buckets::TooMany).keeping_buckets_of(scrape(bounds(100.0)));
        assert_eq!(kept.buckets, bounds(100.0));
        assert_eq!(scrape(bounds(130.0)).since(&kept).buckets, bounds(30.0));
        let gone = scrape(Buckets::Missing).keeping_buckets_of(scrape(bounds(100.0)));
        assert_eq!(scrape(bounds(5.0)).since(&gone).buckets, bounds(5.0));
    }
}
