//! The `vigil` command: serve, migrate, tenant administration, traffic (simulate, replay) and the
//! container's health probe.

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use vigil::api::auth;
use vigil::app::App;
use vigil::config::{Config, read_secret_file};
use vigil::dashboard::users::{self, Role};
use vigil::event::TenantId;
use vigil::policy::Mode;
use vigil::store;

/// mimalloc, not the system allocator: events are allocated where they are read or parsed and
/// freed on other threads (restore's fold threads, the shard workers), and glibc's arenas
/// serialise such frees on a lock. In a take-over's restore that was a third of the time
/// (`perf record`: malloc, free and the futex waits of its arena lock).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Rotates the credentials of AI agents that break from their tenant's normal."
)]
struct Cli {
    /// TOML configuration file; VIGIL_* environment variables override it.
    #[arg(long, global = true, env = "VIGIL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API, the shard workers and the rotation worker until SIGTERM/SIGINT.
    Serve {
        /// Print the effective configuration (secrets masked) and exit.
        #[arg(long)]
        print_config: bool,
    },
    /// Apply database migrations, then exit.
    Migrate,
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Exercise a running Vigil with days of simulated tenants' traffic and attacks; report what it caught.
    Simulate(vigil::simulate::SimulateArgs),
    /// Post a JSONL file of events (one per line) for one tenant.
    Replay(vigil::simulate::replay::ReplayArgs),
    /// Export a tenant's learned baseline as TOML for review, or import a reviewed one.
    Baseline {
        #[command(subcommand)]
        command: BaselineCommand,
    },
    /// Manage dashboard users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Probe a running Vigil's /healthz: exit 0 on a 2xx within 2 s, else 1 (the Docker HEALTHCHECK;
    /// the slim image has no curl).
    Healthcheck {
        /// The health endpoint to GET.
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
}

/// How long `vigil healthcheck` waits for the whole answer.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// GETs `url`; Ok only for a 2xx answer that arrives within `timeout`.
async fn healthcheck(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("Failed to build the HTTP client")?;
    let response = client.get(url).send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "GET {url}: {status}");
    Ok(())
}

#[derive(Subcommand)]
enum BaselineCommand {
    /// Write the tenant's baseline (`GET /v1/tenants/{id}/baseline`) as TOML.
    Export(vigil::review::ExportArgs),
    /// Replace the tenant's learned baseline with a reviewed file (`PUT /v1/tenants/{id}/baseline`).
    Import(vigil::review::ImportArgs),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a dashboard user; the password is read from the first line of standard input.
    Add {
        name: String,
        /// viewer (reads), responder (acts on incidents and rotations) or admin.
        #[arg(long)]
        role: String,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its ingest token (shown this once).
    Create {
        id: String,
        /// A string identifying this tenant's resources (repeatable); the id always is one.
        #[arg(long = "marker")]
        markers: Vec<String>,
        #[arg(long)]
        display_name: Option<String>,
        /// observe, alert or rotate.
        #[arg(long, default_value = "rotate")]
        mode: String,
    },
}

fn init_logging() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// A client command's token: given by its flag or `name` (clap reads both), or in the file
/// `<name>_FILE` names (trailing newline trimmed); both is an error. `None`: neither.
fn token_arg(
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
    name: &str,
    given: Option<String>,
) -> anyhow::Result<Option<String>> {
    let file_var = format!("{name}_FILE");
    match (given.filter(|t| !t.is_empty()), env(&file_var)) {
        (Some(_), Some(_)) => anyhow::bail!("{name} (or its flag) and {file_var} are both set: set one of them"),
        (Some(token), None) => Ok(Some(token)),
        (None, Some(path)) => Ok(Some(
            read_secret_file(&file_var, std::path::Path::new(&path))?
                .expose_secret()
                .to_owned(),
        )),
        (None, None) => Ok(None),
    }
}

/// As [`token_arg`], for a command that cannot go without the token.
fn required_token(name: &str, flag: &str, given: String) -> anyhow::Result<String> {
    token_arg(|v| std::env::var_os(v), name, Some(given))?
        .ok_or_else(|| anyhow::anyhow!("{flag}, {name} or {name}_FILE is required"))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // The traffic commands are HTTP clients of a running Vigil: they need none of its configuration.
    let command = match cli.command {
        Command::Simulate(mut args) => {
            args.admin_token = token_arg(|v| std::env::var_os(v), "VIGIL_ADMIN_TOKEN", args.admin_token)?;
            return vigil::simulate::simulate_command(args).await;
        }
        Command::Replay(mut args) => {
            args.token = required_token("VIGIL_INGEST_TOKEN", "--token", args.token)?;
            return vigil::simulate::replay::replay_command(args).await;
        }
        Command::Baseline {
            command: BaselineCommand::Export(mut args),
        } => {
            args.vigil.admin_token = required_token("VIGIL_ADMIN_TOKEN", "--admin-token", args.vigil.admin_token)?;
            return vigil::review::export_command(args).await;
        }
        Command::Baseline {
            command: BaselineCommand::Import(mut args),
        } => {
            args.vigil.admin_token = required_token("VIGIL_ADMIN_TOKEN", "--admin-token", args.vigil.admin_token)?;
            return vigil::review::import_command(args).await;
        }
        Command::Healthcheck { url } => return healthcheck(&url, HEALTHCHECK_TIMEOUT).await,
        command => command,
    };
    let config = Config::load(cli.config.as_deref())?;
    match command {
        Command::Serve { print_config: true } => {
            print!("{}", config.masked());
            Ok(())
        }
        Command::Serve { print_config: false } => App::build(config).await?.run_until_stopped(shutdown_signal()).await,
        Command::Migrate => {
            let pool = store::connect(&config.database_url, config.database_timeout).await?;
            store::MIGRATOR.run(&pool).await.context("Failed to apply migrations")?;
            tracing::info!("Migrations applied");
            Ok(())
        }
        Command::Tenant {
            command:
                TenantCommand::Create {
                    id,
                    markers,
                    display_name,
                    mode,
                },
        } => {
            let id = TenantId::parse(&id).map_err(|e| anyhow::anyhow!("tenant id {id:?}: {}", e.message))?;
            let mode = Mode::parse(&mode).ok_or_else(|| anyhow::anyhow!("--mode must be observe, alert or rotate"))?;
            let pool = store::connect(&config.database_url, config.database_timeout).await?;
            let display_name = display_name.unwrap_or_else(|| id.to_string());
            let (outcome, token) =
                auth::create_tenant(&pool, &id, &display_name, &markers, mode, &store::audit::Actor::Cli).await?;
            match outcome {
                store::tenants::CreateOutcome::Created(_) => {
                    println!("{token}");
                    eprintln!("Created tenant {id}. The ingest token above is shown once; store it now.");
                    Ok(())
                }
                store::tenants::CreateOutcome::AlreadyExists => anyhow::bail!("tenant {id} already exists"),
            }
        }
        Command::User {
            command: UserCommand::Add { name, role },
        } => {
            let role =
                Role::parse(&role).ok_or_else(|| anyhow::anyhow!("--role must be viewer, responder or admin"))?;
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("Failed to read the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let pool = store::connect(&config.database_url, config.database_timeout).await?;
            users::add(&pool, &name, role, password).await?;
            eprintln!("Added {} {name}.", role.as_str());
            Ok(())
        }
        Command::Simulate(_) | Command::Replay(_) | Command::Baseline { .. } | Command::Healthcheck { .. } => {
            unreachable!("handled before the configuration is loaded")
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "vigil failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::get;

    /// A server on a random local port answering `/healthz` with `status`, or never answering.
    async fn serve(status: Option<StatusCode>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/healthz", listener.local_addr().unwrap());
        let router = axum::Router::new().route(
            "/healthz",
            get(move || async move {
                match status {
                    Some(status) => status,
                    None => std::future::pending().await,
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        url
    }

    #[test]
    fn a_client_commands_token_comes_from_its_flag_its_variable_or_a_file() {
        let path = std::env::temp_dir().join(format!("vigil-token-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, "vgl_from_file\n").unwrap();
        let with_file = |v: &str| (v == "VIGIL_INGEST_TOKEN_FILE").then(|| path.clone().into_os_string());
        let none = |_: &str| None;
        assert_eq!(
            token_arg(with_file, "VIGIL_INGEST_TOKEN", None).unwrap().as_deref(),
            Some("vgl_from_file")
        );
        assert_eq!(
            token_arg(with_file, "VIGIL_INGEST_TOKEN", Some(String::new()))
                .unwrap()
                .as_deref(),
            Some("vgl_from_file"),
            "an empty flag is no flag"
        );
        assert_eq!(
            token_arg(none, "VIGIL_INGEST_TOKEN", Some("vgl_given".into()))
                .unwrap()
                .as_deref(),
            Some("vgl_given")
        );
        assert_eq!(token_arg(none, "VIGIL_INGEST_TOKEN", None).unwrap(), None);
        let err = token_arg(with_file, "VIGIL_INGEST_TOKEN", Some("vgl_given".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "VIGIL_INGEST_TOKEN (or its flag) and VIGIL_INGEST_TOKEN_FILE are both set: set one of them"
        );
        std::fs::remove_file(&path).unwrap();
        let err = token_arg(with_file, "VIGIL_INGEST_TOKEN", None).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("VIGIL_INGEST_TOKEN_FILE: cannot read"),
            "{err:#}"
        );
    }

    #[tokio::test]
    async fn healthcheck_passes_only_on_a_timely_2xx() {
        healthcheck(&serve(Some(StatusCode::OK)).await, HEALTHCHECK_TIMEOUT)
            .await
            .unwrap();

        let url = serve(Some(StatusCode::SERVICE_UNAVAILABLE)).await;
        let err = healthcheck(&url, HEALTHCHECK_TIMEOUT).await.unwrap_err();
        assert!(format!("{err:#}").contains("503"), "{err:#}");

        let url = serve(None).await;
        let started = std::time::Instant::now();
        let err = healthcheck(&url, Duration::from_millis(200)).await.unwrap_err();
        let timed_out = err.chain().any(|e| {
            e.downcast_ref::<reqwest::Error>()
                .is_some_and(reqwest::Error::is_timeout)
        });
        assert!(timed_out && started.elapsed() < HEALTHCHECK_TIMEOUT, "{err:#}");

        // Nothing listens on the port of a listener that was just dropped.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        healthcheck(&format!("http://{closed}/healthz"), HEALTHCHECK_TIMEOUT)
            .await
            .unwrap_err();
    }
}
