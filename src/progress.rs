//! Progress on a terminal: commands that can run longer than a few seconds show a bar on
//! stderr when it is a terminal (and not under CI), and nothing otherwise.

/// Whether stderr is a person's terminal.
pub fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// A bar of `len` steps counting `unit`; hidden when not interactive.
#[cfg_attr(madsim, allow(dead_code, reason = "the simulation build's commands draw their own bars"))]
pub fn bar(len: u64, unit: &str) -> indicatif::ProgressBar {
    if !interactive() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    let template = format!("{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit}  {{per_sec}}  eta {{eta}}");
    bar.set_style(indicatif::ProgressStyle::with_template(&template).expect("a valid template").progress_chars("=> "));
    bar
}
