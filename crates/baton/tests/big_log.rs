//! A 200 MB binary log: exact size, exact byte ranges, bounded server memory.

mod common;

use common::{Server, id_of, status};

const MIB: u64 = 1024 * 1024;
/// 190 copies of a 1 MiB block of every byte value (NUL, \xff\xfe, newlines...), then one
/// 10 MiB line of `x` without a newline.
const BLOCKS: u64 = 190;
const TAIL: u64 = 10 * MIB;
const TOTAL: u64 = BLOCKS * MIB + TAIL;

fn block_byte(i: u64) -> u8 {
    match i % 64 {
        10 => 0xff,
        11 => 0xfe,
        _ => ((i * 7 + i / 251) % 256) as u8,
    }
}

/// The byte at `pos` of the expected log.
fn expected(pos: u64) -> u8 {
    if pos < BLOCKS * MIB {
        block_byte(pos % MIB)
    } else {
        b'x'
    }
}

const CONFIG: &str = r#"
server:
  local_workers: 2
tasks:
  big:
    command: |
      for i in $(seq 190); do cat "$block"; done
      head -c 10485760 /dev/zero | tr '\0' 'x'
"#;

#[tokio::test(flavor = "multi_thread")]
async fn big_binary_log_is_served_exactly_with_bounded_memory() {
    let s = Server::start(CONFIG);
    let block: Vec<u8> = (0..MIB).map(block_byte).collect();
    assert!(block.contains(&0) && block.windows(2).any(|w| w == [0xff, 0xfe]));
    let block_path = s.root.path().join("block.bin");
    std::fs::write(&block_path, &block).unwrap();

    let id = id_of(
        &s.trigger("big", &[("block", block_path.to_str().unwrap())])
            .await,
    );
    let run = s
        .wait_run_for(id, std::time::Duration::from_secs(120))
        .await;
    assert_eq!(status(&run), "success", "{run:#}");

    // Size header.
    let resp = s
        .http
        .get(s.url(&format!("/runs/{id}/log?length=0")))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["x-log-size"].to_str().unwrap(),
        TOTAL.to_string()
    );
    assert_eq!(resp.headers()["x-job-status"].to_str().unwrap(), "success");

    // Ranges in the middle of the blocks and across the start of the long line.
    for (a, b) in [
        (100 * MIB + 12_345, 101 * MIB + 777),
        (BLOCKS * MIB - 1000, BLOCKS * MIB + 1000),
        (TOTAL - 10, TOTAL - 1),
    ] {
        let resp = s
            .http
            .get(s.url(&format!("/runs/{id}/log")))
            .bearer_auth(&s.token)
            .header("Range", format!("bytes={a}-{b}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 206, "Range bytes={a}-{b}");
        assert_eq!(
            resp.headers()["content-range"].to_str().unwrap(),
            format!("bytes {a}-{b}/{TOTAL}")
        );
        let body = resp.bytes().await.unwrap();
        let want: Vec<u8> = (a..=b).map(expected).collect();
        assert_eq!(body.len(), want.len(), "Range bytes={a}-{b}: length");
        assert!(body[..] == want[..], "Range bytes={a}-{b}: wrong bytes");
    }

    // The offset/length query gives the same bytes.
    let (a, n) = (55 * MIB + 3, 4096u64);
    let body = s
        .http
        .get(s.url(&format!("/runs/{id}/log?offset={a}&length={n}")))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let want: Vec<u8> = (a..a + n).map(expected).collect();
    assert!(body[..] == want[..], "offset/length: wrong bytes");

    // The whole log, streamed, byte for byte.
    let mut resp = s
        .http
        .get(s.url(&format!("/runs/{id}/log")))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut pos = 0u64;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        for (k, byte) in chunk.iter().enumerate() {
            let p = pos + k as u64;
            if *byte != expected(p) {
                panic!(
                    "byte {p} of the log is {byte:#x}, expected {:#x}",
                    expected(p)
                );
            }
        }
        pos += chunk.len() as u64;
    }
    assert_eq!(pos, TOTAL, "full log length");

    let hwm = s.vm_hwm_kib();
    assert!(
        hwm < 150 * 1024,
        "the server's peak RSS (VmHWM) is {hwm} KiB, expected below 150 MiB"
    );
}
