//! The plan's types: which engine, and each figure as logged.

/// Which engine wrote the lines the plan came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Vllm,
    Sglang,
    Tgi,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Vllm => "vLLM",
            Engine::Sglang => "SGLang",
            Engine::Tgi => "TGI",
        }
    }
}

/// vLLM's "Maximum concurrency for L tokens per request: Yx".
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Concurrency {
    /// Tokens per request (the model length it was computed for).
    pub context: u64,
    /// Requests of that length the KV cache holds at once.
    pub times: f64,
}

/// One engine's plan, each figure as logged (`None`: not logged).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnginePlan {
    pub engine: Option<Engine>,
    pub weights_bytes: Option<u64>,
    pub kv_cache_bytes: Option<u64>,
    pub kv_tokens: Option<u64>,
    pub max_concurrency: Option<Concurrency>,
    /// Memory the CUDA graphs took (vLLM: "Graph capturing ... took").
    pub graph_pool_bytes: Option<u64>,
    /// Memory outside PyTorch's allocator (vLLM V0 "non_torch_memory takes").
    pub non_torch_bytes: Option<u64>,
    /// Non-torch memory that the profile's forward pass added (vLLM V1
    /// DEBUG "non-torch forward increase memory"): not the whole of it.
    pub non_torch_increase_bytes: Option<u64>,
    /// The activation peak of the profile run (vLLM "torch peak memory increase").
    pub torch_peak_bytes: Option<u64>,
    /// How many log lines said something the plan took.
    pub lines: usize,
}

impl EnginePlan {
    /// Keeps the first value of each figure: with several ranks in one log,
    /// each repeats its lines, and the first is rank 0's.
    pub(super) fn first(slot: &mut Option<u64>, v: Option<u64>) -> bool {
        match (slot.is_none(), v) {
            (true, Some(v)) => {
                *slot = Some(v);
                true
            }
            (_, v) => v.is_some(),
        }
    }

    pub(super) fn note(&mut self, engine: Engine) {
        self.engine.get_or_insert(engine);
        self.lines += 1;
    }
}
