//! The Kubernetes CronJobs of the CronJob deployment variant: one per schedule
//! group (the journeys that share a schedule), each running
//! `fediprobe once --journey A --journey B …` on that schedule.
//!
//! Only what depends on the journeys is generated here (names, schedules, the
//! journeys, deadlines); the pod's image, security context, volumes and
//! resources come from a kustomize patch beside the generated file
//! (`deploy/components/cronjob/`), shared by every CronJob.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::output::to_yaml;
use super::slo::{period, prom_duration};
use crate::spec::Journey;

/// Where the pod finds the config (the `fediprobe-config` ConfigMap is mounted there).
pub const CONFIG_PATH: &str = "/etc/fediprobe/config/fediprobe.yaml";

/// Time a job gets beyond its slowest journey's deadline: cleanup steps (their
/// own timeouts) and start-up.
const JOB_MARGIN: Duration = Duration::from_secs(60);
/// The most a run may start late before Kubernetes skips it.
const MAX_STARTING_DEADLINE: Duration = Duration::from_secs(300);
const MIN_STARTING_DEADLINE: Duration = Duration::from_secs(10);

/// Journeys that run on the same schedule, in one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleGroup {
    /// `every-1m`, from the schedule's period (with `-2`, `-3` when two schedules share one).
    pub name: String,
    pub schedule: String,
    pub journeys: Vec<String>,
    pub period: Duration,
    /// The longest `deadline` of the group's journeys.
    pub deadline: Duration,
}

/// A schedule Kubernetes cannot run as it is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "journey `{journey}`: schedule `{schedule}` has a seconds field, which a Kubernetes CronJob cannot take; \
     use 5 fields or the Deployment variant (`fediprobe run`)"
)]
pub struct UnsupportedSchedule {
    pub journey: String,
    pub schedule: String,
}

/// The journeys grouped by schedule, groups in order of period then schedule,
/// journeys by name.
pub fn schedule_groups(journeys: &[Journey]) -> Result<Vec<ScheduleGroup>, UnsupportedSchedule> {
    let mut by_schedule: BTreeMap<String, Vec<&Journey>> = BTreeMap::new();
    for j in journeys {
        let schedule = j.schedule.normalized();
        if !schedule.starts_with('@') && schedule.split(' ').count() == 6 {
            return Err(UnsupportedSchedule { journey: j.name.clone(), schedule });
        }
        by_schedule.entry(schedule).or_default().push(j);
    }
    let mut groups: Vec<ScheduleGroup> = by_schedule
        .into_iter()
        .map(|(schedule, mut members)| {
            members.sort_by(|a, b| a.name.cmp(&b.name));
            ScheduleGroup {
                name: String::new(),
                period: period(&members[0].schedule.cron),
                deadline: members.iter().map(|j| j.deadline).max().unwrap_or_default(),
                journeys: members.iter().map(|j| j.name.clone()).collect(),
                schedule,
            }
        })
        .collect();
    groups.sort_by(|a, b| (a.period, &a.schedule).cmp(&(b.period, &b.schedule)));
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for g in &mut groups {
        let base = format!("every-{}", prom_duration(g.period));
        let n = seen.entry(base.clone()).or_default();
        *n += 1;
        g.name = if *n == 1 { base } else { format!("{base}-{n}") };
    }
    Ok(groups)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CronJob {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: CronJobSpec,
}

#[derive(Serialize)]
struct Metadata {
    name: String,
    labels: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CronJobSpec {
    schedule: String,
    time_zone: &'static str,
    concurrency_policy: &'static str,
    starting_deadline_seconds: u64,
    successful_jobs_history_limit: u32,
    failed_jobs_history_limit: u32,
    job_template: JobTemplate,
}

#[derive(Serialize)]
struct JobTemplate {
    metadata: TemplateMetadata,
    spec: JobSpec,
}

#[derive(Serialize)]
struct TemplateMetadata {
    labels: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JobSpec {
    backoff_limit: u32,
    active_deadline_seconds: u64,
    template: PodTemplate,
}

#[derive(Serialize)]
struct PodTemplate {
    metadata: TemplateMetadata,
    spec: PodSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    restart_policy: &'static str,
    containers: Vec<Container>,
}

#[derive(Serialize)]
struct Container {
    name: &'static str,
    args: Vec<String>,
}

/// How late a run may start: half its period (a run later than that measures
/// the wrong slot and crowds the next one), within 10 s to 5 min.
pub fn starting_deadline(period: Duration) -> Duration {
    (period / 2).clamp(MIN_STARTING_DEADLINE, MAX_STARTING_DEADLINE)
}

/// How long a job may take: its slowest journey, the push's flush, and a margin.
pub fn active_deadline(group: &ScheduleGroup) -> Duration {
    group.deadline + crate::sink::remote_write::default_flush_timeout() + JOB_MARGIN
}

fn cronjob(group: &ScheduleGroup) -> CronJob {
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name", "fediprobe".to_owned()),
        ("app.kubernetes.io/component", "probe".to_owned()),
        ("fediprobe/schedule-group", group.name.clone()),
    ]);
    let mut args: Vec<String> =
        ["--log-format=json", "once", "-c", CONFIG_PATH].into_iter().map(str::to_owned).collect();
    for j in &group.journeys {
        args.push("--journey".to_owned());
        args.push(j.clone());
    }
    CronJob {
        api_version: "batch/v1",
        kind: "CronJob",
        metadata: Metadata { name: format!("fediprobe-{}", group.name), labels: labels.clone() },
        spec: CronJobSpec {
            schedule: group.schedule.clone(),
            time_zone: "Etc/UTC",
            concurrency_policy: "Forbid",
            starting_deadline_seconds: starting_deadline(group.period).as_secs(),
            successful_jobs_history_limit: 1,
            failed_jobs_history_limit: 3,
            job_template: JobTemplate {
                metadata: TemplateMetadata { labels: labels.clone() },
                spec: JobSpec {
                    backoff_limit: 0,
                    active_deadline_seconds: active_deadline(group).as_secs(),
                    template: PodTemplate {
                        metadata: TemplateMetadata { labels },
                        spec: PodSpec {
                            restart_policy: "Never",
                            containers: vec![Container { name: "fediprobe", args }],
                        },
                    },
                },
            },
        },
    }
}

const HEADER: &str = "# Generated from the journeys' schedules: one CronJob per schedule group.\n\
# Do not edit: regenerate with `FEDIPROBE_BLESS=1 cargo test --test deploy`.\n\
#\n\
# concurrencyPolicy: Forbid - a run still going when the next slot comes makes the\n\
#   next slot wait out, rather than two runs of a journey measuring each other.\n\
# startingDeadlineSeconds - half the period: a run that cannot start by then is\n\
#   skipped, not run late. backoffLimit: 0 - no hidden retries: a failed pod is a\n\
#   measurement (its outcome is pushed), not something to repeat.\n\
# activeDeadlineSeconds - the slowest journey's deadline, the push's flush\n\
#   timeout and a minute for cleanup steps and start-up.\n";

/// The CronJobs as one multi-document YAML file, with a header comment.
pub fn render(groups: &[ScheduleGroup]) -> String {
    let mut out = HEADER.to_owned();
    for g in groups {
        out.push_str(&format!(
            "# {}: {} ({}), every {}\n",
            g.name,
            g.journeys.join(", "),
            g.schedule,
            humantime::format_duration(g.period)
        ));
        out.push_str(&to_yaml(&cronjob(g)));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::spec::parse_journey_str;

    fn journey(name: &str, schedule: &str) -> Journey {
        let text = format!(
            "name: {name}\ninstance: main\nschedule: \"{schedule}\"\nslo: {{ availability: 99.5% }}\nsteps:\n  - name: s\n    request: {{ path: /api/v1/instance }}\n"
        );
        let (journey, diagnostics) = parse_journey_str(Path::new("j.yaml"), &text);
        journey.unwrap_or_else(|| panic!("{diagnostics}"))
    }

    #[test]
    fn journeys_sharing_a_schedule_share_a_cronjob() {
        let groups = schedule_groups(&[
            journey("b", "*/2 * * * *"),
            journey("a", "* * * * *"),
            journey("c", "*  *  * * *"),
            journey(
                "d",
                "0,2,4,6,8,10,12,14,16,18,20,22,24,26,28,30,32,34,36,38,40,42,44,46,48,50,52,54,56,58 * * * *",
            ),
        ])
        .unwrap();
        let names: Vec<(&str, Vec<String>)> = groups.iter().map(|g| (g.name.as_str(), g.journeys.clone())).collect();
        assert_eq!(
            names,
            [
                ("every-1m", vec!["a".to_owned(), "c".to_owned()]),
                ("every-2m", vec!["b".to_owned()]),
                ("every-2m-2", vec!["d".to_owned()])
            ]
        );
        assert_eq!(starting_deadline(groups[0].period), Duration::from_secs(30));
        assert_eq!(active_deadline(&groups[0]), Duration::from_secs(150));
    }

    #[test]
    fn a_seconds_field_cannot_become_a_cronjob() {
        let err = schedule_groups(&[journey("a", "30 * * * * *")]).unwrap_err();
        assert_eq!(err.journey, "a");
    }

    #[test]
    fn the_cronjob_runs_once_for_its_journeys() {
        let groups = schedule_groups(&[journey("a", "* * * * *"), journey("b", "* * * * *")]).unwrap();
        let text = render(&groups);
        assert!(text.contains("concurrencyPolicy: Forbid"), "{text}");
        assert!(text.contains("- once\n"), "{text}");
        assert_eq!(text.matches("- \"--journey\"\n").count(), 2, "{text}");
        assert!(text.contains("- \"--journey\"\n                - a\n"), "{text}");
    }
}
