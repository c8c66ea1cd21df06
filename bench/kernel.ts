// npm run bench:kernel — forward+backward of the fused ε-DPO op against the eager composition
// the reference trainer uses (four log-softmaxes over materialised [N,V] tensors, gathers and
// sums), in one run, same inputs. Prints time, peak extra memory and their ratios.
//   node dist/bench/kernel.js [--quick] [--reps N] [--json out.json] [--only logits|hidden|sft] [--chunk N]
// --chunk N: the chunked rows pass chunkTokens N (default: the op's own choice).
import * as fs from 'node:fs'
import * as path from 'node:path'

import { type DType, ops, runtime, Tensor } from '../lib/index'
import { chunked, type ChunkedConfig, makeChunkedInputs, materialised, sftChunked, sftMaterialised, zeroGrads } from './chunked'
import { measure } from './measure'

interface Config {
  tokens: number
  vocab: number
  dtype: DType
}

const args = process.argv.slice(2)
// Every argument is used or rejected: a mistyped flag must not run the whole bench silently.
const VALUED = new Set(['--reps', '--json', '--only', '--chunk'])
for (let i = 0; i < args.length; i++) {
  if (VALUED.has(args[i]!)) {
    if (args[i + 1] === undefined) throw new Error(`bench:kernel: ${args[i]} needs a value`)
    i++
  } else if (args[i] !== '--quick')
    throw new Error(`bench:kernel: unknown argument '${args[i]}' (known: --quick, --reps N, --json FILE, --only logits|hidden|sft, --chunk N)`)
}
const quick = args.includes('--quick')
const reps = args.includes('--reps') ? Number(args[args.indexOf('--reps') + 1]) : quick ? 2 : 3
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined
const chunkTokens = args.includes('--chunk') ? Number(args[args.indexOf('--chunk') + 1]) : undefined
if (only !== undefined && !['logits', 'hidden', 'sft'].includes(only)) throw new Error(`bench:kernel: --only '${only}' is not logits, hidden or sft`)
if (args.includes('--reps') && !(Number.isInteger(reps) && reps > 0))
  throw new Error(`bench:kernel: --reps '${args[args.indexOf('--reps') + 1]}' is not a positive integer`)
if (chunkTokens !== undefined && !(Number.isInteger(chunkTokens) && chunkTokens > 0))
  throw new Error(`bench:kernel: --chunk '${args[args.indexOf('--chunk') + 1]}' is not a positive integer`)
const BETA = 0.1
const EPSILON = 0.01
const STEPS = 512 // tokens per sequence; rows = tokens / STEPS

const configs: Config[] = []
for (const tokens of quick ? [1024] : [2048, 4096])
  for (const vocab of quick ? [32000] : [32000, 128256]) for (const dtype of ['float32', 'bfloat16'] as DType[]) configs.push({ tokens, vocab, dtype })

interface Inputs {
  policy: Tensor
  reference: Tensor
  labels: Tensor
  mask: Tensor
}

function makeInputs(c: Config): Inputs {
  const rows = c.tokens / STEPS
  Tensor.manualSeed(c.tokens + c.vocab)
  const policy = Tensor.randn([rows, STEPS, c.vocab], { dtype: c.dtype })
  policy.requiresGrad = true
  const reference = Tensor.randn([rows, STEPS, c.vocab], { dtype: c.dtype })
  const labels = new BigInt64Array(c.tokens)
  let seed = 12345
  for (let i = 0; i < labels.length; i++) {
    seed = (seed * 1103515245 + 12345) % 2147483648
    labels[i] = BigInt(seed % c.vocab)
  }
  return {
    policy,
    reference,
    labels: Tensor.from(labels, [rows, STEPS]),
    mask: Tensor.full([rows, STEPS], 1),
  }
}

function fused(x: Inputs): number {
  const out = ops.epsilonDpoLoss({
    policyLogits: x.policy,
    referenceLogits: x.reference,
    labels: x.labels,
    lossMask: x.mask,
    beta: BETA,
    epsilon: EPSILON,
  })
  out.loss.backward()
  return out.loss.item()
}

/** One masked log-prob sum per row from [rows,T,V] logits, freeing the [N,V] temporaries at once. */
function eagerSums(logits: Tensor, x: Inputs): Tensor {
  const logp = logits.logSoftmax(-1)
  const picked = logp.gather(2, x.labels.unsqueeze(-1)).squeeze(-1)
  const sums = picked.mul(x.mask).sum(1)
  logp.dispose()
  return sums
}

/** The reference trainer's composition; intermediates are disposed as soon as Python would free them. */
function eager(x: Inputs): number {
  const S = eagerSums(x.policy, x) // keeps log-softmax alive in the autograd graph, as PyTorch does
  const a = x.policy.detach()
  const Sref = eagerSums(x.reference, x)
  const plusA = a.mul(1 + EPSILON)
  const plusB = x.reference.mul(EPSILON)
  const plus = plusA.sub(plusB)
  plusA.dispose()
  plusB.dispose()
  const Splus = eagerSums(plus, x)
  plus.dispose()
  const minusA = a.mul(1 - EPSILON)
  const minusB = x.reference.mul(EPSILON)
  const minus = minusA.add(minusB)
  minusA.dispose()
  minusB.dispose()
  const Sminus = eagerSums(minus, x)
  minus.dispose()
  // Per-pair β and loss weights from the sums (tiny), then backward through S.
  const rows = S.shape[0]!
  const B = rows / 2
  const [s, r, p, m] = [S, Sref, Splus, Sminus].map((t) => t.to('float64').toArray() as Float64Array) as [
    Float64Array,
    Float64Array,
    Float64Array,
    Float64Array,
  ]
  const weights = new Float64Array(rows)
  let loss = 0
  for (let i = 0; i < B; i++) {
    const rho = s[i]! - s[B + i]!
    const rp = p[i]! - p[B + i]!
    const rm = m[i]! - m[B + i]!
    const step = rp > rho && rho > rm ? 1 : rm > rho && rho > rp ? -1 : 0
    const beta = BETA / (1 + EPSILON * step)
    const z = beta * (rho - (r[i]! - r[B + i]!))
    loss += Math.log1p(Math.exp(-z)) / B
    const g = -beta / (1 + Math.exp(z)) / B
    weights[i] = g
    weights[B + i] = -g
  }
  S.mul(Tensor.from(weights, [rows], { dtype: 'float32' }))
    .sum()
    .backward()
  return loss
}

/**
 * The op's memory-traffic bound, STREAM-style: the fused forward reads both logits and the
 * backward reads the policy's again and writes ∂logits, 4·N·V elements in all; copying both
 * [N,V] tensors once moves the same bytes (2 read + 2 written). Timed in the same run; the fused
 * op's time over this is how far it is from bandwidth-bound.
 */
function copyBound(x: Inputs, reps: number): number {
  const a = Tensor.zeros(x.policy.shape, { dtype: x.policy.dtype })
  const b = Tensor.zeros(x.reference.shape, { dtype: x.reference.dtype })
  const src = x.policy.detach()
  const times: number[] = []
  for (let i = 0; i <= reps; i++) {
    const t0 = performance.now()
    a.copyInPlace(src)
    b.copyInPlace(x.reference)
    if (i > 0) times.push(performance.now() - t0)
  }
  for (const t of [a, b, src]) t.dispose()
  times.sort((p, q) => p - q)
  return times[Math.floor(times.length / 2)]!
}

const rt = runtime()
console.log(`edpo bench:kernel — libtorch ${rt.libtorchVersion}, ${rt.threads} threads, ${new Date().toISOString()}`)
console.log(`median of ${reps} runs after one warm-up; forward + backward; peak extra = peak live tensor bytes above the inputs\n`)
const header =
  '| N tokens | V | dtype | fused ms | eager ms | speed-up | copy-bound ms | fused / bound | fused peak extra MiB | of which not ∂logits | eager peak extra MiB | memory ratio |'
console.log(header)
console.log(
  '|' +
    header
      .split('|')
      .slice(1, -1)
      .map(() => '---')
      .join('|') +
    '|',
)
const results = []
for (const c of only === undefined || only === 'logits' ? configs : []) {
  const x = makeInputs(c)
  const f = measure(fused, x, reps, (x) => x.policy.zeroGrad())
  const e = measure(eager, x, reps, (x) => x.policy.zeroGrad())
  const bound = copyBound(x, reps)
  const mib = (b: number) => (b / 2 ** 20).toFixed(0)
  const gradBytes = c.tokens * c.vocab * (c.dtype === 'float32' ? 4 : 2)
  const row = {
    ...c,
    fusedMs: f.ms,
    eagerMs: e.ms,
    speedup: e.ms / f.ms,
    copyBoundMs: bound,
    fusedPeakBytes: f.peakBytes,
    eagerPeakBytes: e.peakBytes,
    lossFused: f.loss,
    lossEager: e.loss,
  }
  results.push(row)
  console.log(
    `| ${c.tokens} | ${c.vocab} | ${c.dtype} | ${f.ms.toFixed(0)} | ${e.ms.toFixed(0)} | ${row.speedup.toFixed(2)}× | ${bound.toFixed(0)} | ${(f.ms / bound).toFixed(1)}× | ` +
      `${mib(f.peakBytes)} | ${mib(Math.max(0, f.peakBytes - gradBytes))} | ${mib(e.peakBytes)} | ` +
      `${(e.peakBytes / Math.max(f.peakBytes, 1)).toFixed(1)}× |`,
  )
  // bf16 eager rounds its log-softmax outputs to bf16, so its steps (and loss) legitimately differ.
  if (c.dtype === 'float32' && Math.abs(f.loss - e.loss) > 1e-4 * Math.max(1, Math.abs(e.loss)))
    console.log(`  ! losses differ: fused ${f.loss}, eager ${e.loss}`)
  for (const t of Object.values(x)) t.dispose()
}
console.log('\ncopy-bound: copying both [N,V] logits tensors once, the same bytes the op must read and write (4·N·V elements).')
console.log('Both peaks include ∂logits (N·V in the input dtype), which both methods must produce;')
console.log('"of which not ∂logits" is the fused op\'s own working memory, O(N).')
console.log('bf16 eager rounds its log-probs to bf16 (as the reference trainer does), so its loss differs.')

// Chunked fused-linear path (hidden states + lm_head) against materialised logits, fp32.
const chunkedConfigs: ChunkedConfig[] =
  only !== undefined && only !== 'hidden' ? [] : quick ? [{ tokens: 512, hidden: 128, vocab: 32000 }] : [{ tokens: 1024, hidden: 256, vocab: 128256 }]
console.log('\nFrom hidden states: materialised logits (h·Wᵀ, fused op, backward through the matmul) vs chunked')
const header2 = '| N tokens | H | V | chunk | materialised ms | chunked ms | time ratio | materialised peak extra MiB | chunked peak extra MiB | memory ratio |'
console.log(header2)
console.log(
  '|' +
    header2
      .split('|')
      .slice(1, -1)
      .map(() => '---')
      .join('|') +
    '|',
)
const chunkedResults = []
for (const c of chunkedConfigs) {
  const x = makeChunkedInputs(c)
  // The op's default chunk for V on this device, less room for ∂W's pair accumulator when pairs are longer (chunked_linear.cc).
  const chunk = chunkTokens ?? `≤ ${ops.chunkTokensDefault(c.vocab)}`
  const m = measure(materialised, x, reps, zeroGrads)
  const k = measure(chunked(chunkTokens), x, reps, zeroGrads)
  chunkedResults.push({ ...c, chunk, materialisedMs: m.ms, chunkedMs: k.ms, materialisedPeakBytes: m.peakBytes, chunkedPeakBytes: k.peakBytes })
  const mib = (b: number) => (b / 2 ** 20).toFixed(0)
  console.log(
    `| ${c.tokens} | ${c.hidden} | ${c.vocab} | ${chunk} | ${m.ms.toFixed(0)} | ${k.ms.toFixed(0)} | ${(k.ms / m.ms).toFixed(2)}× | ` +
      `${mib(m.peakBytes)} | ${mib(k.peakBytes)} | ${(m.peakBytes / Math.max(k.peakBytes, 1)).toFixed(1)}× |`,
  )
  if (Math.abs(m.loss - k.loss) > 1e-4 * Math.max(1, Math.abs(m.loss))) console.log(`  ! losses differ: ${m.loss} vs ${k.loss}`)
  for (const t of Object.values(x)) t.dispose()
}
console.log('Both peaks include ∂W (V·H) and ∂h (N·H), which both paths produce.')

// SFT's loss (−mean token log-prob) from hidden states: materialised logits + log-softmax, as SFT
// trained before the chunked path, against ops.sequenceStatsFromHidden. fp32.
const sftConfigs: ChunkedConfig[] =
  only !== undefined && only !== 'sft' ? [] : quick ? [{ tokens: 512, hidden: 128, vocab: 32000 }] : [{ tokens: 1024, hidden: 256, vocab: 128256 }]
console.log('\nSFT from hidden states: materialised logits + log-softmax vs chunked sequenceStatsFromHidden')
const header3 =
  '| N tokens | H | V | materialised ms | chunked ms | time ratio | materialised peak extra MiB | chunked peak extra MiB | chunked / materialised memory |'
console.log(header3)
console.log(
  '|' +
    header3
      .split('|')
      .slice(1, -1)
      .map(() => '---')
      .join('|') +
    '|',
)
const sftResults = []
for (const c of sftConfigs) {
  const x = makeChunkedInputs(c)
  const m = measure(sftMaterialised, x, reps, zeroGrads)
  const k = measure(sftChunked, x, reps, zeroGrads)
  sftResults.push({ ...c, materialisedMs: m.ms, chunkedMs: k.ms, materialisedPeakBytes: m.peakBytes, chunkedPeakBytes: k.peakBytes })
  const mib = (b: number) => (b / 2 ** 20).toFixed(0)
  console.log(
    `| ${c.tokens} | ${c.hidden} | ${c.vocab} | ${m.ms.toFixed(0)} | ${k.ms.toFixed(0)} | ${(k.ms / m.ms).toFixed(2)}× | ` +
      `${mib(m.peakBytes)} | ${mib(k.peakBytes)} | ${(k.peakBytes / Math.max(m.peakBytes, 1)).toFixed(2)} |`,
  )
  if (Math.abs(m.loss - k.loss) > 1e-4 * Math.max(1, Math.abs(m.loss))) console.log(`  ! losses differ: ${m.loss} vs ${k.loss}`)
  for (const t of Object.values(x)) t.dispose()
}
console.log('Both peaks include ∂W (V·H) and ∂h (N·H).')

if (jsonOut) {
  fs.mkdirSync(path.dirname(jsonOut), { recursive: true })
  fs.writeFileSync(jsonOut, JSON.stringify({ runtime: rt, date: new Date().toISOString(), reps, results, chunkedResults, sftResults }, null, 2))
}
