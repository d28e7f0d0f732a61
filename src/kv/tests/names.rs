//! Where --model comes from: a local path (winning over a preset of the same
//! name), a Hugging Face id in the local cache, or a preset; and its label.

use crate::kv::source::load_from;
use std::path::{Path, PathBuf};

const LLAMA: &str = include_str!("configs/llama-3.2-1b-instruct.json");

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kvscope-names-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_file_is_labelled_by_its_stem_and_a_directory_by_its_name() {
    let d = scratch("label");
    let file = d.join("my-model.json");
    std::fs::write(&file, LLAMA).unwrap();
    let m = load_from("x", &file, None).unwrap();
    assert_eq!(m.name, "my-model");
    assert!(m.notes[0].contains("local file"), "{:?}", m.notes);
    let dir = d.join("tuned-llama");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), LLAMA).unwrap();
    assert_eq!(load_from("x", &dir, None).unwrap().name, "tuned-llama");
    // config.json says nothing: its directory names it.
    assert_eq!(
        load_from("x", &dir.join("config.json"), None).unwrap().name,
        "tuned-llama"
    );
}

#[test]
fn a_local_directory_wins_over_the_preset_of_the_same_name() {
    let d = scratch("shadow");
    let dir = d.join("llama-3.1-8b");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), LLAMA).unwrap();
    let m = load_from("llama-3.1-8b", &dir, None).unwrap();
    // The 1B config, not the 8B preset.
    assert_eq!(m.num_layers(), 16);
    assert!(
        m.notes[0].contains("local directory") && m.notes[0].contains("wins over the preset"),
        "{:?}",
        m.notes
    );
    let preset = load_from("llama-3.1-8b", &d.join("absent"), None).unwrap();
    assert_eq!(preset.num_layers(), 32);
    assert!(
        preset.notes[0].contains("built-in preset"),
        "{:?}",
        preset.notes
    );
}

#[test]
fn a_hugging_face_id_comes_from_the_local_cache_or_a_one_line_error() {
    let hub = scratch("hub");
    let repo = hub.join("models--meta-llama--Llama-3.2-1B-Instruct");
    let snap = repo.join("snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc123\n").unwrap();
    std::fs::write(snap.join("config.json"), LLAMA).unwrap();
    let id = "meta-llama/Llama-3.2-1B-Instruct";
    let m = load_from(id, Path::new("/nonexistent/kvscope"), Some(hub.clone())).unwrap();
    assert_eq!(m.name, id);
    assert!(m.notes[0].contains("Hugging Face cache"), "{:?}", m.notes);
    let err = load_from(
        "google/gemma-3-27b-it",
        Path::new("/nonexistent/kvscope"),
        Some(hub),
    )
    .unwrap_err();
    assert!(err.contains("not in the Hugging Face cache"), "{err}");
    assert_eq!(err.lines().count(), 1);
    let err = load_from("gpt-7", Path::new("/nonexistent/kvscope"), None).unwrap_err();
    assert!(err.contains("no such file or preset"), "{err}");
}
