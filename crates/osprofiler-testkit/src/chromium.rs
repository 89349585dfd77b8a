//! Headless Debian Chromium, to run the HTML report's scripts and look at it.

use crate::{TempDir, process};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);

/// The flags of `shared/ORACLES.md`, less `--user-data-dir` (a fresh one per run).
/// The background-networking ones matter: this machine's network is closed.
const FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Headless Chromium (Debian package `chromium`), one fresh profile per run, killed with
/// its helper processes after 60 s.
///
/// ```no_run
/// use osprofiler_testkit::{need, Chromium, TempDir};
///
/// let Some(chromium) = need("chromium", Chromium::locate()) else { return };
/// let dir = TempDir::new();
/// let page = dir.join("report.html");
/// std::fs::write(&page, "<body><script>document.body.textContent = 'ok'</script></body>").unwrap();
/// let dom = chromium.dump_dom(&page).unwrap(); // the DOM after the scripts ran
/// chromium.screenshot(&page, &dir.join("report.png"), 1400, 900).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Chromium {
    exe: PathBuf,
}

impl Chromium {
    /// `chromium` from `PATH`, else `/usr/bin/chromium`, checked with `--version` (once per
    /// test process).
    pub fn locate() -> Result<Chromium, String> {
        static LOCATED: OnceLock<Result<Chromium, String>> = OnceLock::new();
        LOCATED.get_or_init(Chromium::find).clone()
    }

    fn find() -> Result<Chromium, String> {
        let on_path = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file());
        let exe = on_path
            .or_else(|| Some(PathBuf::from("/usr/bin/chromium")).filter(|p| p.is_file()))
            .ok_or(
                "chromium not found on PATH nor at /usr/bin/chromium (Debian package \
                    chromium; scripts/test-all installs it)",
            )?;
        let mut cmd = Command::new(&exe);
        cmd.arg("--version");
        let version = process::run_ok("chromium --version", cmd, None, Duration::from_secs(30))?;
        if !version.contains("Chromium") {
            return Err(format!("{} --version said {version:?}", exe.display()));
        }
        Ok(Chromium { exe })
    }

    /// The executable.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// Loads `file` and returns the DOM serialized after its scripts ran (`--dump-dom`).
    pub fn dump_dom(&self, file: &Path) -> Result<String, String> {
        let dom = self.run(&["--dump-dom".to_string(), file_url(file)?])?;
        if dom.trim().is_empty() {
            return Err(format!(
                "chromium dumped an empty DOM for {}",
                file.display()
            ));
        }
        Ok(dom)
    }

    /// Loads `file` in a `width`×`height` window and saves a PNG picture of it at `out`.
    pub fn screenshot(
        &self,
        file: &Path,
        out: &Path,
        width: u32,
        height: u32,
    ) -> Result<(), String> {
        let out_abs = absolute(out)?;
        let _ = std::fs::remove_file(&out_abs);
        self.run(&[
            format!("--screenshot={}", out_abs.display()),
            format!("--window-size={width},{height}"),
            file_url(file)?,
        ])?;
        match std::fs::metadata(&out_abs) {
            Ok(m) if m.len() > 0 => Ok(()),
            _ => Err(format!(
                "chromium wrote no screenshot at {}",
                out_abs.display()
            )),
        }
    }

    /// Runs Chromium with the fixed flags, a fresh `--user-data-dir`, then `args`; returns
    /// stdout. A non-zero exit is an error that includes stderr.
    pub fn run(&self, args: &[String]) -> Result<String, String> {
        let profile = TempDir::try_new()?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args);
        process::run_ok("chromium", cmd, None, TIMEOUT)
    }
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `file:///…` for an existing file, percent-encoding what a URL path cannot hold.
fn file_url(path: &Path) -> Result<String, String> {
    let abs = path
        .canonicalize()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut url = String::from("file://");
    for &b in abs.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::need;

    #[test]
    fn url_encoding() {
        let dir = TempDir::new();
        let f = dir.join("a b#c.html");
        std::fs::write(&f, "").unwrap();
        let url = file_url(&f).unwrap();
        assert!(
            url.starts_with("file:///") && url.ends_with("/a%20b%23c.html"),
            "{url}"
        );
    }

    #[test]
    fn dumps_dom_after_scripts_and_screenshots() {
        let Some(chromium) = need("chromium", Chromium::locate()) else {
            return;
        };
        let dir = TempDir::new();
        let page = dir.join("page.html");
        std::fs::write(
            &page,
            "<!doctype html><html><body><script>\
             const p = document.createElement('p'); p.id = 'out';\
             p.textContent = 'written by ' + 'script ' + (6 * 7);\
             document.body.appendChild(p);</script></body></html>",
        )
        .unwrap();
        let dom = chromium.dump_dom(&page).unwrap();
        assert!(
            dom.contains(r#"<p id="out">written by script 42</p>"#),
            "{dom}"
        );

        let png = dir.join("page.png");
        chromium.screenshot(&page, &png, 320, 200).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        // IHDR: width and height, big-endian, at bytes 16..24.
        assert_eq!(&bytes[16..24], &[0, 0, 1, 64, 0, 0, 0, 200]);
    }
}
