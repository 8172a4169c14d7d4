//! The SIP endpoint: binds the transports, runs the transaction layer,
//! the registrar, digest auth and the method handlers until shutdown.
//!
//! ```text
//! transports (UDP/TCP) -> TransactionLayer -> IncomingRequest -> method::dispatch
//!                                                 |                 REGISTER -> auth -> Registrar
//!                                                 |                 OPTIONS  -> 200
//!                                                 |                 INVITE   -> overload, auth -> take_invites() receiver
//!                                                 +- client transactions (send_request / send_invite)
//! ```

use std::sync::{Arc, Mutex};

use switchboard_proto::support::shutdown::Shutdown;
use tokio::sync::mpsc;

use crate::auth::{self, Authenticator};
use crate::capture::Capture;
use crate::config::{Config, ListenAddr};
use crate::events::EventBus;
use crate::events::security::SecurityEvents;
use crate::method::{self, Context, IncomingInvite};
use crate::overload::Overload;
use crate::registrar::Registrar;
use crate::transaction::{Timers, TransactionLayer};
use crate::transport::{self, SipCounters, Transports, counters::CountersSnapshot};

/// How many authenticated INVITEs may wait for the B2BUA before new ones
/// get `503` (a backstop: the consumer only spawns call tasks, and overload
/// control refuses INVITEs by measured delay long before this fills).
const INVITE_QUEUE: usize = 1024;

/// Endpoint start-up errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound ("cannot listen on udp:127.0.0.1:5060:
    /// address already in use").
    #[error(transparent)]
    Transport(#[from] transport::Error),
    /// The users file is invalid.
    #[error(transparent)]
    Auth(#[from] auth::Error),
    /// A config value the endpoint needs is invalid (normally caught by
    /// `Config::validate`).
    #[error("{0}")]
    Config(String),
}

/// A running SIP endpoint.
#[derive(Debug)]
pub struct SipEndpoint {
    local: Vec<ListenAddr>,
    registrar: Registrar,
    authenticator: Authenticator,
    counters: Arc<SipCounters>,
    transactions: TransactionLayer,
    context: Arc<Context>,
    capture: Capture,
    overload: Overload,
}

impl SipEndpoint {
    /// Bind every `sip.listen` address and start serving. Returns once all
    /// listeners are bound; runs until `shutdown`.
    pub async fn start(
        config: Arc<Config>,
        events: EventBus,
        shutdown: Shutdown,
    ) -> Result<Self, Error> {
        let counters = Arc::new(SipCounters::default());
        let transports = Transports::bind(&config.sip, counters.clone(), shutdown.clone()).await?;
        let authenticator = Authenticator::from_config(&config.auth, counters.clone())?;
        let security = SecurityEvents::new(
            events.clone(),
            counters.clone(),
            std::time::Duration::from_secs(config.events.security_interval_secs),
        );
        security.spawn_flusher(shutdown.clone());
        let capture = Capture::start(&config.capture, &events, shutdown.clone());
        let registrar = Registrar::new(config.registrar, &config.sip.domains, events);
        let (transactions, incoming) = TransactionLayer::new(
            transports.clone(),
            Timers::from(&config.sip.timers),
            config.sip.user_agent.clone(),
        );
        let overload = Overload::start(
            config.sip.overload,
            transports.receive_backlogs(),
            transactions.invites_proceeding(),
            shutdown.clone(),
        );
        let context = Arc::new(Context {
            config: config.clone(),
            registrar: registrar.clone(),
            auth: authenticator.clone(),
            invites: Mutex::new(None),
            dialogs: Mutex::new(None),
            security,
            overload: overload.clone(),
        });

        tokio::spawn(registrar.clone().run_sweeper(shutdown.clone()));
        // Method handlers never block: run them on the receiving task.
        drop(incoming);
        let ctx = context.clone();
        transactions.set_handler(Arc::new(move |req| method::dispatch(&ctx, req)));
        let door = method::front_door::SwbdFrontDoor::new(
            &config,
            authenticator.clone(),
            counters.clone(),
            context.clone(),
        )
        .map_err(Error::Config)?;
        let door = Arc::new(door);
        transactions.set_front_door(door.clone());
        if capture.is_active() {
            transports.set_tap(Arc::new(capture.clone()));
        }
        // Early shedding ([`transport::shed`]): not while HEP copies every
        // message (it would not see the INVITEs shed before the receiver;
        // the capture store keeps only calls, which a refused INVITE is not).
        if config.capture.hep.is_none() {
            use crate::transaction::layer::FrontDoor as _;
            transports.shed_early(overload.clone(), Arc::new(move |s| door.admits(s)));
        }
        transports.start(capture.wrap(transactions.receiver()));
        for l in transports.local_addrs() {
            tracing::info!(listen = %l, "SIP listening");
        }
        Ok(Self {
            local: transports.local_addrs().to_vec(),
            registrar,
            authenticator,
            counters,
            transactions,
            context,
            capture,
            overload,
        })
    }

    /// The SIP capture (per-call store, HEP).
    pub fn capture(&self) -> &Capture {
        &self.capture
    }

    /// Overload control (its numbers for admin status).
    pub fn overload(&self) -> &Overload {
        &self.overload
    }

    /// Bound addresses (with real ports when 0 was configured).
    pub fn local_addrs(&self) -> &[ListenAddr] {
        &self.local
    }

    /// The first bound address of `transport`.
    pub fn local_addr(&self, transport: transport::Transport) -> Option<std::net::SocketAddr> {
        self.local
            .iter()
            .find(|l| l.transport == transport)
            .map(|l| l.addr)
    }

    /// The registrar (lookup for the B2BUA, listing for admin).
    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    /// The authenticator (for INVITEs the B2BUA checks itself).
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// The transaction layer (client transactions for the B2BUA).
    pub fn transactions(&self) -> &TransactionLayer {
        &self.transactions
    }

    /// Counters (parse errors etc.) for admin status.
    pub fn counters(&self) -> CountersSnapshot {
        self.counters.snapshot()
    }

    /// Route in-dialog requests and unmatched ACKs through `router` first.
    pub fn set_dialog_router(&self, router: Arc<dyn method::DialogRouter>) {
        if let Ok(mut slot) = self.context.dialogs.lock() {
            *slot = Some(router);
        }
    }

    /// The live counters (shared handle).
    pub fn counters_handle(&self) -> Arc<SipCounters> {
        self.counters.clone()
    }

    /// Take the stream of authenticated INVITEs (once; `None` after). Until
    /// taken, INVITEs are answered `480 Temporarily Unavailable`.
    pub fn take_invites(&self) -> Option<mpsc::Receiver<IncomingInvite>> {
        let mut slot = self.context.invites.lock().ok()?;
        if slot.is_some() {
            return None;
        }
        let (tx, rx) = mpsc::channel(INVITE_QUEUE);
        *slot = Some(tx);
        Some(rx)
    }
}
