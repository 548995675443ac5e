//! The engine's settings as a TOML file holds them: `[topology]`, `[engine.*]` and
//! `[backend.*]`, the same tables in a scenario file and in `serve --config FILE`
//! (docs/harness.md 5.1). The units a file writes (durations as `"90s"`, per-kind tables by
//! kind name) are read here; every default is the `Default` of the setting's struct, and
//! every bound is `EngineConfig::validate`. An unknown key is an error naming the file,
//! the line and the key.

use super::{BackendConfig, EngineConfig, EngineTables, MemoryConfig, PathModel, TierConfig, Topology};
use crate::task::Kind;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::Path;

/// A settings file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{file}: cannot read: {message}")]
    Read { file: String, message: String },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}:{line}: {key}: {message}", line = line.map_or("?".to_string(), |l| l.to_string()))]
    Invalid { file: String, line: Option<usize>, key: String, message: String },
}

impl FileError {
    /// An invalid value at a dotted key of `source`, located by line.
    pub fn invalid(file: &str, source: &str, key: &str, message: impl Into<String>) -> FileError {
        FileError::Invalid {
            file: file.to_string(),
            line: locate(source, key),
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// An engine settings file: the tables a scenario shares with `serve --config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineFile {
    #[serde(default)]
    topology: Topology,
    #[serde(default)]
    engine: EngineTables,
    #[serde(default)]
    backend: BackendConfig,
}

impl EngineConfig {
    /// Reads and validates an engine settings file (`serve --config FILE`).
    pub fn load(path: &Path) -> Result<EngineConfig, FileError> {
        let file = path.display().to_string();
        let source = std::fs::read_to_string(path)
            .map_err(|e| FileError::Read { file: file.clone(), message: e.to_string() })?;
        EngineConfig::from_toml(&source, &file)
    }

    /// Parses and validates the text of an engine settings file; `file` names it in errors.
    pub fn from_toml(source: &str, file: &str) -> Result<EngineConfig, FileError> {
        let parsed: EngineFile =
            toml::from_str(source).map_err(|e| FileError::Parse { file: file.to_string(), message: e.to_string() })?;
        let config = EngineConfig::from_tables(parsed.topology, parsed.engine, parsed.backend);
        config.validate().map_err(|e| FileError::invalid(file, source, &e.field, e.message))?;
        Ok(config)
    }
}

/// A duration written as `"90s"`, `"250ms"`, `"10m"`, `"1h"`, `"2d"` or an integer of ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationMs(pub u64);

impl DurationMs {
    /// Parses the string form.
    pub fn parse(text: &str) -> Option<DurationMs> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (number, unit) = text.split_at(split);
        let number: f64 = number.parse().ok()?;
        let scale = match unit {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            _ => return None,
        };
        let ms = number * scale;
        (0.0..1e15).contains(&ms).then_some(DurationMs(ms.round() as u64))
    }
}

impl<'de> Deserialize<'de> for DurationMs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ms(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Ms(ms) => Ok(DurationMs(ms)),
            Raw::Text(text) => DurationMs::parse(&text).ok_or_else(|| {
                serde::de::Error::custom(format!("invalid duration {text:?}: use a number with ms, s, m, h or d"))
            }),
        }
    }
}

/// A duration setting stored in ms (`#[serde(deserialize_with = "ms")]`).
pub(super) fn ms<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    DurationMs::deserialize(deserializer).map(|d| d.0)
}

/// A table keyed by task kind (`{ chat = 3, summary = 100 }`); an unknown kind is an error
/// that lists the kinds.
#[derive(Clone, Debug, PartialEq)]
pub struct KindTable<T>(pub Vec<(Kind, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for KindTable<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, T>::deserialize(deserializer)?;
        let mut table = Vec::with_capacity(raw.len());
        for (name, value) in raw {
            let kind = Kind::parse(&name).ok_or_else(|| {
                let names: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                serde::de::Error::custom(format!("unknown task kind {name:?}; kinds are {}", names.join(", ")))
            })?;
            table.push((kind, value));
        }
        Ok(KindTable(table))
    }
}

/// `engine.governor.rate_limits`: replaces the default table when given.
pub(super) fn rate_limits<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[Option<u32>; Kind::COUNT], D::Error> {
    let mut limits = [None; Kind::COUNT];
    for (kind, limit) in KindTable::<u32>::deserialize(deserializer)?.0 {
        limits[kind.index()] = Some(limit);
    }
    Ok(limits)
}

/// A tier's capacity: one number for every kind, or a table of the kinds to change.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Capacity {
    Each(usize),
    PerKind(KindTable<usize>),
}

/// `[engine.memory]` as written: three tiers flattened into `<tier>_capacity`, `<tier>_ttl`
/// (replaces the tier's table when given; 0 or absent: the kind is not held) and
/// `<tier>_latency`. Each tier starts from its own default, so this form has options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MemoryFile {
    mw_capacity: Option<Capacity>,
    mw_ttl: Option<KindTable<DurationMs>>,
    mw_latency: Option<DurationMs>,
    m25_capacity: Option<Capacity>,
    m25_ttl: Option<KindTable<DurationMs>>,
    m25_latency: Option<DurationMs>,
    mlt_capacity: Option<Capacity>,
    mlt_ttl: Option<KindTable<DurationMs>>,
    mlt_latency: Option<DurationMs>,
    max_freshness: Option<DurationMs>,
    mfb_latency: Option<DurationMs>,
}

fn tier(
    mut tier: TierConfig,
    capacity: Option<Capacity>,
    ttl: Option<KindTable<DurationMs>>,
    latency: Option<DurationMs>,
) -> TierConfig {
    match capacity {
        None => {}
        Some(Capacity::Each(n)) => tier.capacity = [n; Kind::COUNT],
        Some(Capacity::PerKind(table)) => table.0.into_iter().for_each(|(kind, n)| tier.capacity[kind.index()] = n),
    }
    if let Some(table) = ttl {
        tier.ttl_ms = [0; Kind::COUNT];
        table.0.into_iter().for_each(|(kind, ttl)| tier.ttl_ms[kind.index()] = ttl.0);
    }
    if let Some(latency) = latency {
        tier.latency_ms = latency.0;
    }
    tier
}

impl From<MemoryFile> for MemoryConfig {
    fn from(m: MemoryFile) -> MemoryConfig {
        let d = MemoryConfig::default();
        MemoryConfig {
            mw: tier(d.mw, m.mw_capacity, m.mw_ttl, m.mw_latency),
            m25: tier(d.m25, m.m25_capacity, m.m25_ttl, m.m25_latency),
            mlt: tier(d.mlt, m.mlt_capacity, m.mlt_ttl, m.mlt_latency),
            max_freshness_ms: m.max_freshness.map_or(d.max_freshness_ms, |f| f.0),
            mfb_latency_ms: m.mfb_latency.map_or(d.mfb_latency_ms, |f| f.0),
        }
    }
}

/// `[backend.fast]` or `[backend.deep]` as written: each path starts from its own default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathModelFile {
    ttft_base_ms: Option<f64>,
    prefill_tokens_per_s: Option<f64>,
    tpot_ms: Option<f64>,
    batch_slope: Option<f64>,
    noise_p99: Option<f64>,
    error_rate: Option<f64>,
    token_inflation: Option<f64>,
}

impl PathModelFile {
    fn over(self, d: PathModel) -> PathModel {
        PathModel {
            ttft_base_ms: self.ttft_base_ms.unwrap_or(d.ttft_base_ms),
            prefill_tokens_per_s: self.prefill_tokens_per_s.unwrap_or(d.prefill_tokens_per_s),
            tpot_ms: self.tpot_ms.unwrap_or(d.tpot_ms),
            batch_slope: self.batch_slope.unwrap_or(d.batch_slope),
            noise_p99: self.noise_p99.unwrap_or(d.noise_p99),
            error_rate: self.error_rate.unwrap_or(d.error_rate),
            token_inflation: self.token_inflation.unwrap_or(d.token_inflation),
        }
    }
}

/// `[backend]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackendFile {
    #[serde(default)]
    fast: PathModelFile,
    #[serde(default)]
    deep: PathModelFile,
}

impl From<BackendFile> for BackendConfig {
    fn from(b: BackendFile) -> BackendConfig {
        let d = BackendConfig::default();
        BackendConfig { fast: b.fast.over(d.fast), deep: b.deep.over(d.deep) }
    }
}

/// The 1-based line of a dotted key (`engine.valve.h`, `workload.speed`) in TOML text,
/// found by a plain scan of table headers and `key =` lines. `table[n].field` is the field
/// in the n-th `[[table]]` (from 1), or its header.
pub fn locate(source: &str, key: &str) -> Option<usize> {
    if let Some((array, rest)) = key.split_once('[') {
        let (n, field) = rest.split_once("].")?;
        return locate_in_array(source, array, n.parse().ok()?, field);
    }
    let mut table = String::new();
    for (index, raw) in source.lines().enumerate() {
        let line = raw.trim();
        let header = line
            .strip_prefix("[[")
            .and_then(|l| l.split("]]").next())
            .or_else(|| line.strip_prefix('[').and_then(|l| l.split(']').next()));
        if let Some(header) = header {
            table = header.trim().to_string();
            if table == key {
                return Some(index + 1);
            }
        } else if let Some((name, _)) = line.split_once('=') {
            let name = name.trim().trim_matches('"');
            let full = if table.is_empty() { name.to_string() } else { format!("{table}.{name}") };
            if full == key {
                return Some(index + 1);
            }
        }
    }
    None
}

/// `locate` of `field` in the n-th `[[array]]`.
fn locate_in_array(source: &str, array: &str, n: usize, field: &str) -> Option<usize> {
    let mut seen = 0;
    let mut header = None;
    for (index, raw) in source.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            if header.is_some() {
                break;
            }
            seen += usize::from(name.trim() == array);
            if seen == n && name.trim() == array {
                header = Some(index + 1);
            }
        } else if line.starts_with('[') && header.is_some() {
            break;
        } else if let (Some(_), Some((name, _))) = (header, line.split_once('=')) {
            if name.trim().trim_matches('"') == field {
                return Some(index + 1);
            }
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(DurationMs::parse("250ms"), Some(DurationMs(250)));
        assert_eq!(DurationMs::parse("1.5s"), Some(DurationMs(1_500)));
        assert_eq!(DurationMs::parse("10m"), Some(DurationMs(600_000)));
        assert_eq!(DurationMs::parse("1h"), Some(DurationMs(3_600_000)));
        assert_eq!(DurationMs::parse("10 parsecs"), None);
        assert_eq!(DurationMs::parse("s"), None);
    }

    #[test]
    fn locate_finds_dotted_keys() {
        let text = "name = \"x\"\n[engine.valve]\nh = 3\n[[chaos.fault]]\nat = \"1s\"\n";
        assert_eq!(locate(text, "name"), Some(1));
        assert_eq!(locate(text, "engine.valve.h"), Some(3));
        assert_eq!(locate(text, "chaos.fault"), Some(4));
        assert_eq!(locate(text, "engine.valve.nu"), None);
        let faults = "[[chaos.fault]]\nat = \"1s\"\n[[chaos.fault]]\nkind = \"crash\"\nfor = \"0ms\"\n[x]\nfor = 1\n";
        assert_eq!(locate(faults, "chaos.fault[2].for"), Some(5));
        assert_eq!(locate(faults, "chaos.fault[2].node"), Some(3));
        assert_eq!(locate(faults, "chaos.fault[1].at"), Some(2));
        assert_eq!(locate(faults, "chaos.fault[3].at"), None);
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(EngineConfig::from_toml("", "empty.toml").unwrap(), EngineConfig::default());
    }

    #[test]
    fn a_file_sets_what_it_names_and_keeps_the_rest() {
        let text = "[topology]\nfast = 3\n[engine.dispatch]\nfast_timeout = \"2s\"\n[engine.prices]\ndeep_in = 7\n\
                    [engine.governor]\nrate_limits = { chat = 5 }\n[engine.memory]\nmw_capacity = { chat = 9 }\n\
                    mlt_ttl = { query = \"1s\" }\n[backend.deep]\nttft_base_ms = 5000.0\n[engine.autoscale]\nfast_max = 4\n";
        let config = EngineConfig::from_toml(text, "engine.toml").unwrap();
        let d = EngineConfig::default();
        assert_eq!(config.topology.fast, 3);
        assert_eq!(config.dispatch.fast_timeout_ms, 2_000);
        assert_eq!(config.dispatch.deep_timeout_ms, d.dispatch.deep_timeout_ms);
        assert_eq!(config.governor.prices.deep_in, 7);
        assert_eq!(config.governor.prices.fast_in, d.governor.prices.fast_in);
        assert_eq!(config.governor.rate_limits_per_day[Kind::Chat.index()], Some(5));
        assert_eq!(config.governor.rate_limits_per_day[Kind::Summary.index()], None, "a table replaces the default");
        assert_eq!(config.memory.mw.capacity[Kind::Chat.index()], 9);
        assert_eq!(config.memory.mw.capacity[Kind::Query.index()], d.memory.mw.capacity[Kind::Query.index()]);
        assert_eq!(config.memory.mlt.ttl_ms[Kind::Query.index()], 1_000);
        assert_eq!(config.memory.mlt.ttl_ms[Kind::Chat.index()], 0, "a ttl table replaces the default");
        assert_eq!(config.backend.deep.ttft_base_ms, 5_000.0);
        assert_eq!(config.backend.deep.tpot_ms, d.backend.deep.tpot_ms, "each path starts from its own default");
        assert_eq!(config.autoscale.fast_max, 4);
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_key() {
        let unknown = EngineConfig::from_toml("[engine.valve]\nh = 2.0\nhh = 1\n", "engine.toml").unwrap_err();
        let text = unknown.to_string();
        assert!(
            text.contains("engine.toml") && text.contains("line 3") && text.contains("unknown field `hh`"),
            "{text}"
        );
        let bad = EngineConfig::from_toml("[engine.valve]\n\nh = -1.0\n", "engine.toml").unwrap_err();
        assert!(bad.to_string().starts_with("engine.toml:3: engine.valve.h: "), "{bad}");
        let kind = EngineConfig::from_toml("[engine.governor]\nrate_limits = { poems = 1 }\n", "e.toml").unwrap_err();
        assert!(kind.to_string().contains("unknown task kind \"poems\"; kinds are chat"), "{kind}");
        let scenario = EngineConfig::from_toml("[workload]\nsource = \"trace\"\n", "e.toml").unwrap_err();
        assert!(scenario.to_string().contains("unknown field `workload`"), "{scenario}");
    }
}
