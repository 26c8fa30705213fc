//! Run-end notifications by mail: one plain-text message to an entry's addresses through its
//! SMTP relay (plain SMTP, as a local relay or MTA speaks it).

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use baton_core::config::{NotifyDef, SmtpDef};
use baton_store::{NoticeRow, ReportOutcome, RunRow};

use super::Try;

/// How long one SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// Sends the mail of notification `n` about `run`; `json` is the webhook body, attached as
/// the message's last lines so that a script can read it too.
pub(super) async fn send(
    entry: &NotifyDef,
    smtp: &SmtpDef,
    run: &RunRow,
    n: &NoticeRow,
    json: &[u8],
) -> Try {
    let message = match message(entry, smtp, run, n, json) {
        Ok(m) => m,
        Err(why) => return Try::Done(ReportOutcome::Failed, Some(why)),
    };
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        .port(smtp.port)
        .timeout(Some(SMTP_TIMEOUT))
        .build();
    match transport.send(message).await {
        Ok(_) => Try::Done(ReportOutcome::Sent, None),
        Err(e) => Try::Again(format!(
            "mail to {} through {}:{} failed: {}",
            entry.email.join(", "),
            smtp.host,
            smtp.port,
            super::error_chain(&e)
        )),
    }
}

fn message(
    entry: &NotifyDef,
    smtp: &SmtpDef,
    run: &RunRow,
    n: &NoticeRow,
    json: &[u8],
) -> Result<Message, String> {
    let mailbox = |a: &str| {
        a.parse::<Mailbox>()
            .map_err(|e| format!("invalid mail address {a:?}: {e}"))
    };
    let mut b = Message::builder()
        .from(mailbox(&smtp.from)?)
        .subject(format!(
            "[baton] {} #{} {}",
            run.target,
            run.id,
            n.status.as_str()
        ))
        .header(ContentType::TEXT_PLAIN);
    for to in &entry.email {
        b = b.to(mailbox(to)?);
    }
    let mut text = format!("Run #{} of {} ended {}.\n", run.id, run.target, n.status);
    if let Some(reason) = &run.reason {
        text.push_str(&format!("Reason: {reason}\n"));
    }
    if let Some(code) = &run.repo {
        text.push_str(&format!("Code: {} at {}", code.repo, code.commit));
        if let Some(branch) = &code.branch {
            text.push_str(&format!(" ({branch})"));
        }
        text.push('\n');
    }
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(json));
    text.push('\n');
    b.body(text)
        .map_err(|e| format!("cannot build the mail of run {}: {e}", run.id))
}
