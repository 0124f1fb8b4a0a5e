//! Addresses as an operator writes them: a transcoder given an address it cannot use exits at once
//! saying what to write (no retry loop); a node takes a host name or `:PORT` to listen on.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_zerohop");

#[test]
fn an_unusable_orchestrator_address_ends_the_transcoder_at_once_saying_what_to_write() {
    for (addr, says) in [
        ("127.0.0.1", "has no port"),
        ("https://orch.example.net:8935", "is a URL"),
        ("orch.example.net:http", "is not a port"),
        ("2001:db8::5:8935", "is not HOST:PORT"),
    ] {
        let t0 = Instant::now();
        let o = Command::new(BIN)
            .args(["transcoder", "--orch-addr", addr, "--orch-cert-sha256", &"ab".repeat(32)])
            .env("ZEROHOP_ORCH_SECRET", "s")
            .stdin(Stdio::null())
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{addr}: {stderr}");
        assert!(t0.elapsed() < Duration::from_secs(10), "{addr}: at once, no retry loop");
        assert!(stderr.contains(says) && stderr.contains("HOST:PORT"), "{addr}: {stderr}");
    }
}

#[test]
fn a_node_listens_on_a_host_name_or_a_bare_port() {
    let dir = std::env::temp_dir().join(format!("zerohop-addresses-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for (addr, expect) in [("localhost:0", "serving on 127.0.0.1:"), (":0", "serving on 0.0.0.0:")] {
        let log = dir.join("node.log");
        let mut child = Command::new(BIN)
            .args(["combined", "--service-addr", addr, "--data-dir"])
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn");
        let t0 = Instant::now();
        let text = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("serving on") || t0.elapsed() > Duration::from_secs(20) {
                break text;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        child.kill().ok();
        child.wait().ok();
        assert!(text.contains(expect), "{addr}: {text}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
