//! The configuration file (`fediprobe.yaml`): who the probe is, which instances
//! it measures and with which tokens, where the journeys are, and where samples go.
//!
//! ```yaml
//! probe:
//!   region: eu-west              # required: the vantage point, a label on every sample
//!   name: eu-west-1              # default: the region; spreads schedules between probes
//!   control_url: https://connectivitycheck.gstatic.com   # default: none (see below)
//! instances:
//!   main:
//!     url: https://mastodon.example
//!     account: fediprobe         # the probe account's user name (a label on every sample)
//!     token: { env: FEDIPROBE_MAIN_TOKEN }   # or { file: /var/run/secrets/fediprobe/main }
//!     shared_by: { account: 3, token: 1 }    # default 1 and 1: probes (this one included) using
//!                                            # this account, and this token; `token` defaults
//!                                            # to `account`; `shared_by: 3` is both
//!     rate_limits: { api_calls: 300 }        # only where the instance differs from Mastodon's
//!     streaming_hosts: [stream.example.net]  # default: none; hosts besides the instance's own and its
//!                                            # parent domain's that may receive the token for streaming
//!                                            # defaults: api_calls (per token), account_api_calls,
//!                                            # unauthenticated_api_calls (per 5 min), statuses (3 h),
//!                                            # deletes, media (30 min)
//!     accounts:                  # default: none; more probe accounts on this instance, by user name
//!       fediprobe_busy:          # its user name: the `account` label of its samples
//!         token: { file: /var/run/secrets/fediprobe/main-busy }  # required, as above
//!         shared_by: { account: 3, token: 1 }  # default: the instance's `shared_by`
//!         note: follows 400 accounts         # default none; for people, never a label
//! journeys: [journeys/]          # default: journeys/ beside this file
//! remote_write:                  # optional
//!   url: http://victoria-metrics:8428/api/v1/write
//!   bearer_token: { env: VM_TOKEN }          # or basic_auth: { username: u, password: { env: P } }
//!   headers: { X-Scope-OrgID: mastodon }
//!   timeout: 10s                 # default 10s, per push request
//!   flush_timeout: 30s           # default 30s, how long `once` waits to deliver before spooling
//!   spool_dir: /var/lib/fediprobe/spool      # default: none (samples not delivered are lost)
//!   spool_max_bytes: 268435456   # default 256 MiB
//!   queue_capacity: 100000       # default 100000 samples in memory
//!   max_sample_age: 14d          # default 14d: older samples are dropped (counted), never sent
//! agent:                         # optional: `fediprobe run` only
//!   listen: 127.0.0.1:9464       # default: /healthz, /readyz, /metrics on loopback
//!   max_concurrent_runs: 32      # default 32
//!   spread: 30s                  # default 30s: most a journey's slot is shifted; 0s disables
//!   shutdown_grace: 30s          # default 30s: runs in flight may finish within it
//!   push_interval: 5s            # default 5s between pushes
//!   reload_check: 10s            # default 10s: reload when the config or a journey file changes; 0s: SIGHUP only
//! rules:                         # optional: how `fediprobe rules` generates the SLO rules
//!   regions: [eu-west, us-east, ap-southeast]  # default: [probe.region]; regions expected to report
//!   page_quorum: 2               # default: 2 with two or more regions, else 1
//!   runbook_url: https://git.example/ops/fediprobe/-/blob/main/runbooks/  # default: `runbooks/`
//!   probe_error_ratio: 10%       # default 10%: share of probe_error runs that opens a ticket
//!   # How the rules fit the stack they join (README: "Beside an existing Mastodon observability stack"):
//!   names: mastodon              # default `fediprobe`: record and alert names (`mastodon`: mastodon:journey_…, MastodonJourney…)
//!   severities: { page: critical, ticket: warning }  # default page and ticket: the `severity` label's values
//!   labels: { service: fediprobe, team: sre }        # default none: static labels on every rule
//!   instance_label: namespace    # default `instance`: the label that carries the instance's name in the rules
//!   runbook_annotation: runbook  # default `runbook_url`: the annotation holding each alert's runbook link
//!   selector: 'cluster="eu"'     # default none: label matchers added to every series the rules read from the probes
//! ```
//!
//! `probe.control_url` decides whose fault a network failure is: before a
//! `connect`, `dns` or pre-connection `timeout` failure counts against an
//! instance, the probe makes one TCP connection (2 s at most) to the control
//! URL's host and port; when that fails too, the run is
//! `probe_error`/`probe_network`. It must share the instances' network path (out
//! of the cluster, to the internet) and not their fate (not the instance's host,
//! provider or CDN, not the metrics backend). Without one, every network failure
//! is the instance's `failure`. `check` warns when it is missing or looks wrong.

use std::path::PathBuf;
use std::time::Duration;

use super::diag::Pos;
use super::values;
use super::yaml::{Node, Reader, Value};

#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub probe: ProbeIdentity,
    pub instances: Vec<InstanceConfig>,
    /// Journey files or folders, relative paths resolved against the config's folder.
    pub journeys: Vec<PathBuf>,
    pub remote_write: Option<RemoteWriteConfig>,
    /// Settings of the long-running agent; defaults when absent.
    pub agent: AgentConfig,
    /// How the SLO rules are generated; defaults when the config has no `rules:`.
    pub rules: RulesConfig,
}

impl Config {
    pub fn instance(&self, name: &str) -> Option<&InstanceConfig> {
        self.instances.iter().find(|i| i.name == name)
    }

    /// The limits of instance `name` and the probes sharing its account
    /// `run_as` (`None`: the primary) and that account's token (Mastodon's
    /// defaults and one probe for a name not in the config).
    pub fn limits_for(&self, name: &str, run_as: Option<&str>) -> (Vec<super::limits::Limit>, super::limits::Sharing) {
        match self.instance(name) {
            Some(i) => (i.limits(), i.account_config(run_as).map_or(i.shared_by, |(_, _, sharing)| sharing)),
            None => (super::limits::LIMITS.to_vec(), super::limits::Sharing::default()),
        }
    }

    /// The user names of the probe accounts on instance `name`, the primary
    /// first (none for a name not in the config).
    pub fn account_names(&self, name: &str) -> Vec<String> {
        self.instance(name).map(InstanceConfig::account_names).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct ProbeIdentity {
    /// The vantage point, e.g. `eu-west`.
    pub region: String,
    /// This probe's own name; defaults to the region.
    pub name: String,
    /// A URL whose host and port the probe reaches over the same network path as
    /// the instances, on infrastructure that does not share their fate (a
    /// well-known public HTTPS host). Before a failure that may be the probe's
    /// own network (`connect`, `dns`, a timeout before connecting) counts against
    /// an instance, the probe makes one TCP connection to it; when that fails too,
    /// the run is `probe_error`/`probe_network`. Default: none, and then such a
    /// failure is always the instance's (never the metrics backend: its outage
    /// must not change how instance failures are classified).
    pub control_url: Option<url::Url>,
    /// Where `control_url` is written, or the `probe` section when it is absent (for `check`'s warnings).
    pub control_url_pos: Pos,
}

#[derive(Debug, Clone)]
pub struct InstanceConfig {
    pub name: String,
    pub url: url::Url,
    /// The probe account's user name on this instance: the primary account,
    /// which journeys run as unless they name others (`accounts:` in a journey).
    pub account: String,
    pub token: TokenSource,
    /// Limits the instance enforces where they differ from Mastodon's defaults
    /// (an admin may raise them in `config/initializers/rack_attack.rb`): pairs of
    /// a limit's name (`api_calls`, `unauthenticated_api_calls`, `statuses`,
    /// `deletes`, `media`) and its maximum per Mastodon's window.
    pub rate_limits: Vec<(String, u32)>,
    /// How many probes use this account and this token (`shared_by`).
    pub shared_by: super::limits::Sharing,
    /// Hosts (names, not URLs) the streaming API may be on and receive the token,
    /// besides the instance's own host and its parent domain (see
    /// `runner::stream::streaming_url_allowed`).
    pub streaming_hosts: Vec<String>,
    /// More probe accounts on this instance (`accounts:`), in the config's order:
    /// users unlike the primary one, e.g. one that follows hundreds of accounts.
    pub extra_accounts: Vec<AccountConfig>,
    pub pos: Pos,
}

/// A probe account besides an instance's primary one.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// Its user name on the instance (the key under `accounts:`): the `account`
    /// label of its samples and the name journeys choose it by.
    pub name: String,
    pub token: TokenSource,
    /// How many probes use this account and this token; default the instance's.
    pub shared_by: super::limits::Sharing,
    /// What makes the account unlike the others, for people reading the config.
    pub note: Option<String>,
    pub pos: Pos,
}

/// The config's names for Mastodon's limits, with the limit each one sets.
pub const RATE_LIMIT_KEYS: [(&str, super::limits::Limit); 6] = [
    ("api_calls", super::limits::API_CALLS),
    ("account_api_calls", super::limits::ACCOUNT_API_CALLS),
    ("unauthenticated_api_calls", super::limits::UNAUTHENTICATED_API_CALLS),
    ("statuses", super::limits::STATUSES),
    ("deletes", super::limits::DELETES),
    ("media", super::limits::MEDIA),
];

impl InstanceConfig {
    /// The user names of every probe account on this instance, the primary first.
    pub fn account_names(&self) -> Vec<String> {
        std::iter::once(self.account.clone()).chain(self.extra_accounts.iter().map(|a| a.name.clone())).collect()
    }

    /// The account `run_as` names (`None`: the primary), if it is configured.
    pub fn account_config(&self, run_as: Option<&str>) -> Option<(&str, &TokenSource, super::limits::Sharing)> {
        match run_as {
            None => Some((&self.account, &self.token, self.shared_by)),
            Some(name) if name == self.account => Some((&self.account, &self.token, self.shared_by)),
            Some(name) => {
                self.extra_accounts.iter().find(|a| a.name == name).map(|a| (a.name.as_str(), &a.token, a.shared_by))
            }
        }
    }

    /// Mastodon's limits with this instance's overrides applied.
    pub fn limits(&self) -> Vec<super::limits::Limit> {
        RATE_LIMIT_KEYS
            .iter()
            .map(|(key, limit)| match self.rate_limits.iter().find(|(k, _)| k == key) {
                Some((_, max)) => super::limits::Limit { max: *max, ..*limit },
                None => *limit,
            })
            .collect()
    }
}

/// Where a secret comes from. Never the config file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Env(String),
    File(PathBuf),
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Env(name) => write!(f, "environment variable {name}"),
            TokenSource::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// The `remote_write:` section as written. Every default is the sink's own
/// (`sink::remote_write::default_*`), so that a default lives in one place; the
/// agent and `once` turn this into the sink's options in `wiring.rs`.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteWriteConfig {
    pub url: url::Url,
    pub auth: Option<RemoteWriteAuth>,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub flush_timeout: Duration,
    pub spool_dir: Option<PathBuf>,
    pub spool_max_bytes: u64,
    pub queue_capacity: usize,
    /// Samples older than this are dropped and counted, never sent: below the
    /// receivers' default retention (see `sink::remote_write::default_max_sample_age`).
    pub max_sample_age: Duration,
}

/// Settings of `fediprobe run`.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` are served. Default 127.0.0.1:9464.
    pub listen: std::net::SocketAddr,
    /// Most runs at the same time, all journeys together. Default 32.
    pub max_concurrent_runs: usize,
    /// The most a journey's slots are shifted, by a stable offset derived from the
    /// journey's and the probe's names, so that probes and journeys don't all fire
    /// in the same second. Never more than the journey's period. Default 30 s; zero disables.
    pub spread: Duration,
    /// How long runs in flight may finish after SIGTERM before they are cancelled
    /// (their cleanup still runs). Default 30 s.
    pub shutdown_grace: Duration,
    /// Time between pushes to the remote-write backend. Default 5 s.
    pub push_interval: Duration,
    /// How often the agent looks whether the config or a journey file changed
    /// (their contents, so a Kubernetes ConfigMap's symlink swap counts), and
    /// reloads as on SIGHUP when one did. Default 10 s; zero: SIGHUP only.
    pub reload_check: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9464)),
            max_concurrent_runs: 32,
            spread: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            push_interval: Duration::from_secs(5),
            reload_check: Duration::from_secs(10),
        }
    }
}

/// The `rules:` section: what `fediprobe rules` needs beyond the journeys.
#[derive(Debug, Clone, PartialEq)]
pub struct RulesConfig {
    /// The regions (vantage points) expected to report every journey, sorted.
    /// Default: only this config's own `probe.region`. A region in this list that
    /// stops reporting a journey opens a ticket.
    pub regions: Vec<String>,
    /// How many regions must see a burn before it pages. Default
    /// [`default_page_quorum`]: 2 when two or more regions are listed, else 1, so
    /// that one vantage point's own network trouble does not wake anyone.
    pub page_quorum: usize,
    /// Where the runbooks are: each alert links to `runbook_url` + `<alert file>.md`.
    /// Default [`DEFAULT_RUNBOOK_URL`], the repository's `runbooks/` folder as a
    /// relative path; set it to the URL your team opens, e.g. the folder on your Git forge.
    /// Always ends with `/`.
    pub runbook_url: String,
    /// The share of `probe_error` runs (of all runs of a journey from one region)
    /// above which a ticket opens. Default [`DEFAULT_PROBE_ERROR_RATIO`], 10%.
    pub probe_error_ratio: f64,
    /// How recorded series and alerts are named. Default [`NameScheme::Fediprobe`].
    pub names: NameScheme,
    /// The `severity` label's values. Default `page` and `ticket`.
    pub severities: Severities,
    /// Static labels added to every rule (e.g. `service`, `team`). Default none.
    /// Never one of the labels the rules set themselves.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The label that carries the instance's name (fediprobe's `instance`) in
    /// every recorded series and alert. Default `instance`; another name (such as
    /// `namespace`) is copied from `instance` with `label_replace`.
    pub instance_label: String,
    /// The annotation key each alert's runbook link goes under. Default `runbook_url`.
    pub runbook_annotation: String,
    /// PromQL label matchers (e.g. `cluster="eu",job="fediprobe"`) added to every
    /// series the rules read from the probes, for a backend that holds several
    /// fediprobe deployments or tenants. Default empty: none.
    pub selector: String,
}

/// How the rules name what they record and alert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NameScheme {
    /// fediprobe's own names: `journey:fediprobe_slo_errors:ratio_5m`,
    /// `FediprobeAvailabilityFastBurn`.
    Fediprobe,
    /// Names that read like a Jsonnet-generated Mastodon observability stack
    /// (toot.community's mastodon-observability): one series per SLI, e.g.
    /// `mastodon:journey_availability:burn_rate_5m`, and alerts such as
    /// `MastodonJourneyAvailabilityCritical`.
    Mastodon,
}

impl NameScheme {
    pub const ALL: [NameScheme; 2] = [NameScheme::Fediprobe, NameScheme::Mastodon];

    /// The scheme's name in the config (and in the mixin's `_config.nameScheme`).
    pub fn key(self) -> &'static str {
        match self {
            NameScheme::Fediprobe => "fediprobe",
            NameScheme::Mastodon => "mastodon",
        }
    }
}

/// The values of the `severity` label on pages and on tickets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Severities {
    pub page: String,
    pub ticket: String,
}

impl Default for Severities {
    fn default() -> Severities {
        Severities { page: "page".to_owned(), ticket: "ticket".to_owned() }
    }
}

pub const DEFAULT_INSTANCE_LABEL: &str = "instance";
pub const DEFAULT_RUNBOOK_ANNOTATION: &str = "runbook_url";

/// The labels the rules set themselves (or read from the samples), which
/// `labels:` must not overwrite and `instance_label` must not take.
pub const RULE_LABELS: &[&str] = &[
    "journey",
    "instance",
    "region",
    "account",
    "sli",
    "window",
    "silence",
    "severity",
    "alertname",
    "outcome",
    "reason",
];

pub const DEFAULT_RUNBOOK_URL: &str = "runbooks/";
pub const DEFAULT_PROBE_ERROR_RATIO: f64 = 0.1;

/// 2 when two or more regions report, else 1.
pub fn default_page_quorum(regions: usize) -> usize {
    if regions >= 2 { 2 } else { 1 }
}

impl RulesConfig {
    /// The defaults for a probe in `region` and no `rules:` section.
    pub fn defaults_for(region: &str) -> RulesConfig {
        RulesConfig {
            regions: vec![region.to_owned()],
            page_quorum: default_page_quorum(1),
            runbook_url: DEFAULT_RUNBOOK_URL.to_owned(),
            probe_error_ratio: DEFAULT_PROBE_ERROR_RATIO,
            names: NameScheme::Fediprobe,
            severities: Severities::default(),
            labels: std::collections::BTreeMap::new(),
            instance_label: DEFAULT_INSTANCE_LABEL.to_owned(),
            runbook_annotation: DEFAULT_RUNBOOK_ANNOTATION.to_owned(),
            selector: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RemoteWriteAuth {
    Basic { username: String, password: TokenSource },
    Bearer(TokenSource),
}

const CONFIG_KEYS: &[&str] = &["probe", "instances", "journeys", "remote_write", "agent", "rules"];
const RULES_KEYS: &[&str] = &[
    "regions",
    "page_quorum",
    "runbook_url",
    "probe_error_ratio",
    "names",
    "severities",
    "labels",
    "instance_label",
    "runbook_annotation",
    "selector",
];
const AGENT_KEYS: &[&str] =
    &["listen", "max_concurrent_runs", "spread", "shutdown_grace", "push_interval", "reload_check"];
const PROBE_KEYS: &[&str] = &["region", "name", "control_url"];
const INSTANCE_KEYS: &[&str] = &["url", "account", "token", "shared_by", "rate_limits", "streaming_hosts", "accounts"];
const ACCOUNT_KEYS: &[&str] = &["token", "shared_by", "note"];
const REMOTE_WRITE_KEYS: &[&str] = &[
    "url",
    "basic_auth",
    "bearer_token",
    "headers",
    "timeout",
    "flush_timeout",
    "spool_dir",
    "spool_max_bytes",
    "queue_capacity",
    "max_sample_age",
];

pub fn read_config(reader: &mut Reader<'_>, root: &Node) -> Option<Config> {
    let errors_before = reader.diagnostics.error_count();
    let fields = reader.map(root, "the config", CONFIG_KEYS)?;
    let base = reader.path().parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let probe = fields.require(reader, "probe", "the config").and_then(|n| read_probe(reader, n));
    let mut instances = Vec::new();
    if let Some(n) = fields.require(reader, "instances", "the config") {
        for (name, key, value) in reader.pairs(n, "`instances`") {
            if !values::is_valid_name(&name) {
                reader.error_hint(
                    key,
                    format!("instance name `{name}` is not a valid name"),
                    "use lower-case letters, digits, `-` and `_`",
                );
                continue;
            }
            if let Some(instance) = read_instance(reader, name, key.pos, value) {
                instances.push(instance);
            }
        }
        if instances.is_empty() && !reader.diagnostics.has_errors() {
            reader.error(n, "no instances are configured");
        }
    }
    let journeys = match fields.get("journeys") {
        None => vec![base.join("journeys")],
        Some(n) => {
            let items: Vec<&Node> = match &n.value {
                Value::Seq(items) => items.iter().collect(),
                _ => vec![n],
            };
            items.into_iter().filter_map(|i| reader.string(i, "a journey path")).map(|p| base.join(p)).collect()
        }
    };
    let remote_write = match fields.get("remote_write") {
        None => Some(None),
        Some(n) => read_remote_write(reader, n, &base).map(Some),
    };
    let agent = match fields.get("agent") {
        None => Some(AgentConfig::default()),
        Some(n) => read_agent(reader, n),
    };
    let rules = match (fields.get("rules"), &probe) {
        (Some(n), Some(p)) => read_rules(reader, n, &p.region),
        (None, Some(p)) => Some(RulesConfig::defaults_for(&p.region)),
        (_, None) => None,
    };
    if reader.diagnostics.error_count() > errors_before {
        return None;
    }
    Some(Config {
        file: reader.path().to_path_buf(),
        probe: probe?,
        instances,
        journeys,
        remote_write: remote_write?,
        agent: agent?,
        rules: rules?,
    })
}

fn read_probe(reader: &mut Reader<'_>, node: &Node) -> Option<ProbeIdentity> {
    let fields = reader.map(node, "`probe`", PROBE_KEYS)?;
    let region = fields.require(reader, "region", "`probe`").and_then(|n| values::name(reader, n, "region"))?;
    let name = match fields.get("name") {
        Some(n) => values::name(reader, n, "probe name")?,
        None => region.clone(),
    };
    let control_url_pos = fields.get("control_url").map_or(node.pos, |n| n.pos);
    let control_url = match fields.get("control_url") {
        None => Some(None),
        Some(n) => {
            let text = reader.string(n, "`control_url`")?;
            match url::Url::parse(&text) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(Some(u)),
                _ => {
                    reader.error_hint(
                        n,
                        format!("`{text}` is not an http(s) URL"),
                        "a public HTTPS host outside the cluster, e.g. `https://connectivitycheck.gstatic.com`",
                    );
                    None
                }
            }
        }
    };
    Some(ProbeIdentity { region, name, control_url: control_url?, control_url_pos })
}

fn read_instance(reader: &mut Reader<'_>, name: String, pos: Pos, node: &Node) -> Option<InstanceConfig> {
    let fields = reader.map(node, &format!("instance `{name}`"), INSTANCE_KEYS)?;
    let url = fields.require(reader, "url", "the instance").and_then(|n| {
        let text = reader.string(n, "`url`")?;
        match url::Url::parse(&text) {
            Ok(u) if has_credentials(&u) => {
                refuse_credentials(reader, n, "the token: `token: { file: … }`");
                None
            }
            Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some() => {
                if u.scheme() == "http" && !on_loopback(&u) {
                    reader.warning(
                        n,
                        "the token would cross the network in clear text: the instance URL is plain http",
                        Some(format!(
                            "use `https://{}`; plain http is for instances on loopback (the sandbox)",
                            u.authority()
                        )),
                    );
                }
                if u.query().is_some() || u.path() != "/" {
                    reader.error_hint(
                        n,
                        "an instance URL is just scheme and host",
                        format!("write `{}://{}`", u.scheme(), u.authority()),
                    );
                    return None;
                }
                Some(u)
            }
            Ok(_) => {
                reader.error_hint(n, format!("`{text}` is not an http(s) URL"), "e.g. `https://mastodon.example`");
                None
            }
            Err(e) => {
                reader.error_hint(n, format!("`{text}` is not a URL: {e}"), "e.g. `https://mastodon.example`");
                None
            }
        }
    });
    let account = fields.require(reader, "account", "the instance").and_then(|n| {
        let text = reader.string(n, "`account`")?;
        user_name(reader, n, &text)
    });
    let token = fields.require(reader, "token", "the instance").and_then(|n| read_secret_source(reader, n, "`token`"));
    let mut rate_limits = Vec::new();
    if let Some(n) = fields.get("rate_limits") {
        let keys: Vec<&str> = RATE_LIMIT_KEYS.iter().map(|(k, _)| *k).collect();
        if let Some(limits) = reader.map(n, "`rate_limits`", &keys) {
            for key in keys {
                if let Some(value) = limits.get(key)
                    && let Some(max) = positive_int(reader, value, &format!("`{key}`"))
                {
                    rate_limits.push((key.to_owned(), max.min(u64::from(u32::MAX)) as u32));
                }
            }
        }
    }
    let shared_by = match fields.get("shared_by") {
        None => Some(super::limits::Sharing::default()),
        Some(n) => read_sharing(reader, n),
    };
    let streaming_hosts = fields.get("streaming_hosts").map_or_else(|| Some(Vec::new()), |n| read_hosts(reader, n));
    let extra_accounts = match (fields.get("accounts"), &account, shared_by) {
        (None, _, _) => Some(Vec::new()),
        (Some(n), Some(primary), Some(sharing)) => read_accounts(reader, n, primary, sharing),
        // The primary account or `shared_by` is wrong: said already.
        (Some(_), _, _) => None,
    };
    Some(InstanceConfig {
        name,
        url: url?,
        account: account?,
        token: token?,
        rate_limits,
        shared_by: shared_by?,
        streaming_hosts: streaming_hosts?,
        extra_accounts: extra_accounts?,
        pos,
    })
}

/// A Mastodon user name (a leading `@` dropped), or an error at `node`.
fn user_name(reader: &mut Reader<'_>, node: &Node, text: &str) -> Option<String> {
    let text = text.trim_start_matches('@').to_owned();
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        reader.error_hint(
            node,
            format!("`{text}` is not a Mastodon user name"),
            "the probe account's local user name, e.g. `fediprobe`",
        );
        return None;
    }
    Some(text)
}

/// Reads `accounts:`, the probe accounts besides the primary one, keyed by
/// user name; each has its own token, and `shared_by` defaults to the instance's.
fn read_accounts(
    reader: &mut Reader<'_>,
    node: &Node,
    primary: &str,
    instance_sharing: super::limits::Sharing,
) -> Option<Vec<AccountConfig>> {
    let mut accounts = Vec::new();
    let mut ok = true;
    for (key_text, key, value) in reader.pairs(node, "`accounts`") {
        let Some(name) = user_name(reader, key, &key_text) else {
            ok = false;
            continue;
        };
        if accounts.iter().any(|a: &AccountConfig| a.name.eq_ignore_ascii_case(&name)) {
            reader.error_hint(
                key,
                format!("account `{name}` is listed twice"),
                "user names are case-insensitive: keep one",
            );
            ok = false;
            continue;
        }
        if name.eq_ignore_ascii_case(primary) {
            reader.error_hint(
                key,
                format!("`{name}` is the instance's primary account already (`account:`)"),
                "list here only the other probe accounts, each with its own token",
            );
            ok = false;
            continue;
        }
        let Some(fields) = reader.map(value, &format!("account `{name}`"), ACCOUNT_KEYS) else {
            ok = false;
            continue;
        };
        let token =
            fields.require(reader, "token", "the account").and_then(|n| read_secret_source(reader, n, "`token`"));
        let shared_by = match fields.get("shared_by") {
            None => Some(instance_sharing),
            Some(n) => read_sharing(reader, n),
        };
        let note = fields.get("note").and_then(|n| reader.string(n, "`note`"));
        match (token, shared_by) {
            (Some(token), Some(shared_by)) => {
                accounts.push(AccountConfig { name, token, shared_by, note, pos: key.pos })
            }
            _ => ok = false,
        }
    }
    ok.then_some(accounts)
}

/// `shared_by: 3` (three probes share the account and its token) or
/// `shared_by: { account: 3, token: 1 }` (a token per probe); `token` defaults to
/// `account`, the worst case.
fn read_sharing(reader: &mut Reader<'_>, node: &Node) -> Option<super::limits::Sharing> {
    if let Value::Int(_) = node.value {
        let probes = positive_int(reader, node, "`shared_by`")?.min(u64::from(u32::MAX)) as u32;
        return Some(super::limits::Sharing { account: probes, token: probes });
    }
    let fields = reader.map(node, "`shared_by`", &["account", "token"])?;
    let account = match fields.get("account") {
        None => Some(1),
        Some(n) => positive_int(reader, n, "`account`").map(|v| v.min(u64::from(u32::MAX)) as u32),
    }?;
    let token = match fields.get("token") {
        None => Some(account),
        Some(n) => positive_int(reader, n, "`token`").map(|v| v.min(u64::from(u32::MAX)) as u32),
    }?;
    if token > account {
        reader.error_hint(
            node,
            format!("{token} probes share the token but only {account} the account"),
            "a token belongs to one account: `token` is at most `account`",
        );
        return None;
    }
    Some(super::limits::Sharing { account, token })
}

/// Reads `streaming_hosts`: a list of host names (lower-cased) or addresses, not URLs.
fn read_hosts(reader: &mut Reader<'_>, node: &Node) -> Option<Vec<String>> {
    let mut hosts = Vec::new();
    let mut ok = true;
    for item in reader.seq(node, "`streaming_hosts`")? {
        let Some(text) = reader.string(item, "a streaming host") else {
            ok = false;
            continue;
        };
        let host = if text.contains(['/', '@']) { None } else { url::Host::parse(&text).ok() };
        match host {
            Some(host) => hosts.push(host.to_string()),
            None => {
                reader.error_hint(
                    item,
                    format!("`{text}` is not a host name"),
                    "give the host alone, e.g. `streaming.mastodon.example`, without scheme, port or path",
                );
                ok = false;
            }
        }
    }
    ok.then_some(hosts)
}

/// Whether a URL's host is this machine (`127.0.0.0/8`, `::1`, `localhost`).
fn on_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost" || name.ends_with(".localhost"),
        None => false,
    }
}

/// Whether a URL carries a user name or password (`https://user:password@host`).
fn has_credentials(url: &url::Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// Refuses credentials written into a URL: they are secrets in the config like an
/// inline token. The title does not repeat the URL (diagnostics mask its password
/// anyway).
fn refuse_credentials(reader: &mut Reader<'_>, node: &Node, instead: &str) {
    reader.error_hint(node, "a URL in the config must not carry credentials", format!("give them as {instead}"));
}

/// Reads `{ env: NAME }` or `{ file: PATH }`. An inline value is refused: config
/// files get committed, copied into ConfigMaps and pasted into tickets.
pub fn read_secret_source(reader: &mut Reader<'_>, node: &Node, what: &str) -> Option<TokenSource> {
    if let Value::Str(_) = node.value {
        reader.error_hint(
            node,
            format!("{what} must not be written into the config"),
            "give where to read it: `{ env: FEDIPROBE_TOKEN }` or `{ file: /var/run/secrets/fediprobe/token }`",
        );
        return None;
    }
    let fields = reader.map(node, what, &["env", "file"])?;
    match (fields.get("env"), fields.get("file")) {
        (Some(e), None) => {
            let name = reader.string(e, "`env`")?;
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                reader.error(e, format!("`{name}` is not an environment variable name"));
                return None;
            }
            Some(TokenSource::Env(name))
        }
        (None, Some(f)) => {
            let path = reader.string(f, "`file`")?;
            let base = reader.path().parent().map(|p| p.to_path_buf()).unwrap_or_default();
            Some(TokenSource::File(base.join(path)))
        }
        _ => {
            reader.error_hint(
                node,
                format!("{what} needs exactly one of `env` or `file`"),
                "e.g. `{ env: FEDIPROBE_TOKEN }`",
            );
            None
        }
    }
}

fn read_remote_write(reader: &mut Reader<'_>, node: &Node, base: &std::path::Path) -> Option<RemoteWriteConfig> {
    let fields = reader.map(node, "`remote_write`", REMOTE_WRITE_KEYS)?;
    let url = fields.require(reader, "url", "`remote_write`").and_then(|n| {
        let text = reader.string(n, "`url`")?;
        match url::Url::parse(&text) {
            Ok(u) if has_credentials(&u) => {
                refuse_credentials(reader, n, "`basic_auth: { username: …, password: { file: … } }`");
                None
            }
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => Some(u),
            _ => {
                reader.error_hint(
                    n,
                    format!("`{text}` is not an http(s) URL"),
                    "e.g. `http://victoria-metrics:8428/api/v1/write`",
                );
                None
            }
        }
    });
    let auth = match (fields.get("basic_auth"), fields.get("bearer_token")) {
        (Some(_), Some(b)) => {
            reader.error(b, "use `basic_auth` or `bearer_token`, not both");
            None
        }
        (Some(b), None) => {
            let bf = reader.map(b, "`basic_auth`", &["username", "password"])?;
            let username = bf.require(reader, "username", "`basic_auth`").and_then(|n| reader.string(n, "`username`"));
            let password = bf
                .require(reader, "password", "`basic_auth`")
                .and_then(|n| read_secret_source(reader, n, "`password`"));
            Some(Some(RemoteWriteAuth::Basic { username: username?, password: password? }))
        }
        (None, Some(t)) => read_secret_source(reader, t, "`bearer_token`").map(|s| Some(RemoteWriteAuth::Bearer(s))),
        (None, None) => Some(None),
    };
    let headers = fields
        .get("headers")
        .map(|n| {
            reader
                .pairs(n, "`headers`")
                .into_iter()
                .filter_map(|(k, key, v)| {
                    if k.eq_ignore_ascii_case("authorization") {
                        reader.error_hint(
                            key,
                            "`Authorization` must not be written into the config",
                            "use `bearer_token` or `basic_auth`",
                        );
                        return None;
                    }
                    reader.scalar_text(v, "a header value").map(|v| (k, v))
                })
                .collect()
        })
        .unwrap_or_default();
    // The defaults are the sink's own (one place for each).
    use crate::sink::remote_write as rw;
    let timeout = fields
        .get("timeout")
        .map(|n| values::duration(reader, n, "`timeout`"))
        .unwrap_or_else(|| Some(rw::default_timeout()));
    let flush_timeout = fields
        .get("flush_timeout")
        .map(|n| values::duration(reader, n, "`flush_timeout`"))
        .unwrap_or_else(|| Some(rw::default_flush_timeout()));
    let spool_dir = fields.get("spool_dir").and_then(|n| reader.string(n, "`spool_dir`")).map(|p| base.join(p));
    let spool_max_bytes = match fields.get("spool_max_bytes") {
        None => Some(rw::default_spool_max_bytes()),
        Some(n) => positive_int(reader, n, "`spool_max_bytes`"),
    };
    let queue_capacity = match fields.get("queue_capacity") {
        None => Some(rw::default_queue_capacity_samples()),
        Some(n) => positive_int(reader, n, "`queue_capacity`").map(|v| v as usize),
    };
    let max_sample_age = fields
        .get("max_sample_age")
        .map(|n| values::duration(reader, n, "`max_sample_age`"))
        .unwrap_or_else(|| Some(rw::default_max_sample_age()));
    Some(RemoteWriteConfig {
        max_sample_age: max_sample_age?,
        url: url?,
        auth: auth?,
        headers,
        timeout: timeout?,
        flush_timeout: flush_timeout?,
        spool_dir,
        spool_max_bytes: spool_max_bytes?,
        queue_capacity: queue_capacity?,
    })
}

fn read_agent(reader: &mut Reader<'_>, node: &Node) -> Option<AgentConfig> {
    let fields = reader.map(node, "`agent`", AGENT_KEYS)?;
    let defaults = AgentConfig::default();
    let listen = match fields.get("listen") {
        None => Some(defaults.listen),
        Some(n) => {
            let text = reader.scalar_text(n, "`listen`")?;
            match text.parse::<std::net::SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    reader.error_hint(
                        n,
                        format!("`{text}` is not an address and port"),
                        "e.g. `127.0.0.1:9464`, or `0.0.0.0:9464` to be scraped from other pods",
                    );
                    None
                }
            }
        }
    };
    let max_concurrent_runs = match fields.get("max_concurrent_runs") {
        None => Some(defaults.max_concurrent_runs),
        Some(n) => positive_int(reader, n, "`max_concurrent_runs`").map(|v| v as usize),
    };
    // `0s` turns these off; `values::duration` refuses zero everywhere else.
    let zero_or_duration = |reader: &mut Reader<'_>, key: &str, default: Duration| match fields.get(key) {
        None => Some(default),
        Some(n) if matches!(&n.value, Value::Str(s) if s.trim() == "0s" || s.trim() == "0") => Some(Duration::ZERO),
        Some(n) => values::duration(reader, n, &format!("`{key}`")),
    };
    let spread = zero_or_duration(reader, "spread", defaults.spread);
    let reload_check = zero_or_duration(reader, "reload_check", defaults.reload_check);
    let shutdown_grace = fields
        .get("shutdown_grace")
        .map(|n| values::duration(reader, n, "`shutdown_grace`"))
        .unwrap_or(Some(defaults.shutdown_grace));
    let push_interval = fields
        .get("push_interval")
        .map(|n| values::duration(reader, n, "`push_interval`"))
        .unwrap_or(Some(defaults.push_interval));
    Some(AgentConfig {
        listen: listen?,
        max_concurrent_runs: max_concurrent_runs?,
        spread: spread?,
        shutdown_grace: shutdown_grace?,
        push_interval: push_interval?,
        reload_check: reload_check?,
    })
}

fn read_rules(reader: &mut Reader<'_>, node: &Node, own_region: &str) -> Option<RulesConfig> {
    let fields = reader.map(node, "`rules`", RULES_KEYS)?;
    let regions = match fields.get("regions") {
        None => Some(vec![own_region.to_owned()]),
        Some(n) => {
            let items = reader.seq(n, "`regions`")?;
            let mut regions: Vec<String> = Vec::new();
            let mut ok = true;
            for item in items {
                match values::name(reader, item, "region") {
                    Some(r) if regions.contains(&r) => {
                        reader.error(item, format!("region `{r}` is listed twice"));
                        ok = false;
                    }
                    Some(r) => regions.push(r),
                    None => ok = false,
                }
            }
            if ok && regions.is_empty() {
                reader.error_hint(
                    n,
                    "`regions` is empty",
                    "list the regions whose probes report, e.g. `[eu-west, us-east]`",
                );
                ok = false;
            }
            regions.sort();
            ok.then_some(regions)
        }
    };
    let page_quorum = match (fields.get("page_quorum"), &regions) {
        (None, Some(r)) => Some(default_page_quorum(r.len())),
        (Some(n), Some(r)) => positive_int(reader, n, "`page_quorum`").and_then(|q| {
            if q as usize > r.len() {
                reader.error_hint(
                    n,
                    format!("`page_quorum` is {q} but only {} region(s) are listed in `regions`", r.len()),
                    "a page needs the burn seen from this many regions: at most the number of regions",
                );
                None
            } else {
                Some(q as usize)
            }
        }),
        (_, None) => None,
    };
    let runbook_url = match fields.get("runbook_url") {
        None => Some(DEFAULT_RUNBOOK_URL.to_owned()),
        Some(n) => reader.string(n, "`runbook_url`").and_then(|text| {
            if text.trim().is_empty() || text.chars().any(char::is_whitespace) {
                reader.error_hint(
                    n,
                    "`runbook_url` must be a URL or a path without spaces",
                    "e.g. `https://git.example/ops/fediprobe/-/blob/main/runbooks/`",
                );
                return None;
            }
            Some(if text.ends_with('/') { text } else { format!("{text}/") })
        }),
    };
    let probe_error_ratio = match fields.get("probe_error_ratio") {
        None => Some(DEFAULT_PROBE_ERROR_RATIO),
        Some(n) => share(reader, n, "`probe_error_ratio`"),
    };
    let names = match fields.get("names") {
        None => Some(NameScheme::Fediprobe),
        Some(n) => reader.string(n, "`names`").and_then(|text| {
            let scheme = NameScheme::ALL.into_iter().find(|s| s.key() == text);
            if scheme.is_none() {
                reader.error_hint(
                    n,
                    format!("unknown name scheme `{text}`"),
                    "use `fediprobe` (the default) or `mastodon` (names like mastodon:journey_availability:burn_rate_5m)",
                );
            }
            scheme
        }),
    };
    let severities = match fields.get("severities") {
        None => Some(Severities::default()),
        Some(n) => read_severities(reader, n),
    };
    let instance_label = match fields.get("instance_label") {
        None => Some(DEFAULT_INSTANCE_LABEL.to_owned()),
        Some(n) => label_name(reader, n, "`instance_label`").and_then(|name| {
            if name != DEFAULT_INSTANCE_LABEL && RULE_LABELS.contains(&name.as_str()) {
                reader.error_hint(
                    n,
                    format!("`instance_label` cannot be `{name}`: the rules use that label for something else"),
                    "pick the label your stack keys on, e.g. `namespace`",
                );
                return None;
            }
            Some(name)
        }),
    };
    let labels = match fields.get("labels") {
        None => Some(std::collections::BTreeMap::new()),
        Some(n) => read_static_labels(reader, n, instance_label.as_deref()),
    };
    let runbook_annotation = match fields.get("runbook_annotation") {
        None => Some(DEFAULT_RUNBOOK_ANNOTATION.to_owned()),
        Some(n) => label_name(reader, n, "`runbook_annotation`").and_then(|key| {
            if key == "summary" || key == "description" {
                reader.error_hint(
                    n,
                    format!("`runbook_annotation` cannot be `{key}`: every alert has that annotation already"),
                    "e.g. `runbook` or `runbook_url`",
                );
                return None;
            }
            Some(key)
        }),
    };
    let selector = match fields.get("selector") {
        None => Some(String::new()),
        Some(n) => reader.string(n, "`selector`").and_then(|text| {
            let text = text.trim().trim_end_matches(',').trim().to_owned();
            if matchers().is_match(&text) {
                Some(text)
            } else {
                reader.error_hint(
                    n,
                    "`selector` must be PromQL label matchers, without braces",
                    "e.g. `cluster=\"eu\",job=~\"fediprobe.*\"` (each `name` `=`, `!=`, `=~` or `!~` a quoted value)",
                );
                None
            }
        }),
    };
    Some(RulesConfig {
        regions: regions?,
        page_quorum: page_quorum?,
        runbook_url: runbook_url?,
        probe_error_ratio: probe_error_ratio?,
        names: names?,
        severities: severities?,
        labels: labels?,
        instance_label: instance_label?,
        runbook_annotation: runbook_annotation?,
        selector: selector?,
    })
}

/// One or more PromQL label matchers separated by commas: `name="value"`,
/// `name!="v"`, `name=~"re"`, `name!~"re"`, with the value a double-quoted
/// string (backslash escapes allowed).
fn matchers() -> &'static regex::Regex {
    static MATCHERS: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    MATCHERS.get_or_init(|| {
        let one = r#"[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)\s*"([^"\\]|\\.)*""#;
        regex::Regex::new(&format!(r"^{one}(\s*,\s*{one})*$")).expect("a valid pattern")
    })
}

/// `severities: { page: critical, ticket: warning }`: two different, non-empty
/// label values; a missing one keeps its default.
fn read_severities(reader: &mut Reader<'_>, node: &Node) -> Option<Severities> {
    let fields = reader.map(node, "`severities`", &["page", "ticket"])?;
    let defaults = Severities::default();
    let mut value = |key: &str, default: String| match fields.get(key) {
        None => Some(default),
        Some(n) => reader.string(n, &format!("`severities.{key}`")).and_then(|text| {
            if text.trim().is_empty() || text.chars().any(|c| c.is_whitespace() || c == '"' || c == '\\') {
                reader.error_hint(
                    n,
                    format!("`severities.{key}` must be a word without spaces or quotes"),
                    "e.g. `critical` for pages and `warning` for tickets",
                );
                return None;
            }
            Some(text)
        }),
    };
    let page = value("page", defaults.page);
    let ticket = value("ticket", defaults.ticket);
    let (page, ticket) = (page?, ticket?);
    if page == ticket {
        reader.error_hint(
            node,
            format!("pages and tickets both have severity `{page}`"),
            "an Alertmanager must be able to route them apart: give each its own value",
        );
        return None;
    }
    Some(Severities { page, ticket })
}

/// A Prometheus label name: letters, digits and `_`, not starting with a digit
/// nor with `__` (reserved for Prometheus's own labels).
fn label_name(reader: &mut Reader<'_>, node: &Node, what: &str) -> Option<String> {
    let text = reader.string(node, what)?;
    let valid = text.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !text.starts_with("__");
    if valid {
        Some(text)
    } else {
        reader.error_hint(
            node,
            format!("{what} `{text}` is not a valid label name"),
            "use letters, digits and `_`, starting with a letter (Prometheus's label names)",
        );
        None
    }
}

/// `labels: { service: fediprobe }`: static labels for every rule; none of them
/// one the rules set, nor the instance label.
fn read_static_labels(
    reader: &mut Reader<'_>,
    node: &Node,
    instance_label: Option<&str>,
) -> Option<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    let mut ok = matches!(node.value, Value::Map(_));
    for (_, key, value) in reader.pairs(node, "`labels`") {
        let Some(name) = label_name(reader, key, "label") else {
            ok = false;
            continue;
        };
        if Some(name.as_str()) == instance_label {
            reader.error_hint(
                key,
                format!("label `{name}` is the `instance_label`: the rules set it to each instance's name"),
                "name your instances in `instances:` as your stack names them (e.g. after their namespace)",
            );
            ok = false;
            continue;
        }
        if RULE_LABELS.contains(&name.as_str()) {
            reader.error_hint(
                key,
                format!("label `{name}` is set by the rules themselves"),
                "static labels add to the rules' own (journey, sli, severity, the instance label…); pick another name",
            );
            ok = false;
            continue;
        }
        match reader.scalar_text(value, &format!("label `{name}`")) {
            Some(v) => {
                out.insert(name, v);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A share strictly between 0% and 100%, written `10%` (or `10`).
fn share(reader: &mut Reader<'_>, node: &Node, what: &str) -> Option<f64> {
    let percent = match &node.value {
        Value::Str(s) => s.trim().strip_suffix('%').unwrap_or(s.trim()).trim().parse::<f64>().ok(),
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    match percent {
        Some(p) if p > 0.0 && p < 100.0 => Some(p / 100.0),
        _ => {
            reader.error_hint(node, format!("{what} must be a percentage above 0% and below 100%"), "e.g. `10%`");
            None
        }
    }
}

fn positive_int(reader: &mut Reader<'_>, node: &Node, what: &str) -> Option<u64> {
    match node.value {
        Value::Int(i) if i > 0 => Some(i as u64),
        _ => {
            reader.error(node, format!("{what} must be a whole number above zero"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::limits::Sharing;

    fn sharing(shared_by: &str) -> Sharing {
        let text = format!(
            "probe: {{ region: eu-west }}\ninstances:\n  main: {{ url: https://mastodon.example, account: probe, token: {{ env: T }}{shared_by} }}\n"
        );
        let (config, diagnostics) = super::super::parse_config_str(std::path::Path::new("f.yaml"), &text);
        config.unwrap_or_else(|| panic!("{diagnostics}")).instances[0].shared_by
    }

    #[test]
    fn the_rules_knobs_are_read_and_default_to_todays_rules() {
        let parse = |rules: &str| {
            let text = format!(
                "probe: {{ region: eu-west }}\ninstances:\n  main: {{ url: https://mastodon.example, account: probe, token: {{ env: T }} }}\n{rules}"
            );
            let (config, diagnostics) = super::super::parse_config_str(std::path::Path::new("f.yaml"), &text);
            config.unwrap_or_else(|| panic!("{diagnostics}")).rules
        };
        assert_eq!(parse(""), super::RulesConfig::defaults_for("eu-west"));
        let rules = parse(
            "rules:\n  names: mastodon\n  severities: { page: critical }\n  labels: { service: mastodon-probe, tier: 1 }\n  instance_label: namespace\n  runbook_annotation: runbook\n  selector: 'job=\"fediprobe\", cluster!~\"test.*\",'\n",
        );
        assert_eq!(rules.names, super::NameScheme::Mastodon);
        assert_eq!((rules.severities.page.as_str(), rules.severities.ticket.as_str()), ("critical", "ticket"));
        assert_eq!(rules.labels.get("tier").map(String::as_str), Some("1"));
        assert_eq!((rules.instance_label.as_str(), rules.runbook_annotation.as_str()), ("namespace", "runbook"));
        assert_eq!(rules.selector, r#"job="fediprobe", cluster!~"test.*""#, "a trailing comma is dropped");
    }

    #[test]
    fn shared_by_counts_probes_on_the_account_and_on_the_token() {
        assert_eq!(sharing(""), Sharing { account: 1, token: 1 });
        assert_eq!(sharing(", shared_by: { account: 3, token: 1 }"), Sharing { account: 3, token: 1 });
        // Unless told otherwise, the probes sharing an account are taken to share its token: the worst case.
        assert_eq!(sharing(", shared_by: { account: 3 }"), Sharing { account: 3, token: 3 });
        assert_eq!(sharing(", shared_by: 3"), Sharing { account: 3, token: 3 });
    }
}
