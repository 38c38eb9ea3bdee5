//! The `media` journey and the sandbox's media API: a generated PNG uploaded as
//! a multipart body, processed at once (200) or in the background (202, then
//! 206 until done), deleted unattached; the answers held to the OpenAPI schemas
//! and the per-account upload limit.

mod support;

use std::time::Duration;

use fediprobe::runner::{Outcome, Reason, RunResult, Runner, StepStatus};
use fediprobe::sandbox::{InstanceConfig, Limit, RateLimits, SandboxConfig};
use support::journeys::bundled;
use support::openapi::assert_valid;
use support::sandbox::{As, json, start, start_with};

fn pretty(result: &RunResult) -> String {
    serde_json::to_string_pretty(result).unwrap()
}

fn processing(delay: Duration) -> SandboxConfig {
    SandboxConfig {
        instances: vec![
            InstanceConfig { media_processing: delay, ..InstanceConfig::new("alpha") },
            InstanceConfig::new("beta"),
        ],
    }
}

fn step<'a>(result: &'a RunResult, name: &str) -> &'a fediprobe::runner::StepResult {
    result.steps.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no step {name}: {}", pretty(result)))
}

/// The run's cleanup deleted its upload: the sandbox answers 200 only for an
/// upload of the caller's that exists, and 404 otherwise.
fn upload_deleted(result: &RunResult) {
    let delete = &result.cleanup[0];
    assert_eq!(
        (delete.name.as_str(), delete.status, delete.http_status),
        ("delete", StepStatus::Passed, Some(200)),
        "{}",
        pretty(result)
    );
}

#[tokio::test]
async fn an_image_processed_at_once_needs_one_look_and_is_deleted_after() {
    let sandbox = start().await;
    let result = Runner::new(fediprobe::sandbox::probe_targets(&sandbox)).run(&bundled("media")).await;
    assert_eq!(result.outcome, Outcome::Success, "{}", pretty(&result));
    assert_eq!(step(&result, "upload").http_status, Some(200));
    let processed = step(&result, "processed");
    assert_eq!((processed.attempts, processed.http_status), (1, Some(200)));
    upload_deleted(&result);
}

#[tokio::test]
async fn background_processing_is_polled_through_206_until_the_url_is_set() {
    let sandbox = start_with(processing(Duration::from_millis(2500))).await;
    let result = Runner::new(fediprobe::sandbox::probe_targets(&sandbox)).run(&bundled("media")).await;
    assert_eq!(result.outcome, Outcome::Success, "{}", pretty(&result));
    assert_eq!(step(&result, "upload").http_status, Some(202));
    let processed = step(&result, "processed");
    // The first look comes right after the upload, inside the 2.5 s of processing.
    assert!(processed.attempts >= 2, "{}", pretty(&result));
    assert_eq!(processed.http_status, Some(200));
    // The poll's duration covers the processing: at least the part after the upload.
    assert!(processed.duration >= Duration::from_millis(2000), "{:?}", processed.duration);
}

#[tokio::test]
async fn media_that_never_finish_processing_fail_the_poll() {
    let sandbox = start_with(processing(Duration::from_secs(3600))).await;
    let journey = support::journeys::bundled_edited("media", |text| text.replace("within: 40s", "within: 3s"));
    let result = Runner::new(fediprobe::sandbox::probe_targets(&sandbox)).run(&journey).await;
    assert_eq!((result.outcome, result.reason), (Outcome::Failure, Some(Reason::Assertion)), "{}", pretty(&result));
    assert_eq!(result.failed_step.as_deref(), Some("processed"));
    assert_eq!(step(&result, "processed").http_status, Some(206));
    upload_deleted(&result);
}

/// A multipart upload of a generated PNG, as the journey sends it.
async fn upload(client: &As, description: &str) -> reqwest::Response {
    let png = fediprobe::runner::multipart::png(32, "seed");
    let body = fediprobe::runner::multipart::encode(&[
        fediprobe::runner::multipart::Field::Text { name: "description", value: description.to_owned() },
        fediprobe::runner::multipart::Field::File {
            name: "file",
            filename: "p.png".into(),
            content_type: "image/png",
            bytes: png.into(),
        },
    ])
    .unwrap();
    client
        .post("/api/v2/media")
        .header("content-type", fediprobe::runner::multipart::CONTENT_TYPE)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_media_answers_match_the_openapi_schemas() {
    let sandbox = start_with(processing(Duration::from_secs(3600))).await;
    let probe = As::user(sandbox.instance("alpha").unwrap(), "probe");
    let (status, media) = json(upload(&probe, "alt text").await).await;
    assert_eq!(status, 202);
    assert_valid("/api/v2/media", "post", 202, &media);
    assert_eq!((media["url"].is_null(), &media["description"]), (true, &serde_json::json!("alt text")));
    assert_eq!(media["meta"]["original"]["width"], 32, "the sandbox read the PNG the probe generated");
    let path = format!("/api/v1/media/{}", media["id"].as_str().unwrap());
    let (status, still) = json(probe.get(&path).send().await.unwrap()).await;
    assert_eq!((status, &still["id"]), (206, &media["id"]));

    // Someone else's upload does not exist for them.
    let alice = As::user(sandbox.instance("alpha").unwrap(), "alice");
    let (status, error) = json(alice.get(&path).send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert_valid("/api/v1/media/{id}", "get", 404, &error);

    let (status, empty) = json(probe.delete(&path).send().await.unwrap()).await;
    assert_eq!((status, empty), (200, serde_json::json!({})));
    assert_eq!(probe.get(&path).send().await.unwrap().status(), 404);

    let instant = start().await;
    let probe = As::user(instant.instance("alpha").unwrap(), "probe");
    let (status, media) = json(upload(&probe, "").await).await;
    assert_eq!(status, 200);
    assert_valid("/api/v2/media", "post", 200, &media);
    assert!(media["url"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    let (status, shown) =
        json(probe.get(&format!("/api/v1/media/{}", media["id"].as_str().unwrap())).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_valid("/api/v1/media/{id}", "get", 200, &shown);
}

#[tokio::test]
async fn a_file_that_is_not_an_image_is_refused_as_mastodon_does() {
    let sandbox = start().await;
    let probe = As::user(sandbox.instance("alpha").unwrap(), "probe");
    let body = fediprobe::runner::multipart::encode(&[fediprobe::runner::multipart::Field::File {
        name: "file",
        filename: "p.png".into(),
        content_type: "image/png",
        bytes: bytes::Bytes::from_static(b"not a picture at all"),
    }])
    .unwrap();
    let response = probe
        .post("/api/v2/media")
        .header("content-type", fediprobe::runner::multipart::CONTENT_TYPE)
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, error) = json(response).await;
    assert_eq!(status, 422);
    assert_valid("/api/v2/media", "post", 422, &error);
}

#[tokio::test]
async fn uploads_over_the_per_account_limit_get_429() {
    let mut alpha = InstanceConfig::new("alpha");
    alpha.limits = RateLimits { media: Limit::new(2, Duration::from_secs(1800)), ..RateLimits::default() };
    let sandbox = start_with(SandboxConfig { instances: vec![alpha] }).await;
    let probe = As::user(sandbox.instance("alpha").unwrap(), "probe");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(upload(&probe, "x").await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    let alice = As::user(sandbox.instance("alpha").unwrap(), "alice");
    assert_eq!(upload(&alice, "x").await.status(), 200, "the limit is per account");
}

#[tokio::test]
async fn a_file_beside_the_journey_is_read_at_load_and_uploaded_as_it_is() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("picture.png"), fediprobe::runner::multipart::png(12, "file")).unwrap();
    let text = "name: upload-file\ninstance: main\nschedule: '*/10 * * * *'\nslo: { availability: 99% }\nsteps:\n  - name: upload\n    request:\n      method: POST\n      path: /api/v2/media\n      multipart:\n        file: { file: picture.png }\n    expect:\n      json:\n        - { path: $.meta.original.width, equals: 12 }\n    capture: { media: $.id }\ncleanup:\n  - name: delete\n    request: { method: DELETE, path: '/api/v1/media/${media}' }\n";
    let journey_file = folder.path().join("upload-file.yaml");
    let journey = support::journeys::parse_as(journey_file.to_str().unwrap(), text);
    // Read once, at load: the file may go away afterwards.
    std::fs::remove_file(folder.path().join("picture.png")).unwrap();
    let sandbox = start().await;
    let result = Runner::new(fediprobe::sandbox::probe_targets(&sandbox)).run(&journey).await;
    assert_eq!(result.outcome, Outcome::Success, "{}", pretty(&result));
    upload_deleted(&result);
}
