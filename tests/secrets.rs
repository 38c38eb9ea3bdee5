//! `Debug` on every type that holds a secret redacts it: a `{:?}` in a log line,
//! an error or a panic message must never show a token.

use fediprobe::runner::Target;
use fediprobe::secret::Secret;
use fediprobe::sink::remote_write::{Auth, RemoteWriteOptions};

const TOKEN: &str = "tok-3f9a1c77e2b04d5e";

#[test]
fn debug_of_every_type_holding_a_secret_redacts_it() {
    let target = Target::new("main", "https://mastodon.example".parse().unwrap(), "probe", Secret::new(TOKEN));
    let request = fediprobe::runner::http::Request {
        method: http::Method::GET,
        url: "https://mastodon.example/api/v1/timelines/home".parse().unwrap(),
        headers: Vec::new(),
        bearer: Some(Secret::new(TOKEN)),
        body: None,
        follow_redirects: false,
    };
    let mut options = RemoteWriteOptions::new("http://127.0.0.1:8428/api/v1/write".parse().unwrap());
    options.auth = Some(Auth::Bearer(Secret::new(TOKEN)));
    let basic = Auth::Basic { username: "probe".into(), password: Secret::new(TOKEN) };
    let runner = fediprobe::runner::Runner::new(vec![target.clone()]);
    for shown in [
        format!("{target:?}"),
        format!("{target:#?}"),
        format!("{request:?}"),
        format!("{options:?}"),
        format!("{basic:?}"),
        format!("{runner:?}"),
        format!("{}", Secret::new(TOKEN)),
    ] {
        assert!(!shown.contains(TOKEN), "{shown}");
    }
}
