//! The one streamer: chat, voted chat and text completions each describe their chunks with a
//! `Render`, and `stream` sends them as server-sent events (reading the jobs' events, the error
//! object of a failure mid-stream, the usage chunk, the log lines).

use axum::response::Response;
use serde::Serialize;

use super::error::ApiError;
use super::openai::{Completion, Progress};
use super::sse::{self, Item};
use crate::backend::Event;
use crate::service::pipeline::{Collector, Events, Reader};

/// The fields every object of one response shares.
#[derive(Clone)]
pub struct Envelope {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Envelope {
    pub fn new(id: String, model: String) -> Self {
        Self { id, created: unix_now(), model }
    }

    pub fn wrap<C>(&self, object: &'static str, choices: Vec<C>) -> Completion<C> {
        Completion {
            id: self.id.clone(),
            object,
            created: self.created,
            model: self.model.clone(),
            system_fingerprint: super::FINGERPRINT,
            choices,
            usage: None,
            timings: None,
            thinkscale: None,
        }
    }
}

/// What a streamed endpoint sends: a chunk with one choice, or a progress comment.
pub enum Out<C> {
    Choice(C),
    Progress(Progress),
}

/// How one endpoint turns events into chunks; `stream` does the rest (reading, errors, usage, logs).
pub trait Render: Send + 'static {
    type Choice: Serialize + Send + 'static;
    /// The chunks' `object`.
    const OBJECT: &'static str;
    /// Read until the backend closes the channel (see `Reader`).
    const DRAIN: bool = false;
    /// Chunks before any event: role announcements, echoed prompts.
    fn opening(&mut self) -> Vec<Out<Self::Choice>> {
        Vec::new()
    }
    /// Chunks for one event of job `job`, already absorbed into its collector.
    fn event(&mut self, job: usize, event: &Event) -> Vec<Out<Self::Choice>>;
    /// Chunks once every job finished without error (a vote's decided answers); grading hooks.
    fn closing(&mut self, _cols: &[Collector]) -> Vec<Out<Self::Choice>> {
        Vec::new()
    }
}

/// The one streamer: server-sent chunks for chat, voted chat and text completions. A failure
/// mid-stream is sent as an OpenAI error object; the usage chunk comes last when asked for.
pub fn stream<R: Render>(env: Envelope, cols: Vec<Collector>, events: Events, include_usage: bool, mut render: R) -> Response {
    let item = |env: &Envelope, out: Out<R::Choice>| match out {
        Out::Choice(c) => Item::json(&env.wrap(R::OBJECT, vec![c])),
        Out::Progress(p) => Item::Comment(format!("thinkscale {}", serde_json::to_string(&p).unwrap_or_default())),
    };
    let s = async_stream::stream! {
        let mut r = Reader::new(cols, events, R::DRAIN);
        for out in render.opening() {
            yield item(&env, out);
        }
        while let Some((job, event)) = r.next().await {
            for out in render.event(job, &event) {
                yield item(&env, out);
            }
        }
        match r.failure() {
            Some(e) => yield Item::json(&ApiError::from(e).body()),
            None => {
                for out in render.closing(&r.cols) {
                    yield item(&env, out);
                }
                if include_usage {
                    yield Item::json(&env.wrap::<R::Choice>(R::OBJECT, Vec::new()).with_usage(&r.cols));
                }
            }
        }
        r.cols.iter().for_each(Collector::log);
    };
    sse::respond(s)
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
