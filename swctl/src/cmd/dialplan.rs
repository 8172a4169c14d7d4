//! `swctl dialplan check FILE|reload|show|test DEST`.
//!
//! `check` validates locally without a daemon. swctl cannot link swbd's
//! dialplan code (separate crate), so it runs `swbd --check-dialplan FILE`
//! with the swbd found next to the swctl binary, else on `PATH`, and passes its
//! `FILE:LINE:COLUMN` errors through. Without a swbd binary (or one too old
//! for the flag) it fails with exit code 2 and says what to do instead.

use std::path::{Path, PathBuf};

use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;

use super::{Kind, Targets, gather, table_width};
use crate::Error;
use crate::cli::Output;
use crate::output;
use crate::views::{self, FileErrorView};

/// Find swbd: next to this executable, then on `PATH`.
pub fn find_swbd() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("swbd")))
        .filter(|p| p.is_file());
    beside.or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("swbd"))
                .find(|p| p.is_file())
        })
    })
}

/// `swctl dialplan check FILE`.
pub fn check(file: &Path) -> Result<(), Error> {
    let Some(swbd) = find_swbd() else {
        return Err(Error::Usage(format!(
            "cannot check {} locally: no swbd binary next to swctl or on PATH \
             (install swbd here, or check on the server with `swctl dialplan reload --path FILE`)",
            file.display()
        )));
    };
    check_with(&swbd, file)
}

/// Run `swbd --check-dialplan FILE` with a given swbd.
pub fn check_with(swbd: &Path, file: &Path) -> Result<(), Error> {
    let out = std::process::Command::new(swbd)
        .arg("--check-dialplan")
        .arg(file)
        .output()
        .map_err(|e| Error::Usage(format!("cannot run {}: {e}", swbd.display())))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        println!("{}: valid", file.display());
        return Ok(());
    }
    if stderr.contains("--check-dialplan") && stderr.contains("unexpected argument") {
        return Err(Error::Usage(format!(
            "{} does not support --check-dialplan (upgrade swbd, or use `swctl dialplan reload --path FILE` on the server)",
            swbd.display()
        )));
    }
    Err(Error::InvalidFile(stderr.trim_end().to_string()))
}

/// `swctl dialplan reload [--path P]`: every swbd reloads; refused plans list errors.
pub async fn reload(t: &Targets, format: Output, path: Option<&str>) -> Result<(), Error> {
    let got = gather(t, Kind::Swbd, |ch| async move {
        SignalingAdminClient::new(ch)
            .reload_dialplan(pb::ReloadDialplanRequest {
                path: path.unwrap_or_default().to_string(),
            })
            .await
            .map(|r| r.into_inner())
    })
    .await?;
    let views: Vec<ReloadView> = got
        .iter()
        .map(|(b, r)| ReloadView {
            backend: b.label.clone(),
            applied: r.applied,
            version: r.version.clone(),
            errors: r.errors.iter().map(FileErrorView::new).collect(),
        })
        .collect();
    match format {
        Output::Json | Output::Yaml => print!("{}", output::structured(format, &views)?),
        _ => {
            for v in &views {
                if v.applied {
                    println!("{}: dialplan {} in force", v.backend, v.version);
                } else {
                    println!(
                        "{}: refused, dialplan {} still in force",
                        v.backend, v.version
                    );
                    for e in &v.errors {
                        println!("  {e}");
                    }
                }
            }
        }
    }
    if views.iter().any(|v| !v.applied) {
        return Err(Error::Daemon {
            daemon: "swbd".into(),
            message: "dialplan reload refused (errors above)".into(),
        });
    }
    Ok(())
}

/// Result of a reload on one swbd.
#[derive(Debug, serde::Serialize)]
pub struct ReloadView {
    /// Backend label.
    pub backend: String,
    /// The new plan is in force.
    pub applied: bool,
    /// Version in force.
    pub version: String,
    /// Errors of a refused plan.
    pub errors: Vec<FileErrorView>,
}

/// The dialplan in force on one swbd.
#[derive(Debug, serde::Serialize)]
pub struct DialplanView {
    /// Backend label.
    pub backend: String,
    /// Content hash.
    pub version: String,
    /// RFC 3339 UTC.
    pub loaded_at: Option<String>,
    /// Path or `embedded:NAME`.
    pub source: String,
    /// Routes in evaluation order.
    pub routes: Vec<RouteView>,
    /// The YAML as loaded.
    pub yaml: String,
}

/// One route.
#[derive(Debug, serde::Serialize)]
pub struct RouteView {
    /// Route id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Priority (lower first).
    pub priority: i32,
    /// Enabled.
    pub enabled: bool,
    /// Match summary.
    pub r#match: String,
    /// Number of actions.
    pub actions: u32,
}

/// `swctl dialplan show`.
pub async fn show(t: &Targets, format: Output) -> Result<(), Error> {
    let got = gather(t, Kind::Swbd, |ch| async move {
        SignalingAdminClient::new(ch)
            .get_dialplan(pb::GetDialplanRequest {})
            .await
            .map(|r| r.into_inner())
    })
    .await?;
    let views: Vec<DialplanView> = got
        .iter()
        .map(|(b, d)| dialplan_view(&b.label, d))
        .collect();
    print!("{}", render_show(&views, format, table_width())?);
    Ok(())
}

/// Build the view of a dialplan.
pub fn dialplan_view(backend: &str, d: &pb::Dialplan) -> DialplanView {
    DialplanView {
        backend: backend.to_string(),
        version: d.version.clone(),
        loaded_at: views::rfc3339(d.loaded_at.as_ref()),
        source: d.source.clone(),
        routes: d
            .routes
            .iter()
            .map(|r| RouteView {
                id: r.id.clone(),
                name: r.name.clone(),
                priority: r.priority,
                enabled: r.enabled,
                r#match: r.r#match.clone(),
                actions: r.actions,
            })
            .collect(),
        yaml: d.yaml.clone(),
    }
}

/// Render `dialplan show`: per backend a header line and the routes table
/// (`-o wide` adds the YAML).
pub fn render_show(views: &[DialplanView], format: Output, width: usize) -> anyhow::Result<String> {
    if matches!(format, Output::Json | Output::Yaml) {
        return output::structured(format, &views);
    }
    let wide = format == Output::Wide;
    let mut out = String::new();
    for v in views {
        let head = format!(
            "{}: dialplan {} from {} loaded {}",
            v.backend,
            v.version,
            v.source,
            v.loaded_at.as_deref().unwrap_or("-")
        );
        out.push_str(&if wide {
            head
        } else {
            output::cut(&head, width)
        });
        out.push('\n');
        let rows = v
            .routes
            .iter()
            .map(|r| {
                vec![
                    r.priority.to_string(),
                    r.id.clone(),
                    r.name.clone(),
                    if r.enabled { "yes" } else { "no" }.into(),
                    r.r#match.clone(),
                    r.actions.to_string(),
                ]
            })
            .collect::<Vec<_>>();
        out.push_str(&output::fit(
            &["PRIO", "ID", "NAME", "ENABLED", "MATCH", "ACTIONS"],
            &rows,
            (!wide).then_some(width),
        ));
        if wide {
            out.push_str("---\n");
            out.push_str(&v.yaml);
            if !v.yaml.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// Route test result of one swbd.
#[derive(Debug, serde::Serialize)]
pub struct TestView {
    /// Backend label.
    pub backend: String,
    /// A route matched.
    pub matched: bool,
    /// Route id.
    pub route_id: String,
    /// Route name.
    pub route_name: String,
    /// Actions after substitution.
    pub actions: Vec<ActionView>,
    /// Variables at routing time (sorted).
    pub variables: std::collections::BTreeMap<String, String>,
    /// Dialplan version used.
    pub dialplan_version: String,
    /// SIP status when nothing matched.
    pub no_match_status: u32,
}

/// One resolved action.
#[derive(Debug, serde::Serialize)]
pub struct ActionView {
    /// Action name.
    pub name: String,
    /// Parameters after substitution.
    pub description: String,
}

/// `swctl dialplan test DEST [--from CALLER]`.
pub async fn test(t: &Targets, format: Output, req: pb::TestRouteRequest) -> Result<(), Error> {
    let req = &req;
    let got = gather(t, Kind::Swbd, |ch| async move {
        SignalingAdminClient::new(ch)
            .test_route(req.clone())
            .await
            .map(|r| r.into_inner())
    })
    .await?;
    let views: Vec<TestView> = got.iter().map(|(b, r)| test_view(&b.label, r)).collect();
    print!("{}", render_test(&views, format, table_width())?);
    Ok(())
}

/// Build the view of a route test.
pub fn test_view(backend: &str, r: &pb::TestRouteResponse) -> TestView {
    TestView {
        backend: backend.to_string(),
        matched: r.matched,
        route_id: r.route_id.clone(),
        route_name: r.route_name.clone(),
        actions: r
            .actions
            .iter()
            .map(|a| ActionView {
                name: a.name.clone(),
                description: a.description.clone(),
            })
            .collect(),
        variables: r.variables.clone().into_iter().collect(),
        dialplan_version: r.dialplan_version.clone(),
        no_match_status: r.no_match_status,
    }
}

/// Render route tests.
pub fn render_test(views: &[TestView], format: Output, width: usize) -> anyhow::Result<String> {
    if matches!(format, Output::Json | Output::Yaml) {
        return output::structured(format, &views);
    }
    let wide = format == Output::Wide;
    let mut out = String::new();
    for v in views {
        let fit = |s: String| {
            let s = s.trim_end_matches('\n');
            let mut s = if wide {
                s.to_string()
            } else {
                output::cut(s, width)
            };
            s.push('\n');
            s
        };
        if v.matched {
            out.push_str(&fit(format!(
                "{}: route {} {}(dialplan {})\n",
                v.backend,
                v.route_id,
                if v.route_name.is_empty() {
                    String::new()
                } else {
                    format!("\"{}\" ", v.route_name)
                },
                v.dialplan_version
            )));
            let rows = v
                .actions
                .iter()
                .enumerate()
                .map(|(i, a)| vec![(i + 1).to_string(), a.name.clone(), a.description.clone()])
                .collect::<Vec<_>>();
            out.push_str(&output::fit(
                &["#", "ACTION", "WHAT"],
                &rows,
                (!wide).then_some(width),
            ));
        } else {
            out.push_str(&fit(format!(
                "{}: no route matches (a call would get {}; dialplan {})\n",
                v.backend, v.no_match_status, v.dialplan_version
            )));
        }
        if wide {
            for (k, val) in &v.variables {
                out.push_str(&format!("  ${{{k}}} = {val}\n"));
            }
        }
    }
    Ok(out)
}
