//! Semantic validation of a parsed dialplan file ([`Validator`]): every
//! error in the file is collected, located, and the routes are compiled.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path};

use serde_saphyr::{Location, Spanned};
use switchboard_proto::support::yaml::FileError;

use super::{
    Action, DEFAULT_DIAL_TIMEOUT, DestinationPattern, DialplanContext, NoMatch, Route, RouteMatch,
    TargetTemplate, reason_phrase,
};
use crate::dialplan::error::{Error, clamp};
use crate::dialplan::file::{ActionFile, DialplanFile, MatchFile, RouteFile};
use crate::dialplan::pattern::{AnchoredRegex, Cidr, Glob};
use crate::dialplan::template::{BUILTIN_VARIABLES, Template, is_variable_name};
use crate::dialplan::transfer::{TransferPolicy, check_context_name};

/// Collects every semantic error while compiling.
pub(super) struct Validator<'a> {
    pub(super) source: &'a str,
    pub(super) ctx: &'a DialplanContext,
    pub(super) errors: Vec<FileError>,
    /// Contexts routes declare (`context:`).
    pub(super) contexts: BTreeSet<String>,
    /// Contexts `transfer:` policies name, where (checked at the end).
    pub(super) context_refs: Vec<(String, Location)>,
}

impl Validator<'_> {
    pub(super) fn push(&mut self, loc: &Location, e: Error) {
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

    pub(super) fn file(&mut self, file: DialplanFile) -> (NoMatch, Vec<Route>) {
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
    pub(super) fn template(
        &mut self,
        s: &Spanned<String>,
        defined: &BTreeSet<String>,
    ) -> Option<Template> {
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
    pub(super) fn check_audio(&mut self, file: &Spanned<String>) -> Option<()> {
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
