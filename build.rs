//! Builds the stand-in CUDA libraries and the C test clients in native/.
//!
//! They land in OUT_DIR/native and are copied next to the binaries
//! (target/<profile>/kvscope-native) so that `kvscope` finds them relative
//! to its own location; tests use the KVSCOPE_NATIVE_DIR compile-time path.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

const CLIENTS: &[&str] = &[
    "serve_sim",
    "scripted",
    "threads",
    "untracked",
    "errors",
    "probe",
    "bench_client",
    "pluggable_client",
    "stress",
    "crossfree",
    "signals",
    "caching_sim",
    "caching_selftest",
    "hold",
];

/// Clients built from more than their own file: (client, other sources in native/clients).
const CLIENT_SOURCES: &[(&str, &[&str])] = &[
    ("caching_sim", &["caching.c"]),
    ("caching_selftest", &["caching.c"]),
];

/// Test clients in C++ (native/clients/*.cpp).
const CXX_CLIENTS: &[&str] = &["exits"];

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let native = out.join("native");
    fs::create_dir_all(&native).expect("create native dir");
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let src = root.join("native");
    println!("cargo:rerun-if-changed=native");

    let cc = cc::Build::new().get_compiler();
    let compile = |args: &[String], what: &str| {
        let mut cmd = cc.to_command();
        cmd.args([
            "-O2",
            "-g",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-std=gnu11",
            "-pthread",
        ]);
        cmd.arg(format!("-I{}", src.join("include").display()));
        cmd.args(args);
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("running the C compiler for {what}: {e}"));
        assert!(status.success(), "building {what} failed");
    };
    let files = |dir: &Path, names: &[&str]| -> Vec<String> {
        names
            .iter()
            .map(|n| dir.join(n).display().to_string())
            .collect()
    };

    let cuda = src.join("cuda");
    let mut args = vec![
        "-shared".into(),
        "-fPIC".into(),
        "-fvisibility=hidden".into(),
        format!("-I{}", cuda.display()),
        "-Wl,-soname,libcuda.so.1".into(),
        "-o".into(),
        native.join("libcuda.so.1").display().to_string(),
    ];
    args.extend(files(
        &cuda,
        &[
            "sim_map.c",
            "sim_state.c",
            "sim_mem.c",
            "sim_pool.c",
            "sim_vmm.c",
            "sim_procaddr.c",
            "sim_usage.c",
        ],
    ));
    compile(&args, "libcuda.so.1");

    let mut args = vec![
        "-shared".into(),
        "-fPIC".into(),
        "-fvisibility=hidden".into(),
        "-Wl,-soname,libcudart.so.12".into(),
        // Its dlopen("libcuda.so.1") finds the stand-in driver beside it.
        "-Wl,-rpath,$ORIGIN".into(),
        format!("-Wl,--version-script={}", cuda.join("cudart.map").display()),
        "-o".into(),
        native.join("libcudart.so.12").display().to_string(),
    ];
    args.extend(files(&cuda, &["libcudart.c"]));
    args.push("-ldl".into());
    compile(&args, "libcudart.so.12");

    // The stand-in NVML: what the reader's device-level probe dlopens.
    compile(
        &[
            "-shared".into(),
            "-fPIC".into(),
            "-fvisibility=hidden".into(),
            "-Wl,-soname,libnvidia-ml.so.1".into(),
            "-o".into(),
            native.join("libnvidia-ml.so.1").display().to_string(),
            src.join("nvml").join("libnvml.c").display().to_string(),
        ],
        "libnvidia-ml.so.1",
    );

    // Link names as a real program sees them: -lcudart -lcuda.
    for (link, real) in [
        ("libcuda.so", "libcuda.so.1"),
        ("libcudart.so", "libcudart.so.12"),
    ] {
        let l = native.join(link);
        let _ = fs::remove_file(&l);
        std::os::unix::fs::symlink(real, &l).expect("symlink");
    }

    let clients = src.join("clients");
    for name in CLIENTS {
        let mut args = vec![clients.join(format!("{name}.c")).display().to_string()];
        for (_, more) in CLIENT_SOURCES.iter().filter(|(n, _)| n == name) {
            args.extend(files(&clients, more));
        }
        args.extend([
            format!("-I{}", clients.display()),
            "-o".into(),
            native.join(name).display().to_string(),
            format!("-L{}", native.display()),
            "-Wl,-rpath,$ORIGIN".into(),
            "-lcudart".into(),
            "-lcuda".into(),
            "-ldl".into(),
            "-lm".into(),
        ]);
        compile(&args, name);
    }

    // A program that reaches CUDA only through dlopen, and its plug-in library.
    compile(
        &[
            clients.join("late.c").display().to_string(),
            format!("-I{}", clients.display()),
            "-o".into(),
            native.join("late").display().to_string(),
            "-Wl,-rpath,$ORIGIN".into(),
            "-ldl".into(),
        ],
        "late",
    );
    compile(
        &[
            "-shared".into(),
            "-fPIC".into(),
            "-fvisibility=hidden".into(),
            clients.join("kvplugin.c").display().to_string(),
            format!("-I{}", clients.display()),
            "-o".into(),
            native.join("libkvplugin.so").display().to_string(),
            "-Wl,-rpath,$ORIGIN".into(),
            "-ldl".into(),
        ],
        "libkvplugin.so",
    );

    // The caching-allocator model as a library, for the stand-in
    // OpenAI-compatible server of the diagnose tests (Python, through ctypes).
    compile(
        &[
            "-shared".into(),
            "-fPIC".into(),
            clients.join("caching.c").display().to_string(),
            format!("-I{}", clients.display()),
            "-o".into(),
            native.join("libcaching.so").display().to_string(),
            format!("-L{}", native.display()),
            "-Wl,-rpath,$ORIGIN".into(),
            "-lcudart".into(),
            "-ldl".into(),
        ],
        "libcaching.so",
    );

    // Who allocated it: a program, a library it links, one it dlopen()s (the
    // same source under two names), and a program with the runtime inside.
    for lib in ["libwholib.so", "libwhoplug.so"] {
        compile(
            &[
                "-shared".into(),
                "-fPIC".into(),
                "-fvisibility=hidden".into(),
                clients.join("wholib.c").display().to_string(),
                format!("-I{}", clients.display()),
                "-o".into(),
                native.join(lib).display().to_string(),
                format!("-L{}", native.display()),
                "-Wl,-rpath,$ORIGIN".into(),
                "-lcudart".into(),
            ],
            lib,
        );
    }
    compile(
        &[
            clients.join("who_app.c").display().to_string(),
            format!("-I{}", clients.display()),
            "-o".into(),
            native.join("who_app").display().to_string(),
            format!("-L{}", native.display()),
            "-Wl,-rpath,$ORIGIN".into(),
            "-lwholib".into(),
            "-lcudart".into(),
            "-lcuda".into(),
            "-ldl".into(),
        ],
        "who_app",
    );
    compile(
        &[
            clients.join("who_static.c").display().to_string(),
            cuda.join("libcudart.c").display().to_string(),
            format!("-I{}", clients.display()),
            "-fvisibility=hidden".into(),
            "-o".into(),
            native.join("who_static").display().to_string(),
            "-Wl,-rpath,$ORIGIN".into(),
            "-ldl".into(),
        ],
        "who_static",
    );

    // C++ clients (uncaught exceptions): built when a C++ compiler is there;
    // the tests that need them say so when it is not.
    let cxx = cc::Build::new()
        .cpp(true)
        .cargo_warnings(false)
        .try_get_compiler();
    for name in CXX_CLIENTS {
        let Ok(cxx) = &cxx else {
            println!("cargo:warning=no C++ compiler: {name} not built");
            break;
        };
        let mut cmd = cxx.to_command();
        cmd.args(["-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread"])
            .arg(format!("-I{}", src.join("include").display()))
            .arg(format!("-I{}", clients.display()))
            .arg(clients.join(format!("{name}.cpp")))
            .arg("-o")
            .arg(native.join(name))
            .arg(format!("-L{}", native.display()))
            .args(["-Wl,-rpath,$ORIGIN", "-lcudart", "-lcuda", "-ldl"]);
        match cmd.status() {
            Ok(s) if s.success() => {}
            _ => println!("cargo:warning=building {name} with the C++ compiler failed"),
        }
    }

    // A copy beside the binaries: target/<profile>/kvscope-native.
    if let Some(profile_dir) = out.ancestors().nth(3) {
        let beside = profile_dir.join("kvscope-native");
        let _ = fs::remove_dir_all(&beside);
        if fs::create_dir_all(&beside).is_ok() {
            for entry in fs::read_dir(&native).expect("read native dir").flatten() {
                let p = entry.path();
                let dst = beside.join(entry.file_name());
                if p.is_symlink() {
                    if let Ok(t) = fs::read_link(&p) {
                        let _ = std::os::unix::fs::symlink(t, dst);
                    }
                } else {
                    let _ = fs::copy(&p, dst);
                }
            }
        }
    }

    // KVSCOPE_NO_CALLER=1 builds hooks without caller capture: the
    // benchmark's baseline for its cost (src/shim/hooks/caller.rs).
    println!("cargo:rustc-check-cfg=cfg(kvscope_no_caller)");
    println!("cargo:rerun-if-env-changed=KVSCOPE_NO_CALLER");
    if env::var_os("KVSCOPE_NO_CALLER").is_some_and(|v| v == "1") {
        println!("cargo:rustc-cfg=kvscope_no_caller");
        println!("cargo:warning=KVSCOPE_NO_CALLER=1: allocations carry no caller");
    }

    // The shim stays loaded once loaded: threads, atexit and atfork handlers point into it.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rustc-env=KVSCOPE_NATIVE_DIR={}", native.display());
}
