//! Builds and runs the Pingora server: proxy, admin and mock services,
//! graceful shutdown on SIGTERM and SIGINT.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{ExecutionPhase, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::GenBackgroundService;
use pingora::services::listening::Service;

use crate::admin::Admin;
use crate::config::schema::{ProviderKind, RawConfig};
use crate::config::{compile, Source};
use crate::metrics::Metrics;
use crate::mock_service::MockService;
use crate::proxy::Gateway;

pub struct Overrides {
    pub listen: Option<String>,
    pub admin: Option<String>,
}

pub fn apply(raw: &mut RawConfig, o: Overrides) {
    if let Some(l) = o.listen {
        raw.server.listen = l;
    }
    if let Some(a) = o.admin {
        raw.server.admin_listen = a;
    }
}

/// Validates, binds and serves until a shutdown signal; returns when done.
pub fn run(source: Source, overrides: Overrides) -> Result<(), String> {
    let mut raw = source.parse().map_err(|e| e.to_string())?;
    apply(&mut raw, overrides);

    // Mock providers get their loopback port before compile, so their base URL is known.
    let mut mock_addrs = HashMap::new();
    let mut mocks = Vec::new();
    for (name, p) in &raw.providers {
        if p.kind == ProviderKind::Mock {
            let l = std::net::TcpListener::bind("127.0.0.1:0")
                .map_err(|e| format!("mock provider '{name}': {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            mock_addrs.insert(name.clone(), l.local_addr().map_err(|e| e.to_string())?);
            let model = raw
                .models
                .iter()
                .flat_map(|(m, s)| s.targets.iter().map(move |t| (m, t)))
                .find(|(_, t)| &t.provider == name)
                .map_or_else(
                    || name.clone(),
                    |(m, t)| t.model.clone().unwrap_or_else(|| m.clone()),
                );
            mocks.push((name.clone(), MockService::new(l, &model, p.mock.as_ref())));
        }
    }

    let metrics = Arc::new(Metrics::new().map_err(|e| e.to_string())?);
    let snapshot = compile(&raw, &source, &mock_addrs, &metrics).map_err(|e| e.to_string())?;
    for (model, why) in &snapshot.unavailable {
        tracing::warn!("model '{model}' unavailable: {why}");
    }
    let governance = snapshot.governance.clone();
    crate::govern::service::restore(&governance, raw.usage_log.as_ref())?;
    let governance_for_exit = governance.clone();
    let snapshot = Arc::new(ArcSwap::from_pointee(snapshot));

    let s = &raw.server;
    let conf = ServerConf {
        threads: s.threads,
        grace_period_seconds: Some(s.grace_period.0.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: s.upstream_pool_size,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let conf = server.configuration.clone();

    let gateway = Gateway {
        snapshot: snapshot.clone(),
        metrics: metrics.clone(),
        connector: Connector::new(Some(ConnectorOptions::from_server_conf(&conf))),
    };
    let checks = crate::routing::checks::HealthChecks {
        snapshot: snapshot.clone(),
        connector: Connector::new(Some(ConnectorOptions::from_server_conf(&conf))),
    };
    let mut options = HttpServerOptions::default();
    options.h2c = s.h2c;
    let mut app = pingora::proxy::http_proxy(&conf, gateway);
    app.server_options = Some(options);
    let mut proxy = Service::new("sluice".to_string(), crate::conn::Connections::new(app));
    // Every connection keeps its read buffer (Pingora's default: 64 KiB).
    // Larger reads bypass it into the parser's own buffers, so 2 KiB costs
    // no throughput and keeps 10,000 idle connections under 100 MB.
    proxy.add_listener(
        pingora::listeners::ListenerConfig::tcp(s.listen.as_str())
            .l4_buffer(pingora::protocols::l4::stream::L4BufferSettings::default().read(2 << 10)),
    );
    if let Some(tls) = &s.tls {
        let mut settings = TlsSettings::intermediate(&tls.cert, &tls.key)
            .map_err(|e| format!("server.tls: {e}"))?;
        settings.enable_h2();
        proxy.add_tls_with_settings(&tls.listen, None, settings);
    }

    let mut admin = Service::new(
        "sluice-admin".to_string(),
        Admin {
            snapshot,
            metrics: metrics.clone(),
            governance: governance.clone(),
        },
    );
    admin.add_tcp(&s.admin_listen);
    admin.threads = Some(1);

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(GenBackgroundService::new(
        "health-checks".to_string(),
        Arc::new(checks),
    ));
    server.add_service(GenBackgroundService::new(
        "governance".to_string(),
        Arc::new(crate::govern::service::GovernanceService {
            governance,
            connector: Arc::new(Connector::new(Some(ConnectorOptions::from_server_conf(
                &conf,
            )))),
        }),
    ));
    for (name, mock) in mocks {
        server.add_service(GenBackgroundService::new(
            format!("mock-{name}"),
            Arc::new(mock),
        ));
    }

    spawn_drain_watch(&server, metrics, governance_for_exit);
    tracing::info!(listen = %s.listen, admin = %s.admin_listen, "sluice serving");
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals),
    });
    Ok(())
}

/// SIGTERM and SIGINT both start a graceful shutdown.
struct Signals;

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => std::future::pending::<()>().await,
        }
        tracing::info!("shutdown signal: refusing new connections, draining in-flight requests");
        ShutdownSignal::GracefulTerminate
    }
}

/// Pingora waits out the whole grace period; exit as soon as nothing is in flight.
fn spawn_drain_watch(
    server: &Server,
    metrics: Arc<Metrics>,
    governance: Arc<crate::govern::Governance>,
) {
    let mut phases = server.watch_execution_phase();
    std::thread::spawn(move || {
        while let Ok(phase) = phases.blocking_recv() {
            if matches!(
                phase,
                ExecutionPhase::GracefulTerminate | ExecutionPhase::ShutdownGracePeriod
            ) {
                // Let listeners close and requests already accepted get counted.
                std::thread::sleep(Duration::from_millis(100));
                while metrics.in_flight.get() > 0 {
                    std::thread::sleep(Duration::from_millis(20));
                }
                // Batched usage records go to disk before the process does.
                if let Some(log) = governance.usage.get() {
                    if let Err(e) = log.flush() {
                        tracing::error!("{e}");
                    }
                }
                tracing::info!("drained; exiting");
                std::process::exit(0);
            }
        }
    });
}
