//! An admission decision taken before the parse, carried to the front door.
//!
//! The UDP receive path decides a well-formed new INVITE's admission from
//! its peeked head ([`crate::transport::shed`]) so that a refused one costs
//! no parse. An admitted one still goes the whole way, and the front door
//! asks [`super::Overload::admit_invite`] again; deciding twice would take
//! two tokens from the rate gate and count the INVITE twice. The decision
//! travels with the datagram instead (through the UDP worker queue), and is
//! installed here, for this thread, only while the transport hands that
//! datagram to its receiver: [`crate::transport::Receiver::receive`] is
//! synchronous, so the front door's question for that INVITE is asked on
//! this thread inside [`with_ticket`], and no other message's is.

use std::cell::Cell;

use super::Refusal;

/// The decision for one INVITE, taken before its parse. An admitted one
/// does not count as setup work while it waits in a worker queue: a burst
/// after a quiet spell (a trunk failing over to this swbd) is admitted as
/// it was before early shedding; the queue's delay, which the overload
/// probes measure, is what refuses a burst the box cannot take.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    decided: Result<(), Refusal>,
}

impl Ticket {
    pub(super) fn new(decided: Result<(), Refusal>) -> Self {
        Self { decided }
    }

    /// The decision.
    pub fn decided(&self) -> Result<(), Refusal> {
        self.decided
    }
}

thread_local! {
    static TICKET: Cell<Option<Result<(), Refusal>>> = const { Cell::new(None) };
}

/// Run `f` (the hand-off of one datagram to the receiver) with `ticket` as
/// the answer to the next admission question asked on this thread; it is
/// cleared afterwards whether or not it was asked.
pub fn with_ticket<R>(ticket: Option<Ticket>, f: impl FnOnce() -> R) -> R {
    let Some(ticket) = ticket else {
        return f();
    };
    TICKET.with(|t| t.set(Some(ticket.decided)));
    let out = f();
    TICKET.with(|t| t.set(None));
    out
}

/// The decision installed for this datagram, once.
pub(super) fn take() -> Option<Result<(), Refusal>> {
    TICKET.with(Cell::take)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_answers_once_and_only_inside() {
        assert_eq!(take(), None);
        let inside = with_ticket(Some(Ticket::new(Err(Refusal::Delay))), || (take(), take()));
        assert_eq!(inside, (Some(Err(Refusal::Delay)), None));
        // Not asked inside: cleared on the way out.
        with_ticket(Some(Ticket::new(Ok(()))), || ());
        assert_eq!(take(), None);
    }
}
