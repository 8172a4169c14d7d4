//! A loaded, validated dialplan: compiled routes in evaluation order plus
//! the index that finds the first matching one.
//!
//! Loading is parse (the [`fast_path`](super::fast_path) reader, or serde
//! when it declines, which stops at the first syntax or unknown-key error)
//! then validate (every semantic error in the file is collected) then
//! index. Nothing half-loaded ever escapes: it is all or nothing.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use switchboard_proto::support::yaml::{self, FileError};

use super::error::Error;
use super::file::{DialplanFile, OnFailure, Redirect};
use super::index::RouteIndex;
use super::pattern::{AnchoredRegex, Cidr, Glob};
use super::template::{Template, Variables, escape_reason, escape_sip_user};
use super::transfer::TransferPolicy;
use crate::config::Config;

mod read;
mod validate;

pub use read::{MAX_READ_DIGITS, Read, ReadRequest};
use validate::Validator;

/// The embedded default dialplan.
pub const DEFAULT_YAML: &str = include_str!("../../../dialplans/default.yaml");

/// How the embedded default is named in errors, events and admin.
pub const DEFAULT_SOURCE: &str = "embedded:default.yaml";

/// Ring timeout when a `dial` gives none.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the loader checks against, outside the file itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DialplanContext {
    /// Names usable in `gateway/NAME`.
    pub gateways: Vec<String>,
    /// Where playback files must exist; `None` skips that check.
    pub audio_dir: Option<PathBuf>,
}

impl DialplanContext {
    /// Gateways and audio directory from the swbd config.
    pub fn from_config(config: &Config) -> Self {
        Self {
            gateways: config.gateways.iter().map(|g| g.name.clone()).collect(),
            audio_dir: config.dialplan.audio_dir.clone(),
        }
    }
}

/// Identity of a loaded plan: content hash and load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// First 12 hex digits of the SHA-256 of the YAML text.
    pub hash: String,
    /// When it was loaded.
    pub loaded_at: SystemTime,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hash)
    }
}

/// What `--check-dialplan` prints for a good file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Source name.
    pub source: String,
    /// Content hash.
    pub version: String,
    /// Routes in the file.
    pub routes: usize,
    /// Routes that can match.
    pub enabled: usize,
    /// Things that were not checked, and why.
    pub notes: Vec<String>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: OK, version {}, {} routes ({} enabled)",
            self.source, self.version, self.routes, self.enabled
        )?;
        for n in &self.notes {
            write!(f, "\n  note: {n}")?;
        }
        Ok(())
    }
}

/// The SIP response for calls no route takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoMatch {
    /// Status code.
    pub code: u16,
    /// Reason phrase.
    pub reason: String,
}

/// The destination condition.
#[derive(Debug, Clone)]
pub enum DestinationPattern {
    /// No condition.
    Any,
    /// A glob.
    Glob(Glob),
    /// An anchored regex (captures become variables).
    Regex(AnchoredRegex),
}

/// All conditions of a route.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// Request-URI user part.
    pub destination: DestinationPattern,
    /// From user part.
    pub caller: Option<Glob>,
    /// Request domain (case-insensitive).
    pub domain: Option<Glob>,
    /// From domain (case-insensitive).
    pub from_domain: Option<Glob>,
    /// Source networks (any of).
    pub sources: Vec<Cidr>,
}

impl RouteMatch {
    /// Check the non-destination conditions.
    pub(crate) fn others_hold(&self, call: &CallInfo) -> bool {
        if let Some(g) = &self.caller
            && !g.is_match(&call.caller)
        {
            return false;
        }
        if let Some(g) = &self.domain
            && !g.is_match(&call.domain)
        {
            return false;
        }
        if let Some(g) = &self.from_domain
            && !g.is_match(&call.from_domain)
        {
            return false;
        }
        if !self.sources.is_empty() {
            match call.source_ip {
                Some(ip) => self.sources.iter().any(|c| c.contains(ip)),
                None => false,
            }
        } else {
            true
        }
    }

    /// Check every condition; the captures of a regex destination on success.
    pub(crate) fn check(
        &self,
        call: &CallInfo,
        destination_known: bool,
    ) -> Option<Vec<(String, String)>> {
        if !self.others_hold(call) {
            return None;
        }
        match &self.destination {
            DestinationPattern::Any => Some(Vec::new()),
            DestinationPattern::Glob(_) if destination_known => Some(Vec::new()),
            DestinationPattern::Glob(g) => g.is_match(&call.destination).then(Vec::new),
            DestinationPattern::Regex(r) => r.captures(&call.destination),
        }
    }
}

impl fmt::Display for RouteMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.destination {
            DestinationPattern::Any => f.write_str("destination any")?,
            DestinationPattern::Glob(g) => write!(f, "destination {}", g.as_str())?,
            DestinationPattern::Regex(r) => write!(f, "destination /{}/", r.as_str())?,
        }
        match &self.caller {
            Some(g) => write!(f, " from {}", g.as_str())?,
            None => f.write_str(" from any")?,
        }
        if let Some(g) = &self.domain {
            write!(f, " domain {}", g.as_str())?;
        }
        if let Some(g) = &self.from_domain {
            write!(f, " from-domain {}", g.as_str())?;
        }
        if !self.sources.is_empty() {
            let s: Vec<String> = self.sources.iter().map(ToString::to_string).collect();
            write!(f, " source {}", s.join(","))?;
        }
        Ok(())
    }
}

/// A dial target with its variables still to substitute.
#[derive(Debug, Clone)]
pub enum TargetTemplate {
    /// `user/NAME`: a registered user.
    User(Template),
    /// `sip:URI` / `sips:URI`.
    Uri(Template),
    /// `gateway/NAME[/USER]`; USER defaults to `${destination}`.
    Gateway {
        /// Configured gateway name.
        name: String,
        /// User part to send to the gateway.
        user: Template,
    },
}

/// A resolved dial target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A user registered with our registrar.
    User(String),
    /// A SIP URI to call directly.
    Uri(String),
    /// A configured trunk.
    Gateway {
        /// Gateway name (config `gateways[].name`).
        name: String,
        /// User part of the Request-URI to send.
        user: String,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::User(u) => write!(f, "user/{u}"),
            Target::Uri(u) => f.write_str(u),
            Target::Gateway { name, user } => write!(f, "gateway/{name}/{user}"),
        }
    }
}

impl TargetTemplate {
    fn parse(text: &str, ctx: &DialplanContext) -> Result<Self, Error> {
        let bad = |reason: &str| Error::BadTarget {
            target: text.to_string(),
            reason: reason.to_string(),
        };
        if let Some(user) = text.strip_prefix("user/") {
            if user.is_empty() {
                return Err(bad("the user name is empty"));
            }
            Ok(Self::User(Template::parse(user)?))
        } else if text.starts_with("sip:") || text.starts_with("sips:") {
            if text.len() <= "sips:".len() {
                return Err(bad("the URI is empty"));
            }
            Ok(Self::Uri(Template::parse(text)?))
        } else if let Some(rest) = text.strip_prefix("gateway/") {
            let (name, user) = match rest.split_once('/') {
                Some((n, u)) => (n, Some(u)),
                None => (rest, None),
            };
            if name.is_empty() {
                return Err(bad("the gateway name is empty"));
            }
            if name.contains('$') {
                return Err(bad(
                    "the gateway name must be literal (it is checked at load)",
                ));
            }
            if !ctx.gateways.iter().any(|g| g == name) {
                return Err(Error::UnknownGateway {
                    name: name.to_string(),
                    known: ctx.gateways.clone(),
                });
            }
            let user = match user {
                Some("") => return Err(bad("the user after the gateway name is empty")),
                Some(u) => Template::parse(u)?,
                None => Template::parse("${destination}")?,
            };
            Ok(Self::Gateway {
                name: name.to_string(),
                user,
            })
        } else {
            Err(bad("unknown kind of target"))
        }
    }

    fn templates(&self) -> impl Iterator<Item = &Template> {
        match self {
            TargetTemplate::User(t) | TargetTemplate::Uri(t) => std::iter::once(t),
            TargetTemplate::Gateway { user, .. } => std::iter::once(user),
        }
    }

    /// Substitute variables. Values are escaped for a SIP user part, so a
    /// caller-chosen destination cannot add `@host`, parameters or header
    /// lines to the URI.
    pub fn resolve(&self, vars: &Variables) -> Target {
        match self {
            TargetTemplate::User(t) => Target::User(t.render_escaped(vars, escape_sip_user)),
            TargetTemplate::Uri(t) => Target::Uri(t.render_escaped(vars, escape_sip_user)),
            TargetTemplate::Gateway { name, user } => Target::Gateway {
                name: name.clone(),
                user: user.render_escaped(vars, escape_sip_user),
            },
        }
    }
}

/// A compiled action.
#[derive(Debug, Clone)]
pub enum Action {
    /// Answer the call.
    Answer,
    /// Play a file (relative to the media nodes' audio directory).
    Playback {
        /// File.
        file: Template,
        /// Repeat until the caller hangs up.
        looped: bool,
    },
    /// Ring targets in parallel.
    Dial {
        /// Targets.
        targets: Vec<TargetTemplate>,
        /// Ring timeout.
        timeout: Duration,
        /// Next action or stop when nobody answers.
        on_failure: OnFailure,
        /// Follow a B-leg's 3xx or pass it to the caller.
        redirect: Redirect,
    },
    /// End the call.
    Hangup {
        /// SIP status.
        code: u16,
        /// Reason phrase.
        reason: Template,
    },
    /// Wait.
    Sleep(Duration),
    /// Set variables, in order.
    Set(Vec<(String, Template)>),
    /// Collect DTMF digits into a variable.
    Read(Read),
}

impl Action {
    /// The action's YAML name.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Answer => "answer",
            Action::Playback { .. } => "playback",
            Action::Dial { .. } => "dial",
            Action::Hangup { .. } => "hangup",
            Action::Sleep(_) => "sleep",
            Action::Set(_) => "set",
            Action::Read(_) => "read",
        }
    }

    /// One line, variables substituted.
    pub fn describe(&self, vars: &Variables) -> String {
        match self {
            Action::Answer => "answer".into(),
            Action::Playback { file, looped } => {
                let f = file.render(vars);
                if *looped { format!("{f} (loop)") } else { f }
            }
            Action::Dial {
                targets,
                timeout,
                on_failure,
                redirect,
            } => {
                let t: Vec<String> = targets
                    .iter()
                    .map(|t| t.resolve(vars).to_string())
                    .collect();
                let mode = if t.len() > 1 { " in parallel" } else { "" };
                let next = match on_failure {
                    OnFailure::Next => "next action",
                    OnFailure::Stop => "stop",
                };
                let redirect = match redirect {
                    Redirect::Follow => "",
                    Redirect::Pass => ", redirects passed to the caller",
                };
                format!(
                    "{}{mode}, timeout {}, on failure {next}{redirect}",
                    t.join(", "),
                    super::file::DurationValue(*timeout)
                )
            }
            Action::Hangup { code, reason } => {
                format!("{code} {}", reason.render_escaped(vars, escape_reason))
            }
            Action::Sleep(d) => super::file::DurationValue(*d).to_string(),
            Action::Set(pairs) => {
                let mut scratch = vars.clone();
                let mut out = Vec::new();
                for (k, v) in pairs {
                    let value = v.render(&scratch);
                    out.push(format!("{k}={value}"));
                    scratch.insert(k.clone(), value);
                }
                out.join(", ")
            }
            Action::Read(r) => r.describe(vars),
        }
    }
}

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique id.
    pub id: String,
    /// Human name.
    pub name: Option<String>,
    /// Lower first.
    pub priority: i32,
    /// Whether it can match.
    pub enabled: bool,
    /// Line of the id in the file.
    pub line: u32,
    /// Conditions.
    pub matcher: RouteMatch,
    /// Actions, in order.
    pub actions: Vec<Action>,
    /// Who may transfer a call on this route, and where to (`transfer:`).
    pub transfer: TransferPolicy,
    /// The context it belongs to (`context:`); `None`: the default one.
    pub context: Option<String>,
}

/// What routing looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    /// Request-URI user part, unescaped (`%XX` decoded): dial targets
    /// escape variable values again when they build URIs.
    pub destination: String,
    /// From user part, unescaped.
    pub caller: String,
    /// Request domain (Request-URI / To host).
    pub domain: String,
    /// From domain (the caller's host).
    pub from_domain: String,
    /// Source address of the INVITE.
    pub source_ip: Option<IpAddr>,
}

impl CallInfo {
    /// The built-in variables of this call.
    pub fn variables(&self) -> Variables {
        let mut v = Variables::new();
        v.insert("destination".into(), self.destination.clone());
        v.insert("caller".into(), self.caller.clone());
        v.insert("domain".into(), self.domain.clone());
        v.insert("from_domain".into(), self.from_domain.clone());
        v.insert(
            "source_ip".into(),
            self.source_ip.map(|i| i.to_string()).unwrap_or_default(),
        );
        v
    }
}

/// The route a call takes, with its variables.
#[derive(Debug, Clone)]
pub struct Routed<'a> {
    /// The route.
    pub route: &'a Route,
    /// Built-ins plus regex captures (not yet the `set` ones).
    pub variables: Variables,
}

/// A loaded, validated dialplan. Immutable: a reload builds a new one.
#[derive(Debug)]
pub struct Dialplan {
    version: Version,
    source: String,
    yaml: String,
    no_match: NoMatch,
    /// Evaluation order: priority, then file order.
    routes: Vec<Route>,
    index: RouteIndex,
    /// One index per named context (`context:` routes), for transfers.
    contexts: HashMap<String, RouteIndex>,
    notes: Vec<String>,
}

impl Dialplan {
    /// Load, validate and index `yaml`, named `source` in errors.
    ///
    /// Files in the YAML subset of [`fast_path`](super::fast_path) (the
    /// usual block/flow style, no anchors, tags or block scalars) are read
    /// by it; anything else goes through serde-saphyr, with the same result
    /// and the same errors.
    pub fn parse(source: &str, yaml: &str, ctx: &DialplanContext) -> Result<Self, Vec<FileError>> {
        if let Some(done) = Self::parse_fast(source, yaml, ctx) {
            return done;
        }
        Self::parse_sequential(source, yaml, ctx)
    }

    /// [`parse`](Self::parse) through the [`fast_path`](super::fast_path)
    /// reader only; `None` when it declines the file (then only
    /// serde-saphyr gives the right result or error).
    pub fn parse_fast(
        source: &str,
        yaml: &str,
        ctx: &DialplanContext,
    ) -> Option<Result<Self, Vec<FileError>>> {
        let file = super::fast_path::parse(yaml)?;
        Some(Self::compile(source, yaml, file, ctx))
    }

    /// [`parse`](Self::parse) through serde-saphyr only, without the fast
    /// path: the reference the fast path is tested against.
    pub fn parse_sequential(
        source: &str,
        yaml: &str,
        ctx: &DialplanContext,
    ) -> Result<Self, Vec<FileError>> {
        if yaml.trim().is_empty() {
            return Err(vec![FileError::at(
                source,
                1,
                1,
                "the file is empty (expected `version: 1` and a `routes:` list)",
            )]);
        }
        let file: DialplanFile = yaml::from_str(source, yaml).map_err(|e| vec![explain(e)])?;
        Self::compile(source, yaml, file, ctx)
    }

    fn compile(
        source: &str,
        yaml: &str,
        file: DialplanFile,
        ctx: &DialplanContext,
    ) -> Result<Self, Vec<FileError>> {
        let mut v = Validator {
            source,
            ctx,
            errors: Vec::new(),
            contexts: BTreeSet::new(),
            context_refs: Vec::new(),
        };
        let (no_match, mut routes) = v.file(file);
        if !v.errors.is_empty() {
            return Err(v.errors);
        }
        // Stable: equal priorities keep file order.
        routes.sort_by_key(|r| r.priority);
        let index = RouteIndex::build(&routes);
        let contexts = v
            .contexts
            .iter()
            .map(|c| (c.clone(), RouteIndex::build_context(&routes, Some(c))))
            .collect();
        let mut notes = Vec::new();
        if ctx.audio_dir.is_none() {
            notes.push(
                "no audio directory configured (dialplan.audio_dir): playback files were not checked"
                    .to_string(),
            );
        }
        Ok(Self {
            version: Version {
                hash: content_hash(yaml),
                loaded_at: SystemTime::now(),
            },
            source: source.to_string(),
            yaml: yaml.to_string(),
            no_match,
            routes,
            index,
            contexts,
            notes,
        })
    }

    /// Read and load a file.
    pub fn load(path: &Path, ctx: &DialplanContext) -> Result<Self, Vec<FileError>> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![FileError::whole(
                &name,
                format!("cannot read: {}", yaml::io_reason(&e)),
            )]
        })?;
        Self::parse(&name, &text, ctx)
    }

    /// The embedded `dialplans/default.yaml`.
    pub fn embedded_default(ctx: &DialplanContext) -> Result<Self, Vec<FileError>> {
        Self::parse(DEFAULT_SOURCE, DEFAULT_YAML, ctx)
    }

    /// Content hash and load time.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// Where it came from (a path or `embedded:default.yaml`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The YAML text as loaded.
    pub fn yaml(&self) -> &str {
        &self.yaml
    }

    /// What unmatched calls get.
    pub fn no_match(&self) -> &NoMatch {
        &self.no_match
    }

    /// Routes in evaluation order (disabled ones included).
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// What was not checked, and why.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The summary `--check-dialplan` prints.
    pub fn summary(&self) -> Summary {
        Summary {
            source: self.source.clone(),
            version: self.version.hash.clone(),
            routes: self.routes.len(),
            enabled: self.routes.iter().filter(|r| r.enabled).count(),
            notes: self.notes.clone(),
        }
    }

    /// The first enabled route (by priority, then file order) whose
    /// conditions all hold.
    pub fn route(&self, call: &CallInfo) -> Option<Routed<'_>> {
        self.route_in(None, call)
    }

    /// [`route`](Self::route) among the routes of `context` (`None`: the
    /// default context new calls are routed in); a context no route
    /// declares matches nothing.
    pub fn route_in(&self, context: Option<&str>, call: &CallInfo) -> Option<Routed<'_>> {
        let index = match context {
            None => &self.index,
            Some(c) => self.contexts.get(c)?,
        };
        let (rank, captures) = index.lookup(&self.routes, call)?;
        let route = self.routes.get(rank)?;
        let mut variables = call.variables();
        variables.insert("route_id".into(), route.id.clone());
        variables.extend(captures);
        Some(Routed { route, variables })
    }
}

/// Add what was expected to serde's terser complaints.
fn explain(mut e: FileError) -> FileError {
    let hint = match e.message.as_str() {
        "unexpected value for unit enum variant" => {
            Some("`answer` takes no parameters (write `- answer`)")
        }
        "expected mapping start" => Some(
            "expected a mapping here, like `- playback: {file: x.wav}` or `match: {destination: \"1*\"}`",
        ),
        "invalid u16" | "invalid u32" | "invalid i32" => {
            Some("expected a whole number in range (SIP status 400-699, priority, version 1)")
        }
        _ => None,
    };
    if let Some(h) = hint {
        e.message = format!("{}: {h}", e.message);
    }
    e
}

/// First 12 hex digits of SHA-256.
pub fn content_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut h = hex::encode(digest);
    h.truncate(12);
    h
}

/// Validate a file without keeping it (`swbd --check-dialplan FILE`).
pub fn check_file(path: &Path, ctx: &DialplanContext) -> Result<Summary, Vec<FileError>> {
    Dialplan::load(path, ctx).map(|p| p.summary())
}

/// Standard reason phrase for the failure codes a dialplan uses.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        410 => "Gone",
        480 => "Temporarily Unavailable",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        _ => "",
    }
}

#[cfg(test)]
mod tests;
