//! The gateway's request bodies: parsed from JSON by hand, so that every refusal names the
//! field (`{"error": ..., "field": ...}`, status 400), and nothing a client sends can reach
//! the engine unchecked.

use crate::rpc::Proposal;
use crate::task::{Authority, Kind, Task};
use serde_json::{Map, Value};

/// A refused request: the HTTP status, what is wrong and the field it is about.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub error: String,
    pub field: Option<String>,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A 400 about `field`.
    pub fn field(field: &str, error: impl Into<String>) -> ApiError {
        ApiError { status: 400, error: error.into(), field: Some(field.to_string()), retry_after: None }
    }

    /// An error about the request as a whole.
    pub fn new(status: u16, error: impl Into<String>) -> ApiError {
        ApiError { status, error: error.into(), field: None, retry_after: None }
    }
}

/// The longest a domain label may be; it is written unquoted into captures.
const DOMAIN_MAX: usize = 64;
/// The largest token count a request may name.
const TOKENS_MAX: u64 = 10_000_000;
/// Output tokens assumed when a request does not say.
pub const DEFAULT_TOKENS_OUT: u32 = 256;

/// Parses a body as a JSON object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(400, "the body must be a JSON object")),
        Err(e) => Err(ApiError::new(400, format!("the body is not JSON: {e}"))),
    }
}

/// Refuses fields outside `known`.
fn only(map: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(ApiError::field(key, format!("unknown field; fields are {}", known.join(", ")))),
        None => Ok(()),
    }
}

fn unsigned(map: &Map<String, Value>, field: &str, max: u64) -> Result<Option<u64>, ApiError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(n) if n <= max => Ok(Some(n)),
            _ => Err(ApiError::field(field, format!("must be a whole number from 0 to {max}"))),
        },
    }
}

fn number(map: &Map<String, Value>, field: &str) -> Result<Option<f64>, ApiError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_f64() {
            Some(x) if x.is_finite() => Ok(Some(x)),
            _ => Err(ApiError::field(field, "must be a number")),
        },
    }
}

fn text<'a>(map: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ApiError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::field(field, "must be a string")),
    }
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::field(field, "is required"))
}

/// The default signature: requests with the same content are the same request (docs/engine.md 3.1:
/// equal signatures are cache hits of each other). FNV-1a over the content.
fn content_signature(kind: Kind, domain: &str, tokens_in: u32, tokens_out: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let content = format!("{}\u{1f}{domain}\u{1f}{tokens_in}\u{1f}{tokens_out}", kind.as_str());
    for byte in content.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The fields of a task request.
pub const TASK_FIELDS: [&str; 10] = [
    "task_id",
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

/// A task request (`/v1/tasks`, `/ocps/route`): the task, arriving at `at_ms`, and whether
/// the client named its id (its idempotency key).
pub fn task(body: &[u8], at_ms: u64) -> Result<(Task, bool), ApiError> {
    let map = object(body)?;
    only(&map, &TASK_FIELDS)?;
    let task_id = unsigned(&map, "task_id", u64::MAX)?;
    let kind_name = required(text(&map, "kind")?, "kind")?;
    let kind = Kind::parse(kind_name).ok_or_else(|| {
        let kinds: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        ApiError::field("kind", format!("unknown kind {kind_name:?}; kinds are {}", kinds.join(", ")))
    })?;
    let domain = text(&map, "domain")?.unwrap_or("default");
    if domain.is_empty()
        || domain.len() > DOMAIN_MAX
        || !domain.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return Err(ApiError::field(
            "domain",
            format!("must be 1 to {DOMAIN_MAX} characters of letters, digits, '-', '_', '.' or ':'"),
        ));
    }
    let drift = required(number(&map, "drift")?, "drift")?;
    if !(0.0..=1.0).contains(&drift) {
        return Err(ApiError::field("drift", format!("{drift} is not in [0, 1]")));
    }
    let priority = unsigned(&map, "priority", 10)?.unwrap_or(5) as u8;
    let authority = match text(&map, "authority")? {
        None => Authority::Medium,
        Some(name) => Authority::parse(name)
            .ok_or_else(|| ApiError::field("authority", format!("{name:?} is not one of low, medium, high")))?,
    };
    let needs_planning = match map.get("needs_planning") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::field("needs_planning", "must be true or false")),
    };
    let tokens_in = required(unsigned(&map, "tokens_in", TOKENS_MAX)?, "tokens_in")? as u32;
    let tokens_out = unsigned(&map, "tokens_out", TOKENS_MAX)?.map_or(DEFAULT_TOKENS_OUT, |n| n as u32);
    let signature = match unsigned(&map, "signature", u64::MAX)? {
        Some(s) => s,
        None => content_signature(kind, domain, tokens_in, tokens_out),
    };
    let task = Task {
        task_id: task_id.unwrap_or(0),
        at_ms,
        kind,
        domain: domain.to_string(),
        drift,
        priority,
        authority,
        needs_planning,
        tokens_in,
        tokens_out,
        signature,
    };
    Ok((task, task_id.is_some()))
}

/// A `/memory/tier25/store` body: `{signature, kind, tokens_out}`.
pub fn tier25_store(body: &[u8]) -> Result<(u64, Kind, u32), ApiError> {
    let map = object(body)?;
    only(&map, &["signature", "kind", "tokens_out"])?;
    let signature = required(unsigned(&map, "signature", u64::MAX)?, "signature")?;
    let name = required(text(&map, "kind")?, "kind")?;
    let kind = Kind::parse(name).ok_or_else(|| ApiError::field("kind", format!("unknown kind {name:?}")))?;
    let tokens_out = required(unsigned(&map, "tokens_out", TOKENS_MAX)?, "tokens_out")? as u32;
    Ok((signature, kind, tokens_out))
}

/// The `/memory/tier25/retrieve` query: `?signature=N`.
pub fn tier25_retrieve(query: Option<&str>) -> Result<u64, ApiError> {
    let mut signature = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "signature" => {
                signature =
                    Some(value.parse::<u64>().map_err(|_| ApiError::field("signature", "must be a whole number"))?)
            }
            other => return Err(ApiError::field(other, "unknown query parameter; parameters are signature")),
        }
    }
    required(signature, "signature")
}

/// A `/safety/validate` body: `{"w_norm": x}` (a promotion) or
/// `{"edge": {"from": i, "to": j, "weight": w}}`, for an organism of `agents` agents.
pub fn proposal(body: &[u8], agents: usize) -> Result<Proposal, ApiError> {
    let map = object(body)?;
    only(&map, &["w_norm", "edge"])?;
    match (map.get("w_norm"), map.get("edge")) {
        (Some(_), None) => {
            let w_norm = required(number(&map, "w_norm")?, "w_norm")?;
            if !(0.0..=1e6).contains(&w_norm) {
                return Err(ApiError::field("w_norm", "must be in [0, 1e6]"));
            }
            Ok(Proposal::Promotion { w_norm })
        }
        (None, Some(Value::Object(edge))) => {
            let inner = |e: ApiError| ApiError { field: e.field.map(|f| format!("edge.{f}")), ..e };
            only(edge, &["from", "to", "weight"]).map_err(inner)?;
            let last = agents.saturating_sub(1) as u64;
            let from = required(unsigned(edge, "from", last).map_err(inner)?, "edge.from")? as usize;
            let to = required(unsigned(edge, "to", last).map_err(inner)?, "edge.to")? as usize;
            if from == to {
                return Err(ApiError::field("edge.to", "an agent has no edge to itself"));
            }
            let weight = required(number(edge, "weight").map_err(inner)?, "edge.weight")?;
            if !(0.0..=1e6).contains(&weight) {
                return Err(ApiError::field("edge.weight", "must be in [0, 1e6]"));
            }
            Ok(Proposal::Edge { from, to, weight })
        }
        (None, Some(_)) => Err(ApiError::field("edge", "must be an object {from, to, weight}")),
        _ => Err(ApiError::new(400, "give exactly one of w_norm (a promotion) or edge")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_request_is_checked_field_by_field() {
        let (parsed, named) = task(br#"{"kind":"chat","drift":0.2,"tokens_in":300}"#, 5).unwrap();
        assert!(!named);
        assert_eq!(
            (parsed.kind, parsed.at_ms, parsed.tokens_out, parsed.priority),
            (Kind::Chat, 5, DEFAULT_TOKENS_OUT, 5)
        );
        let task_err = |body: &str| task(body.as_bytes(), 0).unwrap_err();
        let field = |body: &str| task_err(body).field;
        assert_eq!(field(r#"{"kind":"chat","drift":1.5,"tokens_in":3}"#).as_deref(), Some("drift"));
        assert_eq!(field(r#"{"kind":"poem","drift":0.5,"tokens_in":3}"#).as_deref(), Some("kind"));
        assert_eq!(field(r#"{"drift":0.5,"tokens_in":3}"#).as_deref(), Some("kind"));
        assert_eq!(field(r#"{"kind":"chat","drift":0.5,"tokens_in":-3}"#).as_deref(), Some("tokens_in"));
        assert_eq!(field(r#"{"kind":"chat","drift":0.5,"tokens_in":3,"colour":1}"#).as_deref(), Some("colour"));
        assert_eq!(field(r#"{"kind":"chat","drift":0.5,"tokens_in":3,"domain":"a,b"}"#).as_deref(), Some("domain"));
        assert_eq!(field(r#"{"kind":"chat","drift":0.5,"tokens_in":3,"priority":11}"#).as_deref(), Some("priority"));
        assert_eq!(task_err("[1]").status, 400);
        assert!(task_err("{").error.contains("not JSON"));
        let (a, _) = task(br#"{"kind":"chat","drift":0.2,"tokens_in":300}"#, 5).unwrap();
        let (b, _) = task(br#"{"kind":"chat","drift":0.9,"tokens_in":300}"#, 9).unwrap();
        assert_eq!(a.signature, b.signature, "the same content is the same request");
    }

    #[test]
    fn proposals_and_queries_name_their_fields() {
        assert_eq!(proposal(br#"{"w_norm":2}"#, 24).unwrap(), Proposal::Promotion { w_norm: 2.0 });
        assert_eq!(
            proposal(br#"{"edge":{"from":1,"to":2,"weight":0.5}}"#, 24).unwrap(),
            Proposal::Edge { from: 1, to: 2, weight: 0.5 }
        );
        assert_eq!(
            proposal(br#"{"edge":{"from":1,"to":24,"weight":0.5}}"#, 24).unwrap_err().field.as_deref(),
            Some("edge.to")
        );
        assert_eq!(proposal(br#"{"w_norm":2,"edge":{}}"#, 24).unwrap_err().field, None);
        assert_eq!(tier25_retrieve(Some("signature=7")).unwrap(), 7);
        assert_eq!(tier25_retrieve(Some("signature=x")).unwrap_err().field.as_deref(), Some("signature"));
        assert_eq!(tier25_retrieve(None).unwrap_err().field.as_deref(), Some("signature"));
        assert_eq!(tier25_store(br#"{"signature":1,"kind":"chat"}"#).unwrap_err().field.as_deref(), Some("tokens_out"));
    }
}
