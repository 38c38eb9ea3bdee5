//! GoToSocial-style split domains: the accounts are `user@ACCOUNT_DOMAIN` while
//! the API is served from another host, and `/api/v2/instance` says so with
//! `account_domain`. The federation journeys look the poster up by
//! `account_domain` when the server sends it, else by `domain`.

mod support;

use fediprobe::runner::{Outcome, Reason, Runner};
use fediprobe::sandbox::{InstanceConfig, Sandbox, SandboxConfig};
use support::journeys::{bundled, bundled_edited};
use support::sandbox::{As, json};

async fn split_alpha() -> Sandbox {
    let alpha =
        InstanceConfig { account_domain: Some("people.sandbox.test".to_owned()), ..InstanceConfig::new("alpha") };
    Sandbox::start(SandboxConfig { instances: vec![alpha, InstanceConfig::new("beta")] }).await.unwrap()
}

#[tokio::test]
async fn the_sandbox_serves_a_split_domain_as_gotosocial_does() {
    let sandbox = split_alpha().await;
    let alpha = sandbox.instance("alpha").unwrap();
    let (status, instance) = json(As::anonymous(alpha).get("/api/v2/instance").send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(instance["domain"], "alpha.sandbox.test");
    assert_eq!(instance["account_domain"], "people.sandbox.test");
    let beta = sandbox.instance("beta").unwrap();
    let (_, plain) = json(As::anonymous(beta).get("/api/v2/instance").send().await.unwrap()).await;
    assert!(plain.get("account_domain").is_none(), "a Mastodon-like instance has no account_domain: {plain}");
    let (found, _) = json(
        As::user(beta, "probe").get("/api/v1/accounts/lookup?acct=probe@people.sandbox.test").send().await.unwrap(),
    )
    .await;
    assert_eq!(found, 200, "the account is known by its account domain");
}

#[tokio::test]
async fn federation_from_a_split_domain_looks_the_poster_up_by_its_account_domain() {
    let sandbox = split_alpha().await;
    let runner = Runner::new(fediprobe::sandbox::probe_targets(&sandbox));
    let result = runner.run(&bundled("federation-main-to-peer")).await;
    assert_eq!(result.outcome, Outcome::Success, "{}", serde_json::to_string_pretty(&result).unwrap());

    // What the journeys did before: the API host's domain, which names nobody there.
    let by_host = bundled_edited("federation-main-to-peer", |text| {
        text.replace("\"$['account_domain','domain']\"", "$.domain").replace("within: 5m", "within: 2s")
    });
    let result = runner.run(&by_host).await;
    assert_eq!(result.outcome, Outcome::ProbeError, "{}", serde_json::to_string_pretty(&result).unwrap());
    assert_eq!(result.reason, Some(Reason::NotFollowing));
}

#[tokio::test]
async fn federation_between_single_domain_instances_still_uses_domain() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let runner = Runner::new(fediprobe::sandbox::probe_targets(&sandbox));
    for name in ["federation-main-to-peer", "federation-peer-to-main"] {
        let result = runner.run(&bundled(name)).await;
        assert_eq!(result.outcome, Outcome::Success, "{name}: {}", serde_json::to_string_pretty(&result).unwrap());
    }
}
