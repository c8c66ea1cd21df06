// Several ranks from the command line (issue #12): the built-in launcher, torchrun-style variables
// with a TCPStore, β identical on every rank, rank-0 metrics, ZeRO-1 checkpoints that resume
// bit-exactly (and re-shard for another world size), kill -9 of a rank, Ctrl-C, bad input.
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'

import t from 'tap'

import { readDistEnv } from '../lib/distributed/env'
import { DistGroup } from '../lib/distributed/group'
import { EdpoInputError } from '../lib/core/errors'
import { checkpointProblem } from '../lib/train/checkpoints'
import { readMetrics } from '../lib/train/metrics-log'
import { Trainer } from '../lib/train/engine'
import { tempDir } from './helpers/data-fixtures'
import { exited, runCli, startCli } from './helpers/dist-run'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
}

function checkpoints(out: string): string[] {
  return fs
    .readdirSync(out)
    .filter((n) => /^checkpoint-\d+$/.test(n))
    .sort()
}

async function until(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

/** The pid of the child of `parent` whose environment has RANK=`rank`. */
function rankPid(parent: number, rank: number): number | undefined {
  for (const entry of fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid !== parent) continue
      if (fs.readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0').includes(`RANK=${rank}`)) return Number(entry)
    } catch {
      // the process went away
    }
  }
  return undefined
}

t.test('several ranks from the command line', async (t) => {
  const model = makeTrainableModel(t, 3)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 32)
  const common = [
    '--model',
    model,
    '--data',
    data,
    '--learning-rate',
    '1e-3',
    '--warmup-ratio',
    '0',
    '--max-length',
    '32',
    '--beta',
    '0.5',
    '--epsilon',
    '0.1',
    '--batch-size',
    '2',
    '--seed',
    '3',
  ]

  t.test('launcher, ZeRO-1: β equal on every rank, rank-0 metrics, checkpoints resume bit-exactly over torchrun-style variables', async (t) => {
    const full = path.join(work, 'full')
    const debug = path.join(work, 'debug')
    const r = runCli(
      ['train', ...common, '--out', full, '--max-steps', '4', '--save-every', '2', '--zero-stage', '1', '--nproc-per-node', '2', '--dist-timeout', '60'],
      { EDPO_DIST_DEBUG_DIR: debug },
    )
    t.equal(r.status, 0, `the launcher succeeds (stderr: ${r.stderr.slice(-1500)})`)
    // Each line: {step, beta, loss, peak_rss_mib}; memory is each rank's own, β and the loss must be equal.
    const perRank = [0, 1].map((rank) =>
      fs
        .readFileSync(path.join(debug, `rank-${rank}.jsonl`), 'utf8')
        .trim()
        .split('\n')
        .map((l) => {
          const { step, beta, loss } = JSON.parse(l) as { step: number; beta: number; loss: number }
          return { step, beta, loss }
        }),
    )
    t.equal(perRank[0]!.length, 4, 'rank 0 logged β for 4 steps')
    t.same(perRank[1], perRank[0], 'every rank holds the same β (and loss) at every step')
    const betas = perRank[0]!.map((l) => l.beta)
    t.ok(new Set(betas).size > 1, `β moves (${betas.join(', ')})`)
    t.equal(readMetrics(full).filter((m) => m.loss !== undefined).length, 4, 'metrics.jsonl is written once (rank 0), one line per step')
    t.same(checkpoints(full), ['checkpoint-2', 'checkpoint-4'], 'checkpoints at steps 2 and 4')
    for (const c of checkpoints(full)) t.equal(checkpointProblem(path.join(full, c)), undefined, `${c} is complete`)
    t.ok(fs.existsSync(path.join(full, 'checkpoint-2', 'optimizer-rank1-of-2.safetensors')), 'rank 1 wrote its optimizer shard')

    // The same run cut at step 2 and resumed by two processes launched as torchrun would (TCPStore).
    const cut = path.join(work, 'cut')
    fs.mkdirSync(cut)
    fs.cpSync(path.join(full, 'checkpoint-2'), path.join(cut, 'checkpoint-2'), { recursive: true })
    fs.writeFileSync(path.join(cut, 'metrics.jsonl'), fs.readFileSync(path.join(full, 'metrics.jsonl'), 'utf8').split('\n').slice(0, 2).join('\n') + '\n')
    const port = await freePort()
    const ranks = [0, 1].map((rank) =>
      startCli(['train', '--resume', cut, '--dist-timeout', '60'], {
        RANK: String(rank),
        WORLD_SIZE: '2',
        LOCAL_RANK: String(rank),
        MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: String(port),
      }),
    )
    const err = ['', '']
    ranks.forEach((c, i) => c.stderr!.on('data', (d: Buffer) => (err[i] += d.toString())))
    const ends = await Promise.all(ranks.map((c) => exited(c, 240_000)))
    t.same(
      ends.map((e) => e.code),
      [0, 0],
      `both resumed ranks finish (${err.join(' | ').slice(-1500)})`,
    )
    for (const file of ['model.safetensors', 'optimizer-rank0-of-2.safetensors', 'optimizer-rank1-of-2.safetensors'])
      t.ok(fs.readFileSync(path.join(cut, 'checkpoint-4', file)).equals(fs.readFileSync(path.join(full, 'checkpoint-4', file))), `resume is bit-exact: ${file}`)

    // Another world size re-shards by parameter name: one process resumes from the two shards.
    const trainer = await Trainer.create({ maxSteps: 5 } as never, { resume: cut, log: () => {} })
    await trainer.train()
    t.equal(trainer.state.step, 5, 'one process resumes the 2-rank ZeRO-1 checkpoint and trains on')
    t.ok(fs.existsSync(path.join(cut, 'checkpoint-5', 'optimizer.safetensors')), 'its optimizer state is whole again')
  })

  // ZeRO-3: the survivor may be in a unit's gather or a reduce-scatter on the sibling group.
  for (const stage of [2, 3])
    t.test(`ZeRO-${stage}: kill -9 of one rank ends the other within the timeout; no partial checkpoint becomes the latest`, async (t) => {
      const out = path.join(work, `killed-zero${stage}`)
      const launcher = startCli([
        'train',
        ...common,
        '--out',
        out,
        '--max-steps',
        '100000',
        '--save-every',
        '3',
        '--zero-stage',
        String(stage),
        '--nproc-per-node',
        '2',
        '--dist-timeout',
        '20',
      ])
      let stderr = ''
      launcher.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
      const end = exited(launcher, 300_000)
      await until('the first checkpoint', () => fs.existsSync(out) && checkpoints(out).length > 0, 240_000)
      const victim = rankPid(launcher.pid!, 1)
      t.ok(victim, 'found rank 1')
      process.kill(victim!, 'SIGKILL')
      const killedAt = Date.now()
      const r = await end
      t.not(r.code, 0, 'the launcher fails')
      t.ok(Date.now() - killedAt < 20_000 + 30_000, `the other rank stopped within the timeout (${Date.now() - killedAt} ms)`)
      t.match(stderr, /rank 1 was killed by SIGKILL/, 'the launcher names the dead rank')
      t.match(stderr, /rank 0 of 2: the .* failed, so another rank stopped/, 'rank 0 stops with an error saying a peer stopped')
      for (const c of checkpoints(out)) t.equal(checkpointProblem(path.join(out, c)), undefined, `${c} is complete`)
    })

  t.test('SIGKILL of the launcher: no worker is left behind', async (t) => {
    const out = path.join(work, 'orphaned')
    const launcher = startCli(['train', ...common, '--out', out, '--max-steps', '100000', '--nproc-per-node', '2', '--dist-timeout', '60'])
    const end = exited(launcher, 300_000)
    // Once both ranks train (a logged step), so each has set up its watch on the launcher.
    await until('a logged step', () => fs.existsSync(path.join(out, 'metrics.jsonl')) && readMetrics(out).length > 0, 240_000)
    const workers = [0, 1].map((rank) => rankPid(launcher.pid!, rank))
    t.ok(
      workers.every((p) => p !== undefined),
      `found both ranks (${workers.join(', ')})`,
    )
    launcher.kill('SIGKILL')
    await end
    const alive = (pid: number) => {
      try {
        // A zombie (state Z) has exited already; only its parent's reaping is left.
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
        return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
      } catch {
        return false
      }
    }
    await until('every worker to exit', () => workers.every((p) => !alive(p!)), 30_000)
    t.pass('both workers exited within 30 s of the launcher')
  })

  t.test('Ctrl-C on the launcher: every rank stops after the same step and one checkpoint is written', async (t) => {
    const out = path.join(work, 'interrupted')
    const launcher = startCli(['train', ...common, '--out', out, '--max-steps', '100000', '--nproc-per-node', '2', '--dist-timeout', '60'])
    let stderr = ''
    launcher.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    const end = exited(launcher, 300_000)
    await until('a logged step', () => fs.existsSync(path.join(out, 'metrics.jsonl')) && readMetrics(out).length > 0, 240_000)
    launcher.kill('SIGINT')
    const r = await end
    t.equal(r.code, 130, `the launcher exits 130 (${stderr.slice(-1000)})`)
    const saved = checkpoints(out)
    t.equal(saved.length, 1, 'one checkpoint')
    const last = readMetrics(out)
      .filter((m) => m.loss !== undefined)
      .at(-1)!.step
    t.equal(saved[0], `checkpoint-${last}`, 'at the last step every rank trained')
    t.equal(checkpointProblem(path.join(out, saved[0]!)), undefined, 'complete')
  })

  t.test('bad input fails before any work, naming what is wrong', async (t) => {
    t.throws(
      () => readDistEnv({ WORLD_SIZE: '2' }),
      new EdpoInputError('WORLD_SIZE is set but RANK is not: set both (torchrun and srun do), or neither for one process'),
    )
    t.throws(() => readDistEnv({ RANK: '2', WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '1' }), /RANK=2: expected an integer in \[0, 1\]/)
    t.throws(() => readDistEnv({ RANK: '0', WORLD_SIZE: '2' }), /without MASTER_ADDR/)
    t.same(
      readDistEnv({ SLURM_PROCID: '1', SLURM_NTASKS: '4', SLURM_LOCALID: '1', MASTER_ADDR: 'node0', MASTER_PORT: '29500' })?.rank,
      1,
      'srun tasks are ranks',
    )
    const env = { rank: 0, worldSize: 1, localRank: 0, store: { kind: 'file' as const, path: path.join(work, 's') }, source: 'torchrun' as const }
    await t.rejects(DistGroup.join(env, { device: 'cpu', backend: 'nccl' }), /--backend nccl needs a CUDA device/)
    // A port in use: rank 0 cannot serve the rendezvous.
    const busy = net.createServer()
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()))
    const port = (busy.address() as net.AddressInfo).port
    await t.rejects(
      DistGroup.join({ ...env, store: { kind: 'tcp', host: '127.0.0.1', port, clientOnly: false } }, { device: 'cpu', timeoutSeconds: 5 }),
      new RegExp(`rank 0 cannot serve the rendezvous at MASTER_ADDR 127.0.0.1 MASTER_PORT ${port} \\(is the port in use`),
    )
    busy.close()
    const r = runCli(['train', ...common, '--out', path.join(work, 'bad'), '--nproc-per-node', '2', '--backend', 'nccl'])
    t.equal(r.status, 1, 'the CLI fails')
    t.match(r.stderr, /--backend nccl needs a CUDA device, but --device is cpu/, 'nccl on CPU is named')
    t.notOk(fs.existsSync(path.join(work, 'bad')), 'before any work')
  })
})
