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
use switchboard_proto::support::yaml::{FileError, io_reason};

use super::plan::{DEFAULT_SOURCE, DEFAULT_YAML, Dialplan, DialplanContext, Version};
use crate::config::Config;
use crate::events::{Event, EventBus};

/// What to load on reload.
#[derive(Debug, Clone, Copy)]
pub enum ReloadSource<'a> {
    /// The configured file, or the embedded default when none is configured
    /// (SIGHUP, admin reload without a path).
    Configured,
    /// A file on this host named by an admin client (`swctl dialplan
    /// reload --path`). swbd may read files the client cannot, so only a
    /// regular file of at most [`MAX_REQUESTED_BYTES`] is read, and its
    /// errors keep `FILE:LINE:COLUMN` and the parser's complaint but never
    /// text quoted from the file ([`FileError::without_source_text`]).
    Path(&'a Path),
    /// YAML text, named `name` in errors.
    Text {
        /// Name for errors and admin (`admin:upload`, ...).
        name: &'a str,
        /// The YAML.
        yaml: &'a str,
    },
}

/// Slots of `Inner::reloads`.
const APPLIED: usize = 0;
const REFUSED: usize = 1;

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
    /// Reloads [`APPLIED`] and [`REFUSED`] (metrics).
    reloads: [std::sync::atomic::AtomicU64; 2],
    /// The last reload's outcome, for admin `GetStatus` (`swctl top`'s
    /// header). Written under `reloading`, read by status calls; held for
    /// a clone only.
    last_reload: Mutex<Option<LastReload>>,
}

/// Errors of a refused reload kept for [`DialplanStore::last_reload`].
const LAST_RELOAD_ERRORS: usize = 10;

/// The outcome of the last reload since start.
#[derive(Debug, Clone, PartialEq)]
pub struct LastReload {
    /// Swapped in (true) or refused.
    pub applied: bool,
    /// When.
    pub at: std::time::SystemTime,
    /// Version in force after it.
    pub version: String,
    /// What was loaded.
    pub source: String,
    /// The first errors of a refused plan.
    pub errors: Vec<FileError>,
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
                reloads: Default::default(),
                last_reload: Mutex::new(None),
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
                self.count_reload(APPLIED);
                self.note_reload(true, &version.hash, &source, &[]);
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
                self.count_reload(REFUSED);
                self.note_reload(false, &old.version().hash, &tried, &errors);
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

    /// Reloads since start: (applied, refused).
    pub fn reload_counts(&self) -> (u64, u64) {
        let load = |slot: usize| {
            self.inner
                .reloads
                .get(slot)
                .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
        };
        (load(APPLIED), load(REFUSED))
    }

    /// The last reload since start (`None`: none yet).
    pub fn last_reload(&self) -> Option<LastReload> {
        self.inner
            .last_reload
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn note_reload(&self, applied: bool, version: &str, source: &str, errors: &[FileError]) {
        let last = LastReload {
            applied,
            at: std::time::SystemTime::now(),
            version: version.to_string(),
            source: source.to_string(),
            errors: errors.iter().take(LAST_RELOAD_ERRORS).cloned().collect(),
        };
        *self
            .inner
            .last_reload
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(last);
    }

    fn count_reload(&self, slot: usize) {
        if let Some(c) = self.inner.reloads.get(slot) {
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Load and validate `source` exactly as [`reload`](Self::reload)
    /// would, against the same context, without swapping it in or
    /// publishing an event (`swctl dialplan check` against a daemon).
    pub fn check(&self, source: ReloadSource<'_>) -> Result<Version, Vec<FileError>> {
        let context = self.inner.context.load();
        load(source, self.inner.configured.as_deref(), &context).map(|p| p.version().clone())
    }

    /// [`reload`](Self::reload) on the blocking pool, for async callers:
    /// `None` re-reads the configured file (SIGHUP, admin reload without a
    /// path), `Some(path)` loads that file.
    pub async fn reload_async(&self, path: Option<PathBuf>) -> Result<Version, Vec<FileError>> {
        let store = self.clone();
        let describe_path = path.clone();
        tokio::task::spawn_blocking(move || match &path {
            Some(p) => store.reload(ReloadSource::Path(p)),
            None => store.reload(ReloadSource::Configured),
        })
        .await
        .unwrap_or_else(|join| {
            let file = describe_path
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "dialplan".into());
            Err(vec![FileError::whole(
                file,
                format!("reload task failed: {join}"),
            )])
        })
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
        ReloadSource::Path(p) => load_requested(p, context),
        ReloadSource::Text { name, yaml } => Dialplan::parse(name, yaml, context),
    }
}

/// Largest dialplan an admin reload reads (serde-saphyr's own budget for a
/// document is about this size; a 10,000-route plan is about 1 MiB).
pub const MAX_REQUESTED_BYTES: u64 = 64 * 1024 * 1024;

/// [`ReloadSource::Path`]: a regular file only (a FIFO would hang the
/// reload, a device like `/dev/zero` would never end), and no source text
/// in the errors.
fn load_requested(path: &Path, context: &DialplanContext) -> Result<Dialplan, Vec<FileError>> {
    use std::io::Read;
    let name = path.display().to_string();
    let refuse = |m: String| vec![FileError::whole(&name, m)];
    let not_regular =
        || refuse("not a regular file (an admin reload reads dialplan files only)".to_string());
    let cannot_read = |e: &std::io::Error| refuse(format!("cannot read: {}", io_reason(e)));
    // stat before open: opening a FIFO blocks; then check what was opened.
    let meta = std::fs::metadata(path).map_err(|e| cannot_read(&e))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let file = std::fs::File::open(path).map_err(|e| cannot_read(&e))?;
    let meta = file.metadata().map_err(|e| cannot_read(&e))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let too_large = || {
        refuse(format!(
            "larger than {MAX_REQUESTED_BYTES} bytes, not a dialplan"
        ))
    };
    if meta.len() > MAX_REQUESTED_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_REQUESTED_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot_read(&e))?;
    if bytes.len() as u64 > MAX_REQUESTED_BYTES {
        return Err(too_large());
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| refuse("not UTF-8 text, not a dialplan".to_string()))?;
    Dialplan::parse(&name, &text, context).map_err(|errors| {
        errors
            .into_iter()
            .map(FileError::without_source_text)
            .collect()
    })
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
