//! Several probe accounts on one instance: which accounts each journey runs as.
//!
//! Users are not alike: a fresh account's home timeline is short, one that
//! follows hundreds of accounts waits for a long one. An instance in the config
//! has a primary account (`account:`, `token:`) and may have more (`accounts:`,
//! keyed by user name); a journey runs as the primary one unless it says
//! `accounts: all` (a run per account) or names some (`accounts: [fediprobe_busy]`).
//! Each chosen account makes one copy of the journey ([`runs`]) with `run_as`
//! set, scheduled, rate-limited and swept on its own; its samples carry the
//! account's user name in the `account` label, which is what the primary
//! account's samples always carried, so a single-account config sees no change.
//!
//! The choice applies on the journey's own instance. A step on another instance
//! (the federation journeys' counterpart) goes out as that instance's primary
//! account: the follows the federation journeys need are set up between
//! primary accounts.

use super::diag::{Diagnostic, Severity, did_you_mean};
use super::journey::{AccountChoice, Journey};
use super::yaml::Source;

/// One copy of each journey per account it runs as, in the journeys' order (the
/// primary account's first). `accounts_of(instance)` gives the user names of the
/// instance's probe accounts, the primary first. A named account that is the
/// primary one runs as the primary (`run_as: None`); a name the instance does not
/// have is kept (the runner ends such runs in `probe_error`/`config`: `check`
/// refuses them before).
pub fn runs(journeys: &[Journey], accounts_of: &dyn Fn(&str) -> Vec<String>) -> Vec<Journey> {
    let mut out = Vec::new();
    for journey in journeys {
        let accounts = accounts_of(&journey.instance);
        let primary = accounts.first().map(String::as_str);
        let chosen: Vec<Option<String>> = match &journey.accounts {
            AccountChoice::Primary => vec![None],
            AccountChoice::All => std::iter::once(None).chain(accounts.iter().skip(1).cloned().map(Some)).collect(),
            AccountChoice::Named(names) => names
                .iter()
                .map(|(name, _)| {
                    // User names are case-insensitive in Mastodon: the config's spelling is the label's.
                    let known = accounts.iter().find(|a| a.eq_ignore_ascii_case(name)).unwrap_or(name);
                    if Some(known.as_str()) == primary { None } else { Some(known.clone()) }
                })
                .collect(),
        };
        for run_as in chosen {
            out.push(Journey { run_as, ..journey.clone() });
        }
    }
    out
}

/// Errors for accounts a journey names that its instance does not have in the
/// config, at the name in the journey file, with the instance's accounts as a hint.
pub fn unknown_accounts(journey: &Journey, known: &[String], config_file: &std::path::Path) -> Vec<Diagnostic> {
    let AccountChoice::Named(names) = &journey.accounts else { return Vec::new() };
    let mut out = Vec::new();
    for (name, pos) in names.iter().filter(|(name, _)| !known.iter().any(|k| k.eq_ignore_ascii_case(name))) {
        let text = std::fs::read_to_string(&journey.file).unwrap_or_default();
        let source = Source::new(&journey.file, text);
        let candidates: Vec<&str> = known.iter().map(String::as_str).collect();
        let listed = format!(
            "{} defines on instance `{}`: {} (the primary `account:` and those under `accounts:`)",
            config_file.display(),
            journey.instance,
            candidates.join(", ")
        );
        let hint = match did_you_mean(name, &candidates) {
            Some(s) => format!("did you mean `{s}`? {listed}"),
            None => listed,
        };
        out.push(
            source
                .diagnostic(
                    Severity::Error,
                    *pos,
                    name.len(),
                    format!("account `{name}` is not a probe account of instance `{}`", journey.instance),
                )
                .with_hint(hint),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journey with `accounts` (a line, or nothing) on its third line.
    fn parse(accounts: &str) -> (Option<Journey>, crate::spec::Diagnostics) {
        let text = format!(
            "name: home\ninstance: main\n{accounts}schedule: '* * * * *'\nslo: {{ availability: 99% }}\nsteps:\n  - name: s\n    request: {{ path: /api/v1/timelines/home }}\n"
        );
        crate::spec::parse_journey_str(std::path::Path::new("t.yaml"), &text)
    }

    fn journey(accounts: &str) -> Journey {
        let (journey, diagnostics) = parse(accounts);
        journey.unwrap_or_else(|| panic!("{diagnostics}"))
    }

    fn run_as(accounts: &str) -> Vec<(Option<String>, String)> {
        let of = |_: &str| vec!["fediprobe".to_owned(), "busy".to_owned(), "fresh".to_owned()];
        runs(&[journey(accounts)], &of).into_iter().map(|j| (j.run_as.clone(), j.run_key())).collect()
    }

    #[test]
    fn a_journey_runs_as_the_primary_account_unless_it_chooses_others() {
        assert_eq!(run_as(""), vec![(None, "home".to_owned())]);
        assert_eq!(
            run_as("accounts: all\n"),
            vec![
                (None, "home".to_owned()),
                (Some("busy".to_owned()), "home@busy".to_owned()),
                (Some("fresh".to_owned()), "home@fresh".to_owned())
            ]
        );
        // Naming the primary account is running as it: the same key as without `accounts`.
        // User names are case-insensitive; the config's spelling is kept.
        assert_eq!(
            run_as("accounts: [Fresh, fediprobe]\n"),
            vec![(Some("fresh".to_owned()), "home@fresh".to_owned()), (None, "home".to_owned())]
        );
    }

    #[test]
    fn accounts_must_be_all_or_a_list_of_distinct_user_names() {
        for (accounts, error) in [
            ("accounts: every\n", "`every` is not a list of accounts"),
            ("accounts: [busy, busy]\n", "account `busy` is listed twice"),
            ("accounts: ['busy one']\n", "`busy one` is not a Mastodon user name"),
            ("accounts: []\n", "`accounts` is empty"),
        ] {
            let (journey, diagnostics) = parse(accounts);
            assert!(journey.is_none(), "{accounts}");
            assert!(diagnostics.to_string().contains(error), "{accounts}: {diagnostics}");
            assert!(diagnostics.to_string().contains("t.yaml:3:"), "positioned: {diagnostics}");
        }
    }
}
