//! The OpenAI-compatible backend (docs/engine.md 4.8), live build only: a worker of either path
//! sends each attempt to `POST {base_url}/chat/completions` (as vLLM, Ollama and
//! llama.cpp serve it) and reports the output tokens the response's `usage` counts.
//!
//! The engine's task carries no text (docs/engine.md 3.1 has kinds and token counts), so the prompt
//! names the task's kind and path, and `max_tokens` asks for the task's output tokens
//! capped by the governor's plan. Retries with backoff on other replicas and the per-path
//! timeout are the coordinator's (docs/engine.md 4.8), as for any backend; within one attempt an
//! upstream 429 or 5xx is retried here when its `Retry-After` (or a short backoff) still
//! fits the attempt's time, and otherwise returned as the attempt's error.

use crate::config::OpenAiConfig;
use crate::rpc::{Execute, Executed};
use crate::task::Path;
use serde::Deserialize;
use std::time::Duration;

/// Tries of one attempt against an upstream that answers 429 or 5xx.
const TRIES: u32 = 3;
/// Backoff before the second try when the upstream gives no `Retry-After`; doubled after.
const BACKOFF_MS: u64 = 50;
/// The most of an upstream error body quoted in the attempt's error.
const QUOTED: usize = 200;

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

#[derive(Deserialize)]
struct Completion {
    usage: Option<Usage>,
}

/// What one HTTP exchange gave.
enum Try {
    Done(Result<u32, String>),
    /// 429 or 5xx: worth another try after the wait, if it fits.
    Again {
        error: String,
        wait: Option<Duration>,
    },
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
            "stream": false,
        })
    }

    async fn once(&self, body: &serde_json::Value, remaining: Duration) -> Try {
        let mut call = self.client.post(&self.url).json(body).timeout(remaining);
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key);
        }
        let response = match call.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Try::Done(Err(format!("upstream timeout within {:?}", self.timeout))),
            Err(e) => return Try::Done(Err(format!("upstream unreachable: {e}"))),
        };
        let status = response.status();
        if status.is_success() {
            let completion = match response.json::<Completion>().await {
                Ok(c) => c,
                Err(e) => return Try::Done(Err(format!("upstream answer is not a chat completion: {e}"))),
            };
            return Try::Done(match completion.usage {
                Some(usage) => Ok(usage.completion_tokens),
                None => Err("upstream answer has no usage: its tokens cannot be counted".into()),
            });
        }
        let wait = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
        let quoted: String = text.chars().take(QUOTED).collect();
        let error = format!("upstream {}: {}", status.as_u16(), quoted.trim());
        if status.as_u16() == 429 || status.is_server_error() {
            Try::Again { error, wait }
        } else {
            Try::Done(Err(error))
        }
    }

    /// One attempt of the coordinator's: output tokens from `usage`, or the error.
    pub async fn call(&self, request: &Execute) -> Executed {
        let started = madsim::time::Instant::now();
        let body = self.body(request);
        let mut result = Err("no try made".to_string());
        for tried in 0..TRIES {
            // Every try within the attempt's time: the coordinator stops waiting then, and
            // a try past it would only hold a slot of this worker.
            let remaining = self.timeout.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                break;
            }
            match self.once(&body, remaining).await {
                Try::Done(r) => {
                    result = r;
                    break;
                }
                Try::Again { error, wait } => {
                    result = Err(error);
                    let wait = wait.unwrap_or(Duration::from_millis(BACKOFF_MS << tried));
                    // Only a wait that leaves the attempt time for the next try.
                    if tried + 1 == TRIES || started.elapsed() + wait * 2 >= self.timeout {
                        break;
                    }
                    madsim::time::sleep(wait).await;
                }
            }
        }
        Executed { result, latency_ms: started.elapsed().as_millis() as u64 }
    }
}
