//! Quantized checkpoints: the bytes a linear weight takes, from the
//! config's quantization_config.

use super::json::Obj;

/// How quantized linear weights are stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Quant {
    pub method: String,
    pub bytes_per_param: f64,
}

/// A stated bit width no quantizer uses (0, 3.5, 64) is a broken config:
/// refused with the field named rather than counted as almost nothing.
fn bit_width(
    c: &Obj,
    key: &str,
    bits: f64,
    ok: std::ops::RangeInclusive<f64>,
) -> Result<(), String> {
    if bits.fract() != 0.0 || !ok.contains(&bits) {
        return Err(c.bad(
            &format!("quantization_config.{key}"),
            &format!(
                "is {bits}: not a bit width this method stores ({} to {})",
                ok.start(),
                ok.end()
            ),
        ));
    }
    Ok(())
}

/// Bytes per linear parameter stated by quantization_config.
pub fn quant(c: &Obj, notes: &mut Vec<String>) -> Result<Option<Quant>, String> {
    let Some(q) = c.object("quantization_config") else {
        return Ok(None);
    };
    let num = |k: &str| q.get(k).and_then(|v| v.as_f64());
    let method = q
        .get("quant_method")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    // Packed low-bit weights with an fp16 scale and a packed zero per group.
    let grouped = |bits: f64, group: f64| {
        bits / 8.0
            + if group > 0.0 {
                (2.0 + bits / 8.0) / group
            } else {
                0.0
            }
    };
    let bytes = match method.as_str() {
        "fp8" | "fbgemm_fp8" => {
            let block = q
                .get("weight_block_size")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_f64()).product::<f64>());
            1.0 + block.map_or(0.0, |b| 4.0 / b)
        }
        "awq" | "gptq" | "awq_marlin" | "gptq_marlin" | "marlin" => {
            let bits = num("bits").or_else(|| num("w_bit")).unwrap_or(4.0);
            bit_width(c, "bits", bits, 2.0..=8.0)?;
            let group = num("group_size")
                .or_else(|| num("q_group_size"))
                .unwrap_or(128.0);
            grouped(bits, group)
        }
        "bitsandbytes" => {
            if q.get("load_in_4bit")
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
            {
                // 4-bit values, an fp32 absmax per block of 64 (8 bits when double-quantized).
                let double = q
                    .get("bnb_4bit_use_double_quant")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                0.5 + if double { 1.0 / 64.0 } else { 4.0 / 64.0 }
            } else {
                1.0
            }
        }
        "compressed-tensors" => {
            let group = q
                .get("config_groups")
                .and_then(|g| g.as_object())
                .and_then(|g| g.values().next())
                .and_then(|g| g.get("weights"));
            let bits = group
                .and_then(|w| w.get("num_bits"))
                .and_then(|v| v.as_f64())
                .unwrap_or(8.0);
            bit_width(c, "config_groups.*.weights.num_bits", bits, 1.0..=16.0)?;
            let size = group
                .and_then(|w| w.get("group_size"))
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0);
            bits / 8.0 + if size > 0.0 { 2.0 / size } else { 0.0 }
        }
        // MXFP4: 4-bit values and an 8-bit scale per 32.
        "mxfp4" => 4.25 / 8.0,
        other => {
            notes.push(format!("quantization_config.quant_method '{other}' is not understood: weights counted at the model's dtype"));
            return Ok(None);
        }
    };
    // Nothing stores a weight in more than 4 bytes: a figure outside (0, 4] is a misread config.
    if !(bytes > 0.0 && bytes <= 4.0) {
        notes.push(format!("quantization_config gives {bytes} bytes per weight: ignored, weights counted at the model's dtype"));
        return Ok(None);
    }
    Ok(Some(Quant {
        method,
        bytes_per_param: bytes,
    }))
}
