//! The loopback mail kit (`../shared/mail-test`: Dovecot + OpenSMTPD from Debian packages),
//! shared by the mail tests of `portcullis-mail` and of the gateway. Its ports are fixed: the
//! tests using it run one at a time (`.config/nextest.toml`, group `mail-kit`).

#![allow(dead_code, reason = "each test binary uses part of it")]

use std::path::PathBuf;

/// portcullis-mail's flags for the kit's servers: plaintext, on loopback.
pub const PLAINTEXT: [&str; 8] = [
    "--imap",
    "127.0.0.1:10143",
    "--imap-security",
    "none",
    "--smtp",
    "127.0.0.1:10587",
    "--smtp-security",
    "none",
];

/// Python: bob's messages with subject `argv[1]`, counted over IMAP.
pub const COUNT_BOB: &str = r#"
import imaplib, sys
im = imaplib.IMAP4("127.0.0.1", 10143); im.login("bob@example.test", "bobpass"); im.select("INBOX")
print(len(im.search(None, "SUBJECT", '"%s"' % sys.argv[1])[1][0].split()))
"#;

/// Runs a Python `script` with `args`; its output. It must succeed.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits up to 20 s for `check` to hold (mail takes a moment to arrive); fails naming `what`.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The kit's folder (beside the repository, as CI places `shared/`).
pub fn kit() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/mail-test")
}

/// The kit's servers, stopped on drop.
pub struct MailServer {
    /// Where it keeps its config, mail and logs.
    pub dir: tempfile::TempDir,
}

impl MailServer {
    /// Starts the kit's servers on their loopback ports.
    pub fn start() -> MailServer {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("bash")
            .arg(kit().join("mailtest-up.sh"))
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the mail kit did not start (apt-get install dovecot-imapd dovecot-lmtpd dovecot-submissiond opensmtpd): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        MailServer { dir }
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("sh")
            .arg(kit().join("mailtest-down.sh"))
            .arg(self.dir.path())
            .status();
        // The servers take a moment to exit: wait until the kit's ports are free, so the next
        // test's servers are the ones answering.
        for _ in 0..100 {
            let busy = [10143u16, 10024, 10587, 10026, 10993]
                .iter()
                .any(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
            if !busy {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
