//! The UAC side of `swbench calls`: one call (INVITE answering one 401/407,
//! ACK, hold with media, BYE) and what it counts.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Ctx;
use super::uas::lone_request;
use crate::digest::{Challenge, authorization};
use crate::endpoint::{Endpoint, Inbound, NewHandler, client_transaction};
use crate::runner::token;
use crate::sip::{RequestSpec, response, sdp, sdp_media_addr};

pub(super) fn uac_handler() -> NewHandler {
    Arc::new(|ep, msg, from| {
        if let Some(r) = lone_request(&msg) {
            tokio::spawn(async move { ep.send_to(&r, from).await });
        }
    })
}

/// Dialog state the UAC keeps after the 200.
struct UacDialog {
    to_tag: String,
    target: String,
    routes: Vec<String>,
}

/// UAC: INVITE (answering one 401/407), ACK, hold, BYE.
pub(super) async fn uac_call(ctx: Arc<Ctx>, i: u64) {
    ctx.live.started.fetch_add(1, Ordering::Relaxed);
    let caller = ctx.opts.callers.nth(i);
    let callee = ctx.opts.callees.nth(i);
    let ep = ctx.uac_for(i);
    let call_id = token();
    let from_tag = token();
    let dom = &ctx.common.domain;
    let ruri = format!("sip:{callee}@{dom}");
    let from = format!("sip:{caller}@{dom}");
    let contact = format!("sip:{caller}@{}", ep.local);
    let port = ctx.media.as_ref().map_or(9, |m| m.port(0));
    let body = sdp(port, i);
    let mut rx = ep.route(&call_id);
    let t0 = Instant::now();
    let result = invite_and_talk(
        &ctx, &ep, &mut rx, &call_id, &from_tag, &ruri, &from, &contact, &body, t0,
    )
    .await;
    match result {
        Ok(()) => {
            ctx.live.ok.fetch_add(1, Ordering::Relaxed);
        }
        Err(why) => ctx.fail(why),
    }
    ctx.live.ended.fetch_add(1, Ordering::Relaxed);
    // Absorb late 200 retransmissions briefly before forgetting the dialog.
    let linger = Instant::now() + (ctx.common.timers.t1 * 2).min(Duration::from_secs(1));
    while let Ok(Some(_)) = tokio::time::timeout_at(linger, rx.recv()).await {}
    ep.unroute(&call_id);
}

#[allow(clippy::too_many_arguments)]
async fn invite_and_talk(
    ctx: &Ctx,
    ep: &Endpoint,
    rx: &mut mpsc::UnboundedReceiver<Inbound>,
    call_id: &str,
    from_tag: &str,
    ruri: &str,
    from: &str,
    contact: &str,
    body: &str,
    t0: Instant,
) -> Result<(), String> {
    let timers = ctx.common.timers;
    let mut extra: Vec<String> = Vec::new();
    let mut cseq = 1u32;
    let mut rang = false;
    let ok = loop {
        let branch = format!("z9hG4bK{}", token());
        let invite = RequestSpec {
            method: "INVITE",
            uri: ruri,
            via_host: ep.local,
            branch: &branch,
            from,
            from_tag,
            to: ruri,
            to_tag: None,
            call_id,
            cseq,
            contact: Some(contact),
            routes: &[],
            extra: &extra,
            body: Some(body),
        }
        .build();
        let resp = client_transaction(
            ep,
            rx,
            &invite,
            cseq,
            "INVITE",
            timers,
            &ctx.live.retransmits,
            |m| {
                if !rang && m.code().is_some_and(|c| c > 100) {
                    rang = true;
                    ctx.phase().ringing.record(t0.elapsed());
                }
            },
        )
        .await
        .map_err(|_| "timeout".to_string())?;
        let code = resp.code().unwrap_or(0);
        if (200..300).contains(&code) {
            break resp;
        }
        // RFC 3261 §17.1.1.3: ACK a non-2xx final, same branch.
        let ack = RequestSpec {
            method: "ACK",
            uri: ruri,
            via_host: ep.local,
            branch: &branch,
            from,
            from_tag,
            to: ruri,
            to_tag: resp.tag("to"),
            call_id,
            cseq,
            contact: None,
            routes: &[],
            extra: &[],
            body: None,
        }
        .build();
        ep.send(&ack).await;
        let (hdr, name) = match code {
            401 => ("www-authenticate", "Authorization"),
            407 => ("proxy-authenticate", "Proxy-Authorization"),
            _ => return Err(code.to_string()),
        };
        if cseq > 1 {
            return Err(code.to_string());
        }
        let user = from
            .trim_start_matches("sip:")
            .split('@')
            .next()
            .unwrap_or_default();
        let ch = Challenge::pick(
            resp.headers
                .iter()
                .filter(|(n, _)| n == hdr)
                .map(|(_, v)| v.as_str()),
        )
        .ok_or_else(|| format!("{code}-no-md5-challenge"))?;
        let cred = authorization(
            &ch,
            user,
            &ctx.common.password_for(user),
            "INVITE",
            ruri,
            &token(),
        );
        extra.push(format!("{name}: {cred}"));
        cseq += 1;
    };
    let setup = t0.elapsed();
    {
        let mut p = ctx.phase();
        p.setup.record(setup);
        p.first_answer.get_or_insert_with(Instant::now);
    }
    ctx.live.answered.fetch_add(1, Ordering::Relaxed);
    let dialog = UacDialog {
        to_tag: ok.tag("to").unwrap_or_default().to_string(),
        target: ok.contact_uri().unwrap_or_else(|| ruri.to_string()),
        // RFC 3261 §12.1.2: the route set is Record-Route reversed.
        routes: ok
            .header_all("record-route")
            .into_iter()
            .rev()
            .map(str::to_string)
            .collect(),
    };
    let in_dialog = |method: &str, cseq: u32| {
        let branch = format!("z9hG4bK{}", token());
        RequestSpec {
            method,
            uri: &dialog.target,
            via_host: ep.local,
            branch: &branch,
            from,
            from_tag,
            to: ruri,
            to_tag: Some(&dialog.to_tag),
            call_id,
            cseq,
            contact: None,
            routes: &dialog.routes,
            extra: &[],
            body: None,
        }
        .build()
    };
    let ack = in_dialog("ACK", cseq);
    ep.send(&ack).await;
    let margin = if let Some(media) = &ctx.media {
        match sdp_media_addr(&ok.body) {
            Some(dest) => media.add_stream(0, dest, ctx.opts.hold),
            None => return Err("200-without-sdp".into()),
        }
        // The UAS stops its stream `hold` after our ACK; hang up after it has.
        Duration::from_millis(200)
    } else {
        Duration::ZERO
    };
    // Hold: re-ACK retransmitted 200s; a BYE from the far end ends early.
    let hang_up = Instant::now() + ctx.opts.hold + margin;
    loop {
        match tokio::time::timeout_at(hang_up, rx.recv()).await {
            Err(_) => break,
            Ok(None) => return Err("dialog-lost".into()),
            Ok(Some((m, src))) => {
                if m.code().is_some_and(|c| (200..300).contains(&c)) && m.cseq().1 == "INVITE" {
                    ep.send(&ack).await;
                } else if m.method() == Some("BYE") {
                    ep.send_to(&response(&m, 200, "OK", None, None, None), src)
                        .await;
                    return Err("bye-from-server".into());
                } else if let Some(method) = m.method()
                    && method != "ACK"
                {
                    ep.send_to(&response(&m, 200, "OK", None, None, None), src)
                        .await;
                }
            }
        }
    }
    let bye_cseq = cseq + 1;
    let bye = in_dialog("BYE", bye_cseq);
    let r = client_transaction(
        ep,
        rx,
        &bye,
        bye_cseq,
        "BYE",
        timers,
        &ctx.live.retransmits,
        |_| {},
    )
    .await
    .map_err(|_| "bye-timeout".to_string())?;
    match r.code() {
        Some(200..=299) => Ok(()),
        c => Err(format!("bye-{}", c.unwrap_or(0))),
    }
}
