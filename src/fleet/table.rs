//! `vigil fleet`: every replica's `/readyz?verbose` in one table, for a person asking "is it one
//! pod or all of them?" (the runbook's first diagnosis step) without a `curl` per pod.
//!
//! The replicas are `fleet.peers` resolved as the agent resolves them (`peers::resolve`: this
//! replica's own address left out) plus this replica, asked over its `listen` address (loopback
//! when `listen` is a wildcard). Each is asked once, [`AT_ONCE`] at a time, each answer cut at
//! [`ANSWER_WITHIN`] (a replica that does not answer in time shows `?`), at most
//! [`MOST_REPLICAS`] of them, with the diag token when one is configured so that peers show
//! their reasons. What a replica sends is bounded in bytes ([`ANSWER_LIMIT`]) and every reason
//! shown is made one printable line: an answer may come from anything listening on that port.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt as _;
use http::HeaderValue;
use serde::Serialize;

use super::peers;
use crate::config::Config;
use crate::core::{fmt, text};

/// At most this many replicas are asked; more are counted and named as not asked.
pub(crate) const MOST_REPLICAS: usize = 256;

/// Replicas asked at the same time.
pub(crate) const AT_ONCE: usize = 16;

/// Each replica's answer (and each peer name's resolution) must come within this.
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// How much of an answer is read: a `/readyz?verbose` line is at most about 600 bytes, so this
/// is several hundred checks.
pub(crate) const ANSWER_LIMIT: usize = 256 * 1024;

/// The most of a reason shown, in bytes (vigil's own reasons are at most 512).
const REASON_SHOWN: usize = 512;

/// The terminal width the table is folded to.
pub(crate) const WIDTH: usize = 80;

/// `vigil fleet` could not ask anyone.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TableError {
    #[error(
        "fleet.peers: vigil fleet asks the replicas that [fleet] peers names, and this configuration has no [fleet] section; add one (README, \"The fleet\")"
    )]
    NoFleet,
}

/// One check's line in a replica's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Cell {
    pub(crate) name: String,
    pub(crate) status: CellStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

/// What a replica says of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CellStatus {
    Pass,
    Warn,
    Fail,
}

impl CellStatus {
    fn mark(self) -> &'static str {
        match self {
            CellStatus::Pass => "+",
            CellStatus::Warn => "warn",
            CellStatus::Fail => "-",
        }
    }
}

/// A replica that answered `/readyz?verbose`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Answer {
    pub(crate) status_code: u16,
    pub(crate) ready: bool,
    /// Its lines in order: its checks, then `fleet`, `drain` and `shutdown` when it shows them.
    pub(crate) checks: Vec<Cell>,
    /// The answer went on past [`ANSWER_LIMIT`]: the last lines are missing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) cut: bool,
    /// Its `Vigil-Instance`: which process answered, so that this replica reached again
    /// through a peer address is listed once.
    #[serde(skip)]
    pub(crate) instance: Option<String>,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Replica {
    /// As the peers know it (`fleet.peers` resolved; this replica's own address).
    pub(crate) address: String,
    pub(crate) this_replica: bool,
    pub(crate) answered: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub(crate) answer: Option<Answer>,
    /// Why there is no answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl Replica {
    fn ready(&self) -> Option<bool> {
        self.answer.as_ref().map(|a| a.ready)
    }

    fn cell(&self, name: &str) -> Option<&Cell> {
        self.answer.as_ref()?.checks.iter().find(|c| c.name == name)
    }
}

/// What `vigil fleet` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Report {
    pub(crate) replicas: Vec<Replica>,
    /// Replicas beyond [`MOST_REPLICAS`], not asked.
    pub(crate) not_asked: usize,
    /// Peer names that did not resolve.
    pub(crate) resolution_errors: Vec<String>,
}

/// The counts of the summary line and the JSON's `summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Summary {
    pub(crate) replicas: usize,
    pub(crate) ready: usize,
    pub(crate) not_ready: usize,
    pub(crate) no_answer: usize,
}

impl Report {
    /// Every replica answered, and ready: `vigil fleet` exits 0.
    pub(crate) fn all_ready(&self) -> bool {
        let summary = self.summary();
        summary.ready == summary.replicas && self.resolution_errors.is_empty() && self.not_asked == 0
    }

    pub(crate) fn summary(&self) -> Summary {
        let count = |wanted: Option<bool>| self.replicas.iter().filter(|r| r.ready() == wanted).count();
        Summary {
            replicas: self.replicas.len(),
            ready: count(Some(true)),
            not_ready: count(Some(false)),
            no_answer: count(None),
        }
    }

    /// Every check any replica listed, in the order first seen (this replica's first).
    pub(crate) fn checks(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for cell in self
            .replicas
            .iter()
            .filter_map(|r| r.answer.as_ref())
            .flat_map(|a| &a.checks)
        {
            if !names.contains(&cell.name.as_str()) {
                names.push(&cell.name);
            }
        }
        names
    }

    /// The same as the text, as one JSON document.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "ready": self.all_ready(),
            "summary": self.summary(),
            "checks": self.checks(),
            "replicas": self.replicas,
            "not_asked": self.not_asked,
            "resolution_errors": self.resolution_errors,
        })
    }

    /// The report for a terminal `width` columns wide: the summary line, the table (folded into
    /// blocks of columns when the checks do not fit), the legend, then each failing and warning
    /// cell's reason and each replica that did not answer.
    pub(crate) fn text(&self, width: usize) -> String {
        let mut out = String::new();
        let s = self.summary();
        let _ = write!(
            out,
            "{} replica{}: {} ready, {} not ready, {} no answer",
            s.replicas,
            if s.replicas == 1 { "" } else { "s" },
            s.ready,
            s.not_ready,
            s.no_answer
        );
        out.push_str(match (s.not_ready + s.no_answer, s.replicas) {
            (0, _) => "\n",
            (bad, all) if bad == all && all > 1 => " (all of them)\n",
            (1, all) if all > 1 => " (one replica)\n",
            _ => "\n",
        });
        out.push('\n');
        let checks = self.checks();
        let blocks = blocks(&self.replicas, &checks, width);
        for block in &blocks {
            table(&mut out, &self.replicas, block);
            out.push('\n');
        }
        out.push_str("* this replica; + pass, warn, - fail, ? no answer, blank: not listed there\n");
        let abbreviated: Vec<String> = blocks
            .iter()
            .flatten()
            .filter(|(name, shown)| name != shown)
            .map(|(name, shown)| format!("{shown} {name}"))
            .collect();
        let mut line = String::new();
        for (i, entry) in abbreviated.iter().enumerate() {
            let more = if i + 1 < abbreviated.len() { "," } else { "" };
            if !line.is_empty() && line.chars().count() + 1 + entry.chars().count() + more.len() > width {
                let _ = writeln!(out, "{line}");
                line = "        ".to_owned();
            }
            if line.is_empty() {
                line.push_str("columns:");
            }
            let _ = write!(line, " {entry}{more}");
        }
        if !line.is_empty() {
            let _ = writeln!(out, "{line}");
        }

        let mut reasons = String::new();
        for replica in &self.replicas {
            let address = shown_address(replica);
            if let Some(error) = &replica.error {
                let _ = writeln!(reasons, "{address}  no answer: {error}");
            }
            let Some(answer) = &replica.answer else { continue };
            for status in [CellStatus::Fail, CellStatus::Warn] {
                for cell in answer.checks.iter().filter(|c| c.status == status) {
                    let word = if status == CellStatus::Fail { "failed" } else { "warn" };
                    let reason = cell.reason.as_deref().unwrap_or("");
                    let _ = writeln!(reasons, "{address}  {} {word}: {reason}", cell.name);
                }
            }
            if answer.cut {
                let _ = writeln!(
                    reasons,
                    "{address}  answer cut at {}: its last lines are not shown",
                    fmt::bytes(ANSWER_LIMIT as u64)
                );
            }
        }
        if !reasons.is_empty() {
            out.push('\n');
            out.push_str(&reasons);
        }
        let withheld = self
            .replicas
            .iter()
            .filter_map(|r| r.answer.as_ref())
            .flat_map(|a| &a.checks)
            .any(|c| c.reason.as_deref() == Some(WITHHELD));
        if withheld {
            out.push_str("\nreasons withheld: those replicas did not take this one's diag token ([diag] token_file the same everywhere?)\n");
        }
        for error in &self.resolution_errors {
            let _ = writeln!(out, "\nnot asked: {error}");
        }
        if self.not_asked > 0 {
            let _ = writeln!(
                out,
                "\nnot asked: {} more replicas (at most {MOST_REPLICAS} are asked)",
                self.not_asked
            );
        }
        out
    }
}

/// What a replica shows in place of a reason to a peer without the token.
const WITHHELD: &str = "reason withheld";

fn shown_address(replica: &Replica) -> String {
    if replica.this_replica {
        format!("{} *", replica.address)
    } else {
        replica.address.clone()
    }
}

/// A column's header: the check's name, `upstream:orders` as `u:orders` when longer than `cap`
/// characters, and then cut in the middle with `…` (`u:pa…west`), keeping both ends, where names
/// of one kind differ. An abbreviated header is spelled out below the table.
fn header(name: &str, cap: usize) -> String {
    let mut shown = name.to_owned();
    if shown.chars().count() > cap
        && let Some((kind, rest)) = name.split_once(':')
        && let Some(first) = kind.chars().next()
    {
        shown = format!("{first}:{rest}");
    }
    let chars: Vec<char> = shown.chars().collect();
    if chars.len() > cap {
        let head = (cap.saturating_sub(1)) / 2;
        let tail = cap.saturating_sub(1) - head;
        shown =
            chars[..head].iter().collect::<String>() + "…" + &chars[chars.len() - tail..].iter().collect::<String>();
    }
    shown
}

/// One block of columns: the headers as shown, each with its check's name.
type Block<'a> = Vec<(&'a str, String)>;

/// The checks' columns folded into blocks that fit `width` beside the replica and ready columns.
/// Headers are cut to the widest cap (16 characters down to [`HEADER_MIN`]) at which five
/// columns fit, so that five checks fit one 80-column block beside IPv4 addresses; more checks
/// (or long IPv6 addresses) fold into further blocks, each repeating the replica column.
fn blocks<'a>(replicas: &[Replica], checks: &[&'a str], width: usize) -> Vec<Block<'a>> {
    let left = left_width(replicas) + READY_WIDTH;
    let room = width.saturating_sub(left);
    let mut cap = 16;
    while cap > HEADER_MIN {
        let widest: usize = {
            let mut widths: Vec<usize> = checks
                .iter()
                .map(|c| header(c, cap).chars().count().max(4) + 2)
                .collect();
            widths.sort_unstable_by(|a, b| b.cmp(a));
            widths.iter().take(5).sum()
        };
        if widest <= room {
            break;
        }
        cap -= 1;
    }
    let mut out: Vec<Block<'a>> = vec![Vec::new()];
    let mut used = 0;
    for check in checks {
        let shown = header(check, cap);
        let column = shown.chars().count().max(4) + 2;
        if used + column > room
            && let Some(last) = out.last()
            && !last.is_empty()
        {
            out.push(Vec::new());
            used = 0;
        }
        used += column;
        if let Some(last) = out.last_mut() {
            last.push((check, shown));
        }
    }
    out
}

/// Headers are never cut shorter: `u:ord…rs` still tells columns apart; narrower would not.
const HEADER_MIN: usize = 8;

/// `READY` and its two spaces.
const READY_WIDTH: usize = 7;

/// The replica column: the widest address with its ` *`, and two spaces.
fn left_width(replicas: &[Replica]) -> usize {
    replicas
        .iter()
        .map(|r| shown_address(r).chars().count())
        .chain(["REPLICA".len()])
        .max()
        .unwrap_or(0)
        + 2
}

fn table(out: &mut String, replicas: &[Replica], block: &Block<'_>) {
    let left = left_width(replicas) - 2;
    let widths: Vec<usize> = block.iter().map(|(_, shown)| shown.chars().count().max(4)).collect();
    let mut line = format!("{:<left$}  {:<5}", "REPLICA", "READY");
    for ((_, shown), width) in block.iter().zip(&widths) {
        let _ = write!(line, "  {shown:<width$}");
    }
    out.push_str(line.trim_end());
    out.push('\n');
    for replica in replicas {
        let ready = match replica.ready() {
            Some(true) => "yes",
            Some(false) => "no",
            None => "?",
        };
        let mut line = format!("{:<left$}  {ready:<5}", shown_address(replica));
        for ((name, _), width) in block.iter().zip(&widths) {
            let mark = match (&replica.answer, replica.cell(name)) {
                (None, _) => "?",
                (Some(_), Some(cell)) => cell.status.mark(),
                (Some(_), None) => "",
            };
            let _ = write!(line, "  {mark:<width$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// Parses a `/readyz?verbose` body: `[+]name ok`, `[+]name warn: …`, `[-]name failed: …`,
/// `[+]name excluded: ok`, then `readyz check passed|failed`. `None` when nothing in it is in
/// that form (not vigil's answer).
pub(crate) fn parse(body: &str) -> Option<Vec<Cell>> {
    let mut cells = Vec::new();
    let mut summary = false;
    for line in body.lines() {
        if line.starts_with("readyz check ") {
            summary = true;
            continue;
        }
        let Some(rest) = line.strip_prefix("[+]").or_else(|| line.strip_prefix("[-]")) else {
            continue;
        };
        let Some((name, said)) = rest.split_once(' ') else {
            continue;
        };
        let (status, reason) = if said == "ok" || said == "excluded: ok" {
            (CellStatus::Pass, None)
        } else if let Some(reason) = said.strip_prefix("warn: ") {
            (CellStatus::Warn, Some(reason))
        } else if let Some(reason) = said.strip_prefix("failed: ") {
            (CellStatus::Fail, Some(reason))
        } else {
            continue;
        };
        cells.push(Cell {
            name: text::one_line(name, 128).into_owned(),
            status,
            reason: reason.map(|r| text::one_line(r, REASON_SHOWN).into_owned()),
        });
    }
    (summary || !cells.is_empty()).then_some(cells)
}

/// Where this replica is asked (by `vigil fleet` and `vigil drain`): its `listen` address, over
/// loopback when that is a wildcard.
pub(crate) fn own_target(config: &Config) -> SocketAddr {
    let listen = config.listen;
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Asks every replica; see the module docs.
pub(crate) async fn gather(config: &Config) -> Result<Report, TableError> {
    let fleet = config.fleet.as_ref().ok_or(TableError::NoFleet)?;
    let resolution = peers::resolve(
        fleet,
        ANSWER_WITHIN,
        &peers::Lookups::default(),
        &peers::Resolution::default(),
        &std::collections::HashSet::new(),
    )
    .await;
    let own = own_target(config);
    let own_label = peers::own_address(fleet).unwrap_or(own);
    let mut targets: Vec<(SocketAddr, String, bool)> = vec![(own, own_label.to_string(), true)];
    targets.extend(
        resolution
            .peers
            .iter()
            .filter(|addr| **addr != own && **addr != own_label)
            .map(|addr| (*addr, addr.to_string(), false)),
    );
    let not_asked = targets.len().saturating_sub(MOST_REPLICAS);
    targets.truncate(MOST_REPLICAS);
    let authorization = config
        .diag
        .token
        .as_ref()
        .and_then(|token| HeaderValue::from_str(&format!("Bearer {}", token.expose())).ok());
    let authorization = authorization.as_ref();
    let mut replicas: Vec<Replica> = futures_util::stream::iter(targets)
        .map(|(addr, address, this_replica)| async move {
            let (answer, error) = match ask(addr, authorization).await {
                Ok(answer) => (Some(answer), None),
                Err(error) => (None, Some(error)),
            };
            Replica {
                address,
                this_replica,
                answered: answer.is_some(),
                answer,
                error,
            }
        })
        .buffered(AT_ONCE)
        .collect()
        .await;
    each_replica_once(&mut replicas);
    Ok(Report {
        replicas,
        not_asked,
        resolution_errors: resolution.errors,
    })
}

/// `GET /readyz?verbose` of one replica within [`ANSWER_WITHIN`].
async fn ask(addr: SocketAddr, authorization: Option<&HeaderValue>) -> Result<Answer, String> {
    let response = peers::get(
        addr,
        "/readyz?verbose",
        authorization,
        (ANSWER_WITHIN, ANSWER_WITHIN),
        ANSWER_LIMIT,
    )
    .await
    .map_err(|failure| text::one_line(&failure.error.to_string(), text::REASON_MAX).into_owned())?;
    // Only vigil's own answers count (SPEC, the fleet): a mesh sidecar's or a proxy's 503 is
    // no answer from the replica.
    let Some(instance) = response.headers.get(super::instance::HEADER) else {
        return Err(peers::not_vigil(response.status));
    };
    let instance = instance.to_str().ok().map(|id| text::one_line(id, 64).into_owned());
    let ready = match response.status {
        200 => true,
        503 => false,
        other => return Err(format!("answered {other}, not a /readyz answer")),
    };
    let body = String::from_utf8_lossy(&response.body);
    let checks = parse(&body).ok_or_else(|| format!("answered {} without a /readyz?verbose line", response.status))?;
    Ok(Answer {
        status_code: response.status,
        ready,
        checks,
        cut: response.truncated,
        instance,
    })
}

/// Each replica once: a row whose `Vigil-Instance` answered already is left out (a peers name
/// that also resolves to this replica, a `listen` wildcard without `POD_IP`, a dual-stack
/// Service naming every pod by two addresses); this replica's own row is the one kept for it.
fn each_replica_once(replicas: &mut Vec<Replica>) {
    let instance = |r: &Replica| r.answer.as_ref().and_then(|a| a.instance.clone());
    let mut seen: HashSet<String> = replicas
        .iter()
        .filter(|r| r.this_replica)
        .filter_map(instance)
        .collect();
    replicas.retain(|r| {
        r.this_replica
            || match instance(r) {
                Some(id) => seen.insert(id),
                None => true,
            }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(name: &str, status: CellStatus, reason: Option<&str>) -> Cell {
        Cell {
            name: name.to_owned(),
            status,
            reason: reason.map(str::to_owned),
        }
    }

    fn replica(address: &str, this: bool, ready: bool, checks: Vec<Cell>) -> Replica {
        Replica {
            address: address.to_owned(),
            this_replica: this,
            answered: true,
            answer: Some(Answer {
                status_code: if ready { 200 } else { 503 },
                ready,
                checks,
                cut: false,
                instance: Some(address.to_owned()),
            }),
            error: None,
        }
    }

    fn silent(address: &str) -> Replica {
        Replica {
            address: address.to_owned(),
            this_replica: false,
            answered: false,
            answer: None,
            error: Some("timed out after 2s".to_owned()),
        }
    }

    #[test]
    fn readyz_lines_parse_and_anything_else_does_not() {
        let body = "[+]postgres ok\n[+]upstream:orders warn: p95 1.4s over 5m exceeds 1s\n\
                    [-]gateway failed: GET http://127.0.0.1:8080/healthz: connection refused\n\
                    [+]jwt excluded: ok\n[-]drain failed: taken out by hand: forensics (until 14:32:05Z)\n\
                    readyz check failed\n";
        let cells = parse(body).unwrap();
        assert_eq!(
            cells,
            vec![
                cell("postgres", CellStatus::Pass, None),
                cell("upstream:orders", CellStatus::Warn, Some("p95 1.4s over 5m exceeds 1s")),
                cell(
                    "gateway",
                    CellStatus::Fail,
                    Some("GET http://127.0.0.1:8080/healthz: connection refused")
                ),
                cell("jwt", CellStatus::Pass, None),
                cell(
                    "drain",
                    CellStatus::Fail,
                    Some("taken out by hand: forensics (until 14:32:05Z)")
                ),
            ]
        );
        assert_eq!(parse("ok\n"), None, "a plain /readyz is not the verbose form");
        assert_eq!(parse("<html>no healthy upstream</html>"), None);
        let hostile = parse("[-]x failed: \u{1b}[2Jgone\nreadyz check failed\n").unwrap();
        assert_eq!(hostile[0].reason.as_deref(), Some("\u{fffd}gone"));
    }

    fn five_checks() -> Vec<Cell> {
        vec![
            cell("postgres", CellStatus::Fail, Some("connection refused")),
            cell("gateway", CellStatus::Pass, None),
            cell("jwt", CellStatus::Pass, None),
            cell("upstream:orders", CellStatus::Warn, Some("p95 1.4s over 5m exceeds 1s")),
            cell("upstream:payments-eu-west", CellStatus::Pass, None),
        ]
    }

    #[test]
    fn five_checks_fit_eighty_columns_and_each_failing_cell_gives_its_reason() {
        let report = Report {
            replicas: vec![
                replica("10.244.12.131:9476", true, false, five_checks()),
                replica("10.244.7.9:9476", false, true, five_checks()[1..].to_vec()),
                silent("10.244.3.200:9476"),
            ],
            ..Report::default()
        };
        let text = report.text(WIDTH);
        for line in text.lines().take_while(|l| !l.starts_with('*')) {
            assert!(line.chars().count() <= 80, "{line:?} is wider than 80 columns:\n{text}");
        }
        assert!(
            text.starts_with("3 replicas: 1 ready, 1 not ready, 1 no answer\n"),
            "{text}"
        );
        let table: Vec<&str> = text.lines().skip(2).take(4).collect();
        assert_eq!(table.len(), 4, "{text}");
        assert!(
            table[0].starts_with("REPLICA") && table[0].contains("postgres"),
            "{text}"
        );
        assert!(table[0].contains("u:orders"), "{text}");
        assert!(table[1].starts_with("10.244.12.131:9476 *  no     -"), "{text}");
        assert!(table[3].starts_with("10.244.3.200:9476"), "{text}");
        assert_eq!(table[3].matches('?').count(), 6, "{text}");
        assert!(
            text.contains("\n10.244.12.131:9476 *  postgres failed: connection refused\n"),
            "{text}"
        );
        assert!(
            text.contains("10.244.7.9:9476  upstream:orders warn: p95 1.4s over 5m exceeds 1s\n"),
            "{text}"
        );
        assert!(
            text.contains("10.244.3.200:9476  no answer: timed out after 2s\n"),
            "{text}"
        );
        assert!(!report.all_ready());
        let json = report.json();
        assert_eq!(json["summary"]["not_ready"], 1);
        assert_eq!(json["replicas"][0]["checks"][0]["status"], "fail");
        assert_eq!(json["replicas"][2]["answered"], false);
        assert_eq!(json["checks"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn many_checks_fold_into_blocks_that_each_fit() {
        let checks: Vec<Cell> = (0..14)
            .map(|i| cell(&format!("upstream:service-{i}"), CellStatus::Pass, None))
            .collect();
        let report = Report {
            replicas: vec![
                replica("[fd00:10:244::12]:9476", true, true, checks.clone()),
                replica("[fd00:10:244::13]:9476", false, true, checks),
            ],
            ..Report::default()
        };
        assert!(report.all_ready());
        let text = report.text(WIDTH);
        let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("REPLICA")).collect();
        assert!(headers.len() >= 3, "folded into blocks:\n{text}");
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line:?}:\n{text}");
        }
        for i in 0..14 {
            let full = format!("upstream:service-{i}");
            let shown = header(&full, HEADER_MIN);
            assert!(text.contains(&format!("  {shown}")), "{full} has its column\n{text}");
            assert!(text.contains(&format!("{shown} {full}")), "and is spelled out\n{text}");
        }
    }

    #[test]
    fn a_long_name_is_cut_and_the_reason_names_it_in_full() {
        assert_eq!(header("postgres", 8), "postgres");
        assert_eq!(header("upstream:orders", 8), "u:orders");
        assert_eq!(header("upstream:payments-eu-west", 8), "u:p…west");
        assert_eq!(header("upstream:payments-eu-west", 12), "u:pay…u-west");
        assert_eq!(header("pod", 8), "pod");
    }
}
