//! The UAS side of `swbench calls`: answering the calls the server routes
//! back to us (180, 200 with SDP until ACK, media, 200 to the BYE), and
//! answering requests outside any dialog.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Ctx;
use crate::endpoint::{Inbound, NewHandler};
use crate::runner::token;
use crate::sip::{Message, response, sdp, sdp_media_addr};

/// The answer to a request outside any dialog we know.
pub(super) fn lone_request(msg: &Message) -> Option<String> {
    match msg.method()? {
        "ACK" => None,
        "OPTIONS" => Some(response(msg, 200, "OK", Some(&token()), None, None)),
        _ => Some(response(
            msg,
            481,
            "Call/Transaction Does Not Exist",
            Some(&token()),
            None,
            None,
        )),
    }
}

pub(super) fn uas_handler(ctx: std::sync::Weak<Ctx>) -> NewHandler {
    Arc::new(move |ep, msg, from| {
        if msg.method() == Some("INVITE") && msg.tag("to").is_none() {
            let Some(ctx) = ctx.upgrade() else { return };
            // Route before spawning: a retransmitted INVITE must find the dialog.
            let rx = ep.route(msg.call_id());
            tokio::spawn(uas_dialog(ctx, msg, from, rx));
        } else if let Some(r) = lone_request(&msg) {
            tokio::spawn(async move { ep.send_to(&r, from).await });
        }
    })
}

/// UAS: 180, 200 (retransmitted on Timer G until ACK, RFC 3261 §13.3.1.4),
/// media, then 200 to the BYE.
async fn uas_dialog(
    ctx: Arc<Ctx>,
    invite: Message,
    from: SocketAddr,
    mut rx: mpsc::UnboundedReceiver<Inbound>,
) {
    ctx.live.uas_calls.fetch_add(1, Ordering::Relaxed);
    let t1 = ctx.common.timers.t1;
    let t2 = ctx.common.timers.t2;
    let ep = &ctx.uas;
    let call_id = invite.call_id().to_string();
    let tag = token();
    let contact = format!("sip:uas@{}", ep.local);
    let ringing = response(&invite, 180, "Ringing", Some(&tag), Some(&contact), None);
    ep.send_to(&ringing, from).await;
    if !ctx.opts.answer_delay.is_zero() {
        tokio::time::sleep(ctx.opts.answer_delay).await;
    }
    let port = ctx.media.as_ref().map_or(9, |m| m.port(1));
    let body = sdp(port, rand::random::<u32>().into());
    let ok = response(&invite, 200, "OK", Some(&tag), Some(&contact), Some(&body));
    ep.send_to(&ok, from).await;
    let give_up = Instant::now() + t1 * 64;
    let mut interval = t1;
    let mut next = Instant::now() + interval;
    let mut acked = false;
    // Until ACK: retransmit 200; answer retransmitted INVITEs with it too.
    while !acked {
        tokio::select! {
            m = rx.recv() => {
                let Some((m, src)) = m else { break };
                match m.method() {
                    Some("ACK") => acked = true,
                    Some("INVITE") => ep.send_to(&ok, src).await,
                    Some("BYE") => {
                        ep.send_to(&response(&m, 200, "OK", None, None, None), src).await;
                        break;
                    }
                    Some("CANCEL") => ep.send_to(&response(&m, 200, "OK", None, None, None), src).await,
                    _ => {}
                }
            }
            () = tokio::time::sleep_until(next.min(give_up)) => {
                if Instant::now() >= give_up {
                    ctx.fail("uas-no-ack");
                    break;
                }
                ep.send_to(&ok, from).await;
                ctx.live.retransmits.fetch_add(1, Ordering::Relaxed);
                interval = (interval * 2).min(t2);
                next = Instant::now() + interval;
            }
        }
    }
    if acked {
        if let (Some(media), Some(dest)) = (&ctx.media, sdp_media_addr(&invite.body)) {
            media.add_stream(1, dest, ctx.opts.hold);
        }
        // Wait for BYE (bounded), answering retransmissions on the way.
        let limit = Instant::now() + ctx.opts.hold + t1 * 64 + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(limit, rx.recv()).await {
                Ok(Some((m, src))) => match m.method() {
                    Some("BYE") => {
                        ep.send_to(&response(&m, 200, "OK", None, None, None), src)
                            .await;
                        break;
                    }
                    Some("INVITE") if m.tag("to").is_some() => {
                        // re-INVITE (session refresh): same SDP again.
                        ep.send_to(
                            &response(&m, 200, "OK", None, Some(&contact), Some(&body)),
                            src,
                        )
                        .await;
                    }
                    Some("INVITE") => ep.send_to(&ok, src).await,
                    Some("ACK") | None => {}
                    Some(_) => {
                        ep.send_to(&response(&m, 200, "OK", None, None, None), src)
                            .await
                    }
                },
                Ok(None) => break,
                Err(_) => {
                    ctx.fail("uas-no-bye");
                    break;
                }
            }
        }
    }
    // Linger (RFC 3261 Timer J-like) to answer a retransmitted BYE.
    let linger = Instant::now() + (t1 * 4).min(Duration::from_secs(2));
    while let Ok(Some((m, src))) = tokio::time::timeout_at(linger, rx.recv()).await {
        if m.method() == Some("BYE") {
            ep.send_to(&response(&m, 200, "OK", None, None, None), src)
                .await;
        }
    }
    ep.unroute(&call_id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_requests_get_481_or_200_and_acks_nothing() {
        let req = |m: &str| {
            Message::parse(
                format!(
                    "{m} sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
                     From: <sip:a@h>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: c\r\nCSeq: 1 {m}\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap()
        };
        let bye = Message::parse(lone_request(&req("BYE")).unwrap().as_bytes()).unwrap();
        assert_eq!(bye.code(), Some(481));
        let opt = Message::parse(lone_request(&req("OPTIONS")).unwrap().as_bytes()).unwrap();
        assert_eq!(opt.code(), Some(200));
        assert!(lone_request(&req("ACK")).is_none());
    }
}
