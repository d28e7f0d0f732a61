//! What a config.json leaves out, its config class fills in: Hugging Face
//! saves only the fields that differ from the class defaults (google/gemma-3-27b-it's
//! text_config has no vocab_size nor max_position_embeddings). kvscope reads
//! the same defaults, per `model_type`, and says when it used one.
//!
//! The values are those of the transformers config classes in release
//! v4.57.0 (`models/<type>/configuration_<type>.py`), for the fields kvscope
//! reads. Only a field that is absent is filled: a field given as null keeps
//! its meaning (`sliding_window: null` is "no window"). Qwen2MoeConfig,
//! Qwen3MoeConfig, Qwen3NextConfig, GptOssConfig, Llama4TextConfig, Olmo3Config and
//! CohereConfig were read from the transformers source as the search tools
//! hold it (the main branch, and v4.40.0 for Cohere), not from the v4.57.0
//! tag itself; their values for the fields here are the ones the verbatim
//! configs in the tests agree with.

use serde_json::{Map, Value};

/// The transformers release the defaults below come from.
pub const TRANSFORMERS_VERSION: &str = "4.57.0";

#[derive(Clone, Copy)]
enum Def {
    U(u64),
    B(bool),
}

use Def::{B, U};

struct Class {
    model_types: &'static [&'static str],
    name: &'static str,
    fields: &'static [(&'static str, Def)],
}

/// Fields read under other names too: a config that has any of them has the field.
const SPELLINGS: &[&[&str]] = &[
    &["vocab_size", "padded_vocab_size"],
    &["hidden_size", "n_embd", "d_model"],
    &["num_hidden_layers", "n_layer", "num_layers"],
    &["num_attention_heads", "n_head", "num_heads"],
    &["num_key_value_heads", "num_kv_heads", "n_head_kv"],
    &["max_position_embeddings", "n_positions", "max_seq_len"],
    &["intermediate_size", "ffn_hidden_size", "n_inner", "ffn_dim"],
];

const CLASSES: &[Class] = &[
    Class {
        model_types: &["llama"],
        name: "LlamaConfig",
        fields: &[
            ("vocab_size", U(32000)),
            ("hidden_size", U(4096)),
            ("intermediate_size", U(11008)),
            ("num_hidden_layers", U(32)),
            ("num_attention_heads", U(32)),
            ("max_position_embeddings", U(2048)),
            ("tie_word_embeddings", B(false)),
        ],
    },
    Class {
        model_types: &["mistral"],
        name: "MistralConfig",
        fields: &[
            ("vocab_size", U(32000)),
            ("hidden_size", U(4096)),
            ("intermediate_size", U(14336)),
            ("num_hidden_layers", U(32)),
            ("num_attention_heads", U(32)),
            ("num_key_value_heads", U(8)),
            ("max_position_embeddings", U(131072)),
            ("sliding_window", U(4096)),
            ("tie_word_embeddings", B(false)),
        ],
    },
    Class {
        model_types: &["mixtral"],
        name: "MixtralConfig",
        fields: &[
            ("vocab_size", U(32000)),
            ("hidden_size", U(4096)),
            ("intermediate_size", U(14336)),
            ("num_hidden_layers", U(32)),
            ("num_attention_heads", U(32)),
            ("num_key_value_heads", U(8)),
            ("max_position_embeddings", U(131072)),
            ("num_local_experts", U(8)),
            ("num_experts_per_tok", U(2)),
            ("tie_word_embeddings", B(false)),
        ],
    },
    Class {
        model_types: &["qwen2"],
        name: "Qwen2Config",
        fields: &[
            ("vocab_size", U(151936)),
            ("hidden_size", U(4096)),
            ("intermediate_size", U(22016)),
            ("num_hidden_layers", U(32)),
            ("num_attention_heads", U(32)),
            ("num_key_value_heads", U(32)),
            ("max_position_embeddings", U(32768)),
            ("use_sliding_window", B(false)),
            ("tie_word_embeddings", B(false)),
        ],
    },
    Class {
        model_types: &["qwen3"],
        name: "Qwen3Config",
        fields: &[
            ("vocab_size", U(151936)),
            ("hidden_size", U(4096)),
            ("intermediate_size", U(22016)),
            ("num_hidden_layers", U(32)),
            ("num_attention_heads", U(32)),
            ("num_key_value_heads", U(32)),
            ("head_dim", U(128)),
            ("max_position_embeddings", U(32768)),
            ("use_sliding_window", B(false)),
            ("tie_word_embeddings", B(false)),
        ],
    },
    Class {
        model_types: &["gemma"],
        name: "GemmaConfig",
        fields: &[
            ("vocab_size", U(256000)),
            ("hidden_size", U(3072)),
            ("intermediate_size", U(24576)),
            ("num_hidden_layers", U(28)),
            ("num_attention_heads", U(16)),
            ("num_key_value_heads", U(16)),
            ("head_dim", U(256)),
            ("max_position_embeddings", U(8192)),
            ("tie_word_embeddings", B(true)),
        ],
    },
    Class {
        model_types: &["gemma2"],
        name: "Gemma2Config",
        fields: &[
            ("vocab_size", U(256000)),
            ("hidden_size", U(2304)),
            ("intermediate_size", U(9216)),
            ("num_hidden_layers", U(26)),
            ("num_attention_heads", U(8)),
            ("num_key_value_heads", U(4)),
            ("head_dim", U(256)),
            ("max_position_embeddings", U(8192)),
            ("sliding_window", U(4096)),
            ("tie_word_embeddings", B(true)),
        ],
    },
    Class {
        // A multimodal gemma3 config keeps Gemma3TextConfig under text_config.
        model_types: &["gemma3_text", "gemma3"],
        name: "Gemma3TextConfig",
        fields: &[
            ("vocab_size", U(262208)),
            ("hidden_size", U(2304)),
            ("intermediate_size", U(9216)),
            ("num_hidden_layers", U(26)),
            ("num_attention_heads", U(8)),
            ("num_key_value_heads", U(4)),
            ("head_dim", U(256)),
            ("max_position_embeddings", U(131072)),
            ("sliding_window", U(4096)),
            ("tie_word_embeddings", B(true)),
        ],
    },
    Class {
        model_types: &["jamba"],
        name: "JambaConfig",
        fields: &[
            ("vocab_size", U(65536)),
            ("hidden_size", U(4096)),
            ("intermediate_size", U(14336)),
            ("num_hidden_layers", U(32)),
            ("num_attention_heads", U(32)),
            ("num_key_value_heads", U(8)),
            ("max_position_embeddings", U(262144)),
            ("num_experts", U(16)),
            ("num_experts_per_tok", U(2)),
            ("expert_layer_period", U(2)),
            ("expert_layer_offset", U(1)),
            ("attn_layer_period", U(8)),
            ("attn_layer_offset", U(4)),
            ("mamba_d_state", U(16)),
            ("mamba_d_conv", U(4)),
            ("mamba_expand", U(2)),
            ("tie_word_embeddings", B(false)),
        ],
    },
    Class {
        model_types: &["phi3"],
        name: "Phi3Config",
        fields: &[
            ("vocab_size", U(32064)),
            ("hidden_size", U(3072)),
            ("intermediate_size", U(8192)),
            ("num_hidden_layers", U(32)),
            ("num_attention_heads", U(32)),
            ("max_position_embeddings", U(4096)),
            ("tie_word_embeddings", B(false)),
        ],
    },
    Class {
        model_types: &["deepseek_v3"],
        name: "DeepseekV3Config",
        fields: &[
            ("vocab_size", U(129280)),
            ("hidden_size", U(7168)),
            ("intermediate_size", U(18432)),
            ("moe_intermediate_size", U(2048)),
            ("num_hidden_layers", U(61)),
            ("num_attention_heads", U(128)),
            ("num_key_value_heads", U(128)),
            ("n_shared_experts", U(1)),
            ("n_routed_experts", U(256)),
            ("kv_lora_rank", U(512)),
            ("q_lora_rank", U(1536)),
            ("qk_rope_head_dim", U(64)),
            ("v_head_dim", U(128)),
            ("qk_nope_head_dim", U(128)),
            ("num_experts_per_tok", U(8)),
            ("first_k_dense_replace", U(3)),
            ("max_position_embeddings", U(4096)),
            ("tie_word_embeddings", B(false)),
        ],
    },
    Class {
        model_types: &["falcon"],
        name: "FalconConfig",
        fields: &[
            ("vocab_size", U(65024)),
            ("hidden_size", U(4544)),
            ("num_hidden_layers", U(32)),
            ("num_attention_heads", U(71)),
            ("max_position_embeddings", U(2048)),
            ("parallel_attn", B(true)),
            ("new_decoder_architecture", B(false)),
            ("multi_query", B(true)),
            ("bias", B(false)),
            ("tie_word_embeddings", B(true)),
        ],
    },
    Class {
        model_types: &["qwen3_moe"],
        name: "Qwen3MoeConfig",
        fields: &[
            ("vocab_size", U(151936)),
            ("hidden_size", U(2048)),
            ("intermediate_size", U(6144)),
            ("num_hidden_layers", U(24)),
            ("num_attention_heads", U(32)),
            ("num_key_value_heads", U(4)),
            ("max_position_embeddings", U(32768)),
            ("use_sliding_window", B(false)),
            ("decoder_sparse_step", U(1)),
            ("moe_intermediate_size", U(768)),
            ("num_experts_per_tok", U(8)),
            ("num_experts", U(128)),
            ("tie_word_embeddings", B(false)),
        ],
    },
    Class {
        // The attention layers' places: full_attention_interval (a keyword
        // the class turns into layer_types) defaults to 4.
        model_types: &["qwen3_next"],
        name: "Qwen3NextConfig",
        fields: &[
            ("vocab_size", U(151936)),
            ("hidden_size", U(2048)),
            ("intermediate_size", U(5632)),
            ("num_hidden_layers", U(48)),
            ("num_attention_heads", U(16)),
            ("num_key_value_heads", U(2)),
            ("head_dim", U(256)),
            ("max_position_embeddings", U(32768)),
            ("full_attention_interval", U(4)),
            ("linear_conv_kernel_dim", U(4)),
            ("linear_key_head_dim", U(128)),
            ("linear_value_head_dim", U(128)),
            ("linear_num_key_heads", U(16)),
            ("linear_num_value_heads", U(32)),
            ("decoder_sparse_step", U(1)),
            ("moe_intermediate_size", U(512)),
            ("shared_expert_intermediate_size", U(512)),
            ("num_experts_per_tok", U(10)),
            ("num_experts", U(512)),
            ("tie_word_embeddings", B(false)),
        ],
    },
    Class {
        // layer_types defaults to sliding and full alternating, sliding first
        // (layout's implicit pattern for gpt_oss).
        model_types: &["gpt_oss"],
        name: "GptOssConfig",
        fields: &[
            ("vocab_size", U(201088)),
            ("hidden_size", U(2880)),
            ("intermediate_size", U(2880)),
            ("num_hidden_layers", U(36)),
            ("num_attention_heads", U(64)),
            ("num_key_value_heads", U(8)),
            ("head_dim", U(64)),
            ("max_position_embeddings", U(131072)),
            ("sliding_window", U(128)),
            ("num_local_experts", U(128)),
            ("num_experts_per_tok", U(4)),
            ("attention_bias", B(true)),
            ("tie_word_embeddings", B(false)),
        ],
    },
    Class {
        // A multimodal llama4 config keeps Llama4TextConfig under text_config.
        model_types: &["llama4_text", "llama4"],
        name: "Llama4TextConfig",
        fields: &[
            ("vocab_size", U(202048)),
            ("hidden_size", U(5120)),
            ("intermediate_size", U(8192)),
            ("intermediate_size_mlp", U(16384)),
            ("num_hidden_layers", U(48)),
            ("num_attention_heads", U(40)),
            ("num_key_value_heads", U(8)),
            ("head_dim", U(128)),
            ("max_position_embeddings", U(131072)),
            ("num_local_experts", U(16)),
            ("num_experts_per_tok", U(1)),
            ("interleave_moe_layer_step", U(1)),
            ("no_rope_layer_interval", U(4)),
            ("attention_chunk_size", U(8192)),
            ("tie_word_embeddings", B(false)),
        ],
    },
    Class {
        // layer_types defaults to three sliding layers, then a full one.
        model_types: &["olmo3"],
        name: "Olmo3Config",
        fields: &[
            ("vocab_size", U(50304)),
            ("hidden_size", U(4096)),
            ("intermediate_size", U(11008)),
            ("num_hidden_layers", U(32)),
            ("num_attention_heads", U(32)),
            ("max_position_embeddings", U(2048)),
            ("sliding_window", U(4096)),
            ("tie_word_embeddings", B(false)),
        ],
    },
    Class {
        // The defaults are c4ai-command-r-v01's (35B).
        model_types: &["cohere"],
        name: "CohereConfig",
        fields: &[
            ("vocab_size", U(256000)),
            ("hidden_size", U(8192)),
            ("intermediate_size", U(22528)),
            ("num_hidden_layers", U(40)),
            ("num_attention_heads", U(64)),
            ("max_position_embeddings", U(8192)),
            ("use_qk_norm", B(false)),
            ("tie_word_embeddings", B(true)),
        ],
    },
    Class {
        // The defaults are Qwen1.5-MoE-A2.7B's.
        model_types: &["qwen2_moe"],
        name: "Qwen2MoeConfig",
        fields: &[
            ("vocab_size", U(151936)),
            ("hidden_size", U(2048)),
            ("intermediate_size", U(5632)),
            ("num_hidden_layers", U(24)),
            ("num_attention_heads", U(16)),
            ("num_key_value_heads", U(16)),
            ("max_position_embeddings", U(32768)),
            ("use_sliding_window", B(false)),
            ("decoder_sparse_step", U(1)),
            ("moe_intermediate_size", U(1408)),
            ("shared_expert_intermediate_size", U(5632)),
            ("num_experts_per_tok", U(4)),
            ("num_experts", U(60)),
            ("tie_word_embeddings", B(false)),
        ],
    },
];

/// The model_type transformers reads a config under: Falcon's first
/// checkpoints say RefinedWeb / RefinedWebModel (transformers maps them to falcon).
pub fn canonical(model_type: &str) -> &str {
    match model_type {
        "RefinedWeb" | "RefinedWebModel" => "falcon",
        t => t,
    }
}

fn present(map: &Map<String, Value>, parent: Option<&Map<String, Value>>, key: &str) -> bool {
    let spellings = SPELLINGS
        .iter()
        .find(|s| s.contains(&key))
        .copied()
        .unwrap_or(std::slice::from_ref(&key));
    spellings
        .iter()
        .any(|k| map.contains_key(*k) || parent.is_some_and(|p| p.contains_key(*k)))
}

fn show(d: Def) -> String {
    match d {
        U(n) => crate::units::count(n),
        B(b) => b.to_string(),
    }
}

/// Fills the fields `map` lacks (nor `parent` has, for a text_config) from
/// the config class of `model_type`; one note names each default used.
/// `path` prefixes the field names in notes ("text_config." or "").
pub fn apply(
    map: &mut Map<String, Value>,
    parent: Option<&Map<String, Value>>,
    model_type: &str,
    path: &str,
    notes: &mut Vec<String>,
) {
    let Some(class) = CLASSES.iter().find(|c| c.model_types.contains(&model_type)) else {
        return;
    };
    let mut used = Vec::new();
    for &(key, def) in class.fields {
        if present(map, parent, key) {
            continue;
        }
        map.insert(
            key.to_string(),
            match def {
                U(n) => Value::from(n),
                B(b) => Value::from(b),
            },
        );
        used.push(format!("{path}{key} {}", show(def)));
    }
    if !used.is_empty() {
        notes.push(format!(
            "config omits {}: {}'s defaults used (transformers {TRANSFORMERS_VERSION})",
            used.join(", "),
            class.name
        ));
    }
}
