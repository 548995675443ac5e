//! The engine's data model (docs/engine.md 3): tasks, paths and outcomes.
//!
//! Money is integer micro-USD and every other quantity that leaves the engine is an integer,
//! so that receipts and event lines have one canonical byte form.

use serde::{Deserialize, Serialize};

/// What a task asks for. Kinds select the organ that handles the task, the cache policy and
/// the daily rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Chat,
    Query,
    Action,
    Graph,
    Maintenance,
    Anomaly,
    Summary,
}

impl Kind {
    /// Every kind, in the order of `index`.
    pub const ALL: [Kind; 7] =
        [Kind::Chat, Kind::Query, Kind::Action, Kind::Graph, Kind::Maintenance, Kind::Anomaly, Kind::Summary];
    /// Number of kinds, for per-kind arrays.
    pub const COUNT: usize = Self::ALL.len();

    /// Dense index of this kind, for per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in files and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::Query => "query",
            Kind::Action => "action",
            Kind::Graph => "graph",
            Kind::Maintenance => "maintenance",
            Kind::Anomaly => "anomaly",
            Kind::Summary => "summary",
        }
    }

    /// Parses the name used in files and events.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// How much a task's requester is trusted; low authority raises the router's uncertainty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Authority {
    Low,
    Medium,
    High,
}

impl Authority {
    /// The name used in files and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Authority::Low => "low",
            Authority::Medium => "medium",
            Authority::High => "high",
        }
    }

    /// Parses the name used in files and events.
    pub fn parse(name: &str) -> Option<Authority> {
        [Authority::Low, Authority::Medium, Authority::High].into_iter().find(|a| a.as_str() == name)
    }
}

/// One unit of work (docs/engine.md 3.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Unique per run.
    pub task_id: u64,
    /// Arrival time, ms from scenario start.
    pub at_ms: u64,
    /// What the task asks for.
    pub kind: Kind,
    /// Free label, e.g. `guest`.
    pub domain: String,
    /// Drift score in [0, 1], the valve's input.
    pub drift: f64,
    /// 0..=10.
    pub priority: u8,
    /// Trust in the requester.
    pub authority: Authority,
    /// A hard gate to the deep path.
    pub needs_planning: bool,
    /// Context tokens requested.
    pub tokens_in: u32,
    /// Tokens the model would generate if not capped.
    pub tokens_out: u32,
    /// Cache key: equal signatures are the same request.
    pub signature: u64,
}

/// The columns of the canonical trace format (docs/harness.md 5.2): the fields of a task, in order.
pub const TASK_COLUMNS: [&str; 11] = [
    "task_id",
    "at_ms",
    "kind",
    "domain",
    "drift",
    "priority",
    "authority",
    "needs_planning",
    "tokens_in",
    "tokens_out",
    "signature",
];

/// The columns a capture (`serve --capture`) has after `TASK_COLUMNS`: what the live
/// engine decided. `reason` is the router's reason, or the rejection's; `valve_seq` is the
/// task's place in the valve's order (empty when it never reached the valve); `client` is
/// the name of the caller's token (empty without authentication).
pub const CAPTURE_DECISION_COLUMNS: [&str; 6] = ["status", "path", "reason", "valve_seq", "latency_ms", "client"];

/// A CSV field, quoted when it has to be (RFC 4180).
fn csv_field(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\"")).into()
    } else {
        text.into()
    }
}

impl Task {
    /// The task as a row of the canonical trace format, without the line end.
    pub fn csv_row(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{}",
            self.task_id,
            self.at_ms,
            self.kind.as_str(),
            csv_field(&self.domain),
            self.drift,
            self.priority,
            self.authority.as_str(),
            self.needs_planning,
            self.tokens_in,
            self.tokens_out,
            self.signature
        )
    }
}

/// The two execution paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    Fast,
    Deep,
}

impl Path {
    /// Both paths, in the order of `index`.
    pub const ALL: [Path; 2] = [Path::Fast, Path::Deep];

    /// The name used in files and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Fast => "fast",
            Path::Deep => "deep",
        }
    }

    /// Parses the name used in files and events.
    pub fn parse(name: &str) -> Option<Path> {
        Path::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// Dense index, for per-path arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One value per path, indexed by `Path` (serialised as `[fast, deep]`, the form the
/// per-path arrays it replaces had).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "[T; 2]", into = "[T; 2]")]
#[serde(bound(serialize = "T: Clone + Serialize", deserialize = "T: Deserialize<'de>"))]
pub struct PerPath<T> {
    pub fast: T,
    pub deep: T,
}

impl<T> PerPath<T> {
    /// The same value for both paths.
    pub fn both(value: T) -> PerPath<T>
    where
        T: Clone,
    {
        PerPath { fast: value.clone(), deep: value }
    }

    /// The value of each path from a function of the path.
    pub fn from_fn(mut f: impl FnMut(Path) -> T) -> PerPath<T> {
        PerPath { fast: f(Path::Fast), deep: f(Path::Deep) }
    }

    /// Each path with its value, fast first.
    pub fn iter(&self) -> impl Iterator<Item = (Path, &T)> {
        [(Path::Fast, &self.fast), (Path::Deep, &self.deep)].into_iter()
    }

    /// The values, fast first.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        [&self.fast, &self.deep].into_iter()
    }

    /// The values to change, fast first.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        [&mut self.fast, &mut self.deep].into_iter()
    }
}

impl<T: std::ops::Add<Output = T> + Copy> PerPath<T> {
    /// Both values added.
    pub fn total(&self) -> T {
        self.fast + self.deep
    }
}

impl<T> std::ops::Index<Path> for PerPath<T> {
    type Output = T;
    fn index(&self, path: Path) -> &T {
        match path {
            Path::Fast => &self.fast,
            Path::Deep => &self.deep,
        }
    }
}

impl<T> std::ops::IndexMut<Path> for PerPath<T> {
    fn index_mut(&mut self, path: Path) -> &mut T {
        match path {
            Path::Fast => &mut self.fast,
            Path::Deep => &mut self.deep,
        }
    }
}

impl<T> From<[T; 2]> for PerPath<T> {
    fn from([fast, deep]: [T; 2]) -> PerPath<T> {
        PerPath { fast, deep }
    }
}

impl<T> From<PerPath<T>> for [T; 2] {
    fn from(p: PerPath<T>) -> [T; 2] {
        [p.fast, p.deep]
    }
}

/// Why a task was refused (docs/engine.md 3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    CostCeiling,
    DailyBudget,
    RateLimit,
    Overload,
    Halted,
}

impl RejectReason {
    /// Every reason, for summaries.
    pub const ALL: [RejectReason; 5] = [
        RejectReason::CostCeiling,
        RejectReason::DailyBudget,
        RejectReason::RateLimit,
        RejectReason::Overload,
        RejectReason::Halted,
    ];

    /// The name used in files and events.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::CostCeiling => "cost_ceiling",
            RejectReason::DailyBudget => "daily_budget",
            RejectReason::RateLimit => "rate_limit",
            RejectReason::Overload => "overload",
            RejectReason::Halted => "halted",
        }
    }

    /// Parses the name used in files and events.
    pub fn parse(name: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// The terminal outcome of a task: exactly one per admitted or rejected task (docs/engine.md 3.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// `ttft_ms`: from the coordinator receiving the task to the answer's first token
    /// (at most `latency_ms`; equal for a cached answer, which comes whole).
    Completed {
        path: Path,
        latency_ms: u64,
        ttft_ms: u64,
        cost_micro_usd: u64,
        tokens_in: u32,
        tokens_out: u32,
        cache_hit: bool,
    },
    Rejected {
        reason: RejectReason,
    },
    Failed {
        path: Path,
        error: String,
    },
}

/// Time per output token of a completed answer in milliseconds: its decoding time
/// (`latency_ms - ttft_ms`) over the tokens after the first; `None` when there is no
/// decoding to measure (a cached answer, or fewer than two output tokens).
pub fn tpot_ms(latency_ms: u64, ttft_ms: u64, tokens_out: u32, cache_hit: bool) -> Option<f64> {
    (!cache_hit && tokens_out >= 2).then(|| latency_ms.saturating_sub(ttft_ms) as f64 / f64::from(tokens_out - 1))
}

impl Outcome {
    pub fn status(&self) -> Status {
        match self {
            Outcome::Completed { .. } => Status::Completed,
            Outcome::Rejected { .. } => Status::Rejected,
            Outcome::Failed { .. } => Status::Failed,
        }
    }
}

/// How a task ended: the `status` of an outcome event and the `outcome` of a receipt,
/// serialised as `completed`, `rejected` or `failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Completed,
    Rejected,
    Failed,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Completed, Status::Rejected, Status::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
        }
    }
}
