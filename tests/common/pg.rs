//! A PostgreSQL server of a test's own: `initdb` and `pg_ctl` (Debian's `postgresql` package,
//! under /usr/lib/postgresql/*/bin) in a temporary directory on a free loopback port, run as the
//! `postgres` user when the test runs as root (initdb refuses root). Stopped and removed on drop.
//! A missing PostgreSQL panics: tests that need it never pass by skipping.
//!
//! Use with `#[path = "common/pg.rs"] mod pg;`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The superuser's password.
pub const PASSWORD: &str = "s3cret-pw";

/// A PostgreSQL server of its own, stopped and removed on drop.
pub struct Pg {
    /// The temporary directory (data, socket, log).
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    /// The loopback TCP port it listens on.
    pub port: u16,
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|b| b.join("initdb").exists());
    found.sort();
    found.pop().expect(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): the e2e tests \
         need it (run .ci/run, or apt-get install postgresql)",
    )
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id runs");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Runs a PostgreSQL program as the `postgres` user when root (initdb refuses root).
fn pg_command(bin: &Path, program: &str, args: &[&str]) {
    let exe = bin.join(program);
    let out = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&exe)
            .args(args)
            .output()
    } else {
        Command::new(&exe).args(args).output()
    }
    .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pg {
    pub fn start() -> Pg {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success());
        }
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if is_root() {
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&pwfile)
                .status()
                .unwrap();
        }
        let data = dir.path().join("data");
        pg_command(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "--no-sync",
            ],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Pg { dir, bin, port };
        pg.up();
        pg.sql("CREATE ROLE limited LOGIN PASSWORD 'limited-pw'");
        pg
    }

    pub fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    pub fn up(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        pg_command(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"],
        );
    }

    pub fn down(&self) {
        pg_command(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-m", "fast", "-w", "stop"],
        );
    }

    /// Runs `sql` as the superuser over the socket.
    pub fn sql(&self, sql: &str) {
        let port = self.port.to_string();
        let host = self.dir.path().display().to_string();
        pg_command(
            &self.bin,
            "psql",
            &[
                "-h",
                &host,
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        );
    }

    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| self.down());
    }
}
