//! Prometheus metrics (SPEC §15): the one recorder, and the names every
//! module records under.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const RUNS_TOTAL: &str = "runbookd_runs_total";
pub const RUN_DURATION: &str = "runbookd_run_duration_seconds";
pub const SCHEDULE_LATENESS: &str = "runbookd_schedule_lateness_seconds";
pub const WEBHOOK_DELIVERIES: &str = "runbookd_webhook_deliveries_total";
pub const QUEUE_DEPTH: &str = "runbookd_queue_depth";
pub const HTTP_REQUESTS: &str = "runbookd_http_requests_total";
pub const EMAILS: &str = "runbookd_emails_total";
pub const ISSUES_OPEN: &str = "runbookd_issues_open";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the process-wide recorder (once) and return the handle that renders it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                ])
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        RUNS_TOTAL,
        "Runs that ended, by runbook and status (including skipped, missed, throttled)."
    );
    describe_histogram!(
        RUN_DURATION,
        metrics::Unit::Seconds,
        "How long runs took, start to end."
    );
    describe_histogram!(
        SCHEDULE_LATENESS,
        metrics::Unit::Seconds,
        "How late a scheduled slot was when it was recorded."
    );
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook requests by runbook and result (accepted, duplicate, filtered, throttled, unauthorized, ...)."
    );
    describe_gauge!(QUEUE_DEPTH, "Runs waiting to start.");
    describe_counter!(
        HTTP_REQUESTS,
        "Outbound HTTP requests from scripts, by host and status."
    );
    describe_counter!(
        EMAILS,
        "Email delivery attempts by outcome (sent, partial, retrying, held, failed, ambiguous)."
    );
    describe_gauge!(ISSUES_OPEN, "Open and acknowledged issues, by severity.");
}

/// Publish the open issues by severity (every severity, zero when none).
pub fn issues_open(counts: &[(crate::store::Severity, i64)]) {
    use strum::VariantArray;
    for sev in crate::store::Severity::VARIANTS {
        let n = counts.iter().find(|(s, _)| s == sev).map_or(0, |(_, n)| *n);
        metrics::gauge!(ISSUES_OPEN, "severity" => sev.as_str()).set(n as f64);
    }
}
