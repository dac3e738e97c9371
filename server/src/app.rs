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
        CallsService, NumbersService, OrdersService,
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
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        tokio::task::spawn_blocking(crate::domain::phone::warm_up)
            .await
            .ok();
        let store = Store::connect(
            &config.database.database_url,
            config.database.db_max_connections,
        )
        .await
        .map_err(StartError::Database)?;
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
        })
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
        } = self;
        let grpc_addr = grpc_listener.local_addr().ok();
        let http_addr = http_listener.local_addr().ok();
        let numbers = numbers_service(&config, store.clone());
        let orders = OrdersService::new(store.clone(), numbers.clone());
        let reconciler = tokio::spawn(workers::link_reconciler::run(
            numbers.clone(),
            Duration::from_millis(config.links.link_reconcile_interval_ms.max(10)),
            shutdown.clone(),
        ));
        let calls = CallsService::new(store.clone());
        let (routes, health) = grpc::routes(orders, numbers, calls, keys)
            .await
            .map_err(|err| RunError::Http(std::io::Error::other(err)))?;

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
        let shim = shim(&config, grpc_addr, &shim_key)?;
        let http_stop = shutdown.clone();
        let http_task = tokio::spawn(async move {
            axum::serve(http_listener, webhook::router(store.clone(), shim))
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

/// The webhook shim: its authentication and its client of CallsService.
fn shim(
    config: &Config,
    grpc_addr: Option<SocketAddr>,
    key: &str,
) -> Result<webhook::vapi::Shim, RunError> {
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
    let endpoint = match (&w.shim_grpc_endpoint, grpc_addr) {
        (Some(endpoint), _) => endpoint.clone(),
        (None, Some(addr)) if addr.ip().is_unspecified() => {
            format!("http://127.0.0.1:{}", addr.port())
        }
        (None, Some(addr)) => format!("http://{addr}"),
        (None, None) => format!("http://127.0.0.1:{}", config.grpc_addr.port()),
    };
    let client = centralino_sdk::Client::builder(endpoint, key)
        .connect_lazy()
        .map_err(|err| {
            RunError::Http(std::io::Error::other(format!("webhook shim client: {err}")))
        })?;
    Ok(webhook::vapi::Shim {
        auth,
        client,
        max_body: w.webhook_max_body_bytes,
    })
}

/// The provider clients and link settings from configuration. A provider
/// without credentials is absent: what needs it waits, and says why.
fn numbers_service(config: &Config, store: Store) -> NumbersService {
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
            "Twilio is not configured (TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN or API key): numbers are not checked in Twilio"
        );
    }
    let webhook_url = p
        .public_url
        .as_ref()
        .map(|url| format!("{}/webhooks/vapi", url.trim_end_matches('/')));
    NumbersService::new(
        store,
        vapi,
        twilio,
        LinkSettings {
            webhook_url,
            webhook_secret: p.vapi_webhook_secret.clone(),
            webhook_credential_id: p.vapi_webhook_credential_id.clone(),
            twilio_account_sid: p.twilio_account_sid.clone(),
            twilio_import_auth: twilio_auth.map(|(_, import)| import),
            retry_base: Duration::from_millis(config.links.link_retry_base_ms),
            drift_check: Duration::from_millis(config.links.link_drift_check_ms),
        },
    )
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
