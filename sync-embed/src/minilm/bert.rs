//! A BERT encoder for inference on the CPU, as Hugging Face `BertModel` computes it
//! (post-layer-norm, exact GELU, absolute positions), with the query, key and value
//! projections fused into one matrix product and every step on contiguous 2-D tensors.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};
use rayon::prelude::*;
use serde::Deserialize;

/// The fields of a BERT `config.json` the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BertConfig {
    pub(crate) vocab_size: usize,
    pub(crate) hidden_size: usize,
    pub(crate) num_hidden_layers: usize,
    pub(crate) num_attention_heads: usize,
    pub(crate) intermediate_size: usize,
    #[serde(default = "default_act")]
    pub(crate) hidden_act: String,
    pub(crate) max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub(crate) type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub(crate) layer_norm_eps: f64,
    #[serde(default)]
    pub(crate) pad_token_id: usize,
    #[serde(default)]
    pub(crate) position_embedding_type: Option<String>,
    #[serde(default)]
    pub(crate) model_type: Option<String>,
}

fn default_act() -> String {
    "gelu".to_string()
}

fn default_type_vocab() -> usize {
    2
}

fn default_eps() -> f64 {
    1e-12
}

struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl Norm {
    fn load(vb: &VarBuilder<'_>, size: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            bias: vb.get(size, "bias")?,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

fn linear(vb: &VarBuilder<'_>, inputs: usize, outputs: usize) -> Result<Linear> {
    Ok(Linear::new(
        vb.get((outputs, inputs), "weight")?,
        Some(vb.get(outputs, "bias")?),
    ))
}

/// `gelu(x + bias)` over the rows of a contiguous `rows × width` f32 matrix, in one pass
/// split across threads (candle's own unary ops run on one thread).
struct BiasGelu {
    bias: Vec<f32>,
}

impl CustomOp1 for BiasGelu {
    fn name(&self) -> &'static str {
        "bias-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("bias-gelu needs a contiguous f32 tensor");
        };
        let width = self.bias.len();
        let src = &data[start..end];
        if width == 0 || !src.len().is_multiple_of(width) {
            candle_core::bail!("bias-gelu: {} values are not rows of {width}", src.len());
        }
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(width * 16)
            .zip(src.par_chunks(width * 16))
            .for_each(|(dst, src)| {
                for (row_out, row_in) in dst.chunks_exact_mut(width).zip(src.chunks_exact(width)) {
                    for ((o, x), b) in row_out.iter_mut().zip(row_in).zip(&self.bias) {
                        let v = x + b;
                        *o = (candle_core::cpu::erf::erf_f32(v * std::f32::consts::FRAC_1_SQRT_2)
                            + 1.0)
                            * 0.5
                            * v;
                    }
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

struct Layer {
    qkv: Linear,
    attention_out: Linear,
    attention_norm: Norm,
    /// The intermediate projection without its bias, which [`BiasGelu`] adds.
    up: Tensor,
    up_bias: BiasGelu,
    down: Linear,
    output_norm: Norm,
}

impl Layer {
    fn load(vb: &VarBuilder<'_>, c: &BertConfig) -> Result<Self> {
        let h = c.hidden_size;
        let attn = vb.pp("attention");
        let own = attn.pp("self");
        let (mut weights, mut biases) = (Vec::new(), Vec::new());
        for name in ["query", "key", "value"] {
            weights.push(own.pp(name).get((h, h), "weight")?);
            biases.push(own.pp(name).get(h, "bias")?);
        }
        Ok(Self {
            qkv: Linear::new(Tensor::cat(&weights, 0)?, Some(Tensor::cat(&biases, 0)?)),
            attention_out: linear(&attn.pp("output").pp("dense"), h, h)?,
            attention_norm: Norm::load(&attn.pp("output").pp("LayerNorm"), h, c.layer_norm_eps)?,
            up: vb
                .pp("intermediate")
                .pp("dense")
                .get((c.intermediate_size, h), "weight")?,
            up_bias: BiasGelu {
                bias: vb
                    .pp("intermediate")
                    .pp("dense")
                    .get(c.intermediate_size, "bias")?
                    .to_vec1()?,
            },
            down: linear(&vb.pp("output").pp("dense"), c.intermediate_size, h)?,
            output_norm: Norm::load(&vb.pp("output").pp("LayerNorm"), h, c.layer_norm_eps)?,
        })
    }
}

/// The encoder: embeddings and the transformer layers, no pooler.
pub(crate) struct Bert {
    words: Embedding,
    positions: Tensor,
    types: Embedding,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
}

impl Bert {
    pub(crate) fn load(vb: VarBuilder<'_>, c: &BertConfig) -> Result<Self> {
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            candle_core::bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                c.hidden_size,
                c.num_attention_heads
            );
        }
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let h = c.hidden_size;
        let emb = vb.pp("embeddings");
        let words = Embedding::new(
            emb.pp("word_embeddings").get((c.vocab_size, h), "weight")?,
            h,
        );
        let types = Embedding::new(
            emb.pp("token_type_embeddings")
                .get((c.type_vocab_size, h), "weight")?,
            h,
        );
        let positions = emb
            .pp("position_embeddings")
            .get((c.max_position_embeddings, h), "weight")?;
        let embedding_norm = Norm::load(&emb.pp("LayerNorm"), h, c.layer_norm_eps)?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer::load(&vb.pp(format!("encoder.layer.{i}")), c))
            .collect::<Result<_>>()?;
        Ok(Self {
            words,
            positions,
            types,
            embedding_norm,
            layers,
            heads: c.num_attention_heads,
            hidden: h,
        })
    }

    /// The last hidden states, `(batch · len) × hidden`, of token ids `batch × len` with
    /// attention mask `mask` (1 for real tokens, 0 for padding).
    pub(crate) fn forward(&self, ids: &Tensor, types: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (batch, len) = ids.dims2()?;
        let (h, heads) = (self.hidden, self.heads);
        let dh = h / heads;
        let rows = batch * len;

        let positions = self.positions.narrow(0, 0, len)?;
        let x = self
            .words
            .forward(&ids.flatten_all()?)?
            .add(&self.types.forward(&types.flatten_all()?)?)?
            .reshape((batch, len, h))?
            .broadcast_add(&positions)?
            .reshape((rows, h))?;
        let mut x = self.embedding_norm.forward(&x)?;

        // Additive mask as Hugging Face builds it: 0 for tokens, the f32 minimum for padding.
        let mask = ((1.0 - mask.to_dtype(DType::F32)?)? * f64::from(f32::MIN))?
            .reshape((batch, 1, 1, len))?;
        let scale = 1.0 / (dh as f64).sqrt();

        for layer in &self.layers {
            let qkv = layer
                .qkv
                .forward(&x)?
                .reshape((batch, len, 3, heads, dh))?
                .permute((2, 0, 3, 1, 4))?;
            let q = (qkv.get(0)?.contiguous()? * scale)?;
            let k = qkv.get(1)?.contiguous()?;
            let v = qkv.get(2)?.contiguous()?;
            let scores = q.matmul(&k.t()?)?.broadcast_add(&mask)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let context = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((rows, h))?;
            let attended = layer
                .attention_norm
                .forward(&(layer.attention_out.forward(&context)? + &x)?)?;
            let up = attended
                .matmul(&layer.up.t()?)?
                .apply_op1_no_bwd(&layer.up_bias)?;
            x = layer
                .output_norm
                .forward(&(layer.down.forward(&up)? + &attended)?)?;
        }
        Ok(x)
    }

    /// The device the weights are on.
    pub(crate) fn device(&self) -> &Device {
        self.positions.device()
    }
}

/// Checks what the encoder supports.
pub(crate) fn check(c: &BertConfig) -> std::result::Result<(), String> {
    if let Some(kind) = c.model_type.as_deref()
        && kind != "bert"
    {
        return Err(format!("model type `{kind}` is not BERT"));
    }
    if !matches!(c.hidden_act.as_str(), "gelu") {
        return Err(format!(
            "activation `{}` is not supported (only exact `gelu`)",
            c.hidden_act
        ));
    }
    if let Some(p) = c.position_embedding_type.as_deref()
        && p != "absolute"
    {
        return Err(format!(
            "position embeddings `{p}` are not supported (only `absolute`)"
        ));
    }
    Ok(())
}
