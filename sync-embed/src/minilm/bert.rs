//! A BERT encoder for inference on the CPU, as Hugging Face `BertModel` computes it
//! (post-layer-norm, exact GELU, absolute positions), with the query, key and value
//! projections fused into one matrix product, attention on strided views of it, and the
//! element-wise steps in place (`ops.rs`).

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};
use rayon::prelude::*;
use serde::Deserialize;

use super::ops::{AddBias, AddNorm, BiasGelu, MaskedSoftmax};

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

fn vector(vb: &VarBuilder<'_>, size: usize, name: &str) -> Result<Vec<f32>> {
    vb.get(size, name)?.to_vec1()
}

fn add_norm(
    dense: &VarBuilder<'_>,
    norm: &VarBuilder<'_>,
    size: usize,
    eps: f64,
) -> Result<AddNorm> {
    Ok(AddNorm {
        bias: vector(dense, size, "bias")?,
        weight: vector(norm, size, "weight")?,
        shift: vector(norm, size, "bias")?,
        eps: eps as f32,
    })
}

/// One transformer layer. Each weight is kept as `outputs × inputs` and read transposed
/// by the matrix products; the biases, the residual additions and the layer norms are
/// in-place ops on the products' outputs.
struct Layer {
    /// Query, key and value projections stacked (`3·hidden × hidden`), the query rows
    /// (and bias) already scaled by `1/√head_size`.
    qkv: Tensor,
    qkv_bias: AddBias,
    attention_out: Tensor,
    attention_norm: AddNorm,
    up: Tensor,
    up_bias: BiasGelu,
    down: Tensor,
    output_norm: AddNorm,
}

impl Layer {
    fn load(vb: &VarBuilder<'_>, c: &BertConfig) -> Result<Self> {
        let h = c.hidden_size;
        let i = c.intermediate_size;
        let scale = 1.0 / ((h / c.num_attention_heads) as f64).sqrt();
        let attn = vb.pp("attention");
        let own = attn.pp("self");
        let (mut weights, mut biases) = (Vec::new(), Vec::new());
        for name in ["query", "key", "value"] {
            let (w, b) = (
                own.pp(name).get((h, h), "weight")?,
                own.pp(name).get(h, "bias")?,
            );
            if name == "query" {
                weights.push((w * scale)?);
                biases.push((b * scale)?);
            } else {
                weights.push(w);
                biases.push(b);
            }
        }
        let out = attn.pp("output");
        let up = vb.pp("intermediate").pp("dense");
        let down = vb.pp("output");
        Ok(Self {
            qkv: Tensor::cat(&weights, 0)?,
            qkv_bias: AddBias {
                bias: Tensor::cat(&biases, 0)?.to_vec1()?,
            },
            attention_out: out.pp("dense").get((h, h), "weight")?,
            attention_norm: add_norm(&out.pp("dense"), &out.pp("LayerNorm"), h, c.layer_norm_eps)?,
            up: up.get((i, h), "weight")?,
            up_bias: BiasGelu {
                bias: vector(&up, i, "bias")?,
            },
            down: down.pp("dense").get((h, i), "weight")?,
            output_norm: add_norm(
                &down.pp("dense"),
                &down.pp("LayerNorm"),
                h,
                c.layer_norm_eps,
            )?,
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
    /// attention mask `mask` (`batch × len` values, 1 for real tokens, 0 for padding).
    ///
    /// Attention runs text by text on strided views of the stacked projections (no copies),
    /// over the keys up to the text's last real token: padding after it would get a weight
    /// of exactly 0 (Hugging Face adds the f32 minimum to its scores), so leaving it out
    /// changes nothing. A mask with holes before that point is added to the scores.
    pub(crate) fn forward(&self, ids: &Tensor, types: &Tensor, mask: &[u32]) -> Result<Tensor> {
        let (batch, len) = ids.dims2()?;
        let (h, heads) = (self.hidden, self.heads);
        let dh = h / heads;
        let rows = batch * len;
        if mask.len() != rows {
            candle_core::bail!("a mask of {} values for {batch} × {len} tokens", mask.len());
        }

        let positions = self.positions.narrow(0, 0, len)?;
        let x = self
            .words
            .forward(&ids.flatten_all()?)?
            .add(&self.types.forward(&types.flatten_all()?)?)?
            .reshape((batch, len, h))?
            .broadcast_add(&positions)?
            .reshape((rows, h))?;
        let mut x = self.embedding_norm.forward(&x)?;

        // Per text: the keys read, and the additive mask over them when it has holes.
        let texts: Vec<(usize, Vec<f32>)> = mask
            .chunks_exact(len)
            .map(|m| {
                let keys = m.iter().rposition(|&v| v != 0).map_or(len, |last| last + 1);
                let holes = m[..keys].contains(&0);
                let additive = if holes {
                    m[..keys]
                        .iter()
                        .map(|&v| if v == 0 { f32::MIN } else { 0.0 })
                        .collect()
                } else {
                    Vec::new()
                };
                (keys, additive)
            })
            .collect();

        for layer in &self.layers {
            let qkv = x.matmul(&layer.qkv.t()?)?;
            qkv.inplace_op1(&layer.qkv_bias)?;
            // batch × len × {q, k, v} × heads × head_size, as views.
            let qkv = qkv.reshape((batch, len, 3, heads, dh))?;
            let contexts = texts
                .par_iter()
                .enumerate()
                .map(|(b, (keys, additive))| -> Result<Tensor> {
                    let text = qkv.get(b)?;
                    // heads × positions × head_size, strided.
                    let part = |i: usize, n: usize| -> Result<Tensor> {
                        text.narrow(0, 0, n)?.get_on_dim(1, i)?.transpose(0, 1)
                    };
                    let q = part(0, len)?;
                    let k = part(1, *keys)?;
                    let v = part(2, *keys)?;
                    let scores = q.matmul(&k.t()?)?;
                    scores.inplace_op1(&MaskedSoftmax {
                        width: *keys,
                        mask: additive,
                    })?;
                    // positions × heads × head_size, a view the concatenation copies.
                    scores.matmul(&v)?.transpose(0, 1)
                })
                .collect::<Result<Vec<_>>>()?;
            let context = Tensor::cat(&contexts, 0)?.reshape((rows, h))?;
            let attended = context.matmul(&layer.attention_out.t()?)?;
            attended.inplace_op2(&x, &layer.attention_norm)?;
            let up = attended.matmul(&layer.up.t()?)?;
            up.inplace_op1(&layer.up_bias)?;
            let out = up.matmul(&layer.down.t()?)?;
            out.inplace_op2(&attended, &layer.output_norm)?;
            x = out;
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
