//! The transformers config classes' defaults, per `model_type`, for the
//! fields kvscope reads (`defaults` fills a config's gaps from them).
//!
//! Every value below was checked against
//! `transformers/models/<type>/configuration_<type>.py` in the v4.57.0 wheel
//! from PyPI (transformers-4.57.0-py3-none-any.whl, sha256 9d7c6d09…4e49b55;
//! PyPI has since yanked 4.57.0 for a packaging fault, the config classes
//! are the release's): the keyword defaults of each class's `__init__`, and
//! where the class sets a field without a keyword, what it sets
//! (`GptOssConfig` sets `attention_bias = True`; `Qwen3NextConfig` reads
//! `full_attention_interval` from its kwargs, default 4; Falcon's
//! `tie_word_embeddings` is PretrainedConfig's default, true).

/// The transformers release the defaults below come from.
pub const TRANSFORMERS_VERSION: &str = "4.57.0";

use Def::{B, U};

#[derive(Clone, Copy)]
pub enum Def {
    U(u64),
    B(bool),
}

pub struct Class {
    pub model_types: &'static [&'static str],
    pub name: &'static str,
    pub fields: &'static [(&'static str, Def)],
}

/// Fields read under other names too: a config that has any of them has the field.
pub const SPELLINGS: &[&[&str]] = &[
    &["vocab_size", "padded_vocab_size"],
    &["hidden_size", "n_embd", "d_model"],
    &["num_hidden_layers", "n_layer", "num_layers"],
    &["num_attention_heads", "n_head", "num_heads"],
    &["num_key_value_heads", "num_kv_heads", "n_head_kv"],
    &["max_position_embeddings", "n_positions", "max_seq_len"],
    &["intermediate_size", "ffn_hidden_size", "n_inner", "ffn_dim"],
];

pub const CLASSES: &[Class] = &[
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
    Class {
        // DeepSeek-V2's MLA geometry; num_experts_per_tok has no default (None).
        model_types: &["deepseek_v2"],
        name: "DeepseekV2Config",
        fields: &[
            ("vocab_size", U(32000)),
            ("hidden_size", U(4096)),
            ("intermediate_size", U(11008)),
            ("moe_intermediate_size", U(1407)),
            ("num_hidden_layers", U(32)),
            ("num_attention_heads", U(32)),
            ("n_shared_experts", U(2)),
            ("n_routed_experts", U(64)),
            ("kv_lora_rank", U(512)),
            ("q_lora_rank", U(1536)),
            ("qk_rope_head_dim", U(64)),
            ("v_head_dim", U(128)),
            ("qk_nope_head_dim", U(128)),
            ("first_k_dense_replace", U(0)),
            ("max_position_embeddings", U(2048)),
            ("tie_word_embeddings", B(false)),
        ],
    },
    Class {
        // Llama's shape; the multipliers change no weight nor KV.
        model_types: &["granite"],
        name: "GraniteConfig",
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
];
