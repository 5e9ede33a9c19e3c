//! `watchfire incident ...` and `watchfire maintenance ...`: a client of a running instance's
//! incidents and maintenance API ([`crate::server::incidents`]).
//!
//! Basic auth (`--web.user`, password from `WATCHFIRE_PASSWORD`) is sent when given. Requests
//! carry a JSON body (or none), which the server's intent check accepts from a tool.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::incident::client::{ApiClient, NO_BODY};
use crate::incident::manual::{AckInput, DeclareInput, MaintenanceInput, UpdateInput};
use crate::incident::view::{IncidentView, MaintenanceView};

pub use crate::incident::client::DEFAULT_URL;

/// Where the API is and how to talk to it.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Base URL of the running watchfire (with its route prefix, if any).
    #[arg(long, default_value = DEFAULT_URL)]
    pub url: String,
    /// Basic-auth user, when the server's web config asks for one (password from the
    /// WATCHFIRE_PASSWORD environment variable).
    #[arg(long = "web.user")]
    pub user: Option<String>,
    /// The password for --web.user.
    #[arg(long, env = "WATCHFIRE_PASSWORD", hide_env_values = true, hide = true)]
    pub password: Option<String>,
    /// Print the API's JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `watchfire incident`.
#[derive(Debug, Args)]
pub struct IncidentArgs {
    /// Where the API is.
    #[command(flatten)]
    pub api: ApiArgs,
    /// What to do.
    #[command(subcommand)]
    pub action: IncidentAction,
}

/// `watchfire incident` actions.
#[derive(Debug, Subcommand)]
pub enum IncidentAction {
    /// List incidents, newest first.
    List {
        /// Only those not resolved.
        #[arg(long)]
        open: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one incident with its timeline and figures.
    Show {
        /// Incident id.
        id: i64,
    },
    /// Post an update: status, message, impact, root cause, resolution (sent to every
    /// receiver as a note).
    Update {
        /// Incident id.
        id: i64,
        /// investigating, identified, monitoring or resolved.
        #[arg(long)]
        status: Option<String>,
        /// What people are told.
        #[arg(long)]
        message: String,
        /// none, minor, major or critical.
        #[arg(long)]
        impact: Option<String>,
        /// Root cause and fix.
        #[command(flatten)]
        cause: CauseArgs,
    },
    /// Resolve an incident by hand (the RESOLVED message carries the root cause and the
    /// resolution).
    Resolve {
        /// Incident id.
        id: i64,
        /// What people are told.
        #[arg(long, default_value = "Resolved.")]
        message: String,
        /// Root cause and fix.
        #[command(flatten)]
        cause: CauseArgs,
    },
    /// Acknowledge an incident: escalation stops, and receivers are told who took it.
    /// Acknowledging twice changes nothing.
    Ack {
        /// Incident id.
        id: i64,
        /// Who acknowledges (named on the timeline and in the message).
        #[arg(long)]
        by: Option<String>,
        /// A word to add (`looking at the primary`).
        #[arg(long)]
        message: Option<String>,
    },
    /// Declare an incident by hand.
    Declare {
        /// The component (a failover group, a `component` label or a target).
        #[arg(long)]
        component: String,
        /// Title.
        #[arg(long)]
        title: String,
        /// The first update's message.
        #[arg(long)]
        message: String,
        /// none, minor, major (default) or critical.
        #[arg(long)]
        impact: Option<String>,
    },
}

/// `--root-cause` and `--resolution` of `incident update` and `incident resolve`.
#[derive(Debug, Clone, Args)]
pub struct CauseArgs {
    /// The root cause (kept on the incident; shown with it and in the RESOLVED message).
    #[arg(long)]
    pub root_cause: Option<String>,
    /// What fixed it (kept on the incident; shown with it and in the RESOLVED message).
    #[arg(long)]
    pub resolution: Option<String>,
}

/// `watchfire maintenance`.
#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    /// Where the API is.
    #[command(flatten)]
    pub api: ApiArgs,
    /// What to do.
    #[command(subcommand)]
    pub action: MaintenanceAction,
}

/// `watchfire maintenance` actions.
#[derive(Debug, Subcommand)]
pub enum MaintenanceAction {
    /// List the windows in force (config and API) with their next occurrence.
    List,
    /// Add a window.
    Add {
        /// Title.
        #[arg(long)]
        name: String,
        /// A covered target, failover group or component (repeat; none: all).
        #[arg(long = "component")]
        components: Vec<String>,
        /// Start: RFC 3339, or a local date-time read in --tz.
        #[arg(long)]
        start: String,
        /// End (or --duration).
        #[arg(long)]
        end: Option<String>,
        /// Length, such as 1h30m (or --end).
        #[arg(long)]
        duration: Option<String>,
        /// Recurrence: day, week, N days, N weeks, monday,thursday.
        #[arg(long)]
        every: Option<String>,
        /// IANA time zone (default UTC).
        #[arg(long)]
        tz: Option<String>,
    },
    /// Delete a window made through the API.
    Delete {
        /// Window id.
        id: i64,
    },
}

fn client(api: &ApiArgs) -> anyhow::Result<ApiClient> {
    Ok(ApiClient::new(
        &api.url,
        api.user.clone(),
        api.password.clone(),
    )?)
}

/// Runs `watchfire incident ...`.
pub async fn run_incident(a: IncidentArgs) -> anyhow::Result<ExitCode> {
    let json = a.api.json;
    let c = client(&a.api)?;
    let post = reqwest::Method::POST;
    let (out, raw): (Vec<IncidentView>, String) = match a.action {
        IncidentAction::List { open, limit } => {
            let path = format!("/api/v1/incidents?open={open}&limit={limit}");
            let (v, raw): (Vec<IncidentView>, _) =
                c.call(reqwest::Method::GET, &path, NO_BODY).await?;
            if !json {
                if v.is_empty() {
                    println!("no incidents");
                }
                for i in &v {
                    println!("{}", i.line());
                }
                return Ok(ExitCode::SUCCESS);
            }
            (v, raw)
        }
        IncidentAction::Show { id } => {
            let path = format!("/api/v1/incidents/{id}");
            let (v, raw) = c.call(reqwest::Method::GET, &path, NO_BODY).await?;
            (vec![v], raw)
        }
        IncidentAction::Update {
            id,
            status,
            message,
            impact,
            cause,
        } => {
            let body = UpdateInput {
                status,
                message,
                impact,
                root_cause: cause.root_cause,
                resolution: cause.resolution,
            };
            let path = format!("/api/v1/incidents/{id}/updates");
            let (v, raw) = c.call(post, &path, Some(&body)).await?;
            (vec![v], raw)
        }
        IncidentAction::Resolve { id, message, cause } => {
            let body = UpdateInput {
                status: Some("resolved".into()),
                message,
                impact: None,
                root_cause: cause.root_cause,
                resolution: cause.resolution,
            };
            let path = format!("/api/v1/incidents/{id}/updates");
            let (v, raw) = c.call(post, &path, Some(&body)).await?;
            (vec![v], raw)
        }
        IncidentAction::Ack { id, by, message } => {
            let body = AckInput { by, message };
            let path = format!("/api/v1/incidents/{id}/ack");
            let (v, raw) = c.call(post, &path, Some(&body)).await?;
            (vec![v], raw)
        }
        IncidentAction::Declare {
            component,
            title,
            message,
            impact,
        } => {
            let body = DeclareInput {
                component,
                title,
                message,
                impact,
                status: None,
            };
            let (v, raw) = c.call(post, "/api/v1/incidents", Some(&body)).await?;
            (vec![v], raw)
        }
    };
    if json {
        println!("{}", raw.trim_end());
    } else {
        for i in &out {
            print!("{}", i.render());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `watchfire maintenance ...`.
pub async fn run_maintenance(a: MaintenanceArgs) -> anyhow::Result<ExitCode> {
    let json = a.api.json;
    let c = client(&a.api)?;
    let (views, raw): (Vec<MaintenanceView>, String) = match a.action {
        MaintenanceAction::List => {
            c.call(reqwest::Method::GET, "/api/v1/maintenance", NO_BODY)
                .await?
        }
        MaintenanceAction::Add {
            name,
            components,
            start,
            end,
            duration,
            every,
            tz,
        } => {
            let body = MaintenanceInput {
                name,
                components,
                start,
                end,
                duration,
                every,
                tz,
            };
            let (v, raw) = c
                .call(reqwest::Method::POST, "/api/v1/maintenance", Some(&body))
                .await?;
            (vec![v], raw)
        }
        MaintenanceAction::Delete { id } => {
            let path = format!("/api/v1/maintenance/{id}");
            let (_, raw): (serde_json::Value, _) =
                c.call(reqwest::Method::DELETE, &path, NO_BODY).await?;
            if json {
                println!("{}", raw.trim_end());
            } else {
                println!("deleted maintenance window {id}");
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if json {
        println!("{}", raw.trim_end());
    } else if views.is_empty() {
        println!("no maintenance windows");
    } else {
        for v in &views {
            println!("{}", v.line());
        }
    }
    Ok(ExitCode::SUCCESS)
}
