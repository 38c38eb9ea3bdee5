//! Loading from disk: the config file, the journey files it points at (or that
//! `check` is given), and the checks that need all of them at once: unique
//! journey names, instance and account references, rate-limit budgets.

use std::path::{Path, PathBuf};

use super::config::{Config, TokenSource, read_config};
use super::diag::{Diagnostic, Diagnostics, Severity};
use super::journey::{Journey, read_journey};
use super::limits;
use super::yaml::{self, Reader, Source};

/// A config with its journeys, ready to run; `warnings` are worth showing.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The journeys as their files say, one each: what the rules, dashboards
    /// and CronJobs are generated from.
    pub journeys: Vec<Journey>,
    /// What runs: each journey once per probe account it runs as
    /// ([`super::accounts::runs`]), the primary account's copy first.
    pub runs: Vec<Journey>,
    pub warnings: Diagnostics,
    /// How much of each instance's rate limits the journeys and the sweep use,
    /// per probe account, every probe sharing the account or the token counted
    /// (none exceeded).
    pub budget: Vec<limits::Budget>,
}

/// Parses one journey from text. `path` is only used in diagnostics.
pub fn parse_journey_str(path: &Path, text: &str) -> (Option<Journey>, Diagnostics) {
    let source = Source::new(path, text);
    parse_source(&source, read_journey)
}

/// Parses a config from text, without loading its journeys or reading its
/// tokens. `path` is only used in diagnostics (and to resolve relative paths).
pub fn parse_config_str(path: &Path, text: &str) -> (Option<Config>, Diagnostics) {
    let source = Source::new(path, text);
    parse_source(&source, read_config)
}

fn parse_source<T>(
    source: &Source,
    read: impl FnOnce(&mut Reader<'_>, &yaml::Node) -> Option<T>,
) -> (Option<T>, Diagnostics) {
    let mut diagnostics = Diagnostics::default();
    match yaml::parse(source) {
        Err(d) => {
            diagnostics.push(d);
            (None, diagnostics)
        }
        Ok(None) => {
            diagnostics.push(Diagnostic::file_error(&source.path, "the file is empty"));
            (None, diagnostics)
        }
        Ok(Some(root)) => {
            let mut reader = Reader::new(source);
            let value = read(&mut reader, &root);
            (value, reader.diagnostics)
        }
    }
}

fn read_file(path: &Path, diagnostics: &mut Diagnostics) -> Option<Source> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(Source::new(path, text)),
        Err(e) => {
            diagnostics.push(Diagnostic::file_error(path, format!("cannot read the file: {e}")));
            None
        }
    }
}

/// Whether a file in a journey folder is a journey file: `*.yaml` or `*.yml`.
pub fn is_journey_file_name(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// The journey files under `paths`: files as given, folders' `*.yaml` and `*.yml`
/// files (not recursive), sorted so that every run loads them in the same order.
fn journey_files(paths: &[PathBuf], diagnostics: &mut Diagnostics) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            match std::fs::read_dir(path) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.is_file() && is_journey_file_name(p))
                        .collect();
                    found.sort();
                    if found.is_empty() {
                        diagnostics.push(
                            Diagnostic::file_error(path, "no journey files (*.yaml) in this folder").with_hint(
                                "the bundled journeys are in the `journeys/` folder of fediprobe's repository",
                            ),
                        );
                    }
                    files.extend(found);
                }
                Err(e) => diagnostics.push(Diagnostic::file_error(path, format!("cannot read the folder: {e}"))),
            }
        } else if path.exists() {
            files.push(path.clone());
        } else {
            diagnostics.push(Diagnostic::file_error(path, "no such file or folder"));
        }
    }
    files
}

/// Loads the journeys under `paths`, reporting every problem in every file, and
/// checking what needs them all together (unique names, Mastodon's default rate limits).
pub fn load_journey_paths(paths: &[PathBuf]) -> (Vec<Journey>, Diagnostics) {
    let (journeys, sources, mut diagnostics) = load_journeys(paths);
    let defaults = |_: &str, _: Option<&str>| (limits::LIMITS.to_vec(), limits::Sharing::default());
    diagnostics.extend(limit_diagnostics(&journeys, &sources, &limits::budget(&journeys, &defaults)));
    (journeys, diagnostics)
}

fn load_journeys(paths: &[PathBuf]) -> (Vec<Journey>, Vec<Source>, Diagnostics) {
    let mut diagnostics = Diagnostics::default();
    let mut journeys: Vec<Journey> = Vec::new();
    let mut sources: Vec<Source> = Vec::new();
    // Each name's journey, by index: a thousand journeys are not compared pairwise.
    let mut by_name: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let files = journey_files(paths, &mut diagnostics);
    for (source, journey, found) in read_and_parse(&files) {
        diagnostics.extend(found);
        let Some(source) = source else { continue };
        if let Some(journey) = journey {
            if let Some(first) = by_name.get(&journey.name).map(|&index| &journeys[index]) {
                let d = Diagnostic::file_error(&source.path, format!("a second journey is named `{}`", journey.name))
                    .with_hint(format!(
                        "{} already has this name; journey names label metrics and must be unique",
                        first.file.display()
                    ));
                diagnostics.push(d);
                continue;
            }
            by_name.insert(journey.name.clone(), journeys.len());
            journeys.push(journey);
            sources.push(source);
        }
    }
    (journeys, sources, diagnostics)
}

/// Each file read and parsed, in the order given: its source (`None` when it
/// could not be read), its journey and its diagnostics. A thousand files are
/// shared among the machine's cores (the agent's start-up waits for them); each
/// file's result is its own, so the order and the diagnostics are the same as
/// one after the other.
fn read_and_parse(files: &[PathBuf]) -> Vec<(Option<Source>, Option<Journey>, Diagnostics)> {
    /// Below this many files per thread, starting threads costs more than it saves.
    const FILES_PER_THREAD: usize = 64;
    let one = |file: &PathBuf| {
        let mut diagnostics = Diagnostics::default();
        let Some(source) = read_file(file, &mut diagnostics) else { return (None, None, diagnostics) };
        let (journey, found) = parse_source(&source, read_journey);
        diagnostics.extend(found);
        (Some(source), journey, diagnostics)
    };
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(files.len() / FILES_PER_THREAD);
    if threads <= 1 {
        return files.iter().map(one).collect();
    }
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> =
            files.chunks(chunk).map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>())).collect();
        // A parser that panicked is a bug; its panic goes on here, as it would have without threads.
        workers.into_iter().flat_map(|worker| worker.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// The schedules' use of each instance's rate limits, as errors where it is too
/// much. `journeys` are the runs the budget was made of (`User::Journey` indexes
/// them); `sources` the files they were read from.
fn limit_diagnostics(journeys: &[Journey], sources: &[Source], budget: &[limits::Budget]) -> Diagnostics {
    let mut diagnostics = Diagnostics::default();
    for budget in budget.iter().filter(|b| b.exceeded()) {
        let limit = budget.limit;
        let scope = limit.scope.as_str();
        let whose = match &budget.account {
            Some(account) => format!("account `{account}` on instance `{}`", budget.instance),
            None => format!("instance `{}`", budget.instance),
        };
        let mut title = format!(
            "the schedules exceed the limit of {} {} per {} per {scope} on {whose}: up to {} in one window",
            limit.max,
            limit.what,
            humantime::format_duration(limit.per),
            budget.total()
        );
        if budget.probes > 1 {
            title.push_str(&format!(
                " ({} from this probe, {} probes sharing the {scope})",
                budget.per_probe, budget.probes
            ));
        }
        let users: Vec<String> = budget
            .users
            .iter()
            .map(|(user, n)| match user {
                limits::User::Journey(i) => format!("{} ({n})", journeys[*i].run_key()),
                limits::User::Sweep => format!("the leftover sweep ({n})"),
            })
            .collect();
        let remedy = match limit.scope {
            limits::Scope::Token => "give each probe its own token (and say so: `shared_by: { token: 1 }`), ",
            limits::Scope::Account => "spread the journeys over more probe accounts, ",
            limits::Scope::Address => "",
        };
        let hint = format!(
            "used by: {}; run the journeys less often, {remedy}or (if the instance allows more) set `rate_limits` in the config",
            users.join(", ")
        );
        let top = budget.users.iter().find_map(|(user, _)| match user {
            limits::User::Journey(i) => Some(*i),
            limits::User::Sweep => None,
        });
        let source_of = |journey: &Journey| sources.iter().find(|s| s.path == journey.file);
        let d = match top {
            Some(i) => source_of(&journeys[i])
                .and_then(|source| source_diagnostic(source, journeys[i].schedule.pos, &title))
                .unwrap_or_else(|| Diagnostic::file_error(&journeys[i].file, title.clone())),
            None => match journeys.first() {
                Some(j) => Diagnostic::file_error(&j.file, title),
                None => continue,
            },
        };
        diagnostics.push(d.with_hint(hint));
    }
    diagnostics
}

fn source_diagnostic(source: &Source, pos: super::diag::Pos, title: &str) -> Option<Diagnostic> {
    let width = source.line(pos.line).map(|l| l.chars().count().saturating_sub(pos.col - 1)).unwrap_or(1);
    Some(source.diagnostic(Severity::Error, pos, width, title))
}

/// Loads a config and its journeys. Errors (in any file) are all returned together.
pub fn load_config(path: &Path) -> Result<Loaded, Diagnostics> {
    let mut diagnostics = Diagnostics::default();
    let Some(source) = read_file(path, &mut diagnostics) else { return Err(diagnostics) };
    let (config, found) = parse_source(&source, read_config);
    diagnostics.extend(found);
    let Some(config) = config else { return Err(diagnostics) };
    let (journeys, sources, found) = load_journeys(&config.journeys);
    diagnostics.extend(found);
    let runs = super::accounts::runs(&journeys, &|instance| config.account_names(instance));
    let budget = limits::budget(&runs, &|name, account| config.limits_for(name, account));
    diagnostics.extend(limit_diagnostics(&runs, &sources, &budget));
    for journey in &journeys {
        if let Some(instance) = config.instance(&journey.instance) {
            for d in super::accounts::unknown_accounts(journey, &instance.account_names(), &config.file) {
                diagnostics.push(d);
            }
        }
        for (name, pos) in journey.instances() {
            if config.instance(name).is_none() {
                let text = std::fs::read_to_string(&journey.file).unwrap_or_default();
                let journey_source = Source::new(&journey.file, text);
                let known: Vec<&str> = config.instances.iter().map(|i| i.name.as_str()).collect();
                let d = journey_source
                    .diagnostic(Severity::Error, pos, name.len(), format!("instance `{name}` is not in the config"))
                    .with_hint(match super::diag::did_you_mean(name, &known) {
                        Some(s) => {
                            format!("did you mean `{s}`? ({} defines: {})", config.file.display(), known.join(", "))
                        }
                        None => format!("{} defines: {}", config.file.display(), known.join(", ")),
                    });
                diagnostics.push(d);
            }
        }
    }
    if diagnostics.has_errors() {
        return Err(diagnostics);
    }
    let mut warnings = diagnostics;
    warnings.extend(token_warnings(&config, &source));
    Ok(Loaded { config, journeys, runs, warnings, budget })
}

/// Warnings about tokens that can't be read now (unset variable, missing or
/// world-readable file). Not errors: `check` may run where the secrets aren't.
pub fn token_warnings(config: &Config, source: &Source) -> Diagnostics {
    let mut out = Diagnostics::default();
    for instance in &config.instances {
        // The primary account's token at the instance's name (as before there
        // were several), every other account's at its own name under `accounts:`.
        let primary = (
            format!("instance `{}`", instance.name),
            &instance.token,
            instance.pos,
            instance.name.len(),
            "against this instance",
        );
        let others = instance.extra_accounts.iter().map(|a| {
            (
                format!("account `{}` on instance `{}`", a.name, instance.name),
                &a.token,
                a.pos,
                a.name.len(),
                "as this account",
            )
        });
        for (whose, token, pos, width, runs) in std::iter::once(primary).chain(others) {
            let problem = match token {
                TokenSource::Env(name) => match std::env::var(name) {
                    Ok(v) if !v.trim().is_empty() => None,
                    Ok(_) => Some(format!("the token of {whose} (environment variable {name}) is empty")),
                    Err(_) => Some(format!("the token of {whose} (environment variable {name}) is not set here")),
                },
                TokenSource::File(path) => match std::fs::metadata(path) {
                    Err(_) => Some(format!("the token of {whose} ({}) cannot be read here", path.display())),
                    Ok(meta) => world_readable(&meta)
                        .then(|| format!("the token file of {whose} ({}) is readable by every user", path.display())),
                },
            };
            if let Some(title) = problem {
                let mut d = source.diagnostic(Severity::Warning, pos, width, title);
                d.hint = Some(format!(
                    "runs {runs} will end in `probe_error` until the token is there (and private: chmod 600)"
                ));
                out.push(d);
            }
        }
    }
    out
}

#[cfg(unix)]
fn world_readable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o004 != 0
}

#[cfg(not(unix))]
fn world_readable(_meta: &std::fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journey_text(name: &str) -> String {
        format!(
            "name: {name}\ninstance: main\nschedule: '*/5 * * * *'\nslo: {{ availability: 99% }}\nsteps:\n  - name: s\n    request: {{ path: /health }}\n"
        )
    }

    #[test]
    fn many_files_load_in_file_order_with_the_same_diagnostics_as_one_at_a_time() {
        // Enough files for the reading to be shared among threads: the journeys
        // keep the files' order, the second of two same-named journeys is the one
        // refused, and a broken file's diagnostic sits where its file is.
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (0..300)
            .map(|i| {
                let path = dir.path().join(format!("j{i:03}.yaml"));
                let text = match i {
                    7 => "name: [unclosed\n".to_owned(),
                    250 => journey_text("j010"),
                    _ => journey_text(&format!("j{i:03}")),
                };
                std::fs::write(&path, text).unwrap();
                path
            })
            .collect();
        let (journeys, _, diagnostics) = load_journeys(&[dir.path().to_owned()]);
        let names: Vec<&str> = journeys.iter().map(|j| j.name.as_str()).collect();
        let expected: Vec<String> = (0..300).filter(|i| *i != 7 && *i != 250).map(|i| format!("j{i:03}")).collect();
        assert_eq!(names, expected);

        let mut one_at_a_time = Diagnostics::default();
        for file in &files {
            let mut found = Diagnostics::default();
            if let Some(source) = read_file(file, &mut found) {
                found.extend(parse_source(&source, read_journey).1);
            }
            one_at_a_time.extend(found);
        }
        let text = |d: &Diagnostics| d.0.iter().map(|d| format!("{d}")).collect::<Vec<_>>();
        let mut threaded = text(&diagnostics);
        let duplicate = threaded.pop().expect("the duplicate name is reported last");
        assert!(
            duplicate.contains("a second journey is named `j010`") && duplicate.contains("j250.yaml"),
            "{duplicate}"
        );
        assert_eq!(threaded, text(&one_at_a_time));
        assert!(!threaded.is_empty() && threaded[0].contains("j007.yaml"), "{threaded:?}");
    }
}
