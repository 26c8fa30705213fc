//! Server-Sent Events as a test reads them off a response body.

/// One event: its name (`message` when unnamed), its data lines joined by `\n`, and its id.
#[derive(Debug)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

/// Takes the first complete event off the front of `buf`, skipping keep-alive comments; `None`
/// when no complete event is buffered (what is left stays for the next call).
pub fn take_event(buf: &mut String) -> Option<SseEvent> {
    while let Some(end) = buf.find("\n\n") {
        let raw: String = buf.drain(..end + 2).collect();
        let mut ev = SseEvent {
            event: "message".into(),
            data: String::new(),
            id: None,
        };
        let mut any = false;
        for line in raw.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                ev.event = v.trim_start().to_string();
                any = true;
            } else if let Some(v) = line.strip_prefix("data:") {
                if !ev.data.is_empty() {
                    ev.data.push('\n');
                }
                ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                any = true;
            } else if let Some(v) = line.strip_prefix("id:") {
                ev.id = Some(v.trim_start().to_string());
            }
        }
        if any {
            return Some(ev);
        }
    }
    None
}

/// Takes every complete event off the front of `buf`.
pub fn take_events(buf: &mut String) -> Vec<SseEvent> {
    std::iter::from_fn(|| take_event(buf)).collect()
}
