//! `deploy/`: every overlay renders with `kubectl kustomize` (Debian package
//! `kubectl`) into pods that are locked down, labelled with their region, and
//! configured with a config that `fediprobe check` accepts as the pod sees it;
//! the CronJobs cover every journey once; the generated files under `deploy/`
//! (the journeys' copy, the CronJobs) are current.
//!
//! When the journeys change, refresh the generated files with
//! `FEDIPROBE_BLESS=1 cargo test --test deploy` and review the diff.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use fediprobe::generate::cronjobs;
use serde_json::Value;
use support::rules::{load_deploy, root};
use support::tools;

const OVERLAYS: [&str; 3] = ["ap-southeast", "eu-west", "us-east"];

fn deploy() -> PathBuf {
    root().join("deploy")
}

fn kubectl() -> PathBuf {
    tools::require("kubectl", "kubectl")
}

/// `kubectl kustomize DIR` as JSON values, one per resource; rendered once per
/// test binary.
fn render(dir: &str) -> Vec<Value> {
    static CACHE: OnceLock<Mutex<BTreeMap<String, Vec<Value>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(r) = cache.lock().unwrap().get(dir) {
        return r.clone();
    }
    let output = tools::run(&kubectl(), &["kustomize", dir], &deploy());
    tools::assert_success(&format!("kubectl kustomize deploy/{dir}"), &output);
    let text = String::from_utf8(output.stdout).unwrap();
    use saphyr::LoadableYamlNode;
    let docs = saphyr::Yaml::load_from_str(&text).unwrap_or_else(|e| panic!("deploy/{dir} renders bad YAML: {e}"));
    let resources: Vec<Value> = docs.iter().map(to_json).collect();
    cache.lock().unwrap().insert(dir.to_owned(), resources.clone());
    resources
}

fn to_json(yaml: &saphyr::Yaml<'_>) -> Value {
    use saphyr::{Scalar, Yaml};
    match yaml {
        Yaml::Value(Scalar::Null) => Value::Null,
        Yaml::Value(Scalar::Boolean(b)) => Value::Bool(*b),
        Yaml::Value(Scalar::Integer(i)) => Value::from(*i),
        Yaml::Value(Scalar::FloatingPoint(f)) => Value::from(f.into_inner()),
        Yaml::Value(Scalar::String(s)) => Value::String(s.to_string()),
        Yaml::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Mapping(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.as_str().expect("string keys").to_owned(), to_json(v))).collect())
        }
        other => panic!("unexpected YAML node {other:?}"),
    }
}

fn of_kind<'a>(resources: &'a [Value], kind: &str) -> Vec<&'a Value> {
    resources.iter().filter(|r| r["kind"] == kind).collect()
}

fn name(r: &Value) -> &str {
    r["metadata"]["name"].as_str().unwrap_or_default()
}

/// Every pod template of the CronJobs and Deployments, with the workload's name.
fn pod_templates(resources: &[Value]) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for r in resources {
        let template = match r["kind"].as_str() {
            Some("CronJob") => &r["spec"]["jobTemplate"]["spec"]["template"],
            Some("Deployment") => &r["spec"]["template"],
            _ => continue,
        };
        out.push((format!("{} {}", r["kind"].as_str().unwrap(), name(r)), template));
    }
    out
}

/// The ConfigMap a volume of `pod` mounts, found among `resources`.
fn mounted_config_map<'a>(resources: &'a [Value], pod: &Value, volume: &str) -> &'a Value {
    let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
    let v = volumes.iter().find(|v| v["name"] == volume).unwrap_or_else(|| panic!("no volume `{volume}`"));
    let cm = v["configMap"]["name"].as_str().unwrap_or_else(|| panic!("volume `{volume}` is not a ConfigMap"));
    of_kind(resources, "ConfigMap")
        .into_iter()
        .find(|c| name(c) == cm)
        .unwrap_or_else(|| panic!("volume `{volume}` mounts ConfigMap {cm}, which is not rendered"))
}

fn mount_path<'a>(container: &'a Value, volume: &str) -> &'a str {
    container["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == volume))
        .and_then(|m| m["mountPath"].as_str())
        .unwrap_or_else(|| panic!("no mount of `{volume}`"))
}

#[test]
fn generated_files_under_deploy_are_up_to_date() {
    let bless = std::env::var_os("FEDIPROBE_BLESS").is_some();
    let mut stale = Vec::new();
    let mut expect = |path: PathBuf, fresh: String| {
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &fresh).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(fresh.as_str()) {
            stale.push(path.strip_prefix(root()).unwrap().display().to_string());
        }
    };
    let copy_dir = deploy().join("base/journeys");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root().join("journeys")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let file = path.file_name().unwrap().to_str().unwrap().to_owned();
            expect(copy_dir.join(&file), std::fs::read_to_string(&path).unwrap());
            names.push(file);
        }
    }
    let loaded = load_deploy();
    let groups = cronjobs::schedule_groups(&loaded.journeys).expect("the bundled schedules fit a CronJob");
    expect(deploy().join("components/cronjob/cronjobs.yaml"), cronjobs::render(&groups));
    if bless {
        for entry in std::fs::read_dir(&copy_dir).unwrap() {
            let path = entry.unwrap().path();
            if !names.iter().any(|n| path.ends_with(n)) {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
    let copies = std::fs::read_dir(&copy_dir).unwrap().count();
    assert!(
        stale.is_empty() && copies == names.len(),
        "stale generated files under deploy/: {} ({copies} journeys in deploy/base/journeys, {} in journeys/)\n\
         regenerate them with `FEDIPROBE_BLESS=1 cargo test --test deploy` and commit the result",
        stale.join(", "),
        names.len()
    );
    let kustomization = std::fs::read_to_string(deploy().join("base/kustomization.yaml")).unwrap();
    for n in &names {
        assert!(
            kustomization.contains(&format!("- journeys/{n}")),
            "deploy/base/kustomization.yaml lacks journeys/{n}"
        );
    }
}

#[test]
fn the_overlays_are_the_three_example_regions() {
    let mut found: Vec<String> = std::fs::read_dir(deploy().join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    found.sort();
    assert_eq!(found, OVERLAYS);
}

#[test]
fn every_pod_is_locked_down_and_sized() {
    for overlay in OVERLAYS {
        let resources = render(&format!("overlays/{overlay}"));
        let pods = pod_templates(&resources);
        assert!(!pods.is_empty(), "{overlay} renders no workload");
        for (workload, pod) in pods {
            let at = format!("{overlay}: {workload}");
            let spec = &pod["spec"];
            assert_eq!(spec["automountServiceAccountToken"], false, "{at}");
            assert_eq!(spec["serviceAccountName"], "fediprobe", "{at}");
            assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{at}");
            assert_eq!(spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{at}");
            let containers = spec["containers"].as_array().unwrap();
            assert_eq!(containers.len(), 1, "{at}");
            let c = &containers[0];
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{at}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{at}");
            assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{at}");
            assert_eq!(c["resources"]["requests"], serde_json::json!({ "cpu": "20m", "memory": "64Mi" }), "{at}");
            assert_eq!(c["resources"]["limits"], serde_json::json!({ "cpu": "200m", "memory": "128Mi" }), "{at}");
            let image = c["image"].as_str().unwrap();
            assert!(image.contains('/') && image.contains(':'), "{at}: image `{image}` was not set by the overlay");
            assert_eq!(pod["metadata"]["labels"]["fediprobe/region"], overlay, "{at}: the pod's region label");
            assert_eq!(mount_path(c, "spool"), "/var/lib/fediprobe/spool", "{at}");
            let tokens = spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "tokens").unwrap();
            assert_eq!(tokens["secret"]["secretName"], "fediprobe-tokens", "{at}");
        }
        assert!(of_kind(&resources, "Secret").is_empty(), "{overlay}: a Secret with values must never be rendered");
        for r in &resources {
            if r["kind"] != "Namespace" {
                assert_eq!(r["metadata"]["namespace"], "fediprobe", "{overlay}: {} {}", r["kind"], name(r));
            }
        }
        let sa = of_kind(&resources, "ServiceAccount");
        assert_eq!(sa.len(), 1, "{overlay}");
        assert_eq!(sa[0]["automountServiceAccountToken"], false, "{overlay}");
    }
}

#[test]
fn egress_is_limited_to_dns_https_and_the_metrics_backend() {
    for overlay in OVERLAYS {
        let resources = render(&format!("overlays/{overlay}"));
        let policies = of_kind(&resources, "NetworkPolicy");
        let egress = policies
            .iter()
            .find(|p| p["spec"]["policyTypes"].as_array().is_some_and(|t| t.contains(&Value::from("Egress"))))
            .unwrap_or_else(|| panic!("{overlay}: no egress NetworkPolicy"));
        assert_eq!(egress["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "fediprobe");
        let ports: Vec<i64> = egress["spec"]["egress"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
            .map(|p| p["port"].as_i64().expect("every egress rule names its ports"))
            .collect();
        assert!(ports.contains(&53) && ports.contains(&443), "{overlay}: {ports:?}");
        assert!(ports.iter().all(|p| [53, 443, 8428, 8429, 8480].contains(p)), "{overlay}: {ports:?}");
        let public = serde_json::to_string(&egress["spec"]["egress"]).unwrap();
        assert!(public.contains("169.254.0.0/16"), "{overlay}: the metadata service must stay closed");
    }
}

#[test]
fn cronjobs_run_every_journey_once_without_overlap() {
    let journeys: Vec<String> = load_deploy().journeys.iter().map(|j| j.name.clone()).collect();
    let mut cronjob_overlays = 0;
    for overlay in OVERLAYS {
        let resources = render(&format!("overlays/{overlay}"));
        let jobs = of_kind(&resources, "CronJob");
        if jobs.is_empty() {
            continue;
        }
        cronjob_overlays += 1;
        let mut covered = Vec::new();
        for job in jobs {
            let at = format!("{overlay}: CronJob {}", name(job));
            let spec = &job["spec"];
            assert_eq!(spec["concurrencyPolicy"], "Forbid", "{at}");
            assert!(spec["startingDeadlineSeconds"].as_i64().is_some_and(|s| s > 0), "{at}");
            assert!(spec["successfulJobsHistoryLimit"].as_i64().is_some(), "{at}");
            assert!(spec["failedJobsHistoryLimit"].as_i64().is_some(), "{at}");
            assert_eq!(spec["schedule"].as_str().unwrap().split_whitespace().count(), 5, "{at}");
            assert_eq!(spec["jobTemplate"]["spec"]["backoffLimit"], 0, "{at}: no hidden retries");
            let pod = &spec["jobTemplate"]["spec"]["template"]["spec"];
            assert_eq!(pod["restartPolicy"], "Never", "{at}");
            let args: Vec<&str> =
                pod["containers"][0]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
            assert!(args.contains(&"once"), "{at}: {args:?}");
            assert!(args.windows(2).any(|w| w == ["-c", cronjobs::CONFIG_PATH]), "{at}: {args:?}");
            for w in args.windows(2).filter(|w| w[0] == "--journey") {
                covered.push(w[1].to_owned());
            }
        }
        covered.sort();
        let mut expected = journeys.clone();
        expected.sort();
        assert_eq!(covered, expected, "{overlay}: every journey in exactly one CronJob");
    }
    assert!(cronjob_overlays > 0, "no overlay uses the CronJob variant");
}

#[test]
fn the_deployment_is_probed_and_scraped() {
    let mut deployment_overlays = 0;
    for overlay in OVERLAYS {
        let resources = render(&format!("overlays/{overlay}"));
        let deployments = of_kind(&resources, "Deployment");
        if deployments.is_empty() {
            continue;
        }
        deployment_overlays += 1;
        let d = deployments[0];
        assert_eq!(d["spec"]["replicas"], 1, "{overlay}: one agent per region");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{overlay}");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{overlay}");
        assert_eq!(c["ports"][0]["containerPort"], 9464, "{overlay}");
        let args = serde_json::to_string(&c["args"]).unwrap();
        assert!(args.contains("\"run\""), "{overlay}: {args}");
        let config = mounted_config_map(&resources, &d["spec"]["template"], "config");
        let text = config["data"]["fediprobe.yaml"].as_str().unwrap();
        assert!(text.contains("listen: 0.0.0.0:9464"), "{overlay}: the agent must listen beyond loopback");
        let scrapes: Vec<&Value> =
            resources.iter().filter(|r| r["kind"] == "PodMonitor" || r["kind"] == "VMPodScrape").collect();
        assert_eq!(scrapes.len(), 1, "{overlay}: one PodMonitor or VMPodScrape");
        let endpoint = &scrapes[0]["spec"]["podMetricsEndpoints"][0];
        assert_eq!(endpoint["path"], "/metrics", "{overlay}");
        assert_eq!(endpoint["port"], "metrics", "{overlay}");
    }
    assert!(deployment_overlays > 0, "no overlay uses the Deployment variant");
}

/// Writes the ConfigMap's files into `dir`.
fn unpack(config_map: &Value, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (file, content) in config_map["data"].as_object().unwrap() {
        std::fs::write(dir.join(file), content.as_str().unwrap()).unwrap();
    }
}

#[test]
fn each_overlay_config_passes_check_as_the_pod_sees_it() {
    for overlay in OVERLAYS {
        let resources = render(&format!("overlays/{overlay}"));
        let (workload, pod) = pod_templates(&resources).into_iter().next().unwrap();
        let c = &pod["spec"]["containers"][0];
        // The pod's layout, under a temporary root.
        let tmp = tempfile::tempdir().unwrap();
        let config_dir = mount_path(c, "config");
        let journeys_dir = mount_path(c, "journeys");
        assert_eq!(Path::new(config_dir).join("fediprobe.yaml"), Path::new(cronjobs::CONFIG_PATH), "{workload}");
        let inside = |p: &str| tmp.path().join(p.trim_start_matches('/'));
        let config = mounted_config_map(&resources, pod, "config");
        unpack(config, &inside(config_dir));
        unpack(mounted_config_map(&resources, pod, "journeys"), &inside(journeys_dir));
        let text = config["data"]["fediprobe.yaml"].as_str().unwrap();
        assert!(text.contains(&format!("region: {overlay}\n")), "{overlay}: probe.region must be the overlay's region");
        let output = tools::run(
            Path::new(env!("CARGO_BIN_EXE_fediprobe")),
            &["check", "-c", inside(cronjobs::CONFIG_PATH).to_str().unwrap()],
            tmp.path(),
        );
        tools::assert_success(&format!("fediprobe check of {overlay}'s config"), &output);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let expected = load_deploy().journeys.len();
        assert!(stdout.contains(&format!("ok: {expected} journeys checked")), "{overlay}: {stdout}");
    }
}

#[test]
fn the_monitoring_kustomizations_ship_rules_and_dashboards() {
    for (dir, rule_kind) in
        [("monitoring/victoria-metrics", "VMRule"), ("monitoring/prometheus-operator", "PrometheusRule")]
    {
        let resources = render(dir);
        let rules = of_kind(&resources, rule_kind);
        assert_eq!(rules.len(), 1, "{dir}: one {rule_kind}");
        assert!(rules[0]["spec"]["groups"].as_array().is_some_and(|g| !g.is_empty()), "{dir}");
        let dashboards: Vec<&Value> = of_kind(&resources, "ConfigMap")
            .into_iter()
            .filter(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1")
            .collect();
        assert_eq!(dashboards.len(), 4, "{dir}: the four dashboards, labelled grafana_dashboard=1");
        for d in dashboards {
            for (file, json) in d["data"].as_object().unwrap() {
                let parsed: Value = serde_json::from_str(json.as_str().unwrap()).unwrap();
                assert!(parsed["uid"].as_str().is_some_and(|u| file.starts_with(u)), "{dir}: {file}");
            }
        }
    }
}

/// `kubectl apply` (client-side) stores each object as compact JSON in its
/// `kubectl.kubernetes.io/last-applied-configuration` annotation, and the API
/// server refuses annotations over 262,144 bytes in total: every object of every
/// kustomization must fit, with room for the annotation's own key and the
/// object's other annotations.
#[test]
fn every_object_fits_client_side_apply() {
    const ANNOTATION_LIMIT: usize = 262_144;
    let mut dirs = vec!["monitoring/victoria-metrics".to_owned(), "monitoring/prometheus-operator".to_owned()];
    for entry in std::fs::read_dir(deploy().join("overlays")).unwrap() {
        dirs.push(format!("overlays/{}", entry.unwrap().file_name().to_string_lossy()));
    }
    let mut seen = 0;
    for dir in &dirs {
        for resource in render(dir) {
            let size = serde_json::to_string(&resource).unwrap().len();
            assert!(
                size + 4096 < ANNOTATION_LIMIT,
                "deploy/{dir}: {} {} is {size} bytes as JSON: too big for `kubectl apply` (client-side) to annotate",
                resource["kind"],
                name(&resource)
            );
            seen += 1;
        }
    }
    assert!(seen > 10, "only {seen} objects rendered");
}
