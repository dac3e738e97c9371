//! Recovers end-of-call reports that never arrived. Vapi sends each report
//! once and does not retry by default; a lost one is a lead the agency never
//! gets. Every interval this lists, for each number held by an order, the
//! calls Vapi had in the look-back window (`GET /call`, paging by moving the
//! `createdAtLt` bound) and records every ended call whose report is not
//! stored, through the same `RecordCallReport` RPC as the webhook shim (so
//! the lead and the one WhatsApp follow). Recording is idempotent per Vapi
//! call id, so several processes running this at once change nothing more:
//! the second to record a call gets a replay.

use std::time::Duration;

use centralino_sdk::{Client, proto};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    providers::vapi::VapiClient,
    store::{self, Store},
    webhook::{messages, vapi::report_to_pb},
};

/// Calls asked for per page.
const PAGE: u32 = 100;

#[derive(Debug, Clone, Copy)]
pub struct RecoverySettings {
    pub interval: Duration,
    /// How far back each pass looks.
    pub lookback: Duration,
    /// Calls that ended less than this long ago are left to their webhook.
    pub grace: Duration,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub listed: usize,
    pub recovered: usize,
    pub replays: usize,
    pub failed: usize,
}

pub async fn run(
    store: Store,
    vapi: VapiClient,
    client: Client,
    settings: RecoverySettings,
    shutdown: CancellationToken,
) {
    info!(
        interval_ms = u64::try_from(settings.interval.as_millis()).unwrap_or(u64::MAX),
        lookback_s = settings.lookback.as_secs(),
        "report recovery started"
    );
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        match pass(&store, &vapi, &client, settings).await {
            Ok(done) if done.recovered > 0 || done.failed > 0 => info!(
                listed = done.listed,
                recovered = done.recovered,
                replays = done.replays,
                failed = done.failed,
                "report recovery: lost reports recorded"
            ),
            Ok(done) => debug!(listed = done.listed, "report recovery: nothing lost"),
            Err(err) => warn!(error = %err, "report recovery pass failed; the next pass retries"),
        }
    }
    debug!("report recovery stopped");
}

/// One pass over every held number.
pub async fn pass(
    store: &Store,
    vapi: &VapiClient,
    client: &Client,
    settings: RecoverySettings,
) -> Result<Pass, String> {
    let now = Utc::now();
    let since = now - chrono::TimeDelta::from_std(settings.lookback).unwrap_or_default();
    let settled_before = now - chrono::TimeDelta::from_std(settings.grace).unwrap_or_default();
    let numbers = store::numbers::vapi_ids_of_held_numbers(store.conn())
        .await
        .map_err(|e| e.to_string())?;
    let mut done = Pass::default();
    for number in numbers {
        let mut before: Option<DateTime<Utc>> = None;
        loop {
            let page = vapi
                .list_calls(&number, since, before, PAGE)
                .await
                .map_err(|e| format!("listing the calls of Vapi number {number}: {e}"))?;
            done.listed += page.len();
            let ended: Vec<&serde_json::Value> = page
                .iter()
                .filter(|c| c["status"] == "ended")
                .filter(|c| time(c, "endedAt").is_some_and(|t| t <= settled_before))
                .collect();
            let ids: Vec<String> = ended
                .iter()
                .filter_map(|c| c["id"].as_str().map(str::to_owned))
                .collect();
            let known = store::calls::reported_vapi_ids(store.conn(), &ids)
                .await
                .map_err(|e| e.to_string())?;
            for call in ended {
                let Some(id) = call["id"].as_str() else {
                    continue;
                };
                if known.contains(id) {
                    continue;
                }
                record(client, call, id, &mut done).await;
            }
            if page.len() < PAGE as usize {
                break;
            }
            // Newest first: the next page ends where this one's oldest began.
            let oldest = page.iter().filter_map(|c| time(c, "createdAt")).min();
            match oldest {
                Some(oldest) if Some(oldest) != before => before = Some(oldest),
                Some(_) | None => break,
            }
        }
    }
    Ok(done)
}

async fn record(client: &Client, call: &serde_json::Value, id: &str, done: &mut Pass) {
    let report = match messages::report_from_call(call) {
        Ok(report) => report,
        Err(err) => {
            warn!(vapi_call_id = id, error = %err, "report recovery: Vapi call not usable");
            done.failed += 1;
            return;
        }
    };
    let request = proto::RecordCallReportRequest {
        report: Some(report_to_pb(&report)),
    };
    match client.calls().record_call_report(request).await {
        Ok(answer) if answer.get_ref().replay => done.replays += 1,
        Ok(_) => {
            info!(
                vapi_call_id = id,
                "report recovery: a lost end-of-call report recorded"
            );
            done.recovered += 1;
        }
        Err(status) => {
            warn!(vapi_call_id = id, code = ?status.code(), message = status.message(), "report recovery: recording failed; the next pass retries");
            done.failed += 1;
        }
    }
}

fn time(call: &serde_json::Value, field: &str) -> Option<DateTime<Utc>> {
    call[field]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}
