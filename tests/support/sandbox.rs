//! Helpers for the tests that talk to the sandbox: a started sandbox and a small
//! client that speaks as one of its accounts.
#![allow(dead_code)] // Each test binary uses a different part of the helper.

use fediprobe::sandbox::{InstanceHandle, Sandbox, SandboxConfig};
use reqwest::{Client, RequestBuilder, Response};
use serde_json::Value;

pub async fn start() -> Sandbox {
    start_with(SandboxConfig::default()).await
}

pub async fn start_with(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config).await.expect("sandbox starts")
}

pub fn client() -> Client {
    // reqwest is built with `rustls-no-provider` and refuses to build a client,
    // even for plain HTTP, until a process-wide crypto provider is installed.
    // Installing twice fails harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder().build().expect("reqwest client builds")
}

/// Requests as one account (or anonymously) against one instance.
pub struct As {
    pub client: Client,
    pub base: String,
    pub token: Option<String>,
}

impl As {
    pub fn user(instance: &InstanceHandle, username: &str) -> As {
        let token = instance
            .account(username)
            .unwrap_or_else(|| panic!("no seeded account {username}"))
            .token
            .expose()
            .to_owned();
        As { client: client(), base: instance.base_url.clone(), token: Some(token) }
    }

    pub fn anonymous(instance: &InstanceHandle) -> As {
        As { client: client(), base: instance.base_url.clone(), token: None }
    }

    fn auth(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_owned() } else { format!("{}{}", self.base, path) }
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.auth(self.client.get(self.url(path)))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.auth(self.client.post(self.url(path)))
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.auth(self.client.delete(self.url(path)))
    }

    /// Posts a status with a form body and returns it.
    pub async fn post_status(&self, text: &str, visibility: &str) -> Value {
        let response =
            self.post("/api/v1/statuses").form(&[("status", text), ("visibility", visibility)]).send().await.unwrap();
        assert_eq!(response.status(), 200, "posting {text:?}");
        serde_json::from_str(&response.text().await.unwrap()).unwrap()
    }
}

/// Status and JSON body of a response.
pub async fn json(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("invalid JSON ({e}): {text}"));
    (status, value)
}

/// The `rel="next"` URL of a `Link` header, if any.
pub fn next_link(response: &Response) -> Option<String> {
    link(response, "next")
}

pub fn link(response: &Response, rel: &str) -> Option<String> {
    let header = response.headers().get("link")?.to_str().ok()?;
    header.split(", ").find_map(|part| {
        let (url, params) = part.split_once("; ")?;
        (params == format!("rel=\"{rel}\"")).then(|| url.trim_start_matches('<').trim_end_matches('>').to_owned())
    })
}

/// Form and JSON bodies (this crate's reqwest has neither feature enabled).
pub trait Bodies {
    fn form(self, pairs: &[(&str, &str)]) -> Self;
    fn json(self, value: &Value) -> Self;
}

impl Bodies for RequestBuilder {
    fn form(self, pairs: &[(&str, &str)]) -> Self {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        self.header("content-type", "application/x-www-form-urlencoded").body(body)
    }

    fn json(self, value: &Value) -> Self {
        self.header("content-type", "application/json").body(value.to_string())
    }
}
