//! Server-sent events in the OpenAI framing: one JSON chunk per `data:` line, a final `[DONE]`.
//! Comments (`: ...`) carry progress that OpenAI clients ignore.

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::Serialize;

pub enum Item {
    Data(String),
    Comment(String),
}

impl Item {
    pub fn json(value: &impl Serialize) -> Self {
        Self::Data(serde_json::to_string(value).unwrap_or_default())
    }
}

pub fn respond<S>(items: S) -> Response
where
    S: Stream<Item = Item> + Send + 'static,
{
    let events = items
        .map(|item| {
            Ok::<_, Infallible>(match item {
                Item::Data(v) => Event::default().data(v),
                Item::Comment(c) => Event::default().comment(c),
            })
        })
        .chain(futures::stream::once(async { Ok(Event::default().data("[DONE]")) }));
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}
