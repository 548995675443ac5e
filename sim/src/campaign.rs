//! Campaign results (docs/harness.md 7): the seed ranges and shards a campaign covers, one JSON
//! line per seed, the summary per invariant, and the merge of shards.
//!
//! A campaign directory holds `campaign.json` (what was run: scenario, seeds, shard,
//! swarm), `campaign.jsonl` (one `SeedLine` per seed, ordered by seed) and `summary.md`.
//! Running the campaign is the CLI's business; this module only defines and combines what
//! it writes, so merges and tests read the same types.

use crate::invariant_id::InvariantId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// An inclusive range of seeds, written `A..B` (`A..=B` also reads), or one seed `A`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedRange {
    pub first: u64,
    pub last: u64,
}

/// The most seeds one campaign covers.
pub const MAX_SEEDS: u64 = 10_000_000;

impl SeedRange {
    /// Parses `1..1000`, `1..=1000` or `42`.
    pub fn parse(text: &str) -> Result<SeedRange, String> {
        let number = |s: &str| s.trim().parse::<u64>().map_err(|_| format!("{s:?} is not a seed (a whole number)"));
        let (first, last) = match text.split_once("..") {
            Some((a, b)) => (number(a)?, number(b.strip_prefix('=').unwrap_or(b))?),
            None => (number(text)?, number(text)?),
        };
        if first > last {
            return Err(format!("{text}: the first seed is after the last"));
        }
        if last - first >= MAX_SEEDS {
            return Err(format!("{text}: more than {MAX_SEEDS} seeds"));
        }
        Ok(SeedRange { first, last })
    }

    /// The seeds of shard `shard` (all of them without one), in order: the shard takes
    /// every n-th seed from its index, so shards of a range stay the same size give or take
    /// one and cost about the same.
    pub fn seeds(&self, shard: Option<Shard>) -> Vec<u64> {
        let Shard { index, count } = shard.unwrap_or(Shard { index: 1, count: 1 });
        (self.first..=self.last).filter(|s| (s - self.first) % count == index - 1).collect()
    }
}

impl std::fmt::Display for SeedRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.first, self.last)
    }
}

/// Shard `index` of `count` (`--shard 2/4`), counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Parses `i/n` with 1 <= i <= n <= 10000.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let (i, n) = text.split_once('/').ok_or_else(|| format!("{text:?}: a shard is written i/n, e.g. 2/4"))?;
        let parse = |s: &str| s.trim().parse::<u64>().map_err(|_| format!("{text:?}: {s:?} is not a whole number"));
        let (index, count) = (parse(i)?, parse(n)?);
        if count == 0 || count > 10_000 || index == 0 || index > count {
            return Err(format!("{text:?}: needs 1 <= i <= n <= 10000 (shards count from 1)"));
        }
        Ok(Shard { index, count })
    }
}

/// What a campaign directory is a run of (`campaign.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignInfo {
    /// The scenario file as given.
    pub scenario: String,
    pub scenario_name: String,
    pub scenario_sha256: String,
    pub seeds: SeedRange,
    /// `None` for a whole campaign or a merge.
    pub shard: Option<Shard>,
    /// `--swarm` was given (a scenario with `[chaos.swarm]` draws its plans either way).
    pub swarm: bool,
}

/// One seed's result: a line of `campaign.jsonl` (fields in sorted order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedLine {
    /// Every invariant whose verdict is `fail` (critical or not); `panic` or `error` when
    /// the simulation crashed or could not run.
    pub failed: Vec<String>,
    /// Hex SHA-256 of the run's fault plan.
    pub fault_plan: String,
    /// Faults in the plan.
    pub faults: u64,
    /// `PASS`, `PASS WITH CONDITIONS`, `FAIL`, or `ERROR` (the simulation panicked).
    pub outcome: String,
    /// Hex Merkle root of the run's event log.
    pub root: String,
    /// Score in hundredths, as a decimal string.
    pub score: String,
    pub seed: u64,
    /// Wall time of the run; the only field that differs between two runs of a seed.
    pub wall_ms: u64,
}

impl SeedLine {
    /// Whether the seed failed a critical invariant, or crashed the simulation.
    pub fn failed_critically(&self) -> bool {
        self.outcome == "ERROR" || self.failed.iter().any(|id| is_critical(id))
    }

    /// The line without its wall time: what must agree between two runs of a seed.
    pub fn without_wall_time(&self) -> SeedLine {
        SeedLine { wall_ms: 0, ..self.clone() }
    }
}

fn is_critical(id: &str) -> bool {
    InvariantId::parse(id).is_some_and(InvariantId::critical)
}

/// Reads a `campaign.jsonl`; errors name the file and the line.
pub fn read_lines(path: &Path) -> Result<Vec<SeedLine>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1)))
        .collect()
}

/// Writes lines in seed order, one JSON object each.
pub fn write_lines(path: &Path, lines: &[SeedLine]) -> std::io::Result<()> {
    let mut sorted: Vec<&SeedLine> = lines.iter().collect();
    sorted.sort_by_key(|l| l.seed);
    let mut text = String::with_capacity(lines.len() * 256);
    for line in sorted {
        text.push_str(&serde_json::to_string(line).expect("a line serialises"));
        text.push('\n');
    }
    std::fs::write(path, text)
}

/// Combines the lines of shards of one campaign: every seed of the range exactly once.
pub fn merge(infos: &[CampaignInfo], shards: Vec<Vec<SeedLine>>) -> Result<(CampaignInfo, Vec<SeedLine>), String> {
    let first = infos.first().ok_or("nothing to merge")?;
    for info in infos {
        if (info.scenario_sha256.as_str(), info.seeds, info.swarm)
            != (first.scenario_sha256.as_str(), first.seeds, first.swarm)
        {
            return Err(format!(
                "shards of different campaigns: {} seeds {}{} and {} seeds {}{}",
                first.scenario_name,
                first.seeds,
                if first.swarm { " swarm" } else { "" },
                info.scenario_name,
                info.seeds,
                if info.swarm { " swarm" } else { "" }
            ));
        }
    }
    let mut by_seed: BTreeMap<u64, SeedLine> = BTreeMap::new();
    for line in shards.into_iter().flatten() {
        if let Some(previous) = by_seed.get(&line.seed) {
            if previous.without_wall_time() != line.without_wall_time() {
                return Err(format!("seed {} appears twice with different results", line.seed));
            }
            return Err(format!("seed {} appears in two shards", line.seed));
        }
        by_seed.insert(line.seed, line);
    }
    let missing: Vec<u64> = first.seeds.seeds(None).into_iter().filter(|s| !by_seed.contains_key(s)).collect();
    if !missing.is_empty() {
        let shown: Vec<String> = missing.iter().take(10).map(u64::to_string).collect();
        return Err(format!(
            "{} seed(s) of {} missing (a shard not given, or not finished): {}{}",
            missing.len(),
            first.seeds,
            shown.join(", "),
            if missing.len() > 10 { ", ..." } else { "" }
        ));
    }
    if let Some(stray) = by_seed.keys().find(|s| !(first.seeds.first..=first.seeds.last).contains(*s)) {
        return Err(format!("seed {stray} is outside the campaign's range {}", first.seeds));
    }
    let info = CampaignInfo { shard: None, ..first.clone() };
    Ok((info, by_seed.into_values().collect()))
}

/// Per invariant: how many seeds failed it, and the first that did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub failures: u64,
    pub first_seed: Option<u64>,
}

/// The tally of every invariant (and `panic`) over `lines`.
pub fn tally(lines: &[SeedLine]) -> BTreeMap<String, Tally> {
    let mut tallies: BTreeMap<String, Tally> =
        InvariantId::ALL.iter().map(|id| (id.to_string(), Tally::default())).collect();
    let mut sorted: Vec<&SeedLine> = lines.iter().collect();
    sorted.sort_by_key(|l| l.seed);
    for line in sorted {
        for id in &line.failed {
            let t = tallies.entry(id.clone()).or_default();
            t.failures += 1;
            t.first_seed.get_or_insert(line.seed);
        }
    }
    tallies
}

/// The command that reproduces one seed of a campaign.
pub fn repro(info: &CampaignInfo, seed: u64) -> String {
    format!("cargo sim replay {} --seed {seed}{}", info.scenario, if info.swarm { " --swarm" } else { "" })
}

/// The summary in Markdown: counts, the table per invariant, and a repro line per failing
/// seed (the first 50; the rest are in `campaign.jsonl`).
pub fn summary(info: &CampaignInfo, lines: &[SeedLine]) -> String {
    let mut text = String::new();
    let shard = info.shard.map_or(String::new(), |s| format!(", shard {}/{}", s.index, s.count));
    let _ = writeln!(
        text,
        "## Campaign {}: seeds {}{}{}\n",
        info.scenario_name,
        info.seeds,
        if info.swarm { " --swarm" } else { "" },
        shard
    );
    let critical = lines.iter().filter(|l| l.failed_critically()).count();
    let liveness = lines.iter().filter(|l| !l.failed_critically() && !l.failed.is_empty()).count();
    let errors = lines.iter().filter(|l| l.outcome == "ERROR").count();
    let _ = writeln!(
        text,
        "{} seeds: {} passed every critical invariant; {critical} failed one ({errors} of them crashed the \
         simulation); {liveness} failed only non-critical ones (latency, success rates, freshness, or \
         recovery_time: a liveness failure).\n",
        lines.len(),
        lines.len() - critical
    );
    let _ = writeln!(text, "| invariant | critical | failing seeds | first failing seed |");
    let _ = writeln!(text, "| --- | --- | ---: | ---: |");
    for (id, t) in tally(lines) {
        let critical = if id == "panic" || id == "error" || is_critical(&id) { "yes" } else { "no" };
        let first = t.first_seed.map_or("-".to_string(), |s| s.to_string());
        let _ = writeln!(text, "| {id} | {critical} | {} | {first} |", t.failures);
    }
    let mut failing: Vec<&SeedLine> = lines.iter().filter(|l| !l.failed.is_empty()).collect();
    failing.sort_by_key(|l| l.seed);
    if !failing.is_empty() {
        let _ = writeln!(text, "\nReproduce:\n");
        let _ = writeln!(text, "```sh");
        for line in failing.iter().take(50) {
            let _ = writeln!(text, "{}   # {}", repro(info, line.seed), line.failed.join(", "));
        }
        if failing.len() > 50 {
            let _ = writeln!(text, "# ... {} more in campaign.jsonl", failing.len() - 50);
        }
        let _ = writeln!(text, "```");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seed: u64, failed: &[&str]) -> SeedLine {
        SeedLine {
            failed: failed.iter().map(|s| s.to_string()).collect(),
            fault_plan: "ab".repeat(32),
            faults: 3,
            outcome: if failed.is_empty() { "PASS" } else { "FAIL" }.into(),
            root: format!("{seed:064x}"),
            score: "100.00".into(),
            seed,
            wall_ms: seed * 7,
        }
    }

    fn info(shard: Option<Shard>) -> CampaignInfo {
        CampaignInfo {
            scenario: "scenarios/x.toml".into(),
            scenario_name: "x".into(),
            scenario_sha256: "00".repeat(32),
            seeds: SeedRange { first: 1, last: 10 },
            shard,
            swarm: true,
        }
    }

    #[test]
    fn ranges_and_shards_parse_and_partition() {
        assert_eq!(SeedRange::parse("1..1000"), Ok(SeedRange { first: 1, last: 1000 }));
        assert_eq!(SeedRange::parse("1..=3"), Ok(SeedRange { first: 1, last: 3 }));
        assert_eq!(SeedRange::parse("42"), Ok(SeedRange { first: 42, last: 42 }));
        assert!(SeedRange::parse("5..1").is_err());
        assert!(SeedRange::parse("a..b").is_err());
        assert!(SeedRange::parse("0..18446744073709551615").is_err());
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "1/0", "x", "1/x"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let range = SeedRange { first: 1, last: 10 };
        let mut all: Vec<u64> = (1..=3).flat_map(|i| range.seeds(Some(Shard { index: i, count: 3 }))).collect();
        all.sort_unstable();
        assert_eq!(all, range.seeds(None));
        assert_eq!(range.seeds(Some(Shard { index: 1, count: 3 })), vec![1, 4, 7, 10]);
    }

    #[test]
    fn shards_merge_into_the_whole_and_refuse_gaps_and_doubles() {
        let a: Vec<SeedLine> = [1, 3, 5, 7, 9].iter().map(|s| line(*s, &[])).collect();
        let b: Vec<SeedLine> = [2, 4, 6, 8, 10].iter().map(|s| line(*s, &["no_lost_tasks"])).collect();
        let infos = [info(Some(Shard { index: 1, count: 2 })), info(Some(Shard { index: 2, count: 2 }))];
        let (merged_info, merged) = merge(&infos, vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(merged.iter().map(|l| l.seed).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
        assert_eq!(merged_info.shard, None);
        assert!(merge(&infos, vec![a.clone()]).unwrap_err().contains("5 seed(s) of 1..10 missing"));
        assert!(merge(&infos, vec![a.clone(), a.clone(), b.clone()]).unwrap_err().contains("appears in two shards"));
        let mut other = info(None);
        other.swarm = false;
        assert!(merge(&[info(None), other], vec![a, b]).unwrap_err().contains("different campaigns"));
    }

    #[test]
    fn the_summary_counts_failures_and_names_the_first_seed() {
        let lines = vec![line(3, &["recovery_time"]), line(2, &["no_lost_tasks", "recovery_time"]), line(1, &[])];
        let t = tally(&lines);
        assert_eq!(t["recovery_time"], Tally { failures: 2, first_seed: Some(2) });
        assert_eq!(t["no_lost_tasks"], Tally { failures: 1, first_seed: Some(2) });
        assert_eq!(t["cost_ceiling"], Tally::default());
        let text = summary(&info(None), &lines);
        assert!(text.contains("| no_lost_tasks | yes | 1 | 2 |"), "{text}");
        assert!(text.contains("cargo sim replay scenarios/x.toml --seed 2 --swarm   # no_lost_tasks, recovery_time"));
        assert!(text.contains("3 seeds: 2 passed every critical invariant; 1 failed one"), "{text}");
        assert!(line(2, &["no_lost_tasks"]).failed_critically());
        assert!(!line(3, &["recovery_time"]).failed_critically());
    }
}
