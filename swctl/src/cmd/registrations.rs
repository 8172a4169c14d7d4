//! `swctl registrations list`.

use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;

use super::{Kind, Targets, gather, table_width};
use crate::Error;
use crate::cli::Output;
use crate::output;
use crate::views::RegistrationView;

/// `swctl registrations list`.
pub async fn list(t: &Targets, format: Output) -> Result<(), Error> {
    let got = gather(t, Kind::Swbd, |ch| async move {
        SignalingAdminClient::new(ch)
            .list_registrations(pb::ListRegistrationsRequest::default())
            .await
            .map(|r| r.into_inner().registrations)
    })
    .await?;
    let now = prost_types::Timestamp::from(std::time::SystemTime::now());
    let regs: Vec<RegistrationView> = got
        .iter()
        .flat_map(|(b, rs)| rs.iter().map(|r| RegistrationView::new(&b.label, r, &now)))
        .collect();
    print!("{}", render(&regs, format, got.len() > 1, table_width())?);
    Ok(())
}

/// Render bindings. `several`: add the BACKEND column.
pub fn render(
    regs: &[RegistrationView],
    format: Output,
    several: bool,
    width: usize,
) -> anyhow::Result<String> {
    Ok(match format {
        Output::Table => {
            let mut header = vec!["AOR", "CONTACT", "SOURCE", "EXPIRES"];
            if several {
                header.insert(0, "BACKEND");
            }
            let rows = regs
                .iter()
                .map(|r| {
                    let mut row = vec![
                        r.aor.clone(),
                        r.contact.clone(),
                        r.source.clone(),
                        format!("{}s", r.expires_in_secs),
                    ];
                    if several {
                        row.insert(0, r.backend.clone());
                    }
                    row
                })
                .collect::<Vec<_>>();
            output::fit(&header, &rows, Some(width))
        }
        Output::Wide => {
            let header = [
                "BACKEND",
                "AOR",
                "CONTACT",
                "SOURCE",
                "Q",
                "EXPIRES",
                "REGISTERED",
                "USER-AGENT",
                "CALL-ID",
            ];
            let rows = regs
                .iter()
                .map(|r| {
                    vec![
                        r.backend.clone(),
                        r.aor.clone(),
                        r.contact.clone(),
                        r.source.clone(),
                        format!("{:.1}", r.q),
                        format!("{}s", r.expires_in_secs),
                        r.registered_at.clone().unwrap_or_else(|| "-".into()),
                        r.user_agent.clone(),
                        r.sip_call_id.clone(),
                    ]
                })
                .collect::<Vec<_>>();
            output::fit(&header, &rows, None)
        }
        _ => output::structured(format, &regs)?,
    })
}
