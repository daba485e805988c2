//! The one error every dashboard call returns: a message, and the form field it is about.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiError {
    pub message: String,
    /// The field the message is about (the admin API's `param`), shown next to it.
    pub param: Option<String>,
    /// The HTTP status behind it (401 signs the page out).
    pub status: u16,
    /// The record it is about, where a page has a form per row (the row's id).
    #[serde(default)]
    pub target: Option<String>,
}

impl UiError {
    pub fn new(status: u16, message: impl Into<String>) -> UiError {
        UiError {
            message: message.into(),
            param: None,
            status,
            target: None,
        }
    }

    /// The same error, about the record `id`.
    pub fn on(mut self, id: &str) -> UiError {
        self.target = Some(id.to_string());
        self
    }

    /// The message when it is about `field` of the record `id`.
    pub fn about_on(&self, id: &str, field: &str) -> Option<String> {
        (self.target.as_deref() == Some(id))
            .then(|| self.about(field))
            .flatten()
    }

    /// The message when it is about `field`.
    pub fn about(&self, field: &str) -> Option<String> {
        (self.param.as_deref() == Some(field)).then(|| self.message.clone())
    }
}

impl std::fmt::Display for UiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl FromServerFnError for UiError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        let status = match value {
            ServerFnErrorErr::Args(_) | ServerFnErrorErr::MissingArg(_) => 400,
            _ => 500,
        };
        UiError::new(status, value.to_string())
    }
}
