// Link librepq as pkg-config describes it (PKG_CONFIG_PATH selects an installed copy),
// without the pkg-config crate: the crate has no registry dependency.
use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG");
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
    let output = Command::new(&pkg_config)
        .args(["--libs", "repq"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {}", pkg_config, e));
    if !output.status.success() {
        panic!(
            "{} --libs repq failed (is librepq installed, PKG_CONFIG_PATH set?): {}",
            pkg_config,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    for flag in String::from_utf8_lossy(&output.stdout).split_whitespace() {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={}", dir);
        } else if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib={}", lib);
        }
    }
}
