//! Reading a journey file's YAML tree into a [`Journey`], reporting every
//! problem with its position (and carrying on, so `check` lists them all).
//! Variables are checked as they are read: a capture used before any step
//! captures it is an error here, not a failed run later.

use std::time::Duration;

use super::diag::Pos;
use super::journey::*;
use super::template::{JsonTemplate, Template, Var};
use super::values;
use super::yaml::{Fields, Node, Reader, Value};

/// Headers that carry credentials. The probe sets `Authorization` itself from the
/// config's token; a journey file is committed, copied into ConfigMaps and shown
/// in diagnostics, so it must carry none.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

const JOURNEY_KEYS: &[&str] =
    &["name", "description", "measures", "instance", "accounts", "schedule", "slo", "deadline", "steps", "cleanup"];
const STEP_KEYS: &[&str] = &[
    "name",
    "request",
    "poll",
    "stream",
    "parallel",
    "expect",
    "capture",
    "timeout",
    "instance",
    "fail_as",
    "if_missing",
];
/// What a `parallel` group has of its own: its members carry the rest.
const PARALLEL_GROUP_KEYS: &[&str] = &["name", "parallel"];
const STREAM_KEYS: &[&str] = &["stream", "event", "open_before", "delay_from", "within", "silence", "fallback"];
const FALLBACK_KEYS: &[&str] = &["request", "interval", "expect"];
const REQUEST_KEYS: &[&str] =
    &["method", "path", "query", "headers", "form", "json", "multipart", "follow_redirects", "auth"];
const FILE_PART_KEYS: &[&str] = &["file", "generate", "size", "filename", "content_type"];
const POLL_KEYS: &[&str] = &["request", "interval", "within"];
const EXPECT_KEYS: &[&str] = &["status", "headers", "json"];
const SLO_KEYS: &[&str] = &["availability", "latency", "delay", "apdex", "window"];
const LATENCY_KEYS: &[&str] = &["threshold", "objective"];
const APDEX_KEYS: &[&str] = &["threshold", "tolerating", "objective"];

/// Reads a journey from its YAML tree; problems go to `reader`'s diagnostics.
/// Returns `None` when an error makes the journey unusable.
pub fn read_journey(reader: &mut Reader<'_>, root: &Node) -> Option<Journey> {
    let errors_before = reader.diagnostics.error_count();
    let fields = reader.map(root, "a journey", JOURNEY_KEYS)?;
    let name = fields.require(reader, "name", "the journey").and_then(|n| values::name(reader, n, "journey name"));
    let description = fields.get("description").and_then(|n| reader.string(n, "`description`"));
    let measures = fields
        .get("measures")
        .and_then(|n| reader.string(n, "`measures`"))
        .unwrap_or_else(|| DEFAULT_MEASURES.to_owned());
    let instance_node = fields.require(reader, "instance", "the journey");
    let instance = instance_node.and_then(|n| values::name(reader, n, "instance name"));
    let accounts = match fields.get("accounts") {
        None => Some(AccountChoice::Primary),
        Some(n) => read_account_choice(reader, n),
    };
    let schedule = fields.require(reader, "schedule", "the journey").and_then(|n| read_schedule(reader, n));
    let slo = fields.require(reader, "slo", "the journey").and_then(|n| read_slo(reader, n));
    let deadline = match fields.get("deadline") {
        Some(n) => values::duration(reader, n, "`deadline`"),
        None => Some(DEFAULT_DEADLINE),
    };

    let mut known_captures: Vec<String> = Vec::new();
    let mut step_names: Vec<(String, Pos)> = Vec::new();
    let steps = match fields.require(reader, "steps", "the journey") {
        Some(n) => read_steps(reader, n, "steps", &mut known_captures, &mut step_names),
        None => Vec::new(),
    };
    if let Some(n) = fields.get("steps")
        && matches!(&n.value, Value::Seq(items) if items.is_empty())
    {
        reader.error(n, "a journey needs at least one step");
    }
    // Cleanup sees every capture of the steps; a cleanup step whose variables were
    // never captured (its step failed first) is skipped at run time.
    let cleanup = match fields.get("cleanup") {
        Some(n) => read_steps(reader, n, "cleanup", &mut known_captures, &mut step_names),
        None => Vec::new(),
    };

    check_stream_references(reader, &steps, &cleanup);
    if let (Some(deadline), true) = (deadline, reader.diagnostics.error_count() == errors_before) {
        for step in &steps {
            if step.timeout > deadline {
                let title = format!(
                    "step `{}` may take {} but the journey's deadline is {}",
                    step.name,
                    humantime::format_duration(step.timeout),
                    humantime::format_duration(deadline)
                );
                let node = Node { pos: step.pos, width: 1, value: Value::Null };
                reader.warning(&node, title, Some("lower the step's `timeout` or raise `deadline`".into()));
            }
        }
    }

    if reader.diagnostics.error_count() > errors_before {
        return None;
    }
    Some(Journey {
        name: name?,
        description,
        measures,
        file: reader.path().to_path_buf(),
        instance: instance?,
        instance_pos: instance_node?.pos,
        accounts: accounts?,
        run_as: None,
        schedule: schedule?,
        slo: slo?,
        deadline: deadline?,
        steps,
        cleanup,
    })
}

/// `accounts: all` or a list of user names (`[fediprobe, fediprobe_busy]`).
/// Whether the names are the instance's accounts is checked against the config
/// (`load.rs`), where they are known.
fn read_account_choice(reader: &mut Reader<'_>, node: &Node) -> Option<AccountChoice> {
    const HINT: &str = "`accounts: all` (every probe account of the instance) or a list of user names from the config, e.g. `[fediprobe_busy]`";
    if let Value::Str(text) = &node.value {
        if text.trim() == "all" {
            return Some(AccountChoice::All);
        }
        reader.error_hint(node, format!("`{text}` is not a list of accounts"), HINT);
        return None;
    }
    let items = reader.seq(node, "`accounts`")?;
    let mut names: Vec<(String, Pos)> = Vec::new();
    let mut ok = true;
    for item in items {
        let Some(text) = reader.string(item, "an account") else {
            ok = false;
            continue;
        };
        let name = text.trim_start_matches('@').to_owned();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            reader.error_hint(item, format!("`{text}` is not a Mastodon user name"), HINT);
            ok = false;
        } else if names.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            reader.error(item, format!("account `{name}` is listed twice"));
            ok = false;
        } else {
            names.push((name, item.pos));
        }
    }
    if ok && names.is_empty() {
        reader.error_hint(node, "`accounts` is empty", HINT);
        ok = false;
    }
    ok.then_some(AccountChoice::Named(names))
}

fn read_schedule(reader: &mut Reader<'_>, node: &Node) -> Option<Schedule> {
    let text = reader.string(node, "`schedule`")?;
    match Schedule::parse(&text) {
        Ok(cron) => Some(Schedule { text, cron, pos: node.pos }),
        Err(e) => {
            reader.error_hint(
                node,
                format!("`{text}` is not a valid schedule: {e}"),
                "use Kubernetes CronJob syntax, e.g. `*/5 * * * *` for every five minutes (times are UTC)",
            );
            None
        }
    }
}

fn read_slo(reader: &mut Reader<'_>, node: &Node) -> Option<Slo> {
    let fields = reader.map(node, "`slo`", SLO_KEYS)?;
    let availability =
        fields.require(reader, "availability", "`slo`").and_then(|n| values::objective(reader, n, "availability"));
    let latency = match fields.get("latency") {
        None => Some(None),
        Some(n) => {
            let lf = reader.map(n, "`latency`", LATENCY_KEYS)?;
            let threshold =
                lf.require(reader, "threshold", "`latency`").and_then(|t| values::duration(reader, t, "`threshold`"));
            let objective = lf
                .require(reader, "objective", "`latency`")
                .and_then(|o| values::objective(reader, o, "latency objective"));
            Some(Some(LatencyObjective { threshold: threshold?, objective: objective? }))
        }
    };
    let delay = match fields.get("delay") {
        None => Some(None),
        Some(n) => {
            let df = reader.map(n, "`delay`", LATENCY_KEYS)?;
            let threshold =
                df.require(reader, "threshold", "`delay`").and_then(|t| values::duration(reader, t, "`threshold`"));
            let objective = df
                .require(reader, "objective", "`delay`")
                .and_then(|o| values::objective(reader, o, "delay objective"));
            Some(Some(LatencyObjective { threshold: threshold?, objective: objective? }))
        }
    };
    let apdex = match fields.get("apdex") {
        None => Some(None),
        Some(n) => read_apdex(reader, n).map(Some),
    };
    let window = match fields.get("window") {
        None => Some(DEFAULT_WINDOW),
        Some(n) => values::duration(reader, n, "`window`").and_then(|w| {
            let days = w.as_secs() / 86_400;
            if w.as_secs() % 86_400 != 0 || !(7..=90).contains(&days) {
                reader.error_hint(
                    n,
                    "an SLO window is a whole number of days from 7 to 90",
                    "the usual windows are `28d`, `30d` and `90d`",
                );
                None
            } else {
                Some(w)
            }
        }),
    };
    Some(Slo { availability: availability?, latency: latency?, delay: delay?, apdex: apdex?, window: window? })
}

/// `apdex: { threshold: 100ms, tolerating: 500ms, objective: 0.90 }`; `tolerating`
/// defaults to four times the threshold.
fn read_apdex(reader: &mut Reader<'_>, node: &Node) -> Option<ApdexObjective> {
    let fields = reader.map(node, "`apdex`", APDEX_KEYS)?;
    let threshold =
        fields.require(reader, "threshold", "`apdex`").and_then(|t| values::duration(reader, t, "`threshold`"));
    let objective = fields.require(reader, "objective", "`apdex`").and_then(|o| values::score(reader, o, "APDEX"));
    let tolerating = match (fields.get("tolerating"), threshold) {
        (None, threshold) => threshold.map(|t| t * ApdexObjective::DEFAULT_TOLERATING_FACTOR),
        (Some(n), threshold) => values::duration(reader, n, "`tolerating`").and_then(|tolerating| match threshold {
            Some(t) if tolerating <= t => {
                reader.error_hint(
                    n,
                    format!(
                        "`tolerating` ({}) must be longer than `threshold` ({})",
                        humantime::format_duration(tolerating),
                        humantime::format_duration(t)
                    ),
                    format!(
                        "runs up to `threshold` satisfy, up to `tolerating` are tolerated; leave `tolerating` out \
                         for the usual 4 × threshold ({})",
                        humantime::format_duration(t * ApdexObjective::DEFAULT_TOLERATING_FACTOR)
                    ),
                );
                None
            }
            _ => Some(tolerating),
        }),
    };
    Some(ApdexObjective { threshold: threshold?, tolerating: tolerating?, objective: objective? })
}

fn read_steps(
    reader: &mut Reader<'_>,
    node: &Node,
    what: &str,
    known_captures: &mut Vec<String>,
    step_names: &mut Vec<(String, Pos)>,
) -> Vec<Step> {
    let Some(items) = reader.seq(node, &format!("`{what}`")) else {
        return Vec::new();
    };
    let mut steps = Vec::new();
    for item in items {
        if let Some(step) = read_step(reader, item, known_captures) {
            for named in std::iter::once(&step).chain(match &step.kind {
                StepKind::Parallel(members) => members.as_slice(),
                _ => &[],
            }) {
                if let Some((_, first)) = step_names.iter().find(|(n, _)| *n == named.name) {
                    let title = format!("two steps are named `{}`", named.name);
                    let hint =
                        format!("the first is at line {}; step names label metrics and must be unique", first.line);
                    let at = Node { pos: named.pos, width: 1, value: Value::Null };
                    reader.error_hint(&at, title, hint);
                }
                step_names.push((named.name.clone(), named.pos));
            }
            steps.push(step);
        }
    }
    steps
}

/// A `parallel:` group: its members are requests or polls, sent at once. Each
/// member knows the captures made before the group, not its siblings'; the
/// steps after the group know them all.
fn read_parallel(
    reader: &mut Reader<'_>,
    fields: &Fields<'_>,
    node: &Node,
    known_captures: &mut Vec<String>,
) -> Option<Vec<Step>> {
    for key in fields.keys().filter(|k| !PARALLEL_GROUP_KEYS.contains(k)) {
        let at = fields.key_node(key).expect("key listed");
        reader.error_hint(
            at,
            format!("a parallel group has no `{key}` of its own"),
            "put it on the steps inside the group",
        );
    }
    let items = reader.seq(node, "`parallel`")?;
    if items.len() < 2 {
        reader.error_hint(node, "a parallel group needs two steps or more", "a single step needs no group");
        return None;
    }
    let before = known_captures.clone();
    let mut members = Vec::new();
    for item in items {
        let mut known = before.clone();
        let Some(member) = read_step(reader, item, &mut known) else { continue };
        if member.if_missing.is_some() || member.fail_as.is_some() {
            reader.error_hint(
                item,
                "a step in a parallel group has no `if_missing` or `fail_as`",
                "give the check or the creation a step of its own before the group",
            );
            continue;
        }
        if !matches!(member.kind, StepKind::Request(_) | StepKind::Poll(_)) {
            reader.error_hint(
                item,
                "a parallel group holds `request` and `poll` steps only",
                "put a `stream` step, or another group, after the group",
            );
            continue;
        }
        for name in known.into_iter().filter(|n| !before.contains(n)) {
            if !known_captures.contains(&name) {
                known_captures.push(name);
            }
        }
        members.push(member);
    }
    (members.len() == items.len()).then_some(members)
}

fn read_step(reader: &mut Reader<'_>, node: &Node, known_captures: &mut Vec<String>) -> Option<Step> {
    // A key that looks like a misspelt step kind is reported as such ("unknown step
    // kind `reqest`"), and then accepted as known so it is not reported twice.
    let errors_before = reader.diagnostics.error_count();
    let mut known: Vec<&str> = STEP_KEYS.to_vec();
    if let Value::Map(entries) = &node.value {
        for (key, _) in entries {
            if let Value::Str(k) = &key.value
                && !STEP_KEYS.contains(&k.as_str())
                && let Some(kind) = super::diag::did_you_mean(k, STEP_KINDS)
            {
                reader.error_hint(key, format!("unknown step kind `{k}`"), format!("did you mean `{kind}`?"));
                known.push(k.as_str());
            }
        }
    }
    let fields = reader.map(node, "a step", &known)?;
    let name = fields.require(reader, "name", "a step").and_then(|n| values::name(reader, n, "step name"));
    let instance = fields.get("instance").and_then(|n| values::name(reader, n, "instance name").map(|s| (s, n.pos)));
    let timeout = match fields.get("timeout") {
        Some(n) => values::duration(reader, n, "`timeout`"),
        None => Some(DEFAULT_STEP_TIMEOUT),
    };
    let kinds: Vec<&str> = fields.keys().filter(|k| STEP_KINDS.contains(k)).collect();
    let kind = match kinds.as_slice() {
        [] => {
            if reader.diagnostics.error_count() == errors_before {
                reader.error_hint(node, "this step does nothing", format!("give it one of: {}", STEP_KINDS.join(", ")));
            }
            None
        }
        [one] => {
            let n = fields.get(one).expect("key listed");
            match *one {
                "request" => read_request(reader, n, known_captures).map(StepKind::Request),
                "stream" => read_stream(reader, n, known_captures).map(StepKind::Stream),
                "parallel" => read_parallel(reader, &fields, n, known_captures).map(StepKind::Parallel),
                _ => read_poll(reader, n, known_captures).map(StepKind::Poll),
            }
        }
        _ => {
            let key = fields.key_node(kinds[1]).expect("key listed");
            reader.error_hint(
                key,
                format!("a step has one kind, this one has {}", kinds.join(" and ")),
                "split it into two steps",
            );
            None
        }
    };
    let expect = match fields.get("expect") {
        Some(n) => read_expect(reader, n, known_captures),
        None => Some(Expect::default()),
    };
    // Read before this step's own captures: it names what an earlier step captures.
    let if_missing = match fields.get("if_missing") {
        None => Some(None),
        Some(n) => reader.string(n, "`if_missing`").and_then(|name| {
            if known_captures.contains(&name) {
                Some(Some(name))
            } else {
                reader.error_hint(
                    n,
                    format!("`if_missing: {name}` names no capture of an earlier step"),
                    "capture it with `optional: true` in an earlier step, e.g. `id: { json: $[0].id, optional: true }`",
                );
                None
            }
        }),
    };
    let captures = match fields.get("capture") {
        Some(n) => read_captures(reader, n),
        None => Vec::new(),
    };
    for c in &captures {
        if !known_captures.contains(&c.name) {
            known_captures.push(c.name.clone());
        }
    }
    let fail_as = match fields.get("fail_as") {
        None => Some(None),
        Some(n) => match reader.string(n, "`fail_as`").as_deref() {
            Some("not_following") => Some(Some(FailAs::NotFollowing)),
            Some(other) => {
                reader.error_hint(
                    n,
                    format!("`{other}` is not a reason a step can claim"),
                    format!("use one of: {}", FailAs::NAMES.join(", ")),
                );
                None
            }
            None => None,
        },
    };
    if reader.diagnostics.error_count() > errors_before {
        return None;
    }
    Some(Step {
        name: name?,
        pos: node.pos,
        instance,
        timeout: timeout?,
        kind: kind?,
        expect: expect?,
        captures,
        fail_as: fail_as?,
        if_missing: if_missing?,
    })
}

fn read_stream(reader: &mut Reader<'_>, node: &Node, known: &[String]) -> Option<StreamSpec> {
    let fields = reader.map(node, "`stream`", STREAM_KEYS)?;
    let stream = match fields.get("stream") {
        None => Some("user".to_owned()),
        Some(n) => reader.string(n, "`stream`"),
    };
    let event = match fields.get("event") {
        None => Some("update".to_owned()),
        Some(n) => reader.string(n, "`event`").and_then(|e| {
            const EVENTS: &[&str] =
                &["update", "delete", "notification", "status.update", "conversation", "announcement"];
            if EVENTS.contains(&e.as_str()) {
                Some(e)
            } else {
                let hint = match super::diag::did_you_mean(&e, EVENTS) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("Mastodon's events are {}", EVENTS.join(", ")),
                };
                reader.error_hint(n, format!("`{e}` is not a streaming event"), hint);
                None
            }
        }),
    };
    let open_before =
        fields.require(reader, "open_before", "`stream`").and_then(|n| values::name(reader, n, "step name"));
    let delay_from = match fields.get("delay_from") {
        None => open_before.clone(),
        Some(n) => values::name(reader, n, "step name"),
    };
    let within = match fields.get("within") {
        None => Some(DEFAULT_STREAM_WITHIN),
        Some(n) => values::duration(reader, n, "`within`"),
    };
    let silence = match fields.get("silence") {
        None => Some(DEFAULT_STREAM_SILENCE),
        Some(n) => values::duration(reader, n, "`silence`"),
    };
    let fallback = match fields.get("fallback") {
        None => Some(None),
        Some(n) => {
            let ff = reader.map(n, "`fallback`", FALLBACK_KEYS)?;
            let request = ff.require(reader, "request", "`fallback`").and_then(|r| read_request(reader, r, known));
            let interval = match ff.get("interval") {
                None => Some(Duration::from_secs(2)),
                Some(i) => values::duration(reader, i, "`interval`"),
            };
            let expect = ff.require(reader, "expect", "`fallback`").and_then(|e| read_expect(reader, e, known));
            Some(Some(FallbackSpec { request: request?, interval: interval?, expect: expect? }))
        }
    };
    Some(StreamSpec {
        stream: stream?,
        event: event?,
        open_before: open_before?,
        delay_from: delay_from?,
        within: within?,
        fallback: fallback?,
        silence: silence?,
    })
}

/// A stream step opens its socket before, and measures from, steps that come
/// earlier in `steps`; cleanup steps cannot wait on a stream.
fn check_stream_references(reader: &mut Reader<'_>, steps: &[Step], cleanup: &[Step]) {
    for (index, step) in steps.iter().enumerate() {
        let StepKind::Stream(spec) = &step.kind else { continue };
        for (key, name) in [("open_before", &spec.open_before), ("delay_from", &spec.delay_from)] {
            if !steps[..index].iter().any(|s| &s.name == name) {
                let node = Node { pos: step.pos, width: 1, value: Value::Null };
                let earlier: Vec<&str> = steps[..index].iter().map(|s| s.name.as_str()).collect();
                let hint = if earlier.is_empty() {
                    "a stream step waits for something an earlier step does: put it after that step".to_owned()
                } else {
                    format!("earlier steps: {}", earlier.join(", "))
                };
                reader.error_hint(&node, format!("`{key}: {name}` does not name an earlier step"), hint);
            }
        }
    }
    for step in cleanup {
        if let StepKind::Stream(_) = step.kind {
            let node = Node { pos: step.pos, width: 1, value: Value::Null };
            reader.error_hint(&node, "a cleanup step cannot wait on a stream", "move the `stream` step into `steps`");
        }
    }
}

fn template(reader: &mut Reader<'_>, node: &Node, what: &str, known_captures: &[String]) -> Option<Template> {
    let text = reader.scalar_text(node, what)?;
    match Template::parse(&text) {
        Ok(t) => {
            for var in t.vars() {
                if let Var::Capture(name) = var
                    && !known_captures.contains(name)
                {
                    let hint = if known_captures.is_empty() {
                        "no step before this one captures anything; add `capture:` to an earlier step".to_owned()
                    } else {
                        format!("captured so far: {}", known_captures.join(", "))
                    };
                    reader.error_hint(node, format!("`${{{name}}}` is not captured by any earlier step"), hint);
                    return None;
                }
            }
            Some(t)
        }
        Err(e) => {
            let d = reader.error(node, format!("{what}: {}", e.message));
            d.hint = e.hint;
            None
        }
    }
}

fn template_pairs(reader: &mut Reader<'_>, node: &Node, what: &str, known: &[String]) -> Vec<(String, Template)> {
    reader
        .pairs(node, what)
        .into_iter()
        .filter_map(|(k, _, v)| template(reader, v, &format!("`{k}`"), known).map(|t| (k, t)))
        .collect()
}

fn json_template(reader: &mut Reader<'_>, node: &Node, known: &[String]) -> Option<JsonTemplate> {
    Some(match &node.value {
        Value::Null => JsonTemplate::Null,
        Value::Bool(b) => JsonTemplate::Bool(*b),
        Value::Int(i) => JsonTemplate::Number((*i).into()),
        Value::Float(f) => match serde_json::Number::from_f64(*f) {
            Some(n) => JsonTemplate::Number(n),
            None => {
                reader.error(node, "this number cannot be written as JSON");
                return None;
            }
        },
        Value::Str(_) => JsonTemplate::String(template(reader, node, "a JSON string", known)?),
        Value::Seq(items) => {
            JsonTemplate::Array(items.iter().filter_map(|i| json_template(reader, i, known)).collect())
        }
        Value::Map(_) => JsonTemplate::Object(
            reader
                .pairs(node, "a JSON object")
                .into_iter()
                .filter_map(|(k, _, v)| json_template(reader, v, known).map(|t| (k, t)))
                .collect(),
        ),
    })
}

fn read_request(reader: &mut Reader<'_>, node: &Node, known: &[String]) -> Option<RequestSpec> {
    let fields = reader.map(node, "`request`", REQUEST_KEYS)?;
    let method = match fields.get("method") {
        Some(n) => values::method(reader, n),
        None => Some(http::Method::GET),
    };
    let path = fields.require(reader, "path", "`request`").and_then(|n| {
        let t = template(reader, n, "`path`", known)?;
        if !t.to_string().starts_with('/') {
            reader.error_hint(
                n,
                "`path` must start with `/`",
                "it is joined to the instance's URL from the config, e.g. `/api/v1/timelines/home`",
            );
            return None;
        }
        if t.to_string().contains('?') {
            reader.error_hint(
                n,
                "`path` contains a query string",
                "put query parameters under `query:` so they are encoded correctly",
            );
            return None;
        }
        Some(t)
    });
    let query = fields.get("query").map(|n| template_pairs(reader, n, "`query`", known)).unwrap_or_default();
    let headers = fields.get("headers").map(|n| template_pairs(reader, n, "`headers`", known)).unwrap_or_default();
    for (name, _) in &headers {
        if CREDENTIAL_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            let n = fields.get("headers").expect("present");
            reader.error_hint(
                n,
                format!("a journey must not set `{name}`"),
                "tokens come from the config (`token: { env: … }` or `{ file: … }`), never from a journey file",
            );
        }
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            let n = fields.get("headers").expect("present");
            reader.error(n, format!("`{name}` is not a valid header name"));
        }
    }
    // Mastodon takes the token from `access_token` too; the probe sends it only as a header.
    if query.iter().any(|(name, _)| name == "access_token") {
        let n = fields.get("query").expect("present");
        reader.error_hint(
            n,
            "a journey must not send `access_token`",
            "the probe sends the instance's token from the config itself (`auth`, on by default)",
        );
    }
    let bodies: Vec<&Node> = ["form", "json", "multipart"].iter().filter_map(|k| fields.key_node(k)).collect();
    if let [_, second, ..] = bodies.as_slice() {
        reader.error_hint(
            second,
            "a request has one body: `form`, `json` or `multipart`",
            "Mastodon accepts any of them; pick one",
        );
    }
    let body = match (fields.get("form"), fields.get("json"), fields.get("multipart")) {
        _ if bodies.len() > 1 => None,
        (Some(f), _, _) => Some(Body::Form(template_pairs(reader, f, "`form`", known))),
        (_, Some(j), _) => json_template(reader, j, known).map(Body::Json),
        (_, _, Some(m)) => read_multipart(reader, m, known).map(Body::Multipart),
        (None, None, None) => None,
    };
    let follow_redirects =
        fields.get("follow_redirects").and_then(|n| reader.bool(n, "`follow_redirects`")).unwrap_or(false);
    let auth = fields.get("auth").and_then(|n| reader.bool(n, "`auth`")).unwrap_or(true);
    Some(RequestSpec { method: method?, path: path?, query, headers, body, follow_redirects, auth })
}

/// A `multipart:` body: each key a field, its value a text template or a file
/// (`{ file: NAME }` beside the journey, or `{ generate: png }`).
fn read_multipart(reader: &mut Reader<'_>, node: &Node, known: &[String]) -> Option<Vec<(String, Part)>> {
    let mut parts = Vec::new();
    let mut ok = true;
    for (name, _, value) in reader.pairs(node, "`multipart`") {
        let part = match &value.value {
            Value::Map(_) => read_file_part(reader, value, &name, known).map(Part::File),
            _ => template(reader, value, &format!("`{name}`"), known).map(Part::Text),
        };
        match part {
            Some(part) => parts.push((name, part)),
            None => ok = false,
        }
    }
    ok.then_some(parts)
}

/// The content type a file name's extension says, for the media Mastodon takes.
fn content_type_of(filename: &str) -> Option<&'static str> {
    let extension = filename.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        _ => return None,
    })
}

fn read_file_part(reader: &mut Reader<'_>, node: &Node, field: &str, known: &[String]) -> Option<FilePart> {
    let fields = reader.map(node, &format!("`{field}`"), FILE_PART_KEYS)?;
    let filename = match fields.get("filename") {
        Some(n) => Some(template(reader, n, "`filename`", known)?),
        None => None,
    };
    let content_type = match fields.get("content_type") {
        Some(n) => Some(reader.string(n, "`content_type`")?),
        None => None,
    };
    let (content, default_name) = match (fields.get("file"), fields.get("generate")) {
        (Some(f), None) => {
            let name = reader.string(f, "`file`")?;
            let path = reader.path().parent().unwrap_or(std::path::Path::new("")).join(&name);
            let size = std::fs::metadata(&path).map(|m| m.len());
            let bytes = match size {
                Ok(size) if size > MAX_FILE_BYTES => {
                    reader.error_hint(
                        f,
                        format!("`{name}` is {size} bytes, more than a probe should upload"),
                        format!("use a file of at most {MAX_FILE_BYTES} bytes"),
                    );
                    return None;
                }
                _ => std::fs::read(&path),
            };
            match bytes {
                Ok(bytes) => (FileContent::Bytes(std::sync::Arc::new(bytes)), name),
                Err(e) => {
                    reader.error_hint(
                        f,
                        format!("cannot read `{}`: {e}", path.display()),
                        "`file:` names a file in the journey's own folder",
                    );
                    return None;
                }
            }
        }
        (None, Some(g)) => {
            let kind = reader.string(g, "`generate`")?;
            if kind != "png" {
                reader.error_hint(g, format!("cannot generate `{kind}`"), "the one generated kind is `png`");
                return None;
            }
            let size = match fields.get("size") {
                None => 64,
                Some(n) => match &n.value {
                    Value::Int(i) if (1..=i64::from(MAX_GENERATED_SIDE)).contains(i) => *i as u32,
                    _ => {
                        reader.error_hint(
                            n,
                            "`size` is the image's side in pixels",
                            format!("a whole number from 1 to {MAX_GENERATED_SIDE}, e.g. `size: 64`"),
                        );
                        return None;
                    }
                },
            };
            (FileContent::Png { size }, "fediprobe.png".to_owned())
        }
        (Some(_), Some(g)) => {
            reader.error_hint(g, "a file field has `file` or `generate`, not both", "pick one");
            return None;
        }
        (None, None) => {
            reader.error_hint(
                node,
                format!("the file field `{field}` says neither `file` nor `generate`"),
                "e.g. `{ file: picture.png }` (beside the journey) or `{ generate: png }`",
            );
            return None;
        }
    };
    if fields.get("size").is_some() && !matches!(content, FileContent::Png { .. }) {
        let n = fields.get("size").expect("present");
        reader.error_hint(n, "`size` is for generated images", "remove it, or use `generate: png`");
        return None;
    }
    let content_type = match content_type {
        Some(t) => t,
        None => match content_type_of(&default_name) {
            Some(t) => t.to_owned(),
            None => {
                reader.error_hint(
                    node,
                    format!("the content type of `{default_name}` is not known"),
                    "say it: `content_type: image/png`",
                );
                return None;
            }
        },
    };
    Some(FilePart { content, filename: filename.unwrap_or_else(|| Template::literal(default_name)), content_type })
}

fn read_poll(reader: &mut Reader<'_>, node: &Node, known: &[String]) -> Option<PollSpec> {
    let fields = reader.map(node, "`poll`", POLL_KEYS)?;
    let request = fields.require(reader, "request", "`poll`").and_then(|n| read_request(reader, n, known));
    let interval = match fields.get("interval") {
        Some(n) => values::duration(reader, n, "`interval`"),
        None => Some(DEFAULT_POLL_INTERVAL),
    };
    let within = fields.require(reader, "within", "`poll`").and_then(|n| values::duration(reader, n, "`within`"));
    Some(PollSpec { request: request?, interval: interval?, within: within? })
}

fn read_expect(reader: &mut Reader<'_>, node: &Node, known: &[String]) -> Option<Expect> {
    let fields = reader.map(node, "`expect`", EXPECT_KEYS)?;
    let mut expect = Expect::default();
    if let Some(n) = fields.get("status") {
        let items: Vec<&Node> = match &n.value {
            Value::Seq(items) => items.iter().collect(),
            _ => vec![n],
        };
        for item in items {
            match &item.value {
                Value::Int(code) if (100..=599).contains(code) => expect.status.push(*code as u16),
                _ => {
                    reader.error_hint(
                        item,
                        "`status` must be an HTTP status code",
                        "e.g. `status: 200` or `status: [200, 206]`",
                    );
                }
            }
        }
    }
    if let Some(n) = fields.get("headers") {
        for (name, _, value) in reader.pairs(n, "`headers`") {
            let predicate = match &value.value {
                Value::Map(_) => read_predicate(reader, value, known),
                _ => template(reader, value, "header value", known).map(|t| Predicate::Equals(JsonTemplate::String(t))),
            };
            if let Some(predicate) = predicate {
                expect.headers.push(HeaderAssert { name: name.to_ascii_lowercase(), predicate, pos: value.pos });
            }
        }
    }
    if let Some(n) = fields.get("json") {
        for item in reader.seq(n, "`json`").unwrap_or_default() {
            if let Some(a) = read_json_assert(reader, item, known) {
                expect.json.push(a);
            }
        }
    }
    Some(expect)
}

fn json_path(reader: &mut Reader<'_>, node: &Node) -> Option<(String, serde_json_path::JsonPath)> {
    let text = reader.string(node, "a JSONPath")?;
    match serde_json_path::JsonPath::parse(&text) {
        Ok(p) => Some((text, p)),
        Err(e) => {
            reader.error_hint(
                node,
                format!("`{text}` is not a JSONPath: {e}"),
                "e.g. `$.id`, `$[0].uri`, `$.accounts[*].acct`",
            );
            None
        }
    }
}

fn read_json_assert(reader: &mut Reader<'_>, node: &Node, known: &[String]) -> Option<JsonAssert> {
    let mut keys = vec!["path", "every"];
    keys.extend_from_slice(Predicate::KEYS);
    let fields = reader.map(node, "a JSON assertion", &keys)?;
    let path_node = fields.require(reader, "path", "a JSON assertion")?;
    let (path_text, path) = json_path(reader, path_node)?;
    let predicate = read_predicate_fields(reader, node, &fields, known)?;
    let every = fields.get("every").and_then(|n| reader.bool(n, "`every`")).unwrap_or(false);
    Some(JsonAssert { every, path_text, path, predicate, pos: node.pos })
}

fn read_predicate(reader: &mut Reader<'_>, node: &Node, known: &[String]) -> Option<Predicate> {
    let fields = reader.map(node, "an assertion", Predicate::KEYS)?;
    read_predicate_fields(reader, node, &fields, known)
}

fn read_predicate_fields(
    reader: &mut Reader<'_>,
    node: &Node,
    fields: &super::yaml::Fields<'_>,
    known: &[String],
) -> Option<Predicate> {
    let present: Vec<&str> = fields.keys().filter(|k| Predicate::KEYS.contains(k)).collect();
    let key = match present.as_slice() {
        [one] => *one,
        [] => {
            reader.error_hint(
                node,
                "this assertion tests nothing",
                format!("add one of: {}", Predicate::KEYS.join(", ")),
            );
            return None;
        }
        _ => {
            reader.error_hint(
                node,
                format!("one assertion tests one thing, this one has {}", present.join(" and ")),
                "split it into several assertions",
            );
            return None;
        }
    };
    let value = fields.get(key).expect("key listed");
    match key {
        "equals" => json_template(reader, value, known).map(Predicate::Equals),
        "not_equals" => json_template(reader, value, known).map(Predicate::NotEquals),
        "contains" => template(reader, value, "`contains`", known).map(Predicate::Contains),
        "matches" => {
            let text = reader.string(value, "`matches`")?;
            match regex::Regex::new(&text) {
                Ok(r) => Some(Predicate::Matches(r)),
                Err(e) => {
                    reader.error(value, format!("`{text}` is not a regular expression: {e}"));
                    None
                }
            }
        }
        "exists" => reader.bool(value, "`exists`").map(Predicate::Exists),
        "type" => {
            let text = reader.string(value, "`type`")?;
            match JsonType::NAMES.iter().position(|n| *n == text) {
                Some(i) => Some(Predicate::Type(
                    [
                        JsonType::String,
                        JsonType::Number,
                        JsonType::Boolean,
                        JsonType::Array,
                        JsonType::Object,
                        JsonType::Null,
                    ][i],
                )),
                None => {
                    reader.error_hint(
                        value,
                        format!("unknown JSON type `{text}`"),
                        format!("use one of {}", JsonType::NAMES.join(", ")),
                    );
                    None
                }
            }
        }
        "min_length" | "count" => match &value.value {
            Value::Int(n) if *n >= 0 => {
                let n = *n as usize;
                Some(if key == "count" { Predicate::Count(n) } else { Predicate::MinLength(n) })
            }
            _ => {
                reader.error(value, format!("`{key}` must be a whole number"));
                None
            }
        },
        _ => unreachable!("keys are checked against Predicate::KEYS"),
    }
}

fn read_captures(reader: &mut Reader<'_>, node: &Node) -> Vec<Capture> {
    let mut out = Vec::new();
    for (name, key, value) in reader.pairs(node, "`capture`") {
        if !name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || ["nonce", "account", "env"].contains(&name.as_str())
        {
            reader.error_hint(
                key,
                format!("`{name}` cannot be a capture name"),
                "use letters, digits and `_`; `nonce`, `account` and `env` are taken",
            );
            continue;
        }
        let mut optional = false;
        let source = match &value.value {
            Value::Str(_) => json_path(reader, value).map(|(text, path)| CaptureSource::Json { text, path }),
            Value::Map(_) => {
                let Some(f) = reader.map(value, "a capture", &["json", "header", "optional"]) else { continue };
                if let Some(o) = f.get("optional") {
                    match o.value {
                        Value::Bool(b) => optional = b,
                        _ => {
                            reader.error(o, "`optional` must be `true` or `false`");
                        }
                    }
                }
                match (f.get("json"), f.get("header")) {
                    (Some(j), None) => json_path(reader, j).map(|(text, path)| CaptureSource::Json { text, path }),
                    (None, Some(h)) => {
                        reader.string(h, "`header`").map(|h| CaptureSource::Header(h.to_ascii_lowercase()))
                    }
                    _ => {
                        reader.error_hint(
                            value,
                            "a capture reads `json` or `header`",
                            "e.g. `id: $.id`, `link: { header: Link }` or `id: { json: $[0].id, optional: true }`",
                        );
                        None
                    }
                }
            }
            other => {
                reader.error(value, format!("a capture must be a JSONPath such as `$.id`, found {}", other.kind()));
                None
            }
        };
        if let Some(source) = source {
            out.push(Capture { name, source, optional, pos: value.pos });
        }
    }
    out
}
