//! The dialplan in force, swapped atomically on reload.
//!
//! [`DialplanStore::current`] is a lock-free `arc-swap` load: a call takes
//! the `Arc<Dialplan>` once and keeps it, so a reload never changes a call
//! in progress. A reload builds and validates the whole new plan first;
//! only a plan with no errors is swapped in, and a refused one leaves the
//! old plan running. Both outcomes are published on the [`EventBus`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use switchboard_proto::support::yaml::FileError;

use super::plan::{DEFAULT_SOURCE, DEFAULT_YAML, Dialplan, DialplanContext, Version};
use crate::config::Config;
use crate::events::{Event, EventBus};

/// What to load on reload.
#[derive(Debug, Clone, Copy)]
pub enum ReloadSource<'a> {
    /// The configured file, or the embedded default when none is configured
    /// (SIGHUP, admin reload without a path).
    Configured,
    /// A file on this host.
    Path(&'a Path),
    /// YAML text, named `name` in errors.
    Text {
        /// Name for errors and admin (`admin:upload`, ...).
        name: &'a str,
        /// The YAML.
        yaml: &'a str,
    },
}

/// Cheap-clone handle to the dialplan in force.
#[derive(Debug, Clone)]
pub struct DialplanStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    current: ArcSwap<Dialplan>,
    /// Checked against on every reload (gateways, audio dir).
    context: ArcSwap<DialplanContext>,
    /// The configured file (`None`: the embedded default).
    configured: Option<PathBuf>,
    events: EventBus,
    /// Serializes reloads so "applied" events come in swap order. Held
    /// only across parse + swap, never across `.await` (there is none).
    reloading: Mutex<()>,
}

impl DialplanStore {
    /// A store running `initial`. `configured` is what
    /// [`ReloadSource::Configured`] re-reads.
    pub fn new(
        initial: Dialplan,
        configured: Option<PathBuf>,
        context: DialplanContext,
        events: EventBus,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(initial),
                context: ArcSwap::from_pointee(context),
                configured,
                events,
                reloading: Mutex::new(()),
            }),
        }
    }

    /// Load the configured dialplan (`dialplan.file`, or the embedded
    /// default) against `config`'s gateways and audio directory. Errors
    /// here should stop swbd from starting.
    pub fn from_config(config: &Config, events: EventBus) -> Result<Self, Vec<FileError>> {
        let context = DialplanContext::from_config(config);
        let configured = config.dialplan.file.clone();
        let plan = load(ReloadSource::Configured, configured.as_deref(), &context)?;
        events.publish(Event::DialplanApplied {
            version: plan.version().hash.clone(),
            source: plan.source().to_string(),
        });
        Ok(Self::new(plan, configured, context, events))
    }

    /// The plan in force. Keep the `Arc` for the whole call.
    pub fn current(&self) -> Arc<Dialplan> {
        self.inner.current.load_full()
    }

    /// Replace what reloads validate against (after a config reload).
    pub fn set_context(&self, context: DialplanContext) {
        self.inner.context.store(Arc::new(context));
    }

    /// Load, validate and, only if there is no error, swap in a new plan.
    ///
    /// Blocking (reads the file, compiles regexes: milliseconds for
    /// thousands of routes); call it from `spawn_blocking` in async code.
    /// Publishes [`Event::DialplanApplied`] or [`Event::DialplanRefused`].
    pub fn reload(&self, source: ReloadSource<'_>) -> Result<Version, Vec<FileError>> {
        let _serial = self
            .inner
            .reloading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let context = self.inner.context.load();
        match load(source, self.inner.configured.as_deref(), &context) {
            Ok(plan) => {
                let version = plan.version().clone();
                let source = plan.source().to_string();
                self.inner.current.store(Arc::new(plan));
                tracing::info!(%version, %source, "dialplan applied");
                self.inner.events.publish(Event::DialplanApplied {
                    version: version.hash.clone(),
                    source,
                });
                Ok(version)
            }
            Err(errors) => {
                let old = self.current();
                let tried = describe(source, self.inner.configured.as_deref());
                tracing::warn!(
                    version = %old.version(),
                    source = %tried,
                    errors = errors.len(),
                    "dialplan refused, keeping the running one"
                );
                self.inner.events.publish(Event::DialplanRefused {
                    version: old.version().hash.clone(),
                    source: tried,
                    errors: errors.clone(),
                });
                Err(errors)
            }
        }
    }
}

fn load(
    source: ReloadSource<'_>,
    configured: Option<&Path>,
    context: &DialplanContext,
) -> Result<Dialplan, Vec<FileError>> {
    match source {
        ReloadSource::Configured => match configured {
            Some(p) => Dialplan::load(p, context),
            None => Dialplan::parse(DEFAULT_SOURCE, DEFAULT_YAML, context),
        },
        ReloadSource::Path(p) => Dialplan::load(p, context),
        ReloadSource::Text { name, yaml } => Dialplan::parse(name, yaml, context),
    }
}

fn describe(source: ReloadSource<'_>, configured: Option<&Path>) -> String {
    match source {
        ReloadSource::Configured => configured
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| DEFAULT_SOURCE.to_string()),
        ReloadSource::Path(p) => p.display().to_string(),
        ReloadSource::Text { name, .. } => name.to_string(),
    }
}
