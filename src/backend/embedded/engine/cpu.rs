//! Which of llama.cpp's CPU kernels this process runs. With `dynamic-backends` (the default build)
//! ggml scores each `libggml-cpu-<variant>.so` beside the binary against this CPU when the backend
//! starts and loads the best; what it picked is read back here for the start-up log and /health,
//! as llama-server's system-info line shows it. AMX kernels are refused outright.

use std::ffi::{c_char, CStr};
use std::path::Path;

/// The CPU kernels in use.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CpuBackend {
    /// The variant ggml chose for this CPU (`haswell`, `zen4`, ...); `built-in` when the kernels
    /// are linked into the binary (a build without `dynamic-backends`).
    pub variant: String,
    /// What the kernels were compiled to use (`AVX2`, `AVX512_VNNI`, ...; `NAME=value` when the
    /// value is not just on).
    pub features: Vec<String>,
}

impl CpuBackend {
    /// Read what ggml loaded. Errors when no CPU backend is registered (no variant was found)
    /// or when it carries AMX kernels, which segfault on the first matrix product (llama.cpp
    /// #20824): a server that cannot decode must not start.
    pub fn detect(searched: &Path) -> anyhow::Result<Self> {
        let features = features().ok_or_else(|| {
            anyhow::anyhow!(
                "no llama.cpp CPU backend was loaded from {}: the libggml-cpu-*.so files built beside the binary must stay beside it (or pass --backends-dir)",
                searched.display()
            )
        })?;
        let variant = loaded_variant().unwrap_or_else(|| "built-in".into());
        if let Some(amx) = features.iter().find(|f| f.starts_with("AMX")) {
            anyhow::bail!(
                "refusing the llama.cpp CPU backend `{variant}`: it was built with {amx}, and ggml's AMX kernels crash (llama.cpp #20824)"
            );
        }
        Ok(Self { variant, features })
    }
}

/// The registered CPU backend's feature list, or None when there is no CPU backend.
fn features() -> Option<Vec<String>> {
    // SAFETY: plain lookups in ggml's backend registry; the feature array is static in the loaded
    // library and ends with a null name.
    unsafe {
        let reg = llama_cpp_sys_2::ggml_backend_reg_by_name(c"CPU".as_ptr());
        if reg.is_null() {
            return None;
        }
        let proc = llama_cpp_sys_2::ggml_backend_reg_get_proc_address(reg, c"ggml_backend_get_features".as_ptr());
        if proc.is_null() {
            return Some(Vec::new());
        }
        let get: unsafe extern "C" fn(llama_cpp_sys_2::ggml_backend_reg_t) -> *const llama_cpp_sys_2::ggml_backend_feature =
            std::mem::transmute(proc);
        let mut out = Vec::new();
        let mut f = get(reg);
        while !f.is_null() && !(*f).name.is_null() {
            let text = |p: *const c_char| CStr::from_ptr(p).to_string_lossy().into_owned();
            let (name, value) = (text((*f).name), text((*f).value));
            out.push(if value == "1" { name } else { format!("{name}={value}") });
            f = f.add(1);
        }
        Some(out)
    }
}

/// The variant whose library is mapped into this process (`/proc/self/maps` names the file the
/// dynamic loader opened, whichever directory it came from).
fn loaded_variant() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| variant_of(line.rsplit(' ').next()?))
}

/// `.../libggml-cpu-haswell.so` -> `haswell`.
fn variant_of(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let rest = file.strip_prefix("libggml-cpu-")?;
    Some(rest.strip_suffix(".so")?.to_string())
}

#[cfg(test)]
mod tests {
    use super::variant_of;

    #[test]
    fn variant_from_library_path() {
        assert_eq!(variant_of("/opt/thinkscale/libggml-cpu-haswell.so").as_deref(), Some("haswell"));
        assert_eq!(variant_of("/x/libggml-cpu-x64.so").as_deref(), Some("x64"));
        assert_eq!(variant_of("/x/libggml-cpu.so"), None);
        assert_eq!(variant_of("/x/libggml-base.so"), None);
        assert_eq!(variant_of("[heap]"), None);
    }
}
