//! Lays out a runnable build: with `dynamic-backends` (the default), llama.cpp's shared libraries
//! and its CPU variants (one `libggml-cpu-<variant>.so` per instruction-set level) are copied
//! beside the binary, which finds them there (an `$ORIGIN` rpath for the libraries; the server
//! loads the variants from its own directory). So `target/release/` is a self-contained
//! directory that can be copied to another machine or into an image.

use std::path::{Path, PathBuf};
use std::{env, fs};

/// Never shipped: the variant that exists for ggml's AMX kernels, which crash (llama.cpp #20824).
/// cmake/ggml-no-amx.cmake already compiles it without them, which leaves zen4's instruction set,
/// and zen4's own variant serves those CPUs under its own name.
const EXCLUDED_VARIANT: &str = "libggml-cpu-sapphirerapids.so";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let Ok(backends) = env::var("DEP_LLAMA_BACKENDS_DIR") else {
        return; // static build: everything is linked into the binary
    };
    println!("cargo:rustc-link-arg-bins=-Wl,-rpath,$ORIGIN");
    let backends = PathBuf::from(backends);
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <profile dir>/build/<package>-<hash>/out.
    let profile_dir = out_dir.ancestors().nth(3).expect("OUT_DIR sits three levels below the profile directory");
    let libs = backends.parent().expect("the backends directory sits in llama-cpp-sys-2's OUT_DIR").join("lib");
    for dir in [&backends, &libs] {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !name.starts_with("lib") || !name.contains(".so") || name == EXCLUDED_VARIANT {
                continue;
            }
            println!("cargo:rerun-if-changed={}", path.display());
            replace(&path, &profile_dir.join(name));
        }
    }
}

/// Copy (a version symlink such as `libllama.so.0` as the same symlink) into a temporary name,
/// then rename over `to`, so a server running from the old file keeps its mapping intact.
fn replace(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp-copy");
    let _ = fs::remove_file(&tmp);
    match fs::read_link(from) {
        Ok(target) => std::os::unix::fs::symlink(&target, &tmp),
        Err(_) => fs::copy(from, &tmp).map(|_| ()),
    }
    .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), tmp.display()));
    fs::rename(&tmp, to).unwrap_or_else(|e| panic!("renaming {} to {}: {e}", tmp.display(), to.display()));
}
