//! Which library a calling file is: the rule that names the usual ones, so
//! that memory outside the framework's allocator reads as "cuBLAS workspace"
//! rather than "cuMemAlloc_v2".

use crate::report::{file_name, Report, Space};
use serde::Serialize;

/// The rule, as a finding or breakdown cites it.
pub const RULE: &str = "the file that called CUDA (the outermost hooked call's return address): libtorch*/libc10* = PyTorch's allocator, libcublas*/libcublasLt* = cuBLAS, libcudnn* = cuDNN, libnccl* = NCCL, *triton* = Triton, libcudart* = CUDA runtime (its own), anything else by its file name";

/// A library as people name it, from the calling file's path.
pub fn library(path: &str) -> &str {
    let file = file_name(path);
    let starts = |p: &str| file.starts_with(p);
    if starts("libtorch") || starts("libc10") {
        "PyTorch's allocator"
    } else if starts("libcublas") {
        "cuBLAS"
    } else if starts("libcudnn") {
        "cuDNN"
    } else if starts("libnccl") {
        "NCCL"
    } else if path.to_ascii_lowercase().contains("triton") {
        "Triton"
    } else if starts("libcudart") {
        "CUDA runtime"
    } else if starts("libcuda.so") {
        "CUDA driver"
    } else {
        file
    }
}

/// Whether a library is the framework's own allocator.
pub fn is_framework(library: &str) -> bool {
    library == "PyTorch's allocator"
}

/// Live device memory of one library on one device.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LibraryPart {
    pub library: String,
    /// The calling files that make it up, largest first.
    pub files: Vec<String>,
    pub count: u64,
    pub bytes: u64,
    /// The framework's own allocator (the rest is outside it).
    pub framework: bool,
}

/// Live device memory of `device` by calling library, largest first; empty
/// when the report names no callers (an older shim, or one built without
/// frame pointers).
pub fn by_library(r: &Report, device: u32) -> Vec<LibraryPart> {
    if r.callers.is_empty() {
        return Vec::new();
    }
    let mut parts: Vec<LibraryPart> = Vec::new();
    let mut files: Vec<(String, String, u64)> = Vec::new();
    for a in r
        .live
        .allocations
        .iter()
        .filter(|a| a.device == device && a.api.space() == Space::Device)
    {
        let path = r.caller(a.caller).map_or("?", |c| c.file.as_str());
        let lib = library(path);
        match parts.iter_mut().find(|p| p.library == lib) {
            Some(p) => {
                p.count += 1;
                p.bytes += a.size;
            }
            None => parts.push(LibraryPart {
                library: lib.to_string(),
                files: Vec::new(),
                count: 1,
                bytes: a.size,
                framework: is_framework(lib),
            }),
        }
        let name = file_name(path).to_string();
        match files.iter_mut().find(|f| f.0 == lib && f.1 == name) {
            Some(f) => f.2 += a.size,
            None => files.push((lib.to_string(), name, a.size)),
        }
    }
    files.sort_by_key(|f| std::cmp::Reverse(f.2));
    for p in &mut parts {
        p.files = files
            .iter()
            .filter(|f| f.0 == p.library)
            .map(|f| f.1.clone())
            .collect();
    }
    parts.sort_by_key(|p| std::cmp::Reverse(p.bytes));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_libraries_are_named() {
        for (path, want) in [
            ("/x/torch/lib/libc10_cuda.so", "PyTorch's allocator"),
            ("/x/torch/lib/libtorch_cuda.so", "PyTorch's allocator"),
            ("/x/nvidia/cublas/lib/libcublasLt.so.13", "cuBLAS"),
            ("/x/nvidia/cublas/lib/libcublas.so.13", "cuBLAS"),
            ("/x/nvidia/cudnn/lib/libcudnn_ops.so.9", "cuDNN"),
            ("/x/nvidia/nccl/lib/libnccl.so.2", "NCCL"),
            ("/root/.triton/cache/ab/cuda_utils.so", "Triton"),
            ("/x/nvidia/cu13/lib/libcudart.so.13", "CUDA runtime"),
            ("/usr/lib/libcuda.so.1", "CUDA driver"),
            ("/opt/app/bin/server", "server"),
            ("?", "?"),
        ] {
            assert_eq!(library(path), want, "{path}");
        }
        assert!(is_framework(library("libc10_cuda.so")));
        assert!(!is_framework(library("libcublasLt.so.13")));
    }
}
