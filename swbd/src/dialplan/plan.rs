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
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_saphyr::{Location, Spanned};
use sha2::{Digest, Sha256};
use switchboard_proto::support::yaml::{self, FileError};

use super::error::{Error, clamp};
use super::file::{ActionFile, DialplanFile, MatchFile, OnFailure, Redirect, RouteFile};
use super::index::RouteIndex;
use super::pattern::{AnchoredRegex, Cidr, Glob};
use super::template::{
    BUILTIN_VARIABLES, Template, Variables, escape_reason, escape_sip_user, is_variable_name,
};
use super::transfer::{TransferPolicy, check_context_name};
use crate::config::Config;

mod read;

pub use read::{MAX_READ_DIGITS, Read, ReadRequest};

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

/// Collects every semantic error while compiling.
struct Validator<'a> {
    source: &'a str,
    ctx: &'a DialplanContext,
    errors: Vec<FileError>,
    /// Contexts routes declare (`context:`).
    contexts: BTreeSet<String>,
    /// Contexts `transfer:` policies name, where (checked at the end).
    context_refs: Vec<(String, Location)>,
}

impl Validator<'_> {
    fn push(&mut self, loc: &Location, e: Error) {
        self.errors.push(e.at(self.source, loc));
    }

    fn status(&mut self, code: &Spanned<u16>) -> u16 {
        if !(400..=699).contains(&code.value) {
            self.push(
                &code.referenced,
                Error::BadStatus {
                    code: code.value,
                    expected: "a failure status 400-699",
                },
            );
        }
        code.value
    }

    fn file(&mut self, file: DialplanFile) -> (NoMatch, Vec<Route>) {
        if file.version.value != 1 {
            self.push(
                &file.version.referenced,
                Error::FormatVersion(file.version.value),
            );
        }
        let no_match = match file.no_match {
            Some(n) => {
                let code = self.status(&n.code);
                NoMatch {
                    code,
                    reason: n.reason.unwrap_or_else(|| reason_phrase(code).to_string()),
                }
            }
            None => NoMatch {
                code: 404,
                reason: "Not Found".into(),
            },
        };
        let mut first_line: HashMap<String, u32> = HashMap::new();
        let mut routes = Vec::with_capacity(file.routes.len());
        for r in file.routes {
            let line = clamp(r.id.referenced.line());
            if r.id.value.trim().is_empty() {
                self.push(&r.id.referenced, Error::EmptyId);
            } else if let Some(first) = first_line.get(&r.id.value) {
                self.push(
                    &r.id.referenced,
                    Error::DuplicateId {
                        id: r.id.value.clone(),
                        first_line: *first,
                    },
                );
            } else {
                first_line.insert(r.id.value.clone(), line);
            }
            if let Some(route) = self.route(r, line) {
                routes.push(route);
            }
        }
        for (name, at) in std::mem::take(&mut self.context_refs) {
            if !self.contexts.contains(&name) {
                let known = self.contexts.iter().cloned().collect();
                self.push(&at, Error::UnknownContext { name, known });
            }
        }
        (no_match, routes)
    }

    fn route(&mut self, r: RouteFile, line: u32) -> Option<Route> {
        let before = self.errors.len();
        let matcher = self.matcher(r.match_);
        let mut defined: BTreeSet<String> =
            BUILTIN_VARIABLES.iter().map(|s| s.to_string()).collect();
        if let Some(DestinationPattern::Regex(re)) = matcher.as_ref().map(|m| &m.destination) {
            defined.extend(re.capture_names().iter().cloned());
        }
        if r.actions.value.is_empty() {
            self.push(&r.actions.referenced, Error::NoActions);
        }
        let mut actions = Vec::with_capacity(r.actions.value.len());
        for a in r.actions.value {
            if let Some(action) = self.action(a, &mut defined) {
                actions.push(action);
            }
        }
        let transfer = match r.transfer {
            None => TransferPolicy::LocalUsers,
            Some(t) => match TransferPolicy::parse(&t.value) {
                Ok(p) => {
                    if let Some(c) = p.context() {
                        self.context_refs.push((c.to_string(), t.referenced));
                    }
                    p
                }
                Err(e) => {
                    self.push(&t.referenced, e);
                    TransferPolicy::Deny
                }
            },
        };
        let context = r.context.and_then(|c| match check_context_name(&c.value) {
            Ok(()) => {
                self.contexts.insert(c.value.clone());
                Some(c.value)
            }
            Err(e) => {
                self.push(&c.referenced, e);
                None
            }
        });
        if self.errors.len() != before {
            return None;
        }
        Some(Route {
            id: r.id.value,
            name: r.name,
            priority: r.priority,
            enabled: r.enabled,
            line,
            matcher: matcher?,
            actions,
            transfer,
            context,
        })
    }

    fn matcher(&mut self, m: MatchFile) -> Option<RouteMatch> {
        let before = self.errors.len();
        let destination = match (m.destination, m.destination_regex) {
            (Some(_), Some(re)) => {
                self.push(&re.referenced, Error::BothDestinations);
                DestinationPattern::Any
            }
            (Some(g), None) => match Glob::new(&g.value, false) {
                Ok(g) => DestinationPattern::Glob(g),
                Err(e) => {
                    self.push(&g.referenced, e);
                    DestinationPattern::Any
                }
            },
            (None, Some(re)) => match AnchoredRegex::new(&re.value) {
                Ok(r) => DestinationPattern::Regex(r),
                Err(e) => {
                    self.push(&re.referenced, e);
                    DestinationPattern::Any
                }
            },
            (None, None) => DestinationPattern::Any,
        };
        let glob = |s: Option<Spanned<String>>, ci: bool, this: &mut Self| {
            s.and_then(|s| match Glob::new(&s.value, ci) {
                Ok(g) => Some(g),
                Err(e) => {
                    this.push(&s.referenced, e);
                    None
                }
            })
        };
        let caller = glob(m.caller, false, self);
        let domain = glob(m.domain, true, self);
        let from_domain = glob(m.from_domain, true, self);
        let mut sources = Vec::new();
        for s in m.source.unwrap_or_default() {
            match Cidr::parse(&s.value) {
                Ok(c) => sources.push(c),
                Err(e) => self.push(&s.referenced, e),
            }
        }
        (self.errors.len() == before).then_some(RouteMatch {
            destination,
            caller,
            domain,
            from_domain,
            sources,
        })
    }

    /// Parse a template and check its variables are defined at this point.
    fn template(&mut self, s: &Spanned<String>, defined: &BTreeSet<String>) -> Option<Template> {
        match Template::parse(&s.value) {
            Ok(t) => {
                self.check_defined(&t, &s.referenced, defined);
                Some(t)
            }
            Err(e) => {
                self.push(&s.referenced, e);
                None
            }
        }
    }

    fn check_defined(&mut self, t: &Template, at: &Location, defined: &BTreeSet<String>) {
        let undefined: Vec<String> = t
            .variables()
            .filter(|v| !defined.contains(*v))
            .map(str::to_string)
            .collect();
        for name in undefined {
            self.push(
                at,
                Error::UndefinedVariable {
                    name,
                    defined: defined.iter().cloned().collect(),
                },
            );
        }
    }

    fn action(&mut self, a: Spanned<ActionFile>, defined: &mut BTreeSet<String>) -> Option<Action> {
        let at = a.referenced;
        match a.value {
            ActionFile::Answer => Some(Action::Answer),
            ActionFile::Playback(p) => {
                let file = self.template(&p.file, defined)?;
                if file.is_literal() {
                    self.check_audio(&p.file)?;
                }
                Some(Action::Playback {
                    file,
                    looped: p.looped,
                })
            }
            ActionFile::Dial(d) => {
                let list = match (d.target, d.targets) {
                    (Some(t), None) => vec![t],
                    (None, Some(ts)) if !ts.is_empty() => ts,
                    _ => {
                        self.push(&at, Error::DialTargets);
                        return None;
                    }
                };
                let mut targets = Vec::with_capacity(list.len());
                let before = self.errors.len();
                for t in list {
                    match TargetTemplate::parse(&t.value, self.ctx) {
                        Ok(tt) => {
                            for tpl in tt.templates() {
                                self.check_defined(tpl, &t.referenced, defined);
                            }
                            targets.push(tt);
                        }
                        Err(e) => self.push(&t.referenced, e),
                    }
                }
                let timeout = match d.timeout {
                    Some(t) if t.value.0.is_zero() => {
                        self.push(
                            &t.referenced,
                            Error::BadDuration("a dial timeout must be above 0 (like 30s)".into()),
                        );
                        return None;
                    }
                    Some(t) => t.value.0,
                    None => DEFAULT_DIAL_TIMEOUT,
                };
                (self.errors.len() == before).then_some(Action::Dial {
                    targets,
                    timeout,
                    on_failure: d.on_failure,
                    redirect: d.redirect,
                })
            }
            ActionFile::Hangup(h) => {
                let code = self.status(&h.code);
                let reason = match &h.reason {
                    Some(r) => self.template(r, defined)?,
                    None => Template::parse(reason_phrase(code)).ok()?,
                };
                Some(Action::Hangup { code, reason })
            }
            ActionFile::Sleep(d) => Some(Action::Sleep(d.value.0)),
            ActionFile::Set(pairs) => {
                let mut out = Vec::with_capacity(pairs.0.len());
                let before = self.errors.len();
                for (k, v) in pairs.0 {
                    let value = self.template(&v, defined);
                    if BUILTIN_VARIABLES.contains(&k.value.as_str()) {
                        self.push(
                            &k.referenced,
                            Error::SetBuiltin {
                                name: k.value.clone(),
                            },
                        );
                    } else if !is_variable_name(&k.value) {
                        self.push(
                            &k.referenced,
                            Error::BadVariableName {
                                name: k.value.clone(),
                            },
                        );
                    }
                    defined.insert(k.value.clone());
                    if let Some(value) = value {
                        out.push((k.value, value));
                    }
                }
                (self.errors.len() == before).then_some(Action::Set(out))
            }
            ActionFile::Read(r) => self.read(r, defined),
        }
    }

    /// A literal playback file must stay inside, and (when configured)
    /// exist under, the audio directory.
    fn check_audio(&mut self, file: &Spanned<String>) -> Option<()> {
        let path = Path::new(&file.value);
        let escapes = path.is_absolute()
            || path
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
        if escapes || file.value.is_empty() {
            self.push(
                &file.referenced,
                Error::AudioPathEscapes {
                    file: file.value.clone(),
                },
            );
            return None;
        }
        if let Some(dir) = &self.ctx.audio_dir
            && !dir.join(path).is_file()
        {
            self.push(
                &file.referenced,
                Error::MissingAudio {
                    file: file.value.clone(),
                    dir: dir.clone(),
                },
            );
            return None;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> DialplanContext {
        DialplanContext {
            gateways: vec!["gw1".into(), "gw2".into()],
            audio_dir: None,
        }
    }

    fn plan(yaml: &str) -> Dialplan {
        match Dialplan::parse("t.yaml", yaml, &ctx()) {
            Ok(p) => p,
            Err(errs) => panic!("{}", render(&errs)),
        }
    }

    fn errors(yaml: &str) -> Vec<FileError> {
        Dialplan::parse("t.yaml", yaml, &ctx()).expect_err("refused")
    }

    fn render(errs: &[FileError]) -> String {
        errs.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn call(dest: &str) -> CallInfo {
        CallInfo {
            destination: dest.into(),
            caller: "1001".into(),
            domain: "pbx.example.com".into(),
            from_domain: "example.net".into(),
            source_ip: Some("10.0.0.5".parse().expect("ip")),
        }
    }

    fn routed(p: &Dialplan, c: &CallInfo) -> Option<String> {
        p.route(c).map(|r| r.route.id.clone())
    }

    /// One route per line: `id|priority|match-yaml`.
    fn routes_yaml(rows: &[(&str, i32, &str)]) -> String {
        let mut y = String::from("version: 1\nroutes:\n");
        for (id, prio, m) in rows {
            y.push_str(&format!(
                "  - id: {id}\n    priority: {prio}\n    match: {m}\n    actions: [answer]\n"
            ));
        }
        y
    }

    #[test]
    fn default_plan_loads_and_routes() {
        let p = Dialplan::embedded_default(&DialplanContext::default()).expect("default loads");
        assert_eq!(p.source(), DEFAULT_SOURCE);
        assert_eq!(p.version().hash.len(), 12);
        assert_eq!(routed(&p, &call("1234")).as_deref(), Some("extensions"));
        assert_eq!(routed(&p, &call("500")).as_deref(), Some("tone"));
        assert_eq!(routed(&p, &call("12345")), None);
        assert_eq!(p.no_match().code, 404);
        assert!(p.notes().iter().any(|n| n.contains("not checked")));
    }

    #[test]
    fn destination_matching_table() {
        let p = plan(&routes_yaml(&[
            ("exact500", 100, "{destination: \"500\"}"),
            ("four", 100, "{destination: \"1???\"}"),
            ("ones", 100, "{destination: \"1*\"}"),
            ("class", 100, "{destination: \"[2-4]0*\"}"),
            ("suffix", 100, "{destination: \"*99\"}"),
            ("re", 100, "{destination_regex: '7(\\d)(?P<rest>\\d*)'}"),
            ("all", 100, "{destination: \"*\"}"),
        ]));
        let cases = [
            ("500", "exact500"),
            ("5000", "all"),
            ("1234", "four"),
            ("12345", "ones"),
            ("1", "ones"),
            ("305", "class"),
            ("505", "all"),
            ("599", "suffix"),
            ("7123", "re"),
            ("x7123", "all"),
            ("", "all"),
        ];
        for (dest, want) in cases {
            assert_eq!(routed(&p, &call(dest)).as_deref(), Some(want), "{dest}");
        }
    }

    #[test]
    fn regex_captures_become_variables() {
        let p = plan(&routes_yaml(&[(
            "re",
            100,
            "{destination_regex: '9(?P<number>\\d+)'}",
        )]));
        let r = p.route(&call("95551234")).expect("routed");
        assert_eq!(
            r.variables.get("number").map(String::as_str),
            Some("5551234")
        );
        assert_eq!(r.variables.get("1").map(String::as_str), Some("5551234"));
        assert_eq!(
            r.variables.get("destination").map(String::as_str),
            Some("95551234")
        );
        assert_eq!(r.variables.get("route_id").map(String::as_str), Some("re"));
        assert!(p.route(&call("8555")).is_none());
    }

    #[test]
    fn from_domain_condition() {
        let p = plan(
            "version: 1\nroutes:\n  - id: partner\n    match: {destination: \"*\", from_domain: \"*.partner.example\"}\n    actions: [answer]\n",
        );
        let mut c = call("1000");
        c.from_domain = "pbx.PARTNER.example".into();
        assert!(
            p.route(&c).is_some(),
            "case-insensitive glob on the From host"
        );
        c.from_domain = "evil.example".into();
        assert!(p.route(&c).is_none());
    }

    #[test]
    fn caller_domain_and_source_conditions() {
        let p = plan(&routes_yaml(&[
            (
                "vip",
                100,
                "{destination: \"*\", caller: \"100?\", domain: \"*.EXAMPLE.com\", source: [10.0.0.0/8]}",
            ),
            ("lan", 100, "{source: [192.168.0.0/16, \"2001:db8::/32\"]}"),
            ("fallback", 100, "{}"),
        ]));
        let c = call("42");
        assert_eq!(routed(&p, &c).as_deref(), Some("vip"));
        let mut c2 = c.clone();
        c2.caller = "2001".into();
        assert_eq!(routed(&p, &c2).as_deref(), Some("fallback"));
        let mut c3 = c.clone();
        c3.domain = "pbx.example.org".into();
        assert_eq!(routed(&p, &c3).as_deref(), Some("fallback"));
        let mut c4 = c.clone();
        c4.source_ip = Some("192.168.1.9".parse().expect("ip"));
        assert_eq!(routed(&p, &c4).as_deref(), Some("lan"));
        c4.source_ip = Some("2001:db8::7".parse().expect("ip"));
        assert_eq!(routed(&p, &c4).as_deref(), Some("lan"));
        c4.source_ip = None;
        assert_eq!(
            routed(&p, &c4).as_deref(),
            Some("fallback"),
            "unknown source never matches a CIDR"
        );
    }

    #[test]
    fn priority_then_file_order() {
        let p = plan(&routes_yaml(&[
            ("late-exact", 200, "{destination: \"1000\"}"),
            ("first-wild", 100, "{destination: \"1*\"}"),
            ("second-wild", 100, "{destination: \"10*\"}"),
            ("urgent-re", 50, "{destination_regex: '10[0-9]0'}"),
        ]));
        assert_eq!(routed(&p, &call("1000")).as_deref(), Some("urgent-re"));
        assert_eq!(routed(&p, &call("1001")).as_deref(), Some("first-wild"));
        let ids: Vec<&str> = p.routes().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            ["urgent-re", "first-wild", "second-wild", "late-exact"]
        );
        // Ties: file order, even when the later one is an exact match.
        let p = plan(&routes_yaml(&[
            ("wild", 100, "{destination: \"*\"}"),
            ("exact", 100, "{destination: \"500\"}"),
        ]));
        assert_eq!(routed(&p, &call("500")).as_deref(), Some("wild"));
    }

    #[test]
    fn disabled_routes_never_match() {
        let p = plan(
            "version: 1\nroutes:\n  - id: off\n    enabled: false\n    match: {}\n    actions: [answer]\n  - id: on\n    match: {}\n    actions: [answer]\n",
        );
        assert_eq!(routed(&p, &call("1")).as_deref(), Some("on"));
        assert_eq!(p.summary().enabled, 1);
    }

    #[test]
    fn index_agrees_with_a_linear_scan() {
        // A mix where buckets overlap; compare with a brute-force scan.
        let mut rows = Vec::new();
        let pats = [
            "{destination: \"1*\"}",
            "{destination: \"12*\"}",
            "{destination: \"123\"}",
            "{destination: \"1?3\"}",
            "{destination_regex: '1(2|3)+'}",
            "{destination_regex: '12\\d'}",
            "{destination: \"*3\", caller: \"9*\"}",
            "{destination: \"*\", source: [10.0.0.0/8]}",
        ];
        let ids: Vec<String> = (0..40).map(|i| format!("r{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            let prio = [300, 100, 200][i % 3];
            rows.push((id.as_str(), prio, pats[(i * 7) % pats.len()]));
        }
        let p = plan(&routes_yaml(&rows));
        for dest in ["1", "12", "123", "1223", "133", "124", "2", "", "13", "143"] {
            for caller in ["1001", "9000"] {
                for ip in [Some("10.1.1.1"), Some("8.8.8.8"), None] {
                    let c = CallInfo {
                        destination: dest.into(),
                        caller: caller.into(),
                        domain: String::new(),
                        from_domain: String::new(),
                        source_ip: ip.map(|i| i.parse().expect("ip")),
                    };
                    let linear = p
                        .routes()
                        .iter()
                        .find(|r| {
                            r.enabled && r.context.is_none() && r.matcher.check(&c, false).is_some()
                        })
                        .map(|r| r.id.clone());
                    assert_eq!(routed(&p, &c), linear, "{c:?}");
                }
            }
        }
    }

    #[test]
    fn context_routes_take_transfers_only() {
        let p = plan(
            "version: 1\nroutes:\n  - id: ext\n    match: {destination: \"1???\"}\n    transfer: front\n    actions: [answer]\n  - id: desk\n    context: front\n    match: {destination: \"0\"}\n    actions: [answer]\n  - id: closed\n    match: {destination: \"2*\"}\n    transfer: deny\n    actions: [answer]\n  - id: open\n    match: {destination: \"3*\"}\n    transfer: allow\n    actions: [answer]\n  - id: any\n    match: {}\n    actions: [answer]\n",
        );
        // New calls never reach a context route.
        assert_eq!(routed(&p, &call("0")).as_deref(), Some("any"));
        let desk = p
            .route_in(Some("front"), &call("0"))
            .map(|r| r.route.id.clone());
        assert_eq!(desk.as_deref(), Some("desk"));
        assert!(p.route_in(Some("front"), &call("1001")).is_none());
        assert!(p.route_in(Some("nowhere"), &call("0")).is_none());
        let policy = |dest: &str| p.route(&call(dest)).map(|r| r.route.transfer.clone());
        assert_eq!(
            policy("1001"),
            Some(TransferPolicy::Context("front".into()))
        );
        assert_eq!(policy("2"), Some(TransferPolicy::Deny));
        assert_eq!(policy("3"), Some(TransferPolicy::Allow));
        assert_eq!(policy("9"), Some(TransferPolicy::LocalUsers));
        // The fast path and serde read the new keys alike.
        let yaml = p.yaml().to_string();
        assert!(Dialplan::parse_fast("t.yaml", &yaml, &ctx()).is_some());
    }

    #[test]
    fn transfer_policies_are_checked_at_load() {
        let yaml = "version: 1\nroutes:\n  - id: a\n    match: {}\n    transfer: nowhere\n    actions: [answer]\n  - id: b\n    context: \"bad name\"\n    match: {}\n    actions: [answer]\n  - id: c\n    context: elsewhere\n    match: {}\n    transfer: \"x\\r\\ny\"\n    actions: [answer]\n";
        let errs = errors(yaml);
        let text = render(&errs);
        assert_eq!(errs.len(), 3, "{text}");
        assert!(
            text.contains("t.yaml:8:14: bad context name \"bad name\""),
            "{text}"
        );
        assert!(text.contains("t.yaml:14:15: bad context name"), "{text}");
        assert!(
            text.contains(
                "t.yaml:5:15: transfer context \"nowhere\" has no routes (routes join it with `context: nowhere`; contexts in this file: elsewhere)"
            ),
            "{text}"
        );
        let fast = Dialplan::parse_fast("t.yaml", yaml, &ctx()).map(|r| r.err());
        let slow = Dialplan::parse_sequential("t.yaml", yaml, &ctx()).err();
        if let Some(fast) = fast {
            assert_eq!(fast, slow, "fast path and serde agree");
        }
    }

    #[test]
    fn semantic_errors_are_all_collected() {
        let yaml = "version: 1\nroutes:\n  - id: a\n    match: {destination_regex: '(1'}\n    actions: [answer]\n  - id: a\n    match: {destination: \"1[\"}\n    actions:\n      - dial: {target: gateway/nope}\n      - playback: {file: \"${nothing}.wav\"}\n";
        let errs = errors(yaml);
        let text = render(&errs);
        assert_eq!(errs.len(), 5, "{text}");
        assert!(text.contains("t.yaml:4:32: bad regex"), "{text}");
        assert!(
            text.contains("t.yaml:6:9: duplicate route id \"a\" (first defined at line 3)"),
            "{text}"
        );
        assert!(text.contains("t.yaml:7:26: bad glob"), "{text}");
        assert!(
            text.contains("t.yaml:9:24: unknown gateway \"nope\" (configured gateways: gw1, gw2)"),
            "{text}"
        );
        assert!(
            text.contains("t.yaml:10:26: undefined variable ${nothing}"),
            "{text}"
        );
    }

    #[test]
    fn set_variables_are_defined_for_later_actions_only() {
        let ok = "version: 1\nroutes:\n  - id: a\n    match: {}\n    actions:\n      - set: {box: \"vm-${caller}\"}\n      - playback: {file: \"${box}.wav\"}\n";
        plan(ok);
        let bad = "version: 1\nroutes:\n  - id: a\n    match: {}\n    actions:\n      - playback: {file: \"${box}.wav\"}\n      - set: {box: x}\n";
        let errs = errors(bad);
        assert!(
            errs.first().is_some_and(|e| e.line == 6),
            "{}",
            render(&errs)
        );
    }

    #[test]
    fn audio_files_are_checked_when_a_directory_is_configured() {
        let dir = std::env::temp_dir().join(format!("swbd-audio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("tone-1khz-2s.wav"), b"RIFF").expect("write");
        let ctx = DialplanContext {
            gateways: vec![],
            audio_dir: Some(dir.clone()),
        };
        let p = Dialplan::embedded_default(&ctx).expect("tone exists");
        assert!(p.notes().is_empty());
        std::fs::remove_file(dir.join("tone-1khz-2s.wav")).expect("rm");
        let errs = Dialplan::embedded_default(&ctx).expect_err("tone missing");
        assert!(
            errs.first()
                .is_some_and(|e| e.message.contains("not found under audio directory"))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn terse_serde_errors_get_a_hint() {
        let cases = [
            ("", (1, 1), "the file is empty"),
            (
                "version: 1\nroutes:\n  - id: a\n    match: {}\n    actions: [{answer: {}}]\n",
                (5, 24),
                "write `- answer`",
            ),
            (
                "version: 1\nroutes:\n  - id: a\n    match: {}\n    actions:\n      - playback: x.wav\n",
                (6, 19),
                "expected a mapping here",
            ),
            (
                "version: 1\nroutes:\n  - id: a\n    match: {}\n    actions: [{hangup: {code: 70000}}]\n",
                (5, 31),
                "expected a whole number",
            ),
            ("routes: []\n", (1, 1), "missing field `version`"),
            (
                "version: 1\nroutes:\n  - match: {}\n    actions: [answer]\n",
                (4, 5),
                "missing field `id`",
            ),
        ];
        for (doc, at, msg) in cases {
            let errs = errors(doc);
            let e = errs.first().expect("an error");
            assert_eq!((e.line, e.column), at, "{e}");
            assert!(e.message.contains(msg), "{e}");
        }
    }

    #[test]
    fn same_text_same_version() {
        let a = plan(DEFAULT_YAML);
        let b = plan(DEFAULT_YAML);
        assert_eq!(a.version().hash, b.version().hash);
        assert_ne!(
            a.version().hash,
            plan(&format!("{DEFAULT_YAML}\n# edit\n")).version().hash
        );
    }
}
