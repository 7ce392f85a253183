//! The one streamer: chat, voted chat and text completions each describe their chunks with a
//! `Render`, and `stream` turns the jobs' updates into typed frames (reading the updates, the error
//! of a failure mid-stream, the usage chunk, the log lines); `respond` sends frames as
//! server-sent events, and the Responses endpoint reads them as they are.

use axum::response::Response;
use futures::stream::{BoxStream, StreamExt};
use serde::Serialize;

use super::error::ApiError;
use super::openai::{Completion, Progress};
use super::sse::{self, Item};
use crate::service::{Collector, Reader, Update};

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
    /// Chunks before any event: role announcements, echoed prompts.
    fn opening(&mut self) -> Vec<Out<Self::Choice>> {
        Vec::new()
    }
    /// Chunks for one update of job `job`, already absorbed into its collector (the last of a
    /// chat request, `Update::Decided`, comes once the service voted and graded).
    fn update(&mut self, job: usize, update: Update) -> Vec<Out<Self::Choice>>;
}

/// One frame of a stream: a chunk, a progress note, or the error a failure mid-stream ends with.
// Chunks are nearly every frame: boxing them would add an allocation to each for the rare error.
#[allow(clippy::large_enum_variant)]
pub enum Frame<C> {
    Chunk(Completion<C>),
    Progress(Progress),
    Failed(ApiError),
}

pub type Frames<C> = BoxStream<'static, Frame<C>>;

/// The one streamer: the chunks of chat, voted chat and text completions. A failure mid-stream
/// ends it with an error frame; the usage chunk comes last when asked for.
pub fn stream<R: Render>(env: Envelope, mut r: Reader, include_usage: bool, mut render: R) -> Frames<R::Choice> {
    let frame = |env: &Envelope, out: Out<R::Choice>| match out {
        Out::Choice(c) => Frame::Chunk(env.wrap(R::OBJECT, vec![c])),
        Out::Progress(p) => Frame::Progress(p),
    };
    let s = async_stream::stream! {
        for out in render.opening() {
            yield frame(&env, out);
        }
        while let Some((job, update)) = r.next().await {
            for out in render.update(job, update) {
                yield frame(&env, out);
            }
        }
        match r.failure() {
            Some(e) => yield Frame::Failed(ApiError::from(e)),
            None if include_usage => yield Frame::Chunk(env.wrap::<R::Choice>(R::OBJECT, Vec::new()).with_usage(&r.cols)),
            None => {}
        }
        r.cols.iter().for_each(Collector::log);
    };
    s.boxed()
}

/// Frames as server-sent events: chunks and errors as `data:` lines, progress as comments.
pub fn respond<C: Serialize + Send + 'static>(frames: Frames<C>) -> Response {
    sse::respond(frames.map(|f| match f {
        Frame::Chunk(c) => Item::json(&c),
        Frame::Progress(p) => Item::Comment(format!("thinkscale {}", serde_json::to_string(&p).unwrap_or_default())),
        Frame::Failed(e) => Item::json(&e.body()),
    }))
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
