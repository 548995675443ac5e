//! The OpenAI-compatible backend (docs/engine.md 4.8), live build only: a worker of either path
//! sends each attempt to `POST {base_url}/chat/completions` (as vLLM, Ollama and
//! llama.cpp serve it) with `"stream": true` and `stream_options.include_usage`, reads the
//! Server-Sent Events as they arrive, and reports the output tokens the stream's `usage`
//! counts (its last chunk with one, normally the one before `[DONE]`) and the time to the
//! first token: from the attempt's start to the first chunk that carries output text
//! (`delta.content`, `delta.reasoning_content` or `delta.reasoning`, or a completion-style
//! `text`), or the whole latency when none does. An upstream that ignores `stream` and
//! answers one JSON completion (any `content-type` but `text/event-stream`) is read whole:
//! its tokens from the body's `usage`, its first token at the end.
//!
//! The engine's task carries no text (docs/engine.md 3.1 has kinds and token counts), so the prompt
//! names the task's kind and path, and `max_tokens` asks for the task's output tokens
//! capped by the governor's plan. Retries with backoff on other replicas and the per-path
//! timeout are the coordinator's (docs/engine.md 4.8), as for any backend; within one attempt an
//! upstream 429 or 5xx is retried here when its `Retry-After` (or a short backoff) still
//! fits the attempt's time, and otherwise returned as the attempt's error.
//!
//! Whatever the upstream sends is read within bounds and never panics: at most
//! `LINE_LIMIT` bytes of an unfinished event line, `ANSWER_LIMIT` bytes of one answer and
//! `ERROR_LIMIT` bytes of an error body; past the first two the attempt fails naming the
//! limit, and an answer it cannot read fails quoting at most `QUOTED` characters of it.

use crate::config::OpenAiConfig;
use crate::rpc::{Execute, Executed};
use crate::task::Path;
use madsim::time::Instant;
use serde::Deserialize;
use std::time::Duration;

/// Tries of one attempt against an upstream that answers 429 or 5xx.
const TRIES: u32 = 3;
/// Backoff before the second try when the upstream gives no `Retry-After`; doubled after.
const BACKOFF_MS: u64 = 50;
/// The most of an upstream error body or unreadable chunk quoted in the attempt's error.
const QUOTED: usize = 200;
/// The most bytes of an unfinished line and the unfinished event's data held while streaming.
const LINE_LIMIT: usize = 1 << 20;
/// The most bytes read of one answer, streamed or whole.
const ANSWER_LIMIT: usize = 16 << 20;
/// The most bytes read of an error body (only its first `QUOTED` characters are quoted).
const ERROR_LIMIT: usize = 16 << 10;
/// The error of an answer whose tokens nothing counts.
const NO_USAGE: &str = "upstream answer has no usage: its tokens cannot be counted";

/// The backend of one worker.
pub struct OpenAiBackend {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
    path: Path,
}

#[derive(Deserialize)]
struct Usage {
    completion_tokens: u32,
}

/// An answer that came whole.
#[derive(Deserialize)]
struct Completion {
    usage: Option<Usage>,
}

/// One chunk of a streamed answer (`chat.completion.chunk`, or a completion-style one).
#[derive(Deserialize)]
struct Chunk {
    choices: Option<Vec<Choice>>,
    usage: Option<Usage>,
    /// An error the upstream reports within the stream, after its 200.
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice {
    delta: Option<Delta>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
    reasoning_content: Option<String>,
    reasoning: Option<String>,
}

impl Chunk {
    /// Whether any of its choices carries output text (an empty string does not count).
    fn has_output(&self) -> bool {
        let filled = |text: &Option<String>| text.as_deref().is_some_and(|t| !t.is_empty());
        self.choices.iter().flatten().any(|choice| {
            filled(&choice.text)
                || choice
                    .delta
                    .as_ref()
                    .is_some_and(|d| filled(&d.content) || filled(&d.reasoning_content) || filled(&d.reasoning))
        })
    }
}

/// What a successful exchange gave.
struct Answer {
    tokens: u32,
    /// When the first output text came, from the attempt's start; `None` when the answer
    /// came whole or had no text.
    first_token: Option<Duration>,
}

/// What one HTTP exchange gave.
enum Try {
    Done(Result<Answer, String>),
    /// 429 or 5xx: worth another try after the wait, if it fits.
    Again {
        error: String,
        wait: Option<Duration>,
    },
}

/// Splits a Server-Sent Events body, fed piece by piece, into the data of its events.
///
/// Lines end in `\n` or `\r\n` and may be split anywhere between pieces; comments (`:`)
/// and fields other than `data` are skipped; an event's `data` lines are joined by `\n`
/// and it ends at a blank line; `data: [DONE]` ends the stream and nothing after it is
/// read. At most `LINE_LIMIT` bytes of an unfinished line and event are held.
#[derive(Default)]
struct SseReader {
    /// The unfinished line.
    line: Vec<u8>,
    /// The data of the unfinished event, if it has a `data` line yet.
    data: Option<String>,
    done: bool,
}

impl SseReader {
    /// The data of the events `piece` completes, in order (`[DONE]` not among them); an
    /// error when the held line and event would pass `LINE_LIMIT` or data is not UTF-8.
    fn push(&mut self, mut piece: &[u8]) -> Result<Vec<String>, String> {
        let mut events = Vec::new();
        while !self.done {
            let Some(end) = piece.iter().position(|&b| b == b'\n') else {
                self.hold(piece)?;
                break;
            };
            let (head, rest) = piece.split_at(end);
            self.hold(head)?;
            piece = rest.get(1..).unwrap_or_default();
            let line = std::mem::take(&mut self.line);
            self.take_line(&line, &mut events)?;
        }
        Ok(events)
    }

    /// Whether `data: [DONE]` came.
    fn done(&self) -> bool {
        self.done
    }

    /// The data of an event the body ended in without its blank line (or its line's end).
    fn finish(&mut self) -> Result<Option<String>, String> {
        let mut events = Vec::new();
        let line = std::mem::take(&mut self.line);
        if !self.done && !line.is_empty() {
            self.take_line(&line, &mut events)?;
        }
        if !self.done {
            self.take_line(b"", &mut events)?;
        }
        Ok(events.pop())
    }

    /// Adds `bytes` to the unfinished line, within `LINE_LIMIT`.
    fn hold(&mut self, bytes: &[u8]) -> Result<(), String> {
        let held = self.line.len() + self.data.as_ref().map_or(0, String::len) + bytes.len();
        if held > LINE_LIMIT {
            return Err(format!("upstream stream has an event line over the limit of {LINE_LIMIT} bytes"));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// One whole line, without its `\n`: a blank one ends the event.
    fn take_line(&mut self, line: &[u8], events: &mut Vec<String>) -> Result<(), String> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            match self.data.take() {
                Some(data) if data.trim() == "[DONE]" => self.done = true,
                Some(data) => events.push(data),
                None => {}
            }
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => (line.get(..colon).unwrap_or_default(), line.get(colon + 1..).unwrap_or_default()),
            None => (line, &b""[..]),
        };
        if field != b"data" {
            return Ok(());
        }
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let value = std::str::from_utf8(value).map_err(|_| "upstream stream has data that is not UTF-8".to_string())?;
        match &mut self.data {
            Some(data) => {
                data.push('\n');
                data.push_str(value);
            }
            None => self.data = Some(value.to_string()),
        }
        Ok(())
    }
}

/// The output tokens and the first token's time, from a stream's events as they come.
#[derive(Default)]
struct Streamed {
    tokens: Option<u32>,
    first_token: Option<Duration>,
}

impl Streamed {
    /// Takes the data of one event, which came `elapsed` after the attempt's start: the
    /// first with output text sets the first token's time, the last with `usage` the tokens.
    fn take(&mut self, data: &str, elapsed: Duration) -> Result<(), String> {
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|e| format!("upstream stream chunk is not a chat completion chunk ({e}): {}", quote(data)))?;
        if let Some(error) = chunk.error {
            return Err(format!("upstream error within the stream: {}", quote(&error.to_string())));
        }
        if self.first_token.is_none() && chunk.has_output() {
            self.first_token = Some(elapsed);
        }
        if let Some(usage) = chunk.usage {
            self.tokens = Some(usage.completion_tokens);
        }
        Ok(())
    }
}

/// At most `QUOTED` characters of `text`, trimmed.
fn quote(text: &str) -> String {
    let quoted: String = text.trim().chars().take(QUOTED).collect();
    quoted.trim_end().to_string()
}

/// At most `limit` bytes of a body, and whether that was all of it.
async fn read_body(response: &mut reqwest::Response, limit: usize) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(piece) = response.chunk().await? {
        let room = limit.saturating_sub(body.len());
        if piece.len() > room {
            body.extend_from_slice(piece.get(..room).unwrap_or_default());
            return Ok((body, false));
        }
        body.extend_from_slice(&piece);
    }
    Ok((body, true))
}

/// A non-2xx answer: its status and the start of its body; 429 and 5xx are worth another try.
async fn refused(mut response: reqwest::Response) -> Try {
    let status = response.status();
    let wait = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = match read_body(&mut response, ERROR_LIMIT).await {
        Ok((body, _)) => String::from_utf8_lossy(&body).into_owned(),
        Err(_) => String::new(),
    };
    let error = format!("upstream {}: {}", status.as_u16(), quote(&text));
    if status.as_u16() == 429 || status.is_server_error() {
        Try::Again { error, wait }
    } else {
        Try::Done(Err(error))
    }
}

impl OpenAiBackend {
    /// The backend of a worker on `path`; `timeout` is the path's attempt timeout.
    pub fn new(config: &OpenAiConfig, path: Path, timeout: Duration) -> Result<OpenAiBackend, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let model = match path {
            Path::Fast => config.fast_model.clone(),
            Path::Deep => config.deep_model.clone(),
        };
        Ok(OpenAiBackend {
            client,
            url: format!("{}/chat/completions", config.base_url.trim_end_matches('/')),
            model,
            api_key: config.api_key.clone(),
            timeout,
            path,
        })
    }

    fn body(&self, request: &Execute) -> serde_json::Value {
        let max_tokens = request.tokens_out.min(request.max_tokens_out).max(1);
        serde_json::json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": format!(
                    "You are a {} path worker of a coordination engine. Answer briefly.", self.path.as_str())},
                {"role": "user", "content": format!(
                    "A {} task arrived (task {}, attempt {}). Reply with a short acknowledgement.",
                    request.kind.as_str(), request.task_id, request.attempt)},
            ],
            "max_tokens": max_tokens,
            "stream": true,
            "stream_options": {"include_usage": true},
        })
    }

    /// The error of a failed exchange: a timeout names the attempt's, anything else `what` failed.
    fn failed(&self, e: &reqwest::Error, what: &str) -> String {
        if e.is_timeout() {
            format!("upstream timeout within {:?}", self.timeout)
        } else {
            format!("upstream {what}: {e}")
        }
    }

    /// One HTTP exchange within `remaining`; the first token's time counts from `started`.
    async fn once(&self, body: &serde_json::Value, remaining: Duration, started: Instant) -> Try {
        let mut call = self.client.post(&self.url).json(body).timeout(remaining);
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key);
        }
        match call.send().await {
            Ok(response) if response.status().is_success() => Try::Done(self.answer(response, started).await),
            Ok(response) => refused(response).await,
            Err(e) => Try::Done(Err(self.failed(&e, "unreachable"))),
        }
    }

    /// A 2xx answer: an event stream read as it comes, anything else as one JSON completion.
    async fn answer(&self, response: reqwest::Response, started: Instant) -> Result<Answer, String> {
        let streamed = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
        if streamed {
            self.streamed(response, started).await
        } else {
            self.whole(response).await
        }
    }

    /// An answer that came as one JSON completion (its upstream ignored `stream`).
    async fn whole(&self, mut response: reqwest::Response) -> Result<Answer, String> {
        let (body, complete) =
            read_body(&mut response, ANSWER_LIMIT).await.map_err(|e| self.failed(&e, "answer broke off"))?;
        if !complete {
            return Err(format!("upstream answer is over the limit of {ANSWER_LIMIT} bytes"));
        }
        let completion: Completion =
            serde_json::from_slice(&body).map_err(|e| format!("upstream answer is not a chat completion: {e}"))?;
        let usage = completion.usage.ok_or_else(|| NO_USAGE.to_string())?;
        Ok(Answer { tokens: usage.completion_tokens, first_token: None })
    }

    /// An event stream, read piece by piece to `[DONE]` or its end.
    async fn streamed(&self, mut response: reqwest::Response, started: Instant) -> Result<Answer, String> {
        let mut reader = SseReader::default();
        let mut streamed = Streamed::default();
        let mut read = 0usize;
        while !reader.done() {
            let piece = response.chunk().await.map_err(|e| self.failed(&e, "stream broke off"))?;
            let Some(piece) = piece else { break };
            read = read.saturating_add(piece.len());
            if read > ANSWER_LIMIT {
                return Err(format!("upstream stream is over the limit of {ANSWER_LIMIT} bytes"));
            }
            for data in reader.push(&piece)? {
                streamed.take(&data, started.elapsed())?;
            }
        }
        if let Some(data) = reader.finish()? {
            streamed.take(&data, started.elapsed())?;
        }
        let tokens = streamed.tokens.ok_or_else(|| NO_USAGE.to_string())?;
        Ok(Answer { tokens, first_token: streamed.first_token })
    }

    /// One attempt of the coordinator's: output tokens from `usage` and the time to the
    /// first token (the whole latency for an answer that came whole or empty, and for an
    /// error), or the error.
    pub async fn call(&self, request: &Execute) -> Executed {
        let started = Instant::now();
        let body = self.body(request);
        let mut result = Err("no try made".to_string());
        for tried in 0..TRIES {
            // Every try within the attempt's time: the coordinator stops waiting then, and
            // a try past it would only hold a slot of this worker.
            let remaining = self.timeout.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                break;
            }
            match self.once(&body, remaining, started).await {
                Try::Done(r) => {
                    result = r;
                    break;
                }
                Try::Again { error, wait } => {
                    result = Err(error);
                    let wait = wait.unwrap_or(Duration::from_millis(BACKOFF_MS << tried));
                    // Only a wait that leaves the attempt time for the next try (saturating:
                    // a `Retry-After` of any size is no overflow).
                    if tried + 1 == TRIES || started.elapsed().saturating_add(wait.saturating_mul(2)) >= self.timeout {
                        break;
                    }
                    madsim::time::sleep(wait).await;
                }
            }
        }
        let latency_ms = started.elapsed().as_millis() as u64;
        let ttft_ms = match &result {
            Ok(Answer { first_token: Some(first), .. }) => (first.as_millis() as u64).min(latency_ms),
            _ => latency_ms,
        };
        Executed { result: result.map(|answer| answer.tokens), latency_ms, ttft_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event's data from `pieces` fed in order, then what `finish` gives.
    fn events(pieces: &[&[u8]]) -> Result<Vec<String>, String> {
        let mut reader = SseReader::default();
        let mut events = Vec::new();
        for piece in pieces {
            events.extend(reader.push(piece)?);
        }
        events.extend(reader.finish()?);
        Ok(events)
    }

    #[test]
    fn lines_split_anywhere_between_pieces_are_joined() {
        let whole: &[u8] = b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\n";
        for cut in 0..=whole.len() {
            let (head, tail) = whole.split_at(cut);
            assert_eq!(events(&[head, tail]).unwrap(), ["{\"a\":1}", "{\"b\":2}"], "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(events(&bytes).unwrap(), ["{\"a\":1}", "{\"b\":2}"]);
    }

    #[test]
    fn crlf_lines_even_split_between_cr_and_lf() {
        assert_eq!(events(&[b"data: x\r", b"\n\r", b"\ndata:y\r\n\r\n"]).unwrap(), ["x", "y"]);
    }

    #[test]
    fn comments_and_other_fields_are_skipped_and_data_lines_joined() {
        let body = b": keep-alive\n\nevent: message\nid: 3\nretry: 10\ndata: a\ndata: b\n\n\n\n";
        assert_eq!(events(&[body]).unwrap(), ["a\nb"]);
    }

    #[test]
    fn done_ends_the_stream() {
        let mut reader = SseReader::default();
        let got = reader.push(b"data: z\n\ndata: [DONE]\n\ndata: after\n\n").unwrap();
        assert_eq!(got, ["z"]);
        assert!(reader.done());
        assert!(reader.push(b"data: later\n\n").unwrap().is_empty());
        assert_eq!(reader.finish().unwrap(), None);
    }

    #[test]
    fn an_event_without_its_blank_line_is_read_at_the_end() {
        assert_eq!(events(&[b"data: w"]).unwrap(), ["w"]);
        assert_eq!(events(&[b"data: v\n"]).unwrap(), ["v"]);
        assert!(events(&[b"data: [DONE]"]).unwrap().is_empty());
        assert!(events(&[b": only a comment"]).unwrap().is_empty());
    }

    #[test]
    fn an_unfinished_line_is_held_only_up_to_the_limit() {
        let half = vec![b'a'; LINE_LIMIT / 2];
        let error = events(&[b"data: ", half.as_slice(), half.as_slice()]).unwrap_err();
        assert!(error.contains(&LINE_LIMIT.to_string()), "{error}");
        // Many whole lines pass the limit in all without holding it at once.
        let mut line = b"data: ".to_vec();
        line.extend(vec![b'b'; 1000]);
        line.extend(b"\n\n");
        let many: Vec<&[u8]> = std::iter::repeat_n(line.as_slice(), 2 * LINE_LIMIT / 1000).collect();
        assert_eq!(events(&many).unwrap().len(), many.len());
        assert!(events(&[b"data: \xff\n\n"]).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn the_first_text_sets_the_first_token_and_the_last_usage_the_tokens() {
        let mut streamed = Streamed::default();
        let at = Duration::from_millis;
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}"#;
        streamed.take(role, at(5)).unwrap();
        assert_eq!(streamed.first_token, None, "an empty delta is no token");
        streamed.take(r#"{"choices":[{"delta":{"reasoning_content":"hm"}}]}"#, at(30)).unwrap();
        streamed.take(r#"{"choices":[{"delta":{"content":"ok"}}]}"#, at(40)).unwrap();
        streamed.take(r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9}}"#, at(50)).unwrap();
        assert_eq!((streamed.first_token, streamed.tokens), (Some(at(30)), Some(9)));
        let mut text = Streamed::default();
        text.take(r#"{"choices":[{"text":"a"}],"usage":{"completion_tokens":1}}"#, at(7)).unwrap();
        assert_eq!((text.first_token, text.tokens), (Some(at(7)), Some(1)));
    }

    #[test]
    fn an_unreadable_chunk_or_a_streamed_error_fails_quoting_little() {
        let mut streamed = Streamed::default();
        let long = format!("{{\"choices\": {}", "x".repeat(10 * QUOTED));
        let error = streamed.take(&long, Duration::ZERO).unwrap_err();
        assert!(error.contains("not a chat completion chunk") && error.len() < 3 * QUOTED, "{error}");
        let error = streamed.take(r#"{"error":{"message":"engine died"}}"#, Duration::ZERO).unwrap_err();
        assert!(error.contains("engine died"), "{error}");
        assert!(streamed.take(r#"{"usage":{"completion_tokens":-1}}"#, Duration::ZERO).is_err());
    }
}
