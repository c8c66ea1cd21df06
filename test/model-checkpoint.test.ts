// CausalLM.save / fromPretrained: exact round trips, sharding with the HF index, tied heads, and
// clear errors for broken checkpoints.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import t from 'tap'

import { CausalLM, EdpoInputError, io } from '../lib/index'
import { ids, tinyConfig, tinyWeights, writeTiny } from './helpers/tiny-models'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-model-ckpt-'))
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }))
const prompt = ids([[5, 17, 3, 99, 42, 8]])

function bytesOf(dir: string): Map<string, { dtype: string; shape: number[]; bytes: Buffer }> {
  const out = new Map<string, { dtype: string; shape: number[]; bytes: Buffer }>()
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors'))
  for (const f of files)
    for (const [name, tensor] of Object.entries(io.loadSafetensors(path.join(dir, f)))) {
      const a = tensor.toArray()
      out.set(name, { dtype: tensor.dtype, shape: tensor.shape, bytes: Buffer.from(a.buffer, a.byteOffset, a.byteLength) })
    }
  return out
}

for (const [arch, dtype] of [
  ['llama', 'float32'],
  ['gemma2', 'bfloat16'],
] as const) {
  t.test(`${arch} ${dtype}: load → save → load keeps names, shapes, dtypes, bytes and logits`, async (t) => {
    const config = tinyConfig(arch)
    const src = writeTiny(path.join(root, `${arch}-src`), config, tinyWeights(config), dtype)
    const a = await CausalLM.fromPretrained(src, { dtype })
    const out = path.join(root, `${arch}-out`)
    await a.save(out)
    t.same(fs.readdirSync(out).sort(), ['config.json', 'model.safetensors'])
    const want = bytesOf(src),
      got = bytesOf(out)
    t.same([...got.keys()].sort(), [...want.keys()].sort(), 'same tensor names')
    if (arch === 'gemma2') t.notOk(got.has('lm_head.weight'), 'tied head not written')
    for (const [name, w] of want) {
      const g = got.get(name)!
      t.equal(g.dtype, w.dtype, `${name} dtype`)
      t.same(g.shape, w.shape, `${name} shape`)
      if (!g.bytes.equals(w.bytes)) t.fail(`${name} bytes differ`)
    }
    const savedConfig = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'))
    t.equal(savedConfig.model_type, arch)
    t.equal(savedConfig.torch_dtype, dtype)
    const b = await CausalLM.fromPretrained(out, { dtype })
    const la = a.forward(prompt).logits.to('float32').toArray() as Float32Array
    const lb = b.forward(prompt).logits.to('float32').toArray() as Float32Array
    t.same(Array.from(lb), Array.from(la), 'identical logits')
  })
}

t.test('a tiny shard limit writes shards + index that load back; a later single save removes them', async (t) => {
  const config = tinyConfig('qwen2')
  const a = await CausalLM.fromPretrained(writeTiny(path.join(root, 'qwen-src'), config, tinyWeights(config)))
  const out = path.join(root, 'qwen-sharded')
  await a.save(out, { maxShardBytes: 40_000 })
  const shards = fs.readdirSync(out).filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f))
  t.ok(shards.length > 2, `${shards.length} shards`)
  t.ok(shards.every((f) => f.endsWith(`-of-${String(shards.length).padStart(5, '0')}.safetensors`)))
  const index = JSON.parse(fs.readFileSync(path.join(out, 'model.safetensors.index.json'), 'utf8'))
  const params = [...a.namedParameters()]
  t.same(Object.keys(index.weight_map).sort(), params.map(([n]) => n).sort())
  t.equal(
    index.metadata.total_size,
    params.reduce((s, [, p]) => s + p.numel * 4, 0),
  )
  const b = await CausalLM.fromPretrained(out)
  t.same(Array.from(b.forward(prompt).logits.toArray() as Float32Array), Array.from(a.forward(prompt).logits.toArray() as Float32Array))
  await a.save(out)
  t.same(fs.readdirSync(out).sort(), ['config.json', 'model.safetensors'], 'stale shards and index removed')
})

t.test('a tied checkpoint that stores lm_head.weight anyway loads and saves it back', async (t) => {
  const config = tinyConfig('qwen2')
  const w = tinyWeights(config)
  w.set('lm_head.weight', w.get('model.embed_tokens.weight')!)
  const src = writeTiny(path.join(root, 'tied-stored'), config, w)
  const m = await CausalLM.fromPretrained(src)
  t.notOk(m.namedParameters().has('lm_head.weight'))
  const out = path.join(root, 'tied-stored-out')
  await m.save(out)
  t.ok('lm_head.weight' in io.loadSafetensors(path.join(out, 'model.safetensors')))
})

t.test('bad checkpoints give errors naming the tensor, file and expected shape', async (t) => {
  const config = tinyConfig('llama')
  const good = tinyWeights(config)
  const bad = async (name: string, mutate: (dir: string) => void, pattern: RegExp) => {
    const dir = writeTiny(path.join(root, `bad-${name}`), config, good)
    mutate(dir)
    await t.rejects(CausalLM.fromPretrained(dir), pattern, name)
    await t.rejects(CausalLM.fromPretrained(dir), EdpoInputError, `${name} is an EdpoInputError`)
  }
  const rewrite = (dir: string, edit: (w: Map<string, import('../lib/index').Tensor>) => void) => {
    const w = new Map(good)
    edit(w)
    io.saveSafetensors(path.join(dir, 'model.safetensors'), Object.fromEntries(w))
  }
  await bad(
    'missing',
    (d) => rewrite(d, (w) => w.delete('model.layers.1.mlp.up_proj.weight')),
    /model\.safetensors: tensor 'model\.layers\.1\.mlp\.up_proj\.weight' is missing \(expected shape \[96, 64\]/,
  )
  await bad(
    'extra',
    (d) => rewrite(d, (w) => w.set('model.layers.0.mlp.extra', good.get('model.norm.weight')!)),
    /model\.safetensors: unexpected tensor 'model\.layers\.0\.mlp\.extra' \[64\]/,
  )
  await bad(
    'shape',
    (d) => rewrite(d, (w) => w.set('model.norm.weight', good.get('model.layers.0.mlp.up_proj.weight')!)),
    /model\.safetensors: tensor 'model\.norm\.weight' has shape \[96, 64\], expected \[64\]/,
  )
  const cfg = (d: string, text: string) => fs.writeFileSync(path.join(d, 'config.json'), text)
  await bad(
    'model_type',
    (d) => cfg(d, JSON.stringify({ ...config, model_type: 'gpt2' })),
    /model_type "gpt2" is not supported \(expected one of llama, mistral, qwen2, gemma2\)/,
  )
  await bad('malformed json', (d) => cfg(d, '{"model_type": "llama",'), /config\.json: not valid JSON/)
  await bad('bad field', (d) => cfg(d, JSON.stringify({ ...config, hidden_size: 'big' })), /config\.json\.hidden_size: /)
  await bad('rope', (d) => cfg(d, JSON.stringify({ ...config, rope_scaling: { rope_type: 'yarn', factor: 2 } })), /rope_scaling type 'yarn' is not supported/)
  await bad('missing config', (d) => fs.rmSync(path.join(d, 'config.json')), /config\.json: cannot read/)
  await bad(
    'index names a missing shard',
    (d) => {
      fs.rmSync(path.join(d, 'model.safetensors'))
      const map = Object.fromEntries([...good.keys()].map((n) => [n, 'model-00001-of-00002.safetensors']))
      fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 1 }, weight_map: map }))
    },
    /tensor '[^']+' is in model-00001-of-00002\.safetensors, which does not exist/,
  )
  await bad('no weights', (d) => fs.rmSync(path.join(d, 'model.safetensors')), /no model\.safetensors and no model\.safetensors\.index\.json/)
  await t.rejects(CausalLM.fromPretrained(path.join(root, 'bad-missing'), { dtype: 'int8' as 'float32' }), /opts\.dtype/)
})
