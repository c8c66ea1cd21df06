// Hub ids end to end against a loopback Hub (helpers/fake-hub.ts) through edpo's own
// tree listing and downloads (HF_ENDPOINT): the Python cache layout written and read back, a gated
// repo, a dropped connection resumed, a wrong size and a wrong hash refused, a '..' file name
// refused, HF_HUB_OFFLINE=1, and local paths untouched.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { EdpoInputError } from '../lib/core/errors'
import { resolveHubOptions } from '../lib/hub/resolve-options'
import { hubSettings } from '../lib/hub/settings'
import { tempDir } from './helpers/data-fixtures'
import { type FakeRepo, gitSha1, sha256, startFakeHub } from './helpers/fake-hub'
import { makeTrainableModel } from './helpers/train-fixtures'

const COMMIT = 'a'.repeat(40)
const quiet = { log: () => {} }

function modelRepo(dir: string, extra: Partial<FakeRepo> = {}): FakeRepo {
  const files: FakeRepo['files'] = {}
  for (const name of fs.readdirSync(dir)) files[name] = { bytes: fs.readFileSync(path.join(dir, name)), lfs: name.endsWith('.safetensors') }
  return { kind: 'model', commit: COMMIT, files, ...extra }
}

/** Every entry under `root`: files as "f <size>", symlinks as "l -> target", folders as "d". */
function tree(root: string): string[] {
  const out: string[] = []
  const walk = (dir: string, rel: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const r = rel ? `${rel}/${e.name}` : e.name
      const p = path.join(dir, e.name)
      if (e.isSymbolicLink()) out.push(`${r} l -> ${fs.readlinkSync(p)}`)
      else if (e.isDirectory()) {
        out.push(`${r} d`)
        walk(p, r)
      } else out.push(`${r} f ${fs.statSync(p).size}`)
    }
  }
  walk(root, '')
  return out
}

t.test('a model by Hub id: downloaded once into the Python layout, then found offline', async (t) => {
  const model = makeTrainableModel(t)
  const hub = await startFakeHub({ 'edpo-test/tiny-llama': modelRepo(model) })
  t.teardown(hub.close)
  const cache = tempDir(t)
  const settings = hubSettings({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache })
  const out = await resolveHubOptions({ model: 'edpo-test/tiny-llama', out: 'o' }, { settings, ...quiet })
  const snapshot = path.join(cache, 'models--edpo-test--tiny-llama', 'snapshots', COMMIT)
  t.equal(out.model, snapshot, '--model is now the snapshot folder')
  t.same(fs.readdirSync(snapshot).sort(), fs.readdirSync(model).sort(), 'every file edpo reads, no others')
  for (const f of fs.readdirSync(model)) t.same(fs.readFileSync(path.join(snapshot, f)), fs.readFileSync(path.join(model, f)), f)
  t.ok(
    hub.requests.some((r) => r.url.startsWith('/cdn/')),
    'the LFS weights came through the redirect',
  )
  t.notOk(
    hub.requests.some((r) => r.url.startsWith('/cdn/') && r.authorization),
    'no token follows a redirect to another origin',
  )

  // The same tree as Python's huggingface_hub writes, made by hand.
  const python = tempDir(t)
  const repo = path.join(python, 'models--edpo-test--tiny-llama')
  fs.mkdirSync(path.join(repo, 'refs'), { recursive: true })
  fs.writeFileSync(path.join(repo, 'refs', 'main'), COMMIT)
  fs.mkdirSync(path.join(repo, 'blobs'))
  fs.mkdirSync(path.join(repo, 'snapshots', COMMIT), { recursive: true })
  for (const f of fs.readdirSync(model)) {
    const bytes = fs.readFileSync(path.join(model, f))
    const etag = f.endsWith('.safetensors') ? sha256(bytes) : gitSha1(bytes)
    fs.writeFileSync(path.join(repo, 'blobs', etag), bytes)
    fs.symlinkSync(`../../blobs/${etag}`, path.join(repo, 'snapshots', COMMIT, f))
  }
  t.same(tree(cache), tree(python), "edpo's writes give the tree Python writes (refs, blobs by etag, relative symlinks)")
  t.equal(fs.readFileSync(path.join(cache, 'models--edpo-test--tiny-llama', 'refs', 'main'), 'utf8'), COMMIT, 'refs/main holds the bare commit')

  // The hand-written cache is found offline, with no server.
  const offline = await resolveHubOptions({ model: 'edpo-test/tiny-llama' }, { settings: hubSettings({ HF_HUB_CACHE: python, HF_HUB_OFFLINE: '1' }), ...quiet })
  t.equal(offline.model, path.join(repo, 'snapshots', COMMIT))
  // Online, a complete cache is used without asking the server again.
  const before = hub.requests.length
  await resolveHubOptions({ model: 'edpo-test/tiny-llama' }, { settings, ...quiet })
  t.equal(hub.requests.length, before, 'the cache first: no request when everything is there')
})

t.test('the tree listing: every page followed with the token, a next page on another origin and malformed entries refused', async (t) => {
  const model = makeTrainableModel(t)
  const files = fs.readdirSync(model)
  const hub = await startFakeHub({ 'org/paged': modelRepo(model, { pageSize: 1, token: 'hf_pages' }) })
  t.teardown(hub.close)
  const settings = hubSettings({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: tempDir(t), HF_TOKEN: 'hf_pages' })
  const out = await resolveHubOptions({ model: 'org/paged' }, { settings, ...quiet })
  t.same(fs.readdirSync(out.model as string).sort(), files.sort(), 'files from every page')
  const pages = hub.requests.filter((r) => r.url.startsWith('/api/'))
  t.equal(pages.length, files.length, 'one request per page of one entry')
  t.ok(
    pages.every((r) => r.authorization === 'Bearer hf_pages'),
    'the token on every page (same origin)',
  )

  const elsewhere = await startFakeHub({})
  t.teardown(elsewhere.close)
  const hostile = await startFakeHub({ 'org/hostile': modelRepo(model, { pageSize: 1, nextPageOrigin: elsewhere.url }) })
  t.teardown(hostile.close)
  await t.rejects(
    resolveHubOptions({ model: 'org/hostile' }, { settings: hubSettings({ HF_ENDPOINT: hostile.url, HF_HUB_CACHE: tempDir(t), HF_TOKEN: 'hf_x' }), ...quiet }),
    /--model org\/hostile: the Hub's listing of org\/hostile points its next page at another origin/,
  )
  t.equal(elsewhere.requests.length, 0, 'nothing, and so no token, went to the other origin')

  for (const [entry, why] of [
    [{ type: 'file', path: 'x.json', size: 3, oid: 'not-a-sha' }, /oid is not a git sha1/],
    [{ type: 'file', path: 'w.safetensors', size: 134, oid: 'b'.repeat(40), lfs: { oid: 'zz', size: 5 } }, /lfs\.oid is not a sha256/],
    [{ type: 'file', path: 'y.json', size: -1, oid: 'b'.repeat(40) }, /\(size\)/],
    [{ type: 'symlink', path: 'z' }, /type symlink/],
    ['text', /not an object/],
  ] as const) {
    const bad = await startFakeHub({ 'org/malformed': modelRepo(model, { extraEntry: entry }) })
    await t.rejects(resolveHubOptions({ model: 'org/malformed' }, { settings: hubSettings({ HF_ENDPOINT: bad.url, HF_HUB_CACHE: tempDir(t) }), ...quiet }), why)
    await bad.close()
  }
})

t.test('HF_HUB_OFFLINE=1 with a file missing names the repo and the file', async (t) => {
  const cache = tempDir(t)
  const repo = path.join(cache, 'models--org--name')
  fs.mkdirSync(path.join(repo, 'refs'), { recursive: true })
  fs.writeFileSync(path.join(repo, 'refs', 'main'), COMMIT)
  fs.mkdirSync(path.join(repo, 'snapshots', COMMIT), { recursive: true })
  fs.writeFileSync(path.join(repo, 'snapshots', COMMIT, 'config.json'), '{}')
  const settings = hubSettings({ HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1' })
  await t.rejects(
    resolveHubOptions({ model: 'org/name' }, { settings, ...quiet }),
    /--model org\/name: HF_HUB_OFFLINE=1, and the cache .*models--org--name lacks what the run needs of org\/name \(revision main\): no model\.safetensors/,
  )
  await t.rejects(resolveHubOptions({ model: 'org/other' }, { settings, ...quiet }), /--model org\/other: HF_HUB_OFFLINE=1.*no refs\/main/)
  await t.rejects(resolveHubOptions({ model: 'org/name@v2' }, { settings, ...quiet }), /revision v2\): no refs\/v2/)
})

t.test('a gated repo: 401 names the repo and how to give a token; the token is never printed', async (t) => {
  const model = makeTrainableModel(t)
  const hub = await startFakeHub({ 'meta-llama/gated': modelRepo(model, { token: 'hf_secret123' }) })
  t.teardown(hub.close)
  const cache = tempDir(t)
  const err = await resolveHubOptions(
    { model: 'meta-llama/gated' },
    { settings: hubSettings({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_HOME: cache }), ...quiet },
  ).catch((e: Error) => e)
  t.ok(err instanceof EdpoInputError)
  t.match(
    (err as Error).message,
    /--model meta-llama\/gated: meta-llama\/gated is gated or private \(the Hub answered 401\).*HF_TOKEN=hf_….*huggingface-cli login/,
  )
  const wrong = await resolveHubOptions(
    { model: 'meta-llama/gated' },
    { settings: hubSettings({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_TOKEN: 'hf_wrong456' }), ...quiet },
  ).catch((e: Error) => e)
  t.match((wrong as Error).message, /the token from HF_TOKEN was refused/)
  t.notMatch((wrong as Error).message, /hf_wrong456/, 'the token is not in the message')
  // The stored token (HF_HOME/token) is used.
  fs.writeFileSync(path.join(cache, 'token'), 'hf_secret123\n')
  const lines: string[] = []
  const ok = await resolveHubOptions(
    { model: 'meta-llama/gated' },
    { settings: hubSettings({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_HOME: cache }), log: (l) => lines.push(l) },
  )
  t.match(String(ok.model), /models--meta-llama--gated/)
  t.notMatch(lines.join('\n'), /hf_secret123/, 'the token never appears in the log')
})

t.test('a dropped connection resumes with a Range request; a second run resumes a partial file', async (t) => {
  const model = makeTrainableModel(t)
  const repo = modelRepo(model)
  repo.files['model.safetensors']!.fault = 'drop'
  repo.files['model.safetensors']!.drops = 1
  const hub = await startFakeHub({ 'org/m': repo })
  t.teardown(hub.close)
  const cache = tempDir(t)
  const settings = hubSettings({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache })
  const out = await resolveHubOptions({ model: 'org/m' }, { settings, ...quiet })
  t.same(fs.readFileSync(path.join(String(out.model), 'model.safetensors')), fs.readFileSync(path.join(model, 'model.safetensors')), 'complete and correct')
  const gets = hub.requests.filter((r) => r.url.startsWith('/cdn/') && r.method === 'GET')
  t.equal(gets.length, 2, 'one dropped GET, one resumed')
  t.match(gets[1]!.range, /^bytes=[1-9]\d*-$/, 'the second asked only for the rest')

  // Every try of the first run drops: it fails saying how to resume, leaving the partial file only.
  const repo2 = modelRepo(model)
  repo2.files['model.safetensors']!.fault = 'drop'
  repo2.files['model.safetensors']!.drops = 3
  const hub2 = await startFakeHub({ 'org/m2': repo2 })
  t.teardown(hub2.close)
  const settings2 = hubSettings({ HF_ENDPOINT: hub2.url, HF_HUB_CACHE: cache })
  await t.rejects(resolveHubOptions({ model: 'org/m2' }, { settings: settings2, ...quiet }), /model\.safetensors: the connection .* run again to resume/)
  const blobs = path.join(cache, 'models--org--m2', 'blobs')
  const partial = fs.readdirSync(blobs).filter((f) => f.endsWith('.incomplete'))
  t.equal(partial.length, 1, 'an .incomplete file, never a blob that looks complete')
  t.notOk(fs.existsSync(path.join(blobs, sha256(repo2.files['model.safetensors']!.bytes))), 'no blob under the final name')
  const out2 = await resolveHubOptions({ model: 'org/m2' }, { settings: settings2, ...quiet })
  t.same(
    fs.readFileSync(path.join(String(out2.model), 'model.safetensors')),
    fs.readFileSync(path.join(model, 'model.safetensors')),
    'the next run completes it',
  )
  t.match(hub2.requests.filter((r) => r.url.startsWith('/cdn/')).at(-1)!.range, /^bytes=[1-9]\d*-$/, 'from where the last stopped')
})

t.test('a wrong size and a wrong hash are refused; nothing is kept under the blob name', async (t) => {
  const model = makeTrainableModel(t)
  for (const [fault, message] of [
    ['long', /sent more than the \d+ bytes the Hub lists for it: refused/],
    ['corrupt', /its sha256 is [0-9a-f]{64}, the Hub lists [0-9a-f]{64}: refused/],
  ] as const) {
    const repo = modelRepo(model)
    repo.files['model.safetensors']!.fault = fault
    const hub = await startFakeHub({ 'org/bad': repo })
    const cache = tempDir(t)
    await t.rejects(resolveHubOptions({ model: 'org/bad' }, { settings: hubSettings({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache }), ...quiet }), message, fault)
    const blobs = path.join(cache, 'models--org--bad', 'blobs')
    t.notOk(fs.readdirSync(blobs).includes(sha256(repo.files['model.safetensors']!.bytes)), `${fault}: no blob`)
    for (const f of fs.readdirSync(blobs).filter((f) => f.endsWith('.incomplete')))
      t.ok(fs.statSync(path.join(blobs, f)).size <= repo.files['model.safetensors']!.bytes.length, `${fault}: never past the announced size`)
    await hub.close()
  }
  // A regular file whose bytes do not match its git sha1.
  const repo = modelRepo(model)
  repo.files['config.json']!.fault = 'corrupt'
  const hub = await startFakeHub({ 'org/bad2': repo })
  t.teardown(hub.close)
  await t.rejects(
    resolveHubOptions({ model: 'org/bad2' }, { settings: hubSettings({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: tempDir(t) }), ...quiet }),
    /config\.json: its git sha1 is .* refused/,
  )
})

t.test("file names with '..' and bad ids never leave the cache", async (t) => {
  const model = makeTrainableModel(t)
  const repo = modelRepo(model)
  delete repo.files['model.safetensors']
  repo.files['model.safetensors.index.json'] = { bytes: Buffer.from(JSON.stringify({ weight_map: { w: '../../../evil.safetensors' } })) }
  repo.files['../../../evil.safetensors'] = { bytes: Buffer.from('x'), lfs: true }
  const hub = await startFakeHub({ 'org/evil': repo })
  t.teardown(hub.close)
  const cache = tempDir(t)
  await t.rejects(
    resolveHubOptions({ model: 'org/evil' }, { settings: hubSettings({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: path.join(cache, 'hub') }), ...quiet }),
    /refused the file name "\.\.\/\.\.\/\.\.\/evil\.safetensors"/,
  )
  t.notOk(fs.existsSync(path.join(cache, 'evil.safetensors')))
  await t.rejects(
    resolveHubOptions({ model: 'org/x@../../etc' }, { settings: hubSettings({ HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1' }), ...quiet }),
    /not a valid revision/,
  )
  // A cache symlink that leads outside the repo's folder is refused, not followed.
  const r = path.join(cache, 'models--org--link')
  fs.mkdirSync(path.join(r, 'snapshots', COMMIT), { recursive: true })
  fs.mkdirSync(path.join(r, 'refs'))
  fs.writeFileSync(path.join(r, 'refs', 'main'), COMMIT)
  fs.writeFileSync(path.join(cache, 'outside.json'), '{}')
  fs.symlinkSync('../../../outside.json', path.join(r, 'snapshots', COMMIT, 'config.json'))
  await t.rejects(resolveHubOptions({ model: 'org/link' }, { settings: hubSettings({ HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1' }), ...quiet }), /leads outside/)
})

t.test('local paths stay paths; Hub-only options need a Hub id', async (t) => {
  const model = makeTrainableModel(t)
  const settings = hubSettings({ HF_HUB_CACHE: tempDir(t), HF_HUB_OFFLINE: '1' })
  const rel = path.relative(process.cwd(), model)
  t.same(await resolveHubOptions({ model: rel, data: ['a.jsonl'] }, { settings, ...quiet }), { model: rel, data: ['a.jsonl'] })
  await t.rejects(resolveHubOptions({ model, modelRevision: 'v1' }, { settings, ...quiet }), /--model-revision: applies to a Hub model id/)
  await t.rejects(resolveHubOptions({ model, data: ['x.jsonl'], dataSplit: 'test' }, { settings, ...quiet }), /--data-split: applies to a Hub dataset id/)
})
