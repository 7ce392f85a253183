//! Server-sent events in the OpenAI framing: one JSON chunk per `data:` line, a final `[DONE]`.
//! Comments (`: ...`) carry progress that OpenAI clients ignore.

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde_json::Value;

pub enum Item {
    Data(Value),
    Comment(String),
}

pub fn respond<S>(items: S) -> Response
where
    S: Stream<Item = Item> + Send + 'static,
{
    let events = items
        .map(|item| {
            Ok::<_, Infallible>(match item {
                Item::Data(v) => Event::default().data(v.to_string()),
                Item::Comment(c) => Event::default().comment(c),
            })
        })
        .chain(futures::stream::once(async { Ok(Event::default().data("[DONE]")) }));
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}
