//! `swctl dialplan check FILE|reload|show|test DEST`.
//!
//! `check` sends the file to swbd (`LoadDialplan` without applying it), so
//! it is validated against that daemon's own config: its gateways and its
//! audio directory, the same checks a reload makes. With no swbd to ask (or
//! one too old for the RPC) it validates locally: swctl cannot link swbd's
//! dialplan code (separate crate), so it runs `swbd --check-dialplan FILE`
//! with the swbd found next to the swctl binary, else on `PATH`, and passes
//! its `FILE:LINE:COLUMN` errors through. Without a swbd binary either it
//! fails with exit code 2 and says what to do instead.
//!
//! `reload --path P` reads P here, on the operator's machine, and sends its
//! content: a relative path means what it means in the operator's shell. A
//! path that does not exist here but is absolute names a file on the swbd
//! host (as before).

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

/// `swctl dialplan check FILE`: on swbd when one answers, else locally.
/// `explicit`: the operator named the daemons (`--host`, `--context`), so
/// not reaching them is an error rather than a reason to check locally.
pub async fn check(t: Result<Targets, Error>, explicit: bool, file: &Path) -> Result<(), Error> {
    let yaml = std::fs::read_to_string(file)
        .map_err(|e| Error::InvalidFile(format!("{}: {e}", file.display())))?;
    let name = file.display().to_string();
    let remote = match t {
        Ok(t) => load_remote(&t, &name, &yaml, false).await,
        Err(e) => Err(e),
    };
    match remote {
        Ok(Some(views)) => {
            let mut failed = Vec::new();
            for v in &views {
                if v.errors.is_empty() {
                    println!("{name}: valid (checked by swbd {})", v.backend);
                } else {
                    failed.extend(v.errors.iter().map(|e| e.to_string()));
                }
            }
            if failed.is_empty() {
                Ok(())
            } else {
                failed.dedup();
                Err(Error::InvalidFile(failed.join("\n")))
            }
        }
        Ok(None) => check_locally(file),
        Err(Error::Connect(_)) if !explicit => check_locally(file),
        Err(e) => Err(e),
    }
}

/// Send `yaml` to every swbd (`LoadDialplan`). `Ok(None)`: a daemon does
/// not offer the RPC (an older swbd).
async fn load_remote(
    t: &Targets,
    name: &str,
    yaml: &str,
    apply: bool,
) -> Result<Option<Vec<ReloadView>>, Error> {
    let got = gather(t, Kind::Swbd, |ch| async move {
        match SignalingAdminClient::new(ch)
            .load_dialplan(pb::LoadDialplanRequest {
                name: name.to_string(),
                yaml: yaml.to_string(),
                apply,
            })
            .await
        {
            Ok(r) => Ok(Some(r.into_inner())),
            Err(st) if st.code() == tonic::Code::Unimplemented => Ok(None),
            Err(st) => Err(st),
        }
    })
    .await?;
    let mut views = Vec::new();
    for (b, r) in got {
        let Some(r) = r else { return Ok(None) };
        views.push(reload_view(&b.label, &r));
    }
    Ok(Some(views))
}

fn reload_view(backend: &str, r: &pb::ReloadDialplanResponse) -> ReloadView {
    ReloadView {
        backend: backend.to_string(),
        applied: r.applied,
        version: r.version.clone(),
        errors: r.errors.iter().map(FileErrorView::new).collect(),
    }
}

/// `swctl dialplan check FILE` without a daemon.
pub fn check_locally(file: &Path) -> Result<(), Error> {
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
    // A file here is read here and sent; a path that is not here must be
    // absolute to mean a file on the swbd host.
    let mut server_path = path.unwrap_or_default().to_string();
    let mut views = None;
    if let Some(p) = path {
        let local = Path::new(p);
        if local.is_file() {
            let yaml = std::fs::read_to_string(local)
                .map_err(|e| Error::InvalidFile(format!("{p}: {e}")))?;
            views = load_remote(t, p, &yaml, true).await?;
            if views.is_none() {
                if !local.is_absolute() {
                    return Err(Error::Usage(format!(
                        "this swbd cannot take an uploaded dialplan (upgrade it), and {p} is \
                         relative: give the absolute path of the file on the swbd host"
                    )));
                }
                eprintln!(
                    "swctl: warning: this swbd cannot take an uploaded dialplan; \
                     asking it to read {p} on its own host"
                );
            }
        } else if !local.is_absolute() {
            return Err(Error::InvalidFile(format!(
                "{p}: no such file here (a file on the swbd host needs an absolute path)"
            )));
        }
    } else {
        server_path.clear();
    }
    let views: Vec<ReloadView> = match views {
        Some(v) => v,
        None => gather(t, Kind::Swbd, |ch| {
            let path = server_path.clone();
            async move {
                SignalingAdminClient::new(ch)
                    .reload_dialplan(pb::ReloadDialplanRequest { path })
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await?
        .iter()
        .map(|(b, r)| reload_view(&b.label, r))
        .collect(),
    };
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
