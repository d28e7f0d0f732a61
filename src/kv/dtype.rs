//! Element types of weights, KV cache and state.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    Fp8,
    Int8,
}

impl Dtype {
    pub fn bytes(self) -> u64 {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::Fp8 | Dtype::Int8 => 1,
        }
    }

    pub fn parse(s: &str) -> Option<Dtype> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "float32" | "fp32" | "float" => Dtype::F32,
            "float16" | "fp16" | "half" => Dtype::F16,
            "bfloat16" | "bf16" => Dtype::BF16,
            "fp8" | "float8" | "float8_e4m3fn" | "fp8_e4m3" | "fp8_e5m2" | "float8_e5m2" => {
                Dtype::Fp8
            }
            "int8" => Dtype::Int8,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
            Dtype::Fp8 => "fp8",
            Dtype::Int8 => "int8",
        }
    }

    /// What a serving engine computes in for a checkpoint of this dtype:
    /// float32 checkpoints are served in 16 bits (bfloat16).
    pub fn served(self) -> Dtype {
        if self == Dtype::F32 {
            Dtype::BF16
        } else {
            self
        }
    }
}
