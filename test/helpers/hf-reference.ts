// An independent fp64 forward of HF llama / mistral / qwen2 / gemma2, written straight from
// transformers' modeling files with plain loops. It never calls lib/model.
export interface RefConfig {
  model_type: string
  vocab_size: number
  hidden_size: number
  intermediate_size: number
  num_hidden_layers: number
  num_attention_heads: number
  num_key_value_heads?: number
  head_dim?: number
  rms_norm_eps: number
  rope_theta: number
  max_position_embeddings?: number
  tie_word_embeddings: boolean
  attention_bias?: boolean
  mlp_bias?: boolean
  rope_scaling?: {
    rope_type: string
    factor: number
    low_freq_factor?: number
    high_freq_factor?: number
    original_max_position_embeddings?: number
  } | null
  sliding_window?: number | null
  use_sliding_window?: boolean
  max_window_layers?: number
  query_pre_attn_scalar?: number
  attn_logit_softcapping?: number | null
  final_logit_softcapping?: number | null
  [field: string]: unknown
}

type W = Map<string, Float64Array>

function get(w: W, name: string): Float64Array {
  const t = w.get(name)
  if (!t) throw new Error(`reference: no weight ${name}`)
  return t
}

// y = W x (+ b), W [out, in] row-major.
function linear(w: Float64Array, b: Float64Array | undefined, x: Float64Array, out: number): Float64Array {
  const n = x.length
  const y = new Float64Array(out)
  for (let o = 0; o < out; o++) {
    let s = b ? b[o]! : 0
    for (let i = 0; i < n; i++) s += w[o * n + i]! * x[i]!
    y[o] = s
  }
  return y
}

function rmsNorm(x: Float64Array, w: Float64Array, eps: number, gemma: boolean): Float64Array {
  let ss = 0
  for (const v of x) ss += v * v
  const r = 1 / Math.sqrt(ss / x.length + eps)
  return x.map((v, i) => v * r * (gemma ? 1 + w[i]! : w[i]!))
}

function invFreq(c: RefConfig, d: number): number[] {
  const f = Array.from({ length: d / 2 }, (_, i) => 1 / c.rope_theta ** ((2 * i) / d))
  const s = c.rope_scaling
  if (!s || s.rope_type === 'default') return f
  if (s.rope_type === 'linear') return f.map((v) => v / s.factor)
  // llama3 (modeling_rope_utils._compute_llama3_parameters)
  const old = s.original_max_position_embeddings!,
    lo = s.low_freq_factor!,
    hi = s.high_freq_factor!
  return f.map((v) => {
    const wavelen = (2 * Math.PI) / v
    if (wavelen < old / hi) return v
    if (wavelen > old / lo) return v / s.factor
    const smooth = (old / wavelen - lo) / (hi - lo)
    return (1 - smooth) * (v / s.factor) + smooth * v
  })
}

function rope(x: Float64Array, pos: number, freqs: number[]): Float64Array {
  const half = freqs.length
  const y = new Float64Array(x.length)
  for (let i = 0; i < half; i++) {
    const c = Math.cos(pos * freqs[i]!),
      s = Math.sin(pos * freqs[i]!)
    y[i] = x[i]! * c - x[i + half]! * s // q·cos + rotate_half(q)·sin
    y[i + half] = x[i + half]! * c + x[i]! * s
  }
  return y
}

const silu = (v: number) => v / (1 + Math.exp(-v))
const geluTanh = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)))

function windowOf(c: RefConfig, layer: number): number {
  if (c.model_type === 'mistral') return c.sliding_window ?? 0
  if (c.model_type === 'gemma2') return layer % 2 === 0 ? (c.sliding_window ?? 0) : 0
  if (c.model_type === 'qwen2' && c.use_sliding_window && layer >= (c.max_window_layers ?? 0)) return c.sliding_window ?? 0
  return 0
}

/**
 * Logits [B·T·V] for token rows `ids` (each of length T). mask[b][s] = 0 marks padding keys;
 * positions default to 0..T-1.
 */
export function referenceLogits(c: RefConfig, w: W, ids: number[][], mask?: number[][], positions?: number[][]): Float64Array {
  const H = c.hidden_size,
    V = c.vocab_size,
    I = c.intermediate_size
  const nh = c.num_attention_heads,
    nkv = c.num_key_value_heads ?? nh,
    hd = c.head_dim ?? H / nh
  const gemma = c.model_type === 'gemma2'
  const scale = gemma ? c.query_pre_attn_scalar! ** -0.5 : hd ** -0.5
  const freqs = invFreq(c, hd)
  const opt = (n: string) => w.get(n)
  const T = ids[0]!.length
  const out = new Float64Array(ids.length * T * V)
  ids.forEach((row, b) => {
    const embed = get(w, 'model.embed_tokens.weight')
    let xs = row.map((id) => embed.slice(id * H, (id + 1) * H).map((v) => (gemma ? v * Math.sqrt(H) : v)))
    const pos = positions?.[b] ?? row.map((_, t) => t)
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const p = `model.layers.${l}.`
      const win = windowOf(c, l)
      const h = xs.map((x) => rmsNorm(x, get(w, `${p}input_layernorm.weight`), c.rms_norm_eps, gemma))
      const proj = (n: string, rows: number) => h.map((x) => linear(get(w, `${p}self_attn.${n}.weight`), opt(`${p}self_attn.${n}.bias`), x, rows))
      const q = proj('q_proj', nh * hd),
        k = proj('k_proj', nkv * hd),
        v = proj('v_proj', nkv * hd)
      const attnOut = xs.map(() => new Float64Array(nh * hd))
      for (let head = 0; head < nh; head++) {
        const kvh = Math.floor(head / (nh / nkv))
        const qh = q.map((x, t) => rope(x.slice(head * hd, (head + 1) * hd), pos[t]!, freqs))
        const kh = k.map((x, t) => rope(x.slice(kvh * hd, (kvh + 1) * hd), pos[t]!, freqs))
        for (let t = 0; t < T; t++) {
          const scores: number[] = []
          const visible: boolean[] = []
          for (let s = 0; s < T; s++) {
            let sc = 0
            for (let d = 0; d < hd; d++) sc += qh[t]![d]! * kh[s]![d]!
            sc *= scale
            if (gemma && c.attn_logit_softcapping) sc = Math.tanh(sc / c.attn_logit_softcapping) * c.attn_logit_softcapping
            scores.push(sc)
            visible.push(s <= t && (mask ? mask[b]![s] !== 0 : true) && (win === 0 || t - s < win))
          }
          // A row with nothing visible (left padding) is uniform, as HF's finite min fill gives.
          const any = visible.some(Boolean)
          const m = Math.max(...scores.filter((_, s) => visible[s] || !any))
          const e = scores.map((sc, s) => (visible[s] || !any ? Math.exp(sc - m) : 0))
          const z = e.reduce((a, x) => a + x, 0)
          for (let s = 0; s < T; s++) {
            if (e[s] === 0) continue
            for (let d = 0; d < hd; d++) attnOut[t]![head * hd + d]! += (e[s]! / z) * v[s]![kvh * hd + d]!
          }
        }
      }
      let a = attnOut.map((x) => linear(get(w, `${p}self_attn.o_proj.weight`), opt(`${p}self_attn.o_proj.bias`), x, H))
      if (gemma) a = a.map((x) => rmsNorm(x, get(w, `${p}post_attention_layernorm.weight`), c.rms_norm_eps, true))
      xs = xs.map((x, t) => x.map((v2, i) => v2 + a[t]![i]!))
      const h2 = xs.map((x) =>
        rmsNorm(x, get(w, gemma ? `${p}pre_feedforward_layernorm.weight` : `${p}post_attention_layernorm.weight`), c.rms_norm_eps, gemma),
      )
      let m = h2.map((x) => {
        const g = linear(get(w, `${p}mlp.gate_proj.weight`), opt(`${p}mlp.gate_proj.bias`), x, I)
        const u = linear(get(w, `${p}mlp.up_proj.weight`), opt(`${p}mlp.up_proj.bias`), x, I)
        const act = g.map((gv, i) => (gemma ? geluTanh(gv) : silu(gv)) * u[i]!)
        return linear(get(w, `${p}mlp.down_proj.weight`), opt(`${p}mlp.down_proj.bias`), act, H)
      })
      if (gemma) m = m.map((x) => rmsNorm(x, get(w, `${p}post_feedforward_layernorm.weight`), c.rms_norm_eps, true))
      xs = xs.map((x, t) => x.map((v2, i) => v2 + m[t]![i]!))
    }
    const head = c.tie_word_embeddings ? get(w, 'model.embed_tokens.weight') : get(w, 'lm_head.weight')
    xs.forEach((x, t) => {
      const logits = linear(head, undefined, rmsNorm(x, get(w, 'model.norm.weight'), c.rms_norm_eps, gemma), V)
      const cap = gemma ? c.final_logit_softcapping : null
      logits.forEach((v2, i) => (out[(b * T + t) * V + i] = cap ? Math.tanh(v2 / cap) * cap : v2))
    })
  })
  return out
}
