//! Build steps of the `switchyard` crate:
//! - the SQL migrations are embedded at compile time (`sqlx::migrate!`): rebuild when they change;
//! - the dashboard's browser bundle: `ui/client` is built for `wasm32-unknown-unknown` by a
//!   nested cargo in its own target dir, `wasm-bindgen` (as a library) makes its JS glue, and the
//!   files are listed in `$OUT_DIR/ui_assets.rs` for the binary to embed.
//!
//! `SWITCHYARD_SKIP_WASM=1` skips the bundle for quick backend iterations: the dashboard is then
//! served without hydration (every page and form still works, as with JavaScript off).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const PROFILE: &str = "wasm-release";

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
    for p in [
        "../ui/app/src",
        "../ui/app/Cargo.toml",
        "../ui/client",
        "../Cargo.lock",
        "../Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-env-changed=SWITCHYARD_SKIP_WASM");
    println!("cargo:rerun-if-env-changed=SWITCHYARD_REQUIRE_WASM");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let listing = out.join("ui_assets.rs");
    if std::env::var("SWITCHYARD_SKIP_WASM").is_ok_and(|v| v == "1") {
        println!("cargo:warning=SWITCHYARD_SKIP_WASM=1: the dashboard is built without its browser bundle");
        write(
            &listing,
            "/// Skipped (`SWITCHYARD_SKIP_WASM=1`).\npub const BUNDLE: Option<Bundle> = None;\n",
        );
        return;
    }
    if !wasm_target_installed() {
        // A toolchain without the wasm target still builds a working dashboard (served without
        // hydration); the test suite requires the bundle.
        if std::env::var("SWITCHYARD_REQUIRE_WASM").is_ok_and(|v| v == "1") {
            panic!("the dashboard bundle needs the wasm target: `rustup target add {WASM_TARGET}`");
        }
        println!(
            "cargo:warning=the {WASM_TARGET} target is not installed (`rustup target add {WASM_TARGET}`): \
             the dashboard is built without its browser bundle"
        );
        write(
            &listing,
            "/// No wasm target.\npub const BUNDLE: Option<Bundle> = None;\n",
        );
        return;
    }
    let workspace = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"))
        .parent()
        .expect("workspace")
        .to_path_buf();
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d).join("ui-wasm"),
        None => workspace.join("target").join("ui-wasm"),
    };
    let wasm = build_wasm(&workspace, &target_dir);
    let bytes = std::fs::read(&wasm).unwrap_or_else(|e| panic!("reading {}: {e}", wasm.display()));
    let hash = hex::encode(&Sha256::digest(&bytes)[..8]);
    let name = format!("switchyard-{hash}");
    // The glue is a function of the wasm alone: an unchanged wasm reuses it.
    let pkg = target_dir.join("pkg").join(&hash);
    if !pkg.join(format!("{name}.js")).exists() {
        let tmp = target_dir.join("pkg").join(format!("{hash}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        wasm_bindgen_cli_support::Bindgen::new()
            .input_bytes(&name, bytes)
            .out_name(&name)
            .web(true)
            .expect("web target")
            .typescript(false)
            .generate(&tmp)
            .unwrap_or_else(|e| panic!("wasm-bindgen: {e:#}"));
        let _ = std::fs::remove_dir_all(&pkg);
        std::fs::rename(&tmp, &pkg).expect("moving the bundle into place");
    }
    let mut files = Vec::new();
    collect(&pkg, &pkg, &mut files);
    files.sort();
    let mut src = String::from("/// The bundle's output name and its files (path under the package dir, bytes).\n");
    let _ = writeln!(
        src,
        "pub const BUNDLE: Option<Bundle> = Some(Bundle {{ name: {name:?}, files: &["
    );
    for (rel, abs) in &files {
        let _ = writeln!(src, "    ({rel:?}, include_bytes!({:?})),", abs.display().to_string());
    }
    src.push_str("] });\n");
    write(&listing, &src);
}

/// Whether the toolchain has the standard library for wasm32.
fn wasm_target_installed() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(WASM_TARGET)
        .join("lib")
        .is_dir()
}

/// Builds `switchyard-ui-client` for wasm32 and returns the `.wasm` file.
fn build_wasm(workspace: &Path, target_dir: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--locked", "-p", "switchyard-ui-client", "--lib"])
        .args(["--target", WASM_TARGET, "--profile", PROFILE])
        .arg("--target-dir")
        .arg(target_dir);
    // What the outer cargo set for this build script (its target, flags, wrappers such as
    // clippy-driver, its jobserver) must not reach the nested build.
    for (k, _) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        let keep = matches!(k, "CARGO_HOME" | "CARGO_NET_OFFLINE" | "CARGO_TERM_COLOR");
        let inherited = k.starts_with("CARGO_")
            || k.starts_with("__CARGO")
            || k.starts_with("DEP_")
            || matches!(
                k,
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "RUSTC"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "RUSTDOC"
                    | "CLIPPY_ARGS"
                    | "CLIPPY_CONF_DIR"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "NUM_JOBS"
                    | "MAKEFLAGS"
                    | "MFLAGS"
                    | "RUSTC_LINKER"
            );
        if inherited && !keep {
            cmd.env_remove(k);
        }
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for the dashboard bundle: {e}"));
    if !status.success() {
        panic!(
            "building the dashboard bundle failed ({status}). It needs the wasm target: \
             `rustup target add {WASM_TARGET}`. Set SWITCHYARD_SKIP_WASM=1 to build without it."
        );
    }
    target_dir
        .join(WASM_TARGET)
        .join(PROFILE)
        .join("switchyard_ui_client.wasm")
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            collect(root, &p, files);
        } else {
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            files.push((rel, p));
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
