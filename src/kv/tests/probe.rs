//! Temporary: prints figures for every config in configs/.
use super::support::token_bytes;
use crate::kv::model::from_config;

#[test]
fn probe() {
    let mut names: Vec<_> = std::fs::read_dir("src/kv/tests/configs").unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for p in names {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        match from_config("x", &v, None) {
            Ok(m) => eprintln!("PROBE {:40} kv/token {:>9} params {:>16} layers {} attn {} notes {:?}", p.file_name().unwrap().to_str().unwrap(), token_bytes(&m, 1).0, m.params.total(), m.layers.len(), m.attention_layers(), m.notes),
            Err(e) => eprintln!("PROBE {:?} ERR {e}", p),
        }
    }
}
