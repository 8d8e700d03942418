//! `ws-gateway`: load settings, start telemetry, build the app, run until SIGINT/SIGTERM.

use std::process::ExitCode;

use ws_gateway::{
    app::App,
    config::{self, Settings},
    shutdown, telemetry,
};

/// jemalloc instead of glibc's malloc: every event allocates its envelope, strings and AMQP
/// frames on one thread and frees them on the publisher's, which glibc pays for in arena
/// consolidation (about a seventh of the gateway's CPU at full rate, by `perf`). mimalloc was
/// as fast but peaked 20 MiB higher at full rate.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // async-tungstenite builds its TLS config without naming a provider; pick ring once.
    let _ = rustls::crypto::ring::default_provider().install_default();

    // `ws-gateway --export-openapi <path>`: write the OpenAPI document and exit (no settings).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--export-openapi") {
        return match ws_gateway::api::export_openapi(args.get(2).map(String::as_str)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("ws-gateway: --export-openapi <path>: {error}");
                ExitCode::from(2)
            }
        };
    }

    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("ws-gateway: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_tracing(&settings.log, &settings.service_name);
    let signal = shutdown::signal();

    // Startup errors can quote a URL (the database driver does); never log its password.
    let secrets: Vec<String> = {
        use secrecy::ExposeSecret;
        let mut s = config::url_passwords(settings.database_url.expose_secret());
        if let Some(amqp) = &settings.amqp_url {
            s.extend(config::url_passwords(amqp.expose_secret()));
        }
        s
    };
    let app = match App::build(settings).await {
        Ok(app) => app,
        Err(error) => {
            let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
            let error = config::redact(&format!("{error:#}"), &secrets);
            tracing::error!(error, "Startup failed.");
            return ExitCode::FAILURE;
        }
    };
    let stop = app.shutdown_token();
    tokio::spawn(async move {
        signal.await;
        stop.cancel();
    });
    match app.run().await {
        Ok(()) => ExitCode::SUCCESS,
        // Logged once (at ERROR) where it was found.
        Err(error) if error.downcast_ref::<shutdown::ConfigFailure>().is_some() => {
            tracing::info!("Stopped on a configuration error (exit code 2).");
            ExitCode::from(2)
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "Exited with failure.");
            ExitCode::FAILURE
        }
    }
}
