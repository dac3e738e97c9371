//! Start-up and shutdown: connect and migrate the store, load keys, bind both
//! listeners (port 0 allowed, for tests), then serve until told to stop.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    auth::{ApiKeys, KeyConfigError, keys::Bootstrap, keys::KeySources},
    config::Config,
    grpc,
    providers::{
        retry::RetryPolicy,
        twilio::{TwilioAuth, TwilioClient, TwilioConfig},
        vapi::{VapiClient, VapiConfig},
    },
    services::{
        CallsService, NotificationsService, NumbersService, OrdersService,
        calls::ReportBatches,
        notifications::{NotifySettings, Template, TemplateField},
        numbers::{LinkSettings, TwilioImportAuth},
    },
    store::{Store, StoreError},
    webhook, workers,
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database: {0}")]
    Database(#[source] StoreError),
    #[error("cannot apply migrations: {0}")]
    Migrate(#[source] StoreError),
    #[error("API keys: {0}")]
    Keys(#[from] KeyConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("configuration: {0}")]
    Config(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
}

/// A started-but-not-yet-serving Centralino.
pub struct Application {
    config: Config,
    store: Store,
    shim_key: String,
    keys: Arc<ApiKeys>,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    created_admin_key: Option<PathBuf>,
    notify: NotifySettings,
    report_batches: Arc<ReportBatches>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        tokio::task::spawn_blocking(crate::domain::phone::warm_up)
            .await
            .ok();
        let store = Store::connect_with(
            &config.database.database_url,
            config.database.db_max_connections,
            config.database.log_sql,
        )
        .await
        .map_err(StartError::Database)?;
        let notify = notify_settings(&config).map_err(StartError::Config)?;
        let applied = store.migrate().await.map_err(StartError::Migrate)?;
        info!(
            database = store.backend_name(),
            migrations_applied = applied,
            "database ready"
        );

        let (keys, bootstrap) = ApiKeys::load(&KeySources {
            inline: config.api_keys.as_ref().map(|s| s.expose().to_owned()),
            file: config.api_keys_file.clone(),
            admin_key_file: Some(config.admin_key_file.clone()),
        })?;
        let created_admin_key = match bootstrap {
            Bootstrap::CreatedAdminKey(path) => {
                let shown = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
                warn!(
                    path = %shown.display(),
                    "no API key was configured: created an admin key in this file (mode 0600); \
                     send it as \"authorization: Bearer <key>\" and configure real keys for production"
                );
                Some(path)
            }
            Bootstrap::Configured => None,
        };
        // The webhook shim calls our own gRPC with a key of its own, unless
        // it is pointed at another endpoint with its key.
        let mut keys = keys;
        let shim_key = match &config.webhooks.shim_ingest_key {
            Some(key) => key.expose().to_owned(),
            None => {
                let key = crate::auth::keys::generate_key();
                keys.add_generated(&key, crate::auth::Role::Ingest);
                key
            }
        };
        info!(keys = keys.len(), "API keys loaded");

        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        };
        let grpc_listener = bind(config.grpc_addr).await?;
        let http_listener = bind(config.http_addr).await?;
        Ok(Self {
            config,
            store,
            shim_key,
            keys: Arc::new(keys),
            grpc_listener,
            http_listener,
            created_admin_key,
            notify,
            report_batches: Arc::default(),
        })
    }

    /// How the report committers have been committing (for tests and
    /// diagnosis): shared with the running server.
    pub fn report_batches(&self) -> Arc<ReportBatches> {
        self.report_batches.clone()
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_listener
            .local_addr()
            .unwrap_or(self.config.grpc_addr)
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_listener
            .local_addr()
            .unwrap_or(self.config.http_addr)
    }

    /// The admin key file this start created, if it created one.
    pub fn created_admin_key(&self) -> Option<&PathBuf> {
        self.created_admin_key.as_ref()
    }

    /// Serves until `shutdown` is cancelled, then drains in-flight requests
    /// for at most the configured grace period.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), RunError> {
        let Self {
            config,
            store,
            shim_key,
            keys,
            grpc_listener,
            http_listener,
            created_admin_key: _,
            notify,
            report_batches,
        } = self;
        let grpc_addr = grpc_listener.local_addr().ok();
        let http_addr = http_listener.local_addr().ok();
        let (numbers, twilio, vapi) = numbers_service(&config, store.clone());
        let orders = OrdersService::new(store.clone(), numbers.clone());
        let reconciler = tokio::spawn(workers::link_reconciler::run(
            numbers.clone(),
            Duration::from_millis(config.links.link_reconcile_interval_ms.max(10)),
            shutdown.clone(),
        ));
        let notifications = NotificationsService::new(store.clone(), twilio, notify);
        let n = &config.notify;
        let dispatcher = tokio::spawn(workers::dispatcher::run(
            notifications.clone(),
            workers::dispatcher::DispatcherSettings {
                sweep: Duration::from_millis(n.notify_sweep_ms.max(10)),
                concurrency: n.notify_concurrency,
                refresh_every: Duration::from_millis(n.notify_sweep_ms.max(10))
                    .max(Duration::from_secs(n.notify_refresh_secs.min(60))),
                crash_after_claim: n.test_crash_after_claim,
            },
            shutdown.clone(),
        ));
        let calls = CallsService::with_committers(
            store.clone(),
            notifications.clone(),
            config.report_committers,
            report_batches,
        )
        .stop_watches_on(shutdown.clone());
        // Other replicas' call changes for WatchCalls. SQLite deployments are
        // single-process: nothing to listen to.
        let call_fanout = if store.backend_name() == "postgresql" {
            let listener = workers::call_fanout::start(&store, &calls).await;
            Some(tokio::spawn(workers::call_fanout::run(
                store.clone(),
                calls.clone(),
                listener,
                shutdown.clone(),
            )))
        } else {
            None
        };
        let routing_watch = tokio::spawn(workers::routing_watch::run(
            store.clone(),
            calls.routing(),
            Duration::from_millis(config.routing_poll_ms.max(10)),
            shutdown.clone(),
        ));
        let (routes, health) = grpc::routes(orders, numbers, calls, notifications, keys)
            .await
            .map_err(|err| RunError::Http(std::io::Error::other(err)))?;

        let (shim, twilio_shim) = shims(&config, &shim_key, &routes)?;
        let grpc_stop = shutdown.clone();
        let grpc_health = health.clone();
        let grpc_task = tokio::spawn(grpc::serve(routes, grpc_listener, async move {
            grpc_stop.cancelled().await;
            // Tell load balancers first, then stop accepting.
            grpc_health
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            for service in grpc::SERVICES {
                grpc_health
                    .set_service_status(service, tonic_health::ServingStatus::NotServing)
                    .await;
            }
        }));
        let r = &config.recovery;
        let recovery = match vapi {
            Some(vapi) if r.recovery_interval_ms > 0 => {
                Some(tokio::spawn(workers::report_recovery::run(
                    store.clone(),
                    vapi,
                    shim.client().clone(),
                    workers::report_recovery::RecoverySettings {
                        interval: Duration::from_millis(r.recovery_interval_ms.max(10)),
                        lookback: Duration::from_secs(r.recovery_lookback_secs),
                        grace: Duration::from_secs(r.recovery_grace_secs),
                    },
                    shutdown.clone(),
                )))
            }
            Some(_) => {
                info!("report recovery is off (CENTRALINO_RECOVERY_INTERVAL_MS=0)");
                None
            }
            None => {
                warn!(
                    "VAPI_API_KEY is not set: lost end-of-call reports are not recovered from Vapi"
                );
                None
            }
        };
        let http_stop = shutdown.clone();
        let http_task = tokio::spawn(async move {
            axum::serve(
                http_listener,
                webhook::router(store.clone(), shim, twilio_shim),
            )
            .with_graceful_shutdown(async move { http_stop.cancelled().await })
            .await
        });
        info!(
            grpc = ?grpc_addr,
            http = ?http_addr,
            "centralino serving"
        );

        shutdown.cancelled().await;
        info!("shutting down: draining in-flight requests");
        let grace = Duration::from_secs(config.shutdown_grace_secs);
        let drained = tokio::time::timeout(grace, async {
            let grpc = grpc_task.await;
            let http = http_task.await;
            reconciler.await.ok();
            dispatcher.await.ok();
            routing_watch.await.ok();
            if let Some(call_fanout) = call_fanout {
                call_fanout.await.ok();
            }
            if let Some(recovery) = recovery {
                recovery.await.ok();
            }
            (grpc, http)
        })
        .await;
        match drained {
            Ok((grpc, http)) => {
                match grpc {
                    Ok(result) => result?,
                    Err(join) => error!(error = %join, "gRPC server task failed"),
                }
                match http {
                    Ok(result) => result.map_err(RunError::Http)?,
                    Err(join) => error!(error = %join, "HTTP server task failed"),
                }
                info!("stopped");
            }
            Err(_) => warn!(
                grace_secs = config.shutdown_grace_secs,
                "grace period over: stopping with requests still in flight"
            ),
        }
        Ok(())
    }
}

/// Connections the Vapi shim spreads its RPCs over when it calls the gRPC
/// listener over the network.
const SHIM_CONNECTIONS: usize = 4;

/// The webhook shims: their authentication and their gRPC client (to
/// CENTRALINO_SHIM_GRPC_ENDPOINT, else to this process's `routes`).
fn shims(
    config: &Config,
    key: &str,
    routes: &tonic::service::Routes,
) -> Result<(webhook::vapi::Shim, webhook::twilio::TwilioShim), RunError> {
    let w = &config.webhooks;
    let auth = match &config.providers.vapi_webhook_secret {
        Some(secret) => Some(
            webhook::auth::WebhookAuth::from_config(
                &w.vapi_webhook_auth,
                secret.clone(),
                Some(&w.vapi_webhook_header),
                Some(&w.vapi_hmac_signature_header),
                Some(&w.vapi_hmac_timestamp_header),
                w.vapi_hmac_prefix.as_deref(),
                w.vapi_hmac_window_secs,
            )
            .map_err(|err| {
                RunError::Http(std::io::Error::other(format!("Vapi webhook auth: {err}")))
            })?,
        ),
        None => {
            warn!(
                "VAPI_WEBHOOK_SECRET is not set: POST /webhooks/vapi refuses every request (401)"
            );
            None
        }
    };
    let builder = centralino_sdk::Client::builder(
        w.shim_grpc_endpoint
            .clone()
            .unwrap_or_else(|| "http://in-process.centralino.invalid".to_owned()),
        key,
    );
    let client_failed =
        |err| RunError::Http(std::io::Error::other(format!("webhook shim client: {err}")));
    // Several connections: one HTTP/2 connection's task serialised every
    // webhook's RPC (assistant requests at 16 in flight swung between
    // ~16,000 and ~27,000/s from run to run).
    let clients = match &w.shim_grpc_endpoint {
        Some(_) => (0..SHIM_CONNECTIONS)
            .map(|_| builder.clone().connect_lazy().map_err(client_failed))
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![
            builder
                .with_transport(grpc::in_process::transport(
                    routes.clone(),
                    centralino_sdk::DEFAULT_TIMEOUT,
                ))
                .map_err(client_failed)?,
        ],
    };
    let client = clients[0].clone();
    let p = &config.providers;
    if p.twilio_auth_token.is_none() || p.public_url.is_none() {
        warn!(
            "TWILIO_AUTH_TOKEN or CENTRALINO_PUBLIC_URL is not set: /webhooks/twilio/* refuse every request (403), so delivery statuses and agents' replies are not recorded"
        );
    }
    let twilio_shim = webhook::twilio::TwilioShim {
        auth_token: p.twilio_auth_token.clone(),
        public_url: p.public_url.clone(),
        client: client.clone(),
        max_body: w.webhook_max_body_bytes,
    };
    Ok((
        webhook::vapi::Shim {
            auth,
            clients: clients.into(),
            next: Default::default(),
            max_body: w.webhook_max_body_bytes,
        },
        twilio_shim,
    ))
}

/// Notification settings, checked at start so that a typo in a number or
/// the template stops the service instead of failing every message later.
fn notify_settings(config: &Config) -> Result<NotifySettings, String> {
    let n = &config.notify;
    let number = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .filter(|v| !v.trim().is_empty())
            .map(|v| {
                crate::domain::notification::parse_whatsapp(v)
                    .map_err(|err| format!("{name} {err}"))
            })
            .transpose()
    };
    let fallback_sender = number("TWILIO_WHATSAPP_NUMBER", &n.twilio_whatsapp_number)?;
    let fallback_destination = number(
        "TWILIO_DESTINATION_WHATSAPP",
        &n.twilio_destination_whatsapp,
    )?;
    let fields = TemplateField::parse_list(&n.whatsapp_template_variables)
        .map_err(|err| format!("CENTRALINO_WHATSAPP_TEMPLATE_VARIABLES: {err}"))?;
    let template = match n.twilio_whatsapp_template_sid.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(sid) => {
            let valid = sid.len() == 34
                && sid.starts_with("HX")
                && sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
            if !valid {
                return Err(format!(
                    "TWILIO_WHATSAPP_TEMPLATE_SID {sid:?} is not a Content SID (HX + 32 hex digits)"
                ));
            }
            if fields.is_empty() {
                return Err("CENTRALINO_WHATSAPP_TEMPLATE_VARIABLES is empty".to_owned());
            }
            Some(Template {
                content_sid: sid.to_owned(),
                fields,
            })
        }
    };
    if template.is_none() {
        warn!(
            "TWILIO_WHATSAPP_TEMPLATE_SID is not set: summaries to agents who have not written to the agency number in the last 24 hours fail with TEMPLATE_NOT_CONFIGURED"
        );
    }
    Ok(NotifySettings {
        fallback_sender,
        fallback_destination,
        template,
        status_callback: config
            .providers
            .public_url
            .as_ref()
            .map(|url| format!("{}/webhooks/twilio/status", url.trim_end_matches('/'))),
        retry_base: Duration::from_millis(n.notify_retry_base_ms.max(1)),
        max_age: Duration::from_secs(n.notify_max_age_secs),
        lease: Duration::from_millis(n.notify_lease_ms.max(100)),
        refresh_after: Duration::from_secs(n.notify_refresh_secs),
    })
}

/// The provider clients and link settings from configuration. A provider
/// without credentials is absent: what needs it waits, and says why. The
/// Twilio and Vapi clients are returned too, for the notifications and the
/// report recovery.
fn numbers_service(
    config: &Config,
    store: Store,
) -> (NumbersService, Option<TwilioClient>, Option<VapiClient>) {
    let p = &config.providers;
    let retry = RetryPolicy {
        max_retries: p.provider_retries,
        min_delay: Duration::from_millis(p.provider_retry_min_ms),
        max_delay: Duration::from_secs(5).max(Duration::from_millis(p.provider_retry_min_ms)),
    };
    let timeout = Duration::from_millis(p.provider_timeout_ms);
    let vapi = p.vapi_api_key.as_ref().and_then(|key| {
        VapiClient::new(VapiConfig {
            base_url: p.vapi_base_url.clone(),
            api_key: key.clone(),
            timeout,
            retry,
        })
        .map_err(|err| error!(error = %err, "Vapi client not built; links stay PENDING"))
        .ok()
    });
    let twilio_auth = match (
        &p.twilio_auth_token,
        &p.twilio_api_key,
        &p.twilio_api_secret,
    ) {
        (_, Some(sid), Some(secret)) => Some((
            TwilioAuth::ApiKey {
                sid: sid.clone(),
                secret: secret.clone(),
            },
            TwilioImportAuth::ApiKey {
                sid: sid.clone(),
                secret: secret.clone(),
            },
        )),
        (Some(token), _, _) => Some((
            TwilioAuth::AuthToken(token.clone()),
            TwilioImportAuth::AuthToken(token.clone()),
        )),
        (None, _, _) => None,
    };
    let twilio = match (&p.twilio_account_sid, &twilio_auth) {
        (Some(account), Some((auth, _))) => TwilioClient::new(TwilioConfig {
            base_url: p.twilio_base_url.clone(),
            account_sid: account.clone(),
            auth: auth.clone(),
            timeout,
            retry,
        })
        .map_err(|err| error!(error = %err.reason(), "Twilio client not built"))
        .ok(),
        (Some(_), None) | (None, _) => None,
    };
    if vapi.is_none() {
        warn!("VAPI_API_KEY is not set: number links stay PENDING until it is");
    }
    if twilio.is_none() {
        warn!(
            "Twilio is not configured (TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN or API key): numbers are not checked in Twilio and WhatsApp notifications wait as PENDING"
        );
    }
    let webhook_url = p
        .public_url
        .as_ref()
        .map(|url| format!("{}/webhooks/vapi", url.trim_end_matches('/')));
    let numbers = NumbersService::new(
        store,
        vapi.clone(),
        twilio.clone(),
        LinkSettings {
            webhook_url,
            webhook_secret: p.vapi_webhook_secret.clone(),
            webhook_credential_id: p.vapi_webhook_credential_id.clone(),
            twilio_account_sid: p.twilio_account_sid.clone(),
            twilio_import_auth: twilio_auth.map(|(_, import)| import),
            retry_base: Duration::from_millis(config.links.link_retry_base_ms),
            drift_check: Duration::from_millis(config.links.link_drift_check_ms),
        },
    );
    (numbers, twilio, vapi)
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(err) => {
                    error!(error = %err, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => info!("SIGINT received"),
            () = terminate => info!("SIGTERM received"),
        }
        token.cancel();
    });
}
